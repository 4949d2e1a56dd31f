/**
 * Volumes: the block storage of a site (claims 12, 13, 14: several data volumes per site, one consistency
 * group). This file holds the {@link Volume} interface every backend implements, its configuration and
 * argument checks, the in-memory backend and the digest the observation compares.
 *
 * A volume is byte-addressed (`read` / `write` at any offset inside it) and block-structured: its size is a
 * whole number of blocks, and `blocksOf` says which blocks a range touches, so that a site can keep its
 * changed-block record (the differential resync's input) in blocks.
 */

import { createHash } from 'node:crypto';
import { assert } from './invariant.ts';
import { RefusalError } from './errors.ts';

/** Smallest block size: one disk sector. */
export const blockBytesMin = 512;

/** Largest block size: 1 MiB, far above any block size a storage array uses for replication tracking. */
export const blockBytesMax = 1024 * 1024;

/** Largest volume: 1 TiB. It keeps every byte offset an exact integer and a file backend on one file. */
export const volumeBytesMax = 2 ** 40;

/**
 * Largest in-memory volume: 1 GiB. Blocks are allocated when first written, so a sparse volume costs only
 * what was written, but a fully written one costs its size; this bounds that cost. With the smallest block it
 * also keeps the block map at 2^21 entries, far below V8's Map limit (2^24).
 */
export const memoryVolumeBytesMax = 2 ** 30;

/**
 * Largest single `read` or `write`: 64 MiB. Bulk copies (full copy, resync, digest) go block range by block
 * range, never as one call for a whole volume.
 */
export const ioBytesMax = 64 * 1024 * 1024;

/** Bytes a digest reads at a time: a multiple of every valid block size. */
export const digestChunkBytes = blockBytesMax;

/**
 * A data volume of a site.
 * @see claims 12, 13, 14
 */
export interface Volume {
  /** Size of the volume in bytes, a whole number of blocks. */
  readonly sizeBytes: number;
  /** Size of a block in bytes, a power of two in [{@link blockBytesMin}, {@link blockBytesMax}]. */
  readonly blockBytes: number;
  /**
   * Reads `length` bytes at byte `offset` into a new array (never a view of the volume's storage); bytes
   * never written read as zeros. Throws {@link OutOfRangeError} outside the volume.
   */
  read(offset: number, length: number): Uint8Array;
  /**
   * Writes `data` at byte `offset` (any offset and length inside the volume; split into blocks internally).
   * The volume keeps its own copy. Throws {@link OutOfRangeError}.
   */
  write(offset: number, data: Uint8Array): void;
  /**
   * Indexes of the blocks touched by a range (for changed-block records): `count` blocks from `first`;
   * `count` is 0 for an empty range. Throws {@link OutOfRangeError}.
   */
  blocksOf(offset: number, length: number): { first: number; count: number };
  /** Makes every completed write durable (a no-op in memory). */
  flush(): void;
  /** Releases the volume; any later call is a bug ({@link InvariantError} `'volume is open'`). */
  close(): void;
}

/** Why a range is outside a volume. `empty`: a host write of no byte (it would take an update number for nothing). */
export type OutOfRangeReason = 'notInteger' | 'negative' | 'pastEnd' | 'tooLarge' | 'empty';

/**
 * Thrown when a read or write (or a block query) names bytes outside the volume: an offset or length that is
 * not an integer, negative, ending past the end, or longer than {@link ioBytesMax}; and when a host write
 * names no byte at all. A refusal (code `OutOfRange`, the model's refusal of a host write outside a volume),
 * so that every edge (driver protocol, CLI, NBD) answers it as the typed refusal it is.
 */
export class OutOfRangeError extends RefusalError {
  readonly code = 'OutOfRange' as const;

  constructor(
    readonly offset: number,
    readonly length: number,
    readonly sizeBytes: number,
    readonly reason: OutOfRangeReason,
  ) {
    super(`range offset=${offset} length=${length} is outside the volume of ${sizeBytes} bytes (${reason})`);
    this.name = 'OutOfRangeError';
  }
}

/** Why a volume configuration is refused. */
export type VolumeConfigReason =
  | 'blockBytesNotPowerOfTwo'
  | 'blockBytesOutOfRange'
  | 'sizeNotPositive'
  | 'sizeNotMultipleOfBlock'
  | 'sizeTooLarge'
  | 'sizeMismatch';

/** Thrown when a volume is created or opened with a size or block size it cannot have. */
export class VolumeConfigError extends Error {
  constructor(
    readonly sizeBytes: number,
    readonly blockBytes: number,
    readonly reason: VolumeConfigReason,
    detail: string,
  ) {
    super(`volume sizeBytes=${sizeBytes} blockBytes=${blockBytes}: ${detail}`);
    this.name = 'VolumeConfigError';
  }
}

/**
 * Checks a volume configuration: `blockBytes` a power of two in [{@link blockBytesMin},
 * {@link blockBytesMax}], `sizeBytes` a positive multiple of it, at most `sizeBytesMax` (the backend's
 * limit). Throws {@link VolumeConfigError}.
 */
