/**
 * The decisions this project took where the 40 claims are silent (`shared/DESIGN.md` and the **Decision**
 * paragraphs of `model/README.md`), each with the product behaviour it follows and a selector of the chart
 * transitions that carry it out. The review page links every decision to those transitions; a test checks
 * that every selector still finds a transition, so a renamed guard cannot silently unlink a decision.
 */
import type { Chart } from './chart.ts';

/** Picks transitions of the chart: by exact id, by guard name (any parameters), or by region move. */
export type TransitionSelector = { id: string } | { guard: string } | { moveTo: string } | { moveFrom: string };

/** One decision. */
export interface Decision {
  /** Stable anchor, `decision-<key>`. */
  key: string;
  title: string;
  /** What was decided, in a sentence or two. */
  text: string;
  /** Where it is written down. */
  source: string;
  /** The product behaviour followed. */
  follows: string;
  select: TransitionSelector[];
}

/** Every decision, in the order of DESIGN.md and model/README.md. */
export const decisions: readonly Decision[] = [
  {
    key: 'progress-forwarding',
    title: "Site 2 keeps its journal until site 3 has the entries",
    text: "A source trims only what site 3 has restored; site 1 forwards site 3's progress with every sync write, so site 2's journal still holds what a delta resync will need.",
    source: 'DESIGN.md 3; model/README.md "Journals" (Trimming)',
    follows: 'Hitachi UR 3DC delta resync, SRDF/Star',
    select: [{ guard: 'hostWriteInSync' }, { guard: 'hostWriteReversed' }, { guard: 'pullFromSite1' }, { guard: 'pullFromSite2' }],
  },
  {
    key: 'overflow',
    title: 'A full journal restarts and suspends what depended on it, never silently',
    text: 'Appending to a full sync-member journal discards its entries and appends the new one; host writes never fail because of a journal. The async pair goes to suspendedOverflow (a full copy follows), the standby pair to hold-error.',
    source: 'DESIGN.md 3; model/README.md "Journals" (Overflow, P7)',
    follows: 'Hitachi UR PFUS / journal full; HLDE',
    select: [{ moveTo: 'asyncPair.suspendedOverflow' }, { id: 'standbyPair.hold -> holdError' }, { guard: 'fullCopyAccepted' }],
  },
  {
    key: 'standby-hold',
    title: 'The standby pair (site 2 to site 3) exists from the start, in HOLD',
    text: "It copies nothing; it is derived: hold while the secondary's journal covers site 3, hold-error when it does not, none while the sync pair is not in step.",
    source: 'DESIGN.md 3; model/README.md "Sites, pairs, roles"',
    follows: 'Hitachi HOLD / HLDE',
    select: [{ moveTo: 'standbyPair.hold' }, { moveTo: 'standbyPair.holdError' }, { moveTo: 'standbyPair.none' }],
  },
  {
    key: 'async-source',
    title: 'Site 3 always pulls from the sync primary',
    text: 'Site 1 at start, site 2 after failover, site 1 again after failback. Site 3 never pulls more than fits in its journal (back-pressure), so its journal never overflows.',
    source: 'model/README.md "Sites, pairs, roles" and "Journals"',
    follows: 'UR / SRDF/A journal pull',
    select: [{ guard: 'pullFromSite1' }, { guard: 'pullFromSite2' }],
  },
  {
    key: 'full-copy-fallback',
    title: 'A full copy when the journal no longer covers site 3',
    text: "If the new source's journal lacks an entry site 3 needs, the judge says fullCopy and the async pair waits for FULL_COPY; a delta resync is never attempted on a gap (P5).",
    source: 'DESIGN.md 4; model/README.md "Covering and judging"',
    follows: 'UR delta resync failure falls back to a full copy',
    select: [{ guard: 'failoverFullCopy' }, { id: 'asyncPair.deltaResync -> fullCopy' }, { guard: 'fullCopyAccepted' }],
  },
  {
    key: 'delta-resync-journal',
    title: "A delta resync goes through site 3's journal, which never overflows",
    text: "Site 3 reads the entries it lacks from the source's journal into its own journal, after what that holds, and restores them at its next RESTORE_JOURNAL (claim 20); when they would not fit after what it holds, it restores that first. The source trims only through what site 3 restored.",
    source: 'model/README.md "Delta resync"',
    follows: 'Hitachi UR 3DC delta resync (the journal copy resumes from the remote journal)',
    select: [{ guard: 'deltaResyncAccepted' }],
  },
  {
    key: 'remote-ahead',
    title: 'Refuse a promotion that would lose acknowledged writes',
    text: 'If site 3 holds updates site 2 lacks (possible only after the sync pair was suspended), FAILOVER is refused and the judgement recorded, unless the operator forces it; then site 3 needs a full copy and the loss is reported.',
    source: 'DESIGN.md 4; model/README.md "Failover"',
    follows: 'SRDF/Star, DRBD; TrueCopy horctakeover -S when forced',
    select: [{ guard: 'failoverRefusedRemoteAhead' }, { guard: 'failoverForcedRemoteAhead' }],
  },
  {
    key: 'takeover-point',
    title: 'Site 3 down at failover is judged when it returns',
    text: "Site 2's last update number at failover is kept until site 3 has been judged against site 2, so a site 3 that holds updates site 2 never had is still found out.",
    source: 'model/README.md "Covering and judging" (takeover point)',
    follows: 'SRDF/Star takeover with the remote down',
    select: [{ guard: 'failoverRemoteUnreachable' }, { id: 'asyncPair.suspended -> fullCopy' }, { id: 'asyncPair.suspended -> copying' }],
  },
  {
    key: 'fence-policy',
    title: 'Fence policy when site 2 is unreachable: refuse or keep writing',
    text: "Under refuse, site 1 acknowledges nothing that is not on two sites; under keep-writing it serves host 1 alone, records the changed blocks for a differential resync and counts the writes acknowledged on one site. The policy governs site 1 as primary only.",
    source: 'DESIGN.md 7; model/README.md "Host write"',
    follows: 'TrueCopy fence level data / never; DRBD fencing',
    select: [{ guard: 'hostWriteAloneAtSite1' }, { guard: 'hostWriteAloneAtSite2' }, { id: 'RESYNC_SITE#1' }],
  },
  {
    key: 'single-writer',
    title: 'Promotion only with site 1 failed or fenced (single writer, P4)',
    text: 'FAILOVER requires site 1 failed or fenced; FENCE_SITE is one-way. At most one site ever accepts host writes.',
    source: 'DESIGN.md 7; model/README.md "Events"',
    follows: 'STONITH; TrueCopy S-VOL takeover',
    select: [{ guard: 'fenceAccepted' }, { id: 'syncPair.inSync -> resyncing' }],
  },
  {
    key: 'returning-site',
    title: 'A returning site resyncs every differing block before it follows',
    text: "Site 1 back after a failover accepts no host writes; RESYNC_SITE copies every block that differs from site 2 (written at site 2 since, or at site 1 and never acknowledged), then it follows as site 2's synchronous secondary.",
    source: 'DESIGN.md 5; model/README.md "Resync of a sync member"',
    follows: 'TrueCopy pairresync (differential), SRDF/S',
    select: [{ id: 'site1.failed -> resyncing' }, { guard: 'resyncSite' }, { moveTo: 'syncPair.resyncing' }],
  },
  {
    key: 'link-cut',
    title: 'A cut link looks like a failure of the far site (rules R1, R2)',
    text: 'Failures, returns and link cuts change reachability; the sync pair suspends and resyncs (R1) and the async pair suspends and is judged on return (R2) the same way for both.',
    source: 'DESIGN.md 7; model/README.md "Failures, returns and link cuts"',
    follows: 'every product',
    select: [{ guard: 'linkAccepted' }, { id: 'FAIL_SITE#1' }, { id: 'FAIL_SITE#2' }, { id: 'RECOVER_SITE#1' }, { id: 'RECOVER_SITE#2' }],
  },
  {
    key: 'failback',
    title: 'Failback: a planned return to the original direction without data loss',
    text: "Host 2 quiesced, site 1 primary again, site 3 switches back to site 1 with a delta resync from site 1's journal (which holds site 2's update numbers, claim 31), or a full copy if it no longer covers.",
    source: 'DESIGN.md 6; model/README.md "Failback"',
    follows: 'UR 3DC and SRDF/Star planned switch',
    select: [{ guard: 'failbackWith' }, { id: 'syncPair.reversed -> inSync' }],
  },
  {
    key: 'claim-35',
    title: 'Claim 35 is read as depending on claim 34',
    text: 'Its text says "according to claim 35"; it refines the reversed synchronous write of claims 33-34.',
    source: 'model/README.md (opening paragraph); model/claims.ts',
    follows: 'reading of the claim set',
    select: [{ guard: 'hostWriteReversed' }],
  },
];

/** The ids of the chart transitions a decision selects, in chart order. */
export function decisionTransitions(chart: Chart, decision: Decision): string[] {
  const all = [
    ...chart.rootTransitions.map((variant) => ({ id: variant.id, guard: variant.guardSpec.type, from: null as string | null, to: null as string | null })),
    ...chart.regions.flatMap((region) => region.moves.map((move) => ({ id: move.id, guard: move.triggers[0]?.guardSpec.type ?? '', from: move.source, to: move.target }))),
  ];
  const chosen = new Set<string>();
  for (const selector of decision.select) {
    for (const transition of all) {
      const hit =
        ('id' in selector && transition.id === selector.id) ||
        ('guard' in selector && transition.guard === selector.guard && transition.from === null) ||
        ('moveTo' in selector && transition.to === selector.moveTo) ||
        ('moveFrom' in selector && transition.from === selector.moveFrom);
      if (hit) chosen.add(transition.id);
    }
  }
  return all.map((transition) => transition.id).filter((id) => chosen.has(id));
}
