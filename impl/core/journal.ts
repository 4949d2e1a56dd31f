/**
 * The journal of a site: the ordered record of its writes, each entry carrying its update number
 * (claims 4, 6, 10, 11, 15). Sites 1 and 2 journal every write of the consistency group; site 3 journals
 * what it pulled until it restores it. A journal holds a contiguous run of update numbers `[first..last]`
 * and never more than its limits (P7): an append that does not fit is refused with {@link JournalFullError},
 * and the caller decides about overflow (model/README.md "Journals").
 *
 * This file holds the {@link Journal} interface, the entry encoding shared by every backend (a fixed header
 * with two CRC-32C checksums, then the data), and the in-memory backend. The file backend is
 * `journal-file.ts`.
 *
 * Entry encoding (little-endian), {@link entryHeaderBytes} bytes of header then `length` bytes of data:
 *
 * | offset | bytes | field |
 * | --- | --- | --- |
 * | 0 | 4 | magic `0x314A5354` ("TSJ1") |
 * | 4 | 4 | length of the data in bytes (at most {@link entryDataBytesMax}) |
 * | 8 | 8 | update number (1 .. 2^53 - 1) |
 * | 16 | 8 | byte offset in the volume (0 .. 2^53 - 1) |
 * | 24 | 4 | volume index |
 * | 28 | 4 | checksum: CRC-32C over header bytes 0..27 then the data (the entry's paired checksum) |
 * | 32 | 4 | header checksum: CRC-32C over header bytes 0..31, so that recovery can trust `length` before the data |
 *
 * The header checksum is what lets recovery tell a torn tail (the header is sound, the data ends early) from
 * a corrupt entry (some byte it holds is wrong).
 */

import { crc32c } from '@node-rs/crc32';
import { assert } from './invariant.ts';

/**
 * One journal entry: a write of `data` at byte `offset` of volume `volume`, ordered by its update number.
 * @see claims 4, 6, 10, 11, 15
 */
export interface JournalEntry {
  updateNumber: number;
  volume: number;
  offset: number;
  data: Uint8Array;
}

/**
 * The capacity of a journal (P7): at most `entriesMax` entries and `bytesMax` bytes, counting each entry as
 * {@link entryBytes}. Each is a positive integer up to its ceiling ({@link entriesMaxCeiling}, and
 * {@link memoryJournalBytesMaxCeiling} or the file backend's).
 */
export interface JournalLimits {
  entriesMax: number;
  bytesMax: number;
}

/** Fixed size of an encoded entry's header, in bytes. */
export const entryHeaderBytes = 36;

/**
 * Largest data of one entry: 4 MiB, above any host write size a storage array accepts in one command, and
 * small enough that recovery can refuse a wild `length` field before reading it.
 */
export const entryDataBytesMax = 4 * 1024 * 1024;

/** Largest volume index an entry can name (the field is a u32). */
export const entryVolumeMax = 0xffff_ffff;

/** Largest `entriesMax` of any journal: 2^24 entries keeps every per-entry index small. */
export const entriesMaxCeiling = 2 ** 24;

/** Largest `bytesMax` of an in-memory journal: 1 GiB of host memory. */
export const memoryJournalBytesMaxCeiling = 2 ** 30;

/** First four bytes of every encoded entry ("TSJ1" little-endian). */
export const entryMagic = 0x314a5354;

const fieldLength = 4;
const fieldUpdateNumber = 8;
const fieldOffset = 16;
const fieldVolume = 24;
const fieldChecksum = 28;
const fieldHeaderChecksum = 32;
const twoTo32 = 2 ** 32;

/** The bytes an entry counts against {@link JournalLimits.bytesMax}: its header plus its data. */
export function entryBytes(entry: JournalEntry): number {
  return entryHeaderBytes + entry.data.length;
}

/** Which field of an entry is out of its range. */
export type InvalidEntryField = 'updateNumber' | 'volume' | 'offset' | 'data';

/** Thrown when an entry cannot be journaled because a field is outside what the encoding holds. */
export class InvalidEntryError extends Error {
  constructor(
    readonly field: InvalidEntryField,
    readonly value: number,
    readonly limit: number,
  ) {
    super(`journal entry ${field}=${value} is outside [${field === 'updateNumber' ? 1 : 0}, ${limit}]`);
    this.name = 'InvalidEntryError';
  }
}

