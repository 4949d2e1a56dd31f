/**
 * The conformance run's generated paths, and nothing else, as vitest tests: the tests of the harness-only
 * mutation run (`npm run mutation:conformance`, `stryker.conformance.config.mjs`), which measures the share
 * of the replication logic's mutants that `npm start`'s generated paths kill on their own, with no unit test
 * keeping a mutant dead (issue 16). Named `.spec.ts` so that `npm test` (which takes `*.test.ts`) leaves it
 * out: planning takes minutes and the paths are thousands.
 *
 * The paths are those of `npm start` with its defaults (`conformance/run.ts`, `generatedWork`): both fence
 * policies, the small bounds' exhaustive plan and the larger bounds' plan, in memory; then those that fail a
 * site again on the file backends with crashes (`fileBackendWork`). One test per path, so Stryker's per-test
 * coverage runs only the paths that reach a mutant. The model is not mutated, so the plans are made once and
 * cached under `THREESITE_PATHS_CACHE_DIR`. Then the run's interleavings (`interleavingWork`), one test per chunk.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { crashingFileSutFactory } from '../../conformance/crash-sut.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan, largerBounds } from '../../conformance/paths.ts';
import { fileBackendWork, generatedWork, interleavingWork, runInterleavingChunks, withoutPrefixes, type WorkItem } from '../../conformance/run.ts';
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

const work = plannedWork();
const name = (item: WorkItem): string => `${item.params.fencePolicy} ${item.larger ? 'larger ' : ''}${item.path.strategy}: ${item.path.target}`.slice(0, 300);

describe('npm start: generated paths in memory', () => {
  it.each(withoutPrefixes(work).map((item) => ({ name: name(item), item })))('$name', ({ item }) => {
    const run = runPath(item.params, item.path.events, ClusterSut.create);
    expect(run.divergence?.summary ?? null, item.path.events.map(formatEvent).join(', ')).toBeNull();
  });
});

describe('npm start: generated paths on the file backends, with crashes', () => {
  const crashing = crashingFileSutFactory(startDefaults.seed);
  it.each(fileBackendWork(work).map((item) => ({ name: name(item), item })))('$name', ({ item }) => {
    const run = runPath(item.params, item.path.events, crashing);
    expect(run.divergence?.summary ?? null, item.path.events.map(formatEvent).join(', ')).toBeNull();
  });
});

describe('npm start: interleavings (writes in flight, a crash, the failover story; P1-P7 on real bytes)', () => {
  it.each(interleavingWork(startDefaults.seed).map((chunk) => ({ name: `${chunk.storage}, ${chunk.runs} runs, seed ${chunk.seed}`, chunk })))('$name', async ({ chunk }) => {
    const result = await runInterleavingChunks([chunk]);
    expect(result.violations.map((violation) => violation.report.split('\n')[0])).toEqual([]);
  });
});
