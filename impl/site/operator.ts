/**
 * The operator of a deployment of site processes: the commands that need more than one site (status,
 * failover, failback, recovery, resync), composed of the single-site steps each site carries out and checks
 * itself (`site-node.ts`), reached through a {@link SiteClient} per site (the control port,
 * `site-control.ts`, which lists the steps of each command, or a node in the same process in tests). It
 * plays the part the in-process cluster's controller plays (`cluster.ts`), with the same refusals in the
 * same order.
 *
 * **Who decides that site 1 is down.** Not the operator alone: its own failure to reach site 1's control
 * port (a busy port, a cut between the operator and site 1) says nothing about whether site 1 still serves
 * host 1. A failover goes ahead when site 1 itself answers that it takes no host writes (failed or fenced),
 * or, when site 1 does not answer, when site 2 and site 3 both report their links to site 1 down (their own
 * `connected` lists); otherwise it is refused with {@link SiteOneStillSeenError}, naming the sites that
 * still see site 1 or could not be asked. `--force` takes the operator's word for it (site 1 is known to be
 * powered off), and site 2 still refuses the primary role while it is connected to an unfenced primary.
 * The in-process model (model/semantics.ts FAILOVER: site 1 failed or fenced) is the same rule: there a
 * failed site reaches no one, so "both its peers see it down" is what "failed" means between processes.
 *
 * The order of the steps keeps P4 (at most one site accepts host writes) at every moment: a failover
 * requires site 1 failed or fenced before site 2 becomes primary; a failback demotes site 2 (refused while
 * host 2 has writes in flight) before site 1 is promoted.  Each promotion carries the next epoch (the highest any
 * reachable site reports, plus one) to the sites it reaches; a site it could not reach learns it from its
 * peers, or at its `recover`, and a primary among them that missed its demotion is deposed (site-node.ts).
 */

import type { AsyncPairState, Judgement, SiteId, StandbyPairState, SyncPairState, SyncSiteId } from '../../model/observation.ts';
import { NotAllowedError, RefusalError, RemoteAheadError, SiteFailedError } from '../core/errors.ts';
import { asyncPairAfter, journalCovers } from '../core/judge.ts';
import type { JudgePurpose } from '../core/messages.ts';
import type { JudgedVerdict, SiteStatus } from './site-node.ts';
import { epochInitial } from '../core/storage-system.ts';
import { verifyDeadlineMsDefault, type VerifyResult } from '../core/verify.ts';

/** One site as the operator reaches it. Every method rejects with the site's typed refusal. */
export interface SiteClient {
  status(digest: boolean): Promise<SiteStatus>;
  fail(): Promise<void>;
  /** `epoch`: the cluster's current epoch, which a site that was down may have missed. */
  recover(primary: SyncSiteId, epoch: number): Promise<void>;
  fence(): Promise<void>;
  cutLink(peer: SiteId): Promise<void>;
  restoreLink(peer: SiteId): Promise<void>;
  /** `epoch`: the next epoch at a promotion (failover, failback), the current one otherwise. */
  setRole(role: 'primary' | 'secondary', syncPair: SyncPairState, takeover: boolean, epoch: number): Promise<void>;
  judge(to: SyncSiteId, purpose: JudgePurpose): Promise<JudgedVerdict>;
  attach(source: SyncSiteId, asyncPair: AsyncPairState, judgement: Judgement | null, epoch: number): Promise<void>;
  recordJudgement(judgement: Judgement): Promise<void>;
  /** Site 3 pulls once from its source now (PULL_JOURNAL); resolves when the answer has been handled. */
  pullNow(): Promise<void>;
  /** Site 3 restores its journal now (RESTORE_JOURNAL). */
  restoreNow(): Promise<void>;
  deltaResync(): Promise<'copying' | 'fullCopy'>;
  fullCopy(): Promise<void>;
  resync(): Promise<void>;
  /** Online verify at the primary (`volumes` null: all); resolves with its result (site-verify.ts). */
  verify(volumes: number[] | null, deadlineMs: number, startedAtMs: number): Promise<VerifyResult>;
  /** Site 3 needs a full copy: a verify found blocks of it that differ. */
  requireFullCopy(verifyId: number): Promise<void>;
}