/** Checks every field of an entry against its encoding; throws {@link InvalidEntryError}. */
export function validateEntry(entry: JournalEntry): void {
  const { updateNumber, volume, offset, data } = entry;
  if (!Number.isSafeInteger(updateNumber) || updateNumber < 1) {
    throw new InvalidEntryError('updateNumber', updateNumber, Number.MAX_SAFE_INTEGER);
  }
  if (!Number.isInteger(volume) || volume < 0 || volume > entryVolumeMax) {
    throw new InvalidEntryError('volume', volume, entryVolumeMax);
  }
  if (!Number.isSafeInteger(offset) || offset < 0) throw new InvalidEntryError('offset', offset, Number.MAX_SAFE_INTEGER);
  if (data.length > entryDataBytesMax) throw new InvalidEntryError('data', data.length, entryDataBytesMax);
}

function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value >>> 0, true);
  view.setUint32(at + 4, Math.floor(value / twoTo32), true);
}

function getU64(view: DataView, at: number): number {
  // Above 2^53 - 1 the value is not a safe integer; callers check with Number.isSafeInteger.
  return view.getUint32(at + 4, true) * twoTo32 + view.getUint32(at, true);
}

/**
 * Encodes an entry as header plus data, computing both checksums (the first half of the paired assertion:
 * the checksum computed here is checked again by {@link decodeEntry} whenever the entry is read). The data
 * is copied once, into the encoded array. Throws {@link InvalidEntryError}.
 */
export function encodeEntry(entry: JournalEntry): Uint8Array {
  validateEntry(entry);
  const out = new Uint8Array(entryHeaderBytes + entry.data.length);
  encodeEntryInto(entry, out);
  return out;
}

/**
 * Encodes a valid entry into `out`, which must be exactly `entryBytes(entry)` long (the caller validated
 * the entry). Lets a journal place entries in memory it manages (see {@link EntrySlab}).
 */
export function encodeEntryInto(entry: JournalEntry, out: Uint8Array): void {
  assert(out.length === entryHeaderBytes + entry.data.length, 'encoded entry fills its buffer', () => `${out.length} bytes for ${entry.data.length} of data`);
  const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
  view.setUint32(0, entryMagic, true);
  view.setUint32(fieldLength, entry.data.length, true);
  setU64(view, fieldUpdateNumber, entry.updateNumber);
  setU64(view, fieldOffset, entry.offset);
  view.setUint32(fieldVolume, entry.volume, true);
  out.set(entry.data, entryHeaderBytes);
  const checksum = crc32c(entry.data, crc32c(out.subarray(0, fieldChecksum)));
  view.setUint32(fieldChecksum, checksum, true);
  view.setUint32(fieldHeaderChecksum, crc32c(out.subarray(0, fieldHeaderChecksum)), true);
}

/** Bytes of one slab a memory journal carves its encoded entries from. */
// Stryker disable next-line ArithmeticOperator: the slab size is a memory/speed trade-off; any positive size stores the same entries (take() allocates at least the bytes asked)
export const entrySlabBytes = 4 * 1024 * 1024;

/**
 * Hands out buffers for encoded entries from large slabs, so that a journal does not allocate one
 * `ArrayBuffer` per entry (the host write path's largest cost when it did). Entries are trimmed in the
 * order they were appended, so the live ones span at most the journal's bytes plus two slabs: memory stays
 * bounded by the journal's byte capacity.
 */
export class EntrySlab {
  #slab = new Uint8Array(0);
  #used = 0;

  /** A fresh buffer of `bytes` bytes (a slab of its own when larger than a slab). */
  take(bytes: number): Uint8Array {
    if (this.#slab.length - this.#used < bytes) {
      // Not zero-filled: every byte handed out is overwritten by `encodeEntryInto` (which asserts it fills
      // its buffer exactly), and zeroing a slab cost as much as one more copy of the data.
      this.#slab = Buffer.allocUnsafe(Math.max(entrySlabBytes, bytes));
      this.#used = 0;
    }
    const out = this.#slab.subarray(this.#used, this.#used + bytes);
    this.#used += bytes;
    return out;
  }

