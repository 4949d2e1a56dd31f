/**
 * Which root events move each region. The chart's regions follow the context through eventless moves, so
 * the machine itself does not say that `site1: normal -> failed` happens on `FAIL_SITE site=1`; the bounded
 * model does. This file explores it exhaustively (the same breadth-first search as `npm run explore`) and
 * records, for every region move, the root transition variants that made it. The diagrams label region moves
 * with these causes, because a storage engineer reads "FAIL_SITE" where the chart only says "always".
 */
import { explore, type ExploredGraph, type ExploreResult } from '../model/explore.ts';
import type { ModelParams } from '../model/params.ts';

/**
 * The bounds of the cause exploration: the smallest bounds at which the exploration takes every transition
 * of the chart (85 of 85 with the default machine), explored in about 8 s on one core. Two writes make
 * overflows and reversed writes possible, two faults make a failure during a resync possible.
 */
export const causeBounds: Partial<ModelParams> = {
  volumeCount: 1,
  blocksPerVolume: 1,
  journalEntriesMax: 1,
  pullBatchEntriesMax: 1,
  writesMax: 2,
  faultsMax: 2,
  fencePolicy: 'keepWriting',
};

/** For each region move id (`region.from -> to`), the root variant ids (`EVENT#i`) seen to cause it. */
export type TransitionCauses = Record<string, string[]>;

/** The causes found in an explored graph: each edge's root variant, for every region that changed. */
export function causesInGraph(graph: ExploredGraph, rootOrder: readonly string[]): TransitionCauses {
  const found = new Map<string, Set<string>>();
  for (const edge of graph.edges) {
    const from = graph.values[edge.from]!;
    const to = graph.values[edge.to]!;
    for (const region of Object.keys(to)) {
      if (from[region] === to[region]) continue;
      const move = `${region}.${from[region]} -> ${to[region]}`;
      let set = found.get(move);
      if (!set) found.set(move, (set = new Set()));
      set.add(edge.variant);
    }
  }
  const rank = (id: string): number => {
    const at = rootOrder.indexOf(id);
    return at < 0 ? rootOrder.length : at;
  };
  const causes: TransitionCauses = {};
  for (const move of [...found.keys()].sort()) causes[move] = [...found.get(move)!].sort((a, b) => rank(a) - rank(b));
  return causes;
}

/** What a cause exploration found: the causes and the exploration's own figures. */
export interface CauseExploration {
  causes: TransitionCauses;
  result: Omit<ExploreResult, 'graph' | 'taken' | 'guardOutcomes'> & { taken: string[] };
}

/** Explores the model at `bounds` keeping its graph, and returns the causes of every region move seen. */
export function exploreCauses(rootOrder: readonly string[], bounds: Partial<ModelParams> = causeBounds): CauseExploration {
  const { graph, taken, guardOutcomes: _guardOutcomes, ...result } = explore({ params: bounds, keepGraph: true });
  return { causes: causesInGraph(graph!, rootOrder), result: { ...result, taken: [...taken] } };
}
