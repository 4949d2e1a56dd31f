/**
 * One storage system as its own process sees it: the site (`storage-system.ts`) plus the part of the
 * controller that a site can carry out alone, from what it observes itself. In one process the cluster
 * (`cluster.ts`) is the controller for all three sites; between processes no one sees everything, so:
 *
 * - **Local rules.** A sync member applies rule R1 itself: when its link to the peer goes down (the peer
 *   process died, the link was cut, a sync write was not answered within `syncWriteTimeoutMs`, or a host
 *   write finds no link) the sync pair is suspended and the writes in flight are decided by fence policy;
 *   when the link is back the pair is resyncing. Site 3 applies R2: the async pair is suspended while its
 *   source is unreachable, and when the source is back site 3 asks to be judged (purpose `reattach`). Site 3
 *   pulls and restores on the timers its process gives it (claim 9), or when the operator says so
 *   ({@link SiteNode.pullNow}, {@link SiteNode.restoreNow}). A source whose journal overflowed (P7) since
 *   site 3's last full copy, or no longer covers it, refuses its pulls and its reattach judgement with
 *   `pullRefused`, and site 3's async pair is suspended by overflow. In one process the overflow suspends the
 *   pair at once; here site 3 learns it when it next asks, and until then the source reports it in its status
 *   (`sourceOverflow`), which the operator's status combines with site 3's view (`operator.ts`).
 * - **Operator steps.** What needs more than one site (failover, failback, recovery after a failure) is done
 *   by the operator (`operator.ts`), one step at a time on each site through its control port
 *   (`site-control.ts`): set a role, suspend or set the sync pair, attach site 3 to a source, ask site 3 to
 *   be judged, run a delta resync, a full copy or a resync. Each step checks its own preconditions here and
 *   is refused with a typed error (changing nothing) when they do not hold, against what the site sees
 *   itself rather than what the operator says: a sync member takes the primary role only after asking its
 *   connected peer whether it is an unfenced primary ({@link PeerPrimaryError}), recovery never promotes,
 *   and site 3 attaches to a source only with the verdict that source sent it.
 * - **Epochs** (fencing tokens; model/README.md "Epochs"). Every frame's epoch is looked at first: a higher
 *   one is adopted and saved (a primary that learns one was deposed: its writes in flight fail, its queued
 *   ones too, it steps down and refuses host writes), a lower one is refused, counted and logged, and its
 *   sender answered with this site's epoch. Each end of a link tells the other its epoch when the link comes
 *   up, and a site that an operator step gives a higher epoch (`setRole` at a promotion, `attach`, `recover`)
 *   saves it and tells every connected peer at once, so a primary that missed its demotion hears of it
 *   before it can get a write acknowledged.
 * - **Two refinements of the atomic steps** (model/README.md records where the implementation refines them):
 *   host writes that arrive while the primary is sending a resync to its secondary wait until it is done,
 *   so no write lands between the resync's copy of a block and the pair going back in sync; and a site
 *   process restarted after a crash comes back *failed* (it accepts nothing) until the operator recovers it,
 *   with every block of its journal in its changed-block record, because its last writes may never have
 *   reached its peer.
 *
 * No clock or timer lives here: the process calls {@link SiteNode.onTick} with the time (the first call
 * sets the node's clock: what was sent before it counts from then), and
 * {@link SiteNode.onPullTimer} / {@link SiteNode.onRestoreTimer} at the intervals of its configuration.
 * Messages arrive as bytes and are decoded and validated before the site sees them; a peer that sends a
 * malformed message is disconnected with the reason logged, and nothing changes. A well-formed message the
 * site refuses in its state (a pull that reaches a site that is no longer the source, an answer that comes
 * after its question was given up) is logged, counted and dropped: the two sites disagree for a moment
 * about the state, which the operator's next step or the answer timeout settles.
 */

import type { AsyncPairState, Judgement, SiteMode, SyncPairState, SyncSiteId } from '../../model/observation.ts';
import {
  DeviceError,
  InvalidArgumentError,
  LinkStateError,
  MalformedMessageError,
  NoSuchVolumeError,
  NotAcknowledgedError,
  NotAllowedError,
  NotWritableError,
  RefusalError,
  SiteFailedError,
  SiteUpError,
  StorageFaultError,
  StaleEpochError,
} from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { asyncPairAfter } from '../core/judge.ts';
import { batchBytesMax, batchItemsMax, decodeMessage, encodeMessage, type JudgePurpose, type Message, type Verdict } from '../core/messages.ts';
import type { SiteTrace, TracedWrite } from './site-trace.ts';
import { syncMemberMode, type SiteEnvelope, type SiteId, type SiteNote, type SiteOutput, type StorageSystem } from '../core/storage-system.ts';
import { checkRange, OutOfRangeError } from '../core/volume.ts';
import type { VerifyResult } from '../core/verify.ts';
import { SiteVerify, type VerifyStatus } from './site-verify.ts';

/**
 * Bytes of host data one batch of sync writes carries at most: 256 KiB. Small writes gain from going
 * together (one journal write, one message, one answer per batch); large ones lose from it, because the
 * secondary could not start on the first until the last had been journaled and sent, so a write of this
 * size or more goes alone, as before batching.
 */
export const syncBatchBytesMax = 256 * 1024;
assert(syncBatchBytesMax <= batchBytesMax, 'a batch of sync writes fits one message', () => `${syncBatchBytesMax} > ${batchBytesMax}`);

/**
 * Host writes a node holds waiting (for a resync to end, for room among the writes in flight, or for room on
 * the link to the secondary) at most: every write the NBD server can have in flight, on every connection
 * (`nbdConnectionsMax` x `nbdRequestsInFlightMax`), so a write that waits is never refused for want of room
 * here; their bytes are bounded by the NBD server's own limits, which they are counted in.
 */
export const queuedHostWritesMax = 128 * 64;

/**
 * Default bytes queued on the link to the secondary above which a primary holds new host writes
 * (back-pressure): 8 MiB. Far under the link's own limit (`outgoingBytesMaxDefault`, 64 MiB), so a whole
 * write of the largest size (16 MiB) still fits behind it and the link never has to be broken for want of
 * room; and small, because a write's answer timeout runs from when it is queued on the link: 8 MiB drains in
 * tens of milliseconds, where 32 MiB of 4 MiB writes behind a busy secondary outlived a 2 s timeout.
 */
export const peerQueueBytesHighDefault = 8 * 1024 * 1024;

/** How a node reaches its peers: the process's network (`transport-tcp.ts`), or a test's. */
export interface NodeLinks {
  /** Sends one encoded message; false when the peer is not connected (the message is lost, as on a cut link). */
  send(peer: SiteId, payload: Uint8Array): boolean;
  isConnected(peer: SiteId): boolean;
  /** Closes the connection to a peer now, logging why (the peer reconnects later). */
  disconnect(peer: SiteId, reason: string): void;
  /**
   * Takes the site off the network (false: every connection closed, none accepted or dialled) or back on.
   * A failed site keeps no connection, so to its peers "connected" means "up and reachable".
   */
  setOnline(online: boolean): void;
  /** Cuts the link to a peer (closed, neither dialled nor accepted) or restores it; a cut outlives `setOnline`. */
  setCut(peer: SiteId, cut: boolean): void;
  /** Bytes sent to `peer` and still waiting on this side of the link (0 when not connected): back-pressure's measure. */
  queuedBytes(peer: SiteId): number;
  /**
   * Asks a peer what it is now (the process asks the peer's control port with the site's own certificate):
   * a sync member asks before it takes the primary role. Rejects when the peer cannot be asked.
   */
  askPeer(peer: SiteId): Promise<PeerView>;
}

/** What a peer says of itself when asked ({@link NodeLinks.askPeer}): enough to know whether it takes host writes. */
export interface PeerView {
  up: boolean;
  role: 'primary' | 'secondary' | 'remote';
  fenced: boolean;
}

/**
 * A sync member refused the primary role: it is connected to its peer, which says it is an unfenced primary
 * (two sites would accept host writes: P4), or which it could not ask. The operator fails, fences or
 * demotes the peer first (`threesite fail|fence`, or the failback's first step).
 * @see P4
 */
export class PeerPrimaryError extends NotAllowedError {
  constructor(
    readonly site: SyncSiteId,
    readonly peer: SyncSiteId,
    /** This site's own view of the sync pair when it refused (`inSync`: the peer replicates to it). */
    readonly syncPair: SyncPairState,
    /** Why: the peer said it is an unfenced primary, or the peer could not be asked. */
    readonly reason: 'peerIsPrimary' | 'peerNotAsked',
    detail: string,
  ) {
    super('setRole', `site ${site} is connected to site ${peer} (sync pair ${syncPair}) and ${detail} (P4): fail, fence or demote site ${peer} first`);
    this.name = 'PeerPrimaryError';
  }
}

/** The parts of the deployment's configuration a node needs. */
export interface NodeConfig {
  /** Entries site 3 asks for in one pull at most. */
  pullBatchEntriesMax: number;
  /** Largest host write (one journal entry). */
  hostWriteBytesMax: number;
  /**
   * A peer's answer due for longer than this many milliseconds is taken as lost: an unanswered sync write
   * takes the link to the secondary down (rule R1); an unanswered pull is given up (the next one asks
   * again); an operator step that waits for a peer fails with {@link NotAcknowledgedError}.
   */
  answerTimeoutMs: number;
  /**
   * Back-pressure: while the link to the secondary holds more than this many bytes, a primary holds new host
   * writes (they wait, in order; the host's NBD requests stay unanswered) until the link drains. A full queue
   * never suspends the pair: only rules R1 and R2 do. Default {@link peerQueueBytesHighDefault}.
   */
  peerQueueBytesHigh?: number;
  /**
   * Journal inflow control (Hitachi Universal Replicator's inflow control, SRDF/A write pacing), or absent
   * (off, the default): while the primary's journal is past its high-water mark and site 3 is reachable, each
   * new host write waits `delayMs` before it is taken, so that the hosts slow down to what site 3 pulls
   * instead of overflowing the journal (which would suspend the async pair and cost a full copy). A write is
   * never held longer than `delayMs` (plus one tick) for it; the delays are counted in the status.
   */
  inflowControl?: { delayMs: number };
}

/** Longest inflow-control delay per host write a configuration may ask for: 1 s. */
export const inflowDelayMsMax = 1000;

/** Site 3's part of the controller's state: the async pair and the last judgement (its state file). */
export interface RemoteDurableState {
  asyncPair: AsyncPairState;
  judgement: Judgement | null;
}

