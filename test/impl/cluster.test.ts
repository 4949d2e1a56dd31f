/**
 * The cluster's public API: configuration checks, every operator command accepted and refused (with the
 * typed error and the failed condition), a property that a refused command changes nothing while P3, P4
 * and P7 hold after every step, the logical clock, and a file-backed cluster closed and reopened from its
 * directory with its volumes, journals and states.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, type ClusterConfig } from '../../impl/cluster/cluster.ts';
import { block, blockBytes, config } from './cluster-fixture.ts';
import {
  ConfigError,
  InvalidArgumentError,
  LinkStateError,
  NoSuchVolumeError,
  NotAcknowledgedError,
  NotAllowedError,
  NotWritableError,
  OutOfOrderError,
  RefusalError,
  RemoteAheadError,
  SiteFailedError,
  SiteUpError,
} from '../../impl/core/errors.ts';
import { encodeMessage } from '../../impl/core/messages.ts';
import { OutOfRangeError } from '../../impl/core/volume.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-cluster-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Expects `run` to throw `type` and leave the observation as it was. */
function refused<T extends RefusalError | OutOfRangeError>(cluster: Cluster, run: () => unknown, type: new (...args: never[]) => T, pattern?: RegExp): T {
  const before = cluster.observe();
  let error: unknown = null;
  try {
    run();
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(type);
  if (pattern) expect((error as Error).message).toMatch(pattern);
  expect(cluster.observe()).toEqual(before);
  return error as T;
}

describe('Cluster.create validates its configuration', () => {
  const cases: [string, Partial<ClusterConfig>][] = [
    ['volumeCount', { volumeCount: 0 }],
    ['volumeCount', { volumeCount: 1.5 }],
    ['blockBytes', { blockBytes: 1000 }],
    ['volumeBytes', { volumeBytes: blockBytes * 4 + 1 }],
    ['volumeBytes', { volumeBytes: 2 ** 31 }],
    ['journal.entriesMax', { journal: { entriesMax: 0, bytesMax: 100000 } }],
    ['journal.bytesMax', { journal: { entriesMax: 4, bytesMax: blockBytes } }],
    ['pullBatchEntriesMax', { pullBatchEntriesMax: 0 }],
    ['pullIntervalTicks', { pullIntervalTicks: -1 }],
    ['restoreIntervalTicks', { restoreIntervalTicks: 2 ** 30 }],
    ['fencePolicy', { fencePolicy: 'maybe' as ClusterConfig['fencePolicy'] }],
    ['storage', { storage: { kind: 'tape' } as unknown as ClusterConfig['storage'] }],
    ['storage.dir', { storage: { kind: 'file', dir: '' } }],
    ['inFlightWritesMax', { inFlightWritesMax: 0 }],
    ['deliveriesPerRunMax', { deliveriesPerRunMax: 0 }],
    ['deliveriesPerRunMax', { deliveriesPerRunMax: 1_000_001 }],
  ];
  for (const [field, overrides] of cases) {
    it(`refuses a bad ${field}: ${JSON.stringify(overrides)}`, () => {
      let error: unknown = null;
      try {
        Cluster.create(config(overrides));
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as ConfigError).field).toBe(field);
      expect((error as ConfigError).code).toBe('InvalidConfig');
    });
  }

  it('starts with every site up and empty, site 1 primary, pairs established', () => {
    const o = Cluster.create(config()).observe();
    expect(o.syncPair).toEqual({ state: 'inSync', primary: 1 });
    expect(o.asyncPair).toEqual({ state: 'copying', source: 1 });
    expect(o.standbyPair).toEqual({ state: 'hold', from: 2 });
    expect([o.sites[1].acceptsHostWrites, o.sites[2].acceptsHostWrites]).toEqual([true, false]);
    expect(o.sites[1].journal).toEqual({ first: 1, last: 0, highWater: false });
    expect(o.sites[1].volumeDigest).toBe(o.sites[3].volumeDigest);
  });
});

