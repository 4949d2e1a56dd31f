/**
 * `npm start`: the conformance run, the project's main job. Explores the model, drives the implementation
 * along every generated path and along random walks in lockstep with the model, hunts the fault catalogue,
 * prints a summary table and writes `reports/conformance.json` and `reports/conformance.junit.xml`.
 * Exit status 1 on any divergence, uncaught fault, unmet must-happen check or missing coverage.
 */
import { existsSync, mkdirSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import cliProgress from 'cli-progress';
import junitBuilder, { type Builder } from 'junit-report-builder';
import { defaultParams, type FencePolicy, type ModelParams } from '../model/params.ts';
import { parseEvent } from '../model/events.ts';
import { processDriverCommand } from '../impl/drivers/driver-processes.ts';
import { ClusterSut } from './adapter.ts';
import { loadFixtures } from './fixtures.ts';
import { runPath } from './lockstep.ts';
import type { CoverageReport } from './coverage.ts';
import { runConformance, type ConformanceReport } from './run.ts';
import type { SutFactory } from './sut.ts';
import { driverSutFactory } from './sut-driver.ts';
import { runWalks, walkLimits } from './walks.ts';

/** Coverage every full run must reach unless `--gate` says otherwise. */
export const defaultGates: Partial<Record<keyof CoverageReport, number>> = {
  states: 1,
  transitions: 1,
  transitionPairs: 1,
  guards: 1,
  claims: 1,
  refusals: 1,
  journalDepths: 1,
  byteRanges: 1,
  largerBoundsTransitions: 1,
  largerBoundsPairs: 1,
  largerBoundsGuards: 1,
};

function defaultGatesText(): string {
  return Object.entries(defaultGates).map(([dimension, fraction]) => `${dimension}=${fraction}`).join(',');
}

const dimensions = [
  'states',
  'transitions',
  'graphEdges',
  'transitionPairs',
  'guards',
  'claims',
  'refusals',
  'journalDepths',
  'byteRanges',
  'largerBoundsTransitions',
  'largerBoundsPairs',
  'largerBoundsGuards',
] as const;

/** Parses `--gate states=1,graphEdges=0.5`. */
function parseGates(text: string): Partial<Record<keyof CoverageReport, number>> {
  const gates: Partial<Record<keyof CoverageReport, number>> = {};
  for (const part of text.split(',')) {
    const [dimension, raw] = part.split('=');
    const fraction = Number(raw);
    if (!dimensions.includes(dimension as (typeof dimensions)[number]) || !(fraction >= 0 && fraction <= 1)) {
      fail(`--gate takes DIMENSION=FRACTION[,...] with a dimension of ${dimensions.join(', ')} and 0 <= FRACTION <= 1, got ${JSON.stringify(part)}`);
    }
    gates[dimension as keyof CoverageReport] = fraction;
  }
  return gates;
}

/** Defaults of the main job. */
export const mainDefaults = {
  seed: 20_261_125,
  walkRuns: 200,
  walkSteps: 60,
  simpleDepth: 4,
  reportsDir: 'reports',
  fixturesDir: 'test/fixtures/failures',
  /** Where a driver's divergences are saved and replayed first (the committed fixtures are replayed too). */
  driverFixturesDir: 'reports/driver-failures',
};

/** The system under test of a run, as the summary and `reports/conformance.json` name it. */
export interface SutDescription {
  kind: 'inprocess' | 'driver';
  /** The driver command (`sh -c`), or null in process. */
  command: string | null;
  /** What the system calls itself (a driver's `hello` name). */
  name: string | null;
}

/** What `--sut` selected: its factory, its description, and how to end it. */
interface SelectedSut {
  makeSut: SutFactory;
  describe(): SutDescription;
  close(): void;
}

/**
 * The system under test `--sut` names: `inprocess` (the default, `conformance/adapter.ts`), `processes`
 * (the three site processes, through their driver `impl/drivers/driver-processes.ts`), or any other text, a driver
 * command speaking the driver protocol (`conformance/sut-driver.ts`).
 */
function selectSut(value: string): SelectedSut {
  if (value === 'inprocess') {
    return { makeSut: ClusterSut.create, describe: () => ({ kind: 'inprocess', command: null, name: 'in-process Cluster' }), close: () => {} };
  }
  if (value.trim() === '') fail('--sut takes inprocess, processes or a driver command');
  const command = value === 'processes' ? processDriverCommand : value;
  const factory = driverSutFactory(command);
  return {
    makeSut: factory,
    describe: () => ({ kind: 'driver', command, name: factory.driverName }),
    close: () => {
      const failure = factory.close();
      if (failure) console.error(`the driver did not close cleanly: ${failure.message}`);
    },
  };
}

const usage = `usage: npm start -- [options]
  --seed N            seed of the random walks and the interleavings (default ${mainDefaults.seed})
  --runs N            random walks per fence policy (default ${mainDefaults.walkRuns})
  --walk-steps N      events per walk at most (default ${mainDefaults.walkSteps}, max ${walkLimits.walkStepsMax})
  --depth N           depth of the simple paths, 0 for none (default ${mainDefaults.simpleDepth})
  --shard i/n         run part i of n of the generated paths
  --fence-policy P    keepWriting | refuse | both (default both)
  --writes N --faults N --journal N --volumes N --blocks N --batch N   model bounds (as npm run explore)
  --edges             add one path per edge of the abstract graph (full graph-edge coverage)
  --gate D=F,...      coverage each dimension must reach, as a fraction
                      (default ${defaultGatesText()}; graphEdges=1 with --edges)
  --no-faults         skip the fault catalogue
  --no-deployment     skip the in-process deployment stage (the targeted paths on three site nodes, the
                      operator and the NBD exports in this process)
  --sut S             the system under test: inprocess (default); processes, the three site processes
                      (threesite serve) driven over NBD and their control ports by impl/drivers/driver-processes.ts;
                      or a driver command run with sh -c that speaks the driver protocol (README), e.g.
                      --sut "npx tsx impl/drivers/driver.ts"; a driver skips the fault catalogue (it wraps the
                      in-process cluster)
  --replay SEED:PATH  replay one shrunk random walk (as printed by a failure) and exit
  --replay-fixture F  replay one saved fixture and exit
  --validate-trace F  check an implementation's ndjson trace against the model, step by step, and exit
                      (repeat for one log per site: they are merged by time; a directory stands for its
                      *.ndjson files, as a deployment's traceDir holds them; conformance/TRACE.md)
  --help`;

/** The trace files named: a directory stands for the `.ndjson` files in it (a deployment's `traceDir`). */
function traceFilesOf(names: readonly string[]): string[] {
  return names.flatMap((name) => {
    if (!existsSync(name) || !statSync(name).isDirectory()) return [name];
    return readdirSync(name)
      .filter((file) => file.endsWith('.ndjson'))
      .sort()
      .map((file) => join(name, file));
  });
}

function fail(message: string): never {
  console.error(`${message}\n${usage}`);
  process.exit(2);
}

function integer(name: string, raw: string | undefined, fallback: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 0) fail(`--${name} must be a non-negative integer, got ${JSON.stringify(raw)}`);
  return value;
}

