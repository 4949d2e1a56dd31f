/**
 * The semantics of every event, as pure functions of the abstract state: whether the event is accepted
 * (or the refusal the implementation must give) and the state after it. The statechart's guards and actions
 * call these, so the chart and the prose of `model/README.md` cannot drift apart: this file is that prose
 * in code. Nothing here touches xstate.
 */
import type { JudgeVerdict, SiteMode, SyncSiteId } from './observation.ts';
import { hostWriteRange, type HostWriteEvent, type ModelEvent } from './events.ts';
import {
  blockKeysOf,
  covers,
  entryRange,
  journalEntries,
  judge,
  lastOf,
  linkBetween,
  reachable,
  receivedOf,
  secondaryOf,
  type Entry,
  type ModelContext,
  type SyncMemberState,
} from './state.ts';

/** The refusal codes; the implementation's typed errors carry the same `code`. */
export type RefusalCode =
  | 'NotWritable'
  | 'OutOfRange'
  | 'SiteFailed'
  | 'SiteUp'
  | 'LinkState'
  | 'NotAllowed';

/** Why an event is refused: the code and the condition that failed. */
export interface Refusal {
  code: RefusalCode;
  reason: string;
}

const refuse = (code: RefusalCode, reason: string): Refusal => ({ code, reason });

/**
 * One condition an event must meet to be accepted: its id (`EVENT.condition`), the refusal code the
 * implementation must give when it fails, whether it holds, and the reason said when it does not. The
 * conditions of an event are checked in the order of {@link refusalConditions}: the first that fails is the
 * refusal. Each is written to fail on its own cause only where it can (a failed site 2 fails
 * `FAILOVER.site2Up`, not also `FAILOVER.site2NotStale`), so that the conformance run can reach, for each,
 * a state where it alone refuses the event (the `refusals` coverage dimension).
 */
export interface RefusalCondition {
  readonly id: string;
  readonly code: RefusalCode;
  holds(context: ModelContext, event: ModelEvent): boolean;
  reason(context: ModelContext, event: ModelEvent): string;
}

type Of<T extends ModelEvent['type']> = Extract<ModelEvent, { type: T }>;

function condition<T extends ModelEvent['type']>(
  type: T,
  name: string,
  code: RefusalCode,
  holds: (context: ModelContext, event: Of<T>) => boolean,
  reason: (context: ModelContext, event: Of<T>) => string,
): RefusalCondition {
  return {
    id: `${type}.${name}`,
    code,
    holds: (context, event) => holds(context, event as Of<T>),
    reason: (context, event) => reason(context, event as Of<T>),
  };
}

const hostAlone = (context: ModelContext): boolean => context.syncPair === 'suspended' || context.syncPair === 'resyncing';

