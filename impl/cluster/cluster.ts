/**
 * The cluster: three storage systems, the deterministic transport between them, and the controller that
 * carries out the operator's commands and the rules R1 and R2 (model/README.md). It is the public API of the
 * implementation: tests, the conformance harness and later a server process drive the system through it.
 *
 * Every model event maps to one method (HOST_WRITE → {@link Cluster.hostWrite}, PULL_JOURNAL →
 * {@link Cluster.pullJournal}, ...). Each method checks the event's conditions in the README's order and
 * either refuses with the typed error named there, changing nothing, or carries the event out: it hands the
 * sites their commands, moves their messages with the transport until it is idle, and applies R1 and R2.
 *
 * The sites hold the data (volumes, journals, update numbers, changed-block records, known site-3
 * progress); the controller holds what a replication manager holds (which sync member is primary, the
 * states of the sync and async pairs, the last judgement) and reads the rest from the sites.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type {
  AsyncPairState,
  HostId,
  Judgement,
  Observation,
  SiteMode,
  SiteObservation,
  SyncPairState,
  SyncSiteId,
} from '../../model/observation.ts';
import { advanceTicksMax, hostWriteBytesMax, validateClusterConfig, type ClusterConfig } from './cluster-config.ts';
import {
  InvalidArgumentError,
  LinkStateError,
  NoSuchVolumeError,
  NotAcknowledgedError,
  NotAllowedError,
  NotWritableError,
  RefusalError,
  RemoteAheadError,
  SiteFailedError,
  SiteUpError,
  StaleEpochError,
  ConfigError,
} from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { asyncPairAfter, journalCovers } from '../core/judge.ts';
import type { JudgePurpose, Message } from '../core/messages.ts';
import { readStateFile, writeStateFile } from '../storage/state-file.ts';
import { openSite, siteConfigOf, type SiteStorage } from '../storage/site-open.ts';
import { StorageSystem, syncMemberMode, type SiteId, type SiteNote, type SiteOutput } from '../core/storage-system.ts';
import { linkName, type Envelope } from '../core/link.ts';
import { Transport } from './transport.ts';
import { checkRange, OutOfRangeError } from '../core/volume.ts';

/** The configuration of a cluster (see `cluster-config.ts`). */
export type { ClusterConfig } from './cluster-config.ts';

/** Refused deliveries the cluster keeps for inspection (the oldest are forgotten). */
export const rejectionsKeptMax = 1024;

const clusterStateFormat = 'threesite-cluster-state-v1';

/** A message a site refused on delivery, with the typed error it gave. */
export interface Rejection {
  readonly from: SiteId;
  readonly to: SiteId;
  readonly kind: Message['kind'];
  readonly error: RefusalError;
}

/** The state of a host write: in flight, acknowledged to the host, or failed. */
export type HostWriteState = 'pending' | 'acknowledged' | 'failed';

/**
 * A host write submitted with {@link Cluster.submitHostWrite}: its acknowledgement arrives when the
 * transport delivers the secondary's answer (claim 3), so a test can interleave deliveries, faults and
 * other writes before it.
 */
export class HostWriteHandle {
  #state: HostWriteState = 'pending';
  #updateNumber: number | null = null;
  #alone = false;
  #error: RefusalError | null = null;

  constructor(
    readonly id: number,
    readonly host: HostId,
  ) {}

  get state(): HostWriteState {
    return this.#state;
  }
  /** The update number the write got, once acknowledged. */
  get updateNumber(): number | null {
    return this.#updateNumber;
  }
  /** True when the write was acknowledged on one site only (the P1 exposure). */
  get alone(): boolean {
    return this.#alone;
  }
  /** Why the write failed, once failed. */
  get error(): RefusalError | null {
    return this.#error;
  }