/**
 * A failover refused because site 1 may still serve host 1: it did not answer the operator, and a witness
 * (site 2 or site 3) still sees it or could not be asked. `--force` overrides it.
 * @see P4
 */
export class SiteOneStillSeenError extends NotAllowedError {
  constructor(
    /** Sites whose own status lists site 1 among their connected peers. */
    readonly seenBy: SiteId[],
    /** Witnesses that could not tell: unreachable, or failed (a failed site is off the network and sees no one). */
    readonly notAsked: SiteId[],
    /** Why the operator could not reach site 1. */
    readonly unreachable: string,
  ) {
    const parts = [
      ...(seenBy.length > 0 ? [`site ${seenBy.join(' and site ')} still ${seenBy.length > 1 ? 'see' : 'sees'} site 1`] : []),
      ...(notAsked.length > 0 ? [`site ${notAsked.join(' and site ')} cannot tell (unreachable or failed)`] : []),
    ];
    super('failover', `site 1 does not answer the operator (${unreachable}) but ${parts.join(', and ')}: fail or fence site 1, or --force if it is known to be down (P4)`);
    this.name = 'SiteOneStillSeenError';
  }
}

/** A site the operator could not reach: to the operator it is unknown, not failed (see the file comment). */
export class SiteUnreachableError extends Error {
  constructor(
    readonly site: SiteId,
    readonly reason: string,
  ) {
    super(`site ${site} is unreachable: ${reason}`);
    this.name = 'SiteUnreachableError';
  }
}

/** What `threesite status` shows: each site's report (null: unreachable) and the pairs derived from them. */
export interface DeploymentStatus {
  sites: { 1: SiteStatus | null; 2: SiteStatus | null; 3: SiteStatus | null };
  /** Why an unreachable site could not be reached. */
  unreachable: Partial<Record<SiteId, string>>;
  /** The sync member that is primary (the one whose role says so; site 2 when both are unreachable after a failover). */
  primary: SyncSiteId;
  syncPair: SyncPairState;
  /**
   * The async pair from the primary to site 3, as the two ends together show it: site 3's own state, except
   * `suspended` while site 3 is attached to another source (it was down at a failover or failback), and
   * `suspendedOverflow` once the primary reports its journal overflowed (site 3 learns that only at its next
   * pull or reattach). Null when site 3 is unreachable.
   */
  asyncPair: AsyncPairState | null;
  standbyPair: StandbyPairState;
  judgement: Judgement | null;
  /** Site 3's lag: the primary's last update number minus site 3's restored number (null if either is unknown). */
  lag: number | null;
  /** Writes acknowledged on one sync member alone (P1 exposure). */
  ackedOnOneSite: number;
  /**
   * The cluster's epoch as far as the operator sees it: the highest any reachable site reports. A promotion
   * gives the sites this plus one; a site that was down is told it when it recovers.
   */
  epoch: number;
}

/** Which site is primary: the reachable sync member that says it is; else the other one's view. */
function primaryOf(one: SiteStatus | null, two: SiteStatus | null): SyncSiteId {
  if (two?.role === 'primary') return 2;
  if (one?.role === 'primary') return 1;
  if (two?.role === 'secondary') return 1;
  if (one?.role === 'secondary') return 2;
  return 1;
}

/**
 * The async pair as both ends show it (see {@link DeploymentStatus.asyncPair}): the primary's overflow (P7)
 * suspends it at once, as in one process, though site 3 learns of it only when it next asks its source.
 */
