/**
 * Every message between sites, as one discriminated union on `kind`, with its wire encoding and its
 * validation. In process the transport carries the objects themselves (no encoding on the hot path); a
 * network transport carries {@link encodeMessage}'s bytes, and whatever arrives from outside goes through
 * {@link decodeMessage} (which calls {@link validateMessage}) before a site sees it.
 *
 * Wire format, all little-endian:
 *
 * | offset | bytes | field |
 * | --- | --- | --- |
 * | 0 | 4 | magic `0x314D5354` ("TSM1") |
 * | 4 | 4 | header length `h` in bytes |
 * | 8 | h | header: the message as UTF-8 JSON, each byte array replaced by `{"$bytes":[offset,length]}` |
 * | 8+h | rest | payload: the byte arrays, back to back, in header order |
 *
 * The payload must be covered exactly by the header's byte arrays, in order, without gap or overlap (a
 * data length mismatch is malformed), and the whole message is at most {@link messageBytesMax} bytes.
 *
 * The hot messages of the write path (`syncWrite`, `syncWriteBatch`, `syncWriteAck`: one or more per host
 * write; `pullEntries`: every write again, to site 3; `flushRequest`, `flushAck`: one pair per host FLUSH or FUA
 * write) have a fixed binary layout instead, because building and parsing JSON was a large part of a
 * replicated write's CPU. All integers little-endian; a u64 is two u32 (low, high) and must be a safe
 * integer:
 *
 * | offset | bytes | field |
 * | --- | --- | --- |
 * | 0 | 4 | magic `0x32425354` ("TSB2": the second layout, with the epoch) |
 * | 4 | 4 | kind code: 1 `syncWrite`, 2 `syncWriteAck`, 3 `syncWriteBatch`, 4 `pullEntries`, 5 `flushRequest`, 6 `flushAck` |
 * | 8 | 8 | u64 epoch (every kind) |
 * | 16 | ... | `syncWriteAck`: u64 updateNumber (24 bytes in all) |
 * | 16 | ... | `syncWrite`: u64 restoredKnown, then one entry |
 * | 16 | ... | `syncWriteBatch`: u64 restoredKnown, u32 entry count, then the entries back to back |
 * | 16 | ... | `pullEntries`: f64 servedAt, u32 entry count, then the entries back to back |
 * | 16 | ... | `flushRequest`, `flushAck`: u64 token, u64 updateNumber (32 bytes in all) |
 *
 * An entry is u64 updateNumber, u32 volume, u64 offset, u32 data length, then the data. The message must
 * end exactly after its last entry (a length that runs past the end, or bytes left over, are malformed),
 * and the decoded fields go through {@link validateMessage} like those of a JSON message. A JSON message of
 * these kinds is still read (the binary layout is what {@link encodeMessage} writes).
 *
 * **Epochs.** Every message carries the sender's epoch ({@link EpochMessage}): the fencing token that every
 * promotion raises (storage-system.ts says what a site does with it). It is a field like any other: required,
 * an integer in [1, {@link epochMax}], in the JSON header and at offset 8 of the binary layout. A message of
 * the layout before epochs (magic "TSB1", or a JSON header without `epoch`) is malformed.
 */

import { MalformedMessageError } from './errors.ts';
import { assert } from './invariant.ts';
import { entryDataBytesMax, entryHeaderBytes } from './journal.ts';
import { verifyChunkBytesMax, verifyChunkDigestBytesMax, verifyDigestBytes, verifyReasonCharsMax } from './verify.ts';

/** Largest encoded message: 16 MiB (a batch of entries or blocks is cut to fit; one entry is at most 4 MiB). */
export const messageBytesMax = 16 * 1024 * 1024;

/** Largest header of an encoded message: 1 MiB of JSON. */
export const messageHeaderBytesMax = 1024 * 1024;

/** Bytes of entry or block data one batch message carries at most, leaving room for its header. */
export const batchBytesMax = 8 * 1024 * 1024;
assert(entryHeaderBytes + entryDataBytesMax <= batchBytesMax, 'one journal entry fits one batch', () => `${entryDataBytesMax} > ${batchBytesMax}`);

/** Entries or blocks one message carries at most. */
export const batchItemsMax = 4096;

/** Volumes one message can name (a changed-block record per volume): the group's volume count ceiling. */
export const messageVolumesMax = 1024;

/** Bytes of one changed-block bitmap: enough for 2^30 bytes of volume in 512-byte blocks. */
export const bitmapBytesMax = 2 ** 18;

/**
 * Largest epoch: the largest safe integer. A promotion raises the epoch by one, so it is never reached; a
 * message or a state file that names a larger one is malformed.
 */
export const epochMax = Number.MAX_SAFE_INTEGER;

const messageMagic = 0x314d5354;
const prefixBytes = 8;

/** A site on the wire. */
export type WireSite = 1 | 2 | 3;

/**
 * What every message carries: the sender's epoch when it sent it. A site refuses a message of an epoch
 * lower than its own and adopts a higher one (DRBD's generation identifiers, Raft's terms).
 */
export interface EpochMessage {
  /** The sender's epoch, in [1, {@link epochMax}]. */
  epoch: number;
}

/**
 * A journal entry on the wire: a write of `data` at byte `offset` of `volume`, with its update number.
 * @see claims 4, 6, 10, 11 (the update information carries the update number)
 */
