/**
 * The review page's path search ({@link findTransitionPaths}) in a worker thread, beside the two fence
 * policies' explorations, so the page's build does not wait for it on one core.
 */
import { parentPort, workerData } from 'node:worker_threads';
import type { ModelParams } from '../model/params.ts';
import { findTransitionPaths } from './transition-paths.ts';

if (parentPort) {
  const { params } = workerData as { params: Partial<ModelParams> };
  parentPort.postMessage(findTransitionPaths(params));
}
