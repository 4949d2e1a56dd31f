/**
 * Model mutants: the chart itself can be wrong. This module generates mutants of the specification's
 * statechart systematically (every root transition's guard negated, every guard replaced by "always", every
 * region transition retargeted to each other state of its region, every action dropped) and runs the checks
 * we rely on against each: the conformance run's generated paths in lockstep with the real implementation
 * (with the mutant as the expectation), then the explorer (P1-P7 and MIRROR) and the conformance coverage of the
 * chart's transitions. A mutant no check notices is a gap in our checks, or an equivalent mutant that must be
 * named and justified (test/model/mutants.test.ts).
 */
import { assign, createMachine, type AnyStateMachine } from 'xstate';
import { checkPath, explore, pathInGraph, untaken } from '../model/explore.ts';
import type { ModelEvent } from '../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../model/machine.ts';
import type { ModelParams } from '../model/params.ts';
import type { ModelContext } from '../model/state.ts';
import { systemRegion } from '../model/traceability.ts';
import { ClusterSut } from './adapter.ts';
import { runPath } from './lockstep.ts';
import { coveragePlan, type GeneratedPath } from './paths.ts';

/** What a mutant changes. */
export type MutantKind = 'guard-negated' | 'guard-always' | 'retarget' | 'action-dropped';

/** One mutant of the chart. */
export interface ModelMutant {
  /** Stable id, e.g. `guard-negated:FAILOVER#2` or `retarget:site1.normal->failed=>resyncing`. */
  id: string;
  kind: MutantKind;
  /** Claim numbers of the transition it changes (empty for beyond-claims transitions and actions). */
  claims: number[];
  machine: ReplicationMachine;
  /** For a retarget: the specification's move it changes (region, source and target state, event). */
  move?: RegionMove;
}

/** A region's move on an event, from one of its states to another (or the same). */
export interface RegionMove {
  region: string;
  source: string;
  target: string;
  event: string;
}

const moveKey = (move: RegionMove): string => `${move.region}.${move.source}->${move.target} on ${move.event}`;

/** Which check killed a mutant, and after how many steps of its counterexample. */
export interface MutantResult {
  id: string;
  kind: MutantKind;
  claims: number[];
  killedBy: 'conformance' | 'explorer' | 'coverage' | null;
  /** Steps of the diverging path or of the counterexample; 0 when not killed. */
  steps: number;
  detail: string;
}

type TransitionConfig = { guard?: unknown; target?: string; actions?: unknown; meta?: { claims?: number[] } };
type Guard = (args: { context: ModelContext; event: ModelEvent }, params: unknown) => boolean;

const clone = <T>(value: T): T => structuredCloneKeepingFunctions(value) as T;

function structuredCloneKeepingFunctions(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(structuredCloneKeepingFunctions);
  if (value !== null && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, inner]) => [key, structuredCloneKeepingFunctions(inner)]));
  }
  return value;
}

function guardRef(guard: unknown): { type: string; params: unknown } {
  if (typeof guard === 'string') return { type: guard, params: undefined };
  const { type, params } = guard as { type: string; params?: unknown };
  return { type, params };
}

/** A chart built from a changed configuration with the specification's guards and actions. */
function rebuild(config: object): ReplicationMachine {
  return createMachine(config as never, replicationMachine.implementations as never) as unknown as ReplicationMachine;
}

type StateConfig = { on?: Record<string, TransitionConfig[]> };
type RegionsConfig = Record<string, { states: Record<string, StateConfig> }>;

/** The regions of a configuration, by name (`system` holds the event variants). */
function regionsOf(config: object): RegionsConfig {
  return (config as { states: RegionsConfig }).states;
}

/** The event variants (event, variant index, config) of the specification: the `system` region's. */
function rootTransitions(): { event: string; index: number; transition: TransitionConfig }[] {
  const on = regionsOf(replicationMachine.config)[systemRegion]!.states.operating!.on as Record<string, TransitionConfig | TransitionConfig[]>;
  return Object.entries(on).flatMap(([event, variants]) => (Array.isArray(variants) ? variants : [variants]).map((transition, index) => ({ event, index, transition })));
}