export interface WireEntry {
  updateNumber: number;
  volume: number;
  offset: number;
  data: Uint8Array;
}

/** A whole block on the wire (full copy and resync). */
export interface WireBlock {
  volume: number;
  offset: number;
  data: Uint8Array;
}

/** Why site 3 asks to be judged: at a failover, a failback, or when it is reachable again (rule R2). */
export type JudgePurpose = 'failover' | 'failback' | 'reattach';

/** The judge's verdicts (claims 18, 19, 20, 28). */
export type Verdict = 'noUpdateRequired' | 'deltaResync' | 'fullCopy' | 'remoteAhead';

/** What a block copy is for: site 3's full copy, or a sync member's resync. */
export type CopyPurpose = 'fullCopy' | 'resync';

/**
 * The synchronous write, primary to secondary: the host's data with the update number the primary gave it
 * and the primary's known site-3 progress (progress forwarding: the secondary trims by it).
 * @see claims 3, 4, 5, 6, 33, 34, 35
 */
export interface SyncWriteMessage extends EpochMessage {
  kind: 'syncWrite';
  updateNumber: number;
  volume: number;
  offset: number;
  data: Uint8Array;
  /** Site 3's restored update number as the primary knows it. */
  restoredKnown: number;
}

/**
 * Several synchronous writes at once, primary to secondary: the host writes a primary took in one turn of
 * its event loop (several are in flight at queue depth > 1), with consecutive update numbers, journaled by
 * the secondary with one write and answered with one {@link SyncWriteAckMessage} for the last.
 * @see claims 3, 4, 5, 6, 33, 34, 35
 */
export interface SyncWriteBatchMessage extends EpochMessage {
  kind: 'syncWriteBatch';
  /** Consecutive update numbers, at least one entry. */
  entries: WireEntry[];
  /** Site 3's restored update number as the primary knows it. */
  restoredKnown: number;
}

/**
 * The secondary's answer to a sync write: it journaled and wrote every write up to `updateNumber` (a
 * batch is answered once, for its last write).
 * @see claims 3, 5, 34
 */
export interface SyncWriteAckMessage extends EpochMessage {
  kind: 'syncWriteAck';
  updateNumber: number;
}

/**
 * Durability on request (NBD FLUSH and FUA), primary to secondary: make durable (fsync the journal and the
 * volumes) every write received up to `updateNumber`, and answer with a {@link FlushAckMessage} naming
 * `token`. The primary answers its host's flush only after its own fsync and that answer, so a flushed write
 * is on stable storage at both sync members. `token` numbers the primary's requests (from 1, increasing):
 * an answer settles its request and every earlier one, never a later one.
 * @see claims 3, 5 (the secondary's copy of an acknowledged write); P1
 */
export interface FlushRequestMessage extends EpochMessage {
  kind: 'flushRequest';
  /** The request's number at its primary, from 1. */
  token: number;
  /** The last update number the flush covers: the primary's last write acknowledged in sync (0: none yet). */
  updateNumber: number;
}

/**
 * The secondary's answer to a {@link FlushRequestMessage}: every write it received up to `updateNumber` is on
 * its stable storage (its journal and volumes were fsynced after it held them).
 */
export interface FlushAckMessage extends EpochMessage {
  kind: 'flushAck';
  /** The request's token. */
  token: number;
  /** The request's update number. */
  updateNumber: number;
}

/**
 * Site 3's journal pull: the entries after `received`, at most `entriesMax` of them in at most `bytesMax`
 * bytes (the room in its journal: back-pressure). `restored` tells the source what it may trim.
 * @see claims 8, 9, 22, 23, 24, 36, 37
 */
export interface PullRequestMessage extends EpochMessage {
  kind: 'pullRequest';
  received: number;
  restored: number;
  entriesMax: number;
  bytesMax: number;
}

/**
 * The source's answer to a pull: consecutive entries from `received + 1` (possibly none).
 * @see claims 8, 11, 38, 39
 */
export interface PullEntriesMessage extends EpochMessage {
  kind: 'pullEntries';
  entries: WireEntry[];
  /**
   * When the source read these entries from its journal: its trace clock (milliseconds since the epoch,
   * impl/cluster/trace.ts `traceTime`), or 0 when the source keeps no trace. Site 3's trace records the pull at this
   * instant, where the model's atomic PULL_JOURNAL took place (the entries are what the journal held then).
   */
  servedAt: number;
}

/**
 * Site 3 sends its latest received update number to a (new) source, which judges.
 * @see claim 18
 */
export interface JudgeRequestMessage extends EpochMessage {
  kind: 'judgeRequest';
  purpose: JudgePurpose;
  received: number;
}

/**
 * The source's verdict on site 3's number.
 * @see claims 18, 19, 20, 28
 */
export interface VerdictMessage extends EpochMessage {
  kind: 'verdict';
  purpose: JudgePurpose;
  verdict: Verdict;
  remoteReceived: number;
  sourceLast: number;
}

/**
 * Site 3 asks the source for every entry after `received` (delta resync), in batches that fit its journal.
 * @see claims 19, 20
 */
export interface DeltaResyncRequestMessage extends EpochMessage {
  kind: 'deltaResyncRequest';
  received: number;
  entriesMax: number;
  bytesMax: number;
}

/**
 * A batch of the delta resync's entries, consecutive from site 3's received + 1; `final` on the last, whose
 * last entry is `sourceLast`.
 * @see claims 19, 20
 */
