/**
 * One exploration of the review page in a worker thread, so both fence policies are explored at once on two
 * cores. Receives the bounds and whether to record the causes of region moves; answers with a
 * structured-clone-safe {@link PolicyExploration}.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ModelParams } from '../model/params.ts';
import { exploreCauses } from './causes.ts';
import { explore } from '../model/explore.ts';
import type { PolicyExploration } from './exploration.ts';

if (parentPort) {
  const { params, withCauses, rootOrder } = workerData as { params: ModelParams; withCauses: boolean; rootOrder: string[] };
  let answer: PolicyExploration;
  if (withCauses) {
    const { causes, result } = exploreCauses(rootOrder, params);
    answer = { ...result, causes };
  } else {
    const { taken, guardOutcomes: _guardOutcomes, graph: _graph, ...result } = explore({ params });
    answer = { ...result, taken: [...taken], causes: null };
  }
  parentPort.postMessage(answer);
}