/** Every refusal condition of every event, in the order {@link check} tries them (`model/README.md`, "Events"). */
export const refusalConditions: { readonly [T in ModelEvent['type']]: readonly RefusalCondition[] } = {
  HOST_WRITE: [
    condition('HOST_WRITE', 'volumeExists', 'OutOfRange', (c, e) => e.volume >= 0 && e.volume < c.params.volumeCount, (_c, e) => `volume ${e.volume} does not exist`),
    condition('HOST_WRITE', 'blockInVolume', 'OutOfRange', (c, e) => e.block >= 0 && e.block < c.params.blocksPerVolume, (_c, e) => `block ${e.block} is outside the volume`),
    // A write of no byte would take an update number and a journal slot for nothing: refused, like a range
    // outside the volume (the implementation's OutOfRangeError, reason `empty`).
    condition('HOST_WRITE', 'rangeNotEmpty', 'OutOfRange', (_c, e) => e.length === undefined || e.length >= 1, (_c, e) => `the write of block ${e.block} names no byte (length ${e.length})`),
    condition(
      'HOST_WRITE',
      'rangeEndsInVolume',
      'OutOfRange',
      (c, e) => {
        const { offset, length } = hostWriteRange(e, c.params.blockBytes);
        return (e.start ?? 0) >= 0 && offset + length <= Math.max(c.params.blocksPerVolume, e.block + 1) * c.params.blockBytes;
      },
      (_c, e) => `the write of ${e.length ?? 'a block'} bytes from byte ${e.start ?? 0} of block ${e.block} runs past the volume's end`,
    ),
    condition('HOST_WRITE', 'siteUp', 'NotWritable', (c, e) => c.sites[e.host].up, (_c, e) => `site ${e.host} is failed`),
    condition('HOST_WRITE', 'sitePrimary', 'NotWritable', (c, e) => c.primary === e.host, (_c, e) => `site ${e.host} is not the primary`),
    condition('HOST_WRITE', 'siteNotFenced', 'NotWritable', (c, e) => !c.sites[e.host].fenced, (_c, e) => `site ${e.host} is fenced`),
    condition(
      'HOST_WRITE',
      'fencePolicy',
      'NotWritable',
      (c, e) => !(e.host === 1 && hostAlone(c) && c.params.fencePolicy === 'refuse'),
      () => 'fence policy refuse: site 1 acknowledges nothing that is not on two sites',
    ),
  ],
  PULL_JOURNAL: [
    condition('PULL_JOURNAL', 'asyncCopying', 'NotAllowed', (c) => c.asyncPair === 'copying', (c) => `async pair is ${c.asyncPair}`),
    condition('PULL_JOURNAL', 'sourceReachable', 'NotAllowed', (c) => reachable(c, c.primary, 3), () => 'source unreachable from site 3'),
  ],
  RESTORE_JOURNAL: [
    condition('RESTORE_JOURNAL', 'site3Up', 'SiteFailed', (c) => c.sites[3].up, () => 'site 3 is failed'),
    condition('RESTORE_JOURNAL', 'journalNotEmpty', 'NotAllowed', (c) => c.sites[3].pending.length > 0, () => "site 3's journal is empty"),
    condition(
      'RESTORE_JOURNAL',
      'noCopyAwaited',
      'NotAllowed',
      (c) => c.asyncPair !== 'fullCopy' && c.asyncPair !== 'suspendedOverflow',
      (c) => `async pair is ${c.asyncPair}: a full copy replaces the journal`,
    ),
  ],
  FAIL_SITE: [condition('FAIL_SITE', 'siteUp', 'SiteFailed', (c, e) => c.sites[e.site].up, (_c, e) => `site ${e.site} is already failed`)],
  RECOVER_SITE: [condition('RECOVER_SITE', 'siteFailed', 'SiteUp', (c, e) => !c.sites[e.site].up, (_c, e) => `site ${e.site} is up`)],
  CUT_LINK: [condition('CUT_LINK', 'linkUp', 'LinkState', (c, e) => !c.cut.includes(e.link), (_c, e) => `link ${e.link} is already cut`)],
  RESTORE_LINK: [condition('RESTORE_LINK', 'linkCut', 'LinkState', (c, e) => c.cut.includes(e.link), (_c, e) => `link ${e.link} is not cut`)],
  FENCE_SITE: [
    condition('FENCE_SITE', 'site1', 'NotAllowed', (_c, e) => e.site === 1, () => 'only site 1 can be fenced'),
    condition('FENCE_SITE', 'site1Up', 'SiteFailed', (c) => c.sites[1].up, () => 'site 1 is failed'),
    condition('FENCE_SITE', 'site1Primary', 'NotAllowed', (c) => c.primary === 1, () => 'site 1 is not the primary'),
    condition('FENCE_SITE', 'site1NotFenced', 'NotAllowed', (c) => !c.sites[1].fenced, () => 'site 1 is already fenced'),
  ],
  FAILOVER: [
    condition('FAILOVER', 'site2Up', 'SiteFailed', (c) => c.sites[2].up, () => 'site 2 is failed'),
    condition('FAILOVER', 'site1Primary', 'NotAllowed', (c) => c.primary === 1, () => 'site 2 is already the primary'),
    // A failed site 2 is refused by site2Up; this condition speaks of a stale one.
    condition('FAILOVER', 'site2NotStale', 'NotAllowed', (c) => c.sites[2].mode === 'normal' || !c.sites[2].up, (c) => `site 2 is ${c.sites[2].mode}, not normal`),
    condition('FAILOVER', 'site1FailedOrFenced', 'NotAllowed', (c) => !c.sites[1].up || c.sites[1].fenced, () => 'site 1 is neither failed nor fenced (P4)'),
  ],
  RESYNC_SITE: [
    condition('RESYNC_SITE', 'siteSecondary', 'NotAllowed', (c, e) => e.site === secondaryOf(c), (_c, e) => `site ${e.site} is not the sync secondary`),
    condition('RESYNC_SITE', 'siteUp', 'SiteFailed', (c, e) => c.sites[e.site].up, (_c, e) => `site ${e.site} is failed`),
    // A failed site is refused by siteUp, the primary by siteSecondary; this condition speaks of an up
    // secondary that is not stale.
    condition(
      'RESYNC_SITE',
      'siteResyncing',
      'NotAllowed',
      (c, e) => c.sites[e.site].mode === 'resyncing' || !c.sites[e.site].up || e.site !== secondaryOf(c),
      (c, e) => `site ${e.site} is ${c.sites[e.site].mode}, not resyncing`,
    ),
    condition('RESYNC_SITE', 'primaryUp', 'NotAllowed', (c) => c.sites[c.primary].up, () => 'sites 1 and 2 cannot reach each other (the primary is failed)'),
    condition('RESYNC_SITE', 'syncLinked', 'NotAllowed', (c) => !c.cut.includes('1-2'), () => 'sites 1 and 2 cannot reach each other (the link is cut)'),
  ],
  DELTA_RESYNC: [
    condition('DELTA_RESYNC', 'asyncAwaitsDelta', 'NotAllowed', (c) => c.asyncPair === 'deltaResync', (c) => `async pair is ${c.asyncPair}`),
    condition('DELTA_RESYNC', 'sourceReachable', 'NotAllowed', (c) => reachable(c, c.primary, 3), () => 'source unreachable from site 3'),
  ],
  FULL_COPY: [
    condition('FULL_COPY', 'asyncAwaitsCopy', 'NotAllowed', (c) => c.asyncPair === 'fullCopy' || c.asyncPair === 'suspendedOverflow', (c) => `async pair is ${c.asyncPair}`),
    condition('FULL_COPY', 'sourceReachable', 'NotAllowed', (c) => reachable(c, c.primary, 3), () => 'source unreachable from site 3'),
  ],
  FAILBACK: [
    condition('FAILBACK', 'syncReversed', 'NotAllowed', (c) => c.syncPair === 'reversed', (c) => `sync pair is ${c.syncPair}, not reversed`),
    condition('FAILBACK', 'allSitesUp', 'SiteFailed', (c) => c.sites[1].up && c.sites[2].up && c.sites[3].up, () => 'every site must be up'),
    condition('FAILBACK', 'allLinksUp', 'NotAllowed', (c) => c.cut.length === 0, () => 'every link must be up'),
    condition('FAILBACK', 'asyncCopying', 'NotAllowed', (c) => c.asyncPair === 'copying', (c) => `async pair is ${c.asyncPair}`),
  ],
};

