/**
 * Typed refusals at the API edge (issue 18): a byte range outside a volume and a host write of no byte are
 * the refusal `OutOfRange` everywhere (the cluster, a site node, the driver protocol), change nothing, and
 * take no update number. The model names the empty write as its own refusal condition
 * (`HOST_WRITE.rangeNotEmpty`), so the conformance run's refusal paths reach it and catch an implementation
 * that accepts it (planted below).
 */
import { describe, expect, it } from 'vitest';
import { ClusterSut, clusterConfigFor } from '../../conformance/adapter.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan } from '../../conformance/paths.ts';
import type { SutFactory } from '../../conformance/sut.ts';
import { driverConfigFor, driverEventFor } from '../../conformance/sut-driver.ts';
import { Cluster } from '../../impl/cluster/cluster.ts';
import { RefusalError } from '../../impl/core/errors.ts';
import { OutOfRangeError } from '../../impl/core/volume.ts';
import { DriverSession } from '../../impl/drivers/driver.ts';
import { NbdErrno } from '../../impl/net/nbd-protocol.ts';
import { nbdErrorOf } from '../../impl/site/site-serve.ts';
import type { ModelEvent } from '../../model/events.ts';
import { validateParams } from '../../model/params.ts';
import { check, failedConditions } from '../../model/semantics.ts';
import { initialContext } from '../../model/state.ts';

const params = validateParams({ faultsMax: 1, fencePolicy: 'keepWriting' });
/** Bounds small enough to plan in a second: the empty write is refused from the first state on. */
const tiny = validateParams({ volumeCount: 1, writesMax: 1, faultsMax: 1, fencePolicy: 'keepWriting' });
const empty: ModelEvent = { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1, start: 0, length: 0 };

/** Planted: an empty host write takes an update number (rewrites one byte with what it holds), as before issue 18. */
const acceptsEmptyWrites: SutFactory = (p) => {
  const cluster = Cluster.create(clusterConfigFor(p));
  const hostWrite = cluster.hostWrite.bind(cluster);
  cluster.hostWrite = (host, volume, offset, data) => {
    if (data.length > 0) return hostWrite(host, volume, offset, data);
    return hostWrite(host, volume, offset, cluster.readVolume(host, volume, offset, 1));
  };
  return new ClusterSut(cluster, p.blockBytes);
};

describe('a byte range outside a volume, or no byte at all', () => {
  it('is the refusal OutOfRange in the cluster, and changes nothing', () => {
    const cluster = Cluster.create(clusterConfigFor(params));
    const before = cluster.observe();
    for (const [offset, length, reason] of [[0, 0, 'empty'], [params.blockBytes - 1, 2, 'pastEnd'], [-1, 1, 'negative']] as const) {
      let error: unknown = null;
      try {
        cluster.hostWrite(1, 0, offset, new Uint8Array(length));
      } catch (caught) {
        error = caught;
      }
      expect(error).toBeInstanceOf(RefusalError);
      expect(error).toBeInstanceOf(OutOfRangeError);
      expect([(error as OutOfRangeError).code, (error as OutOfRangeError).reason]).toEqual(['OutOfRange', reason]);
    }
    expect(cluster.observe()).toEqual(before);
    expect(cluster.hostWrite(1, 0, 0, new Uint8Array(1))).toEqual({ updateNumber: 1 });
  });

  it('is answered as a typed refusal by the driver protocol, not as a crash', () => {
    const session = new DriverSession();
    expect(JSON.parse(session.handle(JSON.stringify({ op: 'reset', config: driverConfigFor(params) })).line)).toEqual({ ok: true });
    const answer = (event: ModelEvent) => JSON.parse(session.handle(JSON.stringify({ op: 'apply', event: driverEventFor(event, params.blockBytes) })).line) as { accepted: boolean; code?: string };
    expect(answer(empty)).toMatchObject({ accepted: false, code: 'OutOfRange' });
    expect(answer({ ...empty, start: params.blockBytes - 1, length: 2 })).toMatchObject({ accepted: false, code: 'OutOfRange' });
    expect(answer({ ...empty, length: 1 })).toMatchObject({ accepted: true });
  });

  it('is its own refusal condition in the model: an empty write is refused by rangeNotEmpty alone', () => {
    const context = initialContext(params);
    expect(failedConditions(context, empty)).toEqual(['HOST_WRITE.rangeNotEmpty']);
    expect(check(context, empty)?.code).toBe('OutOfRange');
    expect(check(context, { ...empty, length: 1 })).toBeNull();
  });

  it('an implementation that accepts an empty write is caught by the refusal path the plan generates for it', () => {
    const plan = coveragePlan(tiny);
    expect(plan.refusalsAlone).toContain('HOST_WRITE.rangeNotEmpty');
    const path = plan.refusalPaths.find((candidate) => candidate.target === 'HOST_WRITE.rangeNotEmpty');
    expect(path).toBeDefined();
    expect(runPath(tiny, path!.events, ClusterSut.create).divergence).toBeNull();
    const caught = runPath(tiny, path!.events, acceptsEmptyWrites).divergence;
    expect(caught?.kind).toBe('outcome');
    expect(caught?.step).toBe(path!.events.length - 1);
  });
});

describe('at a site process NBD export', () => {
  it('answers a write of no byte EINVAL and a write past the end ENOSPC (the NBD spec for writes)', () => {
    expect(nbdErrorOf(new OutOfRangeError(0, 0, 4096, 'empty')).errno).toBe(NbdErrno.EINVAL);
    expect(nbdErrorOf(new OutOfRangeError(4095, 2, 4096, 'pastEnd')).errno).toBe(NbdErrno.ENOSPC);
  });
});
