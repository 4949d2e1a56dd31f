/**
 * Online verify (DRBD's `verify-alg`, Ceph's deep scrub): the three sites' volumes compared block by block,
 * each at the same update number, while host writes go on. This file is the pure part: the chunks a verify
 * walks, the digest of a block, the image of a chunk at an update number from a volume and the journal
 * entries not yet restored into it, the comparison of two sites' digests, and site 3's bounded list of the
 * verify markers it has not reached yet. The site process (`site/site-node.ts`) moves the messages and
 * keeps the results; the operator (`site/operator.ts`) runs it (`threesite verify`).
 *
 * **The consistent point.** A verify goes chunk by chunk ({@link verifyChunkBytesMax}). For a chunk the
 * primary, in one synchronous step of its event loop, reads its update number N (every write up to N is
 * journaled and written to its volume: the write path is synchronous), hashes the chunk, and sends a verify
 * marker (N) to the secondary and to site 3. No host write is applied in between: a write is applied in a
 * step of its own, so "holding the writes for the instant of one chunk" is what one step of the loop is.
 * Each link is one ordered stream, so the secondary handles the marker after every sync write up to N and
 * before any later one: it hashes its chunk as it is then, and that is its image at N (it answers "not
 * verified" when its last update number is not N: a write was lost in between). Site 3 has restored at
 * most N when the marker arrives (its source serves only acknowledged entries, none after N yet); it
 * hashes the chunk once it has received N, as its volume plus the journal entries through N
 * ({@link chunkAt}): the bytes a restore through N writes, over the bytes already there. Site 3 does not
 * stop a restore at N: the model's RESTORE_JOURNAL restores everything received at once, and the traces of
 * the site processes are checked against it.
 *
 * **The digest** of a block is SHA-256 truncated to {@link verifyDigestBytes} (16) bytes, from `node:crypto`:
 * in Node, hardware-accelerated where the CPU has SHA extensions, and 128 bits leave no chance that two
 * different blocks compare equal by accident (DRBD's `verify-alg` takes any kernel hash; Ceph's deep scrub
 * uses crc32c, which is not meant to resist even accidental patterns as well).
 */

import { createHash } from 'node:crypto';
import { assert } from './invariant.ts';
import type { JournalEntry } from './journal.ts';
import type { Volume } from './volume.ts';

/**
 * Bytes of volume one verify step hashes at most: 1 MiB, a multiple of every valid block size. The primary
 * hashes a chunk in one step of its event loop (about a millisecond), which holds host writes that long.
 */
export const verifyChunkBytesMax = 1024 * 1024;

/** Bytes of one block's digest: SHA-256 truncated to 128 bits. */
export const verifyDigestBytes = 16;

/** Digest bytes of one chunk at most: a chunk of the smallest blocks (512 bytes). */
export const verifyChunkDigestBytesMax = (verifyChunkBytesMax / 512) * verifyDigestBytes;

/**
 * Verify markers site 3 holds at most that it has not reached yet (it has not received their update
 * number). One more is answered at once as not verified ({@link VerifyMarkers.add}), and the primary sends
 * no more than this many before site 3 has answered (so at its normal lag site 3 never refuses one).
 */
export const verifyMarkersPendingMax = 64;

/** Chunks the primary has sent to its secondary and not yet had answered, at most: the verify's window. */
export const verifyChunksInFlightMax = 4;

/** Differing blocks a verify result lists per site at most; the count says how many there were in all. */
export const verifyDifferencesListedMax = 1000;

/** Verify results a primary keeps (in memory, newest last); `threesite status` shows the last. */
export const verifyResultsKept = 8;

/**
 * Longest a verify runs: 100 s, which is under the operator's wait for a site's answer
 * (`site-control.ts` `controlAnswerTimeoutMsDefault`, 120 s), so the operator always hears the result. At
 * the deadline the chunks not hashed yet and the answers not received are *not verified*.
 */
export const verifyDeadlineMsMax = 100_000;

/** Default deadline of a verify: 60 s (volumes of a deployment of tests verify in well under a second). */
export const verifyDeadlineMsDefault = 60_000;

/** Why a site's part of a chunk was not verified: a short sentence, at most this many characters. */
export const verifyReasonCharsMax = 200;

/** One step of a verify: `length` bytes of `volume` from byte `offset`, whole blocks. */
export interface VerifyChunk {
  volume: number;
  offset: number;
  length: number;
}

/**
 * The chunks of a verify of `volumes` (each volume of `volumeBytes`), in order: every volume cut into
 * {@link verifyChunkBytesMax} pieces, the last one shorter. Lazily, one at a time (a 1 TiB volume has a
 * million chunks).
 */
