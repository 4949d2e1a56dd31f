/**
 * The file backend of a {@link Journal}: encoded entries (see `journal.ts`) appended to segment files
 * `journal-000001.seg`, `journal-000002.seg`, ... in one directory, rolled at `segmentBytesMax`, with
 * synchronous positional I/O.
 *
 * Layout and durability:
 * - `append` writes the entry to the current segment (in the operating system's cache); `flush` makes every
 *   appended entry durable (fsync of the segment and, when a segment was created, of the directory). A
 *   segment is fsynced before the next one is started, so a later segment never holds data while an earlier
 *   one lost its tail. So that this fsync at a roll does not stall the process for a whole segment's worth
 *   of writeback (64 MiB), the segment being appended to is also fsynced in the background (libuv's thread
 *   pool) after every {@link backgroundSyncBytes} appended: the roll's own fsync, still synchronous, then
 *   finds little left to write. A background fsync that fails fails the journal like a failed write.
 * - `journal.meta` holds the trim point (`floor`: every update number `<= floor` is discarded, so
 *   `first = floor + 1`; after `reset(last)`, `floor = last`), `firstSegment`, the first segment still in
 *   use, and `floorExact`. It is replaced atomically (write a temporary file, fsync, rename, fsync the
 *   directory) *before* any segment it makes obsolete is deleted, so a crash in between leaves only segments
 *   the next open deletes. It is *not* rewritten at every trim (that cost two fsyncs, a rename and a
 *   directory fsync per trim): a trim inside the segments in use only moves the floor in memory, and the
 *   file is rewritten when a segment is deleted, at `reset` and at `close`. So after a crash the saved floor
 *   may be **stale**: lower than the real one. That is safe because a stale floor only brings back entries
 *   that were trimmed, never loses one: the entries are still in the segment, unchanged (segments are
 *   append-only), and every user of a journal tolerates a journal that holds more of its past (a sync
 *   member's journal then covers more). The saved floor is only ever a lower bound of the real one.
 * - `journal.floor`, the **floor record**, holds the floor after every trim and reset: 16 bytes written in
 *   place, with no fsync, so it costs one small write per trim, not a rename and three fsyncs. It survives
 *   a crash of the process (kill -9: the operating system's cache keeps it) though not always a power
 *   loss, which is why it does not replace `journal.meta`: at open after a crash, {@link RecoveryReport.floorRecorded}
 *   gives it when it is valid and between the saved floor and the last entry, and the site (site-open.ts)
 *   redoes the entries up to it into its volumes (so the write-ahead rule holds even if the volumes lost
 *   those writes) and trims them: site 3's restored number, which is its journal's floor, never goes back at
 *   a restart, and site 3 never restores again an entry it had restored. After a power loss that lost the
 *   record, the saved floor is the lower bound it always was.
 * - `floorExact` says whether the saved floor is the real one: true only when `close` wrote it (and for a
 *   new journal); the first trim after an open that moves the floor without deleting a segment clears it
 *   (one rewrite per open). At open, a journal whose floor may be stale and whose recovered entries exceed
 *   the limits has its floor raised, oldest entries first, until they fit
 *   ({@link RecoveryReport.floorRaisedEntries}): before the crash the journal held at most its limits, so its
 *   real floor was at least that high and the raised floor is still a lower bound. With an exact floor,
 *   entries over the limits are refused as before ({@link JournalLimitsError}: the limits were lowered).
 * - `open` recovers every complete valid entry. A torn or corrupt tail (the bytes after the last valid entry,
 *   with no valid entry after them) is truncated away and reported; a defect followed by valid data, in any
 *   segment, or a gap in the update numbers, is a {@link CorruptJournalError}: never skipped silently.
 *
 * One process opens a journal directory at a time; this is the caller's responsibility.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { crc32c } from '@node-rs/crc32';
import { asDeviceError, DeviceError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { siteDirMode, siteFileMode } from './file-modes.ts';
import {
  checkAllFit,
  checkBatchArgument,
  checkUpdateNumberArgument,
  CorruptEntryError,
  decodeEntry,
  encodeEntry,
  entryBytes,
  entryHeaderBytes,
  entryMagic,
  isHighWater,
  JournalFullError,
  JournalLimitsError,
  NotCoveredError,
  validateEntry,
  validateJournalLimits,
  type DecodeResult,
  type Journal,
  type JournalEntry,
  type JournalLimits,
} from '../core/journal.ts';

/** Default size at which a segment is closed and the next one started: 64 MiB. */
export const segmentBytesMax = 64 * 1024 * 1024;

/**
 * Largest segment file `open` reads: 1 GiB. A segment normally stays below its `segmentBytesMax` (one
 * entry larger than that goes alone into its own segment); a bigger file is not a segment of ours.
 */
export const segmentFileBytesCeiling = 2 ** 30;

/** Largest `bytesMax` of a file journal: 1 TiB. */
export const fileJournalBytesMaxCeiling = 2 ** 40;

/** Name of the metadata file in a journal directory. */
export const journalMetaName = 'journal.meta';

const metaTempName = 'journal.meta.tmp';
const metaFormat = 'threesite-journal-meta';
/** Name of the floor record in a journal directory (see the file comment). */
export const journalFloorRecordName = 'journal.floor';

/** Bytes of the floor record: a magic number, the floor (u64), its CRC-32C. */
export const floorRecordBytes = 16;

/** The floor record's magic number ("TSFL" little-endian). */
const floorRecordMagic = 0x4c465354;

/** Version 2 adds `floorExact`; a version-1 file (every trim rewrote it) always holds the exact floor. */
const metaVersion = 3;
const segmentNamePattern = /^journal-(\d{6,})\.seg$/;

/** Bytes appended to a segment after which it is fsynced in the background (see the file comment): 8 MiB. */
export const backgroundSyncBytes = 8 * 1024 * 1024;

/**
 * Bytes of the most recently appended entries a journal keeps in memory, encoded as in its segments, so that
 * reading them soon after (a source serving site 3's pulls) needs no file read: 8 MiB. Entries read from
 * there are decoded and their checksums verified as they are from a segment.
 */