export interface DeltaResyncEntriesMessage extends EpochMessage {
  kind: 'deltaResyncEntries';
  entries: WireEntry[];
  sourceLast: number;
  final: boolean;
}

/**
 * Site 3 journaled a delta resync batch through `received` (its journal's last) and has restored through
 * `restored` (at most `received`); the source sends the next batch or, after the final, trims through
 * `restored`.
 * @see claims 19, 20
 */
export interface DeltaResyncAckMessage extends EpochMessage {
  kind: 'deltaResyncAck';
  received: number;
  restored: number;
  final: boolean;
}

/**
 * The source's journal no longer holds the entry after `received` (P5): a full copy is needed.
 * @see claims 19, 20 (a delta resync only when the journal covers)
 */
export interface DeltaResyncRefusedMessage extends EpochMessage {
  kind: 'deltaResyncRefused';
  received: number;
  journalFirst: number;
  sourceLast: number;
}

/**
 * The source cannot serve a pull: its journal no longer holds the entry after `received` (it overflowed,
 * P7), so the async pair is suspended by overflow and a full copy is needed. In one process the controller
 * never sends such a pull; between processes site 3 learns of the overflow this way.
 * @see P5, P7
 */
export interface PullRefusedMessage extends EpochMessage {
  kind: 'pullRefused';
  received: number;
  journalFirst: number;
}

/** Site 3 asks the source for a full copy of its volumes. */
export interface FullCopyRequestMessage extends EpochMessage {
  kind: 'fullCopyRequest';
}

/**
 * A returning sync secondary asks the primary for a resync, sending its own changed-block record (one bitmap
 * per volume, bit `b` of byte `b >> 3` for block `b`).
 * @see claims 29, 30, 31
 */
export interface ResyncRequestMessage extends EpochMessage {
  kind: 'resyncRequest';
  changed: Uint8Array[];
}

/**
 * A batch of whole blocks of a full copy or a resync. The `final` batch carries the sender's last update
 * number and known site-3 progress, which the receiver takes over.
 */
export interface CopyBlocksMessage extends EpochMessage {
  kind: 'copyBlocks';
  purpose: CopyPurpose;
  blocks: WireBlock[];
  final: boolean;
  sourceLast: number;
  restoredKnown: number;
}

/** The receiver wrote a batch of blocks; the sender sends the next one or, after the final, completes. */
export interface CopyAckMessage extends EpochMessage {
  kind: 'copyAck';
  purpose: CopyPurpose;
  final: boolean;
}

/**
 * A site tells a peer its epoch: when the link comes up (as DRBD's peers exchange their generation
 * identifiers at connect), when it took a new epoch from the operator, and in answer to a message of a lower
 * epoch it refused (as a Raft node answers a stale term with its own). The receiver adopts a higher epoch;
 * it carries nothing else.
 */
export interface EpochNoticeMessage extends EpochMessage {
  kind: 'epochNotice';
}

/**
 * Online verify (`verify.ts`): the primary asks its secondary or site 3 to hash `length` bytes of `volume`
 * from `offset` as they are at update number `updateNumber`. The secondary hashes at once (the link is
 * ordered: it has applied exactly up to `updateNumber`); site 3 once it has received `updateNumber`.
 * Site processes only: the in-process cluster neither sends nor takes it.
 */
export interface VerifyMarkerMessage extends EpochMessage {
  kind: 'verifyMarker';
  verifyId: number;
  volume: number;
  offset: number;
  length: number;
  updateNumber: number;
}

/**
 * The answer to a {@link VerifyMarkerMessage}: the digests of the chunk's blocks
 * (`verify.ts` `blockDigests`), or, with no digests, why the site could not hash it (`reason`, never empty
 * then: its last update number is not the marker's, its async pair is not copying, ...).
 */
export interface VerifyDigestsMessage extends EpochMessage {
  kind: 'verifyDigests';
  verifyId: number;
  volume: number;
  offset: number;
  length: number;
  updateNumber: number;
  digests: Uint8Array;
  /** Empty when hashed; else why not (at most `verifyReasonCharsMax` characters). */
  reason: string;
}

/** Every message between sites. */
export type Message =
  | EpochNoticeMessage
  | SyncWriteMessage
  | SyncWriteBatchMessage
  | SyncWriteAckMessage
  | FlushRequestMessage
  | FlushAckMessage
  | PullRequestMessage
  | PullEntriesMessage
  | JudgeRequestMessage
  | VerdictMessage
  | DeltaResyncRequestMessage
  | DeltaResyncEntriesMessage
  | DeltaResyncAckMessage
  | DeltaResyncRefusedMessage
  | PullRefusedMessage
  | FullCopyRequestMessage
  | ResyncRequestMessage
  | CopyBlocksMessage
  | CopyAckMessage
  | VerifyMarkerMessage
  | VerifyDigestsMessage;

/** The message kinds. */
export type MessageKind = Message['kind'];

/** Every message kind, for validation and tests. */
export const messageKinds: readonly MessageKind[] = [
  'epochNotice',
  'syncWrite',
  'syncWriteBatch',
  'syncWriteAck',
  'flushRequest',
  'flushAck',
  'pullRequest',
  'pullEntries',
  'judgeRequest',
  'verdict',
  'deltaResyncRequest',
  'deltaResyncEntries',
  'deltaResyncAck',
  'deltaResyncRefused',
  'pullRefused',
  'fullCopyRequest',
  'resyncRequest',
  'copyBlocks',
  'copyAck',
  'verifyMarker',
  'verifyDigests',
];