export function* verifyChunks(volumes: readonly number[], volumeBytes: number): Generator<VerifyChunk> {
  assert(Number.isSafeInteger(volumeBytes) && volumeBytes > 0, 'a verified volume has bytes', () => `${volumeBytes}`);
  for (const volume of volumes) {
    for (let offset = 0; offset < volumeBytes; offset += verifyChunkBytesMax) {
      yield { volume, offset, length: Math.min(verifyChunkBytesMax, volumeBytes - offset) };
    }
  }
}

/** The digests of the blocks of `bytes` (whole blocks of `blockBytes`), back to back, {@link verifyDigestBytes} each. */
export function blockDigests(bytes: Uint8Array, blockBytes: number): Uint8Array {
  assert(bytes.length % blockBytes === 0, 'a verified chunk is whole blocks', () => `${bytes.length} bytes, blocks of ${blockBytes}`);
  const blocks = bytes.length / blockBytes;
  const out = new Uint8Array(blocks * verifyDigestBytes);
  for (let b = 0; b < blocks; b += 1) {
    const digest = createHash('sha256')
      .update(bytes.subarray(b * blockBytes, (b + 1) * blockBytes))
      .digest();
    out.set(digest.subarray(0, verifyDigestBytes), b * verifyDigestBytes);
  }
  return out;
}

/**
 * Writes over `bytes` (the bytes of `chunk`) every entry of `entries` through `updateNumber`, in their
 * order, where it overlaps the chunk: what restoring those entries does to the chunk. Entries of other
 * volumes or ranges, and entries after `updateNumber`, change nothing.
 */
export function overlayEntries(bytes: Uint8Array, chunk: VerifyChunk, entries: readonly JournalEntry[], updateNumber: number): void {
  assert(bytes.length === chunk.length, 'an overlay covers its chunk', () => `${bytes.length} bytes for ${chunk.length}`);
  const end = chunk.offset + chunk.length;
  for (const entry of entries) {
    if (entry.updateNumber > updateNumber) break;
    if (entry.volume !== chunk.volume) continue;
    const from = Math.max(entry.offset, chunk.offset);
    const to = Math.min(entry.offset + entry.data.length, end);
    if (from >= to) continue;
    bytes.set(entry.data.subarray(from - entry.offset, to - entry.offset), from - chunk.offset);
  }
}

/**
 * The bytes of `chunk` as a restore through `updateNumber` leaves them: `volume`'s bytes now, with every
 * entry of `entries` (in update-number order, the journal's entries after the volume's restored number)
 * through `updateNumber` written over them ({@link overlayEntries}).
 */
export function chunkAt(volume: Volume, chunk: VerifyChunk, entries: readonly JournalEntry[], updateNumber: number): Uint8Array {
  const bytes = volume.read(chunk.offset, chunk.length);
  overlayEntries(bytes, chunk, entries, updateNumber);
  return bytes;
}

/**
 * The byte offsets (in the volume) of the blocks whose digests differ between `reference` and `other`, the
 * digests of one chunk from `chunkOffset` in blocks of `blockBytes`. Both must hold the same number of
 * digests (a site that answered for another range is a bug, asserted).
 */
export function differingBlocks(reference: Uint8Array, other: Uint8Array, chunkOffset: number, blockBytes: number): number[] {
  assert(reference.length === other.length, 'two sites hash the same blocks of a chunk', () => `${reference.length} and ${other.length} digest bytes`);
  assert(reference.length % verifyDigestBytes === 0, 'a chunk has whole digests', () => `${reference.length} bytes`);
  const out: number[] = [];
  for (let at = 0; at < reference.length; at += verifyDigestBytes) {
    let same = true;
    for (let i = at; i < at + verifyDigestBytes; i += 1) {
      if (reference[i] !== other[i]) {
        same = false;
        break;
      }
    }
    if (!same) out.push(chunkOffset + (at / verifyDigestBytes) * blockBytes);
  }
  return out;
}

/** A block two sites hold differently: the volume and the byte offset of the block. */
export interface DifferingBlock {
  volume: number;
  offset: number;
}

/** What a verify found at one site (the secondary or site 3), against the primary. */
export interface VerifySiteResult {
  site: 1 | 2 | 3;
  /** The lowest and highest update numbers at which a chunk was compared (null: none was). */
  updateNumbers: { first: number; last: number } | null;
  /** Blocks compared with the primary's. */
  blocksCompared: number;
  /** Blocks that differ from the primary's (all of them, listed or not). */
  blocksDiffering: number;
  /** The first {@link verifyDifferencesListedMax} differing blocks, in the order found. */
  differing: DifferingBlock[];
  /** Blocks not compared (the site did not answer for their chunk, or answered that it could not hash it). */
  blocksNotVerified: number;
  /** Why, for the first chunk not verified (null when every chunk was). */
  notVerifiedReason: string | null;
}

