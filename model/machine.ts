/**
 * The statechart that formally specifies the three-site system (XState v5).
 *
 * Shape: the root is a parallel state. Its `system` region has one state holding every event of
 * `model/events.ts`, split into guarded variants (one per outcome, e.g. FAILOVER's judge verdicts) whose
 * actions change the abstract state and whose `meta` names the claims they implement or the product
 * behaviour they follow beyond the claims. Beside it, one region per storage system shows its role and mode
 * (site 1: primary, secondary, fenced, resyncing, failed; site 3: copying from site 1 or site 2, awaiting
 * its judgement, delta resync, needs a full copy, failed) and one per pair (sync, async, standby) its
 * state; these regions move on the same events, under named conditions of their own (`model/regions.ts`).
 * FAILOVER takes site 2 from `secondary` to `primary` and site 3 to its verdict's state on the chart.
 *
 * The regions' rules are written apart from `semantics.ts`, so the chart can disagree with the semantics:
 * after every transition of the exploration and of the conformance run each region must show what the
 * context says (property MIRROR, `regionStatesOf`). A region move carries no claims of its own: the claims
 * of the variants seen to take it (`review/causes.ts`) are its traceability.
 *
 * Guards and actions are named; the configuration below is plain data, so the chart can be drawn and
 * imported into XState's visual tools (Stately Studio: `review/stately.ts`).
 */
import { assign, setup } from 'xstate';
import type { ModelEvent } from './events.ts';
import { validateParams, type ModelParams } from './params.ts';
import {
  asyncLinkLost,
  asyncLinkRegained,
  copyingFrom,
  failbackOutcome,
  failoverOutcome,
  judgedOutcome,
  site3ReturnState,
  sourceJournalFull,
  standbyCoversAfter,
  syncLinkLost,
  syncLinkRegained,
  takesEffect,
  type FailoverOutcome,
  type JudgedOutcome,
  type RemoteRegionState,
} from './regions.ts';
import { apply, check, failbackVerdict, failoverRefusedByJudge, failoverVerdict } from './semantics.ts';
import { covers, initialContext, lastOf, reachable, receivedOf, secondaryOf, type ModelContext } from './state.ts';

/** A transition's traceability: the claims it implements, or the product behaviour beyond the claims. */
export interface TransitionMeta {
  /** Claim numbers of `shared/seed/claims.txt`. */
  claims: number[];
  /** When the transition goes beyond the claims: which product behaviour it follows. */
  beyondClaims?: string;
  /** One line a reviewer reads on the diagram. */
  description: string;
}

const accepted = (context: ModelContext, event: ModelEvent): boolean => check(context, event) === null;
const inSync = (context: ModelContext): boolean => context.syncPair === 'inSync' || context.syncPair === 'reversed';
const isFailover = (event: ModelEvent): event is Extract<ModelEvent, { type: 'FAILOVER' }> => event.type === 'FAILOVER';

/** Accepted failover whose judge verdict is `verdict` (null: site 3 down, judged later). */
function failoverWith(verdict: ReturnType<typeof failoverVerdict>, force?: boolean) {
  return ({ context, event }: { context: ModelContext; event: ModelEvent }): boolean =>
    isFailover(event) &&
    accepted(context, event) &&
    failoverVerdict(context) === verdict &&
    (force === undefined || event.force === force);
}

const applyEvent = assign<ModelContext, ModelEvent, undefined, ModelEvent, never>(({ context, event }: { context: ModelContext; event: ModelEvent }) => apply(context, event));

type SiteParams = { site: 1 | 2 | 3 };

const beyond = (beyondClaims: string, description: string, claims: number[] = []): TransitionMeta => ({
  claims,
  beyondClaims,
  description,
});
const claimed = (claims: number[], description: string): TransitionMeta => ({ claims, description });

/** A named guard, with parameters when it has any. */
type GuardRef = string | { type: string; params: Record<string, unknown> };
const g = (type: string, params?: Record<string, unknown>): GuardRef => (params ? { type, params } : type);

/** One move of a region on an event: where it goes, the named condition, and what it means. */
type Move = readonly [target: string, guard: GuardRef, description: string];

/** A region's state: what it means and, per event, the moves out of it (tried in order). */
interface RegionStateSpec {
  description: string;
  on?: Partial<Record<ModelEvent['type'], readonly Move[]>>;
}

/**
 * Builds a region from its states. Region moves carry no claims of their own: the claims of a move are those
 * of the `system` variants that take it together with it, learned from exploration (`review/causes.ts`).
 */
function region(initial: string, states: Record<string, RegionStateSpec>) {
  const config: Record<string, { description: string; on: Record<string, { target: string; guard: GuardRef; meta: TransitionMeta }[]> }> = {};
  for (const [name, spec] of Object.entries(states)) {
    const on: Record<string, { target: string; guard: GuardRef; meta: TransitionMeta }[]> = {};
    for (const [event, moves] of Object.entries(spec.on ?? {})) {
      on[event] = (moves ?? []).map(([target, guard, description]) => ({ target, guard, meta: { claims: [], description } }));
    }
    config[name] = { description: spec.description, on };
  }
  return { initial, states: config };
}