const judgePurposes: readonly string[] = ['failover', 'failback', 'reattach'];
const verdicts: readonly string[] = ['noUpdateRequired', 'deltaResync', 'fullCopy', 'remoteAhead'];
const copyPurposes: readonly string[] = ['fullCopy', 'resync'];

// ---------------------------------------------------------------------------------------------------------
// Validation

type Fields = Record<string, unknown>;

function fail(field: string, reason: string): never {
  throw new MalformedMessageError(field, reason);
}

function isRecord(value: unknown): value is Fields {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !(value instanceof Uint8Array);
}

/** The exact set of fields a message of a kind has: anything else is malformed. */
const fieldsOf: Record<MessageKind, readonly string[]> = {
  epochNotice: [],
  syncWrite: ['updateNumber', 'volume', 'offset', 'data', 'restoredKnown'],
  syncWriteBatch: ['entries', 'restoredKnown'],
  syncWriteAck: ['updateNumber'],
  flushRequest: ['token', 'updateNumber'],
  flushAck: ['token', 'updateNumber'],
  pullRequest: ['received', 'restored', 'entriesMax', 'bytesMax'],
  pullEntries: ['entries', 'servedAt'],
  judgeRequest: ['purpose', 'received'],
  verdict: ['purpose', 'verdict', 'remoteReceived', 'sourceLast'],
  deltaResyncRequest: ['received', 'entriesMax', 'bytesMax'],
  deltaResyncEntries: ['entries', 'sourceLast', 'final'],
  deltaResyncAck: ['received', 'restored', 'final'],
  deltaResyncRefused: ['received', 'journalFirst', 'sourceLast'],
  pullRefused: ['received', 'journalFirst'],
  fullCopyRequest: [],
  resyncRequest: ['changed'],
  copyBlocks: ['purpose', 'blocks', 'final', 'sourceLast', 'restoredKnown'],
  copyAck: ['purpose', 'final'],
  verifyMarker: ['verifyId', 'volume', 'offset', 'length', 'updateNumber'],
  verifyDigests: ['verifyId', 'volume', 'offset', 'length', 'updateNumber', 'digests', 'reason'],
};

function exactFields(value: Fields, kind: MessageKind, path: string): void {
  const expected = [...fieldsOf[kind], 'epoch'];
  for (const key of Object.keys(value)) {
    if (key !== 'kind' && !expected.includes(key)) fail(`${path}.${key}`, 'unknown field');
  }
  for (const key of expected) {
    if (!(key in value)) fail(`${path}.${key}`, 'missing');
  }
}

function count(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof value !== 'number') fail(field, `must be a number, is ${typeof value}`);
  if (!Number.isSafeInteger(value)) fail(field, `must be an integer, is ${value}`);
  if (value < 0) fail(field, `must be >= 0, is ${value}`);
  if (value > max) fail(field, `must be <= ${max}, is ${value}`);
  return value;
}

/** A time in milliseconds (sub-millisecond precision allowed): a number in [0, Number.MAX_SAFE_INTEGER]. */
function time(value: unknown, field: string): number {
  if (typeof value !== 'number') fail(field, `must be a number, is ${typeof value}`);
  if (!(value >= 0 && value <= Number.MAX_SAFE_INTEGER)) fail(field, `must be a time in milliseconds in [0, ${Number.MAX_SAFE_INTEGER}], is ${value}`);
  return value;
}

function positive(value: unknown, field: string, max = Number.MAX_SAFE_INTEGER): number {
  const n = count(value, field, max);
  if (n < 1) fail(field, 'must be >= 1');
  return n;
}

function bool(value: unknown, field: string): boolean {
  if (typeof value !== 'boolean') fail(field, `must be a boolean, is ${typeof value}`);
  return value;
}

function oneOf<T extends string>(value: unknown, allowed: readonly string[], field: string): T {
  if (typeof value !== 'string' || !allowed.includes(value)) fail(field, `must be one of ${allowed.join(', ')}`);
  return value as T;
}

function bytes(value: unknown, field: string, maxBytes: number): Uint8Array {
  if (!(value instanceof Uint8Array)) fail(field, 'must be a byte array');
  if (value.length > maxBytes) fail(field, `${value.length} bytes exceed ${maxBytes}`);
  return value;
}

function list(value: unknown, field: string, max: number): unknown[] {
  if (!Array.isArray(value)) fail(field, 'must be an array');
  if (value.length > max) fail(field, `${value.length} items exceed ${max}`);
  return value;
}

function entries(value: unknown, field: string): WireEntry[] {
  const items = list(value, field, batchItemsMax);
  let total = 0;
  let previous = -1;
  const out: WireEntry[] = [];
  for (const [i, item] of items.entries()) {
    const path = `${field}[${i}]`;
    if (!isRecord(item)) fail(path, 'must be an object');
    for (const key of Object.keys(item)) {
      if (!['updateNumber', 'volume', 'offset', 'data'].includes(key)) fail(`${path}.${key}`, 'unknown field');
    }
    const updateNumber = positive(item.updateNumber, `${path}.updateNumber`);
    if (previous >= 0 && updateNumber !== previous + 1) fail(`${path}.updateNumber`, `must follow ${previous} without a gap`);
    previous = updateNumber;
    const data = bytes(item.data, `${path}.data`, entryDataBytesMax);
    total += data.length;
    if (total > batchBytesMax) fail(path, `batch data exceeds ${batchBytesMax} bytes`);
    out.push({
      updateNumber,
      volume: count(item.volume, `${path}.volume`, messageVolumesMax - 1),
      offset: count(item.offset, `${path}.offset`),
      data,
    });
  }
  return out;
}

