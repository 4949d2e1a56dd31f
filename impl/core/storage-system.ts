/**
 * One storage system (a site): its volumes (one consistency group: claims 12, 13, 14), its journal, its
 * update-number counter, its role, mode, fence, changed-block record and known site-3 progress.
 *
 * Pure core, I/O at the edges (etcd-io/raft's shape): every handler takes a command of its controller (the
 * cluster, `cluster.ts`) or a message from another site, changes the site's own state, and returns what to
 * send and what to tell the controller ({@link SiteOutput}); the transport carries the messages. A handler
 * checks everything before it changes anything: a message it does not take is refused with a typed error
 * (`errors.ts`) and the site is left as it was.
 *
 * Sites 1 and 2 (the sync members) and site 3 (the remote) share this class; which handlers apply depends on
 * the site's role. The write path, in the order this site does it (model/README.md "Host write"):
 * the primary gives the write the next update number, journals it and writes its volume, sends it to the
 * secondary with its known site-3 progress; the secondary trims by that progress, journals and writes it,
 * answers; the primary then acknowledges the host. (The primary journals before sending so that a write it
 * holds and the secondary may lack is always in its own journal and, if the pair breaks, in its
 * changed-block record; see `setSyncPair`.)
 *
 * Epochs (fencing tokens; model/README.md "Epochs"): a site keeps the highest epoch it was given
 * ({@link StorageSystem.setEpoch}, at each promotion) or learnt, durably, and stamps it on every message it
 * sends. {@link StorageSystem.handle} refuses a message of a lower epoch before anything else, and adopts a
 * higher one first ({@link StorageSystem.learnEpoch}): the one change a refused message can make, because the
 * epoch is learnt from the authenticated peer whatever it then says. A primary that learns of a higher epoch
 * was deposed and steps down.
 */

import type { SiteMode, SiteRole, SyncPairState } from '../../model/observation.ts';
import { BlockCursor, type CopySession } from './block-copy.ts';
import { ChangedBlocks } from './changed-blocks.ts';
import {
  MalformedMessageError,
  NotDurableError,
  NotWritableError,
  OutOfOrderError,
  SiteFailedError,
  StaleEpochError,
  UnexpectedMessageError,
  type NotWritableReason,
  type RefusalError,
} from './errors.ts';
import { assert } from './invariant.ts';
import { entryBytes, type Journal, type JournalEntry } from './journal.ts';
import { judge } from './judge.ts';
import {
  batchBytesMax,
  batchItemsMax,
  decodeMessage,
  epochMax,
  type CopyAckMessage,
  type CopyBlocksMessage,
  type CopyPurpose,
  type DeltaResyncAckMessage,
  type DeltaResyncEntriesMessage,
  type DeltaResyncRequestMessage,
  type EpochNoticeMessage,
  type FlushAckMessage,
  type FlushRequestMessage,
  type JudgePurpose,
  type JudgeRequestMessage,
  type Message,
  type PullEntriesMessage,
  type PullRefusedMessage,
  type PullRequestMessage,
  type ResyncRequestMessage,
  type SyncWriteAckMessage,
  type SyncWriteBatchMessage,
  type SyncWriteMessage,
  type Verdict,
  type VerdictMessage,
  type WireBlock,
  type WireEntry,
} from './messages.ts';
import type { Envelope, LinkSite } from './link.ts';
import { blockDigests, overlayEntries, type VerifyChunk } from './verify.ts';
import { digestVolumes, type Volume } from './volume.ts';

/** A site. */
export type SiteId = 1 | 2 | 3;

/** A message on the transport between sites. */
export type SiteEnvelope = Envelope<Message>;

/**
 * Bytes of pulled entries site 3 keeps in memory for its next restore: 64 MiB. Past it the rest are read
 * back from its journal, as they always can be.
 */
// Stryker disable next-line ArithmeticOperator: the restore cache only saves reading the journal back (see #pulled).
export const restoreCacheBytesMax = 64 * 1024 * 1024;

/** The epoch of a new cluster, before any promotion: each failover or failback raises it by one. */
export const epochInitial = 1;

/** Largest number of host writes a primary holds in flight (sent to the secondary, not yet answered). */
export const inFlightWritesMaxDefault = 256;

/**
 * Host flushes (NBD FLUSH, FUA) a primary holds waiting for its secondary's answer at most: every request the
 * NBD server can have in flight on every connection (`nbdConnectionsMax` 128 x `nbdRequestsInFlightMax` 64),
 * so a site process never meets it; one more is refused ({@link NotDurableError} `flushesWaitingMax`).
 */
export const flushesWaitingMax = 128 * 64;

/**
 * What a site tells its controller, besides the messages it sends: outcomes the controller acts on
 * (acknowledge a host, suspend a pair after an overflow, record a judgement, finish a command).
 */
export type SiteNote =
  | { kind: 'hostWriteAcked'; writeId: number; updateNumber: number; alone: boolean }
  | { kind: 'hostWriteFailed'; writeId: number; error: RefusalError }
  /** A flush is settled: `alone` when only this site's own fsync stands behind it (the pair not in sync, or this site not the primary). */
  | { kind: 'flushDone'; flushId: number; alone: boolean }
  | { kind: 'flushFailed'; flushId: number; error: RefusalError }
  | { kind: 'journalOverflow'; site: SiteId; updateNumber: number }
  | { kind: 'judged'; purpose: JudgePurpose; verdict: Verdict; remoteReceived: number; sourceLast: number }
  | { kind: 'deltaResyncDone'; sourceLast: number }
  | { kind: 'deltaResyncRefused'; received: number; journalFirst: number }
  | { kind: 'pullRefused'; received: number; journalFirst: number }
  | { kind: 'fullCopyDone'; sourceLast: number }
  | { kind: 'resyncDone'; sourceLast: number };

/** What a handler returns: the messages to send and the notes for the controller. */
export interface SiteOutput {
  readonly send: readonly SiteEnvelope[];
  readonly notes: readonly SiteNote[];
}

const noEnvelopes: readonly SiteEnvelope[] = Object.freeze([]);
const noNotes: readonly SiteNote[] = Object.freeze([]);

/** The output of a handler that sends nothing and notes nothing. */
export const nothing: SiteOutput = Object.freeze({ send: noEnvelopes, notes: noNotes });

/** The fixed configuration of a site. */
export interface SiteConfig {
  id: SiteId;
  volumeCount: number;
  volumeBytes: number;
  blockBytes: number;
  fencePolicy: 'refuse' | 'keepWriting';
  /** Host writes a primary holds in flight at most. */
  inFlightWritesMax: number;
  /** Make the journal and volumes durable (flush) before a write is answered or acknowledged. */
  flushEachWrite: boolean;
}

/**
 * The durable state of a site besides its volumes and journal (which hold the update numbers: a sync
 * member's last update number is its journal's `last`; site 3's received and restored numbers are its
 * journal's `last` and `first - 1`).
 */
export interface SiteDurableState {
  role: SiteRole;
  mode: SiteMode;
  up: boolean;
  fenced: boolean;
  /** Site 3's restored number as this site knows it (the trimming bound); never decreases except at resync. */
  knownRestored: number;
  /** Site 2's last update number at a failover, until site 3 is judged against it. */
  takeover: number | null;
  /** Host writes this site acknowledged while its sync pair was not in sync (the P1 exposure). */
  ackedAlone: number;
  /** The sync pair's state as the controller told this sync member. */
  syncPair: SyncPairState;
  /** Site 3's source (site 3 only; the sync primary). */
  source: 1 | 2;
  /** The changed-block record, one bitmap per volume (sync members). */
  changed: Uint8Array[];
  /**
   * The highest epoch this site has been given or learnt (the fencing token; see {@link StorageSystem.handle}):
   * never decreases, saved before the site acts on a new one.
   */
  epoch: number;
}

/** A host write sent to the secondary and not yet answered. */
interface InFlightWrite {
  readonly writeId: number;
  readonly updateNumber: number;
  readonly volume: number;
  readonly offset: number;
  readonly length: number;
}

/** A host flush the primary asked its secondary to make durable, waiting for the answer. */
interface WaitingFlush {
  readonly flushId: number;
  readonly token: number;
  readonly updateNumber: number;
}

/** A delta resync under way at its source. */
interface DeltaSession {
  /** Next update number to send. */
  next: number;
  readonly sourceLast: number;
  readonly entriesMax: number;
  readonly bytesMax: number;
}

/** What site 3 waits for after it asked its source for something. */
type RemoteWaiting = 'none' | 'deltaResync' | 'fullCopy';

function output(send: readonly SiteEnvelope[], notes: readonly SiteNote[] = noNotes): SiteOutput {
  return { send, notes };
}

/**
 * The mode of a sync member (model/README.md "Modes"), from whether it is up, whether it is the primary, the
 * sync pair's state and its mode before: the primary is normal (syncReversed while the pair is reversed); a
 * secondary follows the pair, and with the pair suspended it is resyncing if it has just returned or was
 * already waiting for its resync (its data are stale), normal otherwise. The in-process cluster and the site
 * process both derive modes with it.
 */
