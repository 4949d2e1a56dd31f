/**
 * The generated paths as vitest tests: one test per path, so a failure names its path. Bounds are smaller
 * than the main job's (one fault per path) to keep the suite fast; `npm start` runs the full set. Shard
 * with vitest's own `--shard i/n`.
 */
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan, simplePaths, statePaths, type GeneratedPath } from '../../conformance/paths.ts';
import { formatEvent } from '../../model/events.ts';
import { validateParams, type FencePolicy } from '../../model/params.ts';

for (const fencePolicy of ['keepWriting', 'refuse'] as FencePolicy[]) {
  const params = validateParams({ writesMax: 2, journalEntriesMax: 1, faultsMax: 1, fencePolicy });
  const plan = coveragePlan(params);
  const paths: GeneratedPath[] = [...plan.transitionPaths, ...plan.pairPaths, ...statePaths(params), ...simplePaths(params, 3)];

  describe(`generated paths, fence policy ${fencePolicy}`, () => {
    it('the bounded model has no violation', () => {
      expect(plan.violations).toEqual([]);
    });

    describe.each(paths.map((path) => ({ name: `${path.strategy}: ${path.target}`, path })))('$name', ({ path }) => {
      it(`${path.events.length} events: ${path.events.map(formatEvent).join(', ')}`.slice(0, 400), () => {
        const run = runPath(params, path.events, ClusterSut.create);
        expect(run.divergence?.summary ?? null).toBeNull();
      });
    });
  });
}
