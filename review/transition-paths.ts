/**
 * "Show me a path": for every transition of the chart (a root variant `EVENT#i` or a region move
 * `region.from -> to`), a shortest event sequence from the initial state whose last event takes it, found in
 * the breadth-first graph of one exhaustive exploration (`model/explore.ts` with `keepGraph`). The review
 * page turns each into a simulator trace, so a reviewer clicks a claim's transition and watches it happen.
 */
import { explore, pathInGraph, type ExploredGraph } from '../model/explore.ts';
import { formatEvent } from '../model/events.ts';
import { validateParams, type ModelParams } from '../model/params.ts';
import { causeBounds } from './causes.ts';

/** The bounds the paths are found at: the smallest at which every transition of the chart is taken. */
export const transitionPathBounds: Partial<ModelParams> = causeBounds;

/** The most states the path exploration may visit (it visits 27,279 at {@link transitionPathBounds} with the current chart). */
export const transitionPathStatesMax = 400_000;

/** Shortest paths, by transition id, and the bounds they are valid at. */
export interface TransitionPaths {
  params: ModelParams;
  /** Formatted events (`formatEvent`); the last one takes the transition. */
  paths: Record<string, string[]>;
  states: number;
  complete: boolean;
  ms: number;
}

/**
 * The shortest path to each transition in a kept graph: states are numbered in breadth-first order, so the
 * first edge seen taking a transition (lowest source index, then edge order) ends a shortest path to it.
 */
export function shortestPathsInGraph(graph: ExploredGraph): Record<string, string[]> {
  const best = new Map<string, { from: number; edge: number }>();
  const consider = (id: string, from: number, edge: number): void => {
    const known = best.get(id);
    if (!known || from < known.from) best.set(id, { from, edge });
  };
  graph.edges.forEach((edge, i) => {
    if (edge.variant) consider(edge.variant, edge.from, i);
    const before = graph.values[edge.from]!;
    const after = graph.values[edge.to];
    if (!after) return;
    for (const region of Object.keys(after)) {
      if (before[region] !== after[region]) consider(`${region}.${before[region]} -> ${after[region]}`, edge.from, i);
    }
  });
  const paths: Record<string, string[]> = {};
  for (const [id, { from, edge }] of [...best].sort(([a], [b]) => a.localeCompare(b))) {
    paths[id] = [...pathInGraph(graph, from), graph.edges[edge]!.event].map(formatEvent);
  }
  return paths;
}

/** Explores at `bounds` keeping the graph and returns a shortest path to every transition taken. */
export function findTransitionPaths(bounds: Partial<ModelParams> = transitionPathBounds): TransitionPaths {
  const params = validateParams(bounds);
  const started = performance.now();
  const result = explore({ params, keepGraph: true, statesMax: transitionPathStatesMax });
  return { params, paths: shortestPathsInGraph(result.graph!), states: result.states, complete: result.complete, ms: performance.now() - started };
}