describe('host writes and reads', () => {
  it('acknowledges a write on both sync members with one update number (P1, P3)', () => {
    const cluster = Cluster.create(config());
    expect(cluster.hostWrite(1, 1, 100, new Uint8Array([1, 2, 3]))).toEqual({ updateNumber: 1 });
    expect(cluster.hostWrite(1, 0, 0, block(9))).toEqual({ updateNumber: 2 });
    for (const site of [1, 2] as const) expect([...cluster.readVolume(site, 1, 100, 3)]).toEqual([1, 2, 3]);
    expect([...cluster.readVolume(3, 1, 100, 3)]).toEqual([0, 0, 0]);
    expect(cluster.hostRead(1, 0, 0, 4)).toEqual(new Uint8Array(4).fill(9));
    const o = cluster.observe();
    expect([o.sites[1].lastUpdateNumber, o.sites[2].lastUpdateNumber]).toEqual([2, 2]);
    expect(o.sites[1].volumeDigest).toBe(o.sites[2].volumeDigest);
  });

  it('refuses writes and reads outside the volumes, too large, or from a site that does not serve the host', () => {
    const cluster = Cluster.create(config());
    refused(cluster, () => cluster.hostWrite(1, 2, 0, block(1)), NoSuchVolumeError);
    refused(cluster, () => cluster.hostWrite(1, -1, 0, block(1)), NoSuchVolumeError);
    refused(cluster, () => cluster.hostWrite(1, 0, 4 * blockBytes - 1, new Uint8Array(2)), OutOfRangeError, /pastEnd/);
    refused(cluster, () => cluster.hostWrite(1, 0, -1, new Uint8Array(2)), OutOfRangeError, /negative/);
    const small = Cluster.create(config({ volumeBytes: 64 * blockBytes, journal: { entriesMax: 4, bytesMax: 36 + 2 * blockBytes } }));
    refused(small, () => small.hostWrite(1, 0, 0, new Uint8Array(2 * blockBytes + 1)), OutOfRangeError, /tooLarge/);
    expect(small.hostWrite(1, 0, 0, new Uint8Array(2 * blockBytes))).toEqual({ updateNumber: 1 });
    const notPrimary = refused(cluster, () => cluster.hostWrite(2, 0, 0, block(1)), NotWritableError);
    expect([notPrimary.site, notPrimary.reason, notPrimary.code]).toEqual([2, 'notPrimary', 'NotWritable']);
    refused(cluster, () => cluster.hostWrite(3 as 1, 0, 0, block(1)), InvalidArgumentError);
    refused(cluster, () => cluster.hostRead(2, 0, 0, 1), NotAllowedError, /not the primary/);
    refused(cluster, () => cluster.readVolume(1, 5, 0, 1), NoSuchVolumeError);
    cluster.failSite(1);
    refused(cluster, () => cluster.hostRead(1, 0, 0, 1), SiteFailedError);
    expect(refused(cluster, () => cluster.hostWrite(1, 0, 0, block(1)), NotWritableError).reason).toBe('failed');
    expect(cluster.readVolume(1, 0, 0, 1)).toEqual(new Uint8Array(1));
  });

  it('under fence policy refuse, site 1 refuses writes while its pair is suspended or resyncing (P1)', () => {
    const cluster = Cluster.create(config({ fencePolicy: 'refuse' }));
    cluster.cutLink(1, 2);
    expect(refused(cluster, () => cluster.hostWrite(1, 0, 0, block(1)), NotWritableError).reason).toBe('fencePolicy');
    cluster.restoreLink(1, 2);
    expect(cluster.observe().syncPair.state).toBe('resyncing');
    refused(cluster, () => cluster.hostWrite(1, 0, 0, block(1)), NotWritableError);
    cluster.resyncSite(2);
    expect(cluster.hostWrite(1, 0, 0, block(1)).updateNumber).toBe(1);
    expect(cluster.observe().ackedOnOneSite).toBe(0);
  });

  it("takes the secondary's answer only for a write in flight: one past the last sent, or for a write already acknowledged, is refused and acknowledges nothing (P1)", () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.transport.hold(2, 1);
    const third = cluster.submitHostWrite(1, 0, blockBytes, block(2));
    cluster.runUntilIdle();
    expect(third.state).toBe('pending');
    // The write in flight is u=2: an answer for u=3 (never sent) or u=1 (answered already) names no write in flight.
    for (const updateNumber of [3, 1]) {
      expect(() => cluster.deliverBytes(2, 1, encodeMessage({ kind: 'syncWriteAck', epoch: 1, updateNumber }))).toThrow(OutOfOrderError);
      expect(third.state).toBe('pending');
      expect(cluster.pendingWrites).toBe(1);
    }
    cluster.transport.release(2, 1);
    cluster.runUntilIdle();
    expect(third.state).toBe('acknowledged');
    expect(third.updateNumber).toBe(2);
  });

  it('keeps at most inFlightWritesMax writes in flight', () => {
    const cluster = Cluster.create(config({ inFlightWritesMax: 2 }));
    cluster.transport.hold(2, 1);
    cluster.submitHostWrite(1, 0, 0, block(1));
    cluster.submitHostWrite(1, 0, 0, block(2));
    expect(refused(cluster, () => cluster.submitHostWrite(1, 0, 0, block(3)), NotWritableError).reason).toBe('inFlightWritesMax');
    expect(cluster.observe().sites[1].acceptsHostWrites).toBe(true);
    cluster.transport.release(2, 1);
    cluster.runUntilIdle();
    expect(cluster.pendingWrites).toBe(0);
  });
});

