/**
 * The generated paths as vitest tests: one test per path, so a failure names its path. Bounds are smaller
 * than the main job's (one fault per path) to keep the suite fast; `npm start` runs the full set. Shard
 * with vitest's own `--shard i/n`.
 *
 * Planning the paths explores the model (seconds). The mutation run (`npm run mutation`) imports this file
 * once per mutant and mutates only impl/, so it sets `THREESITE_PATHS_CACHE_DIR` and the paths are planned
 * once and read back from there.
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan, simplePaths, statePaths, type GeneratedPath } from '../../conformance/paths.ts';
import { formatEvent } from '../../model/events.ts';
import { validateParams, type FencePolicy, type ModelParams } from '../../model/params.ts';

interface PlannedPaths {
  violations: unknown[];
  paths: GeneratedPath[];
}

function plan(params: ModelParams): PlannedPaths {
  const coverage = coveragePlan(params);
  return {
    violations: coverage.violations,
    paths: [...coverage.transitionPaths, ...coverage.pairPaths, ...statePaths(params), ...simplePaths(params, 3)],
  };
}

function plannedPaths(params: ModelParams): PlannedPaths {
  const dir = process.env.THREESITE_PATHS_CACHE_DIR;
  if (!dir) return plan(params);
  const file = join(dir, `generated-paths-${params.fencePolicy}.json`);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as PlannedPaths;
  const planned = plan(params);
  mkdirSync(dir, { recursive: true });
  writeFileSync(file, JSON.stringify(planned));
  return planned;
}

for (const fencePolicy of ['keepWriting', 'refuse'] as FencePolicy[]) {
  const params = validateParams({ writesMax: 2, journalEntriesMax: 1, faultsMax: 1, fencePolicy });
  const { violations, paths } = plannedPaths(params);

  describe(`generated paths, fence policy ${fencePolicy}`, () => {
    it('the bounded model has no violation', () => {
      expect(violations).toEqual([]);
    });

    describe.each(paths.map((path) => ({ name: `${path.strategy}: ${path.target}`, path })))('$name', ({ path }) => {
      it(`${path.events.length} events: ${path.events.map(formatEvent).join(', ')}`.slice(0, 400), () => {
        const run = runPath(params, path.events, ClusterSut.create);
        expect(run.divergence?.summary ?? null).toBeNull();
      });
    });
  });
}