export function syncMemberMode(up: boolean, primary: boolean, pair: SyncPairState, previous: SiteMode): SiteMode {
  if (!up) return 'failed';
  if (primary) return pair === 'reversed' ? 'syncReversed' : 'normal';
  switch (pair) {
    case 'inSync':
      return 'normal';
    case 'reversed':
      return 'syncReversed';
    case 'resyncing':
      return 'resyncing';
    case 'suspended':
      return previous === 'failed' || previous === 'resyncing' ? 'resyncing' : 'normal';
  }
}

/**
 * One storage system.
 * @see claims 1, 12, 13, 14 (the three storage systems, their data volumes and journals)
 */
export class StorageSystem {
  readonly id: SiteId;
  readonly config: Readonly<SiteConfig>;
  readonly volumes: readonly Volume[];
  readonly journal: Journal;
  readonly changed: ChangedBlocks;
  readonly #state: Omit<SiteDurableState, 'changed'>;
  readonly #blocksPerVolume: number;
  #inFlight: InFlightWrite[] = [];
  /** Host flushes sent to the secondary and not yet answered, in token order (at most {@link flushesWaitingMax}). */
  #flushes: WaitingFlush[] = [];
  /** The token of the last flush request sent (tokens increase for the life of the object, across pair states). */
  #flushToken = 0;
  /** Flush requests of its primary this site made durable and answered. */
  #flushesForPeer = 0;
  #copy: CopySession | null = null;
  #delta: DeltaSession | null = null;
  #waiting: RemoteWaiting = 'none';
  #resyncRequested = false;
  #lastVerdict: VerdictMessage | null = null;
  /**
   * Site 3: the entries pulled since its last restore, as they arrived (the frame's bytes, validated, and the
   * same entries its journal holds), so that a restore writes them without reading and decoding them back
   * from the journal file. It holds `[restored + 1 ..]` up to {@link restoreCacheBytesMax} bytes; a delta
   * resync appends after it without adding to it (the restore reads those entries from the journal), and any
   * other change of the journal (full copy, failure) empties it.
   */
  // Stryker disable next-line ArrayDeclaration: the restore cache only saves reading the journal back; restore() uses it only when it starts at restored + 1.
  #pulled: { entries: WireEntry[]; bytes: number } = { entries: [], bytes: 0 };
  #dirty = false;
  #deposedBy: number | null = null;
  /**
   * The changed-block record or the count of writes acknowledged alone changed by host writes with the pair
   * not in sync, and not saved yet. Those changes are saved by {@link saveIfDirty} (the site process calls it
   * at every tick) and always before the journal discards an entry ({@link #saveBeforeDiscard}), but not
   * after each write ({@link saveIfDirtyBesidesHostWrites}): with the secondary down, a state file rewrite
   * (two fsyncs, a rename) per write was the write path's cost. A crash in between loses no block: every
   * block written since the last save is still in the journal, which a restarted site records as changed
   * (`markJournalChanged`); only the count of writes acknowledged alone may then read low until the resync
   * that clears it.
   */
  #hostWritesUnsaved = false;
  readonly #save: ((state: SiteDurableState) => void) | null;