function blocks(value: unknown, field: string): WireBlock[] {
  const items = list(value, field, batchItemsMax);
  let total = 0;
  const out: WireBlock[] = [];
  for (const [i, item] of items.entries()) {
    const path = `${field}[${i}]`;
    if (!isRecord(item)) fail(path, 'must be an object');
    for (const key of Object.keys(item)) {
      if (!['volume', 'offset', 'data'].includes(key)) fail(`${path}.${key}`, 'unknown field');
    }
    const data = bytes(item.data, `${path}.data`, entryDataBytesMax);
    if (data.length === 0) fail(`${path}.data`, 'a block is never empty');
    total += data.length;
    if (total > batchBytesMax) fail(path, `batch data exceeds ${batchBytesMax} bytes`);
    out.push({ volume: count(item.volume, `${path}.volume`, messageVolumesMax - 1), offset: count(item.offset, `${path}.offset`), data });
  }
  return out;
}

/**
 * Checks that `value` is a well-formed {@link Message} and returns it (a fresh object: what the caller
 * passed is not trusted later). Rejects wrong types, negative or non-integer numbers, unknown or missing
 * fields, oversize batches and byte arrays, gaps in a batch's update numbers and unknown kinds with
 * {@link MalformedMessageError}. It checks the form only; whether a site takes the message in its state is
 * the site's decision.
 */
export function validateMessage(value: unknown): Message {
  if (!isRecord(value)) fail('message', 'must be an object');
  const kind = oneOf<MessageKind>(value.kind, messageKinds, 'kind');
  exactFields(value, kind, kind);
  const v = value;
  const epoch = positive(v.epoch, `${kind}.epoch`, epochMax);
  switch (kind) {
    case 'epochNotice':
      return { kind, epoch };
    case 'syncWrite':
      return {
        kind,
        epoch,
        updateNumber: positive(v.updateNumber, 'syncWrite.updateNumber'),
        volume: count(v.volume, 'syncWrite.volume', messageVolumesMax - 1),
        offset: count(v.offset, 'syncWrite.offset'),
        data: bytes(v.data, 'syncWrite.data', entryDataBytesMax),
        restoredKnown: count(v.restoredKnown, 'syncWrite.restoredKnown'),
      };
    case 'syncWriteBatch': {
      const list = entries(v.entries, 'syncWriteBatch.entries');
      if (list.length === 0) fail('syncWriteBatch.entries', 'a batch holds at least one write');
      return { kind, epoch, entries: list, restoredKnown: count(v.restoredKnown, 'syncWriteBatch.restoredKnown') };
    }
    case 'syncWriteAck':
      return { kind, epoch, updateNumber: positive(v.updateNumber, 'syncWriteAck.updateNumber') };
    case 'flushRequest':
    case 'flushAck':
      return { kind, epoch, token: positive(v.token, `${kind}.token`), updateNumber: count(v.updateNumber, `${kind}.updateNumber`) };
    case 'pullRequest': {
      const received = count(v.received, 'pullRequest.received');
      const restored = count(v.restored, 'pullRequest.restored');
      if (restored > received) fail('pullRequest.restored', `restored ${restored} > received ${received} (P2)`);
      return {
        kind,
        epoch,
        received,
        restored,
        entriesMax: count(v.entriesMax, 'pullRequest.entriesMax', batchItemsMax),
        bytesMax: count(v.bytesMax, 'pullRequest.bytesMax'),
      };
    }
    case 'pullEntries':
      return { kind, epoch, entries: entries(v.entries, 'pullEntries.entries'), servedAt: time(v.servedAt, 'pullEntries.servedAt') };
    case 'judgeRequest':
      return { kind, epoch, purpose: oneOf(v.purpose, judgePurposes, 'judgeRequest.purpose'), received: count(v.received, 'judgeRequest.received') };
    case 'verdict':
      return {
        kind,
        epoch,
        purpose: oneOf(v.purpose, judgePurposes, 'verdict.purpose'),
        verdict: oneOf(v.verdict, verdicts, 'verdict.verdict'),
        remoteReceived: count(v.remoteReceived, 'verdict.remoteReceived'),
        sourceLast: count(v.sourceLast, 'verdict.sourceLast'),
      };
    case 'deltaResyncRequest':
      return {
        kind,
        epoch,
        received: count(v.received, 'deltaResyncRequest.received'),
        entriesMax: positive(v.entriesMax, 'deltaResyncRequest.entriesMax', batchItemsMax),
        bytesMax: positive(v.bytesMax, 'deltaResyncRequest.bytesMax'),
      };
    case 'deltaResyncEntries': {
      const list = entries(v.entries, 'deltaResyncEntries.entries');
      const sourceLast = count(v.sourceLast, 'deltaResyncEntries.sourceLast');
      const final = bool(v.final, 'deltaResyncEntries.final');
      const lastEntry = list[list.length - 1];
      if (lastEntry !== undefined && lastEntry.updateNumber > sourceLast) {
        fail('deltaResyncEntries.entries', `entry ${lastEntry.updateNumber} beyond sourceLast ${sourceLast}`);
      }
      if (final && lastEntry !== undefined && lastEntry.updateNumber !== sourceLast) {
        fail('deltaResyncEntries.final', `final batch ends at ${lastEntry.updateNumber}, not sourceLast ${sourceLast}`);
      }
      return { kind, epoch, entries: list, sourceLast, final };
    }
    case 'deltaResyncAck': {
      const received = count(v.received, 'deltaResyncAck.received');
      const restored = count(v.restored, 'deltaResyncAck.restored');
      if (restored > received) fail('deltaResyncAck.restored', `restored ${restored} > received ${received} (P2)`);
      return { kind, epoch, received, restored, final: bool(v.final, 'deltaResyncAck.final') };
    }
    case 'pullRefused':
      return { kind, epoch, received: count(v.received, 'pullRefused.received'), journalFirst: positive(v.journalFirst, 'pullRefused.journalFirst') };
    case 'deltaResyncRefused':
      return {
        kind,
        epoch,
        received: count(v.received, 'deltaResyncRefused.received'),
        journalFirst: positive(v.journalFirst, 'deltaResyncRefused.journalFirst'),
        sourceLast: count(v.sourceLast, 'deltaResyncRefused.sourceLast'),
      };
    case 'fullCopyRequest':
      return { kind, epoch };
    case 'resyncRequest': {
      const items = list(v.changed, 'resyncRequest.changed', messageVolumesMax);
      return { kind, epoch, changed: items.map((item, i) => bytes(item, `resyncRequest.changed[${i}]`, bitmapBytesMax)) };
    }
    case 'copyBlocks':
      return {
        kind,
        epoch,
        purpose: oneOf(v.purpose, copyPurposes, 'copyBlocks.purpose'),
        blocks: blocks(v.blocks, 'copyBlocks.blocks'),
        final: bool(v.final, 'copyBlocks.final'),
        sourceLast: count(v.sourceLast, 'copyBlocks.sourceLast'),
        restoredKnown: count(v.restoredKnown, 'copyBlocks.restoredKnown'),
      };
    case 'copyAck':
      return { kind, epoch, purpose: oneOf(v.purpose, copyPurposes, 'copyAck.purpose'), final: bool(v.final, 'copyAck.final') };
    case 'verifyMarker':
      return { kind, epoch, ...verifyRange(v, kind) };
    case 'verifyDigests': {
      const range = verifyRange(v, kind);
      const digests = bytes(v.digests, 'verifyDigests.digests', verifyChunkDigestBytesMax);
      if (digests.length % verifyDigestBytes !== 0) fail('verifyDigests.digests', `${digests.length} bytes are not whole ${verifyDigestBytes}-byte digests`);
      if (typeof v.reason !== 'string') fail('verifyDigests.reason', `must be a string, is ${typeof v.reason}`);
      if (v.reason.length > verifyReasonCharsMax) fail('verifyDigests.reason', `${v.reason.length} characters exceed ${verifyReasonCharsMax}`);
      if ((digests.length === 0) === (v.reason === '')) fail('verifyDigests.reason', 'either digests or a reason, exactly one');
      return { kind, epoch, ...range, digests, reason: v.reason };
    }
  }
}

