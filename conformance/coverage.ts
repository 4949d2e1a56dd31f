/**
 * Coverage of a conformance run, in every dimension the best model-based testing tools report: the chart's
 * states, its transition definitions, the bounded graph's edges, transition pairs, guard outcomes and claims.
 * Items the bounded model cannot reach are listed apart with the reason, never counted as missed.
 */
import type { AnyStateNode, SnapshotFrom } from 'xstate';
import { claimCount } from '../model/claims.ts';
import type { ModelEvent } from '../model/events.ts';
import { formatEvent } from '../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../model/machine.ts';
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
      this.previousVariant = null;
      return;
    }
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
    for (const key of ['states', 'transitions', 'graphEdges', 'pairs', 'guardOutcomes'] as const) {
      for (const item of other[key]) this[key].add(item);
    }
  }

  /**
   * The report against what the bounded model allows: `reachable` lists the transition definitions and
   * `allowedPairs` the pairs that exhaustive exploration found; `graphEdges` the abstract graph's edges.
   */
  report(reachable: { definitions: Set<string>; pairs: Set<string>; graphEdges: Set<string>; guardOutcomes: Set<string> }): CoverageReport {
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
    };
  }
}