/** Generates every mutant of the specification's chart, in a stable order. */
export function generateMutants(): ModelMutant[] {
  const mutants: ModelMutant[] = [];
  const guards = replicationMachine.implementations.guards as Record<string, Guard>;

  // 1, 2: one root transition's guard negated, or replaced by "always" (for that event and variant only:
  // guards are shared between variants, so the replacement keys on the event type and the guard's params).
  for (const { event, index, transition } of rootTransitions()) {
    if (!transition.guard) continue;
    const { type, params } = guardRef(transition.guard);
    const original = guards[type] as Guard;
    const mine = (args: { event: ModelEvent }, p: unknown) => args.event.type === event && JSON.stringify(p) === JSON.stringify(params);
    const claims = transition.meta?.claims ?? [];
    mutants.push({
      id: `guard-negated:${event}#${index}`,
      kind: 'guard-negated',
      claims,
      machine: replicationMachine.provide({ guards: { [type]: ((args: never, p: unknown) => (mine(args, p) ? !original(args, p) : original(args, p))) as never } }),
    });
    mutants.push({
      id: `guard-always:${event}#${index}`,
      kind: 'guard-always',
      claims,
      machine: replicationMachine.provide({ guards: { [type]: ((args: never, p: unknown) => (mine(args, p) ? true : original(args, p))) as never } }),
    });
  }

  // 3: a region move retargeted: each event's move to the next other state of its region (one mutant per
  // move and event keeps the set affordable; every state of a region is some move's wrong target).
  for (const [region, { states }] of Object.entries(regionsOf(replicationMachine.config))) {
    if (region === systemRegion) continue;
    const names = Object.keys(states);
    for (const [source, state] of Object.entries(states)) {
      for (const [event, moves] of Object.entries(state.on ?? {})) {
        for (const [index, transition] of moves.entries()) {
          const target = String(transition.target);
          const at = names.indexOf(target);
          const other = [...names.slice(at + 1), ...names.slice(0, at)].find((name) => name !== source && name !== target);
          if (other === undefined) continue;
          const config = clone(replicationMachine.config) as typeof replicationMachine.config;
          const list = regionsOf(config)[region]!.states[source]!.on![event]!;
          list[index] = { ...list[index], target: other };
          mutants.push({
            id: `retarget:${region}.${source}->${target} on ${event}#${index}=>${other}`,
            kind: 'retarget',
            claims: transition.meta?.claims ?? [],
            machine: rebuild(config),
            move: { region, source, target, event },
          });
        }
      }
    }
  }

  // 4: an action dropped (the transition still fires, its effect is lost).
  for (const name of Object.keys(replicationMachine.implementations.actions)) {
    mutants.push({
      id: `action-dropped:${name}`,
      kind: 'action-dropped',
      claims: [],
      machine: replicationMachine.provide({ actions: { [name]: assign(({ context }: { context: ModelContext }) => context) as never } }),
    });
  }
  return mutants;
}

/** The checks a mutant runs against: paths planned once from the specification, for one fence policy. */
export interface MutantChecks {
  params: ModelParams;
  paths: GeneratedPath[];
  /**
   * Explorer bounds, smallest first, with the transition ids the specification's chart takes at each, and for
   * each region move the specification takes there its first witnesses (shortest paths whose last event takes
   * it, at most `witnessesPerMove`).
   */
  explorerTiers: { params: Partial<ModelParams>; specTaken: Set<string>; witnesses: Map<string, ModelEvent[][]> }[];
}

/**
 * Witnesses kept per region move and tier. A move's region rule may have several conditions on one event, and
 * a mutant retargets the move of one of them; the first few witnesses usually include a path on which that
 * condition holds. When none shows the mutant, the whole exploration still decides.
 */
const witnessesPerMove = 8;

/** For each region move the explored graph takes, its first witnesses in breadth-first order. */
function moveWitnesses(params: Partial<ModelParams>): { taken: Set<string>; witnesses: Map<string, ModelEvent[][]> } {
  const result = explore({ params, keepGraph: true });
  const graph = result.graph!;
  const witnesses = new Map<string, ModelEvent[][]>();
  for (const edge of graph.edges) {
    const before = graph.values[edge.from]!;
    const after = graph.values[edge.to]!;
    for (const region of Object.keys(after)) {
      if (region === systemRegion) continue;
      const key = moveKey({ region, source: before[region]!, target: after[region]!, event: edge.event.type });
      const list = witnesses.get(key) ?? [];
      if (list.length >= witnessesPerMove) continue;
      list.push([...pathInGraph(graph, edge.from), edge.event]);
      witnesses.set(key, list);
    }
  }
  return { taken: result.taken, witnesses };
}

/** The explorer's bounds for mutants, smallest first: most mutants fall at the first. */
export const mutantExplorerBounds: readonly Partial<ModelParams>[] = [
  { writesMax: 1, journalEntriesMax: 1, faultsMax: 1, volumeCount: 1 },
  // Moves that need two faults (site 3 failing while it awaits its judgement, a member failing during its
  // resync) are taken only here.
  { writesMax: 1, journalEntriesMax: 1, faultsMax: 2, volumeCount: 1 },
  // Moves that need a second write (an overflow of a one-entry journal); one volume is enough for every move.
  { writesMax: 2, journalEntriesMax: 1, faultsMax: 1, volumeCount: 1 },
];

/**
 * Plans the checks once: the conformance run's transition and guard paths of the specification (pair and
 * state paths add nothing a mutant of one transition needs, and cost tens of seconds), and the explorer tiers.
 */
