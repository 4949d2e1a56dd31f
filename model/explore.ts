/**
 * Exhaustive bounded exploration of the statechart: a breadth-first search over the machine's own pure
 * `transition` function, checking P1-P7 (and the regions' mirror of the context) on every reachable state
 * and every transition. Breadth-first order makes the first violation found for a property a shortest
 * counterexample. The statechart is a parameter, so tests can explore broken variants of it.
 */
import { getAdjacencyMap } from 'xstate/graph';
import { initialTransition, transition, type AnyStateMachine, type AnyTransitionDefinition, type SnapshotFrom } from 'xstate';
import { candidateEvents, formatEvent, refusalProbeEvents, type ModelEvent } from './events.ts';
import { failedConditions, refusalConditions } from './semantics.ts';
import { replicationMachine, type ReplicationMachine, type TransitionMeta } from './machine.ts';
import { validateParams, type ModelParams } from './params.ts';
import { checkChartStructure, checkMirror, checkState, checkTransition, fullyProtected, hostWriteProbe, recoveryEventTypes, type PropertyName } from './properties.ts';
import { contextKey, type ModelContext } from './state.ts';
import { transitionDefinitions, type TransitionDefinitionInfo } from './traceability.ts';

type Snapshot = SnapshotFrom<ReplicationMachine>;

/** The most states one exploration may visit unless told otherwise (a safety net, not a bound). */
export const exploreStatesMaxDefault = 2_000_000;

/** Options of one exploration. */
export interface ExploreOptions {
  params?: Partial<ModelParams>;
  /** The chart to explore (default: the specification); tests pass broken variants. */
  machine?: AnyStateMachine;
  /** Stop after this many states and report the exploration as incomplete. */
  statesMax?: number;
  /** Stop at the first violation (still a shortest counterexample for its property). */
  stopOnViolation?: boolean;
  /** Keep the explored graph (for path generation): parents, events and the root variant of every edge. */
  keepGraph?: boolean;
  /**
   * The key that identifies a state (default {@link contextKey}: the whole abstract state). A coarser key
   * explores a cheaper model: states with the same key are one, reached by its first (shortest) path, and
   * every edge and witness is taken from that representative. The conformance run plans its paths at larger
   * bounds so (`conformance/paths.ts`).
   */
  stateKey?: (context: ModelContext) => string;
  /**
   * Also find, for each refusal condition, a state where it alone refuses an event (candidates and
   * `refusalProbeEvents`); costs about a quarter more time, so only path planning asks for it.
   */
  refusals?: boolean;
}

/** The explored graph: a breadth-first tree plus every edge, with the root transition variant it took. */
export interface ExploredGraph {
  /** Parent state index of each state (-1 for the initial state). */
  parents: Int32Array;
  /** The event that first reached each state (null for the initial state). */
  events: (ModelEvent | null)[];
  /** The state value of each state: region name to region state. */
  values: Record<string, string>[];
  /** The abstract state of each state (with a coarse `stateKey`: the representative's). */
  contexts: ModelContext[];
  /** Every edge: from-state index, event, root variant id, to-state index. */
  edges: { from: number; event: ModelEvent; variant: string; to: number }[];
  /** For each guard outcome, the first state where it occurs and the event that produces it. */
  guardWitnesses: Map<string, { from: number; event: ModelEvent }>;
  /** For each refusal condition, the first state where it alone refuses an event, and that event. */
  refusalWitnesses: Map<string, { from: number; event: ModelEvent }>;
}

/** The shortest event sequence from the initial state to state `index` of a kept graph. */
export function pathInGraph(graph: ExploredGraph, index: number): ModelEvent[] {
  const path: ModelEvent[] = [];
  for (let at = index; at > 0; at = graph.parents[at]!) path.push(graph.events[at]!);
  return path.reverse();
}

/** A property broken in a reachable state or transition, with a shortest event sequence that shows it. */
export interface Counterexample {
  property: PropertyName;
  message: string;
  /** Events from the initial state; the last one is the violating transition when `inTransition`. */
  path: string[];
  inTransition: boolean;
}

/** What one exploration found. */
export interface ExploreResult {
  params: ModelParams;
  states: number;
  transitions: number;
  complete: boolean;
  /** The first (shortest) counterexample of each broken property. */
  violations: Counterexample[];
  /** Transition definitions of the chart taken at least once, by id. */
  taken: Set<string>;
  /** Outcomes of the root transitions' guards seen, as `EVENT#i=true` / `EVENT#i=false`. */
  guardOutcomes: Set<string>;
  /**
   * Refusal conditions (`model/semantics.ts`) that alone refuse some event in some explored state: every
   * other condition of that event holds.
   */
  refusalsAlone: Set<string>;
  /** Length of the longest shortest path (the graph's eccentricity from the initial state). */
  depth: number;
  ms: number;
  /** The graph, when `keepGraph` was asked for. */
  graph?: ExploredGraph;
}