export const tailCacheBytesMax = 8 * 1024 * 1024;

/**
 * Largest encoded entry the tail cache keeps: 64 KiB. Keeping large entries alive (a 1 MiB write's) cost
 * more than it saved (measured: the 1 MiB job's CPU per write at the source rose by half), and reading one
 * back from its segment costs little per byte; an entry above it empties the cache.
 */
export const tailCacheEntryBytesMax = 64 * 1024;

/** Options of {@link FileJournal.open}. */
export interface FileJournalOptions {
  /** Size at which a segment is rolled; defaults to {@link segmentBytesMax}. Tests use small values. */
  segmentBytesMax?: number;
  /** Bytes between background fsyncs of the segment appended to; defaults to {@link backgroundSyncBytes}. */
  backgroundSyncBytes?: number;
  /** Bytes of recent entries kept in memory; defaults to {@link tailCacheBytesMax}; 0 reads every entry from its segment. */
  tailCacheBytes?: number;
  /**
   * Called before a trim or a reset is made durable (before `journal.meta` moves the floor and segments are
   * deleted): the write-ahead rule. The entries about to be discarded must be durable in the volumes first,
   * so the site flushes its volumes here; a crash afterwards can then lose no write the journal no longer
   * holds. Unset: nothing to flush (tests of the journal alone).
   */
  beforeDurableTrim?: () => void;
}

/** What `open` found and did. */
export interface RecoveryReport {
  /** Entries held after recovery (update numbers after the trim point). */
  entriesRecovered: number;
  /** Bytes of torn or corrupt tail truncated away (0 when the journal was clean). */
  discardedBytes: number;
  /** Why the tail was discarded, or null when nothing was. */
  discardedReason: 'torn' | 'corrupt' | null;
  /**
   * Entries above a possibly stale saved floor that were discarded from the front because they exceed the
   * limits (see the file comment): they had been trimmed before the crash. 0 after a clean close.
   */
  floorRaisedEntries: number;
  /**
   * Whether the journal was closed cleanly before this open (`close` recorded its last update number). After a
   * clean shutdown there is no torn tail to cut: a bad last entry is corruption ({@link CorruptJournalError}),
   * and the site need not redo its journal into its volumes.
   */
  cleanShutdown: boolean;
  /**
   * After a shutdown that was not clean: the floor the floor record holds (the real trim point before the
   * crash) when it is above the saved floor and at most the last entry recovered; null otherwise (a clean
   * shutdown, whose saved floor is exact; no record, a damaged one, or one the saved floor already passed).
   * The journal itself still starts at the saved floor: its caller redoes the entries up to this into its
   * volumes, then trims them (site-open.ts).
   */
  floorRecorded: number | null;
}

/** Why a journal directory cannot be opened. */
export type CorruptJournalReason = 'corrupt' | 'torn' | 'gap' | 'metadata' | 'segmentTooLarge';

/**
 * Thrown by {@link FileJournal.open} when the journal is damaged in a way recovery must not hide: a torn or
 * corrupt entry followed by valid data, a gap in update numbers, or bad metadata. `segment` is the file name
 * (or the metadata file's), `offset` the byte position in it.
 */
export class CorruptJournalError extends Error {
  constructor(
    readonly dir: string,
    readonly segment: string,
    readonly offset: number,
    readonly reason: CorruptJournalReason,
    detail: string,
  ) {
    super(`journal ${dir}: ${segment} at byte ${offset} (${reason}): ${detail}`);
    this.name = 'CorruptJournalError';
  }
}

interface Meta {
  floor: number;
  firstSegment: number;
  /** The floor is the real trim point (written by `close`), not a lower bound of it. */
  floorExact: boolean;
  /** The last update number at a clean `close`, or null while the journal is open (or was not closed cleanly). */
  cleanLast: number | null;
}

/** One segment file in use: entries with consecutive update numbers from `firstU`, at `offsets`. */
interface Segment {
  index: number;
  name: string;
  /** Bytes of valid entries in the file (the append position). */
  bytes: number;
  firstU: number;
  /** Byte position of each entry, in update-number order (trimmed entries of a partly trimmed segment included). */
  offsets: number[];
}

function segmentName(index: number): string {
  return `journal-${String(index).padStart(6, '0')}.seg`;
}

function segmentLast(segment: Segment): number {
  return segment.firstU + segment.offsets.length - 1;
}

/** Byte position just past the entry with update number `u` in `segment`. */
function segmentEnd(segment: Segment, u: number): number {
  const next = u - segment.firstU + 1;
  return next < segment.offsets.length ? (segment.offsets[next] as number) : segment.bytes;
}

/** The floor record's bytes for `floor` (see the file comment). */
export function encodeFloorRecord(floor: number): Uint8Array {
  const out = new Uint8Array(floorRecordBytes);
  const view = new DataView(out.buffer);
  view.setUint32(0, floorRecordMagic, true);
  view.setBigUint64(4, BigInt(floor), true);
  view.setUint32(12, crc32c(out.subarray(0, 12)), true);
  return out;
}

/**
 * The floor a directory's floor record holds, or null when there is none or it does not check (a length
 * other than {@link floorRecordBytes}, another magic number, a wrong checksum, a floor past 2^53): the record
 * is written without an fsync, so a power loss may leave it so, and the saved floor is then the lower bound.
 */
export function readFloorRecord(dir: string): number | null {
  const file = path.join(dir, journalFloorRecordName);
  let fd: number;
  try {
    fd = fs.openSync(file, 'r');
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
    throw error;
  }
  try {
    // One byte more than a record: a longer file is not one.
    const bytes = new Uint8Array(floorRecordBytes + 1);
    const length = fs.readSync(fd, bytes, 0, bytes.length, 0);
    if (length !== floorRecordBytes) return null;
    const view = new DataView(bytes.buffer);
    if (view.getUint32(0, true) !== floorRecordMagic || view.getUint32(12, true) !== crc32c(bytes.subarray(0, 12))) return null;
    const floor = view.getBigUint64(4, true);
    return floor > BigInt(Number.MAX_SAFE_INTEGER) ? null : Number(floor);
  } finally {
    fs.closeSync(fd);
  }
}