/** Every refusal condition's id, in a stable order (the `refusals` coverage dimension's items). */
export const refusalConditionIds: readonly string[] = Object.values(refusalConditions).flatMap((list) => list.map((item) => item.id));

/** The ids of the conditions an event fails in a state (empty: accepted, up to the judge). */
export function failedConditions(context: ModelContext, event: ModelEvent): string[] {
  return refusalConditions[event.type].filter((item) => !item.holds(context, event)).map((item) => item.id);
}

/**
 * Returns null when the event is accepted by the system in this state, or the refusal: the first of its
 * {@link refusalConditions} that fails. A FAILOVER that the judge refuses (site 3 ahead, not forced) is
 * accepted as a transition that records the judgement; the implementation reports it with
 * `RemoteAheadError` (see {@link failoverRefusedByJudge}).
 */
export function check(context: ModelContext, event: ModelEvent): Refusal | null {
  for (const item of refusalConditions[event.type]) {
    if (!item.holds(context, event)) return refuse(item.code, item.reason(context, event));
  }
  return null;
}

/**
 * The judge's verdict a FAILOVER would get now, or null when site 3 cannot be asked: down, or up behind a cut
 * link 2-3, which looks to site 2 like a failure of site 3 (DESIGN.md). Either way site 3 is judged when it
 * reaches site 2 again (R2), against the takeover point, so a cut link no longer blocks a failover.
 */