interface Visit {
  snapshot: Snapshot;
  parent: number;
  event: ModelEvent | null;
  depth: number;
}

function pathTo(visits: readonly Visit[], index: number): string[] {
  const path: string[] = [];
  for (let at = index; at > 0; at = visits[at]!.parent) path.push(formatEvent(visits[at]!.event!));
  return path.reverse();
}

/** Explores every state reachable within the bounds, breadth first, checking P1-P7 on each. */
export function explore(options: ExploreOptions = {}): ExploreResult {
  const started = performance.now();
  const params = validateParams(options.params ?? {});
  const machine = (options.machine ?? replicationMachine) as ReplicationMachine;
  const statesMax = options.statesMax ?? exploreStatesMaxDefault;
  const definitions = transitionDefinitions(machine);
  const rootIds = new Map<AnyTransitionDefinition, string>();
  for (const info of definitions) if (info.definition) rootIds.set(info.definition, info.id);

  const stateKey = options.stateKey ?? contextKey;
  const [initial] = initialTransition(machine, params);
  const visits: Visit[] = [{ snapshot: initial, parent: -1, event: null, depth: 0 }];
  const seen = new Map<string, number>([[stateKey(initial.context), 0]]);
  const refusalsAlone = new Set<string>();
  const refusalWitnesses = new Map<string, { from: number; event: ModelEvent }>();
  const probes = refusalProbeEvents(params, 1);
  const violations = new Map<PropertyName, Counterexample>();
  const taken = new Set<string>();
  const guardOutcomes = new Set<string>();
  const guardWitnesses = new Map<string, { from: number; event: ModelEvent }>();
  const variantsByEvent = new Map<string, string[]>();
  for (const info of definitions) {
    if (!info.definition) continue;
    const list = variantsByEvent.get(info.event) ?? [];
    list.push(info.id);
    variantsByEvent.set(info.event, list);
  }
  const report = (index: number, property: PropertyName, message: string, event?: ModelEvent): void => {
    if (violations.has(property)) return;
    const path = pathTo(visits, index);
    if (event) path.push(formatEvent(event));
    violations.set(property, { property, message, path, inTransition: event !== undefined });
  };
  let transitions = 0;
  let depth = 0;
  let complete = true;
  const edges: ExploredGraph['edges'] = [];
  // P9: the recovery commands' edges, reversed afterwards (to, from), in growable typed arrays.
  let recoveryEdges = new Int32Array(1024);
  let recoveryEdgeCount = 0;

  for (const violation of checkChartStructure(machine)) report(0, violation.property, violation.message);
  for (const violation of checkState(initial.context, initial.value)) report(0, violation.property, violation.message);
  for (let index = 0; index < visits.length; index++) {
    if (options.stopOnViolation && violations.size > 0) {
      complete = false;
      break;
    }
    const { snapshot } = visits[index]!;
    const context = snapshot.context;
    // P4 on the chart itself: the sites whose host write some variant takes here (not the primary field).
    const writers = chartWriters(machine, snapshot, rootIds);
    if (writers.length > 1) report(index, 'P4', twoWriters(writers));
    const candidates = candidateEvents(params, context);
    for (const event of options.refusals ? [...candidates, ...probes] : []) {
      // Once every condition of an event type has its witness, its events need no more looking at.
      if (refusalConditions[event.type].every((item) => refusalsAlone.has(item.id))) continue;
      const failed = failedConditions(context, event);
      if (failed.length === 1 && !refusalsAlone.has(failed[0]!)) {
        refusalsAlone.add(failed[0]!);
        if (options.keepGraph) refusalWitnesses.set(failed[0]!, { from: index, event });
      }
    }
    for (const event of candidates) {
      const enabled = machine.getTransitionData(snapshot, event);
      const chosen = enabled.map((definition) => rootIds.get(definition)).find((id) => id !== undefined);
      for (const variant of variantsByEvent.get(event.type) ?? []) {
        const outcome = `${variant}=${variant === chosen}`;
        if (!guardOutcomes.has(outcome)) {
          guardOutcomes.add(outcome);
          if (options.keepGraph) guardWitnesses.set(outcome, { from: index, event });
        }
        if (variant === chosen) break;
      }
      if (enabled.length === 0) continue;
      if (chosen === undefined) {
        // A region moved on an event no variant takes: the chart moves where the semantics refuse.
        report(index, 'MIRROR', moveWithoutVariant(event), event);
        continue;
      }
      const [next] = transition(machine, snapshot, event);
      transitions++;
      let variant = '';
      for (const definition of enabled) {
        const id = rootIds.get(definition);
        if (id) {
          taken.add(id);
          variant = id;
        }
      }
      recordRegionMoves(snapshot, next, taken);
      for (const violation of checkTransition(context, event, next.context)) {
        report(index, violation.property, violation.message, event);
      }
      // The regions move by rules of their own: they must agree with the context after every transition,
      // not only in the first state reached by a context (another path may leave a region elsewhere).
      for (const violation of checkMirror(next.context, next.value)) report(index, violation.property, violation.message, event);
      const key = stateKey(next.context);
      const known = seen.get(key);
      if (options.keepGraph) edges.push({ from: index, event, variant, to: known ?? visits.length });
      if (recoveryEventTypes.has(event.type) && (known !== undefined || visits.length < statesMax)) {
        if (recoveryEdgeCount * 2 + 2 > recoveryEdges.length) {
          const grown = new Int32Array(recoveryEdges.length * 2);
          grown.set(recoveryEdges);
          recoveryEdges = grown;
        }
        recoveryEdges[recoveryEdgeCount * 2] = index;
        recoveryEdges[recoveryEdgeCount * 2 + 1] = known ?? visits.length;
        recoveryEdgeCount += 1;
      }
      if (known !== undefined) continue;
      if (visits.length >= statesMax) {
        complete = false;
        continue;
      }
      const at = visits.length;
      const nextDepth = visits[index]!.depth + 1;
      depth = Math.max(depth, nextDepth);
      seen.set(key, at);
      visits.push({ snapshot: next, parent: index, event, depth: nextDepth });
      for (const violation of checkState(next.context)) report(at, violation.property, violation.message);
    }
  }
  // P9 on the whole graph, once it is complete (a partial graph lacks the edges that might recover a state).
  if (complete) {
    const unrecoverable = firstUnrecoverable(visits.length, (at) => fullyProtected(visits[at]!.snapshot.context), recoveryEdges.subarray(0, recoveryEdgeCount * 2));
    if (unrecoverable !== null) {
      report(unrecoverable, 'P9', 'no sequence of recover, resync, judge and copy commands reaches full protection from this state');
    }
  }
  const graph: ExploredGraph | undefined = options.keepGraph
    ? {
        parents: Int32Array.from(visits, (visit) => visit.parent),
        events: visits.map((visit) => visit.event),
        values: visits.map((visit) => visit.snapshot.value as unknown as Record<string, string>),
        contexts: visits.map((visit) => visit.snapshot.context),
        edges: edges.filter((edge) => edge.to < visits.length),
        guardWitnesses,
        refusalWitnesses,
      }
    : undefined;
  return {
    params,
    states: visits.length,
    transitions,
    complete,
    violations: [...violations.values()],
    taken,
    guardOutcomes,
    refusalsAlone,
    depth,
    ms: performance.now() - started,
    ...(graph ? { graph } : {}),
  };
}

