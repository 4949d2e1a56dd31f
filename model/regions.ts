/**
 * What each region of the statechart must show in a given abstract state: the role and mode of each site
 * and the state of each pair, read from the context. The chart's regions move on the events themselves
 * (`model/machine.ts`); this is the other side of the check that they agree with the semantics (property
 * MIRROR, checked after every transition of the exploration and of the conformance run).
 */
import type { ModelEvent } from './events.ts';
import type { AsyncPairState, StandbyPairState, SyncPairState } from './observation.ts';
import { apply, check, failbackVerdict, failoverRefusedByJudge, failoverVerdict } from './semantics.ts';
import { covers, journalEntries, judge, linkBetween, reachable, receivedOf, secondaryOf, type ModelContext } from './state.ts';

/** A sync member's role and mode: who serves hosts, who follows, who waits for a resync. */
export type SyncMemberRegionState = 'primary' | 'secondary' | 'fenced' | 'resyncing' | 'failed';

/** Site 3's source and progress: which site feeds it, or what it waits for. */
export type RemoteRegionState = 'copyingFromSite1' | 'copyingFromSite2' | 'awaitingJudgement' | 'deltaResync' | 'needsFullCopy' | 'failed';

/** The state of every region, by region name. */
export interface RegionStates {
  site1: SyncMemberRegionState;
  site2: SyncMemberRegionState;
  site3: RemoteRegionState;
  syncPair: SyncPairState;
  asyncPair: AsyncPairState;
  standbyPair: StandbyPairState;
}

/** Every state each region can show, by region (the chart must have exactly these). */
export const regionStateNames: { readonly [R in keyof RegionStates]: readonly RegionStates[R][] } = {
  site1: ['primary', 'secondary', 'fenced', 'resyncing', 'failed'],
  site2: ['primary', 'secondary', 'resyncing', 'failed'],
  site3: ['copyingFromSite1', 'copyingFromSite2', 'awaitingJudgement', 'deltaResync', 'needsFullCopy', 'failed'],
  syncPair: ['inSync', 'suspended', 'resyncing', 'reversed'],
  asyncPair: ['copying', 'suspended', 'suspendedOverflow', 'deltaResync', 'fullCopy'],
  standbyPair: ['hold', 'holdError', 'none'],
};

/** The regions' names, in the chart's order. */
export const regionNames: readonly (keyof RegionStates)[] = ['site1', 'site2', 'site3', 'syncPair', 'asyncPair', 'standbyPair'];

function syncMemberRegion(context: ModelContext, site: 1 | 2): SyncMemberRegionState {
  const member = context.sites[site];
  if (!member.up) return 'failed';
  if (member.mode === 'resyncing') return 'resyncing';
  if (member.fenced) return 'fenced';
  return context.primary === site ? 'primary' : 'secondary';
}

function remoteRegion(context: ModelContext): RemoteRegionState {
  if (!context.sites[3].up) return 'failed';
  switch (context.asyncPair) {
    case 'copying':
      return context.primary === 1 ? 'copyingFromSite1' : 'copyingFromSite2';
    case 'suspended':
      return 'awaitingJudgement';
    case 'deltaResync':
      return 'deltaResync';
    case 'fullCopy':
    case 'suspendedOverflow':
      return 'needsFullCopy';
  }
}

/** What each region must show in this abstract state. */
export function regionStatesOf(context: ModelContext): RegionStates {
  return {
    site1: syncMemberRegion(context, 1),
    site2: syncMemberRegion(context, 2),
    site3: remoteRegion(context),
    syncPair: context.syncPair,
    asyncPair: context.asyncPair,
    standbyPair: context.standbyPair,
  };
}

/*
 * The rules that move the regions: named conditions on the state before an event and the event itself.
 * They are written apart from `semantics.ts` (which computes the whole next state), so that the chart can
 * disagree with the semantics and the MIRROR check can say so. Every one implies that the event takes
 * effect: accepted by `check`, and not a promotion the judge refuses.
 */

/**
 * The last question asked of {@link takesEffect} and of {@link standbyCoversAfter}: xstate evaluates every
 * region's guards for one event on one context, and the context and event objects are immutable, so one
 * entry keyed by their identity answers all but the first (the explorer spent a third of its time here).
 */
let lastAsked: { context: ModelContext; event: ModelEvent; takesEffect: boolean; after: ModelContext | null } | null = null;

function asked(context: ModelContext, event: ModelEvent): NonNullable<typeof lastAsked> {
  if (lastAsked === null || lastAsked.context !== context || lastAsked.event !== event) {
    lastAsked = { context, event, takesEffect: check(context, event) === null && !failoverRefusedByJudge(context, event), after: null };
  }
  return lastAsked;
}

/** The event is accepted and changes the state (a FAILOVER the judge refuses only records its judgement). */
export function takesEffect(context: ModelContext, event: ModelEvent): boolean {
  return asked(context, event).takesEffect;
}

