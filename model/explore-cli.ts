/**
 * `npm run explore`: the bounded model checker's command line. Explores every reachable state of the
 * statechart within the bounds, once per fence policy (in parallel worker threads), checks P1-P7 on every
 * state and transition, and reports states, transitions, violations with shortest counterexamples, chart
 * and claim coverage; writes the summary to `reports/explore.json`. `--json` prints one JSON object on the
 * last line. Exit status 1 on any violation,
 * incomplete exploration or uncovered claim.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { claimCount } from './claims.ts';
import { exploreStatesMaxDefault, exploreWithAdjacencyMap } from './explore.ts';
import type { WorkerSummary } from './explore-worker.ts';
import { replicationMachine } from './machine.ts';
import { defaultParams, validateParams, type FencePolicy, type ModelParams } from './params.ts';
import { transitionDefinitions } from './traceability.ts';
import { runTypeScriptWorker } from './ts-worker.ts';

const usage = `usage: npm run explore -- [options]
  --volumes N        volumes per site (default ${defaultParams.volumeCount})
  --blocks N         blocks per volume (default ${defaultParams.blocksPerVolume})
  --journal N        journal capacity in entries (default ${defaultParams.journalEntriesMax})
  --batch N          entries per pull (default ${defaultParams.pullBatchEntriesMax})
  --writes N         host writes per path (default ${defaultParams.writesMax})
  --faults N         failures and link cuts per path (default ${defaultParams.faultsMax})
  --fence-policy P   keepWriting | refuse | both (default both)
  --states-max N     stop after N states per policy (default ${exploreStatesMaxDefault})
  --compare          also enumerate with xstate's getAdjacencyMap and report the speed ratio
  --json             print one JSON object on the last line
  --help`;

function integer(name: string, raw: string | undefined): number | undefined {
  if (raw === undefined) return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value)) {
    console.error(`--${name} must be an integer, got ${JSON.stringify(raw)}\n${usage}`);
    process.exit(2);
  }
  return value;
}

function runWorker(params: ModelParams, statesMax: number): Promise<WorkerSummary> {
  return runTypeScriptWorker<WorkerSummary>(new URL('./explore-worker.ts', import.meta.url), { params, statesMax });
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      volumes: { type: 'string' },
      blocks: { type: 'string' },
      journal: { type: 'string' },
      batch: { type: 'string' },
      writes: { type: 'string' },
      faults: { type: 'string' },
      'fence-policy': { type: 'string', default: 'both' },
      'states-max': { type: 'string' },
      compare: { type: 'boolean', default: false },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const policy = values['fence-policy'];
  if (policy !== 'both' && policy !== 'keepWriting' && policy !== 'refuse') {
    console.error(`--fence-policy must be keepWriting, refuse or both\n${usage}`);
    return 2;
  }
  const overrides: Partial<ModelParams> = {};
  const set = (key: keyof ModelParams, value: number | undefined): void => {
    if (value !== undefined) (overrides as Record<string, number>)[key] = value;
  };
  set('volumeCount', integer('volumes', values.volumes));
  set('blocksPerVolume', integer('blocks', values.blocks));
  set('journalEntriesMax', integer('journal', values.journal));
  set('pullBatchEntriesMax', integer('batch', values.batch));
  set('writesMax', integer('writes', values.writes));
  set('faultsMax', integer('faults', values.faults));
  const statesMax = integer('states-max', values['states-max']) ?? exploreStatesMaxDefault;
  const policies: FencePolicy[] = policy === 'both' ? ['keepWriting', 'refuse'] : [policy];
  const paramsList = policies.map((fencePolicy) => validateParams({ ...overrides, fencePolicy }));

  const started = performance.now();
  if (!values.json) console.log(`exploring ${policies.length} fence polic${policies.length > 1 ? 'ies' : 'y'} in parallel...`);
  const runs = await Promise.all(paramsList.map((params) => runWorker(params, statesMax)));
  const ms = performance.now() - started;

  const definitions = transitionDefinitions(replicationMachine);
  const taken = new Set(runs.flatMap((run) => run.taken));
  const claimsCovered = new Set<number>();
  for (const info of definitions) if (taken.has(info.id)) for (const claim of info.meta?.claims ?? []) claimsCovered.add(claim);
  const missing = Array.from({ length: claimCount }, (_, i) => i + 1).filter((claim) => !claimsCovered.has(claim));
  const untakenDefinitions = definitions.filter((info) => !taken.has(info.id)).map((info) => info.id);
  const states = runs.reduce((sum, run) => sum + run.states, 0);
  const transitions = runs.reduce((sum, run) => sum + run.transitions, 0);
  const violations = runs.flatMap((run) => run.violations.map((violation) => ({ fencePolicy: run.params.fencePolicy, ...violation })));
  const busyMs = runs.reduce((sum, run) => sum + run.ms, 0);

  let comparison: Record<string, number> | undefined;
  if (values.compare) {
    if (!values.json) console.log("enumerating again with xstate's getAdjacencyMap for comparison...");
    const ours = runs[0]!;
    const theirs = exploreWithAdjacencyMap({ params: ours.params, statesMax });
    comparison = {
      fencePolicyCompared: policies[0] === 'refuse' ? 1 : 0,
      oursStates: ours.states,
      oursMs: Math.round(ours.ms),
      adjacencyMapStates: theirs.states,
      adjacencyMapMs: Math.round(theirs.ms),
      speedup: Number((theirs.ms / ours.ms).toFixed(2)),
    };
  }

  const summary = {
    states,
    transitions,
    violations,
    claims: { covered: claimCount - missing.length, total: claimCount, missing },
    chart: { covered: definitions.length - untakenDefinitions.length, total: definitions.length, untaken: untakenDefinitions },
    params: { ...paramsList[0]!, fencePolicy: policies },
    runs: runs.map((run) => ({
      fencePolicy: run.params.fencePolicy,
      states: run.states,
      transitions: run.transitions,
      depth: run.depth,
      complete: run.complete,
      ms: Math.round(run.ms),
    })),
    complete: runs.every((run) => run.complete),
    ms: Math.round(ms),
    statesPerSecond: Math.round(states / (busyMs / 1000)),
    transitionsPerSecond: Math.round(transitions / (busyMs / 1000)),
    ...(comparison ? { comparison } : {}),
  };

  if (!values.json) {
    for (const run of summary.runs) {
      console.log(
        `  ${run.fencePolicy.padEnd(11)} ${String(run.states).padStart(9)} states ${String(run.transitions).padStart(10)} transitions  depth ${run.depth}  ${run.ms} ms${run.complete ? '' : '  INCOMPLETE'}`,
      );
    }
    console.log(`claims covered: ${summary.claims.covered}/${claimCount}${missing.length ? `  missing: ${missing.join(', ')}` : ''}`);
    console.log(`chart transitions taken: ${summary.chart.covered}/${summary.chart.total}${untakenDefinitions.length ? `  untaken: ${untakenDefinitions.join('; ')}` : ''}`);
    console.log(`rate: ${summary.statesPerSecond} states/s, ${summary.transitionsPerSecond} transitions/s per core; wall ${summary.ms} ms`);
    if (comparison) console.log(`getAdjacencyMap on the same bounds: ${comparison.adjacencyMapMs} ms vs ours ${comparison.oursMs} ms (ours ${comparison.speedup}x faster)`);
    if (violations.length === 0) console.log('no violations of P1-P7 and P9');
    for (const violation of violations) {
      console.log(`\nVIOLATION ${violation.property} (${violation.fencePolicy}): ${violation.message}`);
      console.log(`  shortest path (${violation.path.length} events):`);
      for (const step of violation.path) console.log(`    ${step}`);
    }
  }
  // The review page (`npm run review`) shows this summary beside its own figures.
  mkdirSync('reports', { recursive: true });
  writeFileSync('reports/explore.json', `${JSON.stringify(summary, null, 2)}\n`);
  if (values.json) console.log(JSON.stringify(summary));
  return violations.length === 0 && summary.complete && missing.length === 0 ? 0 : 1;
}

process.exitCode = await main();
