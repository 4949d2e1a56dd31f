/**
 * Runs one exploration in a worker thread, so that `npm run explore` explores both fence policies at once on
 * two cores. Receives `ModelParams`, answers with a structured-clone-safe summary.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { explore } from './explore.ts';
import type { ModelParams } from './params.ts';

/** The summary a worker sends back: an {@link ExploreResult} with its sets as arrays. */
export interface WorkerSummary {
  params: ModelParams;
  states: number;
  transitions: number;
  complete: boolean;
  violations: ReturnType<typeof explore>['violations'];
  taken: string[];
  guardOutcomes: string[];
  depth: number;
  ms: number;
}

if (parentPort) {
  const { params, statesMax } = workerData as { params: ModelParams; statesMax: number };
  const result = explore({ params, statesMax });
  const summary: WorkerSummary = { ...result, taken: [...result.taken], guardOutcomes: [...result.guardOutcomes] };
  parentPort.postMessage(summary);
}