/** Whether site `site` is up once the event has taken effect (only failures and returns change it). */
function upAfter(context: ModelContext, event: ModelEvent, site: 1 | 2 | 3): boolean {
  if (event.type === 'FAIL_SITE' && event.site === site) return false;
  if (event.type === 'RECOVER_SITE' && event.site === site) return true;
  return context.sites[site].up;
}

/** Whether two sites can reach each other once the event has taken effect. */
export function reachableAfter(context: ModelContext, event: ModelEvent, a: 1 | 2 | 3, b: 1 | 2 | 3): boolean {
  const link = linkBetween(a, b);
  const cut = event.type === 'CUT_LINK' && event.link === link ? true : event.type === 'RESTORE_LINK' && event.link === link ? false : context.cut.includes(link);
  return upAfter(context, event, a) && upAfter(context, event, b) && !cut;
}

/** The sync pair's two members lose each other through this event (a failure or a cut link 1-2; R1). */
export function syncLinkLost(context: ModelContext, event: ModelEvent): boolean {
  const primary = context.primary;
  const secondary = secondaryOf(context);
  return event.type !== 'FAILOVER' && event.type !== 'FAILBACK' && reachable(context, primary, secondary) && !reachableAfter(context, event, primary, secondary);
}

/** The sync pair's two members reach each other again through this event (a return or a restored link; R1). */
export function syncLinkRegained(context: ModelContext, event: ModelEvent): boolean {
  const primary = context.primary;
  const secondary = secondaryOf(context);
  return event.type !== 'FAILOVER' && event.type !== 'FAILBACK' && !reachable(context, primary, secondary) && reachableAfter(context, event, primary, secondary);
}

/** Site 3 loses its source through this event (the source or site 3 fails, or their link is cut; R2). */
export function asyncLinkLost(context: ModelContext, event: ModelEvent): boolean {
  return event.type !== 'FAILOVER' && event.type !== 'FAILBACK' && reachable(context, context.primary, 3) && !reachableAfter(context, event, context.primary, 3);
}

/** Site 3 reaches its source again through this event, which judges it (claims 18, 28; R2). */
export function asyncLinkRegained(context: ModelContext, event: ModelEvent): boolean {
  return event.type !== 'FAILOVER' && event.type !== 'FAILBACK' && !reachable(context, context.primary, 3) && reachableAfter(context, event, context.primary, 3);
}

/** What the judge's verdict asks of site 3: nothing or a delta resync (`covered`), or a full copy. */
export type JudgedOutcome = 'covered' | 'fullCopy';

/** The outcome of judging site 3 now against the source's journal (claims 18-20). */
export function judgedOutcome(context: ModelContext): JudgedOutcome {
  const verdict = judge(context, context.primary);
  return verdict === 'noUpdateRequired' || verdict === 'deltaResync' ? 'covered' : 'fullCopy';
}

/** The source's journal is full: the next host write overflows it and site 3 will need a full copy (P7). */
export function sourceJournalFull(context: ModelContext): boolean {
  return journalEntries(context.sites[context.primary]) >= context.params.journalEntriesMax;
}

/** What a failover's judgement does to the async pair: the verdict's outcome, or `remoteUnreachable` (judged on return). */
export type FailoverOutcome = 'noUpdateRequired' | 'deltaResync' | 'fullCopy' | 'remoteUnreachable';

/** The outcome of a failover now (a forced promotion over a site 3 ahead needs a full copy). */
export function failoverOutcome(context: ModelContext): FailoverOutcome {
  const verdict = failoverVerdict(context);
  if (verdict === null) return 'remoteUnreachable';
  return verdict === 'remoteAhead' ? 'fullCopy' : verdict;
}

/** The outcome of a failback now: site 3 judged against site 1's journal (claim 31). */
export function failbackOutcome(context: ModelContext): Exclude<FailoverOutcome, 'remoteUnreachable'> {
  const verdict = failbackVerdict(context);
  return verdict === 'remoteAhead' ? 'fullCopy' : verdict;
}

/** Where site 3's region goes when site 3 returns: judged at once if its source is reachable, else it waits. */
export function site3ReturnState(context: ModelContext, event: ModelEvent): RemoteRegionState {
  if (context.asyncPair === 'fullCopy' || context.asyncPair === 'suspendedOverflow') return 'needsFullCopy';
  if (!reachableAfter(context, event, context.primary, 3)) return 'awaitingJudgement';
  return judgedOutcome(context) === 'covered' ? copyingFrom(context.primary) : 'needsFullCopy';
}

/** Site 3's region state while it copies from `source`. */
export function copyingFrom(source: 1 | 2): RemoteRegionState {
  return source === 1 ? 'copyingFromSite1' : 'copyingFromSite2';
}

/**
 * Whether the sync secondary's journal covers site 3 once the event has taken effect (the standby pair: HOLD
 * or HLDE). Host writes, pulls and copies change the journals and site 3's received number; this asks the
 * journal's own arithmetic (`semantics.ts`) for the state after the event rather than restating it here.
 */
export function standbyCoversAfter(context: ModelContext, event: ModelEvent): boolean {
  const entry = asked(context, event);
  const after = (entry.after ??= apply(context, event));
  return covers(after.sites[secondaryOf(after)], receivedOf(after));
}
