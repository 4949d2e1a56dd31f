/**
 * The statechart that formally specifies the three-site system (XState v5).
 *
 * Shape: the root is a parallel state with one region per storage system (`site1`, `site2`, `site3`: their
 * modes) and one per pair (`syncPair`, `asyncPair`, `standbyPair`). Every event of `model/events.ts` is a
 * transition on the root, split into guarded variants (one per outcome, e.g. FAILOVER's judge verdicts), and
 * each variant's `meta` names the claims it implements or the product behaviour it follows beyond the claims.
 * The regions follow the abstract state through eventless transitions whose `meta` says what moves them, so
 * the diagram shows every mode and pair relation and every way between them.
 *
 * Guards and actions are named and implemented in `semantics.ts`; the configuration below is plain data, so
 * the chart can be drawn and imported into XState's visual tools.
 */
import { assign, setup } from 'xstate';
import type { ModelEvent } from './events.ts';
import type { AsyncPairState, SiteMode, StandbyPairState, SyncPairState } from './observation.ts';
import { validateParams, type ModelParams } from './params.ts';
import { apply, check, failbackVerdict, failoverRefusedByJudge, failoverVerdict } from './semantics.ts';
import { initialContext, type ModelContext } from './state.ts';

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

/** Builds a region whose states mirror one field of the context, with the given ways between them. */
function mirrorRegion<S extends string>(
  guard: string,
  initial: S,
  states: Partial<Record<S, { description: string; to: Partial<Record<S, TransitionMeta>> }>>,
  params: Record<string, unknown> = {},
) {
  // Built from the table below, so typed loosely: the MIRROR property and the chart tests check its shape.
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const config: Record<string, any> = {};
  for (const [name, state] of Object.entries(states) as [S, { description: string; to: Partial<Record<S, TransitionMeta>> }][]) {
    config[name] = {
      description: state.description,
      always: (Object.entries(state.to) as [S, TransitionMeta][]).map(([target, meta]) => ({
        target,
        guard: { type: guard, params: { ...params, value: target } },
        meta,
      })),
    };
  }
  return { initial, states: config };
}

const beyond = (beyondClaims: string, description: string, claims: number[] = []): TransitionMeta => ({
  claims,
  beyondClaims,
  description,
});
const claimed = (claims: number[], description: string): TransitionMeta => ({ claims, description });