function printSummary(report: ConformanceReport, sut: SutDescription): void {
  const rows: [string, string][] = [
    ['system under test', sut.kind === 'inprocess' ? 'in process (conformance/adapter.ts)' : `driver ${JSON.stringify(sut.command)} (${sut.name ?? 'never answered hello'})`],
    ['exploration', `${report.exploration.states} states, ${report.exploration.transitions} transitions, ${report.exploration.violations.length} violations`],
    [
      'larger bounds plan',
      report.largerBounds.params === null
        ? 'skipped'
        : `journal ${report.largerBounds.params.journalEntriesMax}, batch ${report.largerBounds.params.pullBatchEntriesMax}, ${report.largerBounds.params.writesMax} writes, byte ranges: ${report.largerBounds.states} states of the cheaper model${report.largerBounds.complete ? '' : ' (INCOMPLETE)'}, ${report.largerBounds.paths} paths`,
    ],
    ['generated paths', `${report.paths} paths, ${report.pathOutcomes.filter((p) => !p.passed).length} failed`],
    [
      'files and crashes',
      report.fileBackend === null
        ? 'skipped (in-process only)'
        : `${report.fileBackend.paths} paths on the file backends, ${report.fileBackend.failed} failed: ${report.fileBackend.crashes} crashes (${report.fileBackend.tornTails} torn and ${report.fileBackend.corruptTails} corrupt journal tails), ${report.fileBackend.recoveries} recoveries from files`,
    ],
    [
      'in-process deployment',
      report.deployment === null
        ? 'skipped (in-process only, or --no-deployment)'
        : `${report.deployment.paths} paths on three site nodes, the operator and NBD exports in this process, ${report.deployment.steps} steps, ${report.deployment.divergences} diverged`,
    ],
    ['byte-range writes', `${report.byteRangeWrites} host writes of a byte range in the generated paths`],
    ['random walks', `${report.walks.runs} walks, ${report.walks.steps} steps`],
    [
      'interleavings',
      report.interleavings === null
        ? 'skipped (in-process only)'
        : `${report.interleavings.runs} runs (writes in flight, crash, failover story), ${report.interleavings.checks} P1-P7 checks on real bytes, ${report.interleavings.failovers} failovers, ${report.interleavings.failbacks} failbacks, ${report.interleavings.converged} converged; ${report.interleavings.violations.length} violations`,
    ],
    ['lockstep steps', `${report.steps} (${report.stepsPerSecond} steps/s of model + implementation)`],
    ['saved fixtures', `${report.fixtures.length} replayed, ${report.fixtures.filter((f) => !f.passed).length} failed`],
  ];
  for (const [name, figure] of Object.entries(report.coverage)) {
    rows.push([`coverage: ${name}`, `${figure.covered}/${figure.total}${figure.unreachable.length ? ` (${figure.unreachable.length} unreachable, listed in the JSON)` : ''}`]);
  }
  rows.push([
    'fault catalogue',
    sut.kind === 'driver'
      ? 'skipped: it wraps the in-process cluster, so it proves the harness, not a driver (run it with --sut inprocess)'
      : `${report.faults.caught}/${report.faults.total} caught`,
  ]);
  for (const check of report.mustHappen) rows.push([`must happen: ${check.name}`, check.happened ? 'yes' : 'NO']);
  rows.push(['divergences', String(report.divergences.length)]);
  for (const failure of report.gateFailures) rows.push(['COVERAGE GATE', failure]);
  const t = report.timings;
  rows.push(['time', `${(report.ms / 1000).toFixed(1)} s (plan ${(t.planMs / 1000).toFixed(1)}, paths ${(t.pathsMs / 1000).toFixed(1)}, files ${(t.fileMs / 1000).toFixed(1)}, deployment ${(t.deploymentMs / 1000).toFixed(1)}, walks ${(t.walksMs / 1000).toFixed(1)}, interleavings ${(t.interleavingsMs / 1000).toFixed(1)}, faults ${(t.faultsMs / 1000).toFixed(1)})`]);
  const width = Math.max(...rows.map(([name]) => name.length));
  console.log('\nconformance summary');
  for (const [name, figure] of rows) console.log(`  ${name.padEnd(width)}  ${figure}`);
  if (report.faults.list.length) {
    console.log('\nfault catalogue');
    const nameWidth = Math.max(...report.faults.list.map((fault) => fault.name.length));
    for (const fault of report.faults.list) {
      console.log(`  ${fault.caught ? 'caught ' : 'MISSED '} ${fault.name.padEnd(nameWidth)}  ${fault.strategy ?? '-'}${fault.counterexampleLength !== null ? `, ${fault.counterexampleLength} event${fault.counterexampleLength === 1 ? '' : 's'}` : ''}`);
    }
  }
  for (const divergence of report.divergences) {
    console.log(`\nDIVERGENCE (${divergence.fencePolicy}, ${divergence.strategy}: ${divergence.target}) at step ${divergence.step + 1}:`);
    console.log(`  ${divergence.summary.split('\n').join('\n  ')}`);
    console.log('  events:');
    for (const event of divergence.path) console.log(`    ${event}`);
    if (divergence.seed !== null) console.log(`  replay: npm start -- --fence-policy ${divergence.fencePolicy} --replay ${divergence.seed}:${divergence.replayPath}`);
  }
  for (const fixture of report.fixtures.filter((f) => !f.passed)) console.log(`\nFIXTURE FAILED ${fixture.file} (${fixture.name}): ${fixture.summary}`);
  console.log(report.passed ? '\nPASSED' : '\nFAILED');
}