function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function readAll(fd: number, out: Uint8Array, position: number, where: string): void {
  let done = 0;
  while (done < out.length) {
    const n = fs.readSync(fd, out, done, out.length - done, position + done);
    if (n === 0) throw new CorruptEntryError(where, position + done, 'length', 'segment ends before its indexed entries');
    done += n;
  }
}

function writeAll(fd: number, data: Uint8Array, position: number): void {
  let done = 0;
  while (done < data.length) done += fs.writeSync(fd, data, done, data.length - done, position + done);
}

/** Writes `chunks` back to back from `position`, with as few `writev` calls as the kernel allows. */
function writevAll(fd: number, chunks: readonly Uint8Array[], position: number): void {
  let pending = chunks.slice();
  let at = position;
  while (pending.length > 0) {
    let written = fs.writevSync(fd, pending, at);
    at += written;
    // A short write: drop what went out, keep the rest of a chunk written in part.
    let k = 0;
    while (k < pending.length && written >= (pending[k] as Uint8Array).length) {
      written -= (pending[k] as Uint8Array).length;
      k += 1;
    }
    pending = pending.slice(k);
    if (written > 0) pending[0] = (pending[0] as Uint8Array).subarray(written);
  }
}

/**
 * True when a valid entry with an update number above `lastGood` starts after the defect at `at`: the
 * defect is then in the middle of the journal, not its tail. When the defective entry's header is sound its
 * extent is known and the search starts after it; otherwise every later byte position is tried. This errs on
 * the side of refusing: host data that happens to embed a valid encoded entry with a higher update number
 * makes a damaged tail look like middle damage, and the operator decides instead of recovery.
 */
function validEntryFollows(bytes: Uint8Array, at: number, defect: Exclude<DecodeResult, { kind: 'ok' }>, lastGood: number): boolean {
  if (defect.kind === 'torn') return false;
  const start = defect.headerSound ? at + defect.bytes : at + 1;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  for (let q = start; q + entryHeaderBytes <= bytes.length; q += 1) {
    if (view.getUint32(q, true) !== entryMagic) continue;
    const candidate = decodeEntry(bytes, q);
    if (candidate.kind === 'ok' && candidate.entry.updateNumber > lastGood) return true;
  }
  return false;
}

/** A journal stored in segment files in one directory. See the file comment for layout and recovery. */
export class FileJournal implements Journal {
  readonly limits: JournalLimits;
  /** The directory holding the segments and the metadata. */
  readonly dir: string;
  /** The size at which this journal rolls segments. */
  readonly segmentBytesMax: number;
  #segments: Segment[];
  #floor: number;
  #last: number;
  #entries: number;
  #bytes: number;
  #nextSegment: number;
  /** Write descriptor of the last segment, or null when there is none. */
  #writeFd: number | null = null;
  #writeDirty = false;
  #dirDirty = false;
  #readCache: { index: number; fd: number } | null = null;
  #open = true;
  readonly #backgroundSyncBytes: number;
  readonly #tailCacheBytes: number;
  /**
   * The last appended entries, encoded (`encoded[head..]` hold `firstU..last`), at most `#tailCacheBytes`
   * bytes: see {@link tailCacheBytesMax}. Empty (firstU = last + 1) after open and reset.
   */
  #tail: { firstU: number; encoded: Uint8Array[]; head: number; bytes: number };
  /** Bytes appended to the current segment since its last background fsync started. */
  #unsyncedBytes = 0;
  /** The descriptor a background fsync is running on, or null; it is closed only after that fsync ends. */
  #backgroundSync: number | null = null;
  /** The descriptor to close when the background fsync ends (it was released while the fsync ran). */
  #closeAfterSync: number | null = null;
  /** Whether `journal.meta` on disk claims its floor is exact (then the next trim must clear that first). */
  #metaExact: boolean;
  /** The floor `journal.meta` on disk holds (a lower bound of {@link #floor}). */
  #savedFloor: number;
  /** Set when a write failed: the journal's files may disagree with its memory, so only close is allowed. */
  #failure: unknown = null;
  /** See {@link FileJournalOptions.beforeDurableTrim}. */
  readonly #beforeDurableTrim: (() => void) | null;
  /** Descriptor of the floor record (`journal.floor`), rewritten in place at every trim and reset. */
  readonly #floorFd: number;

  private constructor(
    dir: string,
    limits: JournalLimits,
    options: {
      segmentBytesMax: number;
      segments: Segment[];
      floor: number;
      last: number;
      entries: number;
      bytes: number;
      nextSegment: number;
      metaExact: boolean;
      backgroundSyncBytes: number;
      tailCacheBytes: number;
      beforeDurableTrim: (() => void) | null;
    },
  ) {
    this.dir = dir;
    this.limits = limits;
    this.segmentBytesMax = options.segmentBytesMax;
    this.#segments = options.segments;
    this.#floor = options.floor;
    this.#last = options.last;
    this.#entries = options.entries;
    this.#bytes = options.bytes;
    this.#nextSegment = options.nextSegment;
    this.#metaExact = options.metaExact;
    this.#savedFloor = options.floor;
    this.#backgroundSyncBytes = options.backgroundSyncBytes;
    this.#tailCacheBytes = options.tailCacheBytes;
    this.#beforeDurableTrim = options.beforeDurableTrim;
    this.#tail = { firstU: options.last + 1, encoded: [], head: 0, bytes: 0 };
    const current = this.#segments.at(-1);
    if (current !== undefined) this.#writeFd = fs.openSync(path.join(dir, current.name), fs.constants.O_RDWR);
    this.#floorFd = fs.openSync(path.join(dir, journalFloorRecordName), fs.constants.O_RDWR | fs.constants.O_CREAT, siteFileMode);
  }