/** The modes of a sync member and the ways between them (`model/README.md`, "Modes"). */
function syncMemberRegion(site: 1 | 2) {
  const other = site === 1 ? 2 : 1;
  return mirrorRegion<SiteMode>(
    'siteModeIs',
    'normal',
    {
      normal: {
        description: site === 1 ? 'primary for host 1, or a secondary in step' : 'secondary in step, or primary for host 2',
        to: {
          failed: site === 1 ? claimed([18, 28, 29], 'site 1 fails') : beyond('secondary or primary failure (TrueCopy PSUE)', 'site 2 fails'),
          resyncing: beyond('stale secondary must be resynced (TrueCopy PSUS to COPY)', `site ${site} reachable again as a stale secondary`),
          ...(site === 2 ? { syncReversed: claimed([30, 32], 'the sync pair is reversed (site 1 resynced)') } : {}),
        },
      },
      failed: {
        description: 'down: volumes and journal survive',
        to: {
          normal: beyond('primary restart without takeover', `site ${site} returns as primary`),
          resyncing: site === 1 ? claimed([29], 'site 1 returns and must be resynced from site 2') : beyond('secondary returns stale', 'site 2 returns and must be resynced'),
        },
      },
      resyncing: {
        description: 'up, stale: waits for RESYNC_SITE before it follows the primary',
        to: {
          failed: beyond('failure during resync', `site ${site} fails while waiting for resync`),
          ...(site === 2
            ? { normal: beyond('differential resync completes (TrueCopy pairresync)', 'site 2 resynced, pair in sync') }
            : { syncReversed: claimed([29, 30, 31, 32], 'site 1 resynced from site 2: reversed synchronous copy') }),
        },
      },
      syncReversed: {
        description: 'member of the reversed pair: site 2 primary, site 1 secondary',
        to: {
          failed: beyond('failure of a reversed member', `site ${site} fails`),
          normal: beyond('failback, or loss of the reversed peer', `pair no longer reversed (failback or site ${other} lost)`),
        },
      },
    },
    { site },
  );
}

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
    // Failover and the judge's outcomes (claims 16-20, 28, 29).
    failoverRefusedRemoteAhead: ({ context, event }) => accepted(context, event) && failoverRefusedByJudge(context, event),
    failoverForcedRemoteAhead: failoverWith('remoteAhead', true),
    failoverNoUpdateRequired: failoverWith('noUpdateRequired'),
    failoverDeltaResync: failoverWith('deltaResync'),
    failoverFullCopy: failoverWith('fullCopy'),
    failoverRemoteDown: failoverWith(null),
    resyncSite: ({ context, event }, params: { site: 1 | 2 }) =>
      event.type === 'RESYNC_SITE' && event.site === params.site && accepted(context, event),
    deltaResyncAccepted: ({ context, event }) => accepted(context, event),
    fullCopyAccepted: ({ context, event }) => accepted(context, event),
    failbackWith: ({ context, event }, params: { verdict: string }) =>
      accepted(context, event) && failbackVerdict(context) === params.verdict,
    // Region mirrors.
    siteModeIs: ({ context }, params: { site: 1 | 2 | 3; value: SiteMode }) =>
      context.sites[params.site].mode === params.value,
    syncPairIs: ({ context }, params: { value: SyncPairState }) => context.syncPair === params.value,
    asyncPairIs: ({ context }, params: { value: AsyncPairState }) => context.asyncPair === params.value,
    standbyPairIs: ({ context }, params: { value: StandbyPairState }) => context.standbyPair === params.value,
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
  on: {
    HOST_WRITE: [
      {
        guard: 'hostWriteInSync',
        actions: 'journalAndReplicate',
        meta: claimed([1, 2, 3, 4, 5, 6, 10, 12, 13, 15, 17], 'host 1 write: site 1 numbers it, site 2 journals it, then site 1; ack after both'),
      },
      {
        guard: 'hostWriteReversed',
        actions: 'journalAndReplicate',
        meta: claimed([21, 25, 27, 31, 32, 33, 34, 35, 39], 'host 2 write, reversed: site 2 numbers it, site 1 journals it with that number; ack after site 1'),
      },
      {
        guard: 'hostWriteAloneAtSite1',
        actions: 'journalAlone',
        meta: beyond('fence policy keep-writing (TrueCopy fence level never, DRBD fencing dont-care)', 'host 1 write while site 2 is unreachable: changed-block record, acked on one site', [3, 4]),
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
        meta: claimed([1, 7, 8, 9, 11, 15, 17], 'site 3 pulls the next batch from site 1 at its interval; site 1 trims what site 3 restored'),
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
      meta: claimed([1, 8, 11, 14, 23, 37], 'site 3 restores its journal into its volumes in update-number order'),
    },
    FAIL_SITE: [
      { guard: { type: 'failSite', params: { site: 1 } }, actions: 'failSite', meta: claimed([16, 18, 28, 29], 'site 1 fails') },
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
        meta: beyond('forced takeover with data loss (TrueCopy horctakeover -S)', 'forced failover over site 3 ahead: site 3 needs a full copy', [16, 18, 29]),
      },
      {
        guard: 'failoverNoUpdateRequired',
        actions: 'failover',
        meta: claimed([16, 18, 28, 29, 30], 'failover; judge: site 3 has everything, no update required'),
      },
      {
        guard: 'failoverDeltaResync',
        actions: 'failover',
        meta: claimed([16, 18, 19, 20, 29, 30], "failover; judge: site 2's journal covers site 3, delta resync"),
      },
      {
        guard: 'failoverFullCopy',
        actions: 'failover',
        meta: beyond('full-copy fallback when the journal no longer covers (UR delta resync failure)', "failover; judge: site 2's journal lacks entries, full copy", [16, 18, 29, 30]),
      },
      {
        guard: 'failoverRemoteDown',
        actions: 'failover',
        meta: beyond('takeover with the remote down; judged when it returns (SRDF/Star)', 'failover with site 3 down', [16, 29]),
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
      meta: claimed([19, 20, 23, 30], "delta resync: site 3 reads just the missing entries from the source's journal and restores them"),
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
  states: {
    site1: syncMemberRegion(1),
    site2: syncMemberRegion(2),
    site3: mirrorRegion<SiteMode>(
      'siteModeIs',
      'normal',
      {
        normal: {
          description: 'pulls from its source at the interval and restores in order',
          to: {
            failed: beyond('remote failure', 'site 3 fails'),
            resyncing: claimed([18, 19, 20], 'judged: site 3 needs a delta resync or a full copy'),
          },
        },
        failed: {
          description: 'down: journal and volumes survive',
          to: {
            normal: beyond('remote returns and resumes', 'site 3 returns, journals cover it'),
            resyncing: beyond('remote returns and needs a full copy', 'site 3 returns, needs a full copy'),
          },
        },
        resyncing: {
          description: 'waiting for a delta resync or a full copy',
          to: {
            normal: claimed([19, 20], 'resync done: pulls resume from the source'),
            failed: beyond('failure during resync', 'site 3 fails during resync'),
          },
        },
      },
      { site: 3 },
    ),
    syncPair: mirrorRegion<SyncPairState>('syncPairIs', 'inSync', {
      inSync: {
        description: 'site 1 primary, site 2 in step (claims 2-6)',
        to: {
          suspended: beyond('pair suspended on secondary loss (TrueCopy PSUE)', 'site 2 unreachable from site 1'),
          resyncing: claimed([29], 'failover with site 1 fenced and reachable: site 1 must be resynced from site 2'),
        },
      },
      suspended: {
        description: 'the primary serves alone; the secondary is unreachable',
        to: { resyncing: beyond('secondary back, must resync', 'the secondary is reachable again') },
      },
      resyncing: {
        description: 'the secondary is back and waits for RESYNC_SITE',
        to: {
          suspended: beyond('lost again during resync', 'the secondary is unreachable again'),
          inSync: beyond('differential resync completes', 'site 2 resynced from site 1'),
          reversed: claimed([29, 30, 31, 32], 'site 1 resynced from site 2: reversed synchronous copy'),
        },
      },
      reversed: {
        description: 'site 2 primary, site 1 in step (claims 32-35)',
        to: {
          suspended: beyond('reversed pair suspended on loss of site 1', 'site 1 unreachable from site 2'),
          inSync: beyond('planned failback', 'failback: site 1 primary again'),
        },
      },
    }),
    asyncPair: mirrorRegion<AsyncPairState>('asyncPairIs', 'copying', {
      copying: {
        description: 'site 3 pulls from the source and restores (claims 7-9, 22-24, 36-38)',
        to: {
          suspended: beyond('async pair suspended when source or remote is lost', 'source or site 3 unreachable'),
          suspendedOverflow: beyond('journal full suspends the pair (UR PFUS)', 'source journal overflowed'),
          deltaResync: claimed([31], "failback: site 3 needs entries from site 1's journal"),
          fullCopy: beyond('failback full copy', "failback: site 1's journal lacks entries"),
        },
      },
      suspended: {
        description: 'source or site 3 unreachable; the judge decides on return',
        to: {
          copying: claimed([18, 28], 'judged on return: journals cover site 3'),
          fullCopy: beyond('judged on return: full copy', 'judged on return: full copy needed'),
          deltaResync: claimed([18, 19, 20], 'failover judge: delta resync'),
          suspendedOverflow: beyond('journal full while suspended (UR PFUS)', 'source journal overflowed'),
        },
      },
      suspendedOverflow: {
        description: 'the source journal lost entries site 3 needs: full copy required (P7)',
        to: {
          copying: beyond('full copy completes', 'full copy done'),
          deltaResync: claimed([18, 19, 20], "failover: site 2's journal covers, delta resync"),
          fullCopy: beyond('failover judge: full copy', 'failover: full copy from site 2'),
          suspended: beyond('takeover with the remote down (SRDF/Star)', 'failover while site 3 is down: judged when it returns'),
        },
      },
      deltaResync: {
        description: 'judged: site 3 reads just the missing entries (claims 19, 20)',
        to: {
          copying: claimed([19, 20, 22], 'delta resync done; pulls from the new source'),
          suspended: beyond('lost during delta resync', 'source or site 3 unreachable'),
          suspendedOverflow: beyond('journal full during delta resync', 'source journal overflowed'),
          fullCopy: beyond('delta resync impossible: full copy', 'journal no longer covers'),
        },
      },
      fullCopy: {
        description: "judged: site 3's volumes must be copied whole",
        to: {
          copying: beyond('full copy completes', 'full copy done'),
          deltaResync: claimed([18, 19, 20], "failover before the copy: site 2's journal covers, delta resync"),
          suspended: beyond('takeover with the remote down (SRDF/Star)', 'failover while site 3 is down: judged when it returns'),
        },
      },
    }),
    standbyPair: mirrorRegion<StandbyPairState>('standbyPairIs', 'hold', {
      hold: {
        description: "HOLD: the secondary's journal keeps every entry site 3 lacks",
        to: {
          holdError: beyond('HLDE: standby journal cannot cover site 3 (Hitachi)', "secondary's journal lacks an entry site 3 needs"),
          none: beyond('no standby while the sync pair is not in step', 'sync pair left step'),
        },
      },
      holdError: {
        description: 'HLDE: a failover now would need a full copy',
        to: {
          hold: beyond('standby journal covers site 3 again', 'site 3 caught up past the gap'),
          none: beyond('no standby while the sync pair is not in step', 'sync pair left step'),
        },
      },
      none: {
        description: 'no standby pair: the sync pair is not in step',
        to: {
          hold: beyond('standby re-established with the pair (HOLD)', 'sync pair in step again'),
          holdError: beyond('standby re-established in HLDE', 'sync pair in step, journal does not cover'),
        },
      },
    }),
  },
});

/** The machine's type, for the explorer and the harness. */
export type ReplicationMachine = typeof replicationMachine;
