/**
 * Coverage of a conformance run, in every dimension the best model-based testing tools report: the chart's
 * states, its transition definitions, the bounded graph's edges, transition pairs, guard outcomes and claims.
 * Items the bounded model cannot reach are listed apart with the reason, never counted as missed.
 */
import type { AnyStateNode, SnapshotFrom } from 'xstate';
import { claimCount } from '../model/claims.ts';
import type { ModelEvent } from '../model/events.ts';
import { byteRangeShapeOf, formatEvent } from '../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../model/machine.ts';
import { failedConditions, refusalConditionIds } from '../model/semantics.ts';
import { journalEntries, lastOf, receivedOf, secondaryOf, type ModelContext } from '../model/state.ts';
import { transitionDefinitions } from '../model/traceability.ts';

type Snapshot = SnapshotFrom<ReplicationMachine>;

/** Covered out of total, with what is missing and what cannot be reached. */
export interface CoverageFigure {
  covered: number;
  total: number;
  missing: string[];
  unreachable: { item: string; reason: string }[];
}

/** Every coverage dimension of a run. */
export interface CoverageReport {
  states: CoverageFigure;
  transitions: CoverageFigure;
  graphEdges: CoverageFigure;
  transitionPairs: CoverageFigure;
  guards: CoverageFigure;
  claims: CoverageFigure;
  /** Refusal conditions (`model/semantics.ts`) each taken where it alone refuses its event. */
  refusals: CoverageFigure;
  /** Journal-sensitive transitions taken at each fill of the journals they act on ({@link journalDepthItem}). */
  journalDepths: CoverageFigure;
  /** Host-write transitions taken with each shape of byte range ({@link byteRangeItem}). */
  byteRanges: CoverageFigure;
  /** Transition definitions, at the larger bounds (journals of 3 entries, pulls of 2, byte-range writes). */
  largerBoundsTransitions: CoverageFigure;
  /** Transition pairs, at the larger bounds. */
  largerBoundsPairs: CoverageFigure;
  /** Guard outcomes, at the larger bounds. */
  largerBoundsGuards: CoverageFigure;
}

/** What the planning explorations found reachable, per dimension (what a run's coverage is measured against). */
export interface ReachableItems {
  definitions: Set<string>;
  pairs: Set<string>;
  graphEdges: Set<string>;
  guardOutcomes: Set<string>;
  refusals: Set<string>;
  journalDepths: Set<string>;
  byteRanges: Set<string>;
}

/** How far behind its source site 3 is told apart in journal-depth items: 0 .. 3, then "4+" (entries). */
export const depthBehindEntriesMax = 4;
const behind = (n: number): string => (n >= depthBehindEntriesMax ? `${depthBehindEntriesMax}+` : String(n));

/**
 * The journal-depth item of an accepted event in a state: its root variant and the fill of the journals it
 * acts on (entries held, and how far site 3 is behind). These are what a bug in journal ranges (trimming the
 * wrong entries, a batch off by one, an overflow that keeps entries, a delta resync that reads too few)
 * depends on; with journals of one entry they never take more than two values. Failures and recoveries
 * count too: on the file backends they are a crash and a reopen of that journal. Null for events whose
 * effect does not depend on a journal's contents.
 */