describe('operator commands: accepted and refused', () => {
  it('pullJournal and restoreJournal', () => {
    const cluster = Cluster.create(config());
    refused(cluster, () => cluster.restoreJournal(), NotAllowedError, /journal is empty/);
    for (let i = 0; i < 3; i += 1) cluster.hostWrite(1, 0, i * blockBytes, block(i + 1));
    cluster.pullJournal();
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0, lag: 3 });
    cluster.pullJournal();
    cluster.restoreJournal();
    expect(cluster.observe().sites[3]).toMatchObject({ received: 3, restored: 3, lag: 0 });
    expect(cluster.readVolume(3, 0, 0, 3 * blockBytes)).toEqual(cluster.readVolume(1, 0, 0, 3 * blockBytes));
    cluster.cutLink(1, 3);
    refused(cluster, () => cluster.pullJournal(), NotAllowedError, /async pair is suspended/);
    cluster.failSite(3);
    refused(cluster, () => cluster.restoreJournal(), SiteFailedError);
  });

  it('failSite, recoverSite, cutLink, restoreLink', () => {
    const cluster = Cluster.create(config());
    refused(cluster, () => cluster.recoverSite(2), SiteUpError);
    cluster.failSite(2);
    refused(cluster, () => cluster.failSite(2), SiteFailedError);
    refused(cluster, () => cluster.failSite(4 as 1), InvalidArgumentError);
    cluster.recoverSite(2);
    expect(cluster.observe().sites[2].mode).toBe('resyncing');
    refused(cluster, () => cluster.restoreLink(1, 3), LinkStateError, /not cut/);
    cluster.cutLink(3, 1);
    const cut = refused(cluster, () => cluster.cutLink(1, 3), LinkStateError);
    expect([cut.link, cut.cut]).toEqual(['1-3', true]);
    refused(cluster, () => cluster.cutLink(2, 2), InvalidArgumentError);
    cluster.restoreLink(1, 3);
    expect(cluster.observe().cutLinks).toEqual([]);
  });

  it('fenceSite', () => {
    const cluster = Cluster.create(config());
    expect(refused(cluster, () => cluster.fenceSite(2), NotAllowedError).condition).toBe('only site 1 can be fenced');
    cluster.fenceSite(1);
    expect(refused(cluster, () => cluster.fenceSite(1), NotAllowedError).condition).toBe('site 1 is already fenced');
    cluster.failover({ force: false });
    expect(refused(cluster, () => cluster.fenceSite(1), NotAllowedError).condition).toBe('site 1 is not the primary');
    cluster.failSite(1);
    refused(cluster, () => cluster.fenceSite(1), SiteFailedError);
  });

  it('failover: every refusal in order, then accepted', () => {
    const cluster = Cluster.create(config());
    const condition = (): string => refused(cluster, () => cluster.failover({ force: false }), NotAllowedError).condition;
    expect(condition()).toBe('site 1 is neither failed nor fenced (P4)');
    refused(cluster, () => cluster.failover({ force: 'yes' as unknown as boolean }), InvalidArgumentError);
    cluster.failSite(2);
    refused(cluster, () => cluster.failover({ force: false }), SiteFailedError);
    cluster.recoverSite(2);
    cluster.resyncSite(2);
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().syncPair).toEqual({ state: 'suspended', primary: 2 });
    expect(condition()).toBe('site 2 is already the primary');
  });

  it('failover refused by the judge lists the update numbers it would lose, and records the judgement', () => {
    const cluster = Cluster.create(config({ journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } }));
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.hostWrite(1, 0, 0, block(3));
    cluster.pullJournal();
    cluster.pullJournal();
    cluster.failSite(1);
    let error: unknown = null;
    try {
      cluster.failover({ force: false });
    } catch (caught) {
      error = caught;
    }
    expect(error).toBeInstanceOf(RemoteAheadError);
    const remoteAhead = error as RemoteAheadError;
    expect([remoteAhead.code, remoteAhead.takeover, remoteAhead.remoteReceived, remoteAhead.lost]).toEqual(['RemoteAhead', 1, 3, [2, 3]]);
    const o = cluster.observe();
    expect(o.syncPair.primary).toBe(1);
    expect(o.judgement).toEqual({ verdict: 'remoteAhead', remoteReceived: 3, sourceLast: 1, forced: false });
    cluster.failover({ force: true });
    expect(cluster.observe().asyncPair.state).toBe('fullCopy');
    expect(cluster.observe().judgement?.forced).toBe(true);
  });

  it('failover with site 3 down keeps the takeover point and judges when site 3 returns', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(3);
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().asyncPair.state).toBe('suspended');
    expect(cluster.observe().judgement).toBeNull();
    cluster.recoverSite(3);
    expect(cluster.observe().judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 0, sourceLast: 1, forced: false });
    expect(cluster.observe().asyncPair.state).toBe('copying');
  });

  it('failover with link 2-3 cut is accepted as with site 3 down: site 3 waits and is judged when the link returns', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.pullJournal();
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.cutLink(2, 3);
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().syncPair.primary).toBe(2);
    expect(cluster.observe().asyncPair.state).toBe('suspended');
    expect(cluster.observe().judgement).toBeNull();
    expect(cluster.observe().sites[3].mode).toBe('normal');
    // Site 3 cannot pull from its old source (failed) nor from site 2 (cut): its pulls are refused, not lost.
    refused(cluster, () => cluster.pullJournal(), NotAllowedError, /async pair is suspended/);
    expect(cluster.hostWrite(2, 0, 0, block(3))).toEqual({ updateNumber: 3 });
    cluster.restoreLink(2, 3);
    // Judged on reattach against site 2's journal, which holds updates 2 and 3 (claims 18, 28): the pulls go on.
    expect(cluster.observe().judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 1, sourceLast: 3, forced: false });
    expect(cluster.observe().asyncPair.state).toBe('copying');
    cluster.pullJournal();
    cluster.restoreJournal();
    expect(cluster.observe().sites[3].restored).toBe(3);
  });

  it('resyncSite: every refusal in order, then accepted', () => {
    const cluster = Cluster.create(config());
    const condition = (site: 1 | 2): string => refused(cluster, () => cluster.resyncSite(site), NotAllowedError).condition;
    expect(condition(1)).toBe('site 1 is not the sync secondary');
    expect(condition(2)).toBe('site 2 is normal, not resyncing');
    refused(cluster, () => cluster.resyncSite(3 as 1), InvalidArgumentError);
    cluster.failSite(2);
    refused(cluster, () => cluster.resyncSite(2), SiteFailedError);
    cluster.hostWrite(1, 1, 0, block(7));
    cluster.cutLink(1, 2);
    cluster.recoverSite(2);
    expect(cluster.observe().sites[2].mode).toBe('resyncing');
    expect(condition(2)).toBe('sites 1 and 2 cannot reach each other');
    cluster.restoreLink(1, 2);
    cluster.resyncSite(2);
    const o = cluster.observe();
    expect(o.syncPair.state).toBe('inSync');
    expect(o.sites[2]).toMatchObject({ mode: 'normal', lastUpdateNumber: 1, changedBlocks: 0, journal: { first: 2, last: 1, highWater: false } });
    expect(o.sites[2].volumeDigest).toBe(o.sites[1].volumeDigest);
  });

  it('deltaResync and fullCopy: refused unless the judge asked for them, then accepted', () => {
    const cluster = Cluster.create(config());
    refused(cluster, () => cluster.deltaResync(), NotAllowedError, /async pair is copying/);
    refused(cluster, () => cluster.fullCopy(), NotAllowedError, /async pair is copying/);
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
    cluster.cutLink(2, 3);
    expect(cluster.observe().asyncPair.state).toBe('suspended');
    refused(cluster, () => cluster.deltaResync(), NotAllowedError);
    cluster.restoreLink(2, 3);
    expect(cluster.observe().asyncPair.state).toBe('copying');
    // Overflow the source journal: a full copy is then the only way back.
    for (let i = 0; i < 6; i += 1) cluster.hostWrite(2, 0, 0, block(10 + i));
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
    cluster.cutLink(2, 3);
    refused(cluster, () => cluster.fullCopy(), NotAllowedError, /unreachable/);
    cluster.restoreLink(2, 3);
    cluster.fullCopy();
    const o = cluster.observe();
    expect(o.asyncPair.state).toBe('copying');
    expect(o.sites[3]).toMatchObject({ received: 8, restored: 8, lag: 0, volumeDigest: o.sites[2].volumeDigest });
  });

  it('a delta resync whose source journal no longer covers site 3 turns into a full copy (P5)', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
    for (let i = 0; i < 3; i += 1) cluster.hostWrite(2, 0, 0, block(3 + i));
    expect(cluster.observe().sites[2].journal).toEqual({ first: 5, last: 5, highWater: false });
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
  });

  it('failback: every refusal in order, then accepted', () => {
    const cluster = Cluster.create(config());
    refused(cluster, () => cluster.failback(), NotAllowedError, /not reversed/);
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    cluster.failover({ force: false });
    cluster.deltaResync();
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    expect(cluster.observe().syncPair.state).toBe('reversed');
    cluster.failSite(3);
    refused(cluster, () => cluster.failback(), SiteFailedError);
    cluster.recoverSite(3);
    cluster.cutLink(1, 3);
    refused(cluster, () => cluster.failback(), NotAllowedError, /every link/);
    cluster.restoreLink(1, 3);
    cluster.hostWrite(2, 1, 0, block(5));
    cluster.failback();
    const o = cluster.observe();
    expect(o.syncPair).toEqual({ state: 'inSync', primary: 1 });
    expect(o.judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 1, sourceLast: 2, forced: false });
    expect(cluster.hostWrite(1, 0, 0, block(6)).updateNumber).toBe(3);
  });
});