const lost = (description: string): readonly Move[] => [['suspended', 'syncLinkLost', description]];

/** A sync member's role and mode (`model/regions.ts`, `regionStatesOf`), moved by the events themselves. */
function syncMemberRegion(site: 1 | 2) {
  const other = site === 1 ? 2 : 1;
  const fails: readonly Move[] = [['failed', g('siteFails', { site }), `site ${site} fails`]];
  const peerBack: readonly Move[] = [['resyncing', g('syncPeerRegained', { site }), `site ${other} reachable again: site ${site} is stale until resynced`]];
  return region(site === 1 ? 'primary' : 'secondary', {
    primary: {
      description: site === 1 ? 'serves host 1, numbers every write and journals it (claims 2-6)' : 'serves host 2 after failover, continues the update numbers (claims 21-27)',
      on: {
        FAIL_SITE: fails,
        ...(site === 1 ? { FENCE_SITE: [['fenced', 'site1Fenced', 'operator fences site 1: no more host 1 writes']] as readonly Move[] } : {}),
        ...(site === 2 ? { FAILBACK: [['secondary', 'failbackTakesEffect', 'failback: site 1 primary again, site 2 its secondary']] as readonly Move[] } : {}),
      },
    },
    secondary: {
      description:
        site === 1
          ? 'follows site 2 in the reversed pair (claims 32-35), or waits for it'
          : 'journals every write of site 1 with its update number (claims 5, 6), or waits for it',
      on: {
        FAIL_SITE: fails,
        RECOVER_SITE: peerBack,
        RESTORE_LINK: peerBack,
        ...(site === 2 ? { FAILOVER: [['primary', 'failoverPromotesSite2', 'failover: site 2 takes over for host 2 (claims 18-20, 29)']] as readonly Move[] } : {}),
        ...(site === 1 ? { FAILBACK: [['primary', 'failbackTakesEffect', 'failback: site 1 primary again']] as readonly Move[] } : {}),
      },
    },
    ...(site === 1
      ? {
          fenced: {
            description: 'fenced by the operator: accepts no host write (P4); site 2 may take over',
            on: {
              FAIL_SITE: fails,
              FAILOVER: [['resyncing', 'failoverStalesSite1', 'failover while site 1 is fenced and reachable: it must be resynced from site 2 (claim 29)']],
              RECOVER_SITE: peerBack,
              RESTORE_LINK: peerBack,
            },
          } satisfies RegionStateSpec,
        }
      : {}),
    resyncing: {
      description: 'up and stale: waits for RESYNC_SITE before it follows the primary',
      on: {
        FAIL_SITE: fails,
        RESYNC_SITE: [['secondary', g('resyncCompletes', { site }), `site ${site} copies every differing block from the primary, then follows it`]],
      },
    },
    failed: {
      description: 'down: volumes and journal survive',
      on: {
        RECOVER_SITE: [
          ['primary', g('siteReturns', { site, as: 'primary' }), `site ${site} returns as the primary`],
          ...(site === 1 ? ([['fenced', g('siteReturns', { site, as: 'fenced' }), 'site 1 returns, still fenced']] as readonly Move[]) : []),
          ['resyncing', g('siteReturns', { site, as: 'resyncing' }), `site ${site} returns stale: it must be resynced`],
        ],
      },
    },
  });
}

/** Site 3's moves when the failover's judge decides (claims 18-20, 29, 30). */
const failoverJudged = (except: string): readonly Move[] =>
  (
    [
      ['copyingFromSite2', g('failoverJudged', { outcome: 'noUpdateRequired' }), 'failover; judge: nothing missing, site 3 now copies from site 2 (claim 30)'],
      ['deltaResync', g('failoverJudged', { outcome: 'deltaResync' }), "failover; judge: site 2's journal covers site 3, delta resync (claims 19, 20)"],
      ['needsFullCopy', g('failoverJudged', { outcome: 'fullCopy' }), "failover; judge: site 2's journal lacks entries (or forced over site 3 ahead), full copy"],
    ] as const
  ).filter(([target]) => target !== except);

/**
 * Site 3, up but behind a cut link 2-3, at a failover: site 2 cannot ask it, so it waits for the judgement that
 * comes when the link returns (as a failed site 3 does when it returns; DESIGN.md: a cut link looks like a
 * failure of the far site).
 */
const site3CutOffAtFailover: Move = ['awaitingJudgement', g('failoverJudged', { outcome: 'remoteUnreachable' }), 'failover with link 2-3 cut: site 3 waits for its judgement'];