function writeJunit(report: ConformanceReport, file: string): void {
  // The package's default export is its builder instance (typed as the module by NodeNext's interop).
  const builder = (junitBuilder as unknown as Builder).newBuilder();
  const paths = builder.testSuite().name('generated paths');
  for (const outcome of report.pathOutcomes) {
    const test = paths.testCase().className(`${outcome.fencePolicy}.${outcome.strategy}`).name(outcome.target);
    if (!outcome.passed) {
      const divergence = report.divergences.find((d) => d.fencePolicy === outcome.fencePolicy && d.strategy === outcome.strategy && d.target === outcome.target);
      test.failure(divergence?.summary ?? 'diverged');
    }
  }
  const faults = builder.testSuite().name('fault catalogue');
  for (const fault of report.faults.list) {
    const test = faults.testCase().className('faults').name(fault.name);
    if (!fault.caught) test.failure(`not caught: ${fault.description}`);
    else test.standardOutput(`${fault.strategy}, ${fault.counterexampleLength} events: ${fault.summary}`);
  }
  const checks = builder.testSuite().name('must happen');
  for (const check of report.mustHappen) {
    const test = checks.testCase().className('mustHappen').name(check.name);
    if (!check.happened) test.failure(`never happened (any of ${check.transitions.join(', ')})`);
  }
  builder.writeTo(file);
}