export function failoverVerdict(context: ModelContext): JudgeVerdict | null {
  if (!context.sites[3].up || !reachable(context, 2, 3)) return null;
  return judge({ ...context, takeover: lastOf(context, 2) }, 2);
}

/** A FAILOVER that the judge refuses: site 3 holds updates site 2 lacks and the operator did not force. */
export function failoverRefusedByJudge(context: ModelContext, event: ModelEvent): boolean {
  return event.type === 'FAILOVER' && !event.force && failoverVerdict(context) === 'remoteAhead';
}

/** The verdict a FAILBACK gets: site 3 judged against site 1's journal (claim 31). */
export function failbackVerdict(context: ModelContext): JudgeVerdict {
  return judge(context, 1);
}

/**
 * The state after an accepted event. Call only when {@link check} returned null. The event's own effect
 * comes first, then rules R1 and R2 and the derived modes (`model/README.md`).
 */
export function apply(context: ModelContext, event: ModelEvent): ModelContext {
  return settle(effect(context, event));
}

function effect(context: ModelContext, event: ModelEvent): ModelContext {
  switch (event.type) {
    case 'HOST_WRITE':
      return hostWrite(context, event);
    case 'PULL_JOURNAL':
      return pullJournal(context);
    case 'RESTORE_JOURNAL':
      return restoreJournal(context);
    case 'FAIL_SITE':
      return {
        ...withSite(context, event.site, { up: false, mode: 'failed' }),
        faults: context.faults + 1,
      };
    case 'RECOVER_SITE':
      return withSite(context, event.site, { up: true });
    case 'CUT_LINK':
      return { ...context, cut: [...context.cut, event.link].sort(), faults: context.faults + 1 };
    case 'RESTORE_LINK':
      return { ...context, cut: context.cut.filter((link) => link !== event.link) };
    case 'FENCE_SITE':
      return withSite(context, 1, { fenced: true });
    case 'FAILOVER':
      return failover(context, event.force);
    case 'RESYNC_SITE':
      return resyncSite(context, event.site);
    case 'DELTA_RESYNC':
      return deltaResync(context);
    case 'FULL_COPY':
      return fullCopy(context);
    case 'FAILBACK':
      return failback(context);
  }
}

function withSite<S extends 1 | 2 | 3>(
  context: ModelContext,
  site: S,
  patch: Partial<ModelContext['sites'][S]>,
): ModelContext {
  return { ...context, sites: { ...context.sites, [site]: { ...context.sites[site], ...patch } } };
}

/** Trims a sync member's journal through the restored number it knows. */
function trimmed(member: SyncMemberState, restored: number): SyncMemberState {
  const knownRestored = Math.max(member.knownRestored, restored);
  const journalFirst = Math.max(member.journalFirst, Math.min(knownRestored, member.applied.length) + 1);
  return { ...member, knownRestored, journalFirst };
}

/**
 * Journals and applies one entry at a sync member. A full journal discards all its entries first
 * (overflow, P7); the caller suspends whatever depended on it.
 */
function journaled(member: SyncMemberState, entry: Entry, journalEntriesMax: number): { member: SyncMemberState; overflowed: boolean } {
  const overflowed = journalEntries(member) >= journalEntriesMax;
  return {
    member: {
      ...member,
      applied: [...member.applied, entry],
      journalFirst: overflowed ? entry.u : member.journalFirst,
    },
    overflowed,
  };
}

