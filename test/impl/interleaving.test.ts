/**
 * Interleavings the atomic API never shows: host writes in flight while the transport delivers, drops,
 * duplicates, reorders and holds messages, with pulls and restores in between, then a cut of the sync link
 * that decides every write still in flight. Faults come from fast-check's seeded generator (the seed is
 * printed on failure), driving the transport's controls; nothing random lives in `impl/`.
 *
 * Properties: no invariant ever breaks (P2, P3, P5, P7 are asserted in the code); a write acknowledged as
 * on both sites is on site 2 when acknowledged (P1); site 3 only ever restores a prefix of the primary's
 * acknowledged history (P2: the primary serves no entry the secondary has not answered); after the cut
 * every write is decided and a resync makes sites 1 and 2 equal.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cluster, type ClusterConfig, type HostWriteHandle } from '../../impl/cluster/cluster.ts';
import { RefusalError } from '../../impl/core/errors.ts';
import { digestVolumes, MemoryVolume } from '../../impl/core/volume.ts';

const blockBytes = 512;

function config(fencePolicy: ClusterConfig['fencePolicy']): ClusterConfig {
  return {
    volumeCount: 2,
    volumeBytes: 4 * blockBytes,
    blockBytes,
    journal: { entriesMax: 64, bytesMax: 64 * (blockBytes + 64) },
    pullBatchEntriesMax: 3,
    pullIntervalTicks: 1,
    restoreIntervalTicks: 1,
    fencePolicy,
    storage: { kind: 'memory' },
    inFlightWritesMax: 8,
  };
}

type Direction = [1 | 2 | 3, 1 | 2 | 3];
const directions: Direction[] = [
  [1, 2],
  [2, 1],
  [1, 3],
  [3, 1],
];

type Action =
  | { kind: 'submit'; volume: number; block: number }
  | { kind: 'deliver'; direction: Direction }
  | { kind: 'drop'; direction: Direction }
  | { kind: 'duplicate'; direction: Direction }
  | { kind: 'reverse'; direction: Direction }
  | { kind: 'hold'; direction: Direction }
  | { kind: 'release'; direction: Direction }
  | { kind: 'pull' }
  | { kind: 'restore' }
  | { kind: 'run' };

const direction = fc.constantFrom(...directions);
const action: fc.Arbitrary<Action> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('submit' as const), volume: fc.nat({ max: 1 }), block: fc.nat({ max: 3 }) }) },
  { weight: 4, arbitrary: fc.record({ kind: fc.constant('deliver' as const), direction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('drop' as const), direction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('duplicate' as const), direction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('reverse' as const), direction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('hold' as const), direction }) },
  { weight: 1, arbitrary: fc.record({ kind: fc.constant('release' as const), direction }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'pull' as const }) },
  { weight: 2, arbitrary: fc.constant({ kind: 'restore' as const }) },
  { weight: 1, arbitrary: fc.constant({ kind: 'run' as const }) },
);

interface Submitted {
  handle: HostWriteHandle;
  volume: number;
  offset: number;
  data: Uint8Array;
}

/** The digest of the image after the writes with update numbers 1..k, in order. */
function imageAfter(cfg: ClusterConfig, byNumber: Map<number, Submitted>, k: number): string | null {
  const volumes = Array.from({ length: cfg.volumeCount }, () => new MemoryVolume(cfg.volumeBytes, cfg.blockBytes));
  for (let u = 1; u <= k; u += 1) {
    const write = byNumber.get(u);
    if (write === undefined) return null;
    (volumes[write.volume] as MemoryVolume).write(write.offset, write.data);
  }
  return digestVolumes(volumes);
}

function run(cfg: ClusterConfig, actions: Action[]): void {
  const cluster = Cluster.create(cfg);
  const submitted: Submitted[] = [];
  const ackedOnBoth = new Set<HostWriteHandle>();
  let data = 0;
  const check = (): void => {
    // P1: a write acknowledged as on both sites is on site 2 (same update number) at acknowledgement.
    for (const write of submitted) {
      if (write.handle.state !== 'acknowledged' || write.handle.alone || ackedOnBoth.has(write.handle)) continue;
      ackedOnBoth.add(write.handle);
      expect(cluster.site(2).last).toBeGreaterThanOrEqual(write.handle.updateNumber as number);
    }
    // P2: site 3's image is the primary's history after updates 1..restored.
    const byNumber = new Map<number, Submitted>();
    for (const write of submitted) if (write.handle.state === 'acknowledged') byNumber.set(write.handle.updateNumber as number, write);
    const o = cluster.observe();
    const expected = imageAfter(cfg, byNumber, o.sites[3].restored);
    expect(expected, `site 3 restored ${o.sites[3].restored} beyond the acknowledged writes`).not.toBeNull();
    expect(o.sites[3].volumeDigest).toBe(expected);
  };
  for (const step of actions) {
    try {
      switch (step.kind) {
        case 'submit': {
          data = (data % 255) + 1;
          const bytes = new Uint8Array(blockBytes).fill(data);
          const handle = cluster.submitHostWrite(1, step.volume, step.block * blockBytes, bytes);
          submitted.push({ handle, volume: step.volume, offset: step.block * blockBytes, data: bytes });
          break;
        }
        case 'deliver':
          cluster.transport.deliverNext(...step.direction);
          break;
        case 'drop':
          cluster.transport.drop(...step.direction);
          break;
        case 'duplicate':
          cluster.transport.duplicate(...step.direction);
          break;
        case 'reverse': {
          const count = cluster.transport.pending(...step.direction);
          cluster.transport.reorder(...step.direction, Array.from({ length: count }, (_, i) => count - 1 - i));
          break;
        }
        case 'hold':
          cluster.transport.hold(...step.direction);
          break;
        case 'release':
          cluster.transport.release(...step.direction);
          break;
        case 'pull':
          cluster.pullJournal();
          break;
        case 'restore':
          cluster.restoreJournal();
          break;
        case 'run':
          cluster.runUntilIdle();
          break;
      }
    } catch (error) {
      if (!(error instanceof RefusalError)) throw error;
    }
    check();
  }
  // The cut decides every write still in flight; healing and a resync make sites 1 and 2 equal (P1).
  for (const [from, to] of directions) cluster.transport.release(from, to);
  cluster.cutLink(1, 2);
  for (const write of submitted) expect(write.handle.state).not.toBe('pending');
  cluster.restoreLink(1, 2);
  cluster.resyncSite(2);
  const o = cluster.observe();
  expect(o.sites[2].volumeDigest).toBe(o.sites[1].volumeDigest);
  expect(o.ackedOnOneSite).toBe(0);
  if (cfg.fencePolicy === 'keepWriting') {
    // Every write was acknowledged (on both sites, or on site 1 alone when the cut decided it): the
    // primary's image is exactly the acknowledged history.
    const byNumber = new Map(submitted.map((write) => [write.handle.updateNumber as number, write]));
    expect(o.sites[1].volumeDigest).toBe(imageAfter(cfg, byNumber, o.sites[1].lastUpdateNumber));
  }
  check();
}

describe('writes in flight under transport faults (property)', () => {
  for (const fencePolicy of ['keepWriting', 'refuse'] as const) {
    it(`fence policy ${fencePolicy}`, () => {
      fc.assert(
        fc.property(fc.array(action, { maxLength: 60 }), (actions) => run(config(fencePolicy), actions)),
        { numRuns: 300 },
      );
    });
  }
});