export function validateVolumeConfig(sizeBytes: number, blockBytes: number, sizeBytesMax: number): void {
  if (!Number.isSafeInteger(blockBytes) || blockBytes < blockBytesMin || blockBytes > blockBytesMax) {
    throw new VolumeConfigError(sizeBytes, blockBytes, 'blockBytesOutOfRange', `blockBytes must be an integer in [${blockBytesMin}, ${blockBytesMax}]`);
  }
  if ((blockBytes & (blockBytes - 1)) !== 0) {
    throw new VolumeConfigError(sizeBytes, blockBytes, 'blockBytesNotPowerOfTwo', 'blockBytes must be a power of two');
  }
  if (!Number.isSafeInteger(sizeBytes) || sizeBytes <= 0) {
    throw new VolumeConfigError(sizeBytes, blockBytes, 'sizeNotPositive', 'sizeBytes must be a positive integer');
  }
  if (sizeBytes % blockBytes !== 0) {
    throw new VolumeConfigError(sizeBytes, blockBytes, 'sizeNotMultipleOfBlock', 'sizeBytes must be a multiple of blockBytes');
  }
  if (sizeBytes > sizeBytesMax) {
    throw new VolumeConfigError(sizeBytes, blockBytes, 'sizeTooLarge', `sizeBytes must be <= ${sizeBytesMax}`);
  }
}

/**
 * Checks that `[offset, offset + length)` lies inside a volume of `sizeBytes` and is at most
 * {@link ioBytesMax} long; throws {@link OutOfRangeError}. An empty range at the very end is inside.
 */
export function checkRange(offset: number, length: number, sizeBytes: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length)) {
    throw new OutOfRangeError(offset, length, sizeBytes, 'notInteger');
  }
  if (offset < 0 || length < 0) throw new OutOfRangeError(offset, length, sizeBytes, 'negative');
  if (length > ioBytesMax) throw new OutOfRangeError(offset, length, sizeBytes, 'tooLarge');
  if (offset + length > sizeBytes) throw new OutOfRangeError(offset, length, sizeBytes, 'pastEnd');
}

/**
 * The blocks a checked range touches. Shared by the backends so that a changed-block record means the same
 * blocks whatever the backend.
 */
export function blocksOfRange(offset: number, length: number, blockBytes: number): { first: number; count: number } {
  const first = Math.floor(offset / blockBytes);
  if (length === 0) return { first, count: 0 };
  const lastBlock = Math.floor((offset + length - 1) / blockBytes);
  return { first, count: lastBlock - first + 1 };
}

/**
 * A volume held in memory, for the deterministic simulation and tests. Blocks are allocated when first
 * written (a block never written reads as zeros), so a large sparse volume costs only what was written;
 * memory is bounded by `sizeBytes` <= {@link memoryVolumeBytesMax}.
 */
export class MemoryVolume implements Volume {
  readonly sizeBytes: number;
  readonly blockBytes: number;
  readonly #blocks = new Map<number, Uint8Array>();
  #open = true;

  /** Creates an all-zero volume; throws {@link VolumeConfigError} for an invalid configuration. */
  constructor(sizeBytes: number, blockBytes: number) {
    validateVolumeConfig(sizeBytes, blockBytes, memoryVolumeBytesMax);
    this.sizeBytes = sizeBytes;
    this.blockBytes = blockBytes;
  }

  /** Number of blocks holding storage (written at least once): what the volume costs in memory. */
  get allocatedBlocks(): number {
    return this.#blocks.size;
  }

  read(offset: number, length: number): Uint8Array {
    assert(this.#open, 'volume is open', 'read after close');
    checkRange(offset, length, this.sizeBytes);
    const out = new Uint8Array(length);
    const blockBytes = this.blockBytes;
    let done = 0;
    while (done < length) {
      const position = offset + done;
      const index = Math.floor(position / blockBytes);
      const inBlock = position - index * blockBytes;
      const n = Math.min(blockBytes - inBlock, length - done);
      const block = this.#blocks.get(index);
      if (block !== undefined) out.set(block.subarray(inBlock, inBlock + n), done);
      done += n;
    }
    return out;
  }

  write(offset: number, data: Uint8Array): void {
    assert(this.#open, 'volume is open', 'write after close');
    checkRange(offset, data.length, this.sizeBytes);
    const blockBytes = this.blockBytes;
    let done = 0;
    while (done < data.length) {
      const position = offset + done;
      const index = Math.floor(position / blockBytes);
      const inBlock = position - index * blockBytes;
      const n = Math.min(blockBytes - inBlock, data.length - done);
      let block = this.#blocks.get(index);
      if (block === undefined) {
        block = new Uint8Array(blockBytes);
        this.#blocks.set(index, block);
      }
      block.set(data.subarray(done, done + n), inBlock);
      done += n;
    }
    assert(this.#blocks.size * blockBytes <= this.sizeBytes, 'volume memory within size', () => `${this.#blocks.size} blocks allocated`);
  }

  blocksOf(offset: number, length: number): { first: number; count: number } {
    assert(this.#open, 'volume is open', 'blocksOf after close');
    checkRange(offset, length, this.sizeBytes);
    return blocksOfRange(offset, length, this.blockBytes);
  }

  flush(): void {
    assert(this.#open, 'volume is open', 'flush after close');
  }

  close(): void {
    assert(this.#open, 'volume is open', 'close after close');
    this.#open = false;
    this.#blocks.clear();
  }
}

/**
 * The digest of a site's volumes that the observation compares: SHA-256 (hex) of all volumes' bytes
 * concatenated in order (model/README.md "Observation"). Streams {@link digestChunkBytes} at a time, so it
 * never holds a whole volume in memory.
 */
export function digestVolumes(volumes: readonly Volume[]): string {
  const hash = createHash('sha256');
  for (const volume of volumes) {
    for (let offset = 0; offset < volume.sizeBytes; offset += digestChunkBytes) {
      hash.update(volume.read(offset, Math.min(digestChunkBytes, volume.sizeBytes - offset)));
    }
  }
  return hash.digest('hex');
}
