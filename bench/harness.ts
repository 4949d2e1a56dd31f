/**
 * Benchmark of the conformance harness, measured in one run beside its baseline, the model alone:
 * - the model's own transitions, with xstate's `getAdjacencyMap` over the same bounds (its time per edge);
 * - lockstep steps (model transition + implementation call + both observations + diff + coverage) per second
 *   over the generated paths, and their cost as a multiple of one model transition;
 * - the time to full transition coverage: from nothing to every reachable chart transition taken on the
 *   implementation (planning included).
 */
import { ClusterSut } from '../conformance/adapter.ts';
import { CoverageTracker } from '../conformance/coverage.ts';
import { runPath } from '../conformance/lockstep.ts';
import { coveragePlan, statePaths } from '../conformance/paths.ts';
import { explore, exploreWithAdjacencyMap } from '../model/explore.ts';
import { validateParams, type ModelParams } from '../model/params.ts';

/** What the harness benchmark measured. */
export interface HarnessBench {
  params: ModelParams;
  model: { states: number; transitions: number; ms: number; microsecondsPerTransition: number };
  /** The model alone with our explorer (accepted transitions only, P1-P7 checked on each). */
  explorer: { states: number; transitions: number; ms: number; microsecondsPerTransition: number };
  lockstep: { paths: number; steps: number; ms: number; stepsPerSecond: number; microsecondsPerStep: number };
  /** Lockstep step cost divided by one model transition of `getAdjacencyMap` (aim: at most 3). */
  lockstepToModelRatio: number;
  /** Lockstep step cost divided by one transition of our explorer (the stricter baseline). */
  lockstepToExplorerRatio: number;
  coverage: { reachable: number; msToFullTransitionCoverage: number };
}

/** Runs the harness benchmark at bounds small enough for `getAdjacencyMap` to finish in seconds. */
export function benchHarness(overrides: Partial<ModelParams> = { faultsMax: 1 }): HarnessBench {
  const params = validateParams(overrides);
  const model = exploreWithAdjacencyMap({ params });
  const explored = explore({ params });
  const explorerMicroseconds = (explored.ms * 1000) / Math.max(1, explored.transitions);

  // Time to full transition coverage: plan, then the transition paths until every reachable one is taken.
  const coverageStarted = performance.now();
  const plan = coveragePlan(params);
  const reachable = new Set(plan.reachableDefinitions);
  const tracker = new CoverageTracker();
  for (const path of plan.transitionPaths) {
    runPath(params, path.events, ClusterSut.create, tracker);
    if ([...reachable].every((id) => tracker.transitions.has(id))) break;
  }
  const msToFullTransitionCoverage = performance.now() - coverageStarted;

  const paths = [...statePaths(params), ...plan.pairPaths];
  const started = performance.now();
  let steps = 0;
  for (const path of paths) steps += runPath(params, path.events, ClusterSut.create, new CoverageTracker()).steps;
  const ms = performance.now() - started;

  const microsecondsPerTransition = (model.ms * 1000) / Math.max(1, model.transitions);
  const microsecondsPerStep = (ms * 1000) / Math.max(1, steps);
  return {
    params,
    model: { ...model, ms: Math.round(model.ms), microsecondsPerTransition: round(microsecondsPerTransition) },
    explorer: { states: explored.states, transitions: explored.transitions, ms: Math.round(explored.ms), microsecondsPerTransition: round(explorerMicroseconds) },
    lockstep: { paths: paths.length, steps, ms: Math.round(ms), stepsPerSecond: Math.round(steps / (ms / 1000)), microsecondsPerStep: round(microsecondsPerStep) },
    lockstepToModelRatio: round(microsecondsPerStep / microsecondsPerTransition),
    lockstepToExplorerRatio: round(microsecondsPerStep / explorerMicroseconds),
    coverage: { reachable: reachable.size, msToFullTransitionCoverage: Math.round(msToFullTransitionCoverage) },
  };
}

const round = (value: number): number => Math.round(value * 100) / 100;