function hostWrite(context: ModelContext, event: HostWriteEvent): ModelContext {
  const { params } = context;
  const primarySite = context.primary;
  const secondarySite = secondaryOf(context);
  const entry: Entry = {
    u: lastOf(context, primarySite) + 1,
    volume: event.volume,
    block: event.block,
    data: event.data,
    ...(event.start !== undefined ? { start: event.start } : {}),
    ...(event.length !== undefined ? { length: event.length } : {}),
  };
  const inSync = context.syncPair === 'inSync' || context.syncPair === 'reversed';
  let next: ModelContext = { ...context, writes: context.writes + 1 };
  if (inSync) {
    // Claims 3-6, 33-35: the secondary journals the entry with the primary's update number first, trimming
    // by the progress the primary forwards with the write.
    const forwarded = trimmed(next.sites[secondarySite], context.sites[primarySite].knownRestored);
    next = withSite(next, secondarySite, journaled(forwarded, entry, params.journalEntriesMax).member);
  }
  const primary = journaled(next.sites[primarySite], entry, params.journalEntriesMax);
  let member = primary.member;
  if (!inSync) {
    // The changed-block record holds every block the byte range touches, the last one even when the write
    // ends mid-block.
    const { offset, length } = entryRange(params, entry);
    const keys = blockKeysOf(params, event.volume, offset, length).filter((key) => !member.changed.includes(key));
    if (keys.length > 0) member = { ...member, changed: [...member.changed, ...keys].sort((a, b) => a - b) };
    next = { ...next, ackedOnOneSite: next.ackedOnOneSite + 1 };
  }
  next = withSite(next, primarySite, member);
  if (primary.overflowed && ['copying', 'deltaResync', 'suspended'].includes(next.asyncPair)) {
    next = { ...next, asyncPair: 'suspendedOverflow' };
  }
  return next;
}

function pullJournal(context: ModelContext): ModelContext {
  const { params } = context;
  const source = context.primary;
  const restored = lastOf(context, 3);
  const member = trimmed(context.sites[source], restored);
  const received = receivedOf(context);
  const remote = context.sites[3];
  const room = params.journalEntriesMax - remote.pending.length;
  const take = Math.max(0, Math.min(params.pullBatchEntriesMax, room, member.applied.length - received));
  const entries = member.applied.slice(received, received + take);
  const next = withSite(context, source, member);
  return withSite(next, 3, { pending: [...remote.pending, ...entries] });
}

function restoreJournal(context: ModelContext): ModelContext {
  const remote = context.sites[3];
  return withSite(context, 3, { applied: [...remote.applied, ...remote.pending], pending: [] });
}

function verdictToAsyncPair(verdict: JudgeVerdict): ModelContext['asyncPair'] {
  return verdict === 'noUpdateRequired' ? 'copying' : verdict === 'deltaResync' ? 'deltaResync' : 'fullCopy';
}

function failover(context: ModelContext, force: boolean): ModelContext {
  const verdict = failoverVerdict(context);
  const remoteReceived = receivedOf(context);
  const sourceLast = lastOf(context, 2);
  if (verdict === 'remoteAhead' && !force) {
    return { ...context, judgement: { verdict, remoteReceived, sourceLast, forced: false } };
  }
  const promoted: ModelContext = { ...context, primary: 2, syncPair: 'suspended' };
  if (verdict === null) {
    return { ...promoted, asyncPair: 'suspended', takeover: sourceLast };
  }
  // Claims 18-20, 28: site 3 sent its latest update number; site 2 judged with its journal.
  return {
    ...promoted,
    asyncPair: verdict === 'remoteAhead' ? 'fullCopy' : verdictToAsyncPair(verdict),
    judgement: { verdict, remoteReceived, sourceLast, forced: verdict === 'remoteAhead' },
    takeover: null,
  };
}

function resyncSite(context: ModelContext, site: SyncSiteId): ModelContext {
  const source = context.sites[context.primary];
  const target = context.sites[site];
  const resynced: SyncMemberState = {
    ...target,
    applied: source.applied,
    journalFirst: source.applied.length + 1,
    knownRestored: source.knownRestored,
    changed: [],
    fenced: false,
  };
  const next = withSite(withSite(context, site, resynced), context.primary, { changed: [] });
  return { ...next, ackedOnOneSite: 0, syncPair: context.primary === 1 ? 'inSync' : 'reversed' };
}

/**
 * DELTA_RESYNC (claims 19, 20): site 3 reads the entries it lacks from the source's journal (the second or
 * fourth storage area) into its own journal (the fifth), after what that journal already holds; the next
 * RESTORE_JOURNAL restores them in update-number order into its volumes (the sixth). **Decision:** when the
 * missing entries do not fit after what site 3's journal holds (P7), site 3 restores what it holds first and
 * then reads them; they always fit an empty journal, because they come from the source's, which is within
 * the same bound. The source learns site 3's restored number (not its received one: the entries in site 3's
 * journal are not in its volumes yet) and trims through it.
 */
