/**
 * Ordinary heavy I/O never breaks synchronous replication: fio with 32 MiB writes at queue depth 4 against
 * site 1 puts far more bytes in flight than the link to site 2 may queue (128 MiB against 64 MiB). Before
 * back-pressure site 1 dropped the link ("outgoing queue ... would exceed outgoingBytesMax") and acknowledged
 * writes on one site only; now the writes wait at site 1 until the link drains, and every one is in sync.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { Deployment, run } from './deployment.ts';

let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.stop();
  deployment = undefined;
});

describe('heavy I/O against site 1', () => {
  it('32 MiB writes at queue depth 4 (128 MiB in flight) keep the pair in sync: nothing acknowledged on one site only', async () => {
    // The answer timeout is generous: this test is about the link's queue, and rule R1's timeout (unit-tested
    // in test/impl/site-node.test.ts) must not fire because a shared two-core machine stalls site 2 for seconds.
    const d = await Deployment.create({ volumeBytes: 64 * 1024 * 1024, volumeCount: 1, answerTimeoutMs: 20_000 });
    deployment = d;
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);
    const job = [
      '--name=heavy',
      '--ioengine=nbd',
      `--uri=${d.nbdUri(1, 0)}`,
      '--rw=write',
      '--bs=32M',
      '--size=64M',
      '--iodepth=4',
      '--loops=2',
    ];
    const fio = await run('fio', job, { cwd: d.dir, maxBuffer: 16 * 1024 * 1024 });
    expect(fio.stdout).toMatch(/WRITE: bw=/);
    const status = await d.waitFor('site 3 caught up', (s) => s.lag === 0, 120_000);
    expect(status.syncPair).toBe('inSync');
    expect(status.ackedOnOneSite).toBe(0);
    expect(status.sites[1]?.syncPair).toBe('inSync');
    expect(status.sites[2]?.lastUpdateNumber).toBe(status.sites[1]?.lastUpdateNumber);
    // 4 writes of 32 MiB, each split by the site into journal entries of at most its host write limit.
    expect(status.sites[1]?.lastUpdateNumber).toBeGreaterThanOrEqual(4);
    expect(d.logText()).not.toMatch(/would exceed outgoingBytesMax/);
    const digests = await d.status(true);
    expect(digests.sites[2]?.volumeDigest).toBe(digests.sites[1]?.volumeDigest);
    expect(digests.sites[3]?.volumeDigest).toBe(digests.sites[1]?.volumeDigest);
  });
});