  /** Forgets the current slab (after a reset: its entries are gone). */
  // Stryker disable next-line BlockStatement: keeping the old slab after a reset only delays freeing its memory; later entries are carved from it just as well
  release(): void {
    this.#slab = new Uint8Array(0);
    this.#used = 0;
  }
}

/** Why an encoded entry is corrupt. */
export type CorruptEntryReason = 'magic' | 'headerChecksum' | 'length' | 'updateNumber' | 'offset' | 'checksum' | 'sequence';

/**
 * An entry whose bytes are wrong: a checksum does not match, or a field is impossible. `where` says which
 * journal (and file) held it, `at` its byte position there, `why` what is wrong.
 */
export class CorruptEntryError extends Error {
  constructor(
    readonly where: string,
    readonly at: number,
    readonly why: CorruptEntryReason,
    detail: string,
  ) {
    super(`corrupt journal entry in ${where} at byte ${at} (${why}): ${detail}`);
    this.name = 'CorruptEntryError';
  }
}

/**
 * The outcome of decoding one entry: `ok` with the entry and its encoded size; `torn` when the bytes end
 * before the entry does (a write cut short); `corrupt` when a byte it holds is wrong. `headerSound` says
 * whether the header passed its own checksum (then `bytes` of a corrupt entry is its full encoded size).
 */
export type DecodeResult =
  | { kind: 'ok'; entry: JournalEntry; bytes: number }
  | { kind: 'torn'; availableBytes: number; neededBytes: number }
  | { kind: 'corrupt'; error: CorruptEntryError; headerSound: boolean; bytes: number };

/**
 * Decodes the entry starting at `bytes[at]`, verifying both checksums (the second half of the paired
 * assertion). The entry's `data` is a view into `bytes`, not a copy. Never throws for bad bytes: a torn or
 * corrupt entry is a result, so that recovery can decide what it means; `where` names the source in errors.
 */
export function decodeEntry(bytes: Uint8Array, at: number, where = 'buffer'): DecodeResult {
  const availableBytes = bytes.length - at;
  if (availableBytes < entryHeaderBytes) return { kind: 'torn', availableBytes, neededBytes: entryHeaderBytes };
  const view = new DataView(bytes.buffer, bytes.byteOffset + at, entryHeaderBytes);
  const corrupt = (why: CorruptEntryReason, detail: string, headerSound: boolean, size: number): DecodeResult => ({
    kind: 'corrupt',
    error: new CorruptEntryError(where, at, why, detail),
    headerSound,
    bytes: size,
  });
  const magic = view.getUint32(0, true);
  if (magic !== entryMagic) return corrupt('magic', `magic 0x${magic.toString(16)}`, false, 0);
  const headerChecksum = crc32c(bytes.subarray(at, at + fieldHeaderChecksum));
  if (headerChecksum !== view.getUint32(fieldHeaderChecksum, true)) {
    return corrupt('headerChecksum', 'header checksum mismatch', false, 0);
  }
  const length = view.getUint32(fieldLength, true);
  const size = entryHeaderBytes + length;
  if (length > entryDataBytesMax) return corrupt('length', `length ${length} > ${entryDataBytesMax}`, false, 0);
  const updateNumber = getU64(view, fieldUpdateNumber);
  if (!Number.isSafeInteger(updateNumber) || updateNumber < 1) {
    return corrupt('updateNumber', `update number ${updateNumber}`, true, size);
  }
  const offset = getU64(view, fieldOffset);
  if (!Number.isSafeInteger(offset)) return corrupt('offset', `offset ${offset}`, true, size);
  if (availableBytes < size) return { kind: 'torn', availableBytes, neededBytes: size };
  const data = bytes.subarray(at + entryHeaderBytes, at + size);
  const checksum = crc32c(data, crc32c(bytes.subarray(at, at + fieldChecksum)));
  if (checksum !== view.getUint32(fieldChecksum, true)) {
    return corrupt('checksum', `entry u=${updateNumber} checksum mismatch`, true, size);
  }
  return { kind: 'ok', entry: { updateNumber, volume: view.getUint32(fieldVolume, true), offset, data }, bytes: size };
}

/**
 * The journal of a site: a contiguous run of entries `[first..last]` under {@link JournalLimits}.
 * @see claims 4, 6, 10, 11, 15
 */
