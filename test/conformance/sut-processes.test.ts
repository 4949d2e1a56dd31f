/**
 * `--sut processes`: generated paths and random walks through `impl/drivers/driver-processes.ts`, which carries every
 * event out on three site processes (`threesite serve`) as the hosts and the operator would (host writes over
 * NBD, everything else through the operator over the control ports), give what the model and the in-process
 * system give. The sample covers failover (judged, forced, with site 3 failed), delta resync, full copy,
 * resync, failback, fences, cut links, restores; the walks and the last case bring refusals. One driver
 * process (and one set of site processes, reloaded at each reset) serves the whole file.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { runPath, type PathRun } from '../../conformance/lockstep.ts';
import { statePaths, type GeneratedPath } from '../../conformance/paths.ts';
import { driverSutFactory } from '../../conformance/sut-driver.ts';
import { runWalks } from '../../conformance/walks.ts';
import { processDriverCommand } from '../../impl/drivers/driver-processes.ts';
import type { ModelEvent } from '../../model/events.ts';
import { validateParams, type FencePolicy, type ModelParams } from '../../model/params.ts';

const driver = driverSutFactory(processDriverCommand);
afterAll(() => {
  driver.close();
});

const paramsOf = (fencePolicy: FencePolicy): ModelParams => validateParams({ writesMax: 2, journalEntriesMax: 1, faultsMax: 1, fencePolicy });

/** The events whose stories the sample must tell, each by the shortest and the longest state path that takes it. */
const stories: ModelEvent['type'][] = ['DELTA_RESYNC', 'FULL_COPY', 'RESYNC_SITE', 'FAILBACK', 'RESTORE_JOURNAL', 'CUT_LINK', 'FENCE_SITE'];

/** A dozen or so state paths per fence policy: the shortest and the longest of each story, three spread over the list. */
function samplePaths(params: ModelParams): GeneratedPath[] {
  const all = statePaths(params);
  const longest = (paths: GeneratedPath[]): GeneratedPath => paths.reduce((a, b) => (b.events.length > a.events.length ? b : a));
  const shortest = (paths: GeneratedPath[]): GeneratedPath => paths.reduce((a, b) => (b.events.length < a.events.length ? b : a));
  const picked = new Set<GeneratedPath>();
  for (const type of stories) {
    const telling = all.filter((path) => path.events.some((event) => event.type === type));
    picked.add(shortest(telling)).add(longest(telling));
  }
  const stride = Math.ceil(all.length / 3);
  for (const [i, path] of all.entries()) if (i % stride === 0) picked.add(path);
  picked.add(longest(all));
  return [...picked];
}

const outcome = (run: PathRun) => ({ steps: run.steps, divergence: run.divergence?.summary ?? null, expected: run.expected });

describe('three site processes behind --sut processes agree with the model and the in-process system', () => {
  for (const fencePolicy of ['keepWriting', 'refuse'] as FencePolicy[]) {
    const params = paramsOf(fencePolicy);

    it(`generated state paths, fence policy ${fencePolicy}`, () => {
      const paths = samplePaths(params);
      expect(paths.length).toBeGreaterThanOrEqual(10);
      const taken = new Set(paths.flatMap((path) => path.events.map((event) => event.type)));
      for (const type of [...stories, 'FAILOVER', 'HOST_WRITE', 'PULL_JOURNAL', 'FAIL_SITE', 'RECOVER_SITE']) expect(taken, type).toContain(type);
      for (const path of paths) {
        const throughProcesses = runPath(params, path.events, driver);
        expect(throughProcesses.divergence?.summary ?? null, path.target).toBeNull();
        expect(outcome(throughProcesses), path.target).toEqual(outcome(runPath(params, path.events, ClusterSut.create)));
      }
      expect(driver.starts).toBe(1);
      expect(driver.driverName).toMatch(/driver-processes\.ts/);
    });

    it(`random walks with refused events, fence policy ${fencePolicy}`, () => {
      const options = { seed: 11, runs: 3, steps: 40 };
      const throughProcesses = runWalks(params, driver, options);
      expect(throughProcesses.failure?.divergence.summary ?? null).toBeNull();
      const inProcess = runWalks(params, ClusterSut.create, options);
      expect({ runs: throughProcesses.runs, steps: throughProcesses.steps }).toEqual({ runs: inProcess.runs, steps: inProcess.steps });
    });
  }

  it('refusals come back with the model’s codes: from the NBD export, the operator and a site', () => {
    const params = paramsOf('refuse');
    const refusals: [ModelEvent, string][] = [
      [{ type: 'HOST_WRITE', host: 2, volume: 0, block: 0, data: 9 }, 'NotWritable'], // EPERM: site 2's export is read-only
      [{ type: 'HOST_WRITE', host: 1, volume: params.volumeCount, block: 0, data: 9 }, 'OutOfRange'], // no such export
      [{ type: 'RECOVER_SITE', site: 3 }, 'SiteUp'],
      [{ type: 'RESTORE_LINK', link: '1-2' }, 'LinkState'],
      [{ type: 'FAILOVER', force: false }, 'NotAllowed'],
      [{ type: 'RESTORE_JOURNAL' }, 'NotAllowed'],
    ];
    const events: ModelEvent[] = [
      ...refusals.map(([event]) => event),
      { type: 'CUT_LINK', link: '1-2' },
      { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 },
      { type: 'RESTORE_LINK', link: '1-2' },
      { type: 'RESYNC_SITE', site: 2 },
      { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 2 },
    ];
    const run = runPath(params, events, driver);
    expect(run.divergence?.summary ?? null).toBeNull();
    const sut = driver(params);
    try {
      for (const [event, code] of refusals) expect(sut.apply(event), event.type).toMatchObject({ accepted: false, code });
      expect(sut.apply({ type: 'CUT_LINK', link: '1-2' })).toEqual({ accepted: true });
      // Fence policy refuse: site 1 takes no write its secondary cannot hold.
      expect(sut.apply({ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 })).toMatchObject({ accepted: false, code: 'NotWritable' });
      expect(sut.observe().cutLinks).toEqual(['1-2']);
      expect(sut.apply({ type: 'RESTORE_LINK', link: '1-2' })).toEqual({ accepted: true });
      expect(sut.apply({ type: 'RESTORE_LINK', link: '1-2' })).toMatchObject({ accepted: false, code: 'LinkState' });
      expect(sut.observe()).toMatchObject({ cutLinks: [], syncPair: { state: 'resyncing' } });
    } finally {
      sut.close();
    }
  });
});
