/**
 * What the cluster says when it does not carry a call out, and what it keeps about calls in flight: every
 * refusal's class and fields (operation, argument, site, condition), with the observation unchanged; the
 * answers that do not come (a held link) and the late answers that must not complete a later command; host
 * write handles; the bounded rejection log; the logical clock's boundaries; close; and the file cluster's
 * configuration refusals and crash-consistent creation.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { advanceTicksMax } from '../../impl/cluster/cluster-config.ts';
import { Cluster, rejectionsKeptMax, type ClusterConfig } from '../../impl/cluster/cluster.ts';
import { block, blockBytes, config } from './cluster-fixture.ts';
import {
  ConfigError,
  InvalidArgumentError,
  NotAcknowledgedError,
  NotAllowedError,
  NotWritableError,
  RefusalError,
  SiteFailedError,
  UnexpectedMessageError,
} from '../../impl/core/errors.ts';
import { InvariantError } from '../../impl/core/invariant.ts';
import { encodeMessage, type Message } from '../../impl/core/messages.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-refusals-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** Runs `run`, expects it to throw `type`, and returns the error. */
function thrown<T extends Error>(run: () => unknown, type: abstract new (...args: never[]) => T): T {
  let error: unknown = null;
  try {
    run();
  } catch (caught) {
    error = caught;
  }
  expect(error).toBeInstanceOf(type);
  return error as T;
}

/** Expects `run` to throw `type` with exactly `fields`, and to leave the observation as it was. */
function refused<T extends RefusalError>(
  cluster: Cluster,
  run: () => unknown,
  type: abstract new (...args: never[]) => T,
  fields: Partial<Record<keyof T, unknown>>,
): T {
  const before = cluster.observe();
  const error = thrown(run, type);
  expect(error).toMatchObject(fields);
  expect(cluster.observe()).toEqual(before);
  return error;
}

/** A cluster after failover with site 1 fenced (not failed): site 2 primary, site 3 behind it, the async pair waiting for a delta resync. */
function failedOverWithSite3Behind(overrides: Partial<ClusterConfig> = {}): Cluster {
  const cluster = Cluster.create(config(overrides));
  cluster.hostWrite(1, 0, 0, block(1));
  cluster.hostWrite(1, 0, blockBytes, block(2));
  cluster.fenceSite(1);
  cluster.failover({ force: false });
  expect(cluster.observe().asyncPair).toEqual({ state: 'deltaResync', source: 2 });
  return cluster;
}

