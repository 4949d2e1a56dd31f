/**
 * Claim 20 in lockstep: after a delta resync the missing entries are in site 3's journal (the fifth storage
 * area), received ahead of restored, until RESTORE_JOURNAL writes them into its volumes (the sixth), in the
 * model and in the in-process implementation alike. An implementation that writes them straight into site
 * 3's volumes (the behaviour before claim 20 was followed, planted here as a wrapper in test code, never a
 * switch in `impl/`) diverges on every generated path that takes a delta resync.
 */
import { describe, expect, it } from 'vitest';
import { ClusterSut, clusterConfigFor } from '../../conformance/adapter.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan } from '../../conformance/paths.ts';
import type { SutFactory } from '../../conformance/sut.ts';
import { Cluster } from '../../impl/cluster/cluster.ts';
import type { ModelEvent } from '../../model/events.ts';
import { validateParams, type ModelParams } from '../../model/params.ts';

const write = (data: number): ModelEvent => ({ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data });

/** Site 3 received 1 and restored nothing; site 1 fails after 3; site 2's journal covers 2 and 3: delta resync. */
const story: ModelEvent[] = [write(1), { type: 'PULL_JOURNAL' }, write(2), write(3), { type: 'FAIL_SITE', site: 1 }, { type: 'FAILOVER', force: false }, { type: 'DELTA_RESYNC' }];

/** The old behaviour: site 3 restores what a delta resync read at once. */
const straightIntoVolumes: SutFactory = (params: ModelParams) => {
  const cluster = Cluster.create(clusterConfigFor(params));
  const deltaResync = cluster.deltaResync.bind(cluster);
  cluster.deltaResync = () => {
    deltaResync();
    if (cluster.site(3).journal.entries > 0) cluster.restoreJournal();
  };
  return new ClusterSut(cluster, params.blockBytes);
};

describe('a delta resync passes through site 3 journal (claim 20), model and implementation in lockstep', () => {
  const params = validateParams({ journalEntriesMax: 3, writesMax: 3 });

  it('received runs ahead of restored after the delta resync, until RESTORE_JOURNAL', () => {
    const resynced = runPath(params, story, ClusterSut.create);
    expect(resynced.divergence).toBeNull();
    expect(resynced.expected.at(-1)?.sites[3]).toMatchObject({ received: 3, restored: 0, journal: { first: 1, last: 3 } });
    const restored = runPath(params, [...story, { type: 'RESTORE_JOURNAL' }], ClusterSut.create);
    expect(restored.divergence).toBeNull();
    expect(restored.expected.at(-1)?.sites[3]).toMatchObject({ received: 3, restored: 3, lag: 0 });
  });

  it('an implementation that restores at once diverges at the delta resync, on the story and on every generated path through one', () => {
    const caught = runPath(params, story, straightIntoVolumes);
    expect(caught.divergence?.event).toMatch(/^DELTA_RESYNC/);
    expect(caught.divergence?.differences.map((difference) => difference.path)).toContain('sites.3.restored');
    const small = validateParams({ faultsMax: 1, fencePolicy: 'keepWriting' });
    const plan = coveragePlan(small);
    const throughDelta = [...plan.transitionPaths, ...plan.pairPaths].filter((path) => path.events.some((event) => event.type === 'DELTA_RESYNC'));
    expect(throughDelta.length).toBeGreaterThan(5);
    for (const path of throughDelta) {
      expect(runPath(small, path.events, ClusterSut.create).divergence, path.target).toBeNull();
      expect(runPath(small, path.events, straightIntoVolumes).divergence?.event, path.target).toMatch(/^DELTA_RESYNC/);
    }
  });
});
