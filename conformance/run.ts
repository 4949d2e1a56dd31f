/**
 * The whole conformance run as one function: plan (exhaustive exploration per fence policy), generated
 * paths, random walks, the fault catalogue and the must-happen checks, with coverage in every dimension.
 * `main.ts` is its command line; tests call it with small options.
 */
import { formatEvent, parseEvent, type ModelEvent } from '../model/events.ts';
import { replicationMachine } from '../model/machine.ts';
import { validateParams, type FencePolicy, type ModelParams } from '../model/params.ts';
import { runTypeScriptWorker } from '../model/ts-worker.ts';
import { transitionDefinitions } from '../model/traceability.ts';
import { ClusterSut } from './adapter.ts';
import type { SutFactory } from './sut.ts';
import { CoverageTracker, type CoverageReport } from './coverage.ts';
import type { FaultResult } from './faults.ts';
import { loadFixtures, saveFixture, type FixtureResult } from './fixtures.ts';
import { runPath, type Divergence } from './lockstep.ts';
import { abstractGraphEdges, edgePaths, simplePaths, statePaths, type CoveragePlan, type GeneratedPath } from './paths.ts';
import { runWalks, type WalksResult } from './walks.ts';

/** Options of a conformance run. */
export interface RunOptions {
  /** Model bounds (the fence policy is set per run from `fencePolicies`). */
  params: Partial<ModelParams>;
  fencePolicies: FencePolicy[];
  /** fast-check seed of the random walks (fixed by default: random seeds are opt-in). */
  seed: number;
  /** Random walks per fence policy. */
  walkRuns: number;
  /** Events per walk at most. */
  walkSteps: number;
  /** Depth of simple paths (0: none). */
  simpleDepth: number;
  /** Also one path per edge of the abstract graph (full graph-edge coverage; slower). */
  edgePaths: boolean;
  /** Coverage required of a full run, per dimension, as a fraction (a missing dimension is not gated). */
  gates: Partial<Record<keyof CoverageReport, number>>;
  /** Run shard `index` of `count` of the generated paths (1-based index). */
  shard: { index: number; count: number };
  /** Run the fault catalogue. */
  faults: boolean;
  /** Save every divergence as a fixture under this folder (null: do not save). */
  fixturesDir: string | null;
  /** The system under test (default: the in-process cluster). */
  makeSut?: SutFactory;
  /** Progress callback: a phase name, done and total counts. */
  progress?: (phase: string, done: number, total: number) => void;
}

/** A divergence as the report lists it. */
export interface ReportedDivergence {
  fencePolicy: FencePolicy;
  strategy: string;
  target: string;
  seed: number | null;
  /** fast-check replay path for walks, else null. */
  replayPath: string | null;
  /** Formatted events (`formatEvent`), the whole path up to the failing step. */
  path: string[];
  /** 0-based index of the diverging event in `path`. */
  step: number;
  summary: string;
  expected: unknown;
  actual: unknown;
}

/** A check that the run really did something (so it cannot pass vacuously). */
export interface MustHappen {
  name: string;
  /** Transition ids any of which counts. */
  transitions: string[];
  happened: boolean;
}

/** One generated path's outcome (for JUnit and the review page). */
export interface PathOutcome {
  fencePolicy: FencePolicy;
  strategy: GeneratedPath['strategy'];
  target: string;
  events: number;
  passed: boolean;
}

/** Everything a conformance run found. */
export interface ConformanceReport {
  seed: number;
  params: ModelParams & { fencePolicies: FencePolicy[] };
  exploration: { states: number; transitions: number; violations: unknown[]; complete: boolean; ms: number };
  paths: number;
  steps: number;
  walks: { runs: number; steps: number };
  coverage: CoverageReport;
  divergences: ReportedDivergence[];
  fixtures: FixtureResult[];
  faults: { total: number; caught: number; list: FaultResult[] };
  mustHappen: MustHappen[];
  /** Coverage gates that failed, one line each. */
  gateFailures: string[];
  pathOutcomes: PathOutcome[];
  ms: number;
  timings: { planMs: number; pathsMs: number; walksMs: number; faultsMs: number };
  /** Lockstep steps (model and implementation) per second of path and walk time. */
  stepsPerSecond: number;
  passed: boolean;
}

