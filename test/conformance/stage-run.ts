/**
 * The options of a conformance run just large enough for the tests of one stage (`runConformance`): one
 * volume, one fault, fence policy refuse, one short walk, no simple paths, no coverage gates, no fault
 * catalogue, no fixtures. Each stage's test adds its stage (and its plant). Test code only.
 */
import type { RunOptions } from '../../conformance/run.ts';

/** A small run with no optional stage; plans in a few seconds. */
export const stageRunOptions: RunOptions = {
  params: { faultsMax: 1, volumeCount: 1 },
  fencePolicies: ['refuse'],
  seed: 1,
  walkRuns: 1,
  walkSteps: 10,
  simpleDepth: 0,
  edgePaths: false,
  gates: {},
  shard: { index: 1, count: 1 },
  faults: false,
  fixturesDir: null,
};