  /** @internal The cluster acknowledges the write. */
  acknowledge(updateNumber: number, alone: boolean): void {
    assert(this.#state === 'pending', 'a host write is acknowledged once', () => `write ${this.id} is ${this.#state}`);
    this.#state = 'acknowledged';
    this.#updateNumber = updateNumber;
    this.#alone = alone;
  }

  /** @internal The cluster fails the write. */
  fail(error: RefusalError): void {
    assert(this.#state === 'pending', 'a host write ends once', () => `write ${this.id} is ${this.#state}`);
    this.#state = 'failed';
    this.#error = error;
  }
}

/** The controller's durable state (the cluster state file). */
interface ClusterDurableState {
  primary: SyncSiteId;
  syncPair: SyncPairState;
  asyncPair: AsyncPairState;
  judgement: Judgement | null;
  cutLinks: string[];
  now: number;
}

function isSite(value: unknown): value is SiteId {
  return value === 1 || value === 2 || value === 3;
}

/**
 * Three storage systems and their controller.
 * @see claims 1-40 (the system as a whole); model/README.md for every method's semantics
 */
export class Cluster {
  readonly config: Readonly<Required<ClusterConfig>>;
  /** The deterministic transport; its controls (hold, drop, reorder, ...) are for interleaving tests. */
  readonly transport: Transport<Message>;
  readonly #sites: [StorageSystem, StorageSystem, StorageSystem];
  readonly #hostWriteBytesMax: number;
  #primary: SyncSiteId;
  #syncPair: SyncPairState;
  #asyncPair: AsyncPairState;
  #judgement: Judgement | null;
  readonly #pending = new Map<number, HostWriteHandle>();
  #nextWriteId = 1;
  #notes: SiteNote[] = [];
  readonly #rejections: Rejection[] = [];
  #dirty = false;
  #closed = false;

  private constructor(config: Readonly<Required<ClusterConfig>>, sites: [StorageSystem, StorageSystem, StorageSystem], saved: ClusterDurableState | null) {
    this.config = config;
    this.#sites = sites;
    this.#hostWriteBytesMax = hostWriteBytesMax(config);
    this.transport = new Transport<Message>({ deliveriesPerRunMax: config.deliveriesPerRunMax });
    this.transport.setReceiver((envelope) => this.#receive(envelope));
    this.#primary = saved?.primary ?? 1;
    this.#syncPair = saved?.syncPair ?? 'inSync';
    this.#asyncPair = saved?.asyncPair ?? 'copying';
    this.#judgement = saved?.judgement ?? null;
    if (saved) {
      for (const link of saved.cutLinks) {
        const [a, b] = link.split('-').map(Number) as [SiteId, SiteId];
        this.transport.cut(a, b);
      }
      this.transport.tick(saved.now);
    }
  }

  /**
   * A new cluster: every site up and empty, site 1 primary, the sync pair in sync, the async pair copying
   * from site 1, the standby pair from site 2 in hold. With file storage the directory must not hold a
   * cluster yet (use {@link Cluster.open}). Throws {@link ConfigError}.
   */
  static create(config: ClusterConfig): Cluster {
    const valid = validateClusterConfig(config);
    if (valid.storage.kind === 'file') {
      if (fs.existsSync(path.join(valid.storage.dir, 'cluster.json'))) {
        throw new ConfigError('storage.dir', valid.storage.dir, 'already holds a cluster: use Cluster.open');
      }
      fs.mkdirSync(valid.storage.dir, { recursive: true });
    }
    const cluster = new Cluster(valid, Cluster.#makeSites(valid, false), null);
    cluster.#dirty = true;
    for (const site of cluster.#sites) site.save();
    cluster.#save();
    return cluster;
  }

  /**
   * Reopens a file-backed cluster from its directory: volumes, journals (recovered: a torn tail is cut),
   * each site's state file and the controller's. The configuration must be the one it was created with.
   */
  static open(config: ClusterConfig): Cluster {
    const valid = validateClusterConfig(config);
    if (valid.storage.kind !== 'file') throw new ConfigError('storage.kind', valid.storage.kind, "only a 'file' cluster can be reopened");
    const saved = readStateFile(path.join(valid.storage.dir, 'cluster.json'), clusterStateFormat) as ClusterDurableState | null;
    if (saved === null) throw new ConfigError('storage.dir', valid.storage.dir, 'holds no cluster: use Cluster.create');
    return new Cluster(valid, Cluster.#makeSites(valid, true), saved);
  }

  static #makeSites(config: Readonly<Required<ClusterConfig>>, reopen: boolean): [StorageSystem, StorageSystem, StorageSystem] {
    return [Cluster.#makeSite(config, 1, reopen), Cluster.#makeSite(config, 2, reopen), Cluster.#makeSite(config, 3, reopen)];
  }

  /** A site over new storage, or reopened from its directory (file storage). */
  static #makeSite(config: Readonly<Required<ClusterConfig>>, id: SiteId, reopen: boolean): StorageSystem {
    const siteConfig = siteConfigOf(id, config, config.storage.kind === 'file');
    const storage: SiteStorage =
      config.storage.kind === 'memory' ? { kind: 'memory' } : { kind: 'file', dir: path.join(config.storage.dir, `site-${id}`), reopen };
    return openSite(siteConfig, config.journal, storage);
  }

  // -------------------------------------------------------------------------------------------------------
  // Host I/O

  /**
   * A host write (HOST_WRITE): refused with {@link NoSuchVolumeError} / {@link OutOfRangeError} outside the
   * volumes, {@link NotWritableError} when the site serving the host does not accept writes; otherwise runs
   * the transport until the write is acknowledged and returns its update number. The caller must not change
   * `data` until this returns.
   * @see claims 2-6, 10, 12, 15, 17, 21, 25, 27, 31-35, 39
   */
  hostWrite(host: HostId, volume: number, offset: number, data: Uint8Array): { updateNumber: number } {
    const handle = this.submitHostWrite(host, volume, offset, data);
    if (handle.state === 'pending') this.transport.deliverAll();
    // Only an overflow (or a write decided by a broken pair) changes what R1 and R2 look at.
    if (this.#dirty) this.#settle();
    this.#save();
    if (handle.state === 'failed') throw handle.error as RefusalError;
    if (handle.state === 'pending') {
      throw new NotAcknowledgedError('hostWrite', `write ${handle.id} is journaled at site ${host} and waits for the secondary's answer`);
    }
    return { updateNumber: handle.updateNumber as number };
  }

  /**
   * Submits a host write and returns its handle without running the transport: the acknowledgement comes
   * when the transport delivers the secondary's answer ({@link runUntilIdle} or the transport's controls).
   * Refusals are thrown at once, as by {@link hostWrite}. The caller must not change `data` until the write
   * is acknowledged or failed.
   */
  submitHostWrite(host: HostId, volume: number, offset: number, data: Uint8Array): HostWriteHandle {
    this.#checkOpen();
    if (host !== 1 && host !== 2) throw new InvalidArgumentError('hostWrite', 'host', host);
    if (!(data instanceof Uint8Array)) throw new InvalidArgumentError('hostWrite', 'data', typeof data);
    this.#checkRange(volume, offset, data.length);
    if (data.length === 0) throw new OutOfRangeError(offset, 0, this.config.volumeBytes, 'empty');
    if (data.length > this.#hostWriteBytesMax) throw new OutOfRangeError(offset, data.length, this.config.volumeBytes, 'tooLarge');
    const site = this.#site(host);
    const reason = site.writeRefusal();
    if (reason !== null) throw new NotWritableError(host, host, reason);
    const handle = new HostWriteHandle(this.#nextWriteId, host);
    this.#nextWriteId += 1;
    this.#pending.set(handle.id, handle);
    this.#emit(site.hostWrite(handle.id, volume, offset, data));
    if (this.#dirty) this.#settle();
    return handle;
  }

  /** A host read at the site serving `host` (the primary): {@link SiteFailedError}, {@link NotAllowedError}. */
  hostRead(host: HostId, volume: number, offset: number, length: number): Uint8Array {
    this.#checkOpen();
    if (host !== 1 && host !== 2) throw new InvalidArgumentError('hostRead', 'host', host);
    this.#checkRange(volume, offset, length);
    const site = this.#site(host);
    if (!site.up) throw new SiteFailedError(host, 'hostRead');
    if (site.role !== 'primary') throw new NotAllowedError('hostRead', `site ${host} is not the primary`);
    return site.read(volume, offset, length);
  }

  /** Reads a site's volume whatever its state (the operator's and tests' view of the disks). */
  readVolume(site: SiteId, volume: number, offset: number, length: number): Uint8Array {
    this.#checkOpen();
    if (!isSite(site)) throw new InvalidArgumentError('readVolume', 'site', site);
    this.#checkRange(volume, offset, length);
    return this.#site(site).read(volume, offset, length);
  }

  // -------------------------------------------------------------------------------------------------------
  // Background steps

  /**
   * PULL_JOURNAL: site 3 pulls the entries after its received number from the source, as many as
   * `pullBatchEntriesMax` and its journal allow; the source learns site 3's restored number and trims.
   * Refused ({@link NotAllowedError}) unless the async pair is copying and the source reachable from site 3.
   * @see claims 7, 8, 9, 11, 22, 23, 24, 36, 37, 38
   */
  pullJournal(): void {
    this.#begin();
    this.#throwIf(this.#pullRefusal());
    this.#pull();
    this.#end();
  }

  /**
   * RESTORE_JOURNAL: site 3 restores every journal entry in update-number order (P2). Refused when site 3 is
   * failed ({@link SiteFailedError}), its journal is empty or the async pair waits for a full copy
   * ({@link NotAllowedError}).
   * @see claims 8, 14, 40
   */
  restoreJournal(): void {
    this.#begin();
    this.#throwIf(this.#restoreRefusal());
    this.#site(3).restore();
    this.#end();
  }

  /**
   * Moves the logical clock forward one tick at a time, delivering what became deliverable, pulling every
   * `pullIntervalTicks` and restoring every `restoreIntervalTicks` when they are allowed (skipped silently
   * otherwise).
   * @see claim 9 (site 3 reads at specified time intervals)
   */
  advanceClock(ticks: number): void {
    this.#begin();
    if (!Number.isSafeInteger(ticks) || ticks < 0 || ticks > advanceTicksMax) throw new InvalidArgumentError('advanceClock', 'ticks', ticks);
    for (let i = 0; i < ticks; i += 1) {
      this.transport.tick(1);
      this.transport.deliverAll();
      const now = this.transport.now;
      if (now % this.config.pullIntervalTicks === 0 && this.#pullRefusal() === null) this.#pull();
      if (now % this.config.restoreIntervalTicks === 0 && this.#restoreRefusal() === null) this.#site(3).restore();
      this.#settle();
    }
    this.#dirty = true;
    this.#end();
  }

  /** Delivers every deliverable message, then applies R1 and R2 (for interleaving tests that use the transport's controls). */
  runUntilIdle(): number {
    this.#checkOpen();
    const delivered = this.transport.deliverAll();
    this.#settle();
    this.#save();
    return delivered;
  }

  // -------------------------------------------------------------------------------------------------------
  // Faults

  /** FAIL_SITE: the site stops (its volumes and journal survive); then R1, R2. {@link SiteFailedError} if already failed. */
  failSite(site: SiteId): void {
    this.#begin();
    if (!isSite(site)) throw new InvalidArgumentError('failSite', 'site', site);
    if (!this.#site(site).up) throw new SiteFailedError(site, 'failSite');
    this.#emit(this.#site(site).fail());
    this.transport.dropSite(site);
    this.#end();
  }

  /**
   * RECOVER_SITE: the site is up with what its volumes and journal held; then R1, R2. {@link SiteUpError} if
   * up. With file storage the site restarts from its directory: volumes and journal reopened (a torn journal
   * tail is cut), its state file read back.
   */
  recoverSite(site: SiteId): void {
    this.#begin();
    if (!isSite(site)) throw new InvalidArgumentError('recoverSite', 'site', site);
    if (this.#site(site).up) throw new SiteUpError(site, 'recoverSite');
    if (this.config.storage.kind === 'file') {
      this.#site(site).close();
      this.#sites[site - 1] = Cluster.#makeSite(this.config, site, true);
    }
    this.#site(site).recover();
    this.#end();
  }

  /** CUT_LINK: the link loses what it carries until restored; then R1, R2. {@link LinkStateError} if cut. */
  cutLink(a: SiteId, b: SiteId): void {
    this.#begin();
    this.#checkLink('cutLink', a, b);
    if (this.transport.isCut(a, b)) throw new LinkStateError(linkName(a, b), true, 'cutLink');
    this.transport.cut(a, b);
    // The cut links are part of the controller's durable state even when R1 and R2 change nothing else.
    this.#dirty = true;
    this.#end();
  }

  /** RESTORE_LINK: the link is up; then R1, R2. {@link LinkStateError} if not cut. */
  restoreLink(a: SiteId, b: SiteId): void {
    this.#begin();
    this.#checkLink('restoreLink', a, b);
    if (!this.transport.isCut(a, b)) throw new LinkStateError(linkName(a, b), false, 'restoreLink');
    this.transport.restore(a, b);
    // The cut links are part of the controller's durable state even when R1 and R2 change nothing else.
    this.#dirty = true;
    this.#end();
  }

  // -------------------------------------------------------------------------------------------------------
  // Operator commands

  /**
   * FENCE_SITE: site 1 accepts no host write from now on (one-way). Refused unless the site is 1, up,
   * primary and not yet fenced.
   * @see P4 (the operator's way to stop site 1 before promoting site 2)
   */
  fenceSite(site: SiteId): void {
    this.#begin();
    if (!isSite(site)) throw new InvalidArgumentError('fenceSite', 'site', site);
    if (site !== 1) throw new NotAllowedError('fenceSite', 'only site 1 can be fenced');
    const one = this.#site(1);
    if (!one.up) throw new SiteFailedError(1, 'fenceSite');
    if (this.#primary !== 1) throw new NotAllowedError('fenceSite', 'site 1 is not the primary');
    if (one.fenced) throw new NotAllowedError('fenceSite', 'site 1 is already fenced');
    one.fence();
    this.#end();
  }

  /**
   * FAILOVER: host 2 takes over at site 2, continuing the update numbers (claim 27); site 3 sends site 2 its
   * received number and site 2 judges (claim 18). Refused when site 2 is failed, already primary or not
   * normal, or site 1 is up and not fenced (P4); refused with {@link RemoteAheadError} (the judgement
   * recorded) when site 3 holds updates site 2 lacks, unless forced. Site 3 down or behind a cut link 2-3
   * cannot be asked: it is judged against the takeover point when site 2 reaches it again (R2).
   * @see claims 16-21, 25-29
   */
  failover(options: { force: boolean }): void {
    this.#begin();
    const force = options?.force;
    if (typeof force !== 'boolean') throw new InvalidArgumentError('failover', 'force', force);
    const [one, two, three] = this.#sites;
    if (!two.up) throw new SiteFailedError(2, 'failover');
    if (this.#primary !== 1) throw new NotAllowedError('failover', 'site 2 is already the primary');
    if (two.mode !== 'normal') throw new NotAllowedError('failover', `site 2 is ${two.mode}, not normal`);
    if (one.up && !one.fenced) throw new NotAllowedError('failover', 'site 1 is neither failed nor fenced (P4)');
    if (one.up && one.inFlightWrites > 0) throw new NotAllowedError('failover', 'site 1 has host writes in flight');
    let judged: Extract<SiteNote, { kind: 'judged' }> | null = null;
    // A cut link 2-3 looks to site 2 like a failure of site 3 (DESIGN.md): both are judged when they meet again.
    if (three.up && this.#reachable(2, 3)) {
      judged = this.#judge(2, 'failover');
      if (judged === null) throw new NotAcknowledgedError('failover', "site 2 did not receive site 3's update number");
      if (judged.verdict === 'remoteAhead' && !force) {
        this.#judgement = { verdict: judged.verdict, remoteReceived: judged.remoteReceived, sourceLast: judged.sourceLast, forced: false };
        this.#dirty = true;
        this.#end();
        throw new RemoteAheadError(judged.remoteReceived, judged.sourceLast);
      }
    }
    // A promotion: every site takes the next epoch (the controller reaches them all, failed ones included, as
    // it sets their roles), so a message sent before it and delivered after is refused as stale.
    this.#raiseEpoch();
    this.#primary = 2;
    one.setRole('secondary');
    two.setRole('primary');
    three.setSource(2);
    this.#setSyncPair('suspended');
    if (judged === null) {
      this.#asyncPair = 'suspended';
      two.setTakeover(two.last);
    } else {
      const forced = judged.verdict === 'remoteAhead';
      this.#asyncPair = forced ? 'fullCopy' : asyncPairAfter(judged.verdict);
      this.#judgement = { verdict: judged.verdict, remoteReceived: judged.remoteReceived, sourceLast: judged.sourceLast, forced };
      two.setTakeover(null);
    }
    this.#dirty = true;
    this.#end();
  }

  /**
   * RESYNC_SITE: the returning sync secondary gets every block in either changed-block record from the
   * primary, takes over its last update number with an empty journal, and follows again (in sync, or
   * reversed when site 2 is primary). Refused unless `site` is the secondary, up, resyncing, and sites 1
   * and 2 reach each other.
   * @see claims 29, 30, 31
   */
  resyncSite(site: SyncSiteId): void {
    this.#begin();
    if (site !== 1 && site !== 2) throw new InvalidArgumentError('resyncSite', 'site', site);
    const secondary = this.#secondary();
    if (site !== secondary) throw new NotAllowedError('resyncSite', `site ${site} is not the sync secondary`);
    const target = this.#site(site);
    if (!target.up) throw new SiteFailedError(site, 'resyncSite');
    if (target.mode !== 'resyncing') throw new NotAllowedError('resyncSite', `site ${site} is ${target.mode}, not resyncing`);
    if (!this.#reachable(1, 2)) throw new NotAllowedError('resyncSite', 'sites 1 and 2 cannot reach each other');
    // A secondary is resyncing only while the pair is not in sync, and then the primary acknowledges each
    // write at once (StorageSystem.setSyncPair decided the ones in flight): none can be in flight here.
    assert(this.#site(this.#primary).inFlightWrites === 0, 'no write in flight while the pair is not in sync', () => `${this.#site(this.#primary).inFlightWrites} writes`);
    const notes = this.#exchange(target.requestResync());
    if (!notes.some((note) => note.kind === 'resyncDone')) throw new NotAcknowledgedError('resyncSite', 'the resync did not complete');
    this.#setSyncPair(this.#primary === 1 ? 'inSync' : 'reversed');
    this.#end();
  }

  /**
   * DELTA_RESYNC: site 3 reads every missing entry from the source's journal into its own journal, after
   * what that holds (claims 19, 20; model/README.md "Delta resync"), when the source's journal still covers
   * it (P5); its next restore ({@link restoreJournal}) writes them into its volumes. Otherwise the async pair
   * goes to full copy. Refused unless the async pair is deltaResync and the source reachable from site 3.
   */
  deltaResync(): void {
    this.#begin();
    if (this.#asyncPair !== 'deltaResync') throw new NotAllowedError('deltaResync', `async pair is ${this.#asyncPair}`);
    if (!this.#reachable(this.#primary, 3)) throw new NotAllowedError('deltaResync', 'source unreachable from site 3');
    const notes = this.#exchange(this.#site(3).requestDeltaResync(this.config.pullBatchEntriesMax));
    if (notes.some((note) => note.kind === 'deltaResyncDone')) this.#asyncPair = 'copying';
    else if (notes.some((note) => note.kind === 'deltaResyncRefused')) this.#asyncPair = 'fullCopy';
    else throw new NotAcknowledgedError('deltaResync', 'the delta resync did not complete');
    this.#dirty = true;
    this.#end();
  }

  /**
   * FULL_COPY: site 3's volumes become the source's; its received and restored numbers become the source's
   * last, its journal empty; the source trims. Refused unless the async pair is fullCopy or
   * suspendedOverflow and the source reachable from site 3.
   */
  fullCopy(): void {
    this.#begin();
    if (this.#asyncPair !== 'fullCopy' && this.#asyncPair !== 'suspendedOverflow') {
      throw new NotAllowedError('fullCopy', `async pair is ${this.#asyncPair}`);
    }
    if (!this.#reachable(this.#primary, 3)) throw new NotAllowedError('fullCopy', 'source unreachable from site 3');
    if (this.#site(this.#primary).inFlightWrites > 0) throw new NotAllowedError('fullCopy', 'the source has host writes in flight');
    const notes = this.#exchange(this.#site(3).requestFullCopy());
    if (!notes.some((note) => note.kind === 'fullCopyDone')) throw new NotAcknowledgedError('fullCopy', 'the full copy did not complete');
    this.#asyncPair = 'copying';
    // Stryker disable next-line ArrayDeclaration: the source clears its own takeover point when the copy completes (StorageSystem #onCopyAck), and only site 2 as primary ever holds one
    for (const site of [this.#site(1), this.#site(2)]) site.setTakeover(null);
    this.#dirty = true;
    this.#end();
  }

  /**
   * FAILBACK: a planned return to site 1 as primary with no data loss; site 3 is judged against site 1's
   * journal, which holds site 2's update numbers (claim 31). Refused unless the pair is reversed, every site
   * up ({@link SiteFailedError}), every link up and the async pair copying.
   */
  failback(): void {
    this.#begin();
    if (this.#syncPair !== 'reversed') throw new NotAllowedError('failback', `sync pair is ${this.#syncPair}, not reversed`);
    for (const site of this.#sites) if (!site.up) throw new SiteFailedError(site.id, 'failback');
    if (this.transport.cutLinks().length > 0) throw new NotAllowedError('failback', 'every link must be up');
    if (this.#asyncPair !== 'copying') throw new NotAllowedError('failback', `async pair is ${this.#asyncPair}`);
    if (this.#site(2).inFlightWrites > 0) throw new NotAllowedError('failback', 'host 2 has writes in flight (quiesce first)');
    const judged = this.#judge(1, 'failback');
    if (judged === null) throw new NotAcknowledgedError('failback', "site 1 did not receive site 3's update number");
    this.#raiseEpoch();
    this.#primary = 1;
    this.#site(1).setRole('primary');
    this.#site(2).setRole('secondary');
    this.#site(3).setSource(1);
    this.#setSyncPair('inSync');
    this.#asyncPair = asyncPairAfter(judged.verdict);
    this.#judgement = { verdict: judged.verdict, remoteReceived: judged.remoteReceived, sourceLast: judged.sourceLast, forced: false };
    this.#dirty = true;
    this.#end();
  }

  // -------------------------------------------------------------------------------------------------------
  // Observation

  /** The abstract view the conformance harness compares with the model's (model/observation.ts). */
  observe(): Observation {
    this.#checkOpen();
    const [one, two, three] = this.#sites;
    const secondary = this.#sites[this.#secondary() - 1] as StorageSystem;
    const inSync = this.#syncPair === 'inSync' || this.#syncPair === 'reversed';
    const received = three.received;
    const restored = three.restored;
    return {
      sites: {
        1: this.#observeMember(one),
        2: this.#observeMember(two),
        3: {
          mode: three.mode,
          role: 'remote',
          lastUpdateNumber: restored,
          journal: { first: restored + 1, last: received, highWater: three.journal.highWater },
          acceptsHostWrites: false,
          fenced: false,
          changedBlocks: 0,
          volumeDigest: three.digest(),
          received,
          restored,
          source: this.#primary,
          lag: this.#site(this.#primary).last - restored,
        },
      },
      syncPair: { state: this.#syncPair, primary: this.#primary },
      asyncPair: { state: this.#asyncPair, source: this.#primary },
      standbyPair: {
        state: !inSync ? 'none' : journalCovers(secondary.journal.first, secondary.last, received) ? 'hold' : 'holdError',
        from: this.#secondary(),
      },
      cutLinks: this.transport.cutLinks(),
      ackedOnOneSite: one.ackedAlone + two.ackedAlone,
      judgement: this.#judgement === null ? null : { ...this.#judgement },
    };
  }

  /** Messages sites refused on delivery (typed errors), the most recent last. */
  get rejections(): readonly Rejection[] {
    return this.#rejections;
  }

  /**
   * The cluster's epoch (raised by one at each failover and failback): the highest of its sites', which all
   * hold it (after a crash between two of their saves, some may hold the one before).
   */
  get epoch(): number {
    return Math.max(...this.#sites.map((site) => site.epoch));
  }

  /** Host writes submitted and not yet acknowledged or failed. */
  get pendingWrites(): number {
    return this.#pending.size;
  }

  /** A site's storage system, for tests that inspect or feed one directly. */
  site(site: SiteId): StorageSystem {
    if (!isSite(site)) throw new InvalidArgumentError('site', 'site', site);
    return this.#site(site);
  }

  /**
   * Delivers raw bytes to a site as if they came from `from` (for tests that feed untrusted input): they are
   * decoded and validated, then handled; a typed refusal is thrown and nothing changes.
   */
  deliverBytes(from: SiteId, to: SiteId, bytes: Uint8Array): void {
    this.#checkOpen();
    const site = this.#site(to);
    if (!site.up) throw new SiteFailedError(to, 'deliverBytes');
    this.#emit(site.receive(from, bytes));
    this.runUntilIdle();
  }

  /** Saves every state file, makes every site durable and releases volumes and journals. */
  close(): void {
    if (this.#closed) return;
    this.#dirty = true;
    this.#save();
    for (const site of this.#sites) site.close();
    this.#closed = true;
  }

  // -------------------------------------------------------------------------------------------------------
  // Internals

  #site(site: SiteId): StorageSystem {
    return this.#sites[site - 1] as StorageSystem;
  }

  #secondary(): SyncSiteId {
    return this.#primary === 1 ? 2 : 1;
  }

  #reachable(a: SiteId, b: SiteId): boolean {
    return this.#site(a).up && this.#site(b).up && !this.transport.isCut(a, b);
  }

  #checkOpen(): void {
    assert(!this.#closed, 'cluster is open', 'call after close');
  }

  #checkRange(volume: number, offset: number, length: number): void {
    if (!Number.isInteger(volume) || volume < 0 || volume >= this.config.volumeCount) throw new NoSuchVolumeError(volume, this.config.volumeCount);
    checkRange(offset, length, this.config.volumeBytes);
  }

  #checkLink(operation: string, a: SiteId, b: SiteId): void {
    if (!isSite(a)) throw new InvalidArgumentError(operation, 'a', a);
    if (!isSite(b) || a === b) throw new InvalidArgumentError(operation, 'b', b);
  }

  #throwIf(error: RefusalError | null): void {
    if (error !== null) throw error;
  }

  #pullRefusal(): RefusalError | null {
    if (this.#asyncPair !== 'copying') return new NotAllowedError('pullJournal', `async pair is ${this.#asyncPair}`);
    if (!this.#reachable(this.#primary, 3)) return new NotAllowedError('pullJournal', 'source unreachable from site 3');
    return null;
  }

  #restoreRefusal(): RefusalError | null {
    const three = this.#site(3);
    if (!three.up) return new SiteFailedError(3, 'restoreJournal');
    if (three.journal.entries === 0) return new NotAllowedError('restoreJournal', "site 3's journal is empty");
    if (this.#asyncPair === 'fullCopy' || this.#asyncPair === 'suspendedOverflow') {
      return new NotAllowedError('restoreJournal', `async pair is ${this.#asyncPair}: a full copy replaces the journal`);
    }
    return null;
  }

  #pull(): void {
    this.#emit(this.#site(3).requestPull(this.config.pullBatchEntriesMax));
    this.transport.deliverAll();
  }

  /** Site 3 sends its received number to `source`, which judges; returns the judgement, or null without an answer. */
  #judge(source: SyncSiteId, purpose: JudgePurpose): Extract<SiteNote, { kind: 'judged' }> | null {
    const notes = this.#exchange(this.#site(3).requestJudge(source, purpose));
    for (let i = notes.length - 1; i >= 0; i -= 1) {
      const note = notes[i] as SiteNote;
      if (note.kind === 'judged' && note.purpose === purpose) return note;
    }
    return null;
  }

  /** Sends a command's output, runs the transport until idle, and returns the notes that came of it. */
  #exchange(out: SiteOutput): SiteNote[] {
    const mark = this.#notes.length;
    this.#emit(out);
    this.transport.deliverAll();
    return this.#notes.splice(mark);
  }

  #receive(envelope: Envelope<Message>): void {
    const site = this.#site(envelope.to);
    if (!site.up) return;
    this.#emit(site.learnEpoch(envelope.message.epoch));
    let out: SiteOutput;
    try {
      out = site.handle(envelope);
    } catch (error) {
      if (!(error instanceof RefusalError)) throw error;
      if (this.#rejections.length >= rejectionsKeptMax) this.#rejections.shift();
      this.#rejections.push({ from: envelope.from, to: envelope.to, kind: envelope.message.kind, error });
      // The sender of a stale message is told the current epoch (a sender that was a primary steps down).
      if (error instanceof StaleEpochError) this.#emit(site.epochNotice(envelope.from));
      return;
    }
    this.#emit(out);
  }

  /** A promotion (failover, failback): every site takes the cluster's next epoch. */
  #raiseEpoch(): void {
    const epoch = Math.max(...this.#sites.map((site) => site.epoch)) + 1;
    for (const site of this.#sites) site.setEpoch(epoch);
  }


  #emit(out: SiteOutput): void {
    const { send, notes } = out;
    for (let i = 0; i < send.length; i += 1) this.transport.send(send[i] as Envelope<Message>);
    for (let i = 0; i < notes.length; i += 1) this.#onNote(notes[i] as SiteNote);
  }

  #onNote(note: SiteNote): void {
    switch (note.kind) {
      case 'hostWriteAcked': {
        const handle = this.#pending.get(note.writeId);
        assert(handle !== undefined, 'P1 every acknowledgement answers a submitted write', () => `write ${note.writeId}`);
        this.#pending.delete(note.writeId);
        handle.acknowledge(note.updateNumber, note.alone);
        return;
      }
      case 'hostWriteFailed': {
        const handle = this.#pending.get(note.writeId);
        assert(handle !== undefined, 'every failure answers a submitted write', () => `write ${note.writeId}`);
        this.#pending.delete(note.writeId);
        handle.fail(note.error);
        return;
      }
      case 'journalOverflow':
        // P7: the source journal lost entries site 3 may still need; the async pair says so.
        if (note.site === this.#primary && (this.#asyncPair === 'copying' || this.#asyncPair === 'deltaResync' || this.#asyncPair === 'suspended')) {
          this.#asyncPair = 'suspendedOverflow';
          this.#dirty = true;
        }
        return;
      default:
        this.#notes.push(note);
    }
  }

  #setSyncPair(state: SyncPairState): void {
    if (this.#syncPair !== state) {
      this.#syncPair = state;
      this.#dirty = true;
    }
    this.#emit(this.#site(1).setSyncPair(state));
    this.#emit(this.#site(2).setSyncPair(state));
  }

  #begin(): void {
    this.#checkOpen();
    this.#notes = [];
  }

  #end(): void {
    this.#settle();
    this.#save();
  }

  /** Rules R1 and R2 and the derived modes (model/README.md "Failures, returns and link cuts: two rules"). */
  #settle(): void {
    const primary = this.#primary;
    const secondary = this.#secondary();
    const linked = this.#reachable(primary, secondary);

    // R1: the sync pair follows reachability of the secondary.
    // A pair whose secondary is unreachable is suspended; a suspended pair whose secondary is back waits for
    // its resync. Both members are told every time (setSyncPair changes nothing when they already agree, and
    // brings back a member whose state file was saved after the controller's, as after a crash between them).
    let sync = this.#syncPair;
    if (!linked) sync = 'suspended';
    else if (sync === 'suspended') sync = 'resyncing';
    this.#setSyncPair(sync);
    for (const site of [1, 2] as const) this.#site(site).setMode(this.#syncMemberMode(site));

    // R2: the async pair follows reachability of source and site 3; reattaching runs the judge.
    const attached = this.#reachable(primary, 3);
    if ((this.#asyncPair === 'copying' || this.#asyncPair === 'deltaResync') && !attached) {
      this.#asyncPair = 'suspended';
      this.#dirty = true;
    } else if (this.#asyncPair === 'suspended' && attached) {
      const judged = this.#judge(primary, 'reattach');
      if (judged !== null) {
        this.#asyncPair = judged.verdict === 'noUpdateRequired' || judged.verdict === 'deltaResync' ? 'copying' : 'fullCopy';
        this.#judgement = { verdict: judged.verdict, remoteReceived: judged.remoteReceived, sourceLast: judged.sourceLast, forced: false };
        for (const site of [this.#site(1), this.#site(2)]) site.setTakeover(null);
        this.#dirty = true;
      }
    }
    const three = this.#site(3);
    three.setMode(!three.up ? 'failed' : this.#asyncPair === 'deltaResync' || this.#asyncPair === 'fullCopy' ? 'resyncing' : 'normal');
  }

  #syncMemberMode(site: SyncSiteId): SiteMode {
    const member = this.#site(site);
    return syncMemberMode(member.up, site === this.#primary, this.#syncPair, member.mode);
  }


  #observeMember(site: StorageSystem): SiteObservation {
    const id = site.id as SyncSiteId;
    const reason = site.writeRefusal();
    return {
      mode: site.mode,
      role: this.#primary === id ? 'primary' : 'secondary',
      lastUpdateNumber: site.last,
      journal: { first: site.journal.first, last: site.journal.last, highWater: site.journal.highWater },
      acceptsHostWrites: reason === null || reason === 'inFlightWritesMax',
      fenced: site.fenced,
      changedBlocks: site.changed.count,
      volumeDigest: site.digest(),
    };
  }

  #save(): void {
    if (this.config.storage.kind !== 'file') {
      this.#dirty = false;
      return;
    }
    for (const site of this.#sites) site.saveIfDirty();
    if (!this.#dirty) return;
    this.#dirty = false;
    const state: ClusterDurableState = {
      primary: this.#primary,
      syncPair: this.#syncPair,
      asyncPair: this.#asyncPair,
      judgement: this.#judgement,
      cutLinks: this.transport.cutLinks(),
      now: this.transport.now,
    };
    writeStateFile(path.join(this.config.storage.dir, 'cluster.json'), clusterStateFormat, state);
  }
}