describe('commands refused while host writes are in flight (their answers held)', () => {
  it('failover with site 1 fenced, a full copy and a failback each wait for the writes in flight; a resync never meets one', () => {
    const cluster = Cluster.create(config({ journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } }));
    // FAILOVER: site 1 fenced (P4 allows the failover) but a write of its host still unanswered.
    cluster.transport.hold(2, 1);
    const inFlight = cluster.submitHostWrite(1, 0, 0, block(1));
    cluster.runUntilIdle();
    cluster.fenceSite(1);
    expect(refused(cluster, () => cluster.failover({ force: false }), NotAllowedError).condition).toBe('site 1 has host writes in flight');
    cluster.transport.release(2, 1);
    cluster.runUntilIdle();
    expect(inFlight.state).toBe('acknowledged');
    cluster.failover({ force: false });
    cluster.deltaResync();
    // RESYNC_SITE: the returning secondary is resyncing only while the pair is not in sync, and a primary
    // whose pair is not in sync acknowledges every write at once: none is ever in flight then.
    expect(cluster.submitHostWrite(2, 0, 0, block(2)).state).toBe('acknowledged');
    expect(cluster.pendingWrites).toBe(0);
    cluster.resyncSite(1);
    expect(cluster.observe().syncPair).toEqual({ state: 'reversed', primary: 2 });
    // FAILBACK: host 2 has a write in flight to site 1.
    cluster.transport.hold(1, 2);
    const held = cluster.submitHostWrite(2, 0, blockBytes, block(3));
    cluster.runUntilIdle();
    expect(refused(cluster, () => cluster.failback(), NotAllowedError).condition).toBe('host 2 has writes in flight (quiesce first)');
    // FULL_COPY: the async pair needs a full copy (the source journal overflowed) while a write is in flight.
    for (let i = 0; i < 9; i += 1) cluster.submitHostWrite(2, 1, 0, block(10 + i));
    cluster.runUntilIdle();
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
    expect(refused(cluster, () => cluster.fullCopy(), NotAllowedError).condition).toBe('the source has host writes in flight');
    cluster.transport.release(1, 2);
    cluster.runUntilIdle();
    expect(held.state).toBe('acknowledged');
    expect(cluster.pendingWrites).toBe(0);
    cluster.fullCopy();
    cluster.failback();
    const o = cluster.observe();
    expect(o.syncPair).toEqual({ state: 'inSync', primary: 1 });
    expect(o.sites[3].volumeDigest).toBe(o.sites[1].volumeDigest);
  });
});