describe('an invalid argument is refused with InvalidArgumentError naming the call, the argument and the value', () => {
  type Case = [label: string, run: (c: Cluster) => unknown, operation: string, argument: string, value: unknown];
  const cases: Case[] = [
    ['hostWrite host 3', (c) => c.hostWrite(3 as 1, 0, 0, block(1)), 'hostWrite', 'host', 3],
    ['hostWrite data a number array', (c) => c.hostWrite(1, 0, 0, [1, 2, 3] as unknown as Uint8Array), 'hostWrite', 'data', 'object'],
    ['hostWrite data a string', (c) => c.hostWrite(1, 0, 0, 'abc' as unknown as Uint8Array), 'hostWrite', 'data', 'string'],
    ['submitHostWrite host 0', (c) => c.submitHostWrite(0 as 1, 0, 0, block(1)), 'hostWrite', 'host', 0],
    ['hostRead host 3', (c) => c.hostRead(3 as 1, 0, 0, 1), 'hostRead', 'host', 3],
    ['readVolume site 4', (c) => c.readVolume(4 as 1, 0, 0, 1), 'readVolume', 'site', 4],
    ['site 4', (c) => c.site(4 as 1), 'site', 'site', 4],
    ['failSite 0', (c) => c.failSite(0 as 1), 'failSite', 'site', 0],
    ['recoverSite 4', (c) => c.recoverSite(4 as 1), 'recoverSite', 'site', 4],
    ['fenceSite 4', (c) => c.fenceSite(4 as 1), 'fenceSite', 'site', 4],
    ['resyncSite 3', (c) => c.resyncSite(3 as 1), 'resyncSite', 'site', 3],
    ['cutLink 4-1', (c) => c.cutLink(4 as 1, 1), 'cutLink', 'a', 4],
    ['cutLink 1-1', (c) => c.cutLink(1, 1), 'cutLink', 'b', 1],
    ['cutLink 1-4', (c) => c.cutLink(1, 4 as 1), 'cutLink', 'b', 4],
    ['restoreLink 0-2', (c) => c.restoreLink(0 as 1, 2), 'restoreLink', 'a', 0],
    ['restoreLink 3-3', (c) => c.restoreLink(3, 3), 'restoreLink', 'b', 3],
    ['advanceClock -1', (c) => c.advanceClock(-1), 'advanceClock', 'ticks', -1],
    ['advanceClock 1.5', (c) => c.advanceClock(1.5), 'advanceClock', 'ticks', 1.5],
    ['advanceClock advanceTicksMax + 1', (c) => c.advanceClock(advanceTicksMax + 1), 'advanceClock', 'ticks', advanceTicksMax + 1],
    ['failover options undefined', (c) => c.failover(undefined as unknown as { force: boolean }), 'failover', 'force', undefined],
    ['failover options null', (c) => c.failover(null as unknown as { force: boolean }), 'failover', 'force', undefined],
    ['failover force missing', (c) => c.failover({} as { force: boolean }), 'failover', 'force', undefined],
    ['failover force a string', (c) => c.failover({ force: 'yes' as unknown as boolean }), 'failover', 'force', 'yes'],
  ];
  for (const [label, run, operation, argument, value] of cases) {
    it(label, () => {
      const cluster = Cluster.create(config());
      cluster.hostWrite(1, 0, 0, block(1));
      // Site 1 fenced so that a failover with a valid force would be carried out: only the argument refuses it.
      cluster.fenceSite(1);
      const error = refused(cluster, () => run(cluster), InvalidArgumentError, { operation, argument, code: 'InvalidArgument' });
      expect(error.value).toStrictEqual(value);
    });
  }

  // advanceTicksMax itself (2^24 ticks) is accepted, but walking that many ticks takes seconds, minutes
  // under the mutation run's instrumentation: only zero, the lower boundary, is walked here.
  it('advanceClock takes zero ticks and changes nothing', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    const before = cluster.observe();
    cluster.advanceClock(0);
    expect(cluster.transport.now).toBe(0);
    expect(cluster.observe()).toEqual(before);
  });
});

