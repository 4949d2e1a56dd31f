/**
 * The interleavings in the conformance run (`runConformance` with `interleavings`, which `npm start` sets):
 * host writes in flight, deliveries one at a time, a crash and the failover story, P1-P7 on the real bytes
 * after every step. A planted bug (site 2 journals other bytes than the host wrote) must fail
 * the stage and the run; the faithful cluster must pass them and reach failovers, failbacks and convergence.
 */
import { describe, expect, it } from 'vitest';
import { interleavingWork, runConformance, runInterleavingChunks, type RunOptions } from '../../conformance/run.ts';
import type { Cluster } from '../../impl/cluster/cluster.ts';
import type { JournalEntry } from '../../impl/core/journal.ts';
import { NotAllowedError } from '../../impl/core/errors.ts';
import { stageRunOptions } from './stage-run.ts';

/** Planted: site 2 journals each synchronous copy with its first byte changed (its bytes differ from site 1's). */
function site2JournalsOtherBytes(cluster: Cluster): void {
  const journal = cluster.site(2).journal;
  const append = journal.append.bind(journal);
  journal.append = (entry: JournalEntry) => {
    const data = entry.data.slice();
    data[0] = (data[0]! + 1) & 0xff;
    append({ ...entry, data });
  };
}

describe('the interleaving stage', () => {
  it('passes on the faithful cluster and goes through the failover story', async () => {
    const result = await runInterleavingChunks([{ storage: 'memory', runs: 10, seed: 7 }]);
    expect(result.violations).toEqual([]);
    expect(result.runs).toBe(10);
    expect(result.failovers).toBeGreaterThan(0);
    expect(result.converged).toBeGreaterThan(0);
  });

  it('reports a planted violation with the chunk it came from and the property it breaks', async () => {
    const result = await runInterleavingChunks([{ storage: 'memory', runs: 10, seed: 7 }], site2JournalsOtherBytes);
    expect(result.violations).toHaveLength(1);
    expect(result.violations[0]!.chunk).toEqual({ storage: 'memory', runs: 10, seed: 7 });
    // The violation first (here P6: site 2's image differs once everything settled), then fast-check's report.
    expect(result.violations[0]!.report).toMatch(/^P[1-7]: .*\n.*Property failed/);
  });

  it('is 220 runs in 12 chunks of distinct seeds, two on files', () => {
    const chunks = interleavingWork(1);
    expect(chunks.reduce((sum, chunk) => sum + chunk.runs, 0)).toBe(220);
    expect(new Set(chunks.map((chunk) => chunk.seed)).size).toBe(chunks.length);
    expect(chunks.filter((chunk) => chunk.storage === 'file')).toHaveLength(2);
  });

  it('fails the conformance run when an interleaving breaks a property', async () => {
    const chunks = [interleavingWork(1).find((chunk) => chunk.storage === 'memory')!, interleavingWork(1).find((chunk) => chunk.storage === 'file')!];
    const options: RunOptions = {
      ...stageRunOptions,
      interleavings: true,
      // Two of npm start's chunks, one in memory and one on files (all 220 runs cost a minute here).
      interleavingChunks: chunks,
      plantInterleavings: site2JournalsOtherBytes,
    };
    const report = await runConformance(options);
    expect(report.passed).toBe(false);
    expect(report.interleavings?.violations.map((violation) => violation.chunk)).toEqual(chunks);
    expect(report.divergences.filter((divergence) => divergence.strategy === 'interleaving')).toHaveLength(chunks.length);
    // A run whose interleavings never fail over (planted: every failover refused) proves nothing of the
    // failover story: it fails although no property broke.
    const noFailover = await runConformance({
      ...options,
      plantInterleavings: (cluster) => {
        cluster.failover = () => {
          throw new NotAllowedError('failover', 'planted: never');
        };
      },
    });
    expect(noFailover.interleavings?.violations).toEqual([]);
    expect(noFailover.interleavings?.failovers).toBe(0);
    expect(noFailover.gateFailures.filter((line) => line.startsWith('interleavings'))).toEqual([expect.stringMatching(/^interleavings 0 failovers, 0 failbacks, \d+ converged: each must be above 0$/)]);
    expect(noFailover.passed).toBe(false);
  }, 300_000);
});