/**
 * Checks one event sequence on a chart with the exploration's checks (the chart's structure, P1-P7, MIRROR, a
 * region moving on an event no variant takes) after every step; the first violation, or null when every step
 * passes or an event is refused before one fails. It confirms on another chart a path found on the
 * specification: the model mutants replay the specification's shortest witness of a region move on the chart
 * whose move they retarget, which costs one path instead of an exploration.
 */
export function checkPath(machine: AnyStateMachine, params: Partial<ModelParams>, events: readonly ModelEvent[]): Counterexample | null {
  const chart = machine as ReplicationMachine;
  const rootIds = new Set<AnyTransitionDefinition>();
  for (const info of transitionDefinitions(chart)) if (info.definition) rootIds.add(info.definition);
  const found = (violation: { property: PropertyName; message: string } | undefined, steps: number, inTransition: boolean): Counterexample | null =>
    violation ? { ...violation, path: events.slice(0, steps).map(formatEvent), inTransition } : null;
  let [snapshot] = initialTransition(chart, validateParams(params));
  const writersFound = (steps: number): Counterexample | null => {
    const writers = chartWriters(chart, snapshot, rootIds);
    return writers.length > 1 ? found({ property: 'P4', message: twoWriters(writers) }, steps, false) : null;
  };
  const atStart = found(checkChartStructure(chart)[0] ?? checkState(snapshot.context, snapshot.value)[0], 0, false) ?? writersFound(0);
  if (atStart) return atStart;
  for (const [index, event] of events.entries()) {
    const enabled = chart.getTransitionData(snapshot, event);
    if (enabled.length === 0) return null;
    if (!enabled.some((definition) => rootIds.has(definition))) {
      return found({ property: 'MIRROR', message: moveWithoutVariant(event) }, index + 1, true);
    }
    const [next] = transition(chart, snapshot, event);
    const inTransition = found(checkTransition(snapshot.context, event, next.context)[0] ?? checkMirror(next.context, next.value)[0], index + 1, true);
    if (inTransition) return inTransition;
    snapshot = next;
    const inState = found(checkState(next.context)[0], index + 1, false) ?? writersFound(index + 1);
    if (inState) return inState;
  }
  return null;
}