describe('a refused command names its operation and the site or condition that refused it, changing nothing', () => {
  it('host reads and deliveries at a failed site', () => {
    const cluster = Cluster.create(config());
    cluster.failSite(1);
    refused(cluster, () => cluster.hostRead(1, 0, 0, 1), SiteFailedError, { site: 1, operation: 'hostRead' });
    cluster.failSite(2);
    const ack = encodeMessage({ kind: 'syncWriteAck', epoch: 1, updateNumber: 1 });
    refused(cluster, () => cluster.deliverBytes(1, 2, ack), SiteFailedError, { site: 2, operation: 'deliverBytes' });
  });

  it('fenceSite, failover, resyncSite', () => {
    const cluster = Cluster.create(config());
    cluster.failSite(2);
    refused(cluster, () => cluster.failover({ force: false }), SiteFailedError, { site: 2, operation: 'failover' });
    refused(cluster, () => cluster.resyncSite(2), SiteFailedError, { site: 2, operation: 'resyncSite' });
    cluster.recoverSite(2);
    cluster.cutLink(1, 2);
    refused(cluster, () => cluster.resyncSite(2), NotAllowedError, { operation: 'resyncSite', condition: 'sites 1 and 2 cannot reach each other' });
    cluster.restoreLink(1, 2);
    cluster.resyncSite(2);
    cluster.fenceSite(1);
    cluster.failover({ force: false });
    refused(cluster, () => cluster.failover({ force: false }), NotAllowedError, { operation: 'failover', condition: 'site 2 is already the primary' });
    refused(cluster, () => cluster.fenceSite(1), NotAllowedError, { operation: 'fenceSite', condition: 'site 1 is not the primary' });
    cluster.failSite(1);
    refused(cluster, () => cluster.fenceSite(1), SiteFailedError, { site: 1, operation: 'fenceSite' });
  });

  it('fullCopy with its source unreachable, failback with a site failed or a link cut', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    cluster.failover({ force: false });
    cluster.deltaResync();
    // Overflow site 2's journal before site 3 pulls: only a full copy brings site 3 back.
    for (let i = 0; i < 6; i += 1) cluster.hostWrite(2, 0, 0, block(10 + i));
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
    cluster.cutLink(2, 3);
    refused(cluster, () => cluster.fullCopy(), NotAllowedError, { operation: 'fullCopy', condition: 'source unreachable from site 3' });
    cluster.restoreLink(2, 3);
    cluster.fullCopy();
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    cluster.failSite(3);
    refused(cluster, () => cluster.failback(), SiteFailedError, { site: 3, operation: 'failback' });
    cluster.recoverSite(3);
    cluster.cutLink(1, 3);
    refused(cluster, () => cluster.failback(), NotAllowedError, { operation: 'failback', condition: 'every link must be up' });
  });

  it('restoreJournal while a full copy is to replace site 3 journal', () => {
    const cluster = Cluster.create(config({ journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } }));
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.pullJournal();
    cluster.failSite(1);
    expect(thrown(() => cluster.failover({ force: false }), RefusalError).code).toBe('RemoteAhead');
    cluster.failover({ force: true });
    expect(cluster.observe().asyncPair.state).toBe('fullCopy');
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0 });
    refused(cluster, () => cluster.restoreJournal(), NotAllowedError, {
      operation: 'restoreJournal',
      condition: 'async pair is fullCopy: a full copy replaces the journal',
    });
  });

  it('pullJournal and deltaResync check that the source is reachable themselves, even before R2 has seen a cut', () => {
    const cluster = failedOverWithSite3Behind();
    // A cut made on the transport directly: R2 has not run since, so the async pair still says deltaResync.
    cluster.transport.cut(2, 3);
    expect(thrown(() => cluster.deltaResync(), NotAllowedError)).toMatchObject({ operation: 'deltaResync', condition: 'source unreachable from site 3' });
    const copying = Cluster.create(config());
    copying.hostWrite(1, 0, 0, block(1));
    copying.transport.cut(1, 3);
    expect(thrown(() => copying.pullJournal(), NotAllowedError)).toMatchObject({ operation: 'pullJournal', condition: 'source unreachable from site 3' });
  });

  it('recovering a file-backed site restarts it from its directory: what it kept only in memory (its last verdict) is gone', () => {
    for (const kind of ['memory', 'file'] as const) {
      const storage: ClusterConfig['storage'] = kind === 'memory' ? { kind } : { kind, dir: path.join(root, 'recover-restarts') };
      const cluster = Cluster.create(config({ storage }));
      cluster.hostWrite(1, 0, 0, block(1));
      cluster.failSite(1);
      cluster.failover({ force: false });
      expect(cluster.site(3).lastVerdict?.purpose).toBe('failover');
      // Cut from its source, site 3 is not judged again when it returns.
      cluster.cutLink(2, 3);
      cluster.failSite(3);
      cluster.recoverSite(3);
      expect(cluster.site(3).lastVerdict?.purpose ?? null).toBe(kind === 'memory' ? 'failover' : null);
      cluster.close();
    }
  });
});