export function planChecks(params: ModelParams, explorerBounds: readonly Partial<ModelParams>[]): MutantChecks {
  const plan = coveragePlan(params);
  return {
    params,
    paths: [...plan.transitionPaths, ...plan.guardPaths],
    explorerTiers: explorerBounds.map((bounds) => {
      const tier = { ...bounds, fencePolicy: params.fencePolicy };
      const { taken, witnesses } = moveWitnesses(tier);
      return { params: tier, specTaken: taken, witnesses };
    }),
  };
}

/** Runs the checks against one mutant, cheapest first; stops at the first that kills it. */
export function checkMutant(mutant: ModelMutant, checks: MutantChecks): MutantResult {
  const base = { id: mutant.id, kind: mutant.kind, claims: mutant.claims };
  // A retargeted region move changes no context value: the explorer's MIRROR check sees it (the lockstep's
  // would too, but only after every planned path). First the specification's witnesses of the move, replayed on
  // the mutant with the explorer's checks (one path each); then, if none shows it, the explorer's tiers.
  if (mutant.kind === 'retarget') {
    for (const tier of checks.explorerTiers) {
      for (const events of (mutant.move && tier.witnesses.get(moveKey(mutant.move))) ?? []) {
        const violation = checkPath(mutant.machine, tier.params, events);
        if (violation) return { ...base, killedBy: 'explorer', steps: violation.path.length, detail: `${violation.property}: ${violation.message}` };
      }
    }
    // A move the specification never takes at the tiers' bounds: the mutant takes the same transitions as the
    // specification in every state the tiers reach (it differs only where the move is taken), so no tier can
    // tell them apart and exploring again would only confirm it. The planned paths are made at the same bounds:
    // they never take it either.
    if (mutant.move && checks.explorerTiers.every((tier) => !tier.witnesses.has(moveKey(mutant.move!)))) {
      return { ...base, killedBy: null, steps: 0, detail: "the specification never takes this move at the explorer's bounds" };
    }
    return explorerVerdict(mutant, checks, base) ?? { ...base, killedBy: null, steps: 0, detail: 'the explorer never takes this move at its bounds' };
  }
  // The conformance run: the real implementation in lockstep with the mutant chart along the planned paths.
  for (const path of checks.paths) {
    let run;
    try {
      run = runPath(checks.params, path.events, ClusterSut.create, null, mutant.machine);
    } catch (error) {
      // A chart that cannot even take the path (its own assertions fire) is noticed too.
      return { ...base, killedBy: 'conformance', steps: path.events.length, detail: `the chart throws on ${path.strategy} ${path.target}: ${(error as Error).message}` };
    }
    if (run.divergence) {
      return { ...base, killedBy: 'conformance', steps: run.steps, detail: `${run.divergence.kind} at ${run.divergence.event}: ${run.divergence.summary.split('\n')[0]}` };
    }
  }
  return explorerVerdict(mutant, checks, base) ?? { ...base, killedBy: null, steps: 0, detail: 'no check noticed it' };
}

/** The explorer's verdict on a mutant, or null when no tier notices it. */
function explorerVerdict(mutant: ModelMutant, checks: MutantChecks, base: Pick<MutantResult, 'id' | 'kind' | 'claims'>): MutantResult | null {
  // The explorer: P1-P7 and MIRROR (the regions mirror the abstract state) over the bounded model, at the
  // smallest bounds first; then the coverage gate: the conformance run requires every transition of the chart
  // to be taken, so a transition the specification takes at these bounds and the mutant never takes fails it.
  for (const tier of checks.explorerTiers) {
    let result;
    try {
      result = explore({ machine: mutant.machine as AnyStateMachine as ReplicationMachine, params: tier.params, stopOnViolation: true });
    } catch (error) {
      return { ...base, killedBy: 'explorer', steps: 0, detail: `the explorer throws: ${(error as Error).message}` };
    }
    const [violation] = result.violations;
    if (violation) return { ...base, killedBy: 'explorer', steps: violation.path.length, detail: `${violation.property}: ${violation.message}` };
    const untakenIds = [...tier.specTaken].filter((id) => !result.taken.has(id));
    if (untakenIds.length > 0) return { ...base, killedBy: 'coverage', steps: 0, detail: `the specification's ${untakenIds.slice(0, 2).join(', ')} never taken` };
  }
  return null;
}

/** A mutant's result as one table row. */
export function formatMutantResult(result: MutantResult): string {
  const claims = result.claims.length ? result.claims.join(',') : '-';
  return `${result.killedBy ? `killed by ${result.killedBy}`.padEnd(23) : 'SURVIVED'.padEnd(23)} ${result.id}  claims ${claims}${result.steps ? `, ${result.steps} steps` : ''}: ${result.detail}`;
}