describe('answers that do not come', () => {
  it('a host write whose answer is held is not acknowledged; it is when the answer is delivered', () => {
    const cluster = Cluster.create(config());
    cluster.transport.hold(2, 1);
    refusedOrPending(() => cluster.hostWrite(1, 0, 0, block(1)));
    expect(cluster.pendingWrites).toBe(1);
    expect(cluster.observe().sites[2].lastUpdateNumber).toBe(1);
    cluster.transport.release(2, 1);
    cluster.runUntilIdle();
    expect(cluster.pendingWrites).toBe(0);
  });

  it('a failover whose judge request is held changes nothing', () => {
    const cluster = Cluster.create(config());
    cluster.failSite(1);
    cluster.transport.hold(3, 2);
    const before = cluster.observe();
    expect(() => cluster.failover({ force: false })).toThrow(NotAcknowledgedError);
    expect(cluster.observe()).toEqual(before);
  });
});

function refusedOrPending(run: () => unknown): void {
  expect(run).toThrow(NotAcknowledgedError);
}

describe('advanceClock', () => {
  it('pulls every pullIntervalTicks and restores every restoreIntervalTicks, skipping what is not allowed', () => {
    const cluster = Cluster.create(config());
    for (let i = 0; i < 3; i += 1) cluster.hostWrite(1, 0, 0, block(i + 1));
    cluster.advanceClock(1);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 0, restored: 0 });
    cluster.advanceClock(1);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0 });
    cluster.advanceClock(1);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 2 });
    cluster.advanceClock(3);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 3, restored: 3 });
    cluster.failSite(3);
    cluster.advanceClock(10);
    expect(cluster.transport.now).toBe(16);
    refused(cluster, () => cluster.advanceClock(-1), InvalidArgumentError);
  });
});

