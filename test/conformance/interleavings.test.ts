/**
 * Interleavings (conformance/interleavings.ts): host writes in flight, single deliveries in an order
 * fast-check's scheduler chooses, pulls and restores, a crash of site 1, 2 or 3 in the middle and the failover
 * story after it; P1-P7 checked on the real bytes after every step, with memory and file storage. And the
 * checker itself must be able to fail: each property is shown a broken cluster.
 */
import { describe, expect, it } from 'vitest';
import { Cluster, type ClusterConfig } from '../../impl/cluster/cluster.ts';
import { exploreInterleavings, ImplPropertyChecker, PropertyViolation, type SubmittedWrite } from '../../conformance/interleavings.ts';

/** Interleavings per storage kind in this suite (the benchmark runs more). */
const memoryRuns = 300;
const fileRuns = 40;

describe('interleavings under the scheduler (P1-P7 on real bytes after every step)', () => {
  it(`hold for ${memoryRuns} interleavings with memory storage, crashes and failovers among them`, async () => {
    const result = await exploreInterleavings({ runs: memoryRuns, seed: 20_261_125, storage: 'memory' });
    expect(result.runs).toBe(memoryRuns);
    expect(result.checks).toBeGreaterThan(memoryRuns * 50);
    // The runs really go through the story: failovers, failbacks, and convergence checked (P6).
    expect(result.failovers).toBeGreaterThan(memoryRuns / 10);
    expect(result.failbacks).toBeGreaterThan(0);
    expect(result.converged).toBeGreaterThan(memoryRuns / 10);
    expect(result.deliveries).toBeGreaterThan(memoryRuns);
  }, 120_000);

  it(`hold for ${fileRuns} interleavings with file storage (a crashed site reopens from its files)`, async () => {
    const result = await exploreInterleavings({ runs: fileRuns, seed: 20_261_126, storage: 'file' });
    expect(result.runs).toBe(fileRuns);
    expect(result.converged).toBeGreaterThan(0);
  }, 120_000);
});

const blockBytes = 512;
const config: ClusterConfig = {
  volumeCount: 2,
  volumeBytes: 4 * blockBytes,
  blockBytes,
  journal: { entriesMax: 16, bytesMax: 16 * (blockBytes + 64) },
  pullBatchEntriesMax: 2,
  pullIntervalTicks: 1,
  restoreIntervalTicks: 1,
  fencePolicy: 'refuse',
  storage: { kind: 'memory' },
};

function violationOf(check: () => void): PropertyViolation {
  try {
    check();
  } catch (error) {
    if (error instanceof PropertyViolation) return error;
    throw error;
  }
  throw new Error('the checker did not report the broken state');
}

/** A cluster with two acknowledged writes, pulled and restored by site 3. */
function healthy(): { cluster: Cluster; checker: ImplPropertyChecker; writes: SubmittedWrite[] } {
  const cluster = Cluster.create(config);
  const checker = new ImplPropertyChecker(cluster, config);
  const writes: SubmittedWrite[] = [];
  for (const fill of [1, 2]) {
    const data = new Uint8Array(blockBytes).fill(fill);
    const handle = cluster.submitHostWrite(1, 0, (fill - 1) * blockBytes, data);
    cluster.runUntilIdle();
    writes.push({ handle, volume: 0, offset: (fill - 1) * blockBytes, data });
  }
  cluster.pullJournal();
  cluster.restoreJournal();
  checker.check(writes);
  return { cluster, checker, writes };
}

describe('the property checker reports broken states', () => {
  it('P1: a journal holding other bytes under an acknowledged update number', () => {
    const { checker, writes } = healthy();
    const lie = { ...(writes[1] as SubmittedWrite), data: new Uint8Array(blockBytes).fill(9), handle: (writes[1] as SubmittedWrite).handle };
    const fresh = new ImplPropertyChecker(checker.cluster, config);
    expect(violationOf(() => fresh.check([writes[0] as SubmittedWrite, lie])).property).toBe('P1');
  });

  it("P2: site 3's volume bytes changed behind its journal", () => {
    const { cluster, checker, writes } = healthy();
    cluster.site(3).volumes[0]!.write(0, new Uint8Array(blockBytes).fill(7));
    expect(violationOf(() => checker.check(writes)).property).toBe('P2');
  });

  it('P4: two sites accepting host writes', () => {
    const { cluster, checker, writes } = healthy();
    cluster.site(2).setRole('primary');
    expect(violationOf(() => checker.check(writes)).property).toMatch(/P4|P3/);
  });

  it('P6: three images that differ after failback', () => {
    const { cluster, checker } = healthy();
    cluster.site(2).volumes[1]!.write(0, new Uint8Array(blockBytes).fill(5));
    expect(violationOf(() => checker.checkConverged()).property).toBe('P6');
  });
});