/** The outcome of a verify: equal, differing blocks found, or some blocks could not be compared. */
export type VerifyOutcome = 'equal' | 'differ' | 'notVerified';

/** A verify's result, as the primary that ran it keeps it and `threesite verify` prints it. */
export interface VerifyResult {
  /** The primary's number for this verify (from 1, per process). */
  verifyId: number;
  /** The site that ran it (the primary) and whose blocks are the reference. */
  primary: 1 | 2;
  /** When it started: milliseconds since the Unix epoch, as the operator's clock said (0: not given). */
  startedAtMs: number;
  volumes: number[];
  /** Blocks of the primary hashed. */
  blocks: number;
  /** The two other sites, secondary first. */
  sites: [VerifySiteResult, VerifySiteResult];
  /** `differ` if any block differs; else `notVerified` if any block was not compared; else `equal`. */
  outcome: VerifyOutcome;
}

/** A site's part of a verify under way: what it has compared so far (see {@link VerifySiteResult}). */
export class VerifyTally {
  readonly #result: VerifySiteResult;

  constructor(site: 1 | 2 | 3) {
    this.#result = { site, updateNumbers: null, blocksCompared: 0, blocksDiffering: 0, differing: [], blocksNotVerified: 0, notVerifiedReason: null };
  }

  /** The site's digests of a chunk at `updateNumber`, against the primary's: returns the differing blocks. */
  compared(chunk: VerifyChunk, updateNumber: number, reference: Uint8Array, digests: Uint8Array, blockBytes: number): DifferingBlock[] {
    const offsets = differingBlocks(reference, digests, chunk.offset, blockBytes);
    const r = this.#result;
    r.blocksCompared += reference.length / verifyDigestBytes;
    r.blocksDiffering += offsets.length;
    const found = offsets.map((offset) => ({ volume: chunk.volume, offset }));
    for (const block of found) if (r.differing.length < verifyDifferencesListedMax) r.differing.push(block);
    r.updateNumbers = r.updateNumbers === null ? { first: updateNumber, last: updateNumber } : { first: Math.min(r.updateNumbers.first, updateNumber), last: Math.max(r.updateNumbers.last, updateNumber) };
    return found;
  }

  /** A chunk of `blocks` blocks this site could not hash, or did not answer for. */
  notVerified(blocks: number, reason: string): void {
    this.#result.blocksNotVerified += blocks;
    this.#result.notVerifiedReason ??= reason;
  }

  get result(): VerifySiteResult {
    return { ...this.#result, differing: [...this.#result.differing] };
  }
}

/** The outcome of a verify from its sites' results (see {@link VerifyResult.outcome}). */
export function verifyOutcomeOf(sites: readonly VerifySiteResult[]): VerifyOutcome {
  if (sites.some((site) => site.blocksDiffering > 0)) return 'differ';
  if (sites.some((site) => site.blocksNotVerified > 0)) return 'notVerified';
  return 'equal';
}

/** A verify marker site 3 holds until it has received its update number. */
export interface VerifyMarker {
  verifyId: number;
  chunk: VerifyChunk;
  updateNumber: number;
}

/**
 * Site 3's verify markers not reached yet, oldest first, at most {@link verifyMarkersPendingMax}. Markers
 * arrive in update-number order (the primary sends them in its order, over one ordered link), so the oldest
 * is always the next to reach.
 */
export class VerifyMarkers {
  readonly #markers: VerifyMarker[] = [];

  /** Holds `marker`, or returns why not: the list is at its bound. */
  add(marker: VerifyMarker): string | null {
    if (this.#markers.length >= verifyMarkersPendingMax) return `site 3 holds ${verifyMarkersPendingMax} verify markers it has not reached (verifyMarkersPendingMax)`;
    const last = this.#markers.at(-1);
    assert(last === undefined || last.updateNumber <= marker.updateNumber, 'verify markers arrive in update-number order', () => `${marker.updateNumber} after ${last?.updateNumber}`);
    this.#markers.push(marker);
    return null;
  }

  /** Takes the markers whose update number is at most `received`, oldest first. */
  takeReached(received: number): VerifyMarker[] {
    let n = 0;
    while (n < this.#markers.length && (this.#markers[n] as VerifyMarker).updateNumber <= received) n += 1;
    return this.#markers.splice(0, n);
  }

  /** Takes every marker (site 3 can no longer hash them: its pair is not copying, its link went down). */
  takeAll(): VerifyMarker[] {
    return this.#markers.splice(0);
  }

  get size(): number {
    return this.#markers.length;
  }
}