describe('answers that do not come: the command is refused with NotAcknowledgedError naming it', () => {
  it('a host write whose secondary answer is held', () => {
    const cluster = Cluster.create(config());
    cluster.transport.hold(2, 1);
    expect(thrown(() => cluster.hostWrite(1, 0, 0, block(1)), NotAcknowledgedError).operation).toBe('hostWrite');
  });

  it('a failover whose judge request is held', () => {
    const cluster = Cluster.create(config());
    cluster.failSite(1);
    cluster.transport.hold(3, 2);
    refused(cluster, () => cluster.failover({ force: false }), NotAcknowledgedError, {
      operation: 'failover',
      detail: "site 2 did not receive site 3's update number",
    });
  });

  it('a resync whose request is held', () => {
    const cluster = Cluster.create(config());
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.restoreLink(1, 2);
    cluster.transport.hold(2, 1);
    refused(cluster, () => cluster.resyncSite(2), NotAcknowledgedError, { operation: 'resyncSite', detail: 'the resync did not complete' });
  });

  it('a delta resync whose request is held', () => {
    const cluster = failedOverWithSite3Behind();
    cluster.transport.hold(3, 2);
    refused(cluster, () => cluster.deltaResync(), NotAcknowledgedError, { operation: 'deltaResync', detail: 'the delta resync did not complete' });
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
  });

  it('a full copy whose blocks are held', () => {
    const cluster = Cluster.create(config());
    cluster.cutLink(1, 3);
    for (let i = 0; i < 5; i += 1) cluster.hostWrite(1, 0, 0, block(i + 1));
    cluster.restoreLink(1, 3);
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
    cluster.transport.hold(1, 3);
    refused(cluster, () => cluster.fullCopy(), NotAcknowledgedError, { operation: 'fullCopy', detail: 'the full copy did not complete' });
  });

  it('a failback whose judge request is held', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    cluster.failover({ force: false });
    cluster.deltaResync();
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    cluster.transport.hold(3, 1);
    refused(cluster, () => cluster.failback(), NotAcknowledgedError, {
      operation: 'failback',
      detail: "site 1 did not receive site 3's update number",
    });
  });

  it('a reattach whose judge request is held leaves the async pair suspended; it is judged once the answer comes', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.cutLink(1, 3);
    cluster.transport.hold(3, 1);
    cluster.restoreLink(1, 3);
    expect(cluster.observe().asyncPair.state).toBe('suspended');
    expect(cluster.observe().judgement).toBeNull();
    cluster.transport.release(3, 1);
    cluster.runUntilIdle();
    expect(cluster.observe().asyncPair.state).toBe('copying');
    expect(cluster.observe().judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 0, sourceLast: 1, forced: false });
  });
});

describe('a late answer to an earlier request does not complete a later command', () => {
  /**
   * A cluster whose site 3 sent site 1 a reattach judge request that is still held; the hold is released
   * without running the transport, so the next command's exchange delivers it and site 1 judges again.
   */
  function withLateReattachJudgement(cluster: Cluster): void {
    cluster.cutLink(1, 3);
    cluster.transport.hold(3, 1);
    cluster.restoreLink(1, 3);
    expect(cluster.observe().asyncPair.state).toBe('suspended');
  }

  it('failover: a judgement for a reattach is not the failover judgement', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    withLateReattachJudgement(cluster);
    cluster.fenceSite(1);
    cluster.transport.release(3, 1);
    cluster.transport.hold(3, 2);
    refused(cluster, () => cluster.failover({ force: false }), NotAcknowledgedError, { operation: 'failover' });
  });

  it('resyncSite: a judgement is not the resync done', () => {
    const cluster = Cluster.create(config());
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.restoreLink(1, 2);
    withLateReattachJudgement(cluster);
    cluster.transport.release(3, 1);
    cluster.transport.hold(2, 1);
    expect(thrown(() => cluster.resyncSite(2), NotAcknowledgedError).operation).toBe('resyncSite');
    expect(cluster.observe().syncPair.state).toBe('resyncing');
  });

  it('fullCopy: a judgement is not the full copy done', () => {
    const cluster = Cluster.create(config());
    withLateReattachJudgement(cluster);
    for (let i = 0; i < 5; i += 1) cluster.hostWrite(1, 0, 0, block(i + 1));
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
    cluster.transport.release(3, 1);
    cluster.transport.hold(1, 3);
    expect(thrown(() => cluster.fullCopy(), NotAcknowledgedError).operation).toBe('fullCopy');
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
  });

  it('deltaResync: a judgement is neither the delta resync done nor refused', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    withLateReattachJudgement(cluster);
    cluster.fenceSite(1);
    cluster.failover({ force: false });
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
    cluster.transport.release(3, 1);
    cluster.transport.hold(3, 2);
    expect(thrown(() => cluster.deltaResync(), NotAcknowledgedError).operation).toBe('deltaResync');
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
  });
});

describe('site 3 keeps the last verdict with the purpose it was judged for', () => {
  it('failover, reattach, failback', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.site(3).lastVerdict).toEqual({ kind: 'verdict', epoch: 1, purpose: 'failover', verdict: 'deltaResync', remoteReceived: 0, sourceLast: 1 });
    cluster.deltaResync();
    cluster.cutLink(2, 3);
    cluster.restoreLink(2, 3);
    expect(cluster.site(3).lastVerdict).toEqual({ kind: 'verdict', epoch: 2, purpose: 'reattach', verdict: 'noUpdateRequired', remoteReceived: 1, sourceLast: 1 });
    cluster.recoverSite(1);
    cluster.resyncSite(1);
    cluster.failback();
    expect(cluster.site(3).lastVerdict).toEqual({ kind: 'verdict', epoch: 2, purpose: 'failback', verdict: 'noUpdateRequired', remoteReceived: 1, sourceLast: 1 });
  });
});