type Step = (cluster: Cluster) => unknown;
const anySite = fc.constantFrom(1, 2, 3 as const);
/** One operator command or host write, with its label: the commands the properties below draw from. */
const step: fc.Arbitrary<[string, Step]> = fc.oneof(
  fc.tuple(fc.constantFrom(1, 2 as const), fc.nat({ max: 1 }), fc.nat({ max: 3 }), fc.integer({ min: 1, max: 255 })).map(([h, v, b, d]) => [
    `write ${h} ${v} ${b} ${d}`,
    (c: Cluster) => c.hostWrite(h, v, b * blockBytes, block(d)),
  ] as [string, Step]),
  fc.constant(['pull', (c: Cluster) => c.pullJournal()] as [string, Step]),
  fc.constant(['restore', (c: Cluster) => c.restoreJournal()] as [string, Step]),
  anySite.map((s) => [`fail ${s}`, (c: Cluster) => c.failSite(s)] as [string, Step]),
  anySite.map((s) => [`recover ${s}`, (c: Cluster) => c.recoverSite(s)] as [string, Step]),
  fc.constantFrom([1, 2], [1, 3], [2, 3]).map(([a, b]) => [`cut ${a}-${b}`, (c: Cluster) => c.cutLink(a as 1, b as 2)] as [string, Step]),
  fc.constantFrom([1, 2], [1, 3], [2, 3]).map(([a, b]) => [`heal ${a}-${b}`, (c: Cluster) => c.restoreLink(a as 1, b as 2)] as [string, Step]),
  fc.constant(['fence 1', (c: Cluster) => c.fenceSite(1)] as [string, Step]),
  fc.boolean().map((force) => [`failover ${force}`, (c: Cluster) => c.failover({ force })] as [string, Step]),
  fc.constantFrom(1, 2 as const).map((s) => [`resync ${s}`, (c: Cluster) => c.resyncSite(s)] as [string, Step]),
  fc.constant(['delta', (c: Cluster) => c.deltaResync()] as [string, Step]),
  fc.constant(['full', (c: Cluster) => c.fullCopy()] as [string, Step]),
  fc.constant(['failback', (c: Cluster) => c.failback()] as [string, Step]),
  fc.nat({ max: 4 }).map((t) => [`tick ${t}`, (c: Cluster) => c.advanceClock(t)] as [string, Step]),
);