/** Transition ids whose guard has this name (robust to reordering of variants). */
function byGuard(name: string): string[] {
  return transitionDefinitions(replicationMachine)
    .filter((info) => info.guard?.startsWith(name))
    .map((info) => info.id);
}

/** The must-happen checks of every run. */
export function mustHappenChecks(): Omit<MustHappen, 'happened'>[] {
  return [
    { name: 'a delta resync', transitions: byGuard('deltaResyncAccepted') },
    { name: 'a full-copy fallback', transitions: byGuard('failoverFullCopy') },
    { name: 'a full copy', transitions: byGuard('fullCopyAccepted') },
    { name: 'a refused remote-ahead promotion', transitions: byGuard('failoverRefusedRemoteAhead') },
    { name: 'a journal overflow', transitions: ['asyncPair.copying -> suspendedOverflow'] },
    { name: 'a standby hold-error', transitions: ['standbyPair.hold -> holdError'] },
    { name: 'a reversed synchronous write', transitions: byGuard('hostWriteReversed') },
    { name: 'a failback', transitions: byGuard('failbackWith') },
  ];
}

/** Plans one fence policy in a worker thread. */
function planInWorker(params: ModelParams): Promise<CoveragePlan> {
  return runTypeScriptWorker<CoveragePlan>(new URL('./plan-worker.ts', import.meta.url), { params });
}

function inShard(index: number, shard: RunOptions['shard']): boolean {
  return index % shard.count === shard.index - 1;
}

function report(divergence: Divergence, fencePolicy: FencePolicy, strategy: string, target: string, seed: number | null, replayPath: string | null): ReportedDivergence {
  return {
    fencePolicy,
    strategy,
    target,
    seed,
    replayPath,
    path: divergence.path,
    step: divergence.step,
    summary: divergence.summary,
    expected: divergence.expected,
    actual: divergence.actual,
  };
}

