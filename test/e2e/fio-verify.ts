/**
 * Which writes fio was told were done, and whether a volume image holds them.
 *
 * fio's completion-latency log (`--write_lat_log=NAME --log_offset=1`, file NAME_clat.1.log) has one line
 * per completed I/O, `time, latency, direction, size, offset[, priority]`, and only for I/Os that
 * succeeded: exactly the writes the host was told were written. Each written block carries fio's verify
 * header (`--verify=crc32c`): magic 0xacca, length, seed, offset, time, thread, numberio, a CRC-32C of
 * the header and then a CRC-32C of the rest of the block. fio's CRC-32C leaves out the final inversion,
 * so its value is the bitwise NOT of the standard one.
 *
 * fio's own `--verify_only` re-reads every write the job issued, including those the crash cut off before
 * they were acknowledged (its verify state counts them), so it reports those never-written blocks too; the
 * test runs it as well and checks that every block it reports is one of those.
 */
import { readFileSync } from 'node:fs';
import { crc32c } from '@node-rs/crc32';

/** Bytes of fio's verify header (struct verify_header) and of the crc32c verify area after it. */
const verifyHeaderBytes = 40;
const crc32cAreaBytes = 4;
const verifyMagic = 0xacca;

/** A completed write from the log. */
export interface CompletedWrite {
  offset: number;
  bytes: number;
}

/** The writes fio completed, from its completion-latency log (direction 1 is a write). */
export function completedWrites(clatLog: string): CompletedWrite[] {
  const writes: CompletedWrite[] = [];
  for (const line of readFileSync(clatLog, 'utf8').split('\n')) {
    if (line.trim() === '') continue;
    const fields = line.split(',').map((field) => Number(field.trim()));
    if (fields.length < 5 || fields.some((field) => !Number.isFinite(field))) throw new Error(`not a fio log line: ${JSON.stringify(line)}`);
    if (fields[2] === 1) writes.push({ bytes: fields[3] as number, offset: fields[4] as number });
  }
  return writes;
}

const fioCrc32c = (bytes: Uint8Array): number => ~crc32c(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length)) >>> 0;

/** Why one block does not hold fio's write at `offset`, or null when it does. */
export function verifyBlock(image: Uint8Array, write: CompletedWrite): string | null {
  const block = Buffer.from(image.buffer, image.byteOffset + write.offset, write.bytes);
  if (block.length < write.bytes) return 'past the end of the image';
  const magic = block.readUInt16LE(0);
  if (magic !== verifyMagic) return `magic ${magic.toString(16)}, not ${verifyMagic.toString(16)}`;
  if (block.readUInt32LE(4) !== write.bytes) return `header length ${block.readUInt32LE(4)}`;
  if (Number(block.readBigUInt64LE(16)) !== write.offset) return `header offset ${block.readBigUInt64LE(16)}`;
  if (fioCrc32c(block.subarray(0, verifyHeaderBytes - 4)) !== block.readUInt32LE(verifyHeaderBytes - 4)) return 'header checksum';
  if (fioCrc32c(block.subarray(verifyHeaderBytes + crc32cAreaBytes)) !== block.readUInt32LE(verifyHeaderBytes)) return 'data checksum';
  return null;
}

/** Offsets fio's `--verify_only` reported as bad in its output. */
export function reportedBadOffsets(fioOutput: string): number[] {
  return [...fioOutput.matchAll(/verify: .* at file \S+ offset (\d+), length/g)].map((match) => Number(match[1]));
}