async function main(): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        seed: { type: 'string' },
        runs: { type: 'string' },
        'walk-steps': { type: 'string' },
        depth: { type: 'string' },
        shard: { type: 'string' },
        'fence-policy': { type: 'string', default: 'both' },
        writes: { type: 'string' },
        faults: { type: 'string' },
        journal: { type: 'string' },
        volumes: { type: 'string' },
        blocks: { type: 'string' },
        batch: { type: 'string' },
        'no-faults': { type: 'boolean', default: false },
        'no-deployment': { type: 'boolean', default: false },
        sut: { type: 'string', default: 'inprocess' },
        edges: { type: 'boolean', default: false },
        gate: { type: 'string' },
        replay: { type: 'string' },
        'replay-fixture': { type: 'string' },
        'validate-trace': { type: 'string', multiple: true },
        help: { type: 'boolean', default: false },
      },
      strict: true,
    });
  } catch (error) {
    fail(error instanceof Error ? error.message : String(error));
  }
  const { values } = parsed;
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const policy = values['fence-policy'];
  if (policy !== 'both' && policy !== 'keepWriting' && policy !== 'refuse') fail('--fence-policy must be keepWriting, refuse or both');
  const fencePolicies: FencePolicy[] = policy === 'both' ? ['keepWriting', 'refuse'] : [policy];
  const params: Partial<ModelParams> = {
    writesMax: integer('writes', values.writes, defaultParams.writesMax),
    faultsMax: integer('faults', values.faults, defaultParams.faultsMax),
    journalEntriesMax: integer('journal', values.journal, defaultParams.journalEntriesMax),
    volumeCount: integer('volumes', values.volumes, defaultParams.volumeCount),
    blocksPerVolume: integer('blocks', values.blocks, defaultParams.blocksPerVolume),
    pullBatchEntriesMax: integer('batch', values.batch, defaultParams.pullBatchEntriesMax),
  };
  const seed = integer('seed', values.seed, mainDefaults.seed);
  const walkSteps = integer('walk-steps', values['walk-steps'], mainDefaults.walkSteps);
  const sut = selectSut(values.sut);
  closeAtExit.push(sut.close);

  if (values.replay) {
    const match = /^(-?\d+):([\d:]+)$/.exec(values.replay);
    if (!match) fail(`--replay takes SEED:PATH as printed by a failure, got ${JSON.stringify(values.replay)}`);
    const result = runWalks({ ...defaultParams, ...params, fencePolicy: fencePolicies[0]! }, sut.makeSut, {
      seed: Number(match[1]),
      path: match[2]!,
      runs: 1,
      steps: walkSteps,
    });
    if (!result.failure) {
      console.log('replayed: no divergence (the walk passes now)');
      return 0;
    }
    console.log(`replayed walk, ${result.failure.events.length} events:\n  ${result.failure.events.join('\n  ')}\n${result.failure.divergence.summary}`);
    return 1;
  }
  if (values['validate-trace']) {
    const { validateTrace, formatValidation, TraceFormatError } = await import('./trace-validate.ts');
    try {
      const validation = await validateTrace(traceFilesOf(values['validate-trace']));
      console.log(formatValidation(validation));
      return validation.violation ? 1 : 0;
    } catch (error) {
      if (!(error instanceof TraceFormatError)) throw error;
      console.error(`unusable trace: ${error.message}`);
      return 2;
    }
  }
  if (values['replay-fixture']) {
    const { readFixture } = await import('./fixtures.ts');
    const fixture = readFixture(values['replay-fixture']);
    const run = runPath(fixture.params, fixture.events.map(parseEvent), sut.makeSut);
    console.log(run.divergence ? `fixture fails: ${run.divergence.summary}` : `fixture passes (${fixture.events.length} events)`);
    return run.divergence ? 1 : 0;
  }

  let shard = { index: 1, count: 1 };
  if (values.shard) {
    const match = /^(\d+)\/(\d+)$/.exec(values.shard);
    if (!match || Number(match[1]) < 1 || Number(match[1]) > Number(match[2])) fail(`--shard takes i/n with 1 <= i <= n, got ${JSON.stringify(values.shard)}`);
    shard = { index: Number(match[1]), count: Number(match[2]) };
  }

  const bar = process.stderr.isTTY
    ? new cliProgress.SingleBar({ format: '{phase} [{bar}] {value}/{total}', hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic)
    : null;
  let phase = '';
  const inProcess = sut.describe().kind === 'inprocess';
  // A driver's own divergences are saved apart from the committed fixtures, which it replays first too.
  const committedFixtures = inProcess ? [] : loadFixtures(mainDefaults.fixturesDir, sut.makeSut);
  const report = await runConformance({
    params,
    fencePolicies,
    seed,
    walkRuns: integer('runs', values.runs, mainDefaults.walkRuns),
    walkSteps,
    simpleDepth: integer('depth', values.depth, mainDefaults.simpleDepth),
    edgePaths: values.edges,
    gates: values.gate ? parseGates(values.gate) : { ...defaultGates, ...(values.edges ? { graphEdges: 1 } : {}) },
    shard,
    faults: inProcess && !values['no-faults'],
    largerBounds: true,
    fileBackends: inProcess,
    interleavings: inProcess,
    deployment: inProcess && !values['no-deployment'],
    fixturesDir: inProcess ? mainDefaults.fixturesDir : mainDefaults.driverFixturesDir,
    makeSut: sut.makeSut,
    progress: (name, done, total) => {
      if (name !== phase) {
        bar?.stop();
        phase = name;
        if (bar) bar.start(total, done, { phase: name });
        else console.log(`${name}...`);
      } else bar?.update(done);
    },
  });
  bar?.stop();
  report.fixtures.unshift(...committedFixtures);
  report.passed &&= committedFixtures.every((fixture) => fixture.passed);

  mkdirSync(mainDefaults.reportsDir, { recursive: true });
  const { pathOutcomes, ...summary } = report;
  const sutDescription = sut.describe();
  writeFileSync(`${mainDefaults.reportsDir}/conformance.json`, `${JSON.stringify({ sut: sutDescription, ...summary, pathOutcomes }, null, 2)}\n`);
  writeJunit(report, `${mainDefaults.reportsDir}/conformance.junit.xml`);
  printSummary(report, sutDescription);
  // The spec review page shows this run's results claim by claim (issue 6).
  const { writeReviewPage } = await import('../review/page.ts');
  const page = await writeReviewPage({ reportsDir: mainDefaults.reportsDir, log: (line) => console.log(line) });
  console.log(`reports: ${mainDefaults.reportsDir}/conformance.json, ${mainDefaults.reportsDir}/conformance.junit.xml, ${page.file}`);
  return report.passed ? 0 : 1;
}

/** What must be ended when `main` returns (the driver of `--sut`). */
const closeAtExit: (() => void)[] = [];

try {
  process.exitCode = await main();
} finally {
  for (const close of closeAtExit) close();
}