  /**
   * Opens (creating if missing) the journal in `dir` and recovers it. Throws {@link JournalLimitsError} for
   * invalid limits or when the recovered entries exceed them, and {@link CorruptJournalError} for damage
   * recovery must not hide (see the file comment).
   */
  static open(dir: string, limits: JournalLimits, options: FileJournalOptions = {}): { journal: FileJournal; recovery: RecoveryReport } {
    const checkedLimits = validateJournalLimits(limits, fileJournalBytesMaxCeiling);
    const rollBytes = options.segmentBytesMax ?? segmentBytesMax;
    const syncBytes = options.backgroundSyncBytes ?? backgroundSyncBytes;
    const cacheBytes = options.tailCacheBytes ?? tailCacheBytesMax;
    assert(Number.isSafeInteger(cacheBytes) && cacheBytes >= 0 && cacheBytes <= tailCacheBytesMax, 'tailCacheBytes within its ceiling', () => `tailCacheBytes=${cacheBytes}`);
    assert(Number.isSafeInteger(syncBytes) && syncBytes >= 1, 'backgroundSyncBytes is a positive integer', () => `backgroundSyncBytes=${syncBytes}`);
    assert(
      Number.isSafeInteger(rollBytes) && rollBytes >= 1 && rollBytes <= segmentFileBytesCeiling,
      'segmentBytesMax within its ceiling',
      () => `segmentBytesMax=${rollBytes}`,
    );
    fs.mkdirSync(dir, { recursive: true, mode: siteDirMode });
    const names = fs.readdirSync(dir);
    if (names.includes(metaTempName)) fs.unlinkSync(path.join(dir, metaTempName));
    const indexes = names
      .map((name) => segmentNamePattern.exec(name)?.[1])
      .filter((digits): digits is string => digits !== undefined)
      .map(Number)
      .sort((a, b) => a - b);
    let meta = FileJournal.#readMeta(dir);
    if (meta === null) {
      if (indexes.length > 0) {
        throw new CorruptJournalError(dir, journalMetaName, 0, 'metadata', `missing while ${indexes.length} segments exist`);
      }
      meta = { floor: 0, firstSegment: 1, floorExact: true, cleanLast: 0 };
      FileJournal.#writeMeta(dir, meta);
    }
    const { firstSegment } = meta;
    let floor = meta.floor;
    for (const index of indexes) {
      if (index < firstSegment) fs.unlinkSync(path.join(dir, segmentName(index)));
    }
    const live = indexes.filter((index) => index >= firstSegment);
    const sizes = live.map((index) => fs.statSync(path.join(dir, segmentName(index))).size);

    const segments: Segment[] = [];
    let expected: number | null = null;
    let entries = 0;
    let bytes = 0;
    const cleanLast = meta.cleanLast;
    const recovery: RecoveryReport = { entriesRecovered: 0, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 0, cleanShutdown: cleanLast !== null, floorRecorded: null };
    for (let k = 0; k < live.length; k += 1) {
      const index = live[k] as number;
      const name = segmentName(index);
      const file = path.join(dir, name);
      const size = sizes[k] as number;
      if (size > segmentFileBytesCeiling) {
        throw new CorruptJournalError(dir, name, 0, 'segmentTooLarge', `${size} bytes > ${segmentFileBytesCeiling}`);
      }
      const buffer = size === 0 ? new Uint8Array(0) : fs.readFileSync(file);
      const segment: Segment = { index, name, bytes: 0, firstU: 0, offsets: [] };
      let at = 0;
      while (at < buffer.length) {
        const result = decodeEntry(buffer, at, name);
        if (result.kind === 'ok') {
          const u = result.entry.updateNumber;
          if (expected === null ? u > floor + 1 : u !== expected) {
            const wanted = expected === null ? `at most ${floor + 1} (after the trim point)` : String(expected);
            throw new CorruptJournalError(dir, name, at, 'gap', `entry u=${u} where ${wanted} was expected`);
          }
          expected = u + 1;
          if (segment.offsets.length === 0) segment.firstU = u;
          segment.offsets.push(at);
          if (u > floor) {
            entries += 1;
            bytes += result.bytes;
          }
          at += result.bytes;
          continue;
        }
        const laterData = sizes.slice(k + 1).some((later) => later > 0);
        const lastGood = expected === null ? 0 : expected - 1;
        const why = result.kind === 'corrupt' ? result.error.message : `entry ends past byte ${at + result.neededBytes}`;
        if (laterData || validEntryFollows(buffer, at, result, lastGood)) {
          throw new CorruptJournalError(dir, name, at, result.kind, `followed by valid data: ${why}`);
        }
        // A clean close left a whole journal: a bad tail now was damaged at rest, and cutting it would
        // silently drop an entry that may have been acknowledged (and hand its update number out again).
        if (cleanLast !== null) {
          throw new CorruptJournalError(dir, name, at, 'corrupt', `after a clean shutdown at u=${cleanLast}, the entry after u=${lastGood} is damaged: ${why}`);
        }
        recovery.discardedBytes = buffer.length - at;
        recovery.discardedReason = result.kind;
        const fd = fs.openSync(file, fs.constants.O_RDWR);
        try {
          fs.ftruncateSync(fd, at);
          fs.fsyncSync(fd);
        } finally {
          fs.closeSync(fd);
        }
        break;
      }
      segment.bytes = at;
      if (segment.offsets.length === 0 || segmentLast(segment) <= floor) {
        // Empty, or wholly trimmed (a crash came between the metadata and the delete): nothing to keep.
        fs.unlinkSync(file);
      } else {
        segments.push(segment);
      }
    }
    const last = expected === null ? floor : Math.max(floor, expected - 1);
    if (cleanLast !== null && last !== cleanLast) {
      throw new CorruptJournalError(dir, journalMetaName, 0, 'metadata', `closed cleanly at u=${cleanLast}, but the segments end at u=${last}`);
    }
    if (!meta.floorExact && (entries > checkedLimits.entriesMax || bytes > checkedLimits.bytesMax)) {
      // A stale floor (see the file comment): raise it, oldest entries first, until the rest fit.
      const raised = FileJournal.#floorWithin(segments, floor, last, entries, bytes, checkedLimits);
      recovery.floorRaisedEntries = raised.floor - floor;
      entries -= recovery.floorRaisedEntries;
      bytes = raised.bytes;
      floor = raised.floor;
      let obsolete = 0;
      while (obsolete < segments.length - 1 && segmentLast(segments[obsolete] as Segment) <= floor) obsolete += 1;
      const kept = segments[obsolete];
      FileJournal.#writeMeta(dir, { floor, firstSegment: kept === undefined ? firstSegment : kept.index, floorExact: false, cleanLast: null });
      for (const segment of segments.splice(0, obsolete)) fs.unlinkSync(path.join(dir, segment.name));
    }
    fsyncDir(dir);
    if (cleanLast === null) {
      const recorded = readFloorRecord(dir);
      if (recorded !== null && recorded > floor && recorded <= last) recovery.floorRecorded = recorded;
    }
    recovery.entriesRecovered = entries;
    if (entries > checkedLimits.entriesMax) {
      throw new JournalLimitsError(checkedLimits, 'entriesMax', checkedLimits.entriesMax, `recovered ${entries} entries`);
    }
    if (bytes > checkedLimits.bytesMax) {
      throw new JournalLimitsError(checkedLimits, 'bytesMax', checkedLimits.bytesMax, `recovered ${bytes} bytes`);
    }
    const nextSegment = Math.max(firstSegment, (indexes.at(-1) ?? 0) + 1);
    // Open from here on: a crash before the next clean close must not be taken for one.
    if (cleanLast !== null) FileJournal.#writeMeta(dir, { floor, firstSegment: meta.firstSegment, floorExact: meta.floorExact, cleanLast: null });
    const journal = new FileJournal(dir, checkedLimits, {
      segmentBytesMax: rollBytes,
      segments,
      floor,
      last,
      entries,
      bytes,
      nextSegment,
      metaExact: meta.floorExact && recovery.floorRaisedEntries === 0,
      backgroundSyncBytes: syncBytes,
      tailCacheBytes: cacheBytes,
      beforeDurableTrim: options.beforeDurableTrim ?? null,
    });
    return { journal, recovery };
  }