/** Site 3 loses its source, or is lost itself. */
const site3Lost: readonly Move[] = [
  ['failed', g('siteFails', { site: 3 }), 'site 3 fails'],
  ['awaitingJudgement', 'asyncLinkLost', 'site 3 loses its source: judged when it is back'],
];
const site3Overflow: readonly Move[] = [['needsFullCopy', 'sourceJournalOverflows', "the source's journal overflows: site 3 needs a full copy (P7)"]];

/**
 * The statechart. Its input is the bounded model's parameters (defaults: `defaultParams`).
 * @see model/README.md for the semantics each transition encodes.
 */
export const replicationMachine = setup({
  types: {
    context: {} as ModelContext,
    events: {} as ModelEvent,
    input: {} as Partial<ModelParams> | undefined,
  },
  guards: {
    // Host writes (claims 2-6, 10, 21, 25, 27, 31-35).
    hostWriteInSync: ({ context, event }) =>
      event.type === 'HOST_WRITE' && accepted(context, event) && context.primary === 1 && inSync(context),
    hostWriteReversed: ({ context, event }) =>
      event.type === 'HOST_WRITE' && accepted(context, event) && context.primary === 2 && inSync(context),
    hostWriteAloneAtSite1: ({ context, event }) =>
      event.type === 'HOST_WRITE' && accepted(context, event) && context.primary === 1 && !inSync(context),
    hostWriteAloneAtSite2: ({ context, event }) =>
      event.type === 'HOST_WRITE' && accepted(context, event) && context.primary === 2 && !inSync(context),
    // Background steps at site 3.
    pullFromSite1: ({ context, event }) => accepted(context, event) && context.primary === 1,
    pullFromSite2: ({ context, event }) => accepted(context, event) && context.primary === 2,
    restoreAccepted: ({ context, event }) => accepted(context, event),
    // Faults and returns.
    failSite: ({ context, event }, params: SiteParams) =>
      event.type === 'FAIL_SITE' && event.site === params.site && accepted(context, event),
    recoverSite: ({ context, event }, params: SiteParams) =>
      event.type === 'RECOVER_SITE' && event.site === params.site && accepted(context, event),
    linkAccepted: ({ context, event }) => accepted(context, event),
    fenceAccepted: ({ context, event }) => accepted(context, event),
    // Failover and the judge's outcomes (claims 18-20, 28, 29).
    failoverRefusedRemoteAhead: ({ context, event }) => accepted(context, event) && failoverRefusedByJudge(context, event),
    failoverForcedRemoteAhead: failoverWith('remoteAhead', true),
    failoverNoUpdateRequired: failoverWith('noUpdateRequired'),
    failoverDeltaResync: failoverWith('deltaResync'),
    failoverFullCopy: failoverWith('fullCopy'),
    failoverRemoteUnreachable: failoverWith(null),
    resyncSite: ({ context, event }, params: { site: 1 | 2 }) =>
      event.type === 'RESYNC_SITE' && event.site === params.site && accepted(context, event),
    deltaResyncAccepted: ({ context, event }) => accepted(context, event),
    fullCopyAccepted: ({ context, event }) => accepted(context, event),
    failbackWith: ({ context, event }, params: { verdict: string }) =>
      accepted(context, event) && failbackVerdict(context) === params.verdict,
    // Region moves (`model/regions.ts`): named conditions on the state before the event and the event.
    siteFails: ({ context, event }, params: SiteParams) => event.type === 'FAIL_SITE' && event.site === params.site && takesEffect(context, event),
    siteReturns: ({ context, event }, params: { site: 1 | 2; as: 'primary' | 'fenced' | 'resyncing' }) =>
      event.type === 'RECOVER_SITE' &&
      event.site === params.site &&
      takesEffect(context, event) &&
      (context.primary !== params.site ? 'resyncing' : context.sites[params.site].fenced ? 'fenced' : 'primary') === params.as,
    site1Fenced: ({ context, event }) => event.type === 'FENCE_SITE' && takesEffect(context, event),
    failoverPromotesSite2: ({ context, event }) => event.type === 'FAILOVER' && takesEffect(context, event),
    failoverStalesSite1: ({ context, event }) => event.type === 'FAILOVER' && takesEffect(context, event) && reachable(context, 1, 2),
    failbackTakesEffect: ({ context, event }) => event.type === 'FAILBACK' && takesEffect(context, event),
    resyncCompletes: ({ context, event }, params: { site: 1 | 2 }) => event.type === 'RESYNC_SITE' && event.site === params.site && takesEffect(context, event),
    syncPeerRegained: ({ context, event }, params: { site: 1 | 2 }) =>
      secondaryOf(context) === params.site && takesEffect(context, event) && syncLinkRegained(context, event),
    syncLinkLost: ({ context, event }) => takesEffect(context, event) && syncLinkLost(context, event),
    syncLinkRegained: ({ context, event }) => takesEffect(context, event) && syncLinkRegained(context, event),
    asyncLinkLost: ({ context, event }) => takesEffect(context, event) && asyncLinkLost(context, event),
    asyncLinkRegained: ({ context, event }, params: { outcome: JudgedOutcome }) =>
      takesEffect(context, event) && asyncLinkRegained(context, event) && judgedOutcome(context) === params.outcome,
    site3JudgedOnReattach: ({ context, event }, params: { to: RemoteRegionState }) =>
      takesEffect(context, event) &&
      context.sites[3].up &&
      asyncLinkRegained(context, event) &&
      (judgedOutcome(context) === 'covered' ? copyingFrom(context.primary) : 'needsFullCopy') === params.to,
    site3Returns: ({ context, event }, params: { to: RemoteRegionState }) =>
      event.type === 'RECOVER_SITE' && event.site === 3 && takesEffect(context, event) && site3ReturnState(context, event) === params.to,
    sourceJournalOverflows: ({ context, event }) => event.type === 'HOST_WRITE' && takesEffect(context, event) && sourceJournalFull(context),
    failoverJudged: ({ context, event }, params: { outcome: FailoverOutcome }) =>
      event.type === 'FAILOVER' && takesEffect(context, event) && failoverOutcome(context) === params.outcome,
    failbackJudged: ({ context, event }, params: { outcome: FailoverOutcome }) =>
      event.type === 'FAILBACK' && takesEffect(context, event) && failbackOutcome(context) === params.outcome,
    deltaResyncCompletes: ({ context, event }, params: { source: 1 | 2 }) =>
      event.type === 'DELTA_RESYNC' && takesEffect(context, event) && context.primary === params.source && covers(context.sites[context.primary], receivedOf(context)),
    fullCopyCompletes: ({ context, event }, params?: { source?: 1 | 2 }) =>
      event.type === 'FULL_COPY' && takesEffect(context, event) && (params?.source === undefined || context.primary === params.source),
    standbyCovers: ({ context, event }, params: { covers: boolean }) =>
      takesEffect(context, event) && inSync(context) && standbyCoversAfter(context, event) === params.covers,
    resyncStandby: ({ context, event }, params: { covers: boolean }) =>
      event.type === 'RESYNC_SITE' && takesEffect(context, event) && (receivedOf(context) === lastOf(context, context.primary)) === params.covers,
    failbackStandby: ({ context, event }, params: { covers: boolean }) =>
      event.type === 'FAILBACK' && takesEffect(context, event) && covers(context.sites[2], receivedOf(context)) === params.covers,
  },
  actions: {
    journalAndReplicate: applyEvent,
    journalAlone: applyEvent,
    pullJournal: applyEvent,
    restoreJournal: applyEvent,
    failSite: applyEvent,
    recoverSite: applyEvent,
    cutLink: applyEvent,
    restoreLink: applyEvent,
    fenceSite: applyEvent,
    recordJudgement: applyEvent,
    failover: applyEvent,
    resyncSite: applyEvent,
    deltaResync: applyEvent,
    fullCopy: applyEvent,
    failback: applyEvent,
  },
}).createMachine({
  id: 'threeSite',
  type: 'parallel',
  context: ({ input }) => initialContext(validateParams(input ?? {})),
  states: {
    system: {
      description:
        'The abstract state (the context) changes here: one guarded variant per outcome of each event, with the claims it implements. The regions beside it show each site and pair and move on the same events.',
      initial: 'operating',
      states: {
        operating: {
          description: 'every site and link event, host write and operator command is handled here',
          on: {
    HOST_WRITE: [
      {
        guard: 'hostWriteInSync',
        actions: 'journalAndReplicate',
        meta: claimed([1, 2, 3, 4, 5, 6, 10, 12, 13, 15, 16, 17], 'host 1 write: site 1 numbers it, site 2 journals it, then site 1; ack after both'),
      },
      {
        guard: 'hostWriteReversed',
        actions: 'journalAndReplicate',
        meta: claimed([21, 25, 27, 31, 32, 33, 34, 35, 39], 'host 2 write, reversed: site 2 numbers it, site 1 journals it with that number; ack after site 1'),
      },
      {
        guard: 'hostWriteAloneAtSite1',
        actions: 'journalAlone',
        meta: beyond('fence policy keep-writing (TrueCopy fence level never, DRBD fencing dont-care)', 'host 1 write while site 2 is unreachable: changed-block record, acked on one site', [4]),
      },
      {
        guard: 'hostWriteAloneAtSite2',
        actions: 'journalAlone',
        meta: claimed([21, 25, 27, 29], 'host 2 write after failover: site 2 continues the update numbers alone'),
      },
    ],
    PULL_JOURNAL: [
      {
        guard: 'pullFromSite1',
        actions: 'pullJournal',
        meta: claimed([1, 7, 8, 9, 11, 15, 16, 17], 'site 3 pulls the next batch from site 1 at its interval; site 1 trims what site 3 restored'),
      },
      {
        guard: 'pullFromSite2',
        actions: 'pullJournal',
        meta: claimed([22, 23, 24, 26, 27, 30, 36, 37, 38, 40], 'site 3 pulls the next batch from site 2 at its interval; site 2 trims what site 3 restored'),
      },
    ],
    RESTORE_JOURNAL: {
      guard: 'restoreAccepted',
      actions: 'restoreJournal',
      meta: claimed([1, 8, 11, 14, 16, 20, 23, 37], 'site 3 restores its journal (pulled or delta-resynced entries) into its volumes in update-number order'),
    },
    FAIL_SITE: [
      { guard: { type: 'failSite', params: { site: 1 } }, actions: 'failSite', meta: claimed([18, 28, 29], 'site 1 fails') },
      { guard: { type: 'failSite', params: { site: 2 } }, actions: 'failSite', meta: beyond('secondary failure suspends the pair (TrueCopy PSUE, SRDF/Star)', 'site 2 fails') },
      { guard: { type: 'failSite', params: { site: 3 } }, actions: 'failSite', meta: beyond('remote failure: journals grow (UR, SRDF/A)', 'site 3 fails') },
    ],
    RECOVER_SITE: [
      { guard: { type: 'recoverSite', params: { site: 1 } }, actions: 'recoverSite', meta: claimed([29], 'site 1 returns; no host 1 writes unless it is still primary') },
      { guard: { type: 'recoverSite', params: { site: 2 } }, actions: 'recoverSite', meta: beyond('secondary returns stale', 'site 2 returns') },
      { guard: { type: 'recoverSite', params: { site: 3 } }, actions: 'recoverSite', meta: beyond('remote returns: resume if journals cover, else full copy (UR)', 'site 3 returns; the judge decides') },
    ],
    CUT_LINK: {
      guard: 'linkAccepted',
      actions: 'cutLink',
      meta: beyond('a link cut looks like a failure of the far site (every product)', 'a link is cut'),
    },
    RESTORE_LINK: {
      guard: 'linkAccepted',
      actions: 'restoreLink',
      meta: beyond('a restored link looks like the far site returning', 'a link is restored'),
    },
    FENCE_SITE: {
      guard: 'fenceAccepted',
      actions: 'fenceSite',
      meta: beyond('fencing before takeover (STONITH; TrueCopy SVOL takeover)', 'operator fences site 1: no more host 1 writes (P4)'),
    },
    FAILOVER: [
      {
        guard: 'failoverRefusedRemoteAhead',
        actions: 'recordJudgement',
        meta: beyond('refuse a promotion that loses acknowledged writes (SRDF/Star, DRBD)', 'judge: site 3 holds updates site 2 lacks; promotion refused', [18]),
      },
      {
        guard: 'failoverForcedRemoteAhead',
        actions: 'failover',
        meta: beyond('forced takeover with data loss (TrueCopy horctakeover -S)', 'forced failover over site 3 ahead: site 3 needs a full copy', [18, 29]),
      },
      {
        guard: 'failoverNoUpdateRequired',
        actions: 'failover',
        meta: claimed([18, 28, 29, 30], 'failover; judge: site 3 has everything, no update required'),
      },
      {
        guard: 'failoverDeltaResync',
        actions: 'failover',
        meta: claimed([18, 19, 20, 29, 30], "failover; judge: site 2's journal covers site 3, delta resync"),
      },
      {
        guard: 'failoverFullCopy',
        actions: 'failover',
        meta: beyond('full-copy fallback when the journal no longer covers (UR delta resync failure)', "failover; judge: site 2's journal lacks entries, full copy", [18, 29, 30]),
      },
      {
        guard: 'failoverRemoteUnreachable',
        actions: 'failover',
        meta: beyond('takeover with the remote down or cut off; judged when it is reachable again (SRDF/Star)', 'failover with site 3 down or behind a cut link 2-3: judged when site 2 reaches it', [29]),
      },
    ],
    RESYNC_SITE: [
      {
        guard: { type: 'resyncSite', params: { site: 1 } },
        actions: 'resyncSite',
        meta: claimed([29, 30, 31, 32], 'site 1 copies every differing block from site 2, then follows it: reversed sync'),
      },
      {
        guard: { type: 'resyncSite', params: { site: 2 } },
        actions: 'resyncSite',
        meta: beyond('differential resync from the changed-block record (TrueCopy pairresync)', 'site 2 copies every differing block from site 1, then follows it'),
      },
    ],
    DELTA_RESYNC: {
      guard: 'deltaResyncAccepted',
      actions: 'deltaResync',
      meta: claimed([19, 20, 23, 30], "delta resync: site 3 reads just the missing entries from the source's journal into its own journal; its next restore applies them"),
    },
    FULL_COPY: {
      guard: 'fullCopyAccepted',
      actions: 'fullCopy',
      meta: beyond('full copy (initial copy of every product)', "full copy: site 3's volumes become the source's"),
    },
    FAILBACK: [
      {
        guard: { type: 'failbackWith', params: { verdict: 'noUpdateRequired' } },
        actions: 'failback',
        meta: beyond('planned failback (UR 3DC, SRDF/Star switch)', 'failback; site 3 already has everything', [31]),
      },
      {
        guard: { type: 'failbackWith', params: { verdict: 'deltaResync' } },
        actions: 'failback',
        meta: beyond("planned failback with delta resync from site 1's journal", "failback; delta resync from site 1's journal (site 2's update numbers)", [31]),
      },
      {
        guard: { type: 'failbackWith', params: { verdict: 'fullCopy' } },
        actions: 'failback',
        meta: beyond('planned failback, full copy when the journal no longer covers', "failback; site 1's journal lacks entries, full copy"),
      },
    ],
          },
        },
      },
    },
    site1: syncMemberRegion(1),
    site2: syncMemberRegion(2),
    site3: region('copyingFromSite1', {
      copyingFromSite1: {
        description: "pulls site 1's journal into its own and restores it in update-number order (claims 7-11)",
        on: { FAIL_SITE: site3Lost, CUT_LINK: site3Lost.slice(1), HOST_WRITE: site3Overflow, FAILOVER: [...failoverJudged(''), site3CutOffAtFailover] },
      },
      copyingFromSite2: {
        description: "pulls site 2's journal after failover or while the pair is reversed (claims 22-24, 30, 36-38)",
        on: {
          FAIL_SITE: site3Lost,
          CUT_LINK: site3Lost.slice(1),
          HOST_WRITE: site3Overflow,
          FAILBACK: [
            ['copyingFromSite1', g('failbackJudged', { outcome: 'noUpdateRequired' }), 'failback; site 3 has everything and copies from site 1 again'],
            ['deltaResync', g('failbackJudged', { outcome: 'deltaResync' }), "failback; delta resync from site 1's journal (claim 31)"],
            ['needsFullCopy', g('failbackJudged', { outcome: 'fullCopy' }), "failback; site 1's journal lacks entries, full copy"],
          ],
        },
      },
      awaitingJudgement: {
        description: 'up, cut off from its source: judged against the source journal when it is reachable again (claim 18)',
        on: {
          FAIL_SITE: site3Lost.slice(0, 1),
          RECOVER_SITE: [
            ['copyingFromSite1', g('site3JudgedOnReattach', { to: 'copyingFromSite1' }), "site 1 reachable again; judge: site 1's journal covers"],
            ['copyingFromSite2', g('site3JudgedOnReattach', { to: 'copyingFromSite2' }), "site 2 reachable again; judge: site 2's journal covers"],
            ['needsFullCopy', g('site3JudgedOnReattach', { to: 'needsFullCopy' }), "source reachable again; judge: its journal lacks entries, full copy"],
          ],
          RESTORE_LINK: [
            ['copyingFromSite1', g('site3JudgedOnReattach', { to: 'copyingFromSite1' }), "link to site 1 restored; judge: site 1's journal covers"],
            ['copyingFromSite2', g('site3JudgedOnReattach', { to: 'copyingFromSite2' }), "link to site 2 restored; judge: site 2's journal covers"],
            ['needsFullCopy', g('site3JudgedOnReattach', { to: 'needsFullCopy' }), "link restored; judge: the source's journal lacks entries, full copy"],
          ],
          HOST_WRITE: site3Overflow,
          FAILOVER: failoverJudged(''),
        },
      },
      deltaResync: {
        description: "judged: reads just the missing entries from the source's journal (claims 19, 20)",
        on: {
          FAIL_SITE: site3Lost,
          CUT_LINK: site3Lost.slice(1),
          HOST_WRITE: site3Overflow,
          DELTA_RESYNC: [
            ['copyingFromSite1', g('deltaResyncCompletes', { source: 1 }), "delta resync done; pulls resume from site 1"],
            ['copyingFromSite2', g('deltaResyncCompletes', { source: 2 }), "delta resync done; pulls resume from site 2 (claims 19, 20, 22)"],
          ],
          // In delta resync site 3 lacks entries that site 2 (in step with site 1) holds: never "nothing missing".
          FAILOVER: [...failoverJudged('deltaResync').filter(([target]) => target !== 'copyingFromSite2'), site3CutOffAtFailover],
        },
      },
      needsFullCopy: {
        description: "its source's journal lost entries it needs: only a full copy brings it back (P7)",
        on: {
          FAIL_SITE: site3Lost.slice(0, 1),
          FULL_COPY: [
            ['copyingFromSite1', g('fullCopyCompletes', { source: 1 }), "full copy from site 1 done"],
            ['copyingFromSite2', g('fullCopyCompletes', { source: 2 }), "full copy from site 2 done"],
          ],
          FAILOVER: [...failoverJudged('needsFullCopy'), site3CutOffAtFailover],
        },
      },
      failed: {
        description: 'down: its journal and volumes survive',
        on: {
          RECOVER_SITE: [
            ['copyingFromSite1', g('site3Returns', { to: 'copyingFromSite1' }), "site 3 returns; judge: site 1's journal covers"],
            ['copyingFromSite2', g('site3Returns', { to: 'copyingFromSite2' }), "site 3 returns; judge: site 2's journal covers"],
            ['awaitingJudgement', g('site3Returns', { to: 'awaitingJudgement' }), 'site 3 returns, its source unreachable: judged later'],
            ['needsFullCopy', g('site3Returns', { to: 'needsFullCopy' }), 'site 3 returns and needs a full copy'],
          ],
        },
      },
    }),
    syncPair: region('inSync', {
      inSync: {
        description: 'PAIR: site 1 primary, site 2 in step (claims 2-6)',
        on: {
          FAIL_SITE: lost('a member fails: the pair is suspended (TrueCopy PSUE)'),
          CUT_LINK: lost('link 1-2 cut: the pair is suspended'),
          FAILOVER: [['resyncing', 'failoverStalesSite1', 'failover with site 1 fenced and reachable: site 1 must be resynced from site 2 (claim 29)']],
        },
      },
      suspended: {
        description: 'the primary serves alone; the secondary is unreachable',
        on: {
          RECOVER_SITE: [['resyncing', 'syncLinkRegained', 'the secondary is back: it must be resynced']],
          RESTORE_LINK: [['resyncing', 'syncLinkRegained', 'link 1-2 restored: the secondary must be resynced']],
        },
      },
      resyncing: {
        description: 'COPY pending: the secondary is back and waits for RESYNC_SITE',
        on: {
          FAIL_SITE: lost('lost again during resync'),
          CUT_LINK: lost('link 1-2 cut during resync'),
          RESYNC_SITE: [
            ['inSync', g('resyncCompletes', { site: 2 }), 'site 2 resynced from site 1: in step'],
            ['reversed', g('resyncCompletes', { site: 1 }), 'site 1 resynced from site 2: the synchronous copy is reversed (claims 29-32)'],
          ],
        },
      },
      reversed: {
        description: 'PAIR, reversed: site 2 primary, site 1 in step (claims 32-35)',
        on: {
          FAIL_SITE: lost('a member of the reversed pair fails'),
          CUT_LINK: lost('link 1-2 cut: the reversed pair is suspended'),
          FAILBACK: [['inSync', 'failbackTakesEffect', 'failback: site 1 primary again']],
        },
      },
    }),
    asyncPair: region('copying', {
      copying: {
        description: 'site 3 pulls from the source and restores (claims 7-9, 22-24, 36-38)',
        on: {
          FAIL_SITE: [['suspended', 'asyncLinkLost', 'the source or site 3 fails']],
          CUT_LINK: [['suspended', 'asyncLinkLost', 'the link between source and site 3 is cut']],
          HOST_WRITE: [['suspendedOverflow', 'sourceJournalOverflows', "the source's journal overflows (UR PFUS)"]],
          FAILOVER: [
            ['deltaResync', g('failoverJudged', { outcome: 'deltaResync' }), 'failover judge: delta resync'],
            ['fullCopy', g('failoverJudged', { outcome: 'fullCopy' }), 'failover judge: full copy'],
            ['suspended', g('failoverJudged', { outcome: 'remoteUnreachable' }), 'failover with link 2-3 cut: judged when it is restored'],
          ],
          FAILBACK: [
            ['deltaResync', g('failbackJudged', { outcome: 'deltaResync' }), "failback: site 3 needs entries from site 1's journal (claim 31)"],
            ['fullCopy', g('failbackJudged', { outcome: 'fullCopy' }), "failback: site 1's journal lacks entries"],
          ],
        },
      },
      suspended: {
        description: 'source or site 3 unreachable; the judge decides when they reach each other',
        on: {
          RECOVER_SITE: [
            ['copying', g('asyncLinkRegained', { outcome: 'covered' }), 'judged on return: journals cover site 3 (claims 18, 28)'],
            ['fullCopy', g('asyncLinkRegained', { outcome: 'fullCopy' }), 'judged on return: full copy needed'],
          ],
          RESTORE_LINK: [
            ['copying', g('asyncLinkRegained', { outcome: 'covered' }), 'judged on reattach: journals cover site 3'],
            ['fullCopy', g('asyncLinkRegained', { outcome: 'fullCopy' }), 'judged on reattach: full copy needed'],
          ],
          HOST_WRITE: [['suspendedOverflow', 'sourceJournalOverflows', 'the source journal overflows while suspended']],
          FAILOVER: [
            ['copying', g('failoverJudged', { outcome: 'noUpdateRequired' }), 'failover judge: nothing missing (claim 28)'],
            ['deltaResync', g('failoverJudged', { outcome: 'deltaResync' }), 'failover judge: delta resync (claims 18-20)'],
            ['fullCopy', g('failoverJudged', { outcome: 'fullCopy' }), 'failover judge: full copy'],
          ],
        },
      },
      suspendedOverflow: {
        description: 'PFUS: the source journal lost entries site 3 needs: full copy required (P7)',
        on: {
          FULL_COPY: [['copying', 'fullCopyCompletes', 'full copy done']],
          FAILOVER: [
            ['copying', g('failoverJudged', { outcome: 'noUpdateRequired' }), 'failover judge: nothing missing'],
            ['deltaResync', g('failoverJudged', { outcome: 'deltaResync' }), "failover: site 2's journal covers, delta resync"],
            ['fullCopy', g('failoverJudged', { outcome: 'fullCopy' }), 'failover: full copy from site 2'],
            ['suspended', g('failoverJudged', { outcome: 'remoteUnreachable' }), 'failover while site 3 is down or cut off: judged when site 2 reaches it'],
          ],
        },
      },
      deltaResync: {
        description: 'judged: site 3 reads just the missing entries (claims 19, 20)',
        on: {
          FAIL_SITE: [['suspended', 'asyncLinkLost', 'the source or site 3 fails during the delta resync']],
          CUT_LINK: [['suspended', 'asyncLinkLost', 'the link is cut during the delta resync']],
          HOST_WRITE: [['suspendedOverflow', 'sourceJournalOverflows', 'the source journal overflows during the delta resync']],
          DELTA_RESYNC: [
            ['copying', g('deltaResyncCompletes', { source: 1 }), 'delta resync done; pulls from site 1'],
            ['copying', g('deltaResyncCompletes', { source: 2 }), 'delta resync done; pulls from site 2 (claims 19, 20, 22)'],
          ],
          // Site 3 lacks entries site 2 holds (in step with site 1): never "nothing missing".
          FAILOVER: [
            ['fullCopy', g('failoverJudged', { outcome: 'fullCopy' }), 'failover judge: full copy'],
            ['suspended', g('failoverJudged', { outcome: 'remoteUnreachable' }), 'failover with link 2-3 cut: judged when it is restored'],
          ],
        },
      },
      fullCopy: {
        description: "judged: site 3's volumes must be copied whole",
        on: {
          FULL_COPY: [['copying', 'fullCopyCompletes', 'full copy done']],
          FAILOVER: [
            ['deltaResync', g('failoverJudged', { outcome: 'deltaResync' }), "failover before the copy: site 2's journal covers, delta resync"],
            ['suspended', g('failoverJudged', { outcome: 'remoteUnreachable' }), 'failover while site 3 is down or cut off: judged when site 2 reaches it'],
          ],
        },
      },
    }),
    standbyPair: region('hold', {
      hold: {
        description: "HOLD: the secondary's journal keeps every entry site 3 lacks",
        on: {
          FAIL_SITE: [['none', 'syncLinkLost', 'the sync pair leaves step: no standby']],
          CUT_LINK: [['none', 'syncLinkLost', 'the sync pair leaves step: no standby']],
          FAILOVER: [['none', 'failoverPromotesSite2', 'failover: the sync pair is not in step']],
          HOST_WRITE: [['holdError', g('standbyCovers', { covers: false }), "the secondary's journal no longer covers site 3 (HLDE)"]],
          FAILBACK: [['holdError', g('failbackStandby', { covers: false }), "failback: site 2's journal does not cover site 3"]],
        },
      },
      holdError: {
        description: 'HLDE: a failover now would need a full copy',
        on: {
          FAIL_SITE: [['none', 'syncLinkLost', 'the sync pair leaves step: no standby']],
          CUT_LINK: [['none', 'syncLinkLost', 'the sync pair leaves step: no standby']],
          FAILOVER: [['none', 'failoverPromotesSite2', 'failover: the sync pair is not in step']],
          HOST_WRITE: [['hold', g('standbyCovers', { covers: true }), "the secondary's journal covers site 3 again (HOLD)"]],
          PULL_JOURNAL: [['hold', g('standbyCovers', { covers: true }), 'site 3 caught up past the gap (HOLD)']],
          DELTA_RESYNC: [['hold', g('standbyCovers', { covers: true }), 'site 3 caught up past the gap (HOLD)']],
          FULL_COPY: [['hold', g('standbyCovers', { covers: true }), 'site 3 caught up past the gap (HOLD)']],
          FAILBACK: [['hold', g('failbackStandby', { covers: true }), "failback: site 2's journal covers site 3 (HOLD)"]],
        },
      },
      none: {
        description: 'no standby pair: the sync pair is not in step',
        on: {
          RESYNC_SITE: [
            ['hold', g('resyncStandby', { covers: true }), 'pair in step again, site 3 has everything (HOLD)'],
            ['holdError', g('resyncStandby', { covers: false }), 'pair in step again, the journal does not cover site 3 (HLDE)'],
          ],
        },
      },
    }),
  },
});

/** The machine's type, for the explorer and the harness. */
export type ReplicationMachine = typeof replicationMachine;