export function journalDepthItem(context: ModelContext, event: ModelEvent, variant: string): string | null {
  const primary = context.sites[context.primary];
  const secondary = context.sites[secondaryOf(context)];
  const site3 = context.sites[3].pending.length;
  const received = receivedOf(context);
  switch (event.type) {
    case 'HOST_WRITE':
      return `${variant} [primary journal ${journalEntries(primary)}, secondary journal ${journalEntries(secondary)}]`;
    case 'PULL_JOURNAL':
      return `${variant} [source journal ${journalEntries(primary)}, site 3 journal ${site3}, site 3 behind ${behind(lastOf(context, context.primary) - received)}]`;
    case 'RESTORE_JOURNAL':
      return `${variant} [site 3 journal ${site3}]`;
    case 'DELTA_RESYNC':
      return `${variant} [source journal ${journalEntries(primary)}, site 3 behind ${behind(lastOf(context, context.primary) - received)}]`;
    case 'FAILOVER':
      return `${variant} [site 2 journal ${journalEntries(context.sites[2])}, site 3 behind ${behind(lastOf(context, 2) - received)}]`;
    case 'FAILBACK':
      return `${variant} [site 1 journal ${journalEntries(context.sites[1])}, site 3 behind ${behind(lastOf(context, 1) - received)}]`;
    // A failure at each fill of the failing site's journal: on the file backends a crash, whose torn tail
    // follows a journal of 0 .. 3 entries, and whose recovery reopens it.
    case 'FAIL_SITE':
    case 'RECOVER_SITE':
      return `${variant} [site ${event.site} journal ${event.site === 3 ? site3 : journalEntries(context.sites[event.site])}]`;
    default:
      return null;
  }
}

/** The byte-range item of an accepted host write: its root variant and the shape of its range. */
export function byteRangeItem(context: ModelContext, event: ModelEvent, variant: string): string | null {
  if (event.type !== 'HOST_WRITE') return null;
  const shape = byteRangeShapeOf(event, context.params.blockBytes);
  return shape === 'other' ? null : `${variant} ${shape}`;
}

/** The refusal condition that alone refuses an event in a state, or null (accepted, or refused for several reasons). */
export function refusalAloneItem(context: ModelContext, event: ModelEvent): string | null {
  const failed = failedConditions(context, event);
  return failed.length === 1 ? failed[0]! : null;
}

const definitions = transitionDefinitions(replicationMachine);
const rootIds = new Map(definitions.filter((info) => info.definition).map((info) => [info.definition!, info.id]));

/** Every leaf state of the chart, as `region.state`. */
export function chartStates(): string[] {
  const out: string[] = [];
  for (const region of Object.values(replicationMachine.root.states) as AnyStateNode[]) {
    for (const state of Object.keys(region.states)) out.push(`${region.key}.${state}`);
  }
  return out;
}

/** The root transition variants of one event type, in the order xstate tries them. */
function variantsOf(eventType: string) {
  return definitions.filter((info) => info.definition && info.event === eventType);
}

/** Accumulates coverage over many steps and paths. */
export class CoverageTracker {
  readonly states = new Set<string>();
  readonly transitions = new Set<string>();
  readonly graphEdges = new Set<string>();
  readonly pairs = new Set<string>();
  /** `guardId=true` / `guardId=false`. */
  readonly guardOutcomes = new Set<string>();
  readonly refusals = new Set<string>();
  readonly journalDepths = new Set<string>();
  readonly byteRanges = new Set<string>();
  private previousVariant: string | null = null;

  /** Call at the start of each path: pairs do not span paths. */
  startPath(initial: Snapshot): void {
    this.previousVariant = null;
    this.recordStates(initial);
  }

  /** Records one step of the model: the event, the states before and after, and the abstract keys. */
  recordStep(before: Snapshot, event: ModelEvent, after: Snapshot, abstractBefore: string, abstractAfter: string): void {
    const enabled = replicationMachine.getTransitionData(before, event);
    const taken = enabled.map((definition) => rootIds.get(definition)).find((id) => id !== undefined) ?? null;
    // xstate tries the variants in order: those before the taken one were false, the taken one true.
    for (const variant of variantsOf(event.type)) {
      if (variant.id === taken) {
        this.guardOutcomes.add(`${variant.id}=true`);
        break;
      }
      this.guardOutcomes.add(`${variant.id}=false`);
    }
    if (taken === null) {
      const alone = refusalAloneItem(before.context, event);
      if (alone !== null) this.refusals.add(alone);
      this.previousVariant = null;
      return;
    }
    const depth = journalDepthItem(before.context, event, taken);
    if (depth !== null) this.journalDepths.add(depth);
    const range = byteRangeItem(before.context, event, taken);
    if (range !== null) this.byteRanges.add(range);
    this.transitions.add(taken);
    if (this.previousVariant !== null) this.pairs.add(`${this.previousVariant} -> ${taken}`);
    this.previousVariant = taken;
    const from = before.value as unknown as Record<string, string>;
    const to = after.value as unknown as Record<string, string>;
    for (const region of Object.keys(to)) {
      if (from[region] !== to[region]) this.transitions.add(`${region}.${from[region]} -> ${to[region]}`);
    }
    this.graphEdges.add(`${abstractBefore} --${formatEvent(event)}--> ${abstractAfter}`);
    this.recordStates(after);
  }

