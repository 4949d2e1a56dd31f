/**
 * A small state file written atomically: the durable mode, role and counters of a site, or the pair states
 * of the cluster. A write goes to a temporary file, is fsynced, renamed over the old one and the directory
 * fsynced, so a crash leaves either the old content or the new one, never a mix.
 *
 * Checked: the file carries the CRC-32C of its value's JSON text (`{"format", "crc32c", "value"}`), so one
 * changed character anywhere in the value (a bit of a changed-block record, a role) is a
 * {@link StateFileError} naming the file, never a site started from a state it never had. Readable by its
 * owner alone (0600): it says what a site holds.
 */

import { crc32c } from '@node-rs/crc32';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { asDeviceError } from '../core/errors.ts';
import { siteFileMode } from './file-modes.ts';

/** Largest state file: 64 MiB (changed-block bitmaps of large volumes are the bulk). */
export const stateFileBytesMax = 64 * 1024 * 1024;

/** A state file that cannot be read back: `reason` says why. */
export class StateFileError extends Error {
  constructor(
    readonly file: string,
    readonly reason: 'tooLarge' | 'notJson' | 'wrongFormat' | 'checksum',
    detail: string,
  ) {
    super(`state file ${file}: ${detail}`);
    this.name = 'StateFileError';
  }
}

/** Writes `value` as JSON to `file` atomically (temporary file, fsync, rename, fsync of the directory). */
export function writeStateFile(file: string, format: string, value: unknown): void {
  const body = JSON.stringify(value);
  const text = `{"format":${JSON.stringify(format)},"crc32c":${JSON.stringify(checksumOf(body))},"value":${body}}`;
  const temporary = `${file}.tmp`;
  try {
    const fd = fs.openSync(temporary, 'w', siteFileMode);
    try {
      const bytes = Buffer.from(text, 'utf8');
      let done = 0;
      while (done < bytes.length) done += fs.writeSync(fd, bytes, done, bytes.length - done, done);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temporary, file);
    const dir = fs.openSync(path.dirname(file), 'r');
    try {
      fs.fsyncSync(dir);
    } finally {
      fs.closeSync(dir);
    }
  } catch (error) {
    // The old content is still in place (the rename is the commit point): a full disk loses no state.
    throw asDeviceError('state', file, 'save', error);
  }
}

/** Reads a state file written by {@link writeStateFile}; null when it does not exist. Throws {@link StateFileError}. */
export function readStateFile(file: string, format: string): unknown {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  if (size > stateFileBytesMax) throw new StateFileError(file, 'tooLarge', `${size} bytes > ${stateFileBytesMax}`);
  let parsed: unknown;
  try {
    parsed = JSON.parse(fs.readFileSync(file, 'utf8'));
  } catch {
    throw new StateFileError(file, 'notJson', 'not valid JSON');
  }
  const record = parsed as { format?: unknown; crc32c?: unknown; value?: unknown } | null;
  if (typeof record !== 'object' || record === null || record.format !== format || !('value' in record)) {
    throw new StateFileError(file, 'wrongFormat', `not a ${format} file`);
  }
  // JSON.stringify gives back the very text the writer checksummed: the value was made by it, and a parse
  // keeps key order, strings and integers as they were.
  const actual = checksumOf(JSON.stringify(record.value));
  if (record.crc32c !== actual) {
    throw new StateFileError(file, 'checksum', `checksum ${JSON.stringify(record.crc32c)} does not match its content (${actual}): the file was damaged; the site does not start from it`);
  }
  return record.value;
}

/** The CRC-32C of a text's UTF-8 bytes, as 8 hex digits. */
function checksumOf(text: string): string {
  return (crc32c(Buffer.from(text, 'utf8')) >>> 0).toString(16).padStart(8, '0');
}