export interface Journal {
  /** First update number held; when empty, `last + 1`. */
  readonly first: number;
  /** Last update number held; when empty, the base set at creation or by `reset` (initially 0). */
  readonly last: number;
  /** Number of entries held. */
  readonly entries: number;
  /** Bytes held, each entry counted as {@link entryBytes}. */
  readonly bytes: number;
  readonly limits: JournalLimits;
  /** At least 80% full by entries or bytes (Hitachi's PFUL): `entries*5 >= entriesMax*4 || bytes*5 >= bytesMax*4`. */
  readonly highWater: boolean;
  /** True when `entry` fits under both limits. */
  fits(entry: JournalEntry): boolean;
  /**
   * Appends `entry`, which must carry `last + 1` (P3, else {@link InvariantError}); throws
   * {@link JournalFullError} when it does not fit (the caller decides about overflow) and
   * {@link InvalidEntryError} for a field the encoding cannot hold. The journal keeps its own copy.
   */
  append(entry: JournalEntry): void;
  /**
   * Appends `entries` in order, as {@link append} would one by one, but with one write to the backend where
   * it can (a file journal: one `writev` per segment instead of one `pwrite` per entry). All or nothing: when
   * they do not all fit it throws {@link JournalFullError} for the first that does not, and appends none.
   */
  appendAll(entries: readonly JournalEntry[]): void;
  /**
   * The entries after `updateNumber`, in order, at most `entriesMax` of them; each entry's checksum is
   * verified ({@link CorruptEntryError}). Empty when `updateNumber >= last`. Throws {@link NotCoveredError}
   * when entries after `updateNumber` were discarded (`updateNumber + 1 < first`): returning the rest would
   * hide a gap. The returned data are read-only views; the next read verifies them again.
   */
  readAfter(updateNumber: number, entriesMax: number): JournalEntry[];
  /** True when the journal holds every entry after `updateNumber` up to `last`: `updateNumber <= last && first <= updateNumber + 1`. */
  covers(updateNumber: number): boolean;
  /**
   * Discards the entries with update number `<= updateNumber` and returns how many. A number beyond `last`
   * discards everything and leaves `last` unchanged (the journal is then empty at `last`).
   */
  trimThrough(updateNumber: number): number;
  /** Discards everything: the journal becomes empty with `last` as given (`first = last + 1`); used at overflow and resync. */
  reset(last: number): void;
  /** Makes every appended entry durable (a no-op in memory). */
  flush(): void;
  /** Releases the journal; any later call is a bug ({@link InvariantError} `'journal is open'`). */
  close(): void;
}

/**
 * Checks, before any is appended, that `entries` carry `last + 1, last + 2, ...` (P3) and all fit the
 * journal's limits together ({@link JournalFullError} for the first that does not): what
 * {@link Journal.appendAll} needs to be all or nothing.
 */
export function checkAllFit(journal: Journal, entries: readonly JournalEntry[]): void {
  let count = journal.entries;
  let bytes = journal.bytes;
  for (const [i, entry] of entries.entries()) {
    const expected = journal.last + 1 + i;
    assert(entry.updateNumber === expected, 'P3 journal append is last+1', () => `append u=${entry.updateNumber} where ${expected} is next`);
    validateEntry(entry);
    count += 1;
    bytes += entryBytes(entry);
    if (count > journal.limits.entriesMax || bytes > journal.limits.bytesMax) {
      throw new JournalFullError(journal.limits, count - 1, bytes - entryBytes(entry), entryBytes(entry), entry.updateNumber);
    }
  }
}

/** Thrown by `append` when the entry does not fit under the journal's limits (P7: never dropped silently). */
export class JournalFullError extends Error {
  constructor(
    readonly limits: JournalLimits,
    readonly entries: number,
    readonly bytes: number,
    readonly entryBytes: number,
    readonly updateNumber: number,
  ) {
    super(
      `journal full: entry u=${updateNumber} of ${entryBytes} bytes does not fit ` +
        `(${entries}/${limits.entriesMax} entries, ${bytes}/${limits.bytesMax} bytes)`,
    );
    this.name = 'JournalFullError';
  }
}