/** The chunk and update number a verify message names: a non-empty range of at most `verifyChunkBytesMax` bytes. */
function verifyRange(v: Fields, kind: 'verifyMarker' | 'verifyDigests'): { verifyId: number; volume: number; offset: number; length: number; updateNumber: number } {
  return {
    verifyId: positive(v.verifyId, `${kind}.verifyId`),
    volume: count(v.volume, `${kind}.volume`, messageVolumesMax - 1),
    offset: count(v.offset, `${kind}.offset`),
    length: positive(v.length, `${kind}.length`, verifyChunkBytesMax),
    updateNumber: count(v.updateNumber, `${kind}.updateNumber`),
  };
}

// ---------------------------------------------------------------------------------------------------------
// Binary layout of the hot messages (see the file header)

const binaryMagic = 0x32425354;
const binaryKindCode = { syncWrite: 1, syncWriteAck: 2, syncWriteBatch: 3, pullEntries: 4, flushRequest: 5, flushAck: 6 } as const;
/** u64 updateNumber, u32 volume, u64 offset, u32 data length. */
const binaryEntryHeaderBytes = 24;
const twoTo32 = 2 ** 32;

type BinaryMessage = SyncWriteMessage | SyncWriteBatchMessage | SyncWriteAckMessage | PullEntriesMessage | FlushRequestMessage | FlushAckMessage;

function isBinary(message: Message): message is BinaryMessage {
  return message.kind in binaryKindCode;
}

function setU64(view: DataView, at: number, value: number): void {
  view.setUint32(at, value % twoTo32, true);
  view.setUint32(at + 4, Math.floor(value / twoTo32), true);
}

function getU64(view: DataView, at: number, field: string): number {
  const value = view.getUint32(at + 4, true) * twoTo32 + view.getUint32(at, true);
  if (!Number.isSafeInteger(value)) fail(field, 'must be a safe integer');
  return value;
}

