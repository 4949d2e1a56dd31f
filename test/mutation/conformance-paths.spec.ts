/**
 * The conformance run's generated paths, and nothing else, as vitest tests: the tests of the harness-only
 * mutation run (`npm run mutation:conformance`, `stryker.conformance.config.mjs`), which measures the share
 * of the replication logic's mutants that `npm start`'s generated paths kill on their own, with no unit test
 * keeping a mutant dead (issue 16). Named `.spec.ts` so that `npm test` (which takes `*.test.ts`) leaves it
 * out: planning takes minutes and the paths are thousands.
 *
 * The paths are those of `npm start` with its defaults (`conformance/run.ts`, `generatedWork`): both fence
 * policies, the small bounds' exhaustive plan and the larger bounds' plan, in memory; then those that fail a
 * site again on the file backends with crashes (`fileBackendWork`). The model is not mutated, so the plans are
 * made once and cached under `THREESITE_PATHS_CACHE_DIR`. Then the run's interleavings (`interleavingWork`), one
 * test per chunk. Then the deployment stage's paths (`deploymentWork`) on the in-process deployment
 * (`conformance/memory-deployment.ts`: site nodes, the operator, NBD exports, in this thread, so that the
 * mutants of the storage system only a site node reaches are seen), grouped as the paths in memory are.
 *
 * The paths are grouped, `pathsPerTest` to a test (by fence policy, bounds and plan strategy), not one test
 * each: Stryker's vitest runner selects a mutant's covering tests with one regular expression that alternates
 * their names, and vitest matches every test's name against it. With one test per path a mutant that thousands
 * of paths reach made that match quadratic (about 9,000 names against 9,000 alternatives), longer than the
 * mutant's timeout, and such mutants were reported as timeouts although they neither hang nor survive. Per-test
 * coverage then runs the groups that reach a mutant, which is a few paths more than it needs.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { crashingFileSutFactory } from '../../conformance/crash-sut.ts';
import { runPath, runPathAsync } from '../../conformance/lockstep.ts';
import { MemoryDeploymentSut } from '../../conformance/memory-deployment.ts';
import { coveragePlan, largerBounds } from '../../conformance/paths.ts';
import { deploymentWork, fileBackendWork, generatedWork, interleavingWork, runInterleavingChunks, withoutPrefixes, type WorkItem } from '../../conformance/run.ts';
import { formatEvent } from '../../model/events.ts';
import { defaultParams, validateParams } from '../../model/params.ts';

/** `npm start`'s defaults (`conformance/main.ts`, `mainDefaults`; that module runs the command when imported). */
const startDefaults = { simpleDepth: 4, seed: 20_261_125 };

function plannedWork(): WorkItem[] {
  const dir = process.env.THREESITE_PATHS_CACHE_DIR;
  const file = dir ? join(dir, 'conformance-run-paths.json') : null;
  if (file && existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as WorkItem[];
  const paramsList = (['keepWriting', 'refuse'] as const).map((fencePolicy) => validateParams({ ...defaultParams, fencePolicy }));
  const largerList = paramsList.map((params) => validateParams({ ...params, ...largerBounds }));
  const work = generatedWork({
    paramsList,
    plans: paramsList.map((params) => coveragePlan(params)),
    largerList,
    largerPlans: largerList.map((params) => coveragePlan(params, true)),
    simpleDepth: startDefaults.simpleDepth,
    edgePaths: false,
  });
  if (file && dir) {
    mkdirSync(dir, { recursive: true });
    writeFileSync(file, JSON.stringify(work));
  }
  return work;
}

/** Paths per test: a few hundred tests in all (see the module comment). */
const pathsPerTest = 40;

/** The work in groups of at most `pathsPerTest` paths of one fence policy, bounds and strategy, in run order. */
function groups(items: readonly WorkItem[]): { name: string; items: WorkItem[] }[] {
  const byKey = new Map<string, WorkItem[]>();
  for (const item of items) {
    const key = `${item.params.fencePolicy} ${item.larger ? 'larger ' : ''}${item.path.strategy}`;
    byKey.set(key, [...(byKey.get(key) ?? []), item]);
  }
  return [...byKey].flatMap(([key, list]) =>
    Array.from({ length: Math.ceil(list.length / pathsPerTest) }, (_, index) => ({
      name: `${key} #${index + 1} (${Math.min(pathsPerTest, list.length - index * pathsPerTest)} paths)`,
      items: list.slice(index * pathsPerTest, (index + 1) * pathsPerTest),
    })),
  );
}

/** Runs each path of a group in lockstep; the divergences, each with its path, for one assertion. */
function divergences(items: readonly WorkItem[], sut: Parameters<typeof runPath>[2]): string[] {
  return items.flatMap((item) => {
    const run = runPath(item.params, item.path.events, sut);
    return run.divergence ? [`${run.divergence.summary} on ${item.path.events.map(formatEvent).join(', ')}`] : [];
  });
}

/** {@link divergences} on the in-process deployment, one path after the other. */
async function deploymentDivergences(items: readonly WorkItem[]): Promise<string[]> {
  const found: string[] = [];
  for (const item of items) {
    const run = await runPathAsync(item.params, item.path.events, MemoryDeploymentSut.create);
    if (run.divergence) found.push(`${run.divergence.summary} on ${item.path.events.map(formatEvent).join(', ')}`);
  }
  return found;
}

const work = plannedWork();

describe('npm start: generated paths in memory', () => {
  it.each(groups(withoutPrefixes(work)))('$name', ({ items }) => {
    expect(divergences(items, ClusterSut.create)).toEqual([]);
  });
});

describe('npm start: generated paths on the file backends, with crashes', () => {
  const crashing = crashingFileSutFactory(startDefaults.seed);
  it.each(groups(fileBackendWork(work)))('$name', ({ items }) => {
    expect(divergences(items, crashing)).toEqual([]);
  });
});

describe('npm start: interleavings (writes in flight, a crash, the failover story; P1-P7 on real bytes)', () => {
  it.each(interleavingWork(startDefaults.seed).map((chunk) => ({ name: `${chunk.storage}, ${chunk.runs} runs, seed ${chunk.seed}`, chunk })))('$name', async ({ chunk }) => {
    const result = await runInterleavingChunks([chunk]);
    expect(result.violations.map((violation) => violation.report.split('\n')[0])).toEqual([]);
  });
});

describe('npm start: generated paths on the in-process deployment (site nodes, operator, NBD exports)', () => {
  it.each(groups(deploymentWork(work)))('$name', async ({ items }) => {
    expect(await deploymentDivergences(items)).toEqual([]);
  });
});
