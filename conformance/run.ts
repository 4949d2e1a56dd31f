/**
 * The whole conformance run as one function: plan (exhaustive exploration per fence policy), generated
 * paths (in memory, on files with crashes, on the in-process deployment of site nodes), random walks, the
 * interleavings, the fault catalogue and the must-happen checks, with coverage in every dimension.
 * `main.ts` is its command line; tests call it with small options.
 */
import { formatEvent, isByteRangeWrite, parseEvent, type ModelEvent } from '../model/events.ts';
import { replicationMachine } from '../model/machine.ts';
import { validateParams, type FencePolicy, type ModelParams } from '../model/params.ts';
import { runTypeScriptWorker } from '../model/ts-worker.ts';
import { transitionDefinitions } from '../model/traceability.ts';
import { ClusterSut } from './adapter.ts';
import { crashingFileSutFactory, type CrashCounts } from './crash-sut.ts';
import type { AsyncSutFactory, SutFactory } from './sut.ts';
import { CoverageTracker, type CoverageReport, type ReachableItems } from './coverage.ts';
import type { FaultResult } from './faults.ts';
import { loadFixtures, saveFixture, type FixtureResult } from './fixtures.ts';
import { runPath, runPathAsync, type Divergence } from './lockstep.ts';
import { MemoryDeploymentSut } from './memory-deployment.ts';
import { abstractGraphEdges, edgePaths, largerBounds, simplePaths, statePaths, type CoveragePlan, type GeneratedPath } from './paths.ts';
import { runWalks, type WalksResult } from './walks.ts';
import { exploreInterleavings, type InterleavingTotals } from './interleavings.ts';
import type { Cluster } from '../impl/cluster/cluster.ts';

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
  /** Also plan and run paths at the larger bounds (`paths.ts`, `largerBounds`); default false. */
  largerBounds?: boolean;
  /**
   * Also run the generated paths that fail a site on the file backends, each failure a crash and each
   * recovery a reopen from the site's directory (`crash-sut.ts`); in-process only; default false.
   */
  fileBackends?: boolean;
  /** The file backends' system under test, per seed (default: the faithful cluster, `crash-sut.ts`); tests plant bugs here. */
  makeFileSut?: (seed: number) => SutFactory;
  /**
   * Also run the interleavings (`interleavings.ts`: several host writes in flight, deliveries one at a time in
   * a scheduler's order, a crash and the failover story, P1-P7 on the real bytes after every step): the
   * concurrency the model's atomic steps never show. In-process only; default false.
   */
  interleavings?: boolean;
  /** The interleaving chunks to run (default `interleavingWork(seed)`, `npm start`'s 220 runs); tests run fewer. */
  interleavingChunks?: readonly InterleavingChunk[];
  /** Changes each interleaving's new cluster (tests plant a bug here). */
  plantInterleavings?: (cluster: Cluster) => void;
  /**
   * Also run a part of the generated paths ({@link deploymentWork}) on the in-process deployment
   * (`memory-deployment.ts`: three site nodes on an in-memory network, the operator, NBD exports): the site
   * processes' protocol code, which the in-process cluster never runs. In-process only; default false.
   */
  deployment?: boolean;
  /** The deployment's system under test (default the faithful one, `MemoryDeploymentSut`); tests plant bugs here. */
  makeDeploymentSut?: AsyncSutFactory;
  /** Chooses the deployment's paths from the run's (default {@link deploymentWork}); tests choose fewer. */
  deploymentWork?: (work: readonly WorkItem[]) => WorkItem[];
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

/** One chunk of the run's interleavings: its storage, its number of runs and its fast-check seed. */
export interface InterleavingChunk {
  storage: 'memory' | 'file';
  runs: number;
  seed: number;
}

/**
 * The interleavings `npm start` runs: 10 chunks of 20 in memory and 2 of 10 on files (a crashed site
 * reopens from its files), each from its own seed derived from the run's. Chunks, so that the harness-only
 * mutation run (`test/mutation/conformance-paths.spec.ts`) stops at the first chunk that fails.
 */
export function interleavingWork(seed: number): InterleavingChunk[] {
  const memory = Array.from({ length: 10 }, (_, i): InterleavingChunk => ({ storage: 'memory', runs: 20, seed: seed + 1_000 + i }));
  const files = Array.from({ length: 2 }, (_, i): InterleavingChunk => ({ storage: 'file', runs: 10, seed: seed + 2_000 + i }));
  return [...memory, ...files];
}

/** What the interleavings found: totals over the chunks, and each violation's report (fast-check's, shrunk). */
export interface InterleavingResult extends InterleavingTotals {
  violations: { chunk: InterleavingChunk; report: string }[];
}