function asyncPairOf(primary: SyncSiteId, primaryStatus: SiteStatus | null, three: SiteStatus | null): AsyncPairState | null {
  const remote = three?.remote;
  if (remote === null || remote === undefined) return null;
  const own = remote.source === primary ? remote.asyncPair : 'suspended';
  const overflowed = primaryStatus?.sourceOverflow === true;
  return overflowed && (own === 'copying' || own === 'deltaResync' || own === 'suspended') ? 'suspendedOverflow' : own;
}

/**
 * A sync member's role in the deployment: its own while it is up; a failed member keeps the role it had, so
 * the deployment's roles are those of the reachable primary (as the in-process cluster's controller holds
 * them), and a recovered member takes its role then.
 */
export function memberRoleOf(status: DeploymentStatus, id: SyncSiteId): 'primary' | 'secondary' {
  const own = status.sites[id];
  if (own !== null && own.up) return own.role as 'primary' | 'secondary';
  return id === status.primary ? 'primary' : 'secondary';
}

/**
 * Site 3's mode as the deployment shows it: it follows the async pair (model/README.md "Modes"); where the
 * deployment's pair is not site 3's own (site 3 has yet to learn of its source's overflow, or of a new
 * source), it follows the former.
 */
export function remoteModeOf(status: DeploymentStatus): SiteStatus['mode'] | null {
  const three = status.sites[3];
  if (three === null || three.remote === null) return null;
  const asyncPair = status.asyncPair ?? three.remote.asyncPair;
  if (asyncPair === three.remote.asyncPair || !three.up) return three.mode;
  return asyncPair === 'deltaResync' || asyncPair === 'fullCopy' ? 'resyncing' : 'normal';
}

/** The deployment's operator. */
export class Operator {
  #committedAt: number | null = null;

  /**
   * `clock`: the time the operator's trace uses (impl/cluster/trace.ts `traceTime`), read when a failover, failback
   * or recovery takes effect (see {@link takeCommittedAt}); the operator reads no clock otherwise.
   */
  constructor(
    readonly clients: { 1: SiteClient; 2: SiteClient; 3: SiteClient },
    readonly clock: () => number = () => 0,
  ) {}

  /**
   * When the last failover, failback or recovery took effect: the instant before it promoted the new primary
   * (or told the site it is up), after which host writes may be acknowledged there and site 3 may pull from
   * it (or restore). The operator's trace records the event at that instant (impl/site/operator-trace.ts).
   * Cleared when read.
   */
  takeCommittedAt(): number | undefined {
    const at = this.#committedAt;
    this.#committedAt = null;
    return at ?? undefined;
  }

  /** Every site's report and the derived pairs (`digest`: each site hashes its volumes). */
  async status(digest = false): Promise<DeploymentStatus> {
    const unreachable: Partial<Record<SiteId, string>> = {};
    const read = async (site: SiteId): Promise<SiteStatus | null> => {
      try {
        return await this.clients[site].status(digest);
      } catch (error) {
        if (!(error instanceof SiteUnreachableError)) throw error;
        unreachable[site] = error.reason;
        return null;
      }
    };
    const [one, two, three] = await Promise.all([read(1), read(2), read(3)]);
    const primary = primaryOf(one, two);
    const primaryStatus = primary === 1 ? one : two;
    const secondaryStatus = primary === 1 ? two : one;
    const syncPair: SyncPairState = primaryStatus?.up ? (primaryStatus.syncPair as SyncPairState) : 'suspended';
    const inSync = syncPair === 'inSync' || syncPair === 'reversed';
    const received = three?.remote?.received ?? null;
    let standbyPair: StandbyPairState = 'none';
    if (inSync && secondaryStatus !== null && received !== null) {
      const journal = secondaryStatus.journal;
      standbyPair = journalCovers(journal.first, journal.last, received) ? 'hold' : 'holdError';
    }
    const restored = three?.remote?.restored ?? null;
    return {
      sites: { 1: one, 2: two, 3: three },
      unreachable,
      primary,
      syncPair,
      asyncPair: asyncPairOf(primary, primaryStatus, three),
      standbyPair,
      judgement: three?.remote?.judgement ?? null,
      lag: primaryStatus !== null && restored !== null ? primaryStatus.lastUpdateNumber - restored : null,
      ackedOnOneSite: (one?.ackedAlone ?? 0) + (two?.ackedAlone ?? 0),
      epoch: Math.max(one?.epoch ?? epochInitial, two?.epoch ?? epochInitial, three?.epoch ?? epochInitial),
    };
  }