/** Runs a step; a refusal is an answer, anything else is a failure. */
function tryStep(cluster: Cluster, run: Step): unknown {
  try {
    run(cluster);
    return null;
  } catch (error) {
    if (!(error instanceof RefusalError || error instanceof OutOfRangeError)) throw error;
    return error;
  }
}

describe('every refused command changes nothing; P3, P4, P7 after every step (property)', () => {
  for (const fencePolicy of ['keepWriting', 'refuse'] as const) {
    it(`fence policy ${fencePolicy}`, () => {
      fc.assert(
        fc.property(fc.array(step, { maxLength: 40 }), (steps) => {
          const cluster = Cluster.create(config({ fencePolicy }));
          for (const [, run] of steps) {
            const before = cluster.observe();
            try {
              run(cluster);
            } catch (error) {
              if (!(error instanceof RefusalError || error instanceof OutOfRangeError)) throw error;
              const after = cluster.observe();
              // A failover refused by the judge records the judgement, nothing else.
              if (error instanceof RemoteAheadError) expect({ ...after, judgement: before.judgement }).toEqual(before);
              else expect(after).toEqual(before);
            }
            const o = cluster.observe();
            expect(o.sites[1].acceptsHostWrites && o.sites[2].acceptsHostWrites, 'P4').toBe(false);
            for (const s of [1, 2] as const) {
              expect(o.sites[s].journal.last, 'P3').toBe(o.sites[s].lastUpdateNumber);
              expect(o.sites[s].journal.last - o.sites[s].journal.first + 1, 'P7').toBeLessThanOrEqual(4);
            }
            expect(o.sites[3].received - o.sites[3].restored, 'P7').toBeLessThanOrEqual(4);
            expect(o.sites[3].restored, 'P2').toBeLessThanOrEqual(o.sites[3].received);
            if (o.syncPair.state === 'inSync' || o.syncPair.state === 'reversed') {
              expect(o.sites[1].volumeDigest, 'P1').toBe(o.sites[2].volumeDigest);
            }
          }
        }),
        { numRuns: 150 },
      );
    });
  }
});