/** Thrown by `readAfter` when entries after the requested update number were already discarded. */
export class NotCoveredError extends Error {
  constructor(
    readonly updateNumber: number,
    readonly first: number,
    readonly last: number,
  ) {
    super(`journal [${first}..${last}] does not cover the entries after ${updateNumber}`);
    this.name = 'NotCoveredError';
  }
}

/** Thrown when journal limits are not positive integers within their ceilings, or a journal exceeds them. */
export class JournalLimitsError extends Error {
  constructor(
    readonly limits: JournalLimits,
    readonly field: keyof JournalLimits,
    readonly ceiling: number,
    detail: string,
  ) {
    super(`journal limits entriesMax=${limits.entriesMax} bytesMax=${limits.bytesMax}: ${detail}`);
    this.name = 'JournalLimitsError';
  }
}

/**
 * Checks limits: positive integers, `entriesMax <= entriesMaxCeiling`, `bytesMax <= bytesMaxCeiling`.
 * Returns a frozen copy, so that the caller's object cannot change a journal's capacity afterwards.
 */
export function validateJournalLimits(limits: JournalLimits, bytesMaxCeiling: number): Readonly<JournalLimits> {
  const checks: [keyof JournalLimits, number][] = [
    ['entriesMax', entriesMaxCeiling],
    ['bytesMax', bytesMaxCeiling],
  ];
  for (const [field, ceiling] of checks) {
    const value = limits[field];
    if (!Number.isSafeInteger(value) || value < 1 || value > ceiling) {
      throw new JournalLimitsError(limits, field, ceiling, `${field} must be an integer in [1, ${ceiling}]`);
    }
  }
  return Object.freeze({ entriesMax: limits.entriesMax, bytesMax: limits.bytesMax });
}

/** The high-water rule shared by every backend: at least 80% of either limit. */
export function isHighWater(entries: number, bytes: number, limits: JournalLimits): boolean {
  return entries * 5 >= limits.entriesMax * 4 || bytes * 5 >= limits.bytesMax * 4;
}

/** Checks an update number argument (trim point, reset base, read point): a non-negative safe integer. */
export function checkUpdateNumberArgument(updateNumber: number, operation: string): void {
  assert(
    Number.isSafeInteger(updateNumber) && updateNumber >= 0,
    'update numbers are non-negative integers',
    () => `${operation}(${updateNumber})`,
  );
}

/** Checks a batch size argument: a non-negative safe integer. */
export function checkBatchArgument(entriesMax: number): void {
  assert(Number.isSafeInteger(entriesMax) && entriesMax >= 0, 'batch sizes are non-negative integers', () => `readAfter batch ${entriesMax}`);
}

/**
 * A journal held in memory, for the deterministic simulation and tests. Entries are kept encoded (one copy
 * of the data, checksummed at append and verified at every read) in an array with a head index: append and
 * trim are O(1) amortized, and the array is compacted when more than half of it is trimmed slots. Memory is
 * bounded by the limits (at most `bytesMax` bytes of entries, `entriesMax` live slots).
 */
export class MemoryJournal implements Journal {
  readonly limits: JournalLimits;
  #slots: (Uint8Array | undefined)[] = [];
  #head = 0;
  /** Every update number `<= floor` is discarded; `first = floor + 1`. */
  #floor: number;
  #bytes = 0;
  #open = true;
  readonly #slab = new EntrySlab();

  /** Creates an empty journal whose `last` is `last`; throws {@link JournalLimitsError} for invalid limits. */
  constructor(limits: JournalLimits, last = 0) {
    this.limits = validateJournalLimits(limits, memoryJournalBytesMaxCeiling);
    checkUpdateNumberArgument(last, 'MemoryJournal');
    this.#floor = last;
  }

  get first(): number {
    return this.#floor + 1;
  }

  get last(): number {
    return this.#floor + this.entries;
  }

  get entries(): number {
    return this.#slots.length - this.#head;
  }

  get bytes(): number {
    return this.#bytes;
  }