  /** FAIL_SITE: the site stops serving (its process stays, its storage survives). */
  async fail(site: SiteId): Promise<void> {
    await this.clients[site].fail();
  }

  /**
   * RECOVER_SITE: the site is up again, told which sync member is primary now. It takes effect when the site
   * comes up, and the site acts at once (site 3 restores what it holds, pulls): the instant before the site
   * is told is kept for the trace ({@link takeCommittedAt}), as a promotion's is.
   */
  async recover(site: SiteId): Promise<void> {
    const status = await this.status();
    this.#committedAt = this.clock();
    try {
      await this.clients[site].recover(status.primary, status.epoch);
    } catch (error) {
      this.#committedAt = null;
      throw error;
    }
  }

  /**
   * CUT_LINK / RESTORE_LINK between sites `a` and `b`, at both ends. An end that cannot be reached is
   * skipped (its connection goes down with the other end's), and so is an end already in the asked state
   * (a restarted site does not remember a cut); refused with {@link LinkStateError} only when no end changed.
   */
  async setLinkCut(a: SiteId, b: SiteId, cut: boolean): Promise<void> {
    if (a === b) throw new NotAllowedError(cut ? 'cutLink' : 'restoreLink', 'a link joins two different sites');
    let changed = 0;
    let sameState: RefusalError | null = null;
    let unreachable: SiteUnreachableError | null = null;
    // A restored link is dialled by its lower-id end at once: its higher-id end (which accepts) goes first.
    const [low, high] = a < b ? [a, b] : [b, a];
    const ends: [SiteId, SiteId][] = cut ? [[low, high], [high, low]] : [[high, low], [low, high]];
    for (const [self, peer] of ends) {
      try {
        await (cut ? this.clients[self].cutLink(peer) : this.clients[self].restoreLink(peer));
        changed += 1;
      } catch (error) {
        if (error instanceof SiteUnreachableError) unreachable = error;
        else if (error instanceof RefusalError && error.code === 'LinkState') sameState = error;
        else throw error;
      }
    }
    if (changed > 0) return;
    throw sameState ?? unreachable ?? new SiteUnreachableError(a, 'no answer');
  }

  /** FENCE_SITE: site 1 accepts no more host writes (P4). */
  async fence(site: SiteId): Promise<void> {
    if (site !== 1) throw new NotAllowedError('fenceSite', 'only site 1 can be fenced');
    await this.clients[1].fence();
  }