describe('a file-backed cluster', () => {
  it('is closed and reopened from its directory with its volumes, journals and states', () => {
    const dir = path.join(root, 'reopen');
    const fileConfig = config({ storage: { kind: 'file', dir }, journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } });
    const cluster = Cluster.create(fileConfig);
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.hostWrite(1, 1, blockBytes, block(2));
    cluster.pullJournal();
    cluster.failSite(2);
    cluster.hostWrite(1, 0, 2 * blockBytes, block(3));
    cluster.cutLink(1, 3);
    const before = cluster.observe();
    expect(before.sites[1].changedBlocks).toBe(1);
    cluster.close();
    expect(() => Cluster.create(fileConfig)).toThrow(ConfigError);

    const reopened = Cluster.open(fileConfig);
    expect(reopened.observe()).toEqual(before);
    expect(reopened.readVolume(1, 0, 2 * blockBytes, 4)).toEqual(new Uint8Array(4).fill(3));
    reopened.restoreLink(1, 3);
    reopened.recoverSite(2);
    reopened.resyncSite(2);
    reopened.pullJournal();
    reopened.restoreJournal();
    const after = reopened.observe();
    expect(after.sites[2].volumeDigest).toBe(after.sites[1].volumeDigest);
    expect(after.sites[3].volumeDigest).toBe(after.sites[1].volumeDigest);
    expect(reopened.hostWrite(1, 0, 0, block(4)).updateNumber).toBe(4);
    reopened.close();
    expect(Cluster.open(fileConfig).observe().sites[2].lastUpdateNumber).toBe(4);
  });

  /** The process dies here: a copy of its directory is what a restart finds, and it must observe the same. */
  function expectReopensEqual(cluster: Cluster, label: string): void {
    const storage = cluster.config.storage as { kind: 'file'; dir: string };
    const copy = `${storage.dir}-crashed`;
    fs.cpSync(storage.dir, copy, { recursive: true });
    const reopened = Cluster.open({ ...cluster.config, storage: { kind: 'file', dir: copy } });
    try {
      expect(reopened.observe(), label).toEqual(cluster.observe());
    } finally {
      reopened.close();
      fs.rmSync(copy, { recursive: true, force: true });
    }
  }

  it('after any command the directory reopens to the same observation: the durable state is saved when it changes (a crash loses nothing acknowledged)', () => {
    let run = 0;
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 24 }), fc.constantFrom('keepWriting', 'refuse' as const), (steps, fencePolicy) => {
        run += 1;
        const dir = path.join(root, `crash-${run}`);
        const journal = { entriesMax: 4, bytesMax: 4 * (blockBytes + 4096) };
        const cluster = Cluster.create(config({ storage: { kind: 'file', dir }, journal, fencePolicy }));
        try {
          for (const [index, [label, run]] of steps.entries()) {
            tryStep(cluster, run);
            expectReopensEqual(cluster, `reopened after step ${index}: ${label}`);
          }
        } finally {
          cluster.close();
          fs.rmSync(dir, { recursive: true, force: true });
        }
      }),
      { numRuns: 30 },
    );
  });

  it('the commands random steps rarely reach are saved too: a failover refused by the judge, a forced failover, a full copy, a failback', () => {
    const dir = path.join(root, 'crash-story');
    const cluster = Cluster.create(config({ storage: { kind: 'file', dir }, journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } }));
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.pullJournal();
    cluster.failSite(1);
    expect(() => cluster.failover({ force: false })).toThrow(RemoteAheadError);
    expectReopensEqual(cluster, 'after a failover refused by the judge');
    cluster.failover({ force: true });
    expectReopensEqual(cluster, 'after a forced failover');
    cluster.fullCopy();
    expectReopensEqual(cluster, 'after a full copy');
    cluster.restoreLink(1, 2);
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    expectReopensEqual(cluster, 'after the resync of site 1');
    cluster.failback();
    expectReopensEqual(cluster, 'after a failback');
    expect(cluster.observe().syncPair).toEqual({ state: 'inSync', primary: 1 });
    cluster.close();
  });

  it("a delta resync's entries wait in site 3's journal file: a crash before its restore recovers them, and the restore then applies them (claim 20)", () => {
    const dir = path.join(root, 'crash-delta');
    const cluster = Cluster.create(config({ storage: { kind: 'file', dir }, journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } }));
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.pullJournal();
    cluster.hostWrite(1, 0, blockBytes, block(2));
    cluster.hostWrite(1, 1, 0, block(3));
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
    cluster.deltaResync();
    expect(cluster.observe().sites[3]).toMatchObject({ received: 3, restored: 0, journal: { first: 1, last: 3 } });
    expectReopensEqual(cluster, 'after a delta resync, before the restore');
    const copy = `${dir}-after-delta`;
    fs.cpSync(dir, copy, { recursive: true });
    cluster.close();
    const reopened = Cluster.open({ ...cluster.config, storage: { kind: 'file', dir: copy } });
    try {
      reopened.restoreJournal();
      const after = reopened.observe();
      expect(after.sites[3]).toMatchObject({ received: 3, restored: 3, lag: 0 });
      expect(after.sites[3].volumeDigest).toBe(after.sites[2].volumeDigest);
    } finally {
      reopened.close();
      fs.rmSync(copy, { recursive: true, force: true });
    }
  });

  it('makes each write durable before it is acknowledged (flushEachWrite) on files, not in memory', () => {
    const file = Cluster.create(config({ storage: { kind: 'file', dir: path.join(root, 'durable') } }));
    const memory = Cluster.create(config());
    expect(([1, 2, 3] as const).map((id) => [file.site(id).config.flushEachWrite, memory.site(id).config.flushEachWrite])).toEqual([
      [true, false],
      [true, false],
      [true, false],
    ]);
    file.close();
  });

  it('refuses to open what is not a file cluster', () => {
    expect(() => Cluster.open(config())).toThrow(ConfigError);
    expect(() => Cluster.open(config({ storage: { kind: 'file', dir: path.join(root, 'nothing') } }))).toThrow(/holds no cluster/);
  });
});
