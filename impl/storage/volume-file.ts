/**
 * The file backend of a {@link Volume}: one sparse file per volume, read and written with synchronous
 * positional calls, so that a site's I/O happens exactly where its logic says and in that order.
 *
 * Durability: a write is in the operating system's cache when `write` returns; `flush` makes every completed
 * write durable (fsync). Reopening a file keeps its data.
 */

import * as fs from 'node:fs';
import { assert } from '../core/invariant.ts';
import { siteFileMode } from './file-modes.ts';
import { asDeviceError } from '../core/errors.ts';
import {
  blocksOfRange,
  checkRange,
  validateVolumeConfig,
  VolumeConfigError,
  volumeBytesMax,
  type Volume,
} from '../core/volume.ts';

/** A volume stored in one sparse file. */
export class FileVolume implements Volume {
  readonly sizeBytes: number;
  readonly blockBytes: number;
  /** The file holding the volume. */
  readonly path: string;
  #fd: number | null;

  private constructor(path: string, fd: number, sizeBytes: number, blockBytes: number) {
    this.path = path;
    this.#fd = fd;
    this.sizeBytes = sizeBytes;
    this.blockBytes = blockBytes;
  }

  /**
   * Opens the volume stored at `path`, creating it as a sparse all-zero file of `sizeBytes` when it is
   * missing or empty. Throws {@link VolumeConfigError} for an invalid configuration (`sizeBytes` up to
   * {@link volumeBytesMax}) or when an existing file has another size (`'sizeMismatch'`: a volume is never
   * silently grown or shrunk).
   */
  static open(path: string, sizeBytes: number, blockBytes: number): FileVolume {
    validateVolumeConfig(sizeBytes, blockBytes, volumeBytesMax);
    const fd = fs.openSync(path, fs.constants.O_RDWR | fs.constants.O_CREAT, siteFileMode);
    try {
      const existingBytes = fs.fstatSync(fd).size;
      if (existingBytes === 0) {
        fs.ftruncateSync(fd, sizeBytes);
      } else if (existingBytes !== sizeBytes) {
        throw new VolumeConfigError(sizeBytes, blockBytes, 'sizeMismatch', `the file ${path} holds ${existingBytes} bytes`);
      }
    } catch (error) {
      fs.closeSync(fd);
      throw error;
    }
    return new FileVolume(path, fd, sizeBytes, blockBytes);
  }

  read(offset: number, length: number): Uint8Array {
    const fd = this.#openFd('read');
    checkRange(offset, length, this.sizeBytes);
    const out = new Uint8Array(length);
    let done = 0;
    while (done < length) {
      const n = fs.readSync(fd, out, done, length - done, offset + done);
      // The file is exactly sizeBytes long, so a read inside it never ends early.
      assert(n > 0, 'volume file holds sizeBytes', () => `${this.path}: read returned 0 at ${offset + done}`);
      done += n;
    }
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    const fd = this.#openFd('write');
    checkRange(offset, data.length, this.sizeBytes);
    let done = 0;
    try {
      while (done < data.length) {
        done += fs.writeSync(fd, data, done, data.length - done, offset + done);
      }
    } catch (error) {
      throw asDeviceError('volume', this.path, `write of ${data.length} bytes at ${offset}`, error);
    }
  }

  blocksOf(offset: number, length: number): { first: number; count: number } {
    this.#openFd('blocksOf');
    checkRange(offset, length, this.sizeBytes);
    return blocksOfRange(offset, length, this.blockBytes);
  }

  flush(): void {
    const fd = this.#openFd('flush');
    try {
      fs.fsyncSync(fd);
    } catch (error) {
      throw asDeviceError('volume', this.path, 'flush', error);
    }
  }

  close(): void {
    const fd = this.#openFd('close');
    this.#fd = null;
    fs.closeSync(fd);
  }

  #openFd(operation: string): number {
    const fd = this.#fd;
    assert(fd !== null, 'volume is open', () => `${operation} after close of ${this.path}`);
    return fd;
  }
}