/** Runs the whole conformance job. */
export async function runConformance(options: RunOptions): Promise<ConformanceReport> {
  const started = performance.now();
  const makeSut = options.makeSut ?? ClusterSut.create;
  const progress = options.progress ?? (() => {});
  const paramsList = options.fencePolicies.map((fencePolicy) => validateParams({ ...options.params, fencePolicy }));
  const coverage = new CoverageTracker();
  const divergences: ReportedDivergence[] = [];
  const pathOutcomes: PathOutcome[] = [];
  let steps = 0;

  // Saved fixtures first: every earlier failure is replayed before anything new.
  const fixtures = options.fixturesDir ? loadFixtures(options.fixturesDir, makeSut) : [];

  const timings = { planMs: 0, pathsMs: 0, walksMs: 0, faultsMs: 0 };
  let phaseStarted = performance.now();
  const endPhase = (phase: keyof typeof timings): void => {
    const now = performance.now();
    timings[phase] = Math.round(now - phaseStarted);
    phaseStarted = now;
  };
  progress('planning (exhaustive exploration)', 0, paramsList.length);
  const plans = await Promise.all(paramsList.map((params) => planInWorker(params)));
  progress('planning (exhaustive exploration)', paramsList.length, paramsList.length);

  const reachableDefinitions = new Set(plans.flatMap((plan) => plan.reachableDefinitions));
  const allowedPairs = new Set(plans.flatMap((plan) => plan.allowedPairs));
  const guardOutcomes = new Set(plans.flatMap((plan) => plan.guardOutcomes));
  const graphEdges = new Set<string>();
  const work: { params: ModelParams; path: GeneratedPath }[] = [];
  let generatedCount = 0;
  for (const [i, params] of paramsList.entries()) {
    const plan = plans[i]!;
    for (const edge of abstractGraphEdges(params)) graphEdges.add(edge);
    const generated = [
      ...statePaths(params),
      ...plan.transitionPaths,
      ...plan.pairPaths,
      ...plan.guardPaths,
      ...(options.simpleDepth > 0 ? simplePaths(params, options.simpleDepth) : []),
      ...(options.edgePaths ? edgePaths(params) : []),
    ];
    for (const path of generated) {
      if (inShard(generatedCount++, options.shard)) work.push({ params, path });
    }
  }

  endPhase('planMs');
  for (const [index, { params, path }] of work.entries()) {
    if (index % 50 === 0) progress('generated paths', index, work.length);
    const run = runPath(params, path.events, makeSut, coverage);
    steps += run.steps;
    pathOutcomes.push({ fencePolicy: params.fencePolicy, strategy: path.strategy, target: path.target, events: path.events.length, passed: !run.divergence });
    if (run.divergence) {
      divergences.push(report(run.divergence, params.fencePolicy, path.strategy, path.target, null, null));
      if (options.fixturesDir) saveFixture(options.fixturesDir, params, path.events.slice(0, run.divergence.step + 1), run, `${path.strategy}: ${path.target}`);
    }
  }
  progress('generated paths', work.length, work.length);
  endPhase('pathsMs');

  const walks = { runs: 0, steps: 0 };
  for (const [i, params] of paramsList.entries()) {
    progress('random walks', i, paramsList.length);
    const result: WalksResult = runWalks(params, makeSut, { seed: options.seed + i, runs: options.walkRuns, steps: options.walkSteps, coverage });
    walks.runs += result.runs;
    walks.steps += result.steps;
    steps += result.steps;
    if (result.failure) {
      const { failure } = result;
      divergences.push(report(failure.divergence, params.fencePolicy, 'walk', `shrunk from seed ${failure.seed}`, failure.seed, failure.path));
      if (options.fixturesDir) {
        saveFixture(options.fixturesDir, params, failure.events.map(parseEvent), { divergence: failure.divergence }, `walk seed ${failure.seed} path ${failure.path}`);
      }
    }
  }
  progress('random walks', paramsList.length, paramsList.length);
  endPhase('walksMs');

  const faults: FaultResult[] = [];
  if (options.faults) {
    // Loaded only when asked: the catalogue pulls in every fault variant of the implementation.
    const { faultCatalogue } = await import('./faults.ts');
    const catalogue = faultCatalogue();
    for (const [i, fault] of catalogue.entries()) {
      progress('fault catalogue', i, catalogue.length);
      faults.push(fault.hunt(paramsList, work, options.seed));
    }
    progress('fault catalogue', catalogue.length, catalogue.length);
  }
  endPhase('faultsMs');

  const coverageReport = coverage.report({ definitions: reachableDefinitions, pairs: allowedPairs, graphEdges, guardOutcomes });
  const mustHappen = mustHappenChecks().map((check) => ({ ...check, happened: check.transitions.some((id) => coverage.transitions.has(id)) }));
  const ms = performance.now() - started;
  const exploration = {
    states: plans.reduce((sum, plan) => sum + plan.states, 0),
    transitions: plans.reduce((sum, plan) => sum + plan.transitions, 0),
    violations: plans.flatMap((plan) => plan.violations),
    complete: plans.every((plan) => plan.complete),
    ms: Math.round(plans.reduce((sum, plan) => sum + plan.exploreMs, 0)),
  };
  // Coverage gates and must-happen checks speak of a whole run: a shard covers only its part.
  const fullShard = options.shard.count === 1;
  const gateFailures = fullShard
    ? (Object.entries(options.gates) as [keyof CoverageReport, number][])
        .filter(([dimension, fraction]) => {
          const figure = coverageReport[dimension];
          return figure.total > 0 && figure.covered / figure.total < fraction;
        })
        .map(([dimension, fraction]) => `${dimension} ${coverageReport[dimension].covered}/${coverageReport[dimension].total} below ${fraction}`)
    : [];
  const passed =
    divergences.length === 0 &&
    fixtures.every((fixture) => fixture.passed) &&
    exploration.violations.length === 0 &&
    faults.every((fault) => fault.caught) &&
    gateFailures.length === 0 &&
    (!fullShard || mustHappen.every((check) => check.happened));
  return {
    seed: options.seed,
    params: { ...paramsList[0]!, fencePolicies: options.fencePolicies },
    exploration,
    paths: work.length,
    steps,
    walks,
    coverage: coverageReport,
    divergences,
    fixtures,
    faults: { total: faults.length, caught: faults.filter((fault) => fault.caught).length, list: faults },
    mustHappen,
    gateFailures,
    pathOutcomes,
    ms: Math.round(ms),
    timings,
    stepsPerSecond: Math.round(steps / ((timings.pathsMs + timings.walksMs) / 1000)),
    passed,
  };
}

/** Formats a path of events for a replay command or a report. */
export function formatPath(events: readonly ModelEvent[]): string[] {
  return events.map(formatEvent);
}