function setEntry(out: Uint8Array, view: DataView, at: number, entry: WireEntry): number {
  setU64(view, at, entry.updateNumber);
  view.setUint32(at + 8, entry.volume, true);
  setU64(view, at + 12, entry.offset);
  view.setUint32(at + 20, entry.data.length, true);
  out.set(entry.data, at + binaryEntryHeaderBytes);
  return at + binaryEntryHeaderBytes + entry.data.length;
}

/** Encodes a valid hot message in its binary layout (the caller validated it). */
function encodeBinary(message: BinaryMessage): Uint8Array {
  if (message.kind === 'flushRequest' || message.kind === 'flushAck') {
    const out = new Uint8Array(32);
    const view = new DataView(out.buffer);
    view.setUint32(0, binaryMagic, true);
    view.setUint32(4, binaryKindCode[message.kind], true);
    setU64(view, 8, message.epoch);
    setU64(view, 16, message.token);
    setU64(view, 24, message.updateNumber);
    return out;
  }
  const list = message.kind === 'syncWriteBatch' || message.kind === 'pullEntries' ? message.entries : message.kind === 'syncWrite' ? [message] : [];
  let total = message.kind === 'syncWriteAck' || message.kind === 'syncWrite' ? 24 : 28;
  for (const entry of list) total += binaryEntryHeaderBytes + entry.data.length;
  if (total > messageBytesMax) fail('message', `${total} bytes exceed messageBytesMax ${messageBytesMax}`);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, binaryMagic, true);
  view.setUint32(4, binaryKindCode[message.kind], true);
  setU64(view, 8, message.epoch);
  if (message.kind === 'syncWriteAck') {
    setU64(view, 16, message.updateNumber);
    return out;
  }
  if (message.kind === 'pullEntries') view.setFloat64(16, message.servedAt, true);
  else setU64(view, 16, message.restoredKnown);
  let at = 24;
  if (message.kind === 'syncWriteBatch' || message.kind === 'pullEntries') {
    view.setUint32(24, list.length, true);
    at = 28;
  }
  for (const entry of list) at = setEntry(out, view, at, entry);
  assert(at === total, 'a binary message fills its buffer', () => `${at} of ${total} bytes`);
  return out;
}

/** Decodes a binary hot message; every defect is a {@link MalformedMessageError}. Data are views into `input`. */
function decodeBinary(input: Uint8Array, view: DataView): Message {
  const need = (at: number, bytes: number, field: string): void => {
    if (at + bytes > input.length) fail(field, `data length mismatch: ${at}+${bytes} > ${input.length} bytes`);
  };
  const code = view.getUint32(4, true);
  need(8, 8, 'epoch');
  const epoch = getU64(view, 8, 'epoch');
  let at = 16;
  const entryAt = (field: string): Fields => {
    need(at, binaryEntryHeaderBytes, field);
    const length = view.getUint32(at + 20, true);
    need(at + binaryEntryHeaderBytes, length, `${field}.data`);
    const start = at + binaryEntryHeaderBytes;
    const entry = {
      updateNumber: getU64(view, at, `${field}.updateNumber`),
      volume: view.getUint32(at + 8, true),
      offset: getU64(view, at + 12, `${field}.offset`),
      data: input.subarray(start, start + length),
    };
    at = start + length;
    return entry;
  };
  // A u32 count, then that many entries (at most batchItemsMax).
  const entryList = (kind: string): Fields[] => {
    const count = view.getUint32(at, true);
    if (count > batchItemsMax) fail(`${kind}.entries`, `${count} items exceed ${batchItemsMax}`);
    at += 4;
    const list: Fields[] = [];
    for (let i = 0; i < count; i += 1) list.push(entryAt(`${kind}.entries[${i}]`));
    return list;
  };
  let value: Fields;
  switch (code) {
    case binaryKindCode.syncWriteAck:
      need(at, 8, 'syncWriteAck.updateNumber');
      value = { kind: 'syncWriteAck', epoch, updateNumber: getU64(view, at, 'syncWriteAck.updateNumber') };
      at += 8;
      break;
    case binaryKindCode.flushRequest:
    case binaryKindCode.flushAck: {
      const kind = code === binaryKindCode.flushRequest ? 'flushRequest' : 'flushAck';
      need(at, 16, kind);
      value = { kind, epoch, token: getU64(view, at, `${kind}.token`), updateNumber: getU64(view, at + 8, `${kind}.updateNumber`) };
      at += 16;
      break;
    }
    case binaryKindCode.syncWrite: {
      need(at, 8, 'syncWrite.restoredKnown');
      const restoredKnown = getU64(view, at, 'syncWrite.restoredKnown');
      at += 8;
      value = { kind: 'syncWrite', epoch, ...entryAt('syncWrite'), restoredKnown };
      break;
    }
    case binaryKindCode.syncWriteBatch: {
      need(at, 12, 'syncWriteBatch');
      const restoredKnown = getU64(view, at, 'syncWriteBatch.restoredKnown');
      at += 8;
      value = { kind: 'syncWriteBatch', epoch, entries: entryList('syncWriteBatch'), restoredKnown };
      break;
    }
    case binaryKindCode.pullEntries: {
      need(at, 12, 'pullEntries');
      const servedAt = view.getFloat64(at, true);
      at += 8;
      value = { kind: 'pullEntries', epoch, entries: entryList('pullEntries'), servedAt };
      break;
    }
    default:
      fail('kind', `binary kind code ${code} is not one of 1, 2, 3, 4, 5, 6`);
  }
  if (at !== input.length) fail('payload', `data length mismatch: ${input.length - at} bytes after the message`);
  return validateMessage(value);
}

