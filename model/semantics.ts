/**
 * The semantics of every event, as pure functions of the abstract state: whether the event is accepted
 * (or the refusal the implementation must give) and the state after it. The statechart's guards and actions
 * call these, so the chart and the prose of `model/README.md` cannot drift apart: this file is that prose
 * in code. Nothing here touches xstate.
 */
import type { JudgeVerdict, SiteMode, SyncSiteId } from './observation.ts';
import type { HostWriteEvent, ModelEvent } from './events.ts';
import {
  acceptsHostWrites,
  blockKey,
  covers,
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
 * Returns null when the event is accepted by the system in this state, or the refusal. A FAILOVER that the
 * judge refuses (site 3 ahead, not forced) is accepted as a transition that records the judgement; the
 * implementation reports it with `RemoteAheadError` (see {@link failoverRefusedByJudge}).
 */
export function check(context: ModelContext, event: ModelEvent): Refusal | null {
  const { sites } = context;
  switch (event.type) {
    case 'HOST_WRITE': {
      const { params } = context;
      if (event.volume < 0 || event.volume >= params.volumeCount || event.block < 0 || event.block >= params.blocksPerVolume) {
        return refuse('OutOfRange', `volume ${event.volume} block ${event.block} is outside the volumes`);
      }
      if (!acceptsHostWrites(context, event.host)) {
        return refuse('NotWritable', `site ${event.host} does not accept host ${event.host} writes`);
      }
      return null;
    }
    case 'PULL_JOURNAL':
      if (context.asyncPair !== 'copying') return refuse('NotAllowed', `async pair is ${context.asyncPair}`);
      if (!reachable(context, context.primary, 3)) return refuse('NotAllowed', 'source unreachable from site 3');
      return null;
    case 'RESTORE_JOURNAL':
      if (!sites[3].up) return refuse('SiteFailed', 'site 3 is failed');
      if (sites[3].pending.length === 0) return refuse('NotAllowed', "site 3's journal is empty");
      if (context.asyncPair === 'fullCopy' || context.asyncPair === 'suspendedOverflow') {
        return refuse('NotAllowed', `async pair is ${context.asyncPair}: a full copy replaces the journal`);
      }
      return null;
    case 'FAIL_SITE':
      return sites[event.site].up ? null : refuse('SiteFailed', `site ${event.site} is already failed`);
    case 'RECOVER_SITE':
      return sites[event.site].up ? refuse('SiteUp', `site ${event.site} is up`) : null;
    case 'CUT_LINK':
      return context.cut.includes(event.link) ? refuse('LinkState', `link ${event.link} is already cut`) : null;
    case 'RESTORE_LINK':
      return context.cut.includes(event.link) ? null : refuse('LinkState', `link ${event.link} is not cut`);
    case 'FENCE_SITE':
      if (event.site !== 1) return refuse('NotAllowed', 'only site 1 can be fenced');
      if (!sites[1].up) return refuse('SiteFailed', 'site 1 is failed');
      if (context.primary !== 1) return refuse('NotAllowed', 'site 1 is not the primary');
      if (sites[1].fenced) return refuse('NotAllowed', 'site 1 is already fenced');
      return null;
    case 'FAILOVER':
      if (!sites[2].up) return refuse('SiteFailed', 'site 2 is failed');
      if (context.primary !== 1) return refuse('NotAllowed', 'site 2 is already the primary');
      if (sites[2].mode !== 'normal') return refuse('NotAllowed', `site 2 is ${sites[2].mode}, not normal`);
      if (sites[1].up && !sites[1].fenced) return refuse('NotAllowed', 'site 1 is neither failed nor fenced (P4)');
      if (sites[3].up && !reachable(context, 2, 3)) return refuse('NotAllowed', 'site 3 is up but unreachable from site 2');
      return null;
    case 'RESYNC_SITE': {
      const site = event.site;
      if (site !== secondaryOf(context)) return refuse('NotAllowed', `site ${site} is not the sync secondary`);
      if (!sites[site].up) return refuse('SiteFailed', `site ${site} is failed`);
      if (sites[site].mode !== 'resyncing') return refuse('NotAllowed', `site ${site} is ${sites[site].mode}, not resyncing`);
      if (!reachable(context, 1, 2)) return refuse('NotAllowed', 'sites 1 and 2 cannot reach each other');
      return null;
    }
    case 'DELTA_RESYNC':
      if (context.asyncPair !== 'deltaResync') return refuse('NotAllowed', `async pair is ${context.asyncPair}`);
      if (!reachable(context, context.primary, 3)) return refuse('NotAllowed', 'source unreachable from site 3');
      return null;
    case 'FULL_COPY':
      if (context.asyncPair !== 'fullCopy' && context.asyncPair !== 'suspendedOverflow') {
        return refuse('NotAllowed', `async pair is ${context.asyncPair}`);
      }
      if (!reachable(context, context.primary, 3)) return refuse('NotAllowed', 'source unreachable from site 3');
      return null;
    case 'FAILBACK':
      if (context.syncPair !== 'reversed') return refuse('NotAllowed', `sync pair is ${context.syncPair}, not reversed`);
      if (!sites[1].up || !sites[2].up || !sites[3].up) return refuse('SiteFailed', 'every site must be up');
      if (context.cut.length > 0) return refuse('NotAllowed', 'every link must be up');
      if (context.asyncPair !== 'copying') return refuse('NotAllowed', `async pair is ${context.asyncPair}`);
      return null;
  }
}

/** The judge's verdict a FAILOVER would get now, or null when site 3 is down (judged when it returns). */
export function failoverVerdict(context: ModelContext): JudgeVerdict | null {
  if (!context.sites[3].up) return null;
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
  const entry: Entry = { u: lastOf(context, primarySite) + 1, volume: event.volume, block: event.block, data: event.data };
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
    const key = blockKey(params, event.volume, event.block);
    member = member.changed.includes(key) ? member : { ...member, changed: [...member.changed, key].sort((a, b) => a - b) };
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

function deltaResync(context: ModelContext): ModelContext {
  const member = context.sites[context.primary];
  const received = receivedOf(context);
  if (!covers(member, received)) return { ...context, asyncPair: 'fullCopy' };
  const remote = context.sites[3];
  const missing = member.applied.slice(received);
  const next = withSite(context, 3, { applied: [...remote.applied, ...remote.pending, ...missing], pending: [] });
  // Site 3 now holds everything the source has: the source knows it and trims.
  return { ...withSite(next, context.primary, trimmed(member, member.applied.length)), asyncPair: 'copying' };
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
