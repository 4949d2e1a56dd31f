/**
 * Epochs in the in-process cluster, as a story: every promotion (failover, forced failover, failback)
 * raises the cluster's epoch at every site, a refused one does not; a message of the old epoch that the
 * transport still holds when the promotion happens is refused where it lands (nothing journaled or judged)
 * and its sender is told the epoch; a replayed sync write of an old epoch is refused as bytes too; the
 * epochs are in the sites' state files and survive a reopen. The observation does not change (model/README.md
 * "Epochs" says why).
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Cluster } from '../../impl/cluster/cluster.ts';
import { RemoteAheadError, StaleEpochError } from '../../impl/core/errors.ts';
import { encodeMessage } from '../../impl/core/messages.ts';
import { block, blockBytes, config } from './cluster-fixture.ts';

const epochs = (cluster: Cluster): number[] => [1, 2, 3].map((site) => cluster.site(site as 1 | 2 | 3).epoch);

describe('every promotion raises the epoch at every site', () => {
  it('failover, failback and a forced failover each raise it by one; a refused failover does not', () => {
    const cluster = Cluster.create(config());
    expect(epochs(cluster)).toEqual([1, 1, 1]);
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    cluster.failover({ force: false });
    // The failed site 1 too: the controller reaches every site, as it sets their roles.
    expect(epochs(cluster)).toEqual([2, 2, 2]);
    expect(cluster.epoch).toBe(2);
    cluster.deltaResync();
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    cluster.failback();
    expect(epochs(cluster)).toEqual([3, 3, 3]);

    // Site 3 ahead of site 2: the unforced failover is refused and raises nothing; the forced one does.
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.pullJournal();
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(3));
    cluster.pullJournal();
    cluster.failSite(1);
    expect(() => cluster.failover({ force: false })).toThrow(RemoteAheadError);
    expect(epochs(cluster)).toEqual([3, 3, 3]);
    cluster.failover({ force: true });
    expect(epochs(cluster)).toEqual([4, 4, 4]);
  });
});

describe('a message of the old epoch is refused where it lands after a promotion', () => {
  it("the old source's reattach verdict, held across a failover, is not recorded by site 3; the old source is told the epoch", () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.pullJournal();
    // Site 3 is cut from its source and comes back: it asks site 1 to judge it (R2); the answer is held.
    cluster.cutLink(1, 3);
    cluster.transport.hold(1, 3);
    cluster.restoreLink(1, 3);
    expect(cluster.transport.queued(1, 3).map((envelope) => envelope.message)).toMatchObject([{ kind: 'verdict', epoch: 1, purpose: 'reattach' }]);
    // Site 1 is fenced and site 2 takes over: epoch 2; site 3 is judged by site 2 (purpose failover).
    cluster.fenceSite(1);
    cluster.failover({ force: false });
    expect(cluster.site(3).lastVerdict).toMatchObject({ purpose: 'failover', epoch: 1 });
    const rejected = cluster.rejections.length;
    const before = cluster.observe();
    cluster.transport.release(1, 3);
    cluster.runUntilIdle();
    // The held verdict (epoch 1) is refused at site 3: its record of the last judgement is site 2's.
    expect(cluster.rejections.slice(rejected)).toMatchObject([{ from: 1, to: 3, kind: 'verdict' }]);
    const error = cluster.rejections.at(-1)?.error;
    expect(error).toBeInstanceOf(StaleEpochError);
    expect(error).toMatchObject({ messageEpoch: 1, epoch: 2 });
    expect(cluster.site(3).lastVerdict).toMatchObject({ purpose: 'failover' });
    expect(cluster.observe()).toEqual(before);
  });

  it("the old primary's pull answer, held across a failover, is not journaled at site 3", () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.hostWrite(1, 1, 0, block(2));
    cluster.transport.hold(1, 3);
    cluster.pullJournal();
    expect(cluster.transport.queued(1, 3).map((envelope) => envelope.message)).toMatchObject([{ kind: 'pullEntries', epoch: 1 }]);
    cluster.fenceSite(1);
    cluster.failover({ force: false });
    const received = cluster.site(3).received;
    cluster.transport.release(1, 3);
    cluster.runUntilIdle();
    expect(cluster.rejections.at(-1)).toMatchObject({ from: 1, to: 3, kind: 'pullEntries' });
    expect(cluster.rejections.at(-1)?.error).toBeInstanceOf(StaleEpochError);
    expect(cluster.site(3).received).toBe(received);
  });

  it('a sync write of an old epoch, replayed as bytes to an in-sync secondary, is refused: nothing journaled or written', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    cluster.failover({ force: false });
    cluster.deltaResync();
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    cluster.failback();
    // Site 1 is primary again (epoch 3) and site 2 its secondary, in sync: a write with the next update
    // number is exactly what site 2 takes, but of epoch 1 it is a leftover of site 1's first reign.
    const two = cluster.site(2);
    const next = two.last + 1;
    const before = cluster.observe();
    const stale = encodeMessage({ kind: 'syncWrite', epoch: 1, updateNumber: next, volume: 0, offset: blockBytes, data: block(9), restoredKnown: 0 });
    expect(() => cluster.deliverBytes(1, 2, stale)).toThrow(StaleEpochError);
    expect(two.last).toBe(next - 1);
    expect(cluster.observe()).toEqual(before);
    // The same write of the current epoch is taken.
    cluster.deliverBytes(1, 2, encodeMessage({ kind: 'syncWrite', epoch: 3, updateNumber: next, volume: 0, offset: blockBytes, data: block(9), restoredKnown: 0 }));
    expect(two.last).toBe(next);
  });
});

describe('epochs survive a reopen', () => {
  it("a file-backed cluster reopens with every site's epoch", () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-cluster-epochs-'));
    try {
      const cluster = Cluster.create(config({ storage: { kind: 'file', dir } }));
      cluster.hostWrite(1, 0, 0, block(1));
      cluster.failSite(1);
      cluster.failover({ force: false });
      cluster.close();
      const reopened = Cluster.open(config({ storage: { kind: 'file', dir } }));
      expect(epochs(reopened)).toEqual([2, 2, 2]);
      reopened.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