  /**
   * FAILOVER: host 2 takes over at site 2 (claims 16-21, 25-29). Refused unless site 2 is up, secondary and
   * normal, site 1 is failed or fenced with no writes in flight (P4: by its own answer, or, when it does not
   * answer, by sites 2 and 3 both seeing their links to it down, {@link SiteOneStillSeenError}; `force`
   * takes the operator's word). Site 3 sends site 2 its received number and site 2 judges (claim 18); a
   * `remoteAhead` verdict refuses the failover with {@link RemoteAheadError} unless `force`. Site 3 down, or
   * up behind a cut link 2-3, cannot be asked: site 2 keeps its takeover point and judges site 3 when they
   * reach each other again (R2); an up site 3 is told its new source at once, so it pulls no more from site 1.
   */
  async failover(force: boolean): Promise<Judgement | null> {
    const status = await this.status();
    const [one, two, three] = [status.sites[1], status.sites[2], status.sites[3]];
    if (two === null || !two.up) throw new SiteFailedError(2, 'failover');
    if (status.primary !== 1) throw new NotAllowedError('failover', 'site 2 is already the primary');
    if (two.mode !== 'normal') throw new NotAllowedError('failover', `site 2 is ${two.mode}, not normal`);
    if (one !== null && one.up && !one.fenced) throw new NotAllowedError('failover', 'site 1 is neither failed nor fenced (P4)');
    if (one === null && !force) {
      // Site 1 did not answer: its peers are the witnesses (see the file comment).
      const seenBy = ([2, 3] as const).filter((id) => status.sites[id]?.up === true && status.sites[id]?.connected.includes(1));
      const notAsked = ([2, 3] as const).filter((id) => status.sites[id] === null || status.sites[id]?.up !== true);
      if (seenBy.length > 0 || notAsked.length > 0) throw new SiteOneStillSeenError(seenBy, notAsked, status.unreachable[1] ?? 'no answer');
    }
    if (one !== null && one.up && one.inFlightWrites > 0) throw new NotAllowedError('failover', 'site 1 has host writes in flight');
    const threeUp = three !== null && three.up;
    // Site 3 behind a cut link 2-3 looks to site 2 like a failed site 3 (DESIGN.md): judged when they meet again.
    const judgeable = threeUp && three.connected.includes(2);
    let judgement: Judgement | null = null;
    if (judgeable) {
      const judged = await this.clients[3].judge(2, 'failover');
      if (judged.verdict === 'remoteAhead' && !force) {
        await this.clients[3].recordJudgement({ ...judged, forced: false });
        throw new RemoteAheadError(judged.remoteReceived, judged.sourceLast);
      }
      judgement = { ...judged, forced: judged.verdict === 'remoteAhead' };
    }
    // Site 2 first: site 1 is failed or fenced, so no moment has two writers (P4). The promotion raises the
    // epoch: a site 1 that missed it (stopped, cut off) can get no write acknowledged by a site that has it.
    const epoch = status.epoch + 1;
    this.#committedAt = this.clock();
    await this.clients[2].setRole('primary', 'suspended', !judgeable, epoch);
    if (one !== null && one.up) await this.clients[1].setRole('secondary', 'suspended', false, epoch);
    if (judgeable && judgement !== null) {
      await this.clients[3].attach(2, asyncPairAfter(judgement.verdict), judgement, epoch);
    } else if (threeUp) {
      // Site 3 stops pulling from site 1 and waits for site 2's judgement on reattach (R2).
      await this.clients[3].attach(2, 'suspended', null, epoch);
    }
    return judgement;
  }

  /**
   * PULL_JOURNAL: site 3 pulls once from its source (what its pull timer does at each interval). Refused
   * ({@link NotAllowedError}) unless the async pair is copying and the source reachable from site 3.
   * @see claims 7, 8, 9, 11, 22, 23, 24, 36, 37, 38
   */
  async pullJournal(): Promise<void> {
    const status = await this.status();
    if (status.asyncPair !== null && status.asyncPair !== 'copying') throw new NotAllowedError('pullJournal', `async pair is ${status.asyncPair}`);
    await this.clients[3].pullNow();
  }

  /**
   * RESTORE_JOURNAL: site 3 restores its journal now (what its restore timer does at each interval). Refused
   * when site 3 is failed ({@link SiteFailedError}), its journal is empty or the async pair waits for a full
   * copy ({@link NotAllowedError}).
   * @see claims 8, 14, 40
   */
  async restoreJournal(): Promise<void> {
    const status = await this.status();
    const three = status.sites[3];
    const pair = status.asyncPair;
    if (three !== null && three.up && three.journal.entries > 0 && (pair === 'fullCopy' || pair === 'suspendedOverflow')) {
      throw new NotAllowedError('restoreJournal', `async pair is ${pair}: a full copy replaces the journal`);
    }
    await this.clients[3].restoreNow();
  }

