/**
 * Computes one fence policy's coverage plan (exhaustive exploration with its graph, then transition and
 * pair paths) in a worker thread, so the main job plans both policies at once on two cores.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ModelParams } from '../model/params.ts';
import { coveragePlan } from './paths.ts';

if (parentPort) {
  const { params, larger } = workerData as { params: ModelParams; larger: boolean };
  parentPort.postMessage(coveragePlan(params, larger));
}