describe('the async pair and the source journal', () => {
  it('a delta resync refused by a source with writes in flight turns into a full copy, which waits for them', () => {
    const cluster = failedOverWithSite3Behind();
    cluster.resyncSite(1);
    expect(cluster.observe().syncPair).toEqual({ state: 'reversed', primary: 2 });
    cluster.transport.hold(1, 2);
    const inFlight = cluster.submitHostWrite(2, 1, 0, block(7));
    cluster.runUntilIdle();
    expect(inFlight.state).toBe('pending');
    cluster.deltaResync();
    expect(cluster.observe().asyncPair).toEqual({ state: 'fullCopy', source: 2 });
    expect(cluster.observe().sites[3].mode).toBe('resyncing');
    cluster.transport.release(1, 2);
    cluster.runUntilIdle();
    expect(inFlight.state).toBe('acknowledged');
    cluster.fullCopy();
    const o = cluster.observe();
    expect(o.asyncPair.state).toBe('copying');
    expect(o.sites[3]).toMatchObject({ received: 3, restored: 3, volumeDigest: o.sites[2].volumeDigest });
  });

  it('an overflow of the source journal does not change a full copy already decided', () => {
    const cluster = Cluster.create(config({ journal: { entriesMax: 8, bytesMax: 8 * (blockBytes + 4096) } }));
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.cutLink(1, 2);
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.pullJournal();
    cluster.failSite(1);
    cluster.failover({ force: true });
    expect(cluster.observe().asyncPair.state).toBe('fullCopy');
    for (let i = 0; i < 10; i += 1) cluster.hostWrite(2, 0, 0, block(10 + i));
    expect(cluster.observe().sites[2].journal.first).toBeGreaterThan(1);
    expect(cluster.observe().asyncPair.state).toBe('fullCopy');
  });

  it('a submitted write that overflows the source journal during a pending delta resync suspends the pair at once', () => {
    const cluster = failedOverWithSite3Behind();
    expect(cluster.observe().sites[3].mode).toBe('resyncing');
    for (let i = 0; i < 4; i += 1) expect(cluster.submitHostWrite(2, 0, 0, block(10 + i)).state).toBe('acknowledged');
    const o = cluster.observe();
    expect(o.asyncPair.state).toBe('suspendedOverflow');
    expect(o.sites[3].mode).toBe('normal');
  });

  it('once site 3 is judged against site 2 after a failover, the takeover point no longer applies', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.failSite(3);
    cluster.failSite(1);
    cluster.failover({ force: false });
    expect(cluster.site(2).takeover).toBe(1);
    cluster.recoverSite(3);
    expect(cluster.observe().asyncPair.state).toBe('copying');
    expect(cluster.site(2).takeover).toBeNull();
    cluster.hostWrite(2, 0, 0, block(2));
    cluster.hostWrite(2, 0, 0, block(3));
    cluster.pullJournal();
    cluster.pullJournal();
    expect(cluster.observe().sites[3].received).toBe(3);
    cluster.cutLink(2, 3);
    cluster.restoreLink(2, 3);
    expect(cluster.observe().judgement).toEqual({ verdict: 'noUpdateRequired', remoteReceived: 3, sourceLast: 3, forced: false });
    expect(cluster.observe().asyncPair.state).toBe('copying');
  });
});