  private recordStates(snapshot: Snapshot): void {
    for (const [region, state] of Object.entries(snapshot.value as unknown as Record<string, string>)) this.states.add(`${region}.${state}`);
  }

  /** Merges another tracker into this one (walk workers, shards). */
  merge(other: CoverageTracker): void {
    for (const key of ['states', 'transitions', 'graphEdges', 'pairs', 'guardOutcomes', 'refusals', 'journalDepths', 'byteRanges'] as const) {
      for (const item of other[key]) this[key].add(item);
    }
  }

  /**
   * The report against what the bounded models allow: `reachable` holds what the planning explorations
   * found (transition definitions, pairs, guard outcomes, refusals alone, journal depths, byte ranges) and
   * the abstract graph's edges; `larger`, what the larger bounds' plan found and the tracker of the paths
   * run at those bounds.
   */
  report(reachable: ReachableItems, larger: { reachable: ReachableItems; tracker: CoverageTracker }): CoverageReport {
    const boundsReason = 'not reachable within the bounded model (exhaustive exploration never takes it)';
    const figure = (all: string[], seen: Set<string>, reachableItems: Set<string> | null, reason: string): CoverageFigure => {
      const unreachable = reachableItems ? all.filter((item) => !reachableItems.has(item)).map((item) => ({ item, reason })) : [];
      const countable = reachableItems ? all.filter((item) => reachableItems.has(item)) : all;
      const missing = countable.filter((item) => !seen.has(item));
      return { covered: countable.length - missing.length, total: countable.length, missing, unreachable };
    };
    const allDefinitions = definitions.map((info) => info.id);
    const guardItems = definitions.filter((info) => info.definition).flatMap((info) => [`${info.id}=true`, `${info.id}=false`]);
    const claimOf = (claim: number): string => `claim ${claim}`;
    const claimsSeen = new Set<string>();
    const claimsReachable = new Set<string>();
    for (const info of definitions) {
      for (const claim of info.meta?.claims ?? []) {
        if (this.transitions.has(info.id)) claimsSeen.add(claimOf(claim));
        if (reachable.definitions.has(info.id)) claimsReachable.add(claimOf(claim));
      }
    }
    const allClaims = Array.from({ length: claimCount }, (_, i) => claimOf(i + 1));
    return {
      states: figure(chartStates(), this.states, null, boundsReason),
      transitions: figure(allDefinitions, this.transitions, reachable.definitions, boundsReason),
      graphEdges: figure([...reachable.graphEdges], this.graphEdges, null, boundsReason),
      transitionPairs: figure([...reachable.pairs], this.pairs, null, boundsReason),
      guards: figure(guardItems, this.guardOutcomes, reachable.guardOutcomes, 'this outcome of the guard never occurs in the bounded model'),
      claims: figure(allClaims, claimsSeen, claimsReachable, boundsReason),
      refusals: figure([...refusalConditionIds], this.refusals, reachable.refusals, 'no explored state has this condition as the only reason to refuse its event'),
      journalDepths: figure([...reachable.journalDepths], this.journalDepths, null, boundsReason),
      byteRanges: figure([...reachable.byteRanges], this.byteRanges, null, boundsReason),
      largerBoundsTransitions: figure(allDefinitions, larger.tracker.transitions, larger.reachable.definitions, boundsReason),
      largerBoundsPairs: figure([...larger.reachable.pairs], larger.tracker.pairs, null, boundsReason),
      largerBoundsGuards: figure(guardItems, larger.tracker.guardOutcomes, larger.reachable.guardOutcomes, 'this outcome of the guard never occurs in the larger bounds plan'),
    };
  }
}