/** What a site reports on its control port (`threesite status`). */
/** A device error a site detached on (see {@link SiteNode.fault}), as its status reports it. */
export interface DeviceFault {
  device: DeviceError['device'];
  file: string;
  operation: string;
  errno: string;
  message: string;
}

export interface SiteStatus {
  site: SiteId;
  up: boolean;
  /** The device error this site detached on, or null: the site is failed until restarted over repaired storage. */
  fault: DeviceFault | null;
  /** Journal inflow control: its delay per write and the writes it delayed so far, or null when off. */
  inflow: { delayMs: number; delayedWrites: number; delayMsTotal: number } | null;
  role: 'primary' | 'secondary' | 'remote';
  mode: SiteMode;
  fenced: boolean;
  /** This sync member's view of the sync pair; site 3: null. */
  syncPair: SyncPairState | null;
  lastUpdateNumber: number;
  journal: { first: number; last: number; entries: number; bytes: number; entriesMax: number; bytesMax: number; highWater: boolean };
  acceptsHostWrites: boolean;
  changedBlocks: number;
  ackedAlone: number;
  inFlightWrites: number;
  queuedWrites: number;
  takeover: number | null;
  knownRestored: number;
  /** Peers this site is connected to now. */
  connected: SiteId[];
  /** Peers whose link the operator cut at this site. */
  cut: SiteId[];
  /**
   * Frames sent to and received from each peer on the current connection (zero while not connected): when
   * both ends of every link agree, no message is in flight (the conformance driver waits for that).
   */
  frames: Partial<Record<SiteId, { sent: number; received: number }>>;
  /** What the site waits for from a peer: an operator step's answer (its kind), `pull`, or null when idle. */
  busy: Waiter['kind'] | 'pull' | null;
  /**
   * As site 3's source (the primary), its journal discarded entries since site 3's last full copy (P7): the
   * async pair is suspended by overflow, whatever site 3 itself has yet learnt (it learns at its next pull or
   * reattach; the operator's status combines the two views).
   */
  sourceOverflow: boolean;
  /** The highest epoch this site has been given or learnt (the fencing token every promotion raises). */
  epoch: number;
  /** The higher epoch that deposed this site while it was primary (it refuses host writes), or null. */
  deposedBy: number | null;
  /** Messages of a lower epoch this site refused (nothing of them applied; each sender was told the epoch). */
  staleEpochRefused: number;
  /**
   * Durability on request: host flushes (NBD FLUSH, FUA) this site answered after its own fsync (`host`),
   * flush requests of its primary it fsynced and answered (`forPeer`), and host flushes waiting for the
   * secondary's answer (`waiting`).
   */
  flushes: { host: number; forPeer: number; waiting: number };
  /** Site 3 only: received and restored update numbers, source, async pair and last judgement. */
  remote: { received: number; restored: number; source: SyncSiteId; asyncPair: AsyncPairState; judgement: Judgement | null } | null;
  /** SHA-256 of the volumes, when asked for (it reads every byte). */
  volumeDigest: string | null;
  /** Online verify at this site: the last verify it ran (primary), the last chunk it hashed, markers pending (site-verify.ts). */
  verify: VerifyStatus;
}

/**
 * The result of a host flush: `alone` when it is durable at this site only (its pair was not in sync, or it
 * is not the primary); otherwise at both sync members.
 */
export interface FlushResult {
  alone: boolean;
}

/** A host flush being carried out: its own fsync (`local`) and the outcome the site noted (`remote`). */
interface PendingFlush {
  resolve(result: FlushResult): void;
  reject(error: RefusalError): void;
  sentAtMs: number;
  local: boolean;
  remote: FlushResult | null;
}

/** The result of a host write: its update number, and whether it is on this site alone (P1 exposure). */
export interface HostWriteResult {
  updateNumber: number;
  alone: boolean;
}

interface PendingWrite {
  resolve(result: HostWriteResult): void;
  reject(error: RefusalError): void;
  sentAtMs: number;
  /** What the trace records at the acknowledgement (null without a trace). */
  traced: TracedWrite | null;
}

interface QueuedWrite {
  volume: number;
  offset: number;
  data: Uint8Array;
  /** When it was queued (the node's clock): inflow control holds it until this plus its delay. */
  queuedAtMs: number;
  /** Whether inflow control was delaying writes when it was queued (its wait is then counted as a delay). */
  paced: boolean;
  resolve(result: HostWriteResult): void;
  reject(error: RefusalError): void;
}

/** Why a host write is refused, for the trace: the refusals the model has (see site-trace.ts). */
const tracedWriteRefusals: readonly string[] = ['failed', 'notPrimary', 'fenced'];

/** An operator step at site 3 (or the secondary) that ends with a message from a peer. */
type Waiter =
  | { kind: 'judge'; purpose: JudgePurpose; resolve(verdict: JudgedVerdict): void; reject(error: RefusalError): void }
  | { kind: 'deltaResync'; resolve(outcome: 'copying' | 'fullCopy'): void; reject(error: RefusalError): void }
  | { kind: 'fullCopy'; resolve(): void; reject(error: RefusalError): void }
  | { kind: 'resync'; resolve(): void; reject(error: RefusalError): void };

/** The judge's answer as site 3 received it. */
export interface JudgedVerdict {
  verdict: Verdict;
  remoteReceived: number;
  sourceLast: number;
}

/**
 * A storage system and its local controller, driven by network events, timers and operator steps.
 * @see claims 1-40 as carried out by one site; model/README.md for each step's semantics
 */
export class SiteNode {
  readonly site: StorageSystem;
  readonly config: Readonly<NodeConfig>;
  readonly #links: NodeLinks;
  readonly #log: (line: string) => void;
  /** Host writes inflow control delayed, and their delays' sum in milliseconds (status `inflow`). */
  #inflow = { delayedWrites: 0, delayMsTotal: 0 };
  /** The device error this site detached on ({@link #detach}), or null. */
  #fault: DeviceError | null = null;
  readonly #remote: RemoteDurableState;
  readonly #saveRemote: ((state: RemoteDurableState) => void) | null;
  /** The process's trace (site-trace.ts), or null: then nothing is recorded and nothing waits for it. */
  readonly #trace: SiteTrace | null;
  readonly #pending = new Map<number, PendingWrite>();
  readonly #queued: QueuedWrite[] = [];
  #nextWriteId = 1;
  /** Host flushes not yet answered, by id (at most `flushesWaitingMax` wait for the secondary: the core refuses more). */
  readonly #flushes = new Map<number, PendingFlush>();
  #nextFlushId = 1;
  /** Host flushes answered after this site's own fsync. */
  #hostFlushes = 0;
  #nowMs = 0;
  /** False until the first {@link onTick}: the process's clock may be far past 0 when the node is made. */
  #clockSet = false;
  #pullOutstanding = false;
  #pullSentAtMs = 0;
  /** Host writes of the batch being gathered ({@link hostWriteBatch}), or null outside one. */
  #gathered: { writeId: number; volume: number; offset: number; data: Uint8Array }[] | null = null;
  #gatheredBytes = 0;
  #waiter: Waiter | null = null;
  #waiterSinceMs = 0;
  /** The operator's pull ({@link pullNow}) waiting for the source's answer. */
  #pullWaiter: { resolve(): void; reject(error: RefusalError): void } | null = null;
  /** See {@link SiteStatus.sourceOverflow}. */
  #sourceOverflow = false;
  /**
   * Site 3: the last failover or failback verdict a source sent it, until a step uses it: `attach` and
   * `recordJudgement` take only this verdict (the operator carries it; site 3 checks it).
   */
  #judgedBy: (JudgedVerdict & { source: SyncSiteId }) | null = null;
  readonly #frames = new Map<SiteId, { sent: number; received: number }>();
  readonly #cut = new Set<SiteId>();
  /** Messages refused from peers, by kind (a malformed one disconnected the peer). */
  readonly refused = new Map<string, number>();
  /** Messages of a lower epoch refused (counted in {@link refused} too). */
  #staleEpochRefused = 0;
  /** Online verify: this site's part (site-verify.ts). */
  readonly #verify: SiteVerify;