describe('host write handles', () => {
  it('are numbered in submission order, and say whether both sync members acknowledged', () => {
    const cluster = Cluster.create(config());
    cluster.transport.hold(2, 1);
    const first = cluster.submitHostWrite(1, 0, 0, block(1));
    const second = cluster.submitHostWrite(1, 0, blockBytes, block(2));
    expect([first.id, second.id, first.host]).toEqual([1, 2, 1]);
    expect([first.state, first.updateNumber, first.alone, first.error]).toEqual(['pending', null, false, null]);
    cluster.transport.release(2, 1);
    cluster.runUntilIdle();
    expect([first.state, first.updateNumber, first.alone, first.error]).toEqual(['acknowledged', 1, false, null]);
    // The pair breaks with a write in flight: under keepWriting it is acknowledged on site 1 alone (P1 exposure).
    cluster.transport.hold(2, 1);
    const third = cluster.submitHostWrite(1, 1, 0, block(3));
    expect(third.id).toBe(3);
    cluster.cutLink(1, 2);
    expect([third.state, third.updateNumber, third.alone, third.error]).toEqual(['acknowledged', 3, true, null]);
    expect(cluster.observe().ackedOnOneSite).toBe(1);
  });

  it('a write in flight when its site fails fails with SiteFailedError', () => {
    const cluster = Cluster.create(config());
    cluster.transport.hold(2, 1);
    const handle = cluster.submitHostWrite(1, 0, 0, block(1));
    cluster.failSite(1);
    expect([handle.state, handle.updateNumber, handle.alone]).toEqual(['failed', null, false]);
    expect(handle.error).toBeInstanceOf(SiteFailedError);
    expect(handle.error).toMatchObject({ site: 1, operation: 'host write' });
    expect(cluster.pendingWrites).toBe(0);
  });

  it('under fence policy refuse, a write in flight when the pair breaks fails with NotWritableError fencePolicy, and hostWrite throws it', () => {
    const cluster = Cluster.create(config({ fencePolicy: 'refuse' }));
    cluster.transport.hold(2, 1);
    const handle = cluster.submitHostWrite(1, 0, 0, block(1));
    cluster.cutLink(1, 2);
    expect([handle.state, handle.alone]).toEqual(['failed', false]);
    expect(handle.error).toBeInstanceOf(NotWritableError);
    expect(handle.error).toMatchObject({ site: 1, host: 1, reason: 'fencePolicy' });
    expect(cluster.observe().ackedOnOneSite).toBe(0);
  });

  for (const kind of ['memory', 'file'] as const) {
    it(`submitHostWrite does not run the transport, even while a reattach waits for its judgement (${kind} storage)`, () => {
      const storage: ClusterConfig['storage'] = kind === 'memory' ? { kind } : { kind, dir: path.join(root, 'submit-no-transport') };
      const cluster = Cluster.create(config({ storage }));
      cluster.cutLink(1, 3);
      cluster.transport.hold(3, 1);
      cluster.restoreLink(1, 3);
      const handle = cluster.submitHostWrite(1, 0, 0, block(1));
      expect(handle.state).toBe('pending');
      expect(cluster.transport.pending(1, 2)).toBe(1);
      cluster.close();
    });
  }

  it('hostWrite throws the error of a write that failed before it returned', () => {
    const cluster = Cluster.create(config({ fencePolicy: 'refuse' }));
    for (let i = 0; i < 4; i += 1) cluster.hostWrite(1, 0, 0, block(i + 1));
    // The link is cut on the transport only: R1 sees it when the next write overflows site 1's journal.
    cluster.transport.cut(1, 2);
    const error = thrown(() => cluster.hostWrite(1, 0, 0, block(5)), NotWritableError);
    expect(error).toMatchObject({ site: 1, host: 1, reason: 'fencePolicy' });
    expect(cluster.observe().syncPair.state).toBe('suspended');
  });
});