  /**
   * A site over its volumes and journal. `saved` is the durable state read back at reopen (null: a new
   * site); `save` persists the durable state (null: in memory).
   */
  constructor(
    config: SiteConfig,
    volumes: readonly Volume[],
    journal: Journal,
    saved: SiteDurableState | null,
    save: ((state: SiteDurableState) => void) | null,
  ) {
    assert(volumes.length === config.volumeCount, 'a site has its group of volumes', () => `${volumes.length} volumes`);
    this.id = config.id;
    this.config = Object.freeze({ ...config });
    this.volumes = volumes;
    this.journal = journal;
    this.#blocksPerVolume = config.volumeBytes / config.blockBytes;
    this.changed = new ChangedBlocks(config.volumeCount, this.#blocksPerVolume);
    this.#save = save;
    const role: SiteRole = config.id === 1 ? 'primary' : config.id === 2 ? 'secondary' : 'remote';
    this.#state = saved
      ? { ...saved }
      : { role, mode: 'normal', up: true, fenced: false, knownRestored: 0, takeover: null, ackedAlone: 0, syncPair: 'inSync', source: 1, epoch: epochInitial };
    assert(Number.isSafeInteger(this.#state.epoch) && this.#state.epoch >= epochInitial, 'an epoch is a positive integer', () => `${this.#state.epoch}`);
    if (saved) this.changed.loadBitmaps(saved.changed);
    // Site 3's journal holds exactly what it received and has not restored (model/README.md "Journals").
    assert(config.id !== 3 || journal.first >= 1, 'P2 restoredUpTo <= receivedUpTo', () => `journal [${journal.first}..${journal.last}]`);
  }

  // -------------------------------------------------------------------------------------------------------
  // What the site shows

  get up(): boolean {
    return this.#state.up;
  }
  get role(): SiteRole {
    return this.#state.role;
  }
  get mode(): SiteMode {
    return this.#state.mode;
  }
  get fenced(): boolean {
    return this.#state.fenced;
  }
  get knownRestored(): number {
    return this.#state.knownRestored;
  }
  get takeover(): number | null {
    return this.#state.takeover;
  }
  get ackedAlone(): number {
    return this.#state.ackedAlone;
  }
  get syncPair(): SyncPairState {
    return this.#state.syncPair;
  }
  get source(): 1 | 2 {
    return this.#state.source;
  }
  /** The highest epoch this site has been given or learnt (durable). */
  get epoch(): number {
    return this.#state.epoch;
  }
  /**
   * The epoch that deposed this site, or null: it was primary when it learnt of that higher epoch, stepped
   * down, and refuses host writes (reason `deposed`) until a controller gives it a role ({@link setRole}).
   */
  get deposedBy(): number | null {
    return this.#deposedBy;
  }
  /** A sync member's last update number (P3: its journal's last). */
  get last(): number {
    return this.journal.last;
  }
  /** Site 3: the last update number pulled into its journal. */
  get received(): number {
    return this.journal.last;
  }
  /** Site 3: the last update number restored into its volumes. */
  get restored(): number {
    return this.journal.first - 1;
  }
  /** Host writes sent to the secondary and not yet answered. */
  get inFlightWrites(): number {
    return this.#inFlight.length;
  }
  /** Host flushes waiting for the secondary's answer. */
  get flushesWaiting(): number {
    return this.#flushes.length;
  }
  /** Flush requests of its primary this site made durable (fsync of its journal and volumes) and answered. */
  get flushesForPeer(): number {
    return this.#flushesForPeer;
  }
  /** The last verdict site 3 received (its record of the last judgement about it). */
  get lastVerdict(): VerdictMessage | null {
    return this.#lastVerdict;
  }
  /** Whether a block copy, delta resync or resync is under way at this site. */
  get busy(): boolean {
    return this.#copy !== null || this.#delta !== null || this.#waiting !== 'none' || this.#resyncRequested;
  }

  /** What the block copy this site is sending is for (a resync of its secondary, a full copy), or null. */
  get copySending(): CopyPurpose | null {
    return this.#copy?.purpose ?? null;
  }

  /**
   * After a crash of a sync member's process (`fail` never ran, so its in-flight writes were not recorded):
   * every block of every entry still in its journal goes to the changed-block record. The writes it sent
   * and never had answered are at the journal's tail, so the resync copies them back from the peer; the
   * rest are copied once more, which costs bytes and loses nothing. Returns the blocks marked.
   * @see claims 29, 30, 31 (the resync of the returning site)
   */
  markJournalChanged(): number {
    assert(this.id !== 3, 'only sync members keep a changed-block record', () => `site ${this.id}`);
    const before = this.changed.count;
    let after = this.journal.first - 1;
    while (after < this.journal.last) {
      const batch = this.journal.readAfter(after, batchItemsMax);
      assert(batch.length > 0, 'a journal reads every entry it holds', () => `nothing after ${after} below ${this.journal.last}`);
      for (const entry of batch) {
        this.#markChanged(entry.volume, entry.offset, entry.data.length);
        after = entry.updateNumber;
      }
    }
    return this.changed.count - before;
  }

  /** SHA-256 (hex) of the site's volumes in volume order (the observation's `volumeDigest`). */
  digest(): string {
    return digestVolumes(this.volumes);
  }

  /**
   * The block digests of a chunk of a volume as it is now (online verify, `verify.ts`): at a sync member,
   * its image at its last update number.
   */
  chunkDigests(chunk: VerifyChunk): Uint8Array {
    return blockDigests(this.#volume(chunk.volume).read(chunk.offset, chunk.length), this.config.blockBytes);
  }

  /**
   * Site 3: the block digests of a chunk as a restore through `updateNumber` leaves it: its volume (restored
   * through `restored`) with the journal's entries through `updateNumber` written over it (`verify.ts`
   * `chunkAt`). Requires `restored <= updateNumber <= received`.
   */
  chunkDigestsAt(chunk: VerifyChunk, updateNumber: number): Uint8Array {
    this.#mustBe(3, 'chunkDigestsAt');
    assert(this.restored <= updateNumber && updateNumber <= this.received, 'site 3 hashes a chunk at an update number it holds', () =>
      `u=${updateNumber}, restored ${this.restored}, received ${this.received}`,
    );
    // The volume's bytes, then the journal's entries through `updateNumber` over them, batch by batch (the
    // memory of one batch, as a restore reads them).
    const bytes = this.#volume(chunk.volume).read(chunk.offset, chunk.length);
    let after = this.restored;
    while (after < updateNumber) {
      const batch = this.journal.readAfter(after, Math.min(batchItemsMax, updateNumber - after));
      assert(batch.length > 0, 'P2 a journal reads every entry it holds', () => `nothing after ${after} below ${updateNumber}`);
      for (const entry of batch) {
        assert(entry.updateNumber === after + 1, 'P2 entries in order without gaps', () => `u=${entry.updateNumber} after ${after}`);
        after = entry.updateNumber;
      }
      overlayEntries(bytes, chunk, batch, updateNumber);
    }
    return blockDigests(bytes, this.config.blockBytes);
  }

  /**
   * The primary records blocks an online verify found different at its secondary in its changed-block
   * record, so that the next resync copies them (saved with the state). Returns how many were not marked.
   */
  markDiffering(volume: number, offsets: readonly number[]): number {
    assert(this.id !== 3, 'only sync members keep a changed-block record', () => `site ${this.id}`);
    const before = this.changed.count;
    for (const offset of offsets) this.#markChanged(volume, offset, this.config.blockBytes);
    return this.changed.count - before;
  }

  /** Reads bytes of a volume (the operator's and the host's view). */
  read(volume: number, offset: number, length: number): Uint8Array {
    return this.#volume(volume).read(offset, length);
  }

  /** The durable state, for the state file. */
  durableState(): SiteDurableState {
    return { ...this.#state, changed: this.changed.toBitmaps() };
  }

  /** Persists the durable state if it changed since the last call (a no-op in memory). */
  saveIfDirty(): void {
    if (!this.#dirty && !this.#hostWritesUnsaved) return;
    this.#dirty = false;
    this.#hostWritesUnsaved = false;
    if (this.#save !== null) this.#save(this.durableState());
  }

  /**
   * Persists the durable state if it changed since the last save in a way that cannot wait: anything but
   * what host writes with the pair not in sync changed (see {@link #hostWritesUnsaved}).
   */
  saveIfDirtyBesidesHostWrites(): void {
    if (this.#dirty) this.saveIfDirty();
  }

  /** Persists the durable state now (a new site's state file, so a restart knows it is not new). */
  save(): void {
    this.#dirty = true;
    this.saveIfDirty();
  }

  /** Makes the journal and volumes durable. */
  flush(): void {
    this.journal.flush();
    for (const volume of this.volumes) volume.flush();
  }

  /** Saves, flushes and releases the volumes and the journal. */
  close(): void {
    this.#dirty = true;
    this.saveIfDirty();
    this.flush();
    this.journal.close();
    for (const volume of this.volumes) volume.close();
  }

  // -------------------------------------------------------------------------------------------------------
  // Commands of the controller

  /**
   * Why this site does not accept a write from `host` now, or null when it does (model/README.md
   * "acceptsHostWrites"): up, primary, not fenced, and not refusing by fence policy (site 1 as primary with
   * its pair suspended or resyncing, under policy `refuse`).
   * @see claims 3, 29; P1, P4
   */
  writeRefusal(): NotWritableReason | null {
    if (!this.#state.up) return 'failed';
    if (this.#deposedBy !== null) return 'deposed';
    if (this.#state.role !== 'primary') return 'notPrimary';
    if (this.#state.fenced) return 'fenced';
    if (this.id === 1 && this.config.fencePolicy === 'refuse' && !this.#pairInSync()) return 'fencePolicy';
    if (this.#inFlight.length >= this.config.inFlightWritesMax) return 'inFlightWritesMax';
    return null;
  }

  /**
   * A host write at the primary, already checked by the controller (range, {@link writeRefusal}). The
   * write gets `last + 1` (P3, claims 4, 10, 27), is journaled (overflow: the journal restarts, P7) and
   * written; with the pair in sync it goes to the secondary and is acknowledged on its answer, otherwise it
   * is acknowledged now, on this site alone, and recorded in the changed-block record (P1).
   * @see claims 2, 3, 4, 10, 12, 15, 17, 21, 25, 27, 32, 33
   */
  hostWrite(writeId: number, volume: number, offset: number, data: Uint8Array): SiteOutput {
    assert(this.writeRefusal() === null, 'P4 only the writable primary takes host writes', () => `site ${this.id}: ${this.writeRefusal()}`);
    const message: SyncWriteMessage = {
      kind: 'syncWrite',
      epoch: this.#state.epoch,
      updateNumber: this.journal.last + 1,
      volume,
      offset,
      data,
      restoredKnown: this.#state.knownRestored,
    };
    const overflowed = this.#journalAndWrite(message);
    if (this.#pairInSync()) {
      this.#inFlight.push({ writeId, updateNumber: message.updateNumber, volume, offset, length: data.length });
      const send = [{ from: this.id, to: this.#peer(), message } satisfies SiteEnvelope];
      return overflowed ? output(send, [this.#overflowNote(message.updateNumber)]) : output(send);
    }
    this.#markChanged(volume, offset, data.length, true);
    this.#state.ackedAlone += 1;
    this.#hostWritesUnsaved = true;
    const acked: SiteNote = { kind: 'hostWriteAcked', writeId, updateNumber: message.updateNumber, alone: true };
    return output(noEnvelopes, overflowed ? [this.#overflowNote(message.updateNumber), acked] : [acked]);
  }

  /**
   * Several host writes at the primary at once (those its process took in one turn of its event loop), each
   * already checked by the controller; the same as {@link hostWrite} one after the other, but journaled with
   * one write and, with the pair in sync, sent as one {@link SyncWriteBatchMessage} that the secondary
   * answers once. The in-flight limit counts every write of the batch.
   * @see claims 2, 3, 4, 10, 12, 15, 17, 21, 25, 27, 32, 33
   */
  hostWrites(writes: readonly { writeId: number; volume: number; offset: number; data: Uint8Array }[]): SiteOutput {
    assert(writes.length > 0, 'a batch holds at least one write', 'empty batch');
    assert(this.writeRefusal() === null, 'P4 only the writable primary takes host writes', () => `site ${this.id}: ${this.writeRefusal()}`);
    assert(!this.#pairInSync() || this.#inFlight.length + writes.length <= this.config.inFlightWritesMax, 'writes in flight stay within inFlightWritesMax', () =>
      `${writes.length} writes, ${this.#inFlight.length} in flight`,
    );
    if (writes.length === 1) {
      const only = writes[0] as (typeof writes)[number];
      return this.hostWrite(only.writeId, only.volume, only.offset, only.data);
    }
    const first = this.journal.last + 1;
    const entries: WireEntry[] = writes.map((write, i) => ({ updateNumber: first + i, volume: write.volume, offset: write.offset, data: write.data }));
    const overflows = this.#journalAndWriteAll(entries);
    const notes: SiteNote[] = overflows.map((u) => this.#overflowNote(u));
    if (this.#pairInSync()) {
      for (const [i, write] of writes.entries()) {
        this.#inFlight.push({ writeId: write.writeId, updateNumber: first + i, volume: write.volume, offset: write.offset, length: write.data.length });
      }
      const message: SyncWriteBatchMessage = { kind: 'syncWriteBatch', epoch: this.#state.epoch, entries, restoredKnown: this.#state.knownRestored };
      return output([{ from: this.id, to: this.#peer(), message }], notes);
    }
    for (const [i, write] of writes.entries()) {
      this.#markChanged(write.volume, write.offset, write.data.length, true);
      this.#state.ackedAlone += 1;
      notes.push({ kind: 'hostWriteAcked', writeId: write.writeId, updateNumber: first + i, alone: true });
    }
    this.#hostWritesUnsaved = true;
    return output(noEnvelopes, notes);
  }

  /**
   * A host's flush (NBD FLUSH, or a write with FUA) at this site, numbered `flushId` by the controller: who
   * must make what durable before the host is answered. The controller fsyncs this site's own journal and
   * volumes ({@link flush}) right after sending what this returns (so both sync members fsync at once), and
   * answers the host when it has done so and this returns or later notes `flushDone`:
   * - the primary with its pair in sync asks its secondary to make durable every write acknowledged so far
   *   (its last update number less the writes in flight: a flush covers the writes before it, not later
   *   ones), and notes `flushDone` on the answer ({@link FlushAckMessage}); if the pair leaves in sync first,
   *   {@link setSyncPair} decides it by fence policy;
   * - the primary with its pair not in sync: `flushDone` alone now (durable at this site only), or under fence
   *   policy `refuse` at site 1 `flushFailed` with {@link NotDurableError} (nothing promised on one site);
   * - any other site (a secondary or site 3, which take no host writes): `flushDone` alone now.
   * A primary that already holds {@link flushesWaitingMax} flushes waiting refuses one more (`flushFailed`).
   * @see P1
   */
  requestFlush(flushId: number): SiteOutput {
    assert(this.#state.up, 'a failed site takes no flush', () => `site ${this.id}`);
    if (this.id === 3 || this.#state.role !== 'primary') return output(noEnvelopes, [{ kind: 'flushDone', flushId, alone: true }]);
    if (!this.#pairInSync()) {
      if (this.id === 1 && this.config.fencePolicy === 'refuse') return output(noEnvelopes, [{ kind: 'flushFailed', flushId, error: new NotDurableError(1, 'fencePolicy') }]);
      return output(noEnvelopes, [{ kind: 'flushDone', flushId, alone: true }]);
    }
    if (this.#flushes.length >= flushesWaitingMax) {
      return output(noEnvelopes, [{ kind: 'flushFailed', flushId, error: new NotDurableError(this.id, 'flushesWaitingMax') }]);
    }
    this.#flushToken += 1;
    const updateNumber = this.journal.last - this.#inFlight.length;
    this.#flushes.push({ flushId, token: this.#flushToken, updateNumber });
    const message: FlushRequestMessage = { kind: 'flushRequest', epoch: this.#state.epoch, token: this.#flushToken, updateNumber };
    return output([{ from: this.id, to: this.#peer(), message }]);
  }

  /** Every waiting flush fails with `error` (the site failed, or was deposed). */
  #failFlushes(error: RefusalError): SiteNote[] {
    const notes: SiteNote[] = this.#flushes.map((flush) => ({ kind: 'flushFailed', flushId: flush.flushId, error }));
    this.#flushes = [];
    return notes;
  }

  /** The site stops: in-flight writes fail (their blocks go to the changed-block record), copies end. */
  fail(): SiteOutput {
    assert(this.#state.up, 'only an up site fails', () => `site ${this.id}`);
    const notes: SiteNote[] = [];
    for (const write of this.#inFlight) {
      // The primary holds the write; the secondary may not: the resync must copy these blocks.
      this.#markChanged(write.volume, write.offset, write.length);
      notes.push({ kind: 'hostWriteFailed', writeId: write.writeId, error: new SiteFailedError(this.id, 'host write') });
    }
    this.#inFlight = [];
    notes.push(...this.#failFlushes(new SiteFailedError(this.id, 'flush')));
    this.#endSessions();
    this.#forgetPulled();
    this.#state.up = false;
    this.#dirty = true;
    return output(noEnvelopes, notes);
  }

  /** The site is up again with what its volumes and journal held. */
  recover(): void {
    assert(!this.#state.up, 'only a failed site recovers', () => `site ${this.id}`);
    this.#state.up = true;
    this.#dirty = true;
  }

  /**
   * The refusal of a host write for `reason` ({@link writeRefusal}), with the epoch that deposed the site
   * when that is the reason.
   */
  notWritable(reason: NotWritableReason): NotWritableError {
    assert(this.id !== 3, 'only sync members take host writes', () => `site ${this.id}`);
    const id = this.id as 1 | 2;
    return new NotWritableError(id, id, reason, reason === 'deposed' ? this.#deposedBy : null);
  }

  /** Sets the role (failover, failback); a deposed site takes the role it is given and is deposed no more. */
  setRole(role: SiteRole): void {
    assert(this.id !== 3 || role === 'remote', 'site 3 is the remote', () => role);
    assert(this.id === 3 || role !== 'remote', 'sync members are primary or secondary', () => role);
    this.#deposedBy = null;
    if (this.#state.role !== role) {
      this.#state.role = role;
      this.#dirty = true;
    }
  }

  /**
   * A controller's step gives this site the epoch `epoch`: a new one at a promotion (failover, failback,
   * forced takeover: each raises the cluster's epoch by one), or the current one when it tells a site that
   * missed it (recovery, attach). It never decreases (the controller checks: an invariant here). Nothing
   * else changes: the controller sets the roles itself.
   */
  setEpoch(epoch: number): void {
    assert(Number.isSafeInteger(epoch) && epoch <= epochMax, 'an epoch is an integer within epochMax', () => `${epoch}`);
    assert(epoch >= this.#state.epoch, 'an epoch never decreases', () => `site ${this.id}: ${epoch} < ${this.#state.epoch}`);
    if (epoch === this.#state.epoch) return;
    this.#state.epoch = epoch;
    this.#dirty = true;
  }

  /**
   * This site learns of `epoch` from a message of a peer (before {@link handle}: the controllers call this
   * first, so that what it returns reaches them even when the message itself is then refused). A higher
   * epoch is adopted (and saved with the next save); a lower or equal one changes nothing, and a failed site
   * learns nothing. A primary that learns of a higher epoch was deposed: another site was promoted while it
   * did not hear of it. It must not acknowledge another write: every write in flight fails with
   * {@link NotWritableError} `deposed` (its blocks go to the changed-block record: its peer refused them),
   * it steps down to secondary with the sync pair suspended (a resync from the new primary brings it back),
   * and it refuses host writes as `deposed` until a controller gives it a role.
   * @see P4 (single writer)
   */
  learnEpoch(epoch: number): SiteOutput {
    if (!this.#state.up || epoch <= this.#state.epoch) return nothing;
    assert(Number.isSafeInteger(epoch) && epoch <= epochMax, 'an epoch is an integer within epochMax', () => `${epoch}`);
    this.#state.epoch = epoch;
    this.#dirty = true;
    if (this.#state.role !== 'primary') return nothing;
    const notes: SiteNote[] = [];
    for (const write of this.#inFlight) {
      this.#markChanged(write.volume, write.offset, write.length);
      notes.push({ kind: 'hostWriteFailed', writeId: write.writeId, error: new NotWritableError(this.id as 1 | 2, this.id as 1 | 2, 'deposed', epoch) });
    }
    this.#inFlight = [];
    notes.push(...this.#failFlushes(new NotDurableError(this.id, 'deposed')));
    this.#endSessions();
    this.#deposedBy = epoch;
    this.#state.role = 'secondary';
    this.#state.syncPair = 'suspended';
    return output(noEnvelopes, notes);
  }

  /** This site tells `to` its epoch (at link up, after a new epoch, in answer to a lower one it refused). */
  epochNotice(to: SiteId): SiteOutput {
    assert(to !== this.id, 'a site tells its epoch to a peer', () => `site ${to}`);
    const message: EpochNoticeMessage = { kind: 'epochNotice', epoch: this.#state.epoch };
    return output([{ from: this.id, to, message }]);
  }

  /** Sets the mode the controller derived (model/README.md "Modes"). */
  setMode(mode: SiteMode): void {
    if (this.#state.mode !== mode) {
      this.#state.mode = mode;
      this.#dirty = true;
    }
  }

  /** Site 3: sets its source (the sync primary). */
  setSource(source: 1 | 2): void {
    if (this.#state.source !== source) {
      this.#state.source = source;
      this.#dirty = true;
    }
  }

  /** Sets or clears the takeover point (model/README.md "Covering and judging"). */
  setTakeover(takeover: number | null): void {
    if (this.#state.takeover !== takeover) {
      this.#state.takeover = takeover;
      this.#dirty = true;
    }
  }

  /** Fences the site: it accepts no host write from now on (one-way until a resync makes it a follower). */
  fence(): void {
    this.#state.fenced = true;
    this.#dirty = true;
  }

  /**
   * Sets this sync member's view of the sync pair (rule R1). When the pair stops being in sync with writes
   * in flight, each is decided now: under fence policy `refuse` at site 1 it fails (not acknowledged), else
   * it is acknowledged on this site alone; either way its blocks go to the changed-block record, because the
   * secondary may not hold them. Flushes waiting for the secondary are decided the same way: under `refuse`
   * at site 1 they fail ({@link NotDurableError}), else they are done on this site alone (its own fsync).
   * @see P1
   */
  setSyncPair(state: SyncPairState): SiteOutput {
    if (this.#state.syncPair === state) return nothing;
    this.#state.syncPair = state;
    this.#dirty = true;
    if (this.#pairInSync() || (this.#inFlight.length === 0 && this.#flushes.length === 0)) return nothing;
    const notes: SiteNote[] = [];
    const refuse = this.id === 1 && this.config.fencePolicy === 'refuse';
    if (refuse) notes.push(...this.#failFlushes(new NotDurableError(1, 'fencePolicy')));
    for (const flush of this.#flushes) notes.push({ kind: 'flushDone', flushId: flush.flushId, alone: true });
    this.#flushes = [];
    for (const write of this.#inFlight) {
      this.#markChanged(write.volume, write.offset, write.length);
      if (refuse) {
        notes.push({ kind: 'hostWriteFailed', writeId: write.writeId, error: new NotWritableError(1, 1, 'fencePolicy') });
      } else {
        this.#state.ackedAlone += 1;
        notes.push({ kind: 'hostWriteAcked', writeId: write.writeId, updateNumber: write.updateNumber, alone: true });
      }
    }
    this.#inFlight = [];
    return output(noEnvelopes, notes);
  }

  /** Site 3: asks its source for the entries after its received number, as many as fit its journal. */
  requestPull(batchEntriesMax: number): SiteOutput {
    this.#mustBe(3, 'requestPull');
    const room = this.journal.limits.entriesMax - this.journal.entries;
    const message: PullRequestMessage = {
      kind: 'pullRequest',
      epoch: this.#state.epoch,
      received: this.received,
      restored: this.restored,
      entriesMax: Math.max(0, Math.min(batchEntriesMax, room, batchItemsMax)),
      bytesMax: this.journal.limits.bytesMax - this.journal.bytes,
    };
    return output([{ from: 3, to: this.#state.source, message }]);
  }

  /**
   * Site 3: restores every journal entry into its volumes in update-number order, then empties its journal.
   * Returns how many it restored.
   * @see claims 8, 14, 40; P2
   */
  restore(): number {
    this.#mustBe(3, 'restore');
    const received = this.received;
    let restored = this.restored;
    // The pulled entries kept in memory first (the same entries as the journal's), then the journal.
    const pulled = this.#pulled.entries;
    this.#forgetPulled();
    // Stryker disable all: the cache is used only when it starts at restored + 1; otherwise, or without it, the
    // journal below restores the same entries (the invariant checks stay: a cache that broke them would fire).
    if (pulled.length > 0 && (pulled[0] as WireEntry).updateNumber === restored + 1) {
      for (const entry of pulled) {
        assert(entry.updateNumber === restored + 1, 'P2 restores in order without gaps', () => `u=${entry.updateNumber} after ${restored}`);
        assert(entry.updateNumber <= received, 'P2 restoredUpTo <= receivedUpTo', () => `u=${entry.updateNumber} > received ${received}`);
        this.#volume(entry.volume).write(entry.offset, entry.data);
        restored = entry.updateNumber;
      }
    }
    // Stryker restore all
    while (restored < received) {
      const batch = this.journal.readAfter(restored, batchItemsMax);
      assert(batch.length > 0, 'P2 restores in order without gaps', () => `nothing after ${restored} below ${received}`);
      for (const entry of batch) {
        assert(entry.updateNumber === restored + 1, 'P2 restores in order without gaps', () => `u=${entry.updateNumber} after ${restored}`);
        this.#volume(entry.volume).write(entry.offset, entry.data);
        restored = entry.updateNumber;
      }
    }
    if (this.config.flushEachWrite) for (const volume of this.volumes) volume.flush();
    const count = this.journal.trimThrough(received);
    assert(this.restored === this.received, 'P2 restoredUpTo <= receivedUpTo', () => `restored ${this.restored} received ${this.received}`);
    return count;
  }

  /** Site 3: sends its received number to `to`, which judges (claim 18). */
  requestJudge(to: 1 | 2, purpose: JudgePurpose): SiteOutput {
    this.#mustBe(3, 'requestJudge');
    const message: JudgeRequestMessage = { kind: 'judgeRequest', epoch: this.#state.epoch, purpose, received: this.received };
    return output([{ from: 3, to, message }]);
  }

  /** Site 3: asks its source for a delta resync (claims 19, 20). */
  requestDeltaResync(batchEntriesMax: number): SiteOutput {
    this.#mustBe(3, 'requestDeltaResync');
    const message: DeltaResyncRequestMessage = {
      kind: 'deltaResyncRequest',
      epoch: this.#state.epoch,
      received: this.received,
      entriesMax: Math.max(1, Math.min(batchEntriesMax, this.journal.limits.entriesMax, batchItemsMax)),
      bytesMax: this.journal.limits.bytesMax,
    };
    this.#waiting = 'deltaResync';
    return output([{ from: 3, to: this.#state.source, message }]);
  }

  /** Site 3: asks its source for a full copy of its volumes. */
  requestFullCopy(): SiteOutput {
    this.#mustBe(3, 'requestFullCopy');
    this.#waiting = 'fullCopy';
    return output([{ from: 3, to: this.#state.source, message: { kind: 'fullCopyRequest', epoch: this.#state.epoch } }]);
  }

  /** The returning sync secondary asks the primary for a resync, with its own changed-block record (claims 29-31). */
  requestResync(): SiteOutput {
    assert(this.id !== 3 && this.#state.role === 'secondary', 'only the sync secondary resyncs', () => `site ${this.id} ${this.#state.role}`);
    this.#resyncRequested = true;
    const message: ResyncRequestMessage = { kind: 'resyncRequest', epoch: this.#state.epoch, changed: this.changed.toBitmaps() };
    return output([{ from: this.id, to: this.#peer(), message }]);
  }

  // -------------------------------------------------------------------------------------------------------
  // Messages

  /** Decodes bytes from outside and handles the message; any defect is a {@link MalformedMessageError}. */
  receive(from: SiteId, bytes: Uint8Array): SiteOutput {
    return this.handle({ from, to: this.id, message: decodeMessage(bytes) });
  }

  /**
   * Handles one message. Throws a typed error (and changes nothing) for a message this site does not take
   * now: {@link StaleEpochError}, {@link UnexpectedMessageError}, {@link OutOfOrderError},
   * {@link MalformedMessageError}.
   *
   * Epochs first (fencing tokens: DRBD's generation identifiers, Raft's terms): a message of an epoch lower
   * than this site's is refused with {@link StaleEpochError} before anything else is looked at, so nothing of
   * it is journaled, restored, acknowledged or judged (its sender should be told this site's epoch:
   * {@link epochNotice}); a higher one is adopted first ({@link learnEpoch}, which a controller calls before
   * this so that a deposed primary's failed writes reach it even when the message is refused).
   */
  handle(envelope: SiteEnvelope): SiteOutput {
    const { from, message } = envelope;
    assert(envelope.to === this.id, 'a site handles its own messages', () => `site ${this.id} got a message for ${envelope.to}`);
    if (!this.#state.up) throw new UnexpectedMessageError(message.kind, from, this.id, 'the site is failed');
    if (from === this.id) throw new UnexpectedMessageError(message.kind, from, this.id, 'a site takes no message from itself');
    if (message.epoch < this.#state.epoch) throw new StaleEpochError(message.kind, from, this.id, message.epoch, this.#state.epoch);
    const learned = this.learnEpoch(message.epoch);
    const out = this.#dispatch(from, message);
    if (learned === nothing) return out;
    return output([...learned.send, ...out.send], [...learned.notes, ...out.notes]);
  }

  #dispatch(from: SiteId, message: Message): SiteOutput {
    // Each handler's guard names what it needs once: site 3's role is always remote (setRole asserts it), and
    // only site 3 waits for a delta resync or a full copy, only a sync member asks for a resync or holds a
    // delta session, so a role or session check also excludes the wrong site.
    switch (message.kind) {
      case 'epochNotice':
        // Its epoch is all it says, and handle() has taken it.
        return nothing;
      case 'syncWrite':
        return this.#onSyncWrite(from, message);
      case 'syncWriteBatch':
        return this.#onSyncWriteBatch(from, message);
      case 'syncWriteAck':
        return this.#onSyncWriteAck(from, message);
      case 'flushRequest':
        return this.#onFlushRequest(from, message);
      case 'flushAck':
        return this.#onFlushAck(from, message);
      case 'pullRequest':
        return this.#onPullRequest(from, message);
      case 'pullEntries':
        return this.#onPullEntries(from, message);
      case 'judgeRequest':
        return this.#onJudgeRequest(from, message);
      case 'verdict':
        return this.#onVerdict(from, message);
      case 'deltaResyncRequest':
        return this.#onDeltaResyncRequest(from, message);
      case 'deltaResyncEntries':
        return this.#onDeltaResyncEntries(from, message);
      case 'deltaResyncAck':
        return this.#onDeltaResyncAck(from, message);
      case 'deltaResyncRefused':
        return this.#onDeltaResyncRefused(from, message.kind, message.received, message.journalFirst);
      case 'pullRefused':
        return this.#onPullRefused(from, message.received, message.journalFirst);
      case 'fullCopyRequest':
        return this.#onFullCopyRequest(from);
      case 'resyncRequest':
        return this.#onResyncRequest(from, message);
      case 'copyBlocks':
        return this.#onCopyBlocks(from, message);
      case 'copyAck':
        return this.#onCopyAck(from, message);
      case 'verifyMarker':
      case 'verifyDigests':
        // Online verify belongs to the site processes (site-node.ts, which takes these before the site does).
        throw new UnexpectedMessageError(message.kind, from, this.id, 'online verify is carried out by a site process');
    }
  }

  /** The secondary journals and writes the primary's write with the primary's update number (claims 5, 6, 34, 35). */
  #onSyncWrite(from: SiteId, message: SyncWriteMessage): SiteOutput {
    if (from !== this.#peer() || this.#state.role !== 'secondary' || !this.#pairInSync()) {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}, sync pair ${this.#state.syncPair}`);
    }
    this.#checkTarget('syncWrite', message.volume, message.offset, message.data.length);
    const expected = this.journal.last + 1;
    if (message.updateNumber !== expected) throw new OutOfOrderError(message.kind, expected, message.updateNumber);
    // Not saved on its own (see #learnRestored): a lower bound, learned again from the next write or pull.
    this.#state.knownRestored = Math.max(this.#state.knownRestored, message.restoredKnown);
    this.journal.trimThrough(this.#state.knownRestored);
    const overflowed = this.#journalAndWrite(message);
    const ack: SyncWriteAckMessage = { kind: 'syncWriteAck', epoch: this.#state.epoch, updateNumber: message.updateNumber };
    const send = [{ from: this.id, to: from, message: ack } satisfies SiteEnvelope];
    return overflowed ? output(send, [this.#overflowNote(message.updateNumber)]) : output(send);
  }

  /** The secondary journals and writes a batch of the primary's writes with one journal write, and answers once. */
  #onSyncWriteBatch(from: SiteId, message: SyncWriteBatchMessage): SiteOutput {
    if (from !== this.#peer() || this.#state.role !== 'secondary' || !this.#pairInSync()) {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}, sync pair ${this.#state.syncPair}`);
    }
    for (const [i, entry] of message.entries.entries()) this.#checkTarget(`syncWriteBatch.entries[${i}]`, entry.volume, entry.offset, entry.data.length);
    const expected = this.journal.last + 1;
    const first = (message.entries[0] as WireEntry).updateNumber;
    if (first !== expected) throw new OutOfOrderError(message.kind, expected, first);
    this.#state.knownRestored = Math.max(this.#state.knownRestored, message.restoredKnown);
    this.journal.trimThrough(this.#state.knownRestored);
    const overflows = this.#journalAndWriteAll(message.entries);
    const last = (message.entries.at(-1) as WireEntry).updateNumber;
    const ack: SyncWriteAckMessage = { kind: 'syncWriteAck', epoch: this.#state.epoch, updateNumber: last };
    return output([{ from: this.id, to: from, message: ack }], overflows.map((u) => this.#overflowNote(u)));
  }

  /**
   * The primary acknowledges the host once the secondary answered (claim 3). An answer covers every write
   * in flight up to its update number (a batch is answered once, for its last write), and at least one.
   */
  #onSyncWriteAck(from: SiteId, message: SyncWriteAckMessage): SiteOutput {
    if (from !== this.#peer() || this.#state.role !== 'primary') {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}`);
    }
    // Writes in flight carry consecutive update numbers (asserted below): they are [head .. head + length - 1].
    const head = this.#inFlight[0];
    if (head === undefined || message.updateNumber < head.updateNumber || message.updateNumber >= head.updateNumber + this.#inFlight.length) {
      throw new OutOfOrderError(message.kind, head?.updateNumber ?? 0, message.updateNumber);
    }
    const answered = message.updateNumber - head.updateNumber + 1;
    const acked = this.#inFlight.splice(0, answered);
    assert(acked.at(-1)?.updateNumber === message.updateNumber, 'writes in flight carry consecutive update numbers', () => `ack ${message.updateNumber}`);
    return output(
      noEnvelopes,
      acked.map((write) => ({ kind: 'hostWriteAcked', writeId: write.writeId, updateNumber: write.updateNumber, alone: false }) satisfies SiteNote),
    );
  }

  /**
   * The secondary makes durable every write it holds, which covers the primary's flush (it must hold every
   * write up to the request's update number: sync writes arrive in order before the request), and answers.
   */
  #onFlushRequest(from: SiteId, message: FlushRequestMessage): SiteOutput {
    if (from !== this.#peer() || this.#state.role !== 'secondary' || !this.#pairInSync()) {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}, sync pair ${this.#state.syncPair}`);
    }
    if (message.updateNumber > this.journal.last) throw new OutOfOrderError(message.kind, this.journal.last, message.updateNumber);
    this.flush();
    this.#flushesForPeer += 1;
    const ack: FlushAckMessage = { kind: 'flushAck', epoch: this.#state.epoch, token: message.token, updateNumber: message.updateNumber };
    return output([{ from: this.id, to: from, message: ack }]);
  }

  /**
   * The secondary made a flush durable: that flush and every earlier one waiting are done (the secondary
   * answers in order, and an earlier request covers no more than a later one).
   */
  #onFlushAck(from: SiteId, message: FlushAckMessage): SiteOutput {
    if (from !== this.#peer() || this.#state.role !== 'primary') {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}`);
    }
    const answered = this.#flushes.findIndex((flush) => flush.token === message.token);
    if (answered < 0) throw new UnexpectedMessageError(message.kind, from, this.id, `no flush ${message.token} waiting`);
    const flush = this.#flushes[answered] as WaitingFlush;
    if (flush.updateNumber !== message.updateNumber) throw new OutOfOrderError(message.kind, flush.updateNumber, message.updateNumber);
    const done = this.#flushes.splice(0, answered + 1);
    return output(
      noEnvelopes,
      done.map((each) => ({ kind: 'flushDone', flushId: each.flushId, alone: false }) satisfies SiteNote),
    );
  }

  /**
   * The source answers a pull: it learns site 3's restored number and trims, then sends the entries after
   * site 3's received number, as many as the request allows and only those the secondary acknowledged.
   * @see claims 8, 9, 22, 23, 24, 36, 37, 38
   */
  #onPullRequest(from: SiteId, message: PullRequestMessage): SiteOutput {
    if (from !== 3 || this.#state.role !== 'primary') {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}: only the source serves pulls`);
    }
    if (message.received + 1 < this.journal.first) {
      // The journal overflowed past site 3 (P7): it no longer holds received + 1. Refuse rather than serve a
      // gap (P5). (A site 3 at or past the journal's last is covered, or ahead, and gets nothing.)
      const refused: PullRefusedMessage = { kind: 'pullRefused', epoch: this.#state.epoch, received: message.received, journalFirst: this.journal.first };
      return output([{ from: this.id, to: 3, message: refused }]);
    }
    this.#learnRestored(message.restored);
    const committed = this.journal.last - this.#inFlight.length;
    const count = Math.min(message.entriesMax, committed - message.received);
    const send: WireEntry[] = [];
    if (count > 0) {
      assert(this.journal.covers(message.received), 'P5 a pull reads only entries its journal holds', () =>
        `journal [${this.journal.first}..${this.journal.last}] after ${message.received}`,
      );
      let bytes = 0;
      // One entry never passes batchBytesMax on its own (entryDataBytesMax plus its header is less), so
      // the first entry of a pull always fits the message; it may not fit site 3's journal (bytesMax).
      for (const entry of this.journal.readAfter(message.received, count)) {
        bytes += entryBytes(entry);
        if (bytes > message.bytesMax || bytes > batchBytesMax) break;
        send.push(entry);
      }
    }
    const answer: PullEntriesMessage = { kind: 'pullEntries', epoch: this.#state.epoch, entries: send, servedAt: 0 };
    return output([{ from: this.id, to: 3, message: answer }]);
  }

  /** Site 3 appends pulled entries to its journal: consecutive after its received number, all fitting (P7). */
  #onPullEntries(from: SiteId, message: PullEntriesMessage): SiteOutput {
    if (this.id !== 3 || from !== this.#state.source) {
      throw new UnexpectedMessageError(message.kind, from, this.id, `site 3 pulls from site ${this.#state.source}`);
    }
    this.#checkEntries(message.kind, message.entries, true);
    const cached = this.#pulled;
    // Stryker disable all: the restore cache's bookkeeping. restore() takes the cache only when it starts at
    // restored + 1 and reads the journal otherwise, so what the cache holds changes how fast, never what, it restores.
    const continues = cached.entries.length === this.journal.entries;
    this.journal.appendAll(message.entries);
    if (continues) {
      // Only while the cache holds every entry of the journal, so that it always starts at restored + 1.
      for (const entry of message.entries) {
        if (cached.bytes + entry.data.length > restoreCacheBytesMax) break;
        cached.entries.push(entry);
        cached.bytes += entry.data.length;
      }
    }
    // Stryker restore all
    if (this.config.flushEachWrite && message.entries.length > 0) this.journal.flush();
    assert(this.restored <= this.received, 'P2 restoredUpTo <= receivedUpTo', () => `${this.restored} > ${this.received}`);
    return nothing;
  }

  /** The (new) source judges site 3's received number with its journal (claims 18, 19, 20, 28). */
  #onJudgeRequest(from: SiteId, message: JudgeRequestMessage): SiteOutput {
    if (from !== 3) throw new UnexpectedMessageError(message.kind, from, this.id, 'only site 3 is judged');
    const sourceLast = this.journal.last;
    const takeover = message.purpose === 'failover' ? sourceLast : this.#state.takeover;
    const verdict = judge({ received: message.received, sourceLast, journalFirst: this.journal.first, takeover });
    const answer: VerdictMessage = { kind: 'verdict', epoch: this.#state.epoch, purpose: message.purpose, verdict, remoteReceived: message.received, sourceLast };
    return output(
      [{ from: this.id, to: 3, message: answer }],
      [{ kind: 'judged', purpose: message.purpose, verdict, remoteReceived: message.received, sourceLast }],
    );
  }

  #onVerdict(from: SiteId, message: VerdictMessage): SiteOutput {
    if (this.id !== 3) throw new UnexpectedMessageError(message.kind, from, this.id, 'only site 3 is judged');
    this.#lastVerdict = message;
    return nothing;
  }

  /**
   * The source starts a delta resync when its journal covers site 3's received number (P5), or refuses it
   * (a full copy is needed).
   * @see claims 19, 20
   */
  #onDeltaResyncRequest(from: SiteId, message: DeltaResyncRequestMessage): SiteOutput {
    if (from !== 3 || this.#state.role !== 'primary') {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}: only the source resyncs site 3`);
    }
    if (this.#inFlight.length > 0 || !this.journal.covers(message.received)) {
      return output([
        {
          from: this.id,
          to: 3,
          message: { kind: 'deltaResyncRefused', epoch: this.#state.epoch, received: message.received, journalFirst: this.journal.first, sourceLast: this.journal.last },
        },
      ]);
    }
    this.#delta = { next: message.received + 1, sourceLast: this.journal.last, entriesMax: message.entriesMax, bytesMax: message.bytesMax };
    return output([this.#deltaBatch()]);
  }

  #deltaBatch(): SiteEnvelope {
    const session = this.#delta;
    assert(session !== null, 'a delta batch belongs to a delta resync', 'no session');
    assert(this.journal.covers(session.next - 1), 'P5 delta resync only when the source journal covers', () =>
      `journal [${this.journal.first}..${this.journal.last}] after ${session.next - 1}`,
    );
    const entries: WireEntry[] = [];
    let bytes = 0;
    // next <= sourceLast + 1 while the session lasts, so count >= 0 (0: site 3 is current, an empty final batch).
    const count = Math.min(session.entriesMax, session.sourceLast - session.next + 1);
    for (const entry of this.journal.readAfter(session.next - 1, count)) {
      bytes += entryBytes(entry);
      if (entries.length > 0 && (bytes > session.bytesMax || bytes > batchBytesMax)) break;
      entries.push(entry);
    }
    session.next += entries.length;
    const message: DeltaResyncEntriesMessage = {
      kind: 'deltaResyncEntries',
      epoch: this.#state.epoch,
      entries,
      sourceLast: session.sourceLast,
      final: session.next > session.sourceLast,
    };
    return { from: this.id, to: 3, message };
  }

  /**
   * Site 3 appends a delta batch to its own journal (the fifth storage area, claim 20) after what the journal
   * holds, with the journal's own append; its ordinary restore ({@link restore}, RESTORE_JOURNAL) later
   * writes the entries into its volumes in update-number order. When the missing entries (the batch and the
   * ones after it, through `sourceLast`) would not fit after what the journal holds, site 3 restores what it
   * holds first (model/README.md "Delta resync"); held plus missing is the same at every batch until that
   * restore, so it happens before the first batch or not at all (unless the missing entries alone exceed a
   * site 3 journal smaller than the source's). A batch that would still not fit (the journal's bytes, or such
   * a smaller journal) makes site 3 restore before it: the journal never overflows.
   * @see claims 19, 20; P2, P7
   */
  #onDeltaResyncEntries(from: SiteId, message: DeltaResyncEntriesMessage): SiteOutput {
    if (from !== this.#state.source || this.#waiting !== 'deltaResync') {
      throw new UnexpectedMessageError(message.kind, from, this.id, `waiting for ${this.#waiting}`);
    }
    this.#checkEntries(message.kind, message.entries, false);
    const missing = message.sourceLast - this.received;
    if (this.journal.entries + missing > this.journal.limits.entriesMax) this.restore();
    if (!this.#fitsJournal(message.entries)) this.restore();
    this.journal.appendAll(message.entries);
    if (this.config.flushEachWrite && message.entries.length > 0) this.journal.flush();
    assert(this.restored <= this.received, 'P2 restoredUpTo <= receivedUpTo', () => `${this.restored} > ${this.received}`);
    if (message.final) {
      assert(this.received === message.sourceLast, 'P2 a delta resync ends at the source last', () => `${this.received} != ${message.sourceLast}`);
      this.#waiting = 'none';
    }
    const ack: DeltaResyncAckMessage = { kind: 'deltaResyncAck', epoch: this.#state.epoch, received: this.received, restored: this.restored, final: message.final };
    return output([{ from: 3, to: from, message: ack }]);
  }

  /**
   * The source sends the next delta batch or, after the final, learns site 3's restored number (not its
   * received one: what site 3's journal holds is not in its volumes yet) and trims through it.
   */
  #onDeltaResyncAck(from: SiteId, message: DeltaResyncAckMessage): SiteOutput {
    const session = this.#delta;
    if (from !== 3 || session === null) throw new UnexpectedMessageError(message.kind, from, this.id, 'no delta resync under way');
    if (message.received !== session.next - 1) throw new OutOfOrderError(message.kind, session.next - 1, message.received);
    if (!message.final) return output([this.#deltaBatch()]);
    this.#delta = null;
    this.#learnRestored(message.restored);
    return output(noEnvelopes, [{ kind: 'deltaResyncDone', sourceLast: session.sourceLast }]);
  }

  #onDeltaResyncRefused(from: SiteId, kind: string, received: number, journalFirst: number): SiteOutput {
    if (from !== this.#state.source || this.#waiting !== 'deltaResync') {
      throw new UnexpectedMessageError(kind, from, this.id, `waiting for ${this.#waiting}`);
    }
    this.#waiting = 'none';
    return output(noEnvelopes, [{ kind: 'deltaResyncRefused', received, journalFirst }]);
  }

  /** Site 3 learns its source's journal no longer covers it: the async pair needs a full copy (P5, P7). */
  #onPullRefused(from: SiteId, received: number, journalFirst: number): SiteOutput {
    if (this.id !== 3 || from !== this.#state.source) throw new UnexpectedMessageError('pullRefused', from, this.id, `site 3 pulls from site ${this.#state.source}`);
    if (received !== this.received) throw new OutOfOrderError('pullRefused', this.received, received);
    return output(noEnvelopes, [{ kind: 'pullRefused', received, journalFirst }]);
  }

  /** The source starts a full copy of its volumes to site 3. */
  #onFullCopyRequest(from: SiteId): SiteOutput {
    if (from !== 3 || this.#state.role !== 'primary' || this.#copy !== null) {
      throw new UnexpectedMessageError('fullCopyRequest', from, this.id, `role ${this.#state.role}, copy ${this.#copy?.purpose ?? 'none'}`);
    }
    const blocksPerVolume = this.#blocksPerVolume;
    this.#copy = {
      purpose: 'fullCopy',
      to: 3,
      cursor: new BlockCursor(this.config.volumeCount, blocksPerVolume, null),
      sourceLast: this.journal.last,
      restoredKnown: this.#state.knownRestored,
    };
    return output([this.#copyBatch()]);
  }

  /** The primary starts a resync of its secondary: the union of both changed-block records (claims 29-31). */
  #onResyncRequest(from: SiteId, message: ResyncRequestMessage): SiteOutput {
    if (from !== this.#peer() || this.#state.role !== 'primary' || this.#copy !== null) {
      throw new UnexpectedMessageError(message.kind, from, this.id, `role ${this.#state.role}, copy ${this.#copy?.purpose ?? 'none'}`);
    }
    const bitmapBytes = Math.ceil(this.#blocksPerVolume / 8);
    if (message.changed.length !== this.config.volumeCount) {
      throw new MalformedMessageError('resyncRequest.changed', `${message.changed.length} bitmaps for ${this.config.volumeCount} volumes`);
    }
    for (const [i, bitmap] of message.changed.entries()) {
      if (bitmap.length !== bitmapBytes) throw new MalformedMessageError(`resyncRequest.changed[${i}]`, `${bitmap.length} bytes, not ${bitmapBytes}`);
    }
    const union = new ChangedBlocks(this.config.volumeCount, this.#blocksPerVolume);
    union.addBitmaps(this.changed.toBitmaps());
    union.addBitmaps(message.changed);
    this.#copy = {
      purpose: 'resync',
      to: from,
      cursor: new BlockCursor(this.config.volumeCount, this.#blocksPerVolume, union),
      sourceLast: this.journal.last,
      restoredKnown: this.#state.knownRestored,
    };
    return output([this.#copyBatch()]);
  }

  #copyBatch(): SiteEnvelope {
    const session = this.#copy;
    assert(session !== null, 'a copy batch belongs to a copy', 'no session');
    const blockBytes = this.config.blockBytes;
    const perBatch = Math.max(1, Math.min(batchItemsMax, Math.floor(batchBytesMax / blockBytes)));
    const blocks: WireBlock[] = session.cursor.take(perBatch).map(([volume, block]) => ({
      volume,
      offset: block * blockBytes,
      data: this.#volume(volume).read(block * blockBytes, blockBytes),
    }));
    const message: CopyBlocksMessage = {
      kind: 'copyBlocks',
      epoch: this.#state.epoch,
      purpose: session.purpose,
      blocks,
      final: session.cursor.done,
      sourceLast: session.sourceLast,
      restoredKnown: session.restoredKnown,
    };
    return { from: this.id, to: session.to, message };
  }

  /** The receiver of a copy writes the blocks; with the final batch it takes over the sender's numbers. */
  #onCopyBlocks(from: SiteId, message: CopyBlocksMessage): SiteOutput {
    const expecting =
      message.purpose === 'fullCopy'
        ? from === this.#state.source && this.#waiting === 'fullCopy'
        : from === this.#peer() && this.#resyncRequested;
    if (!expecting) throw new UnexpectedMessageError(message.kind, from, this.id, `no ${message.purpose} under way`);
    const blockBytes = this.config.blockBytes;
    for (const [i, block] of message.blocks.entries()) {
      this.#checkTarget(`copyBlocks.blocks[${i}]`, block.volume, block.offset, block.data.length);
      if (block.offset % blockBytes !== 0 || block.data.length !== blockBytes) {
        throw new MalformedMessageError(`copyBlocks.blocks[${i}]`, `not one whole block of ${blockBytes} bytes`);
      }
    }
    for (const block of message.blocks) this.#volume(block.volume).write(block.offset, block.data);
    if (message.final) {
      for (const volume of this.volumes) volume.flush();
      // The receiver now holds the sender's image: it takes over its last update number with an empty journal.
      this.journal.reset(message.sourceLast);
      this.#forgetPulled();
      this.journal.flush();
      if (message.purpose === 'fullCopy') {
        this.#waiting = 'none';
      } else {
        this.#resyncRequested = false;
        this.#state.knownRestored = message.restoredKnown;
        this.changed.clear();
        this.#state.ackedAlone = 0;
        this.#state.fenced = false;
        this.#dirty = true;
      }
    }
    const ack: CopyAckMessage = { kind: 'copyAck', epoch: this.#state.epoch, purpose: message.purpose, final: message.final };
    return output([{ from: this.id, to: from, message: ack }]);
  }

  /** The sender of a copy sends the next batch or, after the final, completes. */
  #onCopyAck(from: SiteId, message: CopyAckMessage): SiteOutput {
    const session = this.#copy;
    if (session === null || session.purpose !== message.purpose || from !== session.to) {
      throw new UnexpectedMessageError(message.kind, from, this.id, `no ${message.purpose} to site ${from} under way`);
    }
    if (message.final !== session.cursor.done) throw new OutOfOrderError(message.kind, session.cursor.done ? 1 : 0, message.final ? 1 : 0);
    if (!message.final) return output([this.#copyBatch()]);
    this.#copy = null;
    if (session.purpose === 'fullCopy') {
      this.#learnRestored(session.sourceLast);
      this.setTakeover(null);
      return output(noEnvelopes, [{ kind: 'fullCopyDone', sourceLast: session.sourceLast }]);
    }
    this.changed.clear();
    this.#state.ackedAlone = 0;
    this.#dirty = true;
    return output(noEnvelopes, [{ kind: 'resyncDone', sourceLast: session.sourceLast }]);
  }

  // -------------------------------------------------------------------------------------------------------
  // Internals

  #pairInSync(): boolean {
    const pair = this.#state.syncPair;
    return pair === 'inSync' || pair === 'reversed';
  }

  #peer(): 1 | 2 {
    return this.id === 1 ? 2 : 1;
  }

  #mustBe(id: SiteId, operation: string): void {
    assert(this.id === id, `${operation} runs at site ${id}`, () => `called at site ${this.id}`);
  }

  #volume(volume: number): Volume {
    const found = this.volumes[volume];
    assert(found !== undefined, 'volumes are named by their index in the group', () => `volume ${volume} of ${this.volumes.length}`);
    return found;
  }

  /** Journals an entry at a sync member (overflow rule, P7) and writes it; returns whether the journal overflowed. */
  #journalAndWrite(entry: JournalEntry): boolean {
    const journal = this.journal;
    const overflowed = !journal.fits(entry);
    if (overflowed) {
      // Overflow (P7): the journal restarts at this entry; the loss is reported, never silent.
      this.#saveBeforeDiscard();
      journal.reset(entry.updateNumber - 1);
      assert(journal.fits(entry), 'P7 journal within capacity', () => `entry u=${entry.updateNumber} larger than an empty journal`);
    }
    journal.append(entry);
    this.#volume(entry.volume).write(entry.offset, entry.data);
    if (this.config.flushEachWrite) {
      journal.flush();
      this.#volume(entry.volume).flush();
    }
    return overflowed;
  }

  /**
   * Journals consecutive entries at a sync member and writes them: with one journal write when they all fit,
   * else one by one under the overflow rule (P7). Returns the update numbers at which the journal overflowed.
   */
  #journalAndWriteAll(entries: readonly JournalEntry[]): number[] {
    const journal = this.journal;
    let bytes = journal.bytes;
    for (const entry of entries) bytes += entryBytes(entry);
    if (journal.entries + entries.length > journal.limits.entriesMax || bytes > journal.limits.bytesMax) {
      return entries.filter((entry) => this.#journalAndWrite(entry)).map((entry) => entry.updateNumber);
    }
    journal.appendAll(entries);
    for (const entry of entries) this.#volume(entry.volume).write(entry.offset, entry.data);
    if (this.config.flushEachWrite) {
      journal.flush();
      for (const volume of this.volumes) volume.flush();
    }
    return [];
  }

  #overflowNote(updateNumber: number): SiteNote {
    return { kind: 'journalOverflow', site: this.id, updateNumber };
  }

  /** Records written blocks; `hostWrite`: by a host write acknowledged alone (its save may wait, see {@link #hostWritesUnsaved}). */
  #markChanged(volume: number, offset: number, length: number, hostWrite = false): void {
    if (length === 0) return;
    const { first, count } = this.#volume(volume).blocksOf(offset, length);
    if (this.changed.mark(volume, first, count) === 0) return;
    if (hostWrite) this.#hostWritesUnsaved = true;
    else this.#dirty = true;
  }

  /** Saves the host writes' changes before the journal discards an entry that may hold one of their blocks. */
  #saveBeforeDiscard(): void {
    if (this.#hostWritesUnsaved) this.saveIfDirty();
  }

  /** A sync member learns site 3's restored number (it never decreases) and trims its journal through it. */
  #learnRestored(restored: number): void {
    // The known number is a lower bound of site 3's progress: it is saved with the next save that happens
    // anyway (and at close), not on its own. Losing it in a crash only means trimming less until site 3's
    // next pull or the primary's next write tells it again; it never makes a journal cover less.
    this.#state.knownRestored = Math.max(this.#state.knownRestored, restored);
    if (this.#state.knownRestored >= this.journal.first) this.#saveBeforeDiscard();
    this.journal.trimThrough(this.#state.knownRestored);
  }

  #checkTarget(field: string, volume: number, offset: number, length: number): void {
    if (volume >= this.config.volumeCount) throw new MalformedMessageError(`${field}.volume`, `no volume ${volume} in a group of ${this.config.volumeCount}`);
    if (offset + length > this.config.volumeBytes) {
      throw new MalformedMessageError(`${field}.offset`, `${offset}+${length} is past the volume's ${this.config.volumeBytes} bytes`);
    }
  }

  /** Whether entries fit after what site 3's journal holds now, by count and by bytes (P7). */
  #fitsJournal(entries: readonly WireEntry[]): boolean {
    let bytes = this.journal.bytes;
    for (const entry of entries) bytes += entryBytes(entry);
    return this.journal.entries + entries.length <= this.journal.limits.entriesMax && bytes <= this.journal.limits.bytesMax;
  }

  /** Checks that entries continue site 3's journal without a gap and fit in it, before any is appended. */
  #checkEntries(kind: string, entries: readonly WireEntry[], mustFit: boolean): void {
    const first = entries[0];
    if (first === undefined) return;
    if (first.updateNumber !== this.received + 1) throw new OutOfOrderError(kind, this.received + 1, first.updateNumber);
    let bytes = mustFit ? this.journal.bytes : 0;
    let count = mustFit ? this.journal.entries : 0;
    for (const [i, entry] of entries.entries()) {
      this.#checkTarget(`${kind}.entries[${i}]`, entry.volume, entry.offset, entry.data.length);
      bytes += entryBytes(entry);
      count += 1;
    }
    if (count > this.journal.limits.entriesMax || bytes > this.journal.limits.bytesMax) {
      throw new UnexpectedMessageError(kind, this.#state.source, this.id, `${entries.length} entries do not fit the journal (P7)`);
    }
  }

  /** Empties the restore cache (any change of site 3's journal but a pull). */
  // Stryker disable next-line BlockStatement: the restore cache only saves reading the journal back; restore() uses it only when it starts at restored + 1.
  #forgetPulled(): void {
    // Stryker disable next-line ArrayDeclaration: the restore cache only saves reading the journal back; restore() uses it only when it starts at restored + 1.
    this.#pulled = { entries: [], bytes: 0 };
  }

  #endSessions(): void {
    this.#copy = null;
    this.#delta = null;
    this.#waiting = 'none';
    this.#resyncRequested = false;
  }
}