function deltaResync(context: ModelContext): ModelContext {
  const member = context.sites[context.primary];
  const received = receivedOf(context);
  if (!covers(member, received)) return { ...context, asyncPair: 'fullCopy' };
  const missing = member.applied.slice(received);
  const held = context.sites[3];
  const remote = held.pending.length + missing.length > context.params.journalEntriesMax
    ? { ...held, applied: [...held.applied, ...held.pending], pending: [] }
    : held;
  const next = withSite(context, 3, { applied: remote.applied, pending: [...remote.pending, ...missing] });
  return { ...withSite(next, context.primary, trimmed(member, remote.applied.length)), asyncPair: 'copying' };
}

function fullCopy(context: ModelContext): ModelContext {
  const member = context.sites[context.primary];
  const next = withSite(context, 3, { applied: member.applied, pending: [] });
  return {
    ...withSite(next, context.primary, trimmed(member, member.applied.length)),
    asyncPair: 'copying',
    takeover: null,
  };
}

function failback(context: ModelContext): ModelContext {
  const verdict = failbackVerdict(context);
  return {
    ...context,
    primary: 1,
    syncPair: 'inSync',
    asyncPair: verdictToAsyncPair(verdict),
    judgement: { verdict, remoteReceived: receivedOf(context), sourceLast: lastOf(context, 1), forced: false },
  };
}

/** Rules R1 and R2, then the derived modes and the standby pair. */
function settle(context: ModelContext): ModelContext {
  let next = context;
  const primary = next.primary;
  const secondary = secondaryOf(next);
  const linked = reachable(next, primary, secondary);

  // R1: the sync pair follows reachability of the secondary.
  if ((next.syncPair === 'inSync' || next.syncPair === 'reversed' || next.syncPair === 'resyncing') && !linked) {
    next = { ...next, syncPair: 'suspended' };
  }
  if (next.syncPair === 'suspended' && linked) next = { ...next, syncPair: 'resyncing' };

  // Modes of the sync members.
  for (const site of [1, 2] as const) {
    next = withSite(next, site, { mode: syncMemberMode(next, site) });
  }

  // R2: the async pair follows reachability of source and site 3; reattaching runs the judge.
  const attached = reachable(next, primary, 3);
  if ((next.asyncPair === 'copying' || next.asyncPair === 'deltaResync') && !attached) {
    next = { ...next, asyncPair: 'suspended' };
  } else if (next.asyncPair === 'suspended' && attached) {
    const verdict = judge(next, primary);
    next = {
      ...next,
      asyncPair: verdict === 'noUpdateRequired' || verdict === 'deltaResync' ? 'copying' : 'fullCopy',
      judgement: { verdict, remoteReceived: receivedOf(next), sourceLast: lastOf(next, primary), forced: false },
      takeover: null,
    };
  }

  const remote = next.sites[3];
  const remoteMode: SiteMode = !remote.up
    ? 'failed'
    : next.asyncPair === 'deltaResync' || next.asyncPair === 'fullCopy'
      ? 'resyncing'
      : 'normal';
  next = withSite(next, 3, { mode: remoteMode });

  const inSync = next.syncPair === 'inSync' || next.syncPair === 'reversed';
  const standbyPair = !inSync ? 'none' : covers(next.sites[secondaryOf(next)], receivedOf(next)) ? 'hold' : 'holdError';
  return { ...next, standbyPair };
}

function syncMemberMode(context: ModelContext, site: SyncSiteId): SiteMode {
  const member = context.sites[site];
  if (!member.up) return 'failed';
  const reversed = context.syncPair === 'reversed';
  if (site === context.primary) return reversed ? 'syncReversed' : 'normal';
  switch (context.syncPair) {
    case 'inSync':
      return 'normal';
    case 'reversed':
      return 'syncReversed';
    case 'resyncing':
      return 'resyncing';
    case 'suspended':
      // A secondary that has just returned, or was already waiting for its resync, is stale.
      return member.mode === 'failed' || member.mode === 'resyncing' ? 'resyncing' : 'normal';
  }
}

/** A sync member whose last update number is its journal's last, for checks: the journal's entries. */
export function journalOf(member: SyncMemberState): readonly Entry[] {
  return member.applied.slice(member.journalFirst - 1);
}

/** The link between two sites (re-exported for the chart's guards). */
export { linkBetween };