describe('rejected deliveries', () => {
  const judgeRequest = (received: number): Message => ({ kind: 'judgeRequest', epoch: 1, purpose: 'failover', received });
  const verdict: Message = { kind: 'verdict', epoch: 1, purpose: 'failover', verdict: 'noUpdateRequired', remoteReceived: 0, sourceLast: 0 };

  it(`keeps the last ${rejectionsKeptMax}, the oldest forgotten first`, () => {
    const cluster = Cluster.create(config());
    // Site 2 judges only site 3: a judge request from site 1 is refused; a verdict is for site 3 only.
    cluster.transport.send({ from: 1, to: 2, message: verdict });
    for (let i = 1; i < rejectionsKeptMax; i += 1) cluster.transport.send({ from: 1, to: 2, message: judgeRequest(i) });
    cluster.runUntilIdle();
    expect(cluster.rejections.length).toBe(rejectionsKeptMax);
    expect(cluster.rejections[0]).toMatchObject({ from: 1, to: 2, kind: 'verdict' });
    expect(cluster.rejections[0]?.error).toBeInstanceOf(UnexpectedMessageError);
    cluster.transport.send({ from: 1, to: 2, message: judgeRequest(0) });
    cluster.runUntilIdle();
    expect(cluster.rejections.length).toBe(rejectionsKeptMax);
    expect(cluster.rejections.map((r) => r.kind)).not.toContain('verdict');
  });

  it('keeps two in order', () => {
    const cluster = Cluster.create(config());
    cluster.transport.send({ from: 1, to: 2, message: verdict });
    cluster.transport.send({ from: 1, to: 2, message: judgeRequest(0) });
    cluster.runUntilIdle();
    expect(cluster.rejections.map((r) => r.kind)).toEqual(['verdict', 'judgeRequest']);
  });

  it('an error that is not a refusal (a bug) surfaces to the caller instead of being logged as a rejection', () => {
    const cluster = Cluster.create(config());
    const broken = { kind: 'syncWrite', epoch: 1, updateNumber: 1, volume: 0, offset: 0, data: null, restoredKnown: 0 } as unknown as Message;
    cluster.transport.send({ from: 1, to: 2, message: broken });
    expect(() => cluster.runUntilIdle()).toThrow(TypeError);
    expect(cluster.rejections).toEqual([]);
  });

  it('a message reaching a failed site is lost, not refused', () => {
    const cluster = Cluster.create(config());
    cluster.failSite(2);
    cluster.transport.send({ from: 1, to: 2, message: judgeRequest(0) });
    expect(cluster.runUntilIdle()).toBe(1);
    expect(cluster.rejections).toEqual([]);
  });
});

describe('the logical clock', () => {
  it('pulls only at multiples of pullIntervalTicks while copying, restores only at multiples of restoreIntervalTicks', () => {
    const cluster = Cluster.create(config({ pullIntervalTicks: 3, restoreIntervalTicks: 5 }));
    for (let i = 0; i < 2; i += 1) cluster.hostWrite(1, 0, 0, block(i + 1));
    cluster.advanceClock(2);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 0, restored: 0 });
    cluster.advanceClock(1);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0 });
    cluster.advanceClock(1);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0 });
    cluster.advanceClock(1);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 2 });
  });

  it('does not pull while the async pair waits for a delta resync', () => {
    const cluster = failedOverWithSite3Behind();
    cluster.advanceClock(6);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 0, restored: 0 });
    expect(cluster.observe().asyncPair.state).toBe('deltaResync');
  });

  it('does not restore what site 3 holds while a full copy is to replace it', () => {
    const cluster = Cluster.create(config());
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.hostWrite(1, 0, 0, block(2));
    cluster.pullJournal();
    cluster.cutLink(1, 3);
    for (let i = 0; i < 5; i += 1) cluster.hostWrite(1, 0, 0, block(10 + i));
    cluster.restoreLink(1, 3);
    expect(cluster.observe().asyncPair.state).toBe('suspendedOverflow');
    refused(cluster, () => cluster.restoreJournal(), NotAllowedError, {
      operation: 'restoreJournal',
      condition: 'async pair is suspendedOverflow: a full copy replaces the journal',
    });
    cluster.advanceClock(6);
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0 });
  });
});

describe('close', () => {
  it('twice is harmless; any call after close is an invariant violation', () => {
    const dir = path.join(root, 'close-twice');
    const cluster = Cluster.create(config({ storage: { kind: 'file', dir } }));
    cluster.hostWrite(1, 0, 0, block(1));
    cluster.close();
    cluster.close();
    const calls: ((c: Cluster) => unknown)[] = [
      (c) => c.observe(),
      (c) => c.hostWrite(1, 0, 0, block(2)),
      (c) => c.hostRead(1, 0, 0, 1),
      (c) => c.readVolume(1, 0, 0, 1),
      (c) => c.pullJournal(),
      (c) => c.runUntilIdle(),
      (c) => c.deliverBytes(1, 2, encodeMessage({ kind: 'syncWriteAck', epoch: 1, updateNumber: 1 })),
    ];
    for (const call of calls) expect(thrown(() => call(cluster), InvariantError).invariant).toBe('cluster is open');
    expect(Cluster.open(config({ storage: { kind: 'file', dir } })).observe().sites[1].lastUpdateNumber).toBe(1);
  });
});