// ---------------------------------------------------------------------------------------------------------
// Wire encoding

/**
 * Encodes a message for a network transport (see the file header). Throws {@link MalformedMessageError}
 * when the message is not valid or its encoding exceeds {@link messageBytesMax}.
 */
export function encodeMessage(message: Message): Uint8Array {
  validateMessage(message);
  if (isBinary(message)) return encodeBinary(message);
  const chunks: Uint8Array[] = [];
  let payloadBytes = 0;
  // The holder's own value, not `value`: JSON.stringify has already called a Buffer's toJSON on `value`.
  const header = JSON.stringify(message, function (this: Record<string, unknown>, key: string, value: unknown) {
    const own = this[key];
    if (own instanceof Uint8Array) {
      const ref = { $bytes: [payloadBytes, own.length] };
      chunks.push(own);
      payloadBytes += own.length;
      return ref;
    }
    if (value instanceof Uint8Array) {
      const ref = { $bytes: [payloadBytes, value.length] };
      chunks.push(value);
      payloadBytes += value.length;
      return ref;
    }
    return value;
  });
  const headerBytes = new TextEncoder().encode(header);
  if (headerBytes.length > messageHeaderBytesMax) fail('header', `${headerBytes.length} bytes exceed ${messageHeaderBytesMax}`);
  const total = prefixBytes + headerBytes.length + payloadBytes;
  if (total > messageBytesMax) fail('message', `${total} bytes exceed messageBytesMax ${messageBytesMax}`);
  const out = new Uint8Array(total);
  const view = new DataView(out.buffer);
  view.setUint32(0, messageMagic, true);
  view.setUint32(4, headerBytes.length, true);
  out.set(headerBytes, prefixBytes);
  let at = prefixBytes + headerBytes.length;
  for (const chunk of chunks) {
    out.set(chunk, at);
    at += chunk.length;
  }
  return out;
}

/**
 * Decodes and validates bytes from outside. Every defect (short, oversize, bad magic, bad header length,
 * invalid UTF-8 or JSON, a byte reference outside the payload, a payload not covered exactly, any field
 * {@link validateMessage} rejects) is a {@link MalformedMessageError}; nothing else is thrown. Byte arrays
 * of the result are views into `input`.
 */
export function decodeMessage(input: Uint8Array): Message {
  if (!(input instanceof Uint8Array)) fail('message', 'must be bytes');
  if (input.length > messageBytesMax) fail('message', `${input.length} bytes exceed messageBytesMax ${messageBytesMax}`);
  if (input.length < prefixBytes) fail('message', `${input.length} bytes is shorter than the ${prefixBytes}-byte prefix`);
  const view = new DataView(input.buffer, input.byteOffset, input.byteLength);
  const magic = view.getUint32(0, true);
  if (magic === binaryMagic) return decodeBinary(input, view);
  if (magic !== messageMagic) fail('magic', `0x${magic.toString(16)} is not 0x${messageMagic.toString(16)}`);
  const headerLength = view.getUint32(4, true);
  if (headerLength > messageHeaderBytesMax || prefixBytes + headerLength > input.length) {
    fail('header', `header length ${headerLength} does not fit in ${input.length} bytes`);
  }
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(input.subarray(prefixBytes, prefixBytes + headerLength));
  } catch {
    fail('header', 'not valid UTF-8');
  }
  const payload = input.subarray(prefixBytes + headerLength);
  let covered = 0;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text, function revive(this: unknown, _key: string, value: unknown) {
      if (isRecord(value) && '$bytes' in value) {
        const ref = value.$bytes;
        if (Object.keys(value).length !== 1 || !Array.isArray(ref) || ref.length !== 2) fail('$bytes', 'must be [offset, length]');
        const offset = count(ref[0], '$bytes.offset');
        const length = count(ref[1], '$bytes.length');
        if (offset !== covered) fail('$bytes.offset', `byte arrays must follow each other: expected offset ${covered}, got ${offset}`);
        if (offset + length > payload.length) fail('$bytes.length', `data length mismatch: ${offset}+${length} > payload ${payload.length}`);
        covered = offset + length;
        return payload.subarray(offset, offset + length);
      }
      return value;
    });
  } catch (error) {
    if (error instanceof MalformedMessageError) throw error;
    fail('header', 'not valid JSON');
  }
  if (covered !== payload.length) fail('payload', `data length mismatch: ${payload.length} payload bytes, ${covered} referenced`);
  return validateMessage(parsed);
}

/** The data bytes a message carries (entries', blocks', a sync write's): what a batch limit counts. */
export function messageDataBytes(message: Message): number {
  switch (message.kind) {
    case 'syncWrite':
      return message.data.length;
    case 'syncWriteBatch':
    case 'pullEntries':
    case 'deltaResyncEntries':
      return message.entries.reduce((sum, entry) => sum + entry.data.length, 0);
    case 'copyBlocks':
      return message.blocks.reduce((sum, block) => sum + block.data.length, 0);
    case 'resyncRequest':
      return message.changed.reduce((sum, bitmap) => sum + bitmap.length, 0);
    default:
      return 0;
  }
}