  get highWater(): boolean {
    return isHighWater(this.entries, this.#bytes, this.limits);
  }

  fits(entry: JournalEntry): boolean {
    return this.entries + 1 <= this.limits.entriesMax && this.#bytes + entryBytes(entry) <= this.limits.bytesMax;
  }

  append(entry: JournalEntry): void {
    this.#checkOpen('append');
    const last = this.last;
    assert(entry.updateNumber === last + 1, 'P3 journal append is last+1', () => `append u=${entry.updateNumber} after last=${last}`);
    validateEntry(entry);
    if (!this.fits(entry)) {
      throw new JournalFullError(this.limits, this.entries, this.#bytes, entryBytes(entry), entry.updateNumber);
    }
    const encoded = this.#slab.take(entryHeaderBytes + entry.data.length);
    encodeEntryInto(entry, encoded);
    this.#slots.push(encoded);
    this.#bytes += encoded.length;
    assert(this.entries <= this.limits.entriesMax, 'P7 journal within capacity', () => `${this.entries} entries`);
    assert(this.#bytes <= this.limits.bytesMax, 'P7 journal within capacity', () => `${this.#bytes} bytes`);
  }

  appendAll(entries: readonly JournalEntry[]): void {
    checkAllFit(this, entries);
    for (const entry of entries) this.append(entry);
  }

  readAfter(updateNumber: number, entriesMax: number): JournalEntry[] {
    this.#checkOpen('readAfter');
    checkUpdateNumberArgument(updateNumber, 'readAfter');
    checkBatchArgument(entriesMax);
    if (updateNumber >= this.last || entriesMax === 0) return [];
    if (updateNumber + 1 < this.first) throw new NotCoveredError(updateNumber, this.first, this.last);
    const count = Math.min(entriesMax, this.last - updateNumber);
    const start = this.#head + (updateNumber - this.#floor);
    const out: JournalEntry[] = [];
    for (let i = 0; i < count; i += 1) {
      const encoded = this.#slots[start + i];
      const expected = updateNumber + 1 + i;
      assert(encoded !== undefined, 'journal slots are filled from head', () => `slot for u=${expected}`);
      const where = `memory journal (u=${expected})`;
      const result = decodeEntry(encoded, 0, where);
      if (result.kind === 'corrupt') throw result.error;
      if (result.kind === 'torn') throw new CorruptEntryError(where, 0, 'length', 'stored entry shorter than its header says');
      if (result.entry.updateNumber !== expected) {
        throw new CorruptEntryError(where, 0, 'sequence', `holds u=${result.entry.updateNumber}`);
      }
      out.push(result.entry);
    }
    return out;
  }

  covers(updateNumber: number): boolean {
    return updateNumber <= this.last && this.first <= updateNumber + 1;
  }

  trimThrough(updateNumber: number): number {
    this.#checkOpen('trimThrough');
    checkUpdateNumberArgument(updateNumber, 'trimThrough');
    const count = Math.min(updateNumber, this.last) - this.#floor;
    if (count <= 0) return 0;
    for (let i = 0; i < count; i += 1) {
      const slot = this.#slots[this.#head];
      assert(slot !== undefined, 'journal slots are filled from head', 'trim of an empty slot');
      this.#bytes -= slot.length;
      this.#slots[this.#head] = undefined;
      this.#head += 1;
    }
    this.#floor += count;
    // Stryker disable next-line ConditionalExpression,EqualityOperator,LogicalOperator,ArithmeticOperator,BlockStatement: compaction keeps slots[head..] whenever it runs, so its threshold only changes memory and time
    if (this.#head > 1024 && this.#head * 2 > this.#slots.length) {
      this.#slots = this.#slots.slice(this.#head);
      this.#head = 0;
    }
    // Stryker disable next-line BlockStatement: emptying the slot array of an empty journal only frees memory early (entries and reads are the same with all slots trimmed)
    if (this.entries === 0) {
      this.#slots = [];
      this.#head = 0;
    }
    assert(this.#bytes >= 0, 'journal byte count is non-negative', () => `${this.#bytes}`);
    return count;
  }

  reset(last: number): void {
    this.#checkOpen('reset');
    checkUpdateNumberArgument(last, 'reset');
    this.#slots = [];
    this.#head = 0;
    this.#bytes = 0;
    this.#floor = last;
    this.#slab.release();
  }

  flush(): void {
    this.#checkOpen('flush');
  }

  close(): void {
    this.#checkOpen('close');
    this.#open = false;
    this.#slots = [];
    this.#head = 0;
  }

  #checkOpen(operation: string): void {
    assert(this.#open, 'journal is open', () => `${operation} after close`);
  }
}