describe('a file-backed cluster: configuration refusals and creation', () => {
  it('refuses to create over a cluster, to reopen a memory cluster, or to open a directory with no cluster, naming the field', () => {
    const dir = path.join(root, 'config-refusals');
    Cluster.create(config({ storage: { kind: 'file', dir } })).close();
    expect(thrown(() => Cluster.create(config({ storage: { kind: 'file', dir } })), ConfigError)).toMatchObject({ field: 'storage.dir', value: dir, reason: 'already holds a cluster: use Cluster.open' });
    expect(thrown(() => Cluster.open(config()), ConfigError)).toMatchObject({ field: 'storage.kind', value: 'memory' });
    const empty = path.join(root, 'config-empty');
    expect(thrown(() => Cluster.open(config({ storage: { kind: 'file', dir: empty } })), ConfigError)).toMatchObject({ field: 'storage.dir', value: empty });
  });

  it('a cluster just created survives a crash before its first command, and its state file names its format', () => {
    const dir = path.join(root, 'crash-at-create');
    const cluster = Cluster.create(config({ storage: { kind: 'file', dir } }));
    const copy = `${dir}-copy`;
    fs.cpSync(dir, copy, { recursive: true });
    const reopened = Cluster.open(config({ storage: { kind: 'file', dir: copy } }));
    expect(reopened.observe()).toEqual(cluster.observe());
    const state = JSON.parse(fs.readFileSync(path.join(copy, 'cluster.json'), 'utf8')) as { format: string };
    expect(state.format).toBe('threesite-cluster-state-v1');
    reopened.close();
    cluster.close();
  });

  for (const site of [1, 2] as const) {
    it(`after a crash between site ${site}'s state file and the controller's, the next command brings site ${site}'s view of the sync pair back to the controller's`, () => {
      const dir = path.join(root, `torn-save-${site}`);
      const fileConfig = (at: string): ClusterConfig => config({ storage: { kind: 'file', dir: at } });
      const cluster = Cluster.create(fileConfig(dir));
      cluster.hostWrite(1, 0, 0, block(1));
      const crashed = `${dir}-crashed`;
      fs.cpSync(dir, crashed, { recursive: true });
      // The cut is saved site by site, then in cluster.json: the process dies after site ${site}'s file only.
      cluster.cutLink(1, 2);
      fs.copyFileSync(path.join(dir, `site-${site}`, 'state.json'), path.join(crashed, `site-${site}`, 'state.json'));
      cluster.close();
      const reopened = Cluster.open(fileConfig(crashed));
      expect(reopened.site(site).syncPair).toBe('suspended');
      const controllerFile = fs.statSync(path.join(crashed, 'cluster.json')).ino;
      reopened.runUntilIdle();
      expect([reopened.site(1).syncPair, reopened.site(2).syncPair]).toEqual(['inSync', 'inSync']);
      // The site's file is repaired; the controller's state did not change, so its file is not rewritten.
      expect(fs.statSync(path.join(crashed, 'cluster.json')).ino).toBe(controllerFile);
      expect(reopened.hostWrite(1, 1, 0, block(2)).updateNumber).toBe(2);
      expect(reopened.observe().ackedOnOneSite).toBe(0);
      expect(reopened.readVolume(2, 1, 0, 4)).toEqual(new Uint8Array(4).fill(2));
      reopened.close();
    });
  }

  it('a command that changes nothing does not rewrite the state file', () => {
    const dir = path.join(root, 'no-rewrite');
    const cluster = Cluster.create(config({ storage: { kind: 'file', dir } }));
    cluster.hostWrite(1, 0, 0, block(1));
    const file = path.join(dir, 'cluster.json');
    const before = fs.statSync(file).ino;
    cluster.runUntilIdle();
    cluster.hostRead(1, 0, 0, 1);
    expect(() => cluster.pullJournal()).not.toThrow();
    expect(() => cluster.fullCopy()).toThrow(NotAllowedError);
    expect(fs.statSync(file).ino).toBe(before);
    cluster.cutLink(1, 3);
    expect(fs.statSync(file).ino).not.toBe(before);
    cluster.close();
  });
});