  get first(): number {
    return this.#floor + 1;
  }

  get last(): number {
    return this.#last;
  }

  get entries(): number {
    return this.#entries;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get highWater(): boolean {
    return isHighWater(this.#entries, this.#bytes, this.limits);
  }

  fits(entry: JournalEntry): boolean {
    return this.#entries + 1 <= this.limits.entriesMax && this.#bytes + entryBytes(entry) <= this.limits.bytesMax;
  }

  append(entry: JournalEntry): void {
    this.#checkUsable('append');
    const last = this.#last;
    assert(entry.updateNumber === last + 1, 'P3 journal append is last+1', () => `append u=${entry.updateNumber} after last=${last}`);
    validateEntry(entry);
    if (!this.fits(entry)) {
      throw new JournalFullError(this.limits, this.#entries, this.#bytes, entryBytes(entry), entry.updateNumber);
    }
    const encoded = encodeEntry(entry);
    const before = this.#appendPoint();
    try {
      let segment = this.#segments.at(-1);
      if (segment === undefined || segment.bytes + encoded.length > this.segmentBytesMax) segment = this.#roll();
      writeAll(this.#writeFd as number, encoded, segment.bytes);
      if (segment.offsets.length === 0) segment.firstU = entry.updateNumber;
      segment.offsets.push(segment.bytes);
      segment.bytes += encoded.length;
      this.#writeDirty = true;
      this.#wrote(encoded.length);
    } catch (error) {
      this.#failure = asDeviceError('journal', this.dir, 'append', error);
      this.#undoAppend(before);
      throw this.#failure;
    }
    this.#last = entry.updateNumber;
    this.#entries += 1;
    this.#bytes += encoded.length;
    this.#remember([encoded]);
    assert(this.#entries <= this.limits.entriesMax, 'P7 journal within capacity', () => `${this.#entries} entries`);
    assert(this.#bytes <= this.limits.bytesMax, 'P7 journal within capacity', () => `${this.#bytes} bytes`);
  }

  appendAll(entries: readonly JournalEntry[]): void {
    this.#checkUsable('appendAll');
    checkAllFit(this, entries);
    const encoded = entries.map((entry) => encodeEntry(entry));
    const before = this.#appendPoint();
    try {
      let k = 0;
      while (k < encoded.length) {
        let segment = this.#segments.at(-1);
        if (segment === undefined || segment.bytes + (encoded[k] as Uint8Array).length > this.segmentBytesMax) segment = this.#roll();
        // The entries that go into this segment (at least one: an entry larger than a segment goes alone).
        const start = segment.bytes;
        const run: Uint8Array[] = [];
        let end = start;
        while (k < encoded.length && (run.length === 0 || end + (encoded[k] as Uint8Array).length <= this.segmentBytesMax)) {
          const bytes = encoded[k] as Uint8Array;
          run.push(bytes);
          if (segment.offsets.length === 0) segment.firstU = (entries[k] as JournalEntry).updateNumber;
          segment.offsets.push(end);
          end += bytes.length;
          k += 1;
        }
        writevAll(this.#writeFd as number, run, start);
        segment.bytes = end;
        this.#writeDirty = true;
        this.#wrote(end - start);
      }
    } catch (error) {
      this.#failure = asDeviceError('journal', this.dir, 'append', error);
      this.#undoAppend(before);
      throw this.#failure;
    }
    for (const bytes of encoded) this.#bytes += bytes.length;
    this.#entries += entries.length;
    this.#last += entries.length;
    this.#remember(encoded);
    assert(this.#entries <= this.limits.entriesMax, 'P7 journal within capacity', () => `${this.#entries} entries`);
    assert(this.#bytes <= this.limits.bytesMax, 'P7 journal within capacity', () => `${this.#bytes} bytes`);
    assert(this.#entries === this.#last - this.#floor, 'journal holds [first..last]', () => `${this.#entries} entries`);
  }

  readAfter(updateNumber: number, entriesMax: number): JournalEntry[] {
    this.#checkUsable('readAfter');
    checkUpdateNumberArgument(updateNumber, 'readAfter');
    checkBatchArgument(entriesMax);
    if (updateNumber >= this.#last || entriesMax === 0) return [];
    if (updateNumber + 1 < this.first) throw new NotCoveredError(updateNumber, this.first, this.#last);
    const from = updateNumber + 1;
    const to = Math.min(this.#last, updateNumber + entriesMax);
    const out: JournalEntry[] = [];
    if (this.#tailCacheBytes > 0 && from >= this.#tail.firstU) return this.#readTail(from, to);
    for (let k = this.#segmentHolding(from); k < this.#segments.length; k += 1) {
      const segment = this.#segments[k] as Segment;
      if (segment.firstU > to) break;
      const segmentFirst = Math.max(from, segment.firstU);
      const segmentTo = Math.min(to, segmentLast(segment));
      const start = segment.offsets[segmentFirst - segment.firstU] as number;
      const buffer = new Uint8Array(segmentEnd(segment, segmentTo) - start);
      readAll(this.#readFd(segment), buffer, start, segment.name);
      let at = 0;
      for (let u = segmentFirst; u <= segmentTo; u += 1) {
        const result = decodeEntry(buffer, at, segment.name);
        if (result.kind === 'corrupt') {
          throw new CorruptEntryError(segment.name, start + at, result.error.why, result.error.message);
        }
        if (result.kind === 'torn') throw new CorruptEntryError(segment.name, start + at, 'length', 'entry longer than its index says');
        if (result.entry.updateNumber !== u) {
          throw new CorruptEntryError(segment.name, start + at, 'sequence', `holds u=${result.entry.updateNumber} where u=${u} is indexed`);
        }
        out.push(result.entry);
        at += result.bytes;
      }
    }
    assert(out.length === to - updateNumber, 'journal segments hold every entry in [first..last]', () => `read ${out.length} of ${to - updateNumber}`);
    return out;
  }

  covers(updateNumber: number): boolean {
    return updateNumber <= this.#last && this.first <= updateNumber + 1;
  }

  /** Keeps the entries just appended (`last - encoded.length + 1 .. last`) in the tail cache, dropping the oldest past its bytes. */
  #remember(encoded: readonly Uint8Array[]): void {
    if (this.#tailCacheBytes === 0) return;
    const tail = this.#tail;
    assert(tail.firstU + tail.encoded.length - tail.head === this.#last - encoded.length + 1, 'the tail cache ends at last', () => `cache from ${tail.firstU}`);
    if (encoded.some((bytes) => bytes.length > tailCacheEntryBytesMax)) {
      this.#tail = { firstU: this.#last + 1, encoded: [], head: 0, bytes: 0 };
      return;
    }
    for (const bytes of encoded) {
      tail.encoded.push(bytes);
      tail.bytes += bytes.length;
    }
    this.#forget((t) => t.bytes > this.#tailCacheBytes);
  }

  /** Drops the oldest cached entries while `drop` holds. */
  #forget(drop: (tail: { readonly firstU: number; readonly bytes: number }) => boolean): void {
    const tail = this.#tail;
    while (tail.head < tail.encoded.length && drop(tail)) {
      tail.bytes -= (tail.encoded[tail.head] as Uint8Array).length;
      tail.head += 1;
      tail.firstU += 1;
    }
    if (tail.head > 1024 && tail.head * 2 > tail.encoded.length) {
      tail.encoded = tail.encoded.slice(tail.head);
      tail.head = 0;
    }
  }

  /** Reads `from..to` from the tail cache, verifying each entry as a read from a segment does. */
  #readTail(from: number, to: number): JournalEntry[] {
    const tail = this.#tail;
    const out: JournalEntry[] = [];
    for (let u = from; u <= to; u += 1) {
      const encoded = tail.encoded[tail.head + (u - tail.firstU)];
      assert(encoded !== undefined, 'the tail cache holds firstU..last', () => `u=${u}`);
      const where = `${this.dir} (u=${u}, in memory)`;
      const result = decodeEntry(encoded, 0, where);
      if (result.kind === 'corrupt') throw result.error;
      if (result.kind === 'torn') throw new CorruptEntryError(where, 0, 'length', 'cached entry shorter than its header says');
      if (result.entry.updateNumber !== u) throw new CorruptEntryError(where, 0, 'sequence', `holds u=${result.entry.updateNumber}`);
      out.push(result.entry);
    }
    return out;
  }

  trimThrough(updateNumber: number): number {
    this.#checkUsable('trimThrough');
    checkUpdateNumberArgument(updateNumber, 'trimThrough');
    const newFloor = Math.min(updateNumber, this.#last);
    const count = newFloor - this.#floor;
    if (count <= 0) return 0;
    let removedBytes = 0;
    let obsolete = 0;
    for (const segment of this.#segments) {
      if (segment.firstU > newFloor) break;
      const lo = Math.max(this.#floor + 1, segment.firstU);
      const hi = Math.min(newFloor, segmentLast(segment));
      // A wholly trimmed segment is kept while it is the last one (the next appends go on into it).
      if (lo <= hi) removedBytes += segmentEnd(segment, hi) - (segment.offsets[lo - segment.firstU] as number);
      if (segmentLast(segment) <= newFloor) obsolete += 1;
    }
    // The segment appends go to stays, even when wholly trimmed: deleting and creating it again at every
    // trim of a drained journal (site 3 every restore) cost a metadata rewrite and a directory change each.
    obsolete = Math.min(obsolete, this.#segments.length - 1);
    if (obsolete > 0 || this.#metaExact) {
      // Before a segment goes, the saved floor must reach past it (the next open would see a gap otherwise);
      // and a saved floor marked exact must stop claiming so before the floor moves without it.
      this.#beforeDurableTrim?.();
      this.#saveMeta(newFloor, (this.#segments[obsolete] as Segment).index, false);
    }
    this.#deleteSegments(obsolete);
    this.#forget((tail) => tail.firstU <= newFloor);
    this.#floor = newFloor;
    this.#entries -= count;
    this.#bytes -= removedBytes;
    this.#recordFloor();
    assert(this.#savedFloor <= this.#floor, 'journal.meta holds a lower bound of the floor', () => `saved ${this.#savedFloor} > floor ${this.#floor}`);
    assert(this.#entries === this.#last - this.#floor, 'journal holds [first..last]', () => `${this.#entries} entries`);
    assert(this.#bytes >= 0, 'journal byte count is non-negative', () => `${this.#bytes}`);
    assert(this.#entries > 0 || this.#bytes === 0, 'an empty journal holds no bytes', () => `${this.#bytes} bytes`);
    return count;
  }

  reset(last: number): void {
    this.#checkUsable('reset');
    checkUpdateNumberArgument(last, 'reset');
    this.#beforeDurableTrim?.();
    this.#saveMeta(last, this.#nextSegment, false);
    this.#tail = { firstU: last + 1, encoded: [], head: 0, bytes: 0 };
    this.#deleteSegments(this.#segments.length);
    this.#floor = last;
    this.#last = last;
    this.#entries = 0;
    this.#bytes = 0;
    // After the saved floor: a record older than the reset is then either at most the floor or past the
    // last entry, and ignored at open either way.
    this.#recordFloor();
  }

  flush(): void {
    this.#checkUsable('flush');
    try {
      if (this.#writeDirty && this.#writeFd !== null) fs.fsyncSync(this.#writeFd);
      this.#writeDirty = false;
      if (this.#dirDirty) fsyncDir(this.dir);
      this.#dirDirty = false;
    } catch (error) {
      this.#failure = asDeviceError('journal', this.dir, 'flush', error);
      throw this.#failure;
    }
  }

  /** Flushes (unless a write failed) and releases the files. */
  close(): void {
    assert(this.#open, 'journal is open', 'close after close');
    if (this.#failure === null) {
      this.flush();
      // The exact floor, so that a clean reopen neither brings back trimmed entries nor mistakes a lowered
      // limit for a stale floor; and the last update number, which marks the shutdown clean.
      this.#saveMeta(this.#floor, this.#segments[0]?.index ?? this.#nextSegment, true, this.#last);
    }
    this.#open = false;
    fs.closeSync(this.#floorFd);
    if (this.#writeFd !== null) this.#release(this.#writeFd);
    this.#writeFd = null;
    this.#closeReadCache();
  }

  /** Counts bytes appended to the current segment and starts a background fsync every {@link backgroundSyncBytes}. */
  #wrote(bytes: number): void {
    this.#unsyncedBytes += bytes;
    const fd = this.#writeFd;
    if (this.#unsyncedBytes < this.#backgroundSyncBytes || this.#backgroundSync !== null || fd === null) return;
    this.#unsyncedBytes = 0;
    this.#backgroundSync = fd;
    fs.fsync(fd, (error) => {
      this.#backgroundSync = null;
      if (this.#closeAfterSync === fd) {
        this.#closeAfterSync = null;
        fs.closeSync(fd);
      }
      // The data may not have reached the disk: the journal fails as it does when a write fails.
      if (error !== null && this.#failure === null) this.#failure = asDeviceError('journal', this.dir, 'background fsync', error);
    });
  }

  /** Closes a segment's write descriptor now, or when the background fsync running on it ends. */
  #release(fd: number): void {
    this.#unsyncedBytes = 0;
    if (this.#backgroundSync === fd) {
      assert(this.#closeAfterSync === null, 'one descriptor waits for a background fsync at a time', () => `fd ${this.#closeAfterSync}`);
      this.#closeAfterSync = fd;
      return;
    }
    fs.closeSync(fd);
  }

  /** Starts the next segment, after making the current one durable. */
  /** Where an append starts: the segments there were and the last one's length, for {@link #undoAppend}. */
  #appendPoint(): { segments: number; last: Segment | undefined; bytes: number } {
    const last = this.#segments.at(-1);
    return { segments: this.#segments.length, last, bytes: last?.bytes ?? 0 };
  }

  /**
   * An append that met a device error is all or nothing on disk: the whole entries it wrote before the error
   * (a batch of a pull, of sync writes, of host writes, none of them answered yet) are cut off again, and the
   * segments it rolled to are removed, so that a restart does not recover entries no one was told of (site 3
   * would hold entries past what it said it received). Best effort: the journal is unusable from here on, and
   * a restart cuts a torn tail anyway; an error while undoing is left to that.
   */
  #undoAppend(before: { segments: number; last: Segment | undefined; bytes: number }): void {
    try {
      for (const segment of this.#segments.splice(before.segments)) {
        if (this.#writeFd !== null) this.#release(this.#writeFd);
        this.#writeFd = null;
        fs.rmSync(path.join(this.dir, segment.name), { force: true });
      }
      if (before.last !== undefined) fs.truncateSync(path.join(this.dir, before.last.name), before.bytes);
    } catch {
      // Left to the restart's recovery (a torn tail is cut; whole entries past it are kept).
    }
  }

  #roll(): Segment {
    if (this.#writeFd !== null) {
      if (this.#writeDirty) fs.fsyncSync(this.#writeFd);
      this.#writeDirty = false;
      this.#release(this.#writeFd);
      this.#writeFd = null;
    }
    const index = this.#nextSegment;
    this.#nextSegment += 1;
    const name = segmentName(index);
    const flags = fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_EXCL;
    this.#writeFd = fs.openSync(path.join(this.dir, name), flags, siteFileMode);
    this.#dirDirty = true;
    const segment: Segment = { index, name, bytes: 0, firstU: 0, offsets: [] };
    this.#segments.push(segment);
    return segment;
  }

  /** Index in `#segments` of the segment holding update number `u` (binary search; segments are few but may be thousands). */
  #segmentHolding(u: number): number {
    let lo = 0;
    let hi = this.#segments.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((this.#segments[mid] as Segment).firstU <= u) lo = mid;
      else hi = mid - 1;
    }
    return lo;
  }

  #readFd(segment: Segment): number {
    if (segment === this.#segments.at(-1) && this.#writeFd !== null) return this.#writeFd;
    if (this.#readCache?.index === segment.index) return this.#readCache.fd;
    this.#closeReadCache();
    const fd = fs.openSync(path.join(this.dir, segment.name), 'r');
    this.#readCache = { index: segment.index, fd };
    return fd;
  }

  #closeReadCache(): void {
    if (this.#readCache !== null) fs.closeSync(this.#readCache.fd);
    this.#readCache = null;
  }

  /** Removes segments from the front; when the last one goes, the next append starts a new one. */
  #deleteSegments(count: number): void {
    const deleted = this.#segments.splice(0, count);
    if (this.#segments.length === 0 && this.#writeFd !== null) {
      this.#release(this.#writeFd);
      this.#writeFd = null;
      this.#writeDirty = false;
    }
    for (const segment of deleted) {
      if (this.#readCache?.index === segment.index) this.#closeReadCache();
      fs.unlinkSync(path.join(this.dir, segment.name));
    }
  }

  #checkUsable(operation: string): void {
    assert(this.#open, 'journal is open', () => `${operation} after close`);
    // A device error stays what it is for every later call (the site detaches on it); anything else is a bug.
    if (this.#failure instanceof DeviceError) throw this.#failure;
    assert(this.#failure === null, 'journal has not failed a write', () => `${operation} after a failed write: ${String(this.#failure)}`);
  }

  /** Writes the floor into the floor record, in place and without an fsync (see the file comment). */
  #recordFloor(): void {
    try {
      writeAll(this.#floorFd, encodeFloorRecord(this.#floor), 0);
    } catch (error) {
      this.#failure = asDeviceError('journal', this.dir, 'floor record write', error);
      throw this.#failure;
    }
  }

  /** Replaces `journal.meta` (atomically, durably) and remembers what it now holds. */
  #saveMeta(floor: number, firstSegment: number, floorExact: boolean, cleanLast: number | null = null): void {
    try {
      FileJournal.#writeMeta(this.dir, { floor, firstSegment, floorExact, cleanLast });
    } catch (error) {
      this.#failure = asDeviceError('journal', this.dir, 'metadata write', error);
      throw this.#failure;
    }
    this.#savedFloor = floor;
    this.#metaExact = floorExact;
  }

  /**
   * The lowest floor at or above `floor` under which the entries `(floor..last]` of `segments` fit the
   * limits, and their bytes then: what a stale floor is raised to at open (see the file comment).
   */
  static #floorWithin(
    segments: readonly Segment[],
    floor: number,
    last: number,
    entries: number,
    bytes: number,
    limits: JournalLimits,
  ): { floor: number; bytes: number } {
    let raised = floor;
    let held = entries;
    let heldBytes = bytes;
    let k = 0;
    while (held > limits.entriesMax || heldBytes > limits.bytesMax) {
      const u = raised + 1;
      assert(u <= last, 'a journal of no entries fits any limits', () => `u=${u} past last=${last}`);
      while (segmentLast(segments[k] as Segment) < u) k += 1;
      const segment = segments[k] as Segment;
      heldBytes -= segmentEnd(segment, u) - (segment.offsets[u - segment.firstU] as number);
      held -= 1;
      raised = u;
    }
    return { floor: raised, bytes: heldBytes };
  }

  static #readMeta(dir: string): Meta | null {
    const file = path.join(dir, journalMetaName);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return null;
      throw error;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(text);
    } catch {
      throw new CorruptJournalError(dir, journalMetaName, 0, 'metadata', 'not JSON');
    }
    const meta = parsed as { format?: unknown; version?: unknown; floor?: unknown; firstSegment?: unknown; floorExact?: unknown; cleanLast?: unknown };
    const cleanLastValid = meta?.cleanLast === null || (typeof meta?.cleanLast === 'number' && Number.isSafeInteger(meta.cleanLast) && meta.cleanLast >= 0);
    const valid =
      meta !== null &&
      typeof meta === 'object' &&
      meta.format === metaFormat &&
      (meta.version === 1 || (meta.version === 2 && typeof meta.floorExact === 'boolean') || (meta.version === metaVersion && typeof meta.floorExact === 'boolean' && cleanLastValid)) &&
      typeof meta.floor === 'number' &&
      Number.isSafeInteger(meta.floor) &&
      meta.floor >= 0 &&
      typeof meta.firstSegment === 'number' &&
      Number.isSafeInteger(meta.firstSegment) &&
      meta.firstSegment >= 1;
    if (!valid) throw new CorruptJournalError(dir, journalMetaName, 0, 'metadata', `unexpected content ${text.slice(0, 200)}`);
    // Versions 1 and 2 did not record a clean shutdown: taken as unclean (a torn tail is cut, as then).
    const cleanLast = meta.version === metaVersion ? (meta.cleanLast as number | null) : null;
    return { floor: meta.floor as number, firstSegment: meta.firstSegment as number, floorExact: meta.version === 1 || meta.floorExact === true, cleanLast };
  }

  static #writeMeta(dir: string, meta: Meta): void {
    const temp = path.join(dir, metaTempName);
    const text = JSON.stringify({ format: metaFormat, version: metaVersion, floor: meta.floor, firstSegment: meta.firstSegment, floorExact: meta.floorExact, cleanLast: meta.cleanLast });
    const fd = fs.openSync(temp, 'w', siteFileMode);
    try {
      writeAll(fd, Buffer.from(text, 'utf8'), 0);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, path.join(dir, journalMetaName));
    fsyncDir(dir);
  }
}