/**
 * P9 by backward reachability: the states from which the recovery edges lead to a fully protected state are
 * found from those states backwards; the first other state in breadth-first order (the one with the shortest
 * path from the initial state), or null when every state recovers. `edges` holds (from, to) pairs.
 */
export function firstUnrecoverable(states: number, goal: (index: number) => boolean, edges: Int32Array): number | null {
  // Reverse adjacency in compressed form: for each `to`, the `from`s of its recovery edges.
  const starts = new Int32Array(states + 1);
  for (let i = 1; i < edges.length; i += 2) starts[edges[i]! + 1]! += 1;
  for (let i = 0; i < states; i++) starts[i + 1]! += starts[i]!;
  const sources = new Int32Array(edges.length / 2);
  const fill = starts.slice(0, states);
  for (let i = 0; i < edges.length; i += 2) sources[fill[edges[i + 1]!]!++] = edges[i]!;
  const recovers = new Uint8Array(states);
  const queue = new Int32Array(states);
  let tail = 0;
  for (let at = 0; at < states; at++) {
    if (goal(at)) {
      recovers[at] = 1;
      queue[tail++] = at;
    }
  }
  for (let head = 0; head < tail; head++) {
    const to = queue[head]!;
    for (let k = starts[to]!; k < starts[to + 1]!; k++) {
      const from = sources[k]!;
      if (recovers[from] === 0) {
        recovers[from] = 1;
        queue[tail++] = from;
      }
    }
  }
  const first = recovers.indexOf(0);
  return first === -1 ? null : first;
}

/** P4's message when the chart takes a host write at more than one site. */
const twoWriters = (writers: readonly number[]): string => `the chart takes a host write at sites ${writers.join(' and ')}`;

/** MIRROR's message when a region moves on an event that no variant of the system region takes. */
const moveWithoutVariant = (event: ModelEvent): string => `a region moves on ${formatEvent(event)}, which no variant of the system region takes`;

/** The sites whose host write (P4's probe) a root variant of the chart takes in this state. */
function chartWriters(machine: ReplicationMachine, snapshot: Snapshot, rootIds: ReadonlyMap<AnyTransitionDefinition, string> | ReadonlySet<AnyTransitionDefinition>): (1 | 2)[] {
  return ([1, 2] as const).filter((host) => machine.getTransitionData(snapshot, hostWriteProbe(host)).some((definition) => rootIds.has(definition)));
}

/** Marks the eventless region transitions a step took: each region that changed state moved by one. */
function recordRegionMoves(before: Snapshot, after: Snapshot, taken: Set<string>): void {
  const from = before.value as unknown as Record<string, string>;
  const to = after.value as unknown as Record<string, string>;
  for (const region of Object.keys(to)) {
    if (from[region] !== to[region]) taken.add(`${region}.${from[region]} -> ${to[region]}`);
  }
}

/**
 * The same enumeration with xstate's own `getAdjacencyMap` (every candidate event tried in every state,
 * states keyed by the same context key), for the benchmark that compares the two engines.
 */
export function exploreWithAdjacencyMap(options: ExploreOptions = {}): { states: number; transitions: number; ms: number } {
  const started = performance.now();
  const params = validateParams(options.params ?? {});
  const machine = (options.machine ?? replicationMachine) as ReplicationMachine;
  const map = getAdjacencyMap(machine, {
    input: params,
    events: (snapshot) => candidateEvents(params, snapshot.context as ModelContext),
    serializeState: (snapshot) => contextKey(snapshot.context as ModelContext),
    serializeEvent: (event) => formatEvent(event as ModelEvent),
    limit: options.statesMax ?? exploreStatesMaxDefault,
  });
  let transitions = 0;
  for (const [key, value] of Object.entries(map)) {
    for (const step of Object.values(value.transitions) as { state: { context: ModelContext } }[]) {
      if (contextKey(step.state.context) !== key) transitions++;
    }
  }
  return { states: Object.keys(map).length, transitions, ms: performance.now() - started };
}

/** The transition definitions of the chart that an exploration never took (for coverage reports). */
export function untaken(result: ExploreResult, machine: AnyStateMachine = replicationMachine): TransitionDefinitionInfo[] {
  return transitionDefinitions(machine as ReplicationMachine).filter((info) => !result.taken.has(info.id));
}

/** Claims implemented by the transitions an exploration took. */
export function claimsTaken(result: ExploreResult, machine: AnyStateMachine = replicationMachine): Set<number> {
  const claims = new Set<number>();
  for (const info of transitionDefinitions(machine as ReplicationMachine)) {
    if (result.taken.has(info.id)) for (const claim of (info.meta as TransitionMeta | undefined)?.claims ?? []) claims.add(claim);
  }
  return claims;
}