  /** DELTA_RESYNC at site 3 (claims 19, 20); resolves with the async pair's new state. */
  async deltaResync(): Promise<'copying' | 'fullCopy'> {
    const status = await this.status();
    if (status.asyncPair !== null && status.asyncPair !== 'deltaResync') throw new NotAllowedError('deltaResync', `async pair is ${status.asyncPair}`);
    return this.clients[3].deltaResync();
  }

  /**
   * FULL_COPY from the source to site 3. Refused unless the async pair is fullCopy or suspended by overflow
   * and the source reachable from site 3; a site 3 that has not yet learnt of its source's overflow is told
   * first.
   */
  async fullCopy(): Promise<void> {
    const status = await this.status();
    const three = status.sites[3];
    const pair = status.asyncPair;
    if (pair !== null && pair !== 'fullCopy' && pair !== 'suspendedOverflow') throw new NotAllowedError('fullCopy', `async pair is ${pair}`);
    const own = three?.remote?.asyncPair;
    if (pair === 'suspendedOverflow' && own !== 'fullCopy' && own !== 'suspendedOverflow' && three !== null) {
      if (!three.up || !three.connected.includes(status.primary)) throw new NotAllowedError('fullCopy', 'source unreachable from site 3');
      await this.clients[3].attach(status.primary, 'suspendedOverflow', status.judgement, status.epoch);
    }
    await this.clients[3].fullCopy();
  }

  /**
   * RESYNC_SITE: the returning sync secondary is resynced from the primary (claims 29-31). A secondary in
   * sync whose primary holds changed blocks (an online verify found them different, {@link verify}) is
   * resynced too: the pair is suspended at the primary, then at the secondary (each keeps its role; the
   * link is up, so rule R1 makes the pair resyncing at once), and the resync copies every block of both
   * changed-block records. While it runs the primary follows its fence policy, as after any suspension.
   * Site 3: the full copy it needs ({@link fullCopy}), after a verify found its blocks different.
   */
  async resync(site: SiteId): Promise<void> {
    if (site === 3) {
      await this.fullCopy();
      return;
    }
    const status = await this.status();
    if (site === status.primary) throw new NotAllowedError('resyncSite', `site ${site} is not the sync secondary`);
    const primary = status.sites[status.primary];
    const secondary = status.sites[site];
    const inSync = status.syncPair === 'inSync' || status.syncPair === 'reversed';
    if (inSync && primary !== null && primary.changedBlocks > 0 && secondary !== null && secondary.up && secondary.mode !== 'resyncing') {
      await this.clients[status.primary].setRole('primary', 'suspended', false, status.epoch);
      await this.clients[site].setRole('secondary', 'suspended', false, status.epoch);
    }
    await this.clients[site].resync();
  }

  /**
   * Online verify (`threesite verify`; core/verify.ts, site/site-verify.ts): the primary compares its
   * volumes (`volumes`, or all) block by block with its secondary's and site 3's, each chunk at one update
   * number while host writes go on, and waits for every answer up to `deadlineMs`. Differing blocks of the
   * secondary are recorded in the primary's changed-block record (`resync --site N` copies them); if site 3
   * differs, it is told it needs a full copy (`resync --site 3`); if site 3 refuses that step (it is busy,
   * failed or unreachable now), `site3Refused` says why and the result stands. Refused when the primary is
   * unreachable, failed, or already verifying.
   */
  async verify(
    options: { volumes?: number[] | null; deadlineMs?: number; startedAtMs?: number } = {},
  ): Promise<{ result: VerifyResult; site3NeedsFullCopy: boolean; site3Refused: string | null }> {
    const status = await this.status();
    const primary = status.sites[status.primary];
    if (primary === null) throw new SiteUnreachableError(status.primary, status.unreachable[status.primary] ?? 'no answer');
    const startedAtMs = Math.floor(options.startedAtMs ?? this.clock());
    const result = await this.clients[status.primary].verify(options.volumes ?? null, options.deadlineMs ?? verifyDeadlineMsDefault, startedAtMs);
    const three = result.sites[1];
    let site3NeedsFullCopy = false;
    let site3Refused: string | null = null;
    if (three.blocksDiffering > 0) {
      try {
        await this.clients[3].requireFullCopy(result.verifyId);
        site3NeedsFullCopy = true;
      } catch (error) {
        if (!(error instanceof RefusalError) && !(error instanceof SiteUnreachableError)) throw error;
        site3Refused = error.message;
      }
    }
    return { result, site3NeedsFullCopy, site3Refused };
  }