  constructor(
    site: StorageSystem,
    config: NodeConfig,
    links: NodeLinks,
    log: (line: string) => void,
    remote: { saved: RemoteDurableState | null; save: ((state: RemoteDurableState) => void) | null } = { saved: null, save: null },
    trace: SiteTrace | null = null,
  ) {
    this.site = site;
    this.#trace = trace;
    this.config = Object.freeze({ ...config });
    this.#links = links;
    this.#log = log;
    this.#remote = remote.saved ? { ...remote.saved } : { asyncPair: 'copying', judgement: null };
    this.#saveRemote = remote.save;
    this.#verify = new SiteVerify({
      site,
      send: (peer, message) => this.#send({ from: this.id, to: peer, message }),
      isConnected: (peer) => this.#links.isConnected(peer),
      asyncPair: () => this.#remote.asyncPair,
      log,
    });
  }

  get id(): SiteId {
    return this.site.id;
  }

  /** Site 3's async pair as it holds it. */
  get asyncPair(): AsyncPairState {
    return this.#remote.asyncPair;
  }

  /**
   * The site's process was restarted after it stopped without `fail` (killed): it comes back failed, and a
   * sync member records every block of its journal as changed (see the file comment). The operator's
   * {@link recover} brings it back.
   */
  restartedAfterStop(): void {
    if (!this.site.up) return;
    if (this.id !== 3) {
      const marked = this.site.markJournalChanged();
      this.#log(`restart: ${marked} blocks of the journal [${this.site.journal.first}..${this.site.journal.last}] recorded as changed`);
    }
    this.#links.setOnline(false);
    this.#emit(this.site.fail());
    if (this.id !== 3) this.#emit(this.site.setSyncPair('suspended'));
    // Its mode follows (failed), as at FAIL_SITE: the state file still says the mode it had when it stopped.
    this.#applyRules();
    this.site.saveIfDirty();
  }

  // -------------------------------------------------------------------------------------------------------
  // Host I/O

  /**
   * A host write at this site (its NBD export). Refused at once with {@link NoSuchVolumeError},
   * {@link OutOfRangeError} (also for a write of no byte) or {@link NotWritableError}; otherwise resolved
   * when it is acknowledged: after the secondary's answer with the pair in sync (claim 3), at once on this
   * site alone when it is suspended and the fence policy keeps writing (P1 exposure, recorded in the
   * changed-block record).
   * @see claims 2-6, 10, 15, 17, 21, 25, 27, 32-35
   */
  hostWrite(volume: number, offset: number, data: Uint8Array): Promise<HostWriteResult> {
    try {
      this.#checkRange(volume, offset, data.length);
      if (data.length === 0) throw new OutOfRangeError(offset, 0, this.site.config.volumeBytes, 'empty');
      if (data.length > this.config.hostWriteBytesMax) throw new OutOfRangeError(offset, data.length, this.site.config.volumeBytes, 'tooLarge');
      this.#requireWritable();
    } catch (error) {
      if (this.#trace !== null && this.id !== 3 && error instanceof RefusalError) this.#traceRefusedWrite(volume, offset, data, error);
      throw error;
    }
    return new Promise((resolve, reject) => {
      if (this.#queued.length > 0 || this.#mustQueue() || this.#inflowDelaying()) {
        if (this.#queued.length >= queuedHostWritesMax) {
          reject(new NotWritableError(this.id as SyncSiteId, this.id as SyncSiteId, 'inFlightWritesMax'));
          return;
        }
        this.#queued.push({ volume, offset, data, queuedAtMs: this.#nowMs, paced: this.#inflowDelaying(), resolve, reject });
        return;
      }
      this.#submit(volume, offset, data, resolve, reject);
    });
  }

  /**
   * Several host writes at once: what {@link hostWrite} does for each, in order, except that the writes
   * submitted now go to the site together ({@link StorageSystem.hostWrites}: one journal write, one sync
   * write message, one answer), in batches of at most {@link batchItemsMax} writes and
   * {@link syncBatchBytesMax} bytes. The process gives it the writes its NBD clients sent in one turn of the
   * event loop. A write refused at once gets a rejected promise, the others go on.
   */
  hostWriteBatch(writes: readonly { volume: number; offset: number; data: Uint8Array }[]): Promise<HostWriteResult>[] {
    assert(this.#gathered === null, 'host write batches do not nest', 'a batch is being gathered');
    this.#gathered = [];
    this.#gatheredBytes = 0;
    let results: Promise<HostWriteResult>[];
    try {
      results = writes.map((write) => {
        try {
          return this.hostWrite(write.volume, write.offset, write.data);
        } catch (error) {
          return Promise.reject(error);
        }
      });
      this.#submitGathered();
    } finally {
      this.#gathered = null;
    }
    // A write queued behind the batch's in-flight limit goes as soon as there is room (acknowledged alone
    // with the pair suspended, there is room at once).
    this.#drainQueue();
    return results;
  }

  /** A host read (any site's export reads; a failed site refuses with {@link SiteFailedError}). */
  hostRead(volume: number, offset: number, length: number): Uint8Array {
    this.#checkRange(volume, offset, length);
    if (!this.site.up) throw new SiteFailedError(this.id, 'hostRead');
    return this.site.read(volume, offset, length);
  }

  /**
   * A host's flush (NBD FLUSH, and FUA on WRITE, TRIM, WRITE_ZEROES): resolves when every write acknowledged
   * before it is on stable storage at this site (its journal and volumes fsynced) and, at a primary whose pair
   * is in sync, at its secondary too (the secondary's {@link FlushAckMessage}). Never waits longer than the
   * answer timeout for the secondary: an unanswered flush takes the link down as an unanswered sync write
   * does (rule R1), and the pair's suspension decides it by fence policy: `keepWriting` resolves it durable
   * here alone (`alone`), `refuse` at site 1 rejects it with {@link NotDurableError}. Rejects with
   * {@link SiteFailedError} at a failed site and {@link StorageFaultError} when the fsync meets a device error.
   * @see StorageSystem.requestFlush
   */
  flush(): Promise<FlushResult> {
    if (this.#fault !== null) return Promise.reject(new StorageFaultError(this.id, 'flush', this.#fault));
    if (!this.site.up) return Promise.reject(new SiteFailedError(this.id, 'flush'));
    const flushId = this.#nextFlushId;
    this.#nextFlushId += 1;
    let pending: PendingFlush | undefined;
    const answered = new Promise<FlushResult>((resolve, reject) => {
      pending = { resolve, reject, sentAtMs: this.#nowMs, local: false, remote: null };
    });
    const flush = pending as PendingFlush;
    this.#flushes.set(flushId, flush);
    // A flush that finds no link to its in-sync secondary suspends the pair first (R1), as a host write does.
    if (this.id !== 3 && this.site.role === 'primary' && this.#pairInSync() && !this.#links.isConnected(this.#peer())) {
      this.#suspendSyncPair('no link to the secondary at a flush');
    }
    // The request goes first, then this site's own fsync: both sync members fsync at the same time.
    this.#guard('flush', () => {
      this.#emit(this.site.requestFlush(flushId));
      this.site.flush();
      flush.local = true;
    });
    if (this.#fault !== null) {
      this.#flushes.delete(flushId);
      flush.reject(new StorageFaultError(this.id, 'flush', this.#fault));
    } else {
      this.#settleFlush(flushId);
    }
    return answered;
  }

  /** Answers a host flush once both its own fsync is done and the site noted its outcome. */
  #settleFlush(flushId: number): void {
    const flush = this.#flushes.get(flushId);
    if (flush === undefined || !flush.local || flush.remote === null) return;
    this.#flushes.delete(flushId);
    this.#hostFlushes += 1;
    flush.resolve(flush.remote);
  }

  /** The device error this site detached on, or null (DRBD's `on-io-error detach`; see {@link #detach}). */
  get fault(): DeviceError | null {
    return this.#fault;
  }

  /** Whether a host write would be taken now (the NBD export's read-only flag). */
  acceptsHostWrites(): boolean {
    const reason = this.site.writeRefusal();
    return reason === null || reason === 'inFlightWritesMax';
  }

  #requireWritable(): void {
    if (this.id === 3) throw new NotWritableError(2, 2, 'notPrimary');
    const reason = this.site.writeRefusal();
    if (reason !== null && reason !== 'inFlightWritesMax') throw this.site.notWritable(reason);
  }

  /**
   * A write waits while the primary sends a resync, while its writes in flight are at their limit, or while
   * the link to its in-sync secondary is full (back-pressure: it drains as the secondary reads, and the
   * node tries again at every frame and tick).
   */
  #mustQueue(): boolean {
    return this.site.copySending === 'resync' || this.site.writeRefusal() === 'inFlightWritesMax' || this.#gatheredAtLimit() || this.#linkFull();
  }

  /** Whether inflow control delays host writes now: on, this site primary, its journal past high water, site 3 reachable. */
  #inflowDelaying(): boolean {
    const inflow = this.config.inflowControl;
    return inflow !== undefined && this.id !== 3 && this.site.role === 'primary' && this.site.journal.highWater && this.#links.isConnected(3);
  }

  /** Whether a queued write must still wait for inflow control (counted once, when it goes). */
  #inflowHolds(write: QueuedWrite): boolean {
    const inflow = this.config.inflowControl;
    if (inflow === undefined) return false;
    const waited = this.#nowMs - write.queuedAtMs;
    if (this.#inflowDelaying() && waited < inflow.delayMs) return true;
    if (write.paced) {
      this.#inflow.delayedWrites += 1;
      this.#inflow.delayMsTotal += Math.min(waited, inflow.delayMs);
    }
    return false;
  }

  /** The link to the secondary holds more than its high-water mark of bytes (while the pair is in sync). */
  #linkFull(): boolean {
    if (this.id === 3 || !this.#pairInSync()) return false;
    const high = this.config.peerQueueBytesHigh ?? peerQueueBytesHighDefault;
    return this.#links.queuedBytes(this.#peer()) + this.#gatheredBytes > high;
  }

  /** The writes gathered for a batch fill the room left among the writes in flight. */
  #gatheredAtLimit(): boolean {
    return this.#gathered !== null && this.site.inFlightWrites + this.#gathered.length >= this.site.config.inFlightWritesMax;
  }

  /** Hands the gathered writes to the site as one batch. */
  #submitGathered(): void {
    const gathered = this.#gathered;
    if (gathered === null || gathered.length === 0) return;
    this.#gathered = [];
    this.#gatheredBytes = 0;
    const trace = this.#trace;
    const mark = trace?.mark();
    this.#guard('host write', () => {
      this.#emit(this.site.hostWrites(gathered));
      if (trace && mark) trace.details(mark);
      this.site.saveIfDirtyBesidesHostWrites();
    });
  }

  #submit(volume: number, offset: number, data: Uint8Array, resolve: (r: HostWriteResult) => void, reject: (e: RefusalError) => void): void {
    // A write that finds no link to the secondary suspends the pair first (R1): it is then decided by policy.
    if (this.#pairInSync() && !this.#links.isConnected(this.#peer())) this.#suspendSyncPair('no link to the secondary at a host write');
    const reason = this.site.writeRefusal();
    if (reason !== null) {
      reject(this.site.notWritable(reason));
      return;
    }
    const writeId = this.#nextWriteId;
    this.#nextWriteId += 1;
    const trace = this.#trace;
    this.#pending.set(writeId, { resolve, reject, sentAtMs: this.#nowMs, traced: trace === null ? null : trace.write(volume, offset, data) });
    if (this.#gathered !== null) {
      // One batch carries at most batchItemsMax writes and syncBatchBytesMax bytes of data (within the message's batchBytesMax).
      if (this.#gathered.length >= batchItemsMax || this.#gatheredBytes + data.length > syncBatchBytesMax) this.#submitGathered();
      this.#gathered.push({ writeId, volume, offset, data });
      this.#gatheredBytes += data.length;
      return;
    }
    const mark = trace?.mark();
    this.#guard('host write', () => {
      this.#emit(this.site.hostWrite(writeId, volume, offset, data));
      if (trace && mark) trace.details(mark);
      this.site.saveIfDirtyBesidesHostWrites();
    });
  }

  /** Submits the waiting writes there is room for, together as one batch (or more, at the batch limits). */
  #drainQueue(): void {
    if (this.#queued.length === 0) return;
    const outer = this.#gathered === null;
    if (outer) {
      this.#gathered = [];
      this.#gatheredBytes = 0;
    }
    try {
      while (this.#queued.length > 0 && !this.#mustQueue() && !this.#inflowHolds(this.#queued[0] as QueuedWrite)) {
        const write = this.#queued.shift() as QueuedWrite;
        try {
          this.#requireWritable();
          this.#submit(write.volume, write.offset, write.data, write.resolve, write.reject);
        } catch (error) {
          if (!(error instanceof RefusalError)) throw error;
          write.reject(error);
        }
      }
      if (outer) this.#submitGathered();
    } finally {
      if (outer) this.#gathered = null;
    }
  }

  // -------------------------------------------------------------------------------------------------------
  // Network and timers

  /** A peer connected (rules R1 and R2). */
  onPeerUp(peer: SiteId): void {
    this.#log(`peer ${peer} up`);
    this.#frames.set(peer, { sent: 0, received: 0 });
    // Each end tells the other its epoch first (as DRBD's peers exchange generation identifiers at connect):
    // a site that missed a promotion learns it here, before it can send anything the other would apply.
    if (this.site.up) this.#sendAll(this.site.epochNotice(peer));
    this.#applyRules();
  }

  /** A peer's connection closed: what was sent and not answered is lost (rules R1 and R2). */
  onPeerDown(peer: SiteId, reason: string): void {
    this.#log(`peer ${peer} down: ${reason}`);
    this.#frames.delete(peer);
    this.#verify.onPeerDown(peer);
    if (this.id === 3 && peer === this.site.source) {
      this.#endPull(new NotAcknowledgedError('pullJournal', `the link to site ${peer} went down (${reason})`));
      this.#failWaiter(new NotAcknowledgedError('remote', `the link to site ${peer} went down (${reason})`));
      if (this.#remote.asyncPair === 'copying' || this.#remote.asyncPair === 'deltaResync') this.#setAsyncPair('suspended');
    }
    if (this.id !== 3 && peer === this.#peer()) {
      if (this.#waiter?.kind === 'resync') this.#failWaiter(new NotAcknowledgedError('resyncSite', `the link to site ${peer} went down`));
      this.#suspendSyncPair(`link to site ${peer} down (${reason})`);
    }
    this.#applyRules();
  }

  /**
   * A frame from a peer: decoded and validated, then handled. A malformed message, or one the site refuses
   * in its state, disconnects the peer with the reason logged; the site is left as it was.
   */
  onFrame(peer: SiteId, payload: Uint8Array): void {
    this.#framesOf(peer).received += 1;
    let message: Message;
    try {
      message = decodeMessage(payload);
    } catch (error) {
      if (!(error instanceof MalformedMessageError)) throw error;
      this.#refuse(peer, 'malformed', error);
      return;
    }
    // Epochs before anything else: a higher one is adopted (a primary is deposed), a lower one refused.
    this.#learnEpoch(peer, message.epoch);
    if (this.site.up && message.epoch < this.site.epoch) {
      this.#refuse(peer, message.kind, new StaleEpochError(message.kind, peer, this.id, message.epoch, this.site.epoch));
      return;
    }
    if (this.#refusedForOverflow(peer, message)) return;
    if (message.kind === 'pullEntries' && this.#trace !== null && !this.#trace.canRecordAt(message.servedAt)) {
      // A pull given up (no answer within the timeout) whose answer came after a restore: recorded now, it would
      // stand after that restore with entries read before it. Dropped; the next pull reads them again.
      this.#log(`dropped a late pullEntries from site ${peer}: served before this site's last trace record`);
      return;
    }
    if (message.kind === 'verifyMarker' || message.kind === 'verifyDigests') {
      this.#onVerifyMessage(peer, message);
      return;
    }
    this.#guard(`message ${message.kind}`, () => {
      const trace = this.#trace;
      const mark = trace?.mark();
      let out: SiteOutput;
      try {
        out = this.site.handle({ from: peer, to: this.id, message });
      } catch (error) {
        if (!(error instanceof RefusalError)) throw error;
        this.#refuse(peer, message.kind, error);
        return;
      }
      if (trace && message.kind === 'pullEntries') trace.action({ type: 'PULL_JOURNAL' }, this.#remoteView(), message.servedAt);
      this.#emit(out);
      this.#afterMessage(peer, message);
      this.#applyRules();
      if (trace && mark) this.#traceAfterFrame(trace, mark, message);
      this.site.saveIfDirty();
      // Site 3 hashes the verify markers it has now received, before any restore can pass them.
      this.#verify.hashReached();
    });
  }

  /** A verify marker or a verify's digests (site-verify.ts): taken by the node, never by the storage system. */
  #onVerifyMessage(peer: SiteId, message: Extract<Message, { kind: 'verifyMarker' | 'verifyDigests' }>): void {
    if (!this.site.up) {
      this.#refuse(peer, message.kind, new SiteFailedError(this.id, message.kind));
      return;
    }
    this.#guard(`message ${message.kind}`, () => {
      try {
        this.#verify.onMessage(peer, message);
      } catch (error) {
        if (!(error instanceof RefusalError)) throw error;
        this.#refuse(peer, message.kind, error);
      }
    });
  }

  /** The time, from the process: answers due for longer than `answerTimeoutMs` are taken as lost. */
  onTick(nowMs: number): void {
    if (!this.#clockSet) {
      // The first tick sets the clock: what was sent before it (stamped 0) counts from now, not from the
      // start of the process (a node made in a process that has run longer than the timeout would
      // otherwise take its first answers as lost).
      this.#clockSet = true;
      this.#waiterSinceMs = nowMs;
      this.#pullSentAtMs = nowMs;
      for (const pending of this.#pending.values()) pending.sentAtMs = nowMs;
      for (const flush of this.#flushes.values()) flush.sentAtMs = nowMs;
    }
    this.#nowMs = nowMs;
    this.#verify.onTick(nowMs);
    // Writes held for room on the link go when it has drained (frames from the peer also drain the queue).
    if (this.site.up && this.#queued.length > 0) this.#drainQueue();
    // What host writes acknowledged alone changed is saved here, once a tick, not after each write.
    if (this.site.up) this.#guard('state save', () => this.site.saveIfDirty());
    const timeout = this.config.answerTimeoutMs;
    if (this.#waiter !== null && nowMs - this.#waiterSinceMs > timeout) {
      this.#failWaiter(new NotAcknowledgedError(this.#waiter.kind, `no answer within ${timeout} ms`));
      this.#applyRules();
    }
    if (this.id === 3) {
      if (this.#pullOutstanding && nowMs - this.#pullSentAtMs > timeout) this.#endPull(new NotAcknowledgedError('pullJournal', `no answer within ${timeout} ms`));
      return;
    }
    if (this.site.flushesWaiting > 0 && this.#flushUnansweredFor(nowMs) > timeout) {
      // R1, as for a sync write: the secondary did not make the flush durable in time.
      this.#links.disconnect(this.#peer(), `a flush was not answered within ${timeout} ms`);
      this.onPeerDown(this.#peer(), 'flush timeout');
    }
    if (this.#pending.size === 0) return;
    let oldest = Number.POSITIVE_INFINITY;
    for (const pending of this.#pending.values()) oldest = Math.min(oldest, pending.sentAtMs);
    if (this.site.inFlightWrites > 0 && nowMs - oldest > timeout) {
      this.#links.disconnect(this.#peer(), `a sync write was not answered within ${timeout} ms`);
      this.onPeerDown(this.#peer(), 'sync write timeout');
    }
  }

  /** How long the oldest host flush waiting for the secondary's answer has waited. */
  #flushUnansweredFor(nowMs: number): number {
    let oldest = nowMs;
    for (const flush of this.#flushes.values()) if (flush.remote === null) oldest = Math.min(oldest, flush.sentAtMs);
    return nowMs - oldest;
  }

  /** Site 3 pulls from its source at the configured interval (claim 9), one pull outstanding at most. */
  onPullTimer(): void {
    if (this.id !== 3 || !this.site.up || this.#pullOutstanding || this.#waiter !== null) return;
    if (this.#remote.asyncPair !== 'copying' || !this.#links.isConnected(this.site.source)) return;
    this.#startPull();
  }

  /** Site 3 restores its journal into its volumes in update-number order (claims 8, 14, 40; P2). */
  onRestoreTimer(): void {
    if (this.id !== 3 || !this.site.up || this.site.journal.entries === 0 || this.#waiter !== null) return;
    if (this.#remote.asyncPair === 'fullCopy' || this.#remote.asyncPair === 'suspendedOverflow') return;
    // With a trace, restores fall between pulls (site-trace.ts): the next interval restores.
    if (this.#trace !== null && this.#pullOutstanding) return;
    this.#guard('restore', () => this.#restore());
  }

  /**
   * PULL_JOURNAL on the operator's command, what {@link onPullTimer} does at its interval: resolves once the
   * source's answer has been handled (its entries appended, or its refusal taken: the async pair is then
   * suspended by overflow). Refused as in one process (`cluster.ts` `pullJournal`): {@link NotAllowedError}
   * unless the async pair is copying and the source reachable from site 3, or while another step waits.
   * @see claims 7, 8, 9, 11, 22, 23, 24, 36, 37, 38
   */
  pullNow(): Promise<void> {
    if (this.id !== 3) throw new NotAllowedError('pullJournal', 'only site 3 pulls');
    if (this.#remote.asyncPair !== 'copying') throw new NotAllowedError('pullJournal', `async pair is ${this.#remote.asyncPair}`);
    if (!this.site.up || !this.#links.isConnected(this.site.source)) throw new NotAllowedError('pullJournal', 'source unreachable from site 3');
    if (this.#waiter !== null) throw new NotAllowedError('pullJournal', `a ${this.#waiter.kind} is under way`);
    if (this.#pullOutstanding) throw new NotAllowedError('pullJournal', 'a pull is under way');
    return new Promise((resolve, reject) => {
      this.#pullWaiter = { resolve, reject };
      if (!this.#startPull()) this.#endPull(new NotAcknowledgedError('pullJournal', 'the source is not connected'));
    });
  }

  /**
   * RESTORE_JOURNAL on the operator's command, what {@link onRestoreTimer} does at its interval. Refused as
   * in one process (`cluster.ts` `restoreJournal`): {@link SiteFailedError} when site 3 is failed,
   * {@link NotAllowedError} when its journal is empty or the async pair waits for a full copy.
   * @see claims 8, 14, 40
   */
  restoreNow(): void {
    if (this.id !== 3) throw new NotAllowedError('restoreJournal', 'only site 3 restores');
    if (!this.site.up) throw new SiteFailedError(3, 'restoreJournal');
    if (this.site.journal.entries === 0) throw new NotAllowedError('restoreJournal', "site 3's journal is empty");
    const pair = this.#remote.asyncPair;
    if (pair === 'fullCopy' || pair === 'suspendedOverflow') throw new NotAllowedError('restoreJournal', `async pair is ${pair}: a full copy replaces the journal`);
    if (this.#waiter !== null) throw new NotAllowedError('restoreJournal', `a ${this.#waiter.kind} is under way`);
    this.#restore();
  }

  #restore(): void {
    // A verify marker whose update number site 3 holds is hashed before the restore passes it.
    this.#verify.hashReached();
    const trace = this.#trace;
    const mark = trace?.mark();
    this.site.restore();
    if (trace && mark) {
      trace.action({ type: 'RESTORE_JOURNAL' }, this.#remoteView());
      trace.details(mark);
    }
    this.site.saveIfDirty();
  }

  /** Sends a pull request to the source; false when it could not be sent. */
  #startPull(): boolean {
    if (!this.#sendAll(this.site.requestPull(this.config.pullBatchEntriesMax))) return false;
    this.#pullOutstanding = true;
    this.#pullSentAtMs = this.#nowMs;
    return true;
  }

  /** The outstanding pull is over: answered (`error` null), lost or given up. */
  #endPull(error: RefusalError | null): void {
    this.#pullOutstanding = false;
    const waiter = this.#pullWaiter;
    if (waiter === null) return;
    this.#pullWaiter = null;
    if (error === null) waiter.resolve();
    else waiter.reject(error);
  }

  // -------------------------------------------------------------------------------------------------------
  // Operator steps (site-control.ts carries them; operator.ts composes them)

  /** FAIL_SITE at this site: it stops serving (its volumes and journal stay); in-flight writes fail. */
  fail(): void {
    if (!this.site.up) throw new SiteFailedError(this.id, 'failSite');
    // Failed first, then off the network: what the links' down notices do cannot leave the site up.
    this.#emit(this.site.fail());
    if (this.id !== 3) this.#emit(this.site.setSyncPair('suspended'));
    this.#links.setOnline(false);
    for (const write of this.#queued.splice(0)) write.reject(new SiteFailedError(this.id, 'host write'));
    this.#endPull(new SiteFailedError(this.id, 'pullJournal'));
    this.#failWaiter(new SiteFailedError(this.id, 'operator step'));
    this.#verify.stop();
    this.#applyRules();
    this.site.saveIfDirty();
  }

  /**
   * RECOVER_SITE at this site: up again with what its storage held, told which sync member is primary now
   * (it may have changed while this site was down): a sync member takes its role from it, site 3 its source.
   */
  recover(primary: SyncSiteId, epoch: number): void {
    if (primary !== 1 && primary !== 2) throw new InvalidArgumentError('recoverSite', 'primary', primary);
    if (this.site.up) throw new SiteUpError(this.id, 'recoverSite');
    if (this.#fault !== null) {
      throw new NotAllowedError('recoverSite', `site ${this.id} detached on a device error (${this.#fault.message}): repair the storage and restart the site process, then recover it`);
    }
    // Recovery may demote (the pair failed over while this site was down), never promote: only a failover or
    // a failback, whose steps check the peer, makes a sync member primary.
    if (this.id !== 3 && primary === this.id && this.site.role !== 'primary') {
      throw new NotAllowedError('recoverSite', `site ${this.id} was ${this.site.role}: recovery does not promote (failover or failback does)`);
    }
    this.#checkStepEpoch('recoverSite', epoch);
    // The epoch first: the site's first messages after it is back (its peer-up notices) carry it.
    this.site.setEpoch(epoch);
    this.site.recover();
    this.#links.setOnline(true);
    if (this.id === 3) {
      if (this.site.source !== primary) {
        this.site.setSource(primary);
        this.#setAsyncPair('suspended');
      }
      if (this.#remote.asyncPair === 'copying' || this.#remote.asyncPair === 'deltaResync') this.#setAsyncPair('suspended');
    } else {
      this.site.setRole(primary === this.id ? 'primary' : 'secondary');
      if (primary !== this.id) this.#sourceOverflow = false;
    }
    this.#applyRules();
    this.site.saveIfDirty();
  }

  /**
   * CUT_LINK at this end: the link to `peer` loses everything until restored (the peer's end is cut by the
   * operator too); the rules then act as for any link that goes down. {@link LinkStateError} if already cut.
   */
  cutLink(peer: SiteId): void {
    if (peer === this.id || ![1, 2, 3].includes(peer)) throw new InvalidArgumentError('cutLink', 'peer', peer);
    const link = this.id < peer ? `${this.id}-${peer}` : `${peer}-${this.id}`;
    if (this.#cut.has(peer)) throw new LinkStateError(link, true, 'cutLink');
    this.#cut.add(peer);
    this.#links.setCut(peer, true);
  }

  /** RESTORE_LINK at this end. {@link LinkStateError} if not cut. */
  restoreLink(peer: SiteId): void {
    if (peer === this.id || ![1, 2, 3].includes(peer)) throw new InvalidArgumentError('restoreLink', 'peer', peer);
    const link = this.id < peer ? `${this.id}-${peer}` : `${peer}-${this.id}`;
    if (!this.#cut.has(peer)) throw new LinkStateError(link, false, 'restoreLink');
    this.#cut.delete(peer);
    this.#links.setCut(peer, false);
  }

  /** FENCE_SITE: site 1 accepts no host write from now on (P4, one-way until a resync). */
  fence(): void {
    if (this.id !== 1) throw new NotAllowedError('fenceSite', 'only site 1 can be fenced');
    if (!this.site.up) throw new SiteFailedError(1, 'fenceSite');
    if (this.site.role !== 'primary') throw new NotAllowedError('fenceSite', 'site 1 is not the primary');
    if (this.site.fenced) throw new NotAllowedError('fenceSite', 'site 1 is already fenced');
    this.site.fence();
    for (const write of this.#queued.splice(0)) write.reject(new NotWritableError(1, 1, 'fenced'));
    this.site.saveIfDirty();
  }

  /**
   * Failover and failback steps at a sync member: take the role `role`, with the sync pair in `syncPair`.
   * Demoting a primary is refused while it has host writes in flight or waiting (quiesce first). Taking the
   * primary role is refused with {@link PeerPrimaryError} while this site is connected to its peer and the
   * peer, asked now, says it is an unfenced primary, or cannot be asked: the site checks the operator's
   * claim that the old primary is gone against what it sees itself (P4). A peer that is not connected is
   * failed, fenced off or cut: the operator's failover decided that with sites 2 and 3 as witnesses.
   * `syncPair` may suspend the pair, or hand an in-sync pair over (failback); it never declares a pair
   * that is not in sync in sync ({@link NotAllowedError}: only a resync does, P6).
   * `takeover`: record the last update number as the takeover point (failover with site 3 unreachable).
   * @see claims 16, 17, 25, 26, 27, 29; P4, P6
   */
  async setRole(role: 'primary' | 'secondary', syncPair: SyncPairState, takeover: boolean, epoch: number): Promise<void> {
    this.#checkSetRole(role, syncPair);
    this.#checkStepEpoch('setRole', epoch);
    if (role === 'primary' && this.site.role !== 'primary') {
      await this.#requirePeerNotPrimary();
      // The site (and its epoch) may have changed while its peer answered.
      this.#checkSetRole(role, syncPair);
      this.#checkStepEpoch('setRole', epoch);
    }
    const raised = epoch > this.site.epoch;
    this.site.setEpoch(epoch);
    this.site.setRole(role);
    // A new source (failover, failback) is judged afresh; an old one no longer serves site 3.
    this.#sourceOverflow = false;
    this.#emit(this.site.setSyncPair(syncPair));
    if (takeover) this.site.setTakeover(this.site.last);
    // Saved before anyone hears of it; then every connected peer is told (a deposed primary still connected
    // to this site learns it here, before it can send a write this site would take).
    this.site.saveIfDirty();
    if (raised) this.#announceEpoch();
    // R1 at once: a suspended pair whose peer is connected (a fenced site 1 at failover) is resyncing.
    this.#applyRules();
    this.site.saveIfDirty();
  }

  #checkSetRole(role: 'primary' | 'secondary', syncPair: SyncPairState): void {
    if (this.id === 3) throw new NotAllowedError('setRole', 'site 3 is the remote');
    if (!this.site.up) throw new SiteFailedError(this.id, 'setRole');
    // A step may suspend the pair, or hand an in-sync pair over (failback), never declare it in sync: only a
    // resync makes two images equal (P6), and R1 alone makes a pair resyncing.
    if (syncPair === 'resyncing' || ((syncPair === 'inSync' || syncPair === 'reversed') && !this.#pairInSync())) {
      throw new NotAllowedError('setRole', `site ${this.id}'s sync pair is ${this.site.syncPair}: a step does not make it ${syncPair} (a resync does)`);
    }
    if (role === 'secondary' && this.site.role === 'primary' && (this.site.inFlightWrites > 0 || this.#queued.length > 0)) {
      throw new NotAllowedError('setRole', `site ${this.id} has host writes in flight (quiesce first)`);
    }
  }

  /** Refuses ({@link PeerPrimaryError}) while the peer is connected and says it is an unfenced primary, or cannot be asked. */
  async #requirePeerNotPrimary(): Promise<void> {
    const self = this.id as SyncSiteId;
    const peer = this.#peer();
    if (!this.#links.isConnected(peer)) return;
    let view: PeerView;
    try {
      view = await this.#links.askPeer(peer);
    } catch (error) {
      throw new PeerPrimaryError(self, peer, this.site.syncPair, 'peerNotAsked', `could not ask it whether it is primary (${(error as Error).message})`);
    }
    if (view.up && view.role === 'primary' && !view.fenced) {
      const inSync = this.#pairInSync() ? ', in sync with it,' : '';
      throw new PeerPrimaryError(self, peer, this.site.syncPair, 'peerIsPrimary', `site ${peer}${inSync} says it is an unfenced primary`);
    }
  }

  /** Site 3 asks `to` to judge its received number (claim 18) and returns the verdict. */
  judge(to: SyncSiteId, purpose: JudgePurpose): Promise<JudgedVerdict> {
    this.#requireRemoteIdle('judge');
    if (!this.#links.isConnected(to)) throw new NotAllowedError('judge', `site ${to} is unreachable from site 3`);
    return new Promise((resolve, reject) => {
      this.#waiter = { kind: 'judge', purpose, resolve, reject };
      this.#waiterSinceMs = this.#nowMs;
      this.#sendOrFail(this.site.requestJudge(to, purpose), 'judge');
    });
  }

  /**
   * Site 3 takes a new source and async pair state, with the judgement that decided it. Site 3 checks the
   * step against what it saw: the judgement must be the verdict `source` itself sent it at this failover or
   * failback (site 3 asked for it: {@link judge}), and the async pair the one that verdict makes
   * (`asyncPairAfter`); only its current source may tell it of that source's overflow (`suspendedOverflow`,
   * which asks for a full copy: the cautious direction). A new source that site 3 cannot reach (a failover
   * with link 2-3 cut) attaches it `suspended` with no judgement: site 3 stops pulling from its old source
   * and is judged when it reaches the new one (R2), as after its own failure. {@link NotAllowedError}
   * otherwise.
   * @see claims 18-20, 28
   */
  attach(source: SyncSiteId, asyncPair: AsyncPairState, judgement: Judgement | null, epoch: number): void {
    if (this.id !== 3) throw new NotAllowedError('attach', 'only site 3 has a source');
    if (!this.site.up) throw new SiteFailedError(3, 'attach');
    this.#checkStepEpoch('attach', epoch);
    if (asyncPair === 'suspended' && judgement === null) {
      if (this.#links.isConnected(source)) throw new NotAllowedError('attach', `site ${source} is reachable from site 3: it judges site 3 now (claim 18)`);
      this.#judgedBy = null;
    } else if (asyncPair === 'suspendedOverflow') {
      if (source !== this.site.source) throw new NotAllowedError('attach', `site ${source} is not site 3's source (site ${this.site.source}): only the source reports its overflow`);
    } else {
      this.#requireOwnVerdict('attach', source, judgement);
      const after = asyncPairAfter((judgement as Judgement).verdict);
      if (asyncPair !== after) throw new NotAllowedError('attach', `verdict ${(judgement as Judgement).verdict} makes the async pair ${after}, not ${asyncPair}`);
      this.#judgedBy = null;
    }
    const raised = epoch > this.site.epoch;
    this.site.setEpoch(epoch);
    this.site.saveIfDirty();
    if (raised) this.#announceEpoch();
    this.site.setSource(source);
    // Unjudged (cut off from the new source), site 3 keeps the last judgement it had, as a failed one does.
    if (judgement !== null) this.#remote.judgement = judgement;
    this.#endPull(new NotAcknowledgedError('pullJournal', `site 3 was attached to site ${source}`));
    this.#setAsyncPair(asyncPair);
    this.#applyRules();
    this.site.saveIfDirty();
  }

  /** Records a judgement at site 3 without acting on it (a refused, unforced failover: RemoteAhead). */
  recordJudgement(judgement: Judgement): void {
    if (this.id !== 3) throw new NotAllowedError('recordJudgement', 'only site 3 records judgements');
    if (judgement.forced) throw new NotAllowedError('recordJudgement', 'a recorded judgement was not acted on: it is not forced');
    const source = this.#judgedBy?.source;
    if (source === undefined) throw new NotAllowedError('recordJudgement', 'site 3 has no verdict to record');
    this.#requireOwnVerdict('recordJudgement', source, judgement);
    this.#remote.judgement = judgement;
    this.#saveRemoteState();
  }

  /** Refuses unless `judgement` is the verdict `source` sent site 3 last ({@link attach}). */
  #requireOwnVerdict(operation: string, source: SyncSiteId, judgement: Judgement | null): void {
    const own = this.#judgedBy;
    const same =
      judgement !== null &&
      own !== null &&
      own.source === source &&
      own.verdict === judgement.verdict &&
      own.remoteReceived === judgement.remoteReceived &&
      own.sourceLast === judgement.sourceLast;
    if (!same) {
      const seen = own === null ? 'no verdict' : `${own.verdict} (held ${own.remoteReceived}, source at ${own.sourceLast}) from site ${own.source}`;
      throw new NotAllowedError(operation, `site 3 was not judged so by site ${source}: it received ${seen}`);
    }
  }

  /**
   * DELTA_RESYNC: site 3 reads every missing entry from its source's journal and restores them (claims 19,
   * 20); resolves `copying`, or `fullCopy` when the source's journal no longer covers it (P5).
   */
  deltaResync(): Promise<'copying' | 'fullCopy'> {
    // The conditions in the model's order: the pair's state, then reachability (a failed site 3 reaches none).
    if (this.id !== 3) throw new NotAllowedError('deltaResync', 'only site 3 does this');
    if (this.#remote.asyncPair !== 'deltaResync') throw new NotAllowedError('deltaResync', `async pair is ${this.#remote.asyncPair}`);
    if (!this.site.up || !this.#links.isConnected(this.site.source)) throw new NotAllowedError('deltaResync', 'source unreachable from site 3');
    this.#requireRemoteIdle('deltaResync');
    return new Promise((resolve, reject) => {
      this.#waiter = { kind: 'deltaResync', resolve, reject };
      this.#waiterSinceMs = this.#nowMs;
      this.#sendOrFail(this.site.requestDeltaResync(this.config.pullBatchEntriesMax), 'deltaResync');
    });
  }

  /** FULL_COPY: site 3's volumes become its source's; its journal empty at the source's last. */
  fullCopy(): Promise<void> {
    if (this.id !== 3) throw new NotAllowedError('fullCopy', 'only site 3 does this');
    if (this.#remote.asyncPair !== 'fullCopy' && this.#remote.asyncPair !== 'suspendedOverflow') {
      throw new NotAllowedError('fullCopy', `async pair is ${this.#remote.asyncPair}`);
    }
    if (!this.site.up || !this.#links.isConnected(this.site.source)) throw new NotAllowedError('fullCopy', 'source unreachable from site 3');
    this.#requireRemoteIdle('fullCopy');
    return new Promise((resolve, reject) => {
      this.#waiter = { kind: 'fullCopy', resolve, reject };
      this.#waiterSinceMs = this.#nowMs;
      this.#sendOrFail(this.site.requestFullCopy(), 'fullCopy');
    });
  }

  /**
   * RESYNC_SITE at the returning sync secondary: every block in either changed-block record is copied from
   * the primary, then the pair is in sync again (reversed when site 2 is primary).
   * @see claims 29, 30, 31
   */
  resync(): Promise<void> {
    if (this.id === 3) throw new NotAllowedError('resyncSite', 'site 3 is not a sync member');
    if (!this.site.up) throw new SiteFailedError(this.id, 'resyncSite');
    if (this.site.role !== 'secondary') throw new NotAllowedError('resyncSite', `site ${this.id} is not the sync secondary`);
    if (this.site.mode !== 'resyncing') throw new NotAllowedError('resyncSite', `site ${this.id} is ${this.site.mode}, not resyncing`);
    if (this.#waiter !== null) throw new NotAllowedError('resyncSite', `a ${this.#waiter.kind} is under way`);
    if (!this.#links.isConnected(this.#peer())) throw new NotAllowedError('resyncSite', 'sites 1 and 2 cannot reach each other');
    return new Promise((resolve, reject) => {
      this.#waiter = { kind: 'resync', resolve, reject };
      this.#waiterSinceMs = this.#nowMs;
      this.#sendOrFail(this.site.requestResync(), 'resyncSite');
    });
  }

  /** What this site reports (`threesite status`); `digest` reads every byte of its volumes. */
  status(digest: boolean): SiteStatus {
    const site = this.site;
    const journal = site.journal;
    const connected = ([1, 2, 3] as const).filter((peer) => peer !== this.id && this.#links.isConnected(peer));
    return {
      site: this.id,
      up: site.up,
      fault:
        this.#fault === null
          ? null
          : { device: this.#fault.device, file: this.#fault.file, operation: this.#fault.operation, errno: this.#fault.errno, message: this.#fault.message },
      role: site.role,
      mode: site.mode,
      fenced: site.fenced,
      syncPair: this.id === 3 ? null : site.syncPair,
      lastUpdateNumber: this.id === 3 ? site.restored : site.last,
      journal: {
        first: journal.first,
        last: journal.last,
        entries: journal.entries,
        bytes: journal.bytes,
        entriesMax: journal.limits.entriesMax,
        bytesMax: journal.limits.bytesMax,
        highWater: journal.highWater,
      },
      acceptsHostWrites: this.id !== 3 && this.acceptsHostWrites(),
      changedBlocks: site.changed.count,
      ackedAlone: site.ackedAlone,
      inFlightWrites: site.inFlightWrites,
      queuedWrites: this.#queued.length,
      inflow: this.config.inflowControl === undefined ? null : { delayMs: this.config.inflowControl.delayMs, ...this.#inflow },
      takeover: site.takeover,
      knownRestored: site.knownRestored,
      connected,
      cut: [...this.#cut].sort(),
      frames: Object.fromEntries(connected.map((peer) => [peer, { ...(this.#frames.get(peer) ?? { sent: 0, received: 0 }) }])),
      busy: this.#waiter?.kind ?? (this.#pullOutstanding ? 'pull' : null),
      sourceOverflow: this.#sourceOverflow && site.role === 'primary',
      epoch: site.epoch,
      deposedBy: site.deposedBy,
      staleEpochRefused: this.#staleEpochRefused,
      flushes: { host: this.#hostFlushes, forPeer: site.flushesForPeer, waiting: site.flushesWaiting },
      remote:
        this.id === 3
          ? { received: site.received, restored: site.restored, source: site.source, asyncPair: this.#remote.asyncPair, judgement: this.#remote.judgement }
          : null,
      volumeDigest: digest ? site.digest() : null,
      verify: this.#verify.status(),
    };
  }

  /**
   * Online verify (`threesite verify`) at this site, the primary: compares its volumes (`volumes`, or all)
   * with its secondary's and site 3's block by block, each chunk at one update number, while host writes go
   * on; resolves with the result when every site answered or `deadlineMs` passed (site-verify.ts). The
   * secondary's differing blocks go to this site's changed-block record (a resync copies them).
   */
  async verify(volumes: readonly number[] | null, deadlineMs: number, startedAtMs: number): Promise<VerifyResult> {
    const result = await this.#verify.run(volumes, deadlineMs, startedAtMs);
    // The changed-block record now holds the secondary's differing blocks: saved before the answer.
    if (this.site.up) this.#guard('state save', () => this.site.saveIfDirty());
    return result;
  }

  /** The verify results this site ran, oldest first (bounded: core/verify.ts `verifyResultsKept`). */
  get verifyResults(): readonly VerifyResult[] {
    return this.#verify.results;
  }

  /**
   * Site 3 needs a full copy: a verify found blocks that differ from its source's (there is no copy of single
   * blocks to site 3; a full copy makes its volumes its source's). The async pair goes to `fullCopy` (site 3
   * stops pulling; `threesite full-copy` or `resync --site 3` repairs it). Refused unless site 3 is up and
   * idle; a pair already waiting for a full copy stays as it is.
   */
  requireFullCopy(verifyId: number): void {
    if (!Number.isSafeInteger(verifyId) || verifyId < 1) throw new InvalidArgumentError('requireFullCopy', 'verifyId', verifyId);
    this.#requireRemoteIdle('requireFullCopy');
    const pair = this.#remote.asyncPair;
    if (pair === 'fullCopy' || pair === 'suspendedOverflow') return;
    this.#log(`verify ${verifyId} found blocks of site 3 that differ from its source: site 3 needs a full copy`);
    this.#endPull(new NotAcknowledgedError('pullJournal', `site 3 needs a full copy (verify ${verifyId})`));
    this.#setAsyncPair('fullCopy');
    this.#applyRules();
    this.site.saveIfDirty();
  }

  /** Saves, flushes and releases the site's storage; pending writes fail. */
  close(): void {
    for (const pending of this.#pending.values()) pending.reject(new SiteFailedError(this.id, 'host write'));
    this.#pending.clear();
    for (const write of this.#queued.splice(0)) write.reject(new SiteFailedError(this.id, 'host write'));
    for (const flush of this.#flushes.values()) flush.reject(new SiteFailedError(this.id, 'flush'));
    this.#flushes.clear();
    this.#endPull(new SiteFailedError(this.id, 'pullJournal'));
    this.#failWaiter(new SiteFailedError(this.id, 'operator step'));
    this.#verify.stop();
    this.site.close();
    this.#trace?.close();
  }

  // -------------------------------------------------------------------------------------------------------
  // Internals

  /**
   * Runs a step that does I/O; a {@link DeviceError} from the site's storage detaches the site
   * ({@link #detach}) instead of escaping: the process stays up and reports the fault. Other errors pass.
   */
  #guard(operation: string, step: () => void): void {
    if (this.#fault !== null) {
      // Detached: the storage is not touched again until a restart.
      for (const pending of this.#pending.values()) pending.reject(new StorageFaultError(this.id, operation, this.#fault));
      this.#pending.clear();
      return;
    }
    try {
      step();
    } catch (error) {
      if (!(error instanceof DeviceError)) throw error;
      this.#detach(error, operation);
    }
  }

  /**
   * DRBD's `on-io-error detach`: the site met a device error (EIO, ENOSPC, EDQUOT, a failed fsync), so what
   * its storage holds is no longer known to match what it did. It fails (FAIL_SITE: its links go down, so
   * its peers follow the rules for a failed site), every host write not yet answered fails with the device's
   * errno (never acknowledged), and it serves nothing, not even `recover`, until its process is restarted over
   * repaired storage (the restart recovers the files: torn tail, redo, checked state).
   */
  #detach(fault: DeviceError, operation: string): void {
    this.#fault = fault;
    this.#log(`storage fault during ${operation}: ${fault.message}; the site detaches (failed) until restarted`);
    const wasUp = this.site.up;
    // A sync secondary's failure takes effect at its primary, which still acknowledges in sync the writes
    // whose answers were on their way: only the primary's log shows where (the harness that caused the
    // fault records it, refined by that log, as for a kill). A primary or site 3 records its own.
    const records = wasUp && !(this.id !== 3 && this.site.role === 'secondary');
    // The instant it goes off the network: its peers may act on the link's loss before fail() returns.
    const at = this.#trace?.now();
    if (wasUp) {
      try {
        this.fail();
      } catch (error) {
        // fail() saves the site's state: the same device may refuse that too; the fault is recorded already.
        if (!(error instanceof DeviceError)) throw error;
      }
    }
    // The model's FAIL_SITE, recorded by the one site that knows its instant: this one, as it detaches.
    const trace = this.#trace;
    if (records && !this.site.up && trace !== null) {
      trace.action({ type: 'FAIL_SITE', site: this.id }, this.id === 3 ? this.#remoteView() : this.#memberView(), at !== undefined && trace.canRecordAt(at) ? at : undefined);
    }
    const error = new StorageFaultError(this.id, operation, fault);
    for (const pending of this.#pending.values()) pending.reject(error);
    this.#pending.clear();
    for (const write of this.#queued.splice(0)) write.reject(error);
    for (const flush of this.#flushes.values()) flush.reject(error);
    this.#flushes.clear();
  }

  #peer(): SyncSiteId {
    return this.id === 1 ? 2 : 1;
  }

  /** A sync member's trace view: what it knows and the model determines at its records (site-trace.ts). */
  #memberView(): { sites: Record<number, object>; syncPair: { state: SyncPairState } } {
    const site = this.site;
    return {
      // A failed member does not know the deployment's roles (the primary may have changed meanwhile).
      sites: { [this.id]: { mode: site.mode, ...(site.up ? { role: site.role } : {}), acceptsHostWrites: this.acceptsHostWrites(), fenced: site.fenced } },
      syncPair: { state: site.syncPair },
    };
  }

  /** Site 3's trace view. */
  #remoteView(): { sites: { 3: object }; asyncPair: { source: SyncSiteId } } {
    const site = this.site;
    const journal = site.journal;
    return {
      sites: { 3: { mode: site.mode, received: site.received, restored: site.restored, lastUpdateNumber: site.restored, journal: { first: journal.first, last: journal.last } } },
      asyncPair: { source: site.source },
    };
  }

  #traceRefusedWrite(volume: number, offset: number, data: Uint8Array, error: RefusalError): void {
    if (error instanceof NotWritableError && !tracedWriteRefusals.includes(error.reason)) return;
    const trace = this.#trace as SiteTrace;
    trace.hostWrite(trace.write(volume, offset, data), { accepted: false, code: error.code, message: error.message }, this.#memberView());
  }

  /** What a handled frame ended, for the trace: the steps site 3 and the resync's receiver see end here. */
  #traceAfterFrame(trace: SiteTrace, mark: ReturnType<SiteTrace['mark']>, message: Message): void {
    if (message.kind === 'copyBlocks' && message.final) trace.journalReset();
    if (this.id === 3) {
      const ended =
        (message.kind === 'deltaResyncEntries' && message.final) || message.kind === 'deltaResyncRefused'
          ? 'DELTA_RESYNC'
          : message.kind === 'copyBlocks' && message.final && message.purpose === 'fullCopy'
            ? 'FULL_COPY'
            : null;
      if (ended !== null) trace.action({ type: ended }, this.#remoteView());
    }
    trace.details(mark);
  }

  #pairInSync(): boolean {
    return this.site.syncPair === 'inSync' || this.site.syncPair === 'reversed';
  }

  #checkRange(volume: number, offset: number, length: number): void {
    if (!Number.isInteger(volume) || volume < 0 || volume >= this.site.config.volumeCount) throw new NoSuchVolumeError(volume, this.site.config.volumeCount);
    checkRange(offset, length, this.site.config.volumeBytes);
  }

  #requireRemoteIdle(operation: string): void {
    if (this.id !== 3) throw new NotAllowedError(operation, 'only site 3 does this');
    if (!this.site.up) throw new SiteFailedError(3, operation);
    if (this.#waiter !== null) throw new NotAllowedError(operation, `a ${this.#waiter.kind} is under way`);
  }

  /**
   * A peer's message named `epoch`: a higher one is adopted and saved before anything acts on it; a primary
   * that learns it was deposed (its writes in flight fail, it steps down, refuses host writes).
   */
  #learnEpoch(peer: SiteId, epoch: number): void {
    const before = this.site.epoch;
    const wasPrimary = this.site.role === 'primary';
    this.#emit(this.site.learnEpoch(epoch));
    if (this.site.epoch === before) return;
    this.#log(`epoch ${before} -> ${this.site.epoch}, learnt from site ${peer}`);
    if (wasPrimary && this.site.deposedBy !== null) {
      this.#log(`deposed: epoch ${this.site.epoch} promoted another site; host writes refused until the operator gives this site a role`);
      this.#sourceOverflow = false;
      for (const write of this.#queued.splice(0)) write.reject(this.site.notWritable('deposed'));
      this.#applyRules();
    }
    this.site.saveIfDirty();
  }

  /** Tells every connected peer this site's epoch (after an operator step gave it a new one). */
  #announceEpoch(): void {
    for (const peer of [1, 2, 3] as const) {
      if (peer !== this.id && this.#links.isConnected(peer)) this.#sendAll(this.site.epochNotice(peer));
    }
  }

  /** An operator step's epoch: the site's own or higher (a lower one means the operator's view is stale). */
  #checkStepEpoch(operation: string, epoch: number): void {
    if (!Number.isSafeInteger(epoch) || epoch < 1) throw new InvalidArgumentError(operation, 'epoch', epoch);
    if (epoch < this.site.epoch) throw new NotAllowedError(operation, `epoch ${epoch} is lower than site ${this.id}'s epoch ${this.site.epoch}`);
  }

  #refuse(peer: SiteId, kind: string, error: RefusalError): void {
    this.refused.set(kind, (this.refused.get(kind) ?? 0) + 1);
    if (error instanceof StaleEpochError) {
      // Nothing of it is applied; its sender learns the epoch from the answer (and steps down if primary).
      this.#staleEpochRefused += 1;
      this.#log(`${error.message}: nothing of it applied; answered with epoch ${this.site.epoch}`);
      this.#sendAll(this.site.epochNotice(peer));
      return;
    }
    if (!(error instanceof MalformedMessageError)) {
      this.#log(`dropped ${kind} from site ${peer}: ${error.message}`);
      return;
    }
    this.#links.disconnect(peer, `malformed message from site ${peer}: ${error.message}`);
    this.onPeerDown(peer, 'it sent a malformed message');
  }

  /** Sends a step's messages; if one cannot be sent, the waiter fails (the step did not happen). */
  #sendOrFail(out: SiteOutput, operation: string): void {
    if (!this.#sendAll(out)) this.#failWaiter(new NotAcknowledgedError(operation, 'the peer is not connected'));
  }

  #sendAll(out: SiteOutput): boolean {
    let all = true;
    for (const envelope of out.send) all = this.#send(envelope) && all;
    for (const note of out.notes) this.#onNote(note);
    return all;
  }

  #send(envelope: SiteEnvelope): boolean {
    assert(envelope.from === this.id, 'a node sends its own site messages', () => `from ${envelope.from}`);
    const message = this.#trace !== null && envelope.message.kind === 'pullEntries' ? { ...envelope.message, servedAt: this.#trace.now() } : envelope.message;
    const sent = this.#links.send(envelope.to, encodeMessage(message));
    if (sent) this.#framesOf(envelope.to).sent += 1;
    return sent;
  }

  /** The frame counts of the connection to `peer` (from zero at its up, or at the first frame of a link up from the start). */
  #framesOf(peer: SiteId): { sent: number; received: number } {
    let frames = this.#frames.get(peer);
    if (frames === undefined) {
      frames = { sent: 0, received: 0 };
      this.#frames.set(peer, frames);
    }
    return frames;
  }

  /**
   * A source whose journal overflowed since site 3's last full copy serves it neither a pull nor a reattach
   * judgement: it answers `pullRefused` (site 3's async pair is then suspended by overflow, as the model's is
   * from the overflow on), even where its journal still happens to cover site 3. Returns whether it did.
   * @see P5, P7
   */
  #refusedForOverflow(peer: SiteId, message: Message): boolean {
    if (this.id === 3 || peer !== 3 || !this.#sourceOverflow || this.site.role !== 'primary' || !this.site.up) return false;
    if (message.kind !== 'pullRequest' && !(message.kind === 'judgeRequest' && message.purpose === 'reattach')) return false;
    this.#log(`refused a ${message.kind} from site 3: the journal overflowed since its last full copy`);
    this.#send({ from: this.id, to: 3, message: { kind: 'pullRefused', epoch: this.site.epoch, received: message.received, journalFirst: this.site.journal.first } });
    return true;
  }

  #emit(out: SiteOutput): void {
    for (const envelope of out.send) {
      const kind = envelope.message.kind;
      if (!this.#send(envelope) && this.id !== 3 && envelope.to === this.#peer() && (kind === 'syncWrite' || kind === 'syncWriteBatch' || kind === 'flushRequest')) {
        // The secondary is unreachable: R1 decides this write (or flush) and any other in flight.
        this.#suspendSyncPair('a sync write found no link');
      }
    }
    for (const note of out.notes) this.#onNote(note);
  }

  #onNote(note: SiteNote): void {
    switch (note.kind) {
      case 'hostWriteAcked': {
        const pending = this.#pending.get(note.writeId);
        assert(pending !== undefined, 'P1 every acknowledgement answers a submitted write', () => `write ${note.writeId}`);
        this.#pending.delete(note.writeId);
        if (this.#trace !== null && pending.traced !== null) this.#trace.hostWrite(pending.traced, { accepted: true }, this.#memberView());
        pending.resolve({ updateNumber: note.updateNumber, alone: note.alone });
        return;
      }
      case 'hostWriteFailed': {
        const pending = this.#pending.get(note.writeId);
        assert(pending !== undefined, 'every failure answers a submitted write', () => `write ${note.writeId}`);
        this.#pending.delete(note.writeId);
        pending.reject(this.#fault === null ? note.error : new StorageFaultError(this.id, 'host write', this.#fault));
        return;
      }
      case 'flushDone': {
        const flush = this.#flushes.get(note.flushId);
        assert(flush !== undefined, 'every flush outcome answers a host flush', () => `flush ${note.flushId}`);
        flush.remote = { alone: note.alone };
        this.#settleFlush(note.flushId);
        return;
      }
      case 'flushFailed': {
        const flush = this.#flushes.get(note.flushId);
        assert(flush !== undefined, 'every flush outcome answers a host flush', () => `flush ${note.flushId}`);
        this.#flushes.delete(note.flushId);
        flush.reject(this.#fault === null ? note.error : new StorageFaultError(this.id, 'flush', this.#fault));
        return;
      }
      case 'journalOverflow':
        if (this.site.role !== 'primary') {
          this.#log(`journal overflow at u=${note.updateNumber}: the standby pair is in hold-error`);
          return;
        }
        // As in one process, the async pair is suspended by overflow now; site 3 learns it when it next asks.
        this.#sourceOverflow = true;
        this.#log(`journal overflow at u=${note.updateNumber}: site 3 needs a full copy (P7)`);
        return;
      case 'judged':
        // The source judged site 3: a reattach judgement clears the takeover point it used.
        if (note.purpose === 'reattach') this.site.setTakeover(null);
        return;
      case 'resyncDone':
        // The primary sent the whole resync: the pair is in sync again, atomically before any waiting write.
        this.#emit(this.site.setSyncPair(this.id === 1 ? 'inSync' : 'reversed'));
        this.site.setMode(this.#syncMemberMode());
        this.#trace?.action({ type: 'RESYNC_SITE', site: this.#peer() }, this.#memberView());
        return;
      case 'pullRefused':
        this.#setAsyncPair('suspendedOverflow');
        // A source that refuses for overflow answers a reattach judgement this way too (#refusedForOverflow).
        if (this.#waiter?.kind === 'judge' && this.#waiter.purpose === 'reattach') this.#waiter = null;
        this.#endPull(null);
        return;
      case 'deltaResyncRefused':
        this.#setAsyncPair('fullCopy');
        this.#resolveWaiter('deltaResync', 'fullCopy');
        return;
      case 'fullCopyDone':
        // Site 3 holds this source's image: the overflow is behind it.
        this.#sourceOverflow = false;
        return;
      case 'deltaResyncDone':
        return;
    }
  }

  /** What a handled message completes at this node. */
  #afterMessage(peer: SiteId, message: Message): void {
    switch (message.kind) {
      case 'pullEntries':
        this.#endPull(null);
        return;
      case 'verdict': {
        const waiter = this.#waiter;
        const judged: JudgedVerdict = { verdict: message.verdict, remoteReceived: message.remoteReceived, sourceLast: message.sourceLast };
        if (message.purpose !== 'reattach' && (peer === 1 || peer === 2)) this.#judgedBy = { ...judged, source: peer };
        if (message.purpose === 'reattach') {
          // R2: site 3 is reattached; it copies on, or needs a full copy.
          const state = message.verdict === 'noUpdateRequired' || message.verdict === 'deltaResync' ? 'copying' : 'fullCopy';
          this.#remote.judgement = { ...judged, forced: false };
          this.#setAsyncPair(state);
        }
        if (waiter?.kind === 'judge' && waiter.purpose === message.purpose) {
          this.#waiter = null;
          waiter.resolve(judged);
        }
        return;
      }
      case 'deltaResyncEntries':
        if (message.final) {
          this.#setAsyncPair('copying');
          this.#resolveWaiter('deltaResync', 'copying');
        } else {
          this.#progressed('deltaResync');
        }
        return;
      case 'copyBlocks':
        if (!message.final) {
          this.#progressed(message.purpose === 'fullCopy' ? 'fullCopy' : 'resync');
          return;
        }
        if (message.purpose === 'fullCopy') {
          this.#setAsyncPair('copying');
          this.#resolveWaiter('fullCopy', undefined);
        } else {
          // The secondary holds the primary's image: the pair is in sync again from here on.
          this.#emit(this.site.setSyncPair(peer === 1 ? 'inSync' : 'reversed'));
          this.site.setMode(this.#syncMemberMode());
          this.#resolveWaiter('resync', undefined);
        }
        return;
      default:
        return;
    }
  }

  #resolveWaiter(kind: Waiter['kind'], value: unknown): void {
    const waiter = this.#waiter;
    if (waiter === null || waiter.kind !== kind) return;
    this.#waiter = null;
    (waiter.resolve as (value: unknown) => void)(value);
  }

  /**
   * A step of several answers (a delta resync's batches, a block copy's) got one: its answer timeout counts
   * from here. The timeout bounds the wait for an answer, not the whole step: a long step that makes progress
   * is not given up (given up, its operator was told NotAcknowledged while the step went on, and a second try
   * crossed the first: out-of-order batches).
   */
  #progressed(kind: string): void {
    if (this.#waiter?.kind === kind) this.#waiterSinceMs = this.#nowMs;
  }

  #failWaiter(error: RefusalError): void {
    const waiter = this.#waiter;
    if (waiter === null) return;
    this.#waiter = null;
    waiter.reject(error);
  }

  #suspendSyncPair(why: string): void {
    const state = this.site.syncPair;
    if (state === 'suspended') return;
    this.#log(`sync pair suspended (${why})`);
    this.#emit(this.site.setSyncPair('suspended'));
    this.site.setMode(this.#syncMemberMode());
  }

  #setAsyncPair(state: AsyncPairState): void {
    if (this.#remote.asyncPair === state) return;
    this.#log(`async pair ${this.#remote.asyncPair} -> ${state}`);
    this.#remote.asyncPair = state;
    this.#saveRemoteState();
  }

  /**
   * Saves site 3's remote state (`remote.json`). Not at a detached site: its storage is not touched again until
   * a restart. A device error here detaches it as anywhere else; it never escapes into the links' callbacks
   * (a peer-down notice met mid-detach once left site 3 up, one link blocked and the other not).
   */
  #saveRemoteState(): void {
    if (this.#saveRemote === null || this.#fault !== null) return;
    try {
      this.#saveRemote({ ...this.#remote });
    } catch (error) {
      if (!(error instanceof DeviceError)) throw error;
      this.#detach(error, 'saving the remote state');
    }
  }

  /** Rules R1 and R2 as far as this site sees them, and the derived modes. */
  #applyRules(): void {
    if (this.id === 3) {
      const three = this.site;
      if (three.up) {
        // Suspension happens where a link is seen to go down (onPeerDown): a link not yet made at start
        // suspends nothing.
        if (this.#remote.asyncPair === 'suspended' && this.#links.isConnected(three.source) && this.#waiter === null) {
          // R2: reattached, site 3 asks to be judged; the verdict sets the pair (#afterMessage).
          this.#waiter = { kind: 'judge', purpose: 'reattach', resolve: () => undefined, reject: () => undefined };
          this.#waiterSinceMs = this.#nowMs;
          this.#sendOrFail(three.requestJudge(three.source, 'reattach'), 'judge');
        }
      }
      const pair = this.#remote.asyncPair;
      three.setMode(!three.up ? 'failed' : pair === 'deltaResync' || pair === 'fullCopy' ? 'resyncing' : 'normal');
      return;
    }
    const member = this.site;
    if (member.up) {
      // As at site 3, suspension happens where the link is seen to go down or a write finds none.
      if (member.syncPair === 'suspended' && this.#links.isConnected(this.#peer())) this.#emit(member.setSyncPair('resyncing'));
    }
    member.setMode(this.#syncMemberMode());
    this.#drainQueue();
  }

  /** The mode of this sync member (model/README.md "Modes"), as the cluster derives it. */
  #syncMemberMode(): SiteMode {
    const member = this.site;
    return syncMemberMode(member.up, member.role === 'primary', member.syncPair, member.mode);
  }

}