/** Runs the interleaving chunks; a violation is recorded with its chunk, not thrown. */
export async function runInterleavingChunks(chunks: readonly InterleavingChunk[], plant?: (cluster: Cluster) => void, progress?: (done: number) => void): Promise<InterleavingResult> {
  const result: InterleavingResult = { runs: 0, checks: 0, deliveries: 0, failovers: 0, failbacks: 0, converged: 0, violations: [] };
  for (const [i, chunk] of chunks.entries()) {
    progress?.(i);
    try {
      const totals = await exploreInterleavings({ runs: chunk.runs, seed: chunk.seed, storage: chunk.storage, ...(plant ? { plant } : {}) });
      for (const key of ['runs', 'checks', 'deliveries', 'failovers', 'failbacks', 'converged'] as const) result[key] += totals[key];
    } catch (error) {
      // fast-check's report (seed, path, the shrunk schedule) and, first, the violation it carries as cause.
      const cause = error instanceof Error && error.cause instanceof Error ? `${error.cause.message}\n` : '';
      result.violations.push({ chunk, report: `${cause}${error instanceof Error ? error.message : String(error)}` });
    }
  }
  progress?.(chunks.length);
  return result;
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
  /** The larger bounds' plan (`paths.ts`, `largerBounds`): its model, the states of its cheaper model, its paths. */
  largerBounds: { params: (ModelParams & { fencePolicies: FencePolicy[] }) | null; states: number; complete: boolean; violations: unknown[]; ms: number; paths: number };
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
  /** The generated paths run on the file backends with crashes (`crash-sut.ts`); null when not run. */
  fileBackend: (CrashCounts & { paths: number; failed: number; byteRangeWrites: number }) | null;
  /** Host writes of a byte range (not one whole block) the generated paths drove (memory and files). */
  byteRangeWrites: number;
  /** The interleavings (`interleavingWork`); null when not run. */
  interleavings: InterleavingResult | null;
  /** The generated paths run on the in-process deployment (`deploymentWork`); null when not run. */
  deployment: DeploymentResult | null;
  ms: number;
  timings: { planMs: number; pathsMs: number; fileMs: number; deploymentMs: number; walksMs: number; interleavingsMs: number; faultsMs: number };
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

/** Plans of this process, by bounds: a plan is a pure function of its bounds, so a process plans each once. */
const plansMade = new Map<string, Promise<CoveragePlan>>();

/** Plans one fence policy in a worker thread (`larger`: the larger bounds' cheaper model, `paths.ts`). */
function planInWorker(params: ModelParams, larger = false): Promise<CoveragePlan> {
  const key = JSON.stringify({ params, larger });
  let plan = plansMade.get(key);
  if (!plan) {
    plan = runTypeScriptWorker<CoveragePlan>(new URL('./plan-worker.ts', import.meta.url), { params, larger });
    plansMade.set(key, plan);
  }
  return plan;
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

/**
 * The strategies of the small bounds whose paths that fail a site also run on the file backends (all of the
 * larger bounds' do): the targeted ones, not the state and simple paths, which repeat them.
 */
const fileBackendStrategies = new Set<GeneratedPath['strategy']>(['transition', 'guard', 'refusal']);

/** The strategies whose paths the deployment stage runs: the plans' targeted paths, at both bounds. */
const deploymentStrategies = new Set<GeneratedPath['strategy']>(['transition', 'pair', 'guard', 'refusal', 'depth', 'byteRange']);

/**
 * The generated paths the deployment stage runs (`memory-deployment.ts`): the plans' targeted paths, those
 * that reach every transition, pair of transitions, guard outcome and refusal condition at the small bounds
 * and, at the larger bounds, also every journal depth and byte-range shape (journals that trim, overflow and
 * are refused to a pull), without those that are a prefix of another ({@link withoutPrefixes}): about 1,500
 * paths at `npm start`'s defaults, 10 s on two cores. Not the state and simple paths: the state paths would
 * add 3,100 paths and 30 s and run no line of `site-node.ts`, `storage-system.ts` or `operator.ts` that
 * these do not (measured with c8).
 */
export function deploymentWork(work: readonly WorkItem[]): WorkItem[] {
  return withoutPrefixes(work.filter((item) => deploymentStrategies.has(item.path.strategy)));
}

/** What the deployment stage did: its paths, their lockstep steps, and how many diverged. */
export interface DeploymentResult {
  paths: number;
  steps: number;
  divergences: number;
}

/** Host writes of a byte range among the first `taken` events of a path. */
function countByteRangeWrites(events: readonly ModelEvent[], taken = events.length): number {
  return events.slice(0, taken).filter((event) => event.type === 'HOST_WRITE' && isByteRangeWrite(event)).length;
}

/** One generated path to run, with its model's bounds; `larger`: planned at the larger bounds. */
export interface WorkItem {
  params: ModelParams;
  path: GeneratedPath;
  larger: boolean;
}

/**
 * Every generated path of a run, in the order the run takes them: per fence policy at the small bounds the
 * shortest paths to every abstract state, the plan's transition, pair, guard and refusal paths, the simple
 * paths and (when asked) the edge paths; then per fence policy at the larger bounds the plan's transition,
 * pair, guard, refusal, journal-depth and byte-range paths.
 */
export function generatedWork(input: {
  paramsList: readonly ModelParams[];
  plans: readonly CoveragePlan[];
  largerList: readonly ModelParams[];
  largerPlans: readonly CoveragePlan[];
  simpleDepth: number;
  edgePaths: boolean;
}): WorkItem[] {
  const work: WorkItem[] = [];
  for (const [i, params] of input.paramsList.entries()) {
    const plan = input.plans[i]!;
    const generated = [
      ...statePaths(params),
      ...plan.transitionPaths,
      ...plan.pairPaths,
      ...plan.guardPaths,
      ...plan.refusalPaths,
      ...(input.simpleDepth > 0 ? simplePaths(params, input.simpleDepth) : []),
      ...(input.edgePaths ? edgePaths(params) : []),
    ];
    for (const path of generated) work.push({ params, path, larger: false });
  }
  for (const [i, params] of input.largerList.entries()) {
    const plan = input.largerPlans[i]!;
    const generated = [...plan.transitionPaths, ...plan.pairPaths, ...plan.guardPaths, ...plan.refusalPaths, ...plan.depthPaths, ...plan.byteRangePaths];
    for (const path of generated) work.push({ params, path, larger: true });
  }
  return work;
}

/** The generated paths a run takes again on the file backends, with crashes: those that fail a site. */
export function fileBackendWork(work: readonly WorkItem[]): WorkItem[] {
  return work.filter((item) => (item.larger || fileBackendStrategies.has(item.path.strategy)) && item.path.events.some((event) => event.type === 'FAIL_SITE'));
}

/**
 * The paths without those that are a prefix of another path with the same parameters. The lockstep compares
 * the observations after every step, so a longer path checks every step its prefix does: dropping the
 * prefix loses no check (only the close of the site at the prefix's end), and the run that every surviving
 * mutant costs is about a third shorter. The file-backend paths are kept whole: their crashes are seeded in
 * the order `npm start` runs them. Used by the harness-only mutation run (test/mutation/conformance-paths.spec.ts).
 */
export function withoutPrefixes(items: readonly WorkItem[]): WorkItem[] {
  const keyOf = (item: WorkItem): string => `${JSON.stringify(item.params)}|${item.larger}`;
  const sequences = new Map<string, string[]>();
  for (const item of items) {
    const list = sequences.get(keyOf(item)) ?? [];
    list.push(item.path.events.map((event) => JSON.stringify(event)).join(','));
    sequences.set(keyOf(item), list);
  }
  const longer = new Map<string, Set<string>>();
  for (const [key, list] of sequences) {
    const sorted = [...new Set(list)].sort();
    const prefixes = new Set<string>();
    // In sorted order a sequence that is a prefix (at an event boundary) of others sorts right before one of them.
    for (let i = 0; i + 1 < sorted.length; i += 1) {
      const here = sorted[i] as string;
      const next = sorted[i + 1] as string;
      if (here === '' || next.startsWith(`${here},`)) prefixes.add(here);
    }
    longer.set(key, prefixes);
  }
  const seen = new Set<string>();
  return items.filter((item) => {
    const sequence = item.path.events.map((event) => JSON.stringify(event)).join(',');
    const id = `${keyOf(item)}|${sequence}`;
    if (longer.get(keyOf(item))?.has(sequence) || seen.has(id)) return false;
    seen.add(id);
    return true;
  });
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
  let byteRangeWrites = 0;

  // Saved fixtures first: every earlier failure is replayed before anything new.
  const fixtures = options.fixturesDir ? loadFixtures(options.fixturesDir, makeSut) : [];

  const timings = { planMs: 0, pathsMs: 0, fileMs: 0, deploymentMs: 0, walksMs: 0, interleavingsMs: 0, faultsMs: 0 };
  let phaseStarted = performance.now();
  const endPhase = (phase: keyof typeof timings): void => {
    const now = performance.now();
    timings[phase] = Math.round(now - phaseStarted);
    phaseStarted = now;
  };
  // Two plans per fence policy, in four worker threads: the small bounds explored exhaustively, and the
  // larger bounds (journals of 3, pulls of 2, byte ranges) through their cheaper model (`paths.ts`).
  const largerList = options.largerBounds ? paramsList.map((params) => validateParams({ ...params, ...largerBounds })) : [];
  const planCount = paramsList.length + largerList.length;
  progress('planning (exhaustive exploration, larger bounds)', 0, planCount);
  const [plans, largerPlans] = await Promise.all([
    Promise.all(paramsList.map((params) => planInWorker(params))),
    Promise.all(largerList.map((params) => planInWorker(params, true))),
  ]);
  progress('planning (exhaustive exploration, larger bounds)', planCount, planCount);

  const reachableOf = (list: CoveragePlan[]): ReachableItems => ({
    definitions: new Set(list.flatMap((plan) => plan.reachableDefinitions)),
    pairs: new Set(list.flatMap((plan) => plan.allowedPairs)),
    guardOutcomes: new Set(list.flatMap((plan) => plan.guardOutcomes)),
    refusals: new Set(list.flatMap((plan) => plan.refusalsAlone)),
    journalDepths: new Set(list.flatMap((plan) => plan.journalDepths)),
    byteRanges: new Set(list.flatMap((plan) => plan.byteRanges)),
    graphEdges: new Set<string>(),
  });
  const reachable = reachableOf([...plans, ...largerPlans]);
  const largerReachable = reachableOf(largerPlans);
  const graphEdges = reachable.graphEdges;
  for (const params of paramsList) for (const edge of abstractGraphEdges(params)) graphEdges.add(edge);
  const work = generatedWork({ paramsList, plans, largerList, largerPlans, simpleDepth: options.simpleDepth, edgePaths: options.edgePaths }).filter((_, index) =>
    inShard(index, options.shard),
  );

  endPhase('planMs');
  const largerCoverage = new CoverageTracker();
  for (const [index, { params, path, larger }] of work.entries()) {
    if (index % 50 === 0) progress('generated paths', index, work.length);
    const run = runPath(params, path.events, makeSut, larger ? largerCoverage : coverage);
    steps += run.steps;
    byteRangeWrites += countByteRangeWrites(path.events, run.steps);
    pathOutcomes.push({ fencePolicy: params.fencePolicy, strategy: path.strategy, target: path.target, events: path.events.length, passed: !run.divergence });
    if (run.divergence) {
      divergences.push(report(run.divergence, params.fencePolicy, path.strategy, path.target, null, null));
      if (options.fixturesDir) saveFixture(options.fixturesDir, params, path.events.slice(0, run.divergence.step + 1), run, `${path.strategy}: ${path.target}`);
    }
  }
  progress('generated paths', work.length, work.length);
  endPhase('pathsMs');

  // Files and crashes: every generated path that fails a site, again on the file backends (issue 16).
  let fileBackend: ConformanceReport['fileBackend'] = null;
  if (options.fileBackends) {
    const crashing = crashingFileSutFactory(options.seed);
    const fileSut = options.makeFileSut ? options.makeFileSut(options.seed) : crashing;
    const fileWork = fileBackendWork(work);
    let failed = 0;
    for (const [index, { params, path }] of fileWork.entries()) {
      if (index % 50 === 0) progress('generated paths on files, with crashes', index, fileWork.length);
      const run = runPath(params, path.events, fileSut, coverage);
      steps += run.steps;
      byteRangeWrites += countByteRangeWrites(path.events, run.steps);
      if (run.divergence) {
        failed += 1;
        divergences.push(report(run.divergence, params.fencePolicy, `files+crashes ${path.strategy}`, path.target, null, null));
      }
    }
    progress('generated paths on files, with crashes', fileWork.length, fileWork.length);
    const counts = crashing.made.reduce<CrashCounts>(
      (sum, sut) => ({
        crashes: sum.crashes + sut.counts.crashes,
        tornTails: sum.tornTails + sut.counts.tornTails,
        corruptTails: sum.corruptTails + sut.counts.corruptTails,
        recoveries: sum.recoveries + sut.counts.recoveries,
      }),
      { crashes: 0, tornTails: 0, corruptTails: 0, recoveries: 0 },
    );
    fileBackend = { paths: fileWork.length, failed, ...counts, byteRangeWrites: fileWork.reduce((sum, item) => sum + countByteRangeWrites(item.path.events), 0) };
  }
  endPhase('fileMs');

  // The site processes' protocol code, in this thread: the targeted paths on the in-process deployment.
  let deployment: DeploymentResult | null = null;
  if (options.deployment) {
    const makeDeploymentSut = options.makeDeploymentSut ?? MemoryDeploymentSut.create;
    const deploymentItems = (options.deploymentWork ?? deploymentWork)(work);
    deployment = { paths: deploymentItems.length, steps: 0, divergences: 0 };
    const phase = 'generated paths on the in-process deployment (site nodes, operator, NBD exports)';
    for (const [index, { params, path }] of deploymentItems.entries()) {
      if (index % 50 === 0) progress(phase, index, deploymentItems.length);
      const run = await runPathAsync(params, path.events, makeDeploymentSut);
      deployment.steps += run.steps;
      if (run.divergence) {
        deployment.divergences += 1;
        divergences.push(report(run.divergence, params.fencePolicy, `deployment ${path.strategy}`, path.target, null, null));
      }
    }
    progress(phase, deploymentItems.length, deploymentItems.length);
  }
  endPhase('deploymentMs');

  const walks = { runs: 0, steps: 0 };
  const walkParams = [...paramsList, ...largerList];
  for (const [i, params] of walkParams.entries()) {
    progress('random walks', i, walkParams.length);
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
  progress('random walks', walkParams.length, walkParams.length);
  endPhase('walksMs');

  let interleavings: InterleavingResult | null = null;
  if (options.interleavings) {
    const chunks = options.interleavingChunks ?? interleavingWork(options.seed);
    interleavings = await runInterleavingChunks(chunks, options.plantInterleavings, (done) => progress('interleavings (P1-P7 on real bytes)', done, chunks.length));
    for (const { chunk, report: text } of interleavings.violations) {
      divergences.push({
        fencePolicy: paramsList[0]!.fencePolicy,
        strategy: 'interleaving',
        target: `${chunk.storage}, seed ${chunk.seed}`,
        // fast-check's report names the seed and path that replay it (exploreInterleavings with that seed).
        seed: null,
        replayPath: null,
        path: [],
        step: 0,
        summary: text.split('\n').slice(0, 12).join('\n'),
        expected: 'P1-P7 hold after every step',
        actual: text,
      });
    }
  }
  endPhase('interleavingsMs');

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

  coverage.merge(largerCoverage);
  const coverageReport = coverage.report(reachable, { reachable: largerReachable, tracker: largerCoverage });
  const mustHappen = mustHappenChecks().map((check) => ({ ...check, happened: check.transitions.some((id) => coverage.transitions.has(id)) }));
  const ms = performance.now() - started;
  const largerPlan = {
    params: largerList[0] ? { ...largerList[0], fencePolicies: options.fencePolicies } : null,
    states: largerPlans.reduce((sum, plan) => sum + plan.states, 0),
    complete: largerPlans.every((plan) => plan.complete),
    violations: largerPlans.flatMap((plan) => plan.violations),
    ms: Math.round(largerPlans.reduce((sum, plan) => sum + plan.exploreMs, 0)),
    paths: work.filter((item) => item.larger).length,
  };
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
  // The interleavings must reach the failover story and the convergence check (P6), not pass vacuously.
  if (fullShard && interleavings !== null && !(interleavings.failovers > 0 && interleavings.failbacks > 0 && interleavings.converged > 0)) {
    gateFailures.push(`interleavings ${interleavings.failovers} failovers, ${interleavings.failbacks} failbacks, ${interleavings.converged} converged: each must be above 0`);
  }
  // The deployment stage must run paths: with none it would pass without having checked anything.
  if (fullShard && deployment !== null && deployment.paths === 0) {
    gateFailures.push('deployment 0 paths: the in-process deployment stage must run generated paths');
  }
  const passed =
    divergences.length === 0 &&
    fixtures.every((fixture) => fixture.passed) &&
    exploration.violations.length === 0 &&
    largerPlan.violations.length === 0 &&
    largerPlan.complete &&
    faults.every((fault) => fault.caught) &&
    gateFailures.length === 0 &&
    (!fullShard || mustHappen.every((check) => check.happened)) &&
    (!fullShard || fileBackend === null || (fileBackend.recoveries > 0 && fileBackend.tornTails > 0 && fileBackend.corruptTails > 0));
  return {
    seed: options.seed,
    params: { ...paramsList[0]!, fencePolicies: options.fencePolicies },
    exploration,
    largerBounds: largerPlan,
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
    fileBackend,
    byteRangeWrites,
    interleavings,
    deployment,
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