  /**
   * FAILBACK: the planned return to site 1 as primary with no data loss. Refused unless every site is up,
   * the sync pair reversed, the async pair copying and every link up; site 2 is demoted first (refused while
   * host 2 has writes in flight: quiesce first), site 3 is judged by site 1 (whose journal holds site 2's
   * update numbers, claim 31), then site 1 is primary and the pair in sync.
   */
  async failback(): Promise<Judgement> {
    const status = await this.status();
    // The conditions in the model's order: the pair first, then every site up, every link, the async pair.
    if (status.syncPair !== 'reversed') throw new NotAllowedError('failback', `sync pair is ${status.syncPair}, not reversed`);
    for (const site of [1, 2, 3] as const) {
      const report = status.sites[site];
      if (report === null || !report.up) throw new SiteFailedError(site, 'failback');
    }
    const [one, two, three] = [status.sites[1], status.sites[2], status.sites[3]] as [SiteStatus, SiteStatus, SiteStatus];
    if (one.connected.length < 2 || two.connected.length < 2 || three.connected.length < 2) throw new NotAllowedError('failback', 'every link must be up');
    if (status.asyncPair !== 'copying') throw new NotAllowedError('failback', `async pair is ${status.asyncPair}`);
    await this.clients[2].setRole('secondary', 'reversed', false, status.epoch);
    let judged: JudgedVerdict;
    try {
      judged = await this.clients[3].judge(1, 'failback');
    } catch (error) {
      if (!(error instanceof RefusalError)) throw error;
      await this.clients[2].setRole('primary', 'reversed', false, status.epoch);
      throw error;
    }
    // The promotion of site 1 raises the epoch (site 2 was demoted first: no moment has two writers).
    const epoch = status.epoch + 1;
    this.#committedAt = this.clock();
    await this.clients[1].setRole('primary', 'inSync', false, epoch);
    await this.clients[2].setRole('secondary', 'inSync', false, epoch);
    const judgement: Judgement = { ...judged, forced: false };
    await this.clients[3].attach(1, asyncPairAfter(judged.verdict), judgement, epoch);
    return judgement;
  }
}

/**
 * Online verify of a deployment, for a caller that holds an {@link Operator} (the nemesis run, a test):
 * runs {@link Operator.verify} and returns every differing block it lists, by site, volume and byte offset,
 * with the result (its `outcome`: `equal`, `differ`, or `notVerified` when a site's blocks could not all be
 * compared). The repair it starts is the operator's: the secondary's blocks are in the primary's
 * changed-block record, site 3 needs a full copy; `resync` repairs both.
 */
export async function verifyDeployment(
  operator: Operator,
  options: { volumes?: number[] | null; deadlineMs?: number; startedAtMs?: number } = {},
): Promise<{ result: VerifyResult; differing: { site: SiteId; volume: number; offset: number }[]; site3NeedsFullCopy: boolean; site3Refused: string | null }> {
  const { result, site3NeedsFullCopy, site3Refused } = await operator.verify(options);
  const differing = result.sites.flatMap((site) => site.differing.map((block) => ({ site: site.site, ...block })));
  return { result, differing, site3NeedsFullCopy, site3Refused };
}
