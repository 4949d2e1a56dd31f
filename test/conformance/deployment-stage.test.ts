/**
 * The deployment stage of the conformance run (`runConformance` with `deployment`, which `npm start` sets):
 * the plans' targeted paths on the in-process deployment (`conformance/memory-deployment.ts`: three site
 * nodes on an in-memory network, the operator, the NBD exports), in lockstep with the model
 * (`runPathAsync`). The faithful deployment passes. A bug planted where only a site node goes (the batched
 * host-write path of the storage system, `StorageSystem.hostWrites`, which the in-process cluster never
 * calls) is found by the stage's generated paths, and by nothing else in the run: the same plant in the
 * cluster's sites leaves every other stage passing. A stage that runs no path fails the run by name.
 */
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { runPathAsync } from '../../conformance/lockstep.ts';
import { MemoryDeploymentSut } from '../../conformance/memory-deployment.ts';
import { runConformance, type RunOptions } from '../../conformance/run.ts';
import type { StorageSystem } from '../../impl/core/storage-system.ts';
import { parseEvent } from '../../model/events.ts';
import { validateParams, type ModelParams } from '../../model/params.ts';
import { stageRunOptions } from './stage-run.ts';

const small: RunOptions = {
  ...stageRunOptions,
  // One write: a plan of a second or two, and still paths that fail over and write at host 2. (Too small
  // for some must-happen checks: the run's `passed` is asserted only where it must be false.)
  params: { ...stageRunOptions.params, writesMax: 1 },
  deployment: true,
};

/**
 * Planted: site 2 journals and writes every host write of a batch (`hostWrites`, the site node's path) with
 * its first byte changed; `calls` counts the batches it took. Only a primary takes host writes, and site 2
 * is primary only after a failover, so only paths that fail over and write at host 2 can see it.
 */
function plantOtherBytes(site: StorageSystem, calls: { count: number }): void {
  const hostWrites = site.hostWrites.bind(site);
  site.hostWrites = (writes) => {
    calls.count += 1;
    return hostWrites(
      writes.map((write) => {
        const data = write.data.slice();
        data[0] = (data[0]! + 1) & 0xff;
        return { ...write, data };
      }),
    );
  };
}

describe('the deployment stage', () => {
  it('runs the targeted paths on the faithful in-process deployment without a divergence', async () => {
    const report = await runConformance(small);
    expect(report.divergences).toEqual([]);
    expect(report.gateFailures).toEqual([]);
    expect(report.deployment).toMatchObject({ divergences: 0 });
    expect(report.deployment!.paths).toBeGreaterThan(100);
    expect(report.deployment!.steps).toBeGreaterThan(report.deployment!.paths);
    expect(report.timings.deploymentMs).toBeGreaterThan(0);
  }, 120_000);

  it('finds a bug planted in the site node-only batched write path, which the cluster stages cannot see', async () => {
    const inDeployment = { count: 0 };
    const inCluster = { count: 0 };
    const report = await runConformance({
      ...small,
      makeSut: (params: ModelParams) => {
        const sut = ClusterSut.create(params);
        plantOtherBytes(sut.cluster.site(2), inCluster);
        return sut;
      },
      makeDeploymentSut: async (params: ModelParams) => {
        const sut = await MemoryDeploymentSut.create(params);
        plantOtherBytes(sut.deployment.nodes[2].site, inDeployment);
        return sut;
      },
    });
    expect(report.passed).toBe(false);
    // The cluster never takes the batched path: its generated paths and walks pass with the plant in place.
    expect(inCluster.count).toBe(0);
    expect(report.divergences.filter((divergence) => !divergence.strategy.startsWith('deployment '))).toEqual([]);
    // The deployment stage finds it, on paths that fail over and write at host 2, by site 2's bytes.
    expect(inDeployment.count).toBeGreaterThan(0);
    expect(report.deployment!.divergences).toBeGreaterThan(0);
    expect(report.divergences).toHaveLength(report.deployment!.divergences);
    for (const divergence of report.divergences) {
      expect(divergence.path.some((event) => event.startsWith('FAILOVER')), divergence.path.join(', ')).toBe(true);
      expect(divergence.path.at(-1), divergence.path.join(', ')).toMatch(/^HOST_WRITE host=2 /);
      expect(divergence.summary).toMatch(/sites\.2\.volumeDigest/);
    }
  }, 120_000);

  it('takes a node that throws at a delivery, or a step that never ends, as a crash of that step (not a dead or hung run)', async () => {
    const params = validateParams({ fencePolicy: 'refuse' });
    const events = ['HOST_WRITE host=1 volume=0 block=0 data=1', 'PULL_JOURNAL'].map(parseEvent);
    const throwing = await runPathAsync(params, events, async (p) => {
      const sut = await MemoryDeploymentSut.create(p);
      sut.deployment.nodes[2].onFrame = () => {
        throw new Error('planted: site 2 dies of a frame');
      };
      return sut;
    });
    expect(throwing.divergence).toMatchObject({ kind: 'crash', step: 0, event: 'HOST_WRITE host=1 volume=0 block=0 data=1' });
    expect(throwing.divergence!.summary).toMatch(/a site node threw while the network delivered to it: Error: planted: site 2 dies of a frame/);
    const hanging = await runPathAsync(params, events, async (p) => {
      const sut = await MemoryDeploymentSut.create(p);
      sut.deployment.nodes[3].pullNow = () => new Promise(() => undefined);
      return sut;
    });
    expect(hanging.divergence).toMatchObject({ kind: 'crash', step: 1, event: 'PULL_JOURNAL' });
    expect(hanging.divergence!.summary).toMatch(/a step did not end within \d+ turns of the event loop/);
  });

  it('fails the run by name when the stage runs no path', async () => {
    const report = await runConformance({ ...small, deploymentWork: () => [] });
    expect(report.deployment).toEqual({ paths: 0, steps: 0, divergences: 0 });
    expect(report.gateFailures).toEqual(['deployment 0 paths: the in-process deployment stage must run generated paths']);
    expect(report.passed).toBe(false);
  }, 120_000);
});
