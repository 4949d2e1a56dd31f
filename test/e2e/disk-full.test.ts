/**
 * A real full disk at site 1 (its directory on a small tmpfs; the tests run as root, as CI does): the host
 * write that finds no space fails with ENOSPC and is never acknowledged, the process stays up and reports
 * the fault (DRBD's on-io-error detach), host 2 takes over, and once space is freed site 1 restarts, is
 * resynced and failed back: the three images end identical and hold every acknowledged write. Before, the
 * write killed the process (uncaught ENOSPC), the restart crashed again saving state, and after recovery the
 * sites disagreed for good while status said in sync.
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Deployment, run } from './deployment.ts';

let deployment: Deployment | undefined;
let mounted: string | undefined;
afterEach(async () => {
  await deployment?.terminate().catch(() => undefined);
  if (mounted !== undefined) execFileSync('umount', ['-l', mounted]);
  await deployment?.stop();
  deployment = undefined;
  mounted = undefined;
});

/** Puts `dir` on a tmpfs of `sizeBytes` (keeping what it holds: the site's credentials). */
function mountSmall(dir: string, sizeBytes: number): void {
  const keep = mkdtempSync(join(tmpdir(), 'threesite-keep-'));
  cpSync(dir, keep, { recursive: true });
  execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeBytes},mode=0700`, 'tmpfs', dir]);
  mounted = dir;
  cpSync(keep, dir, { recursive: true });
  rmSync(keep, { recursive: true, force: true });
}

const mib = 1024 * 1024;

describe('a full disk at site 1', () => {
  it('fails the write with ENOSPC, unacknowledged; site 1 detaches and stays up; after repair, resync and failback the three images are equal', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run the suite as root (CI does), or see test/impl/site-node.test.ts for the fault-injecting backend');
    const d = await Deployment.create({ volumeBytes: 16 * mib, volumeCount: 1 });
    deployment = d;
    mountSmall(join(d.dir, 'site-1'), 6 * mib);
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);

    // 1 MiB writes, each a volume write and a journal entry at site 1, until the 6 MiB tmpfs is full.
    const acknowledged: number[] = [];
    let failure = '';
    for (let k = 0; k < 16 && failure === ''; k += 1) {
      const pattern = `0x${(0x10 + k).toString(16)}`;
      const out = await run('qemu-io', ['-f', 'raw', d.nbdUri(1, 0), '-c', `write -P ${pattern} ${k}M 1M`]).then(
        (r) => `${r.stdout}${r.stderr}`,
        (error: { stdout: string; stderr: string }) => `${error.stdout}${error.stderr}`,
      );
      if (/wrote 1048576\/1048576 bytes/.test(out)) acknowledged.push(k);
      else failure = out;
    }
    expect(acknowledged.length).toBeGreaterThan(0);
    expect(failure).toMatch(/No space left on device/);

    // The process is up and says why it stopped; its peers see it down and site 2 suspended the pair.
    const faulted = await d.waitFor('site 1 detached', (s) => s.sites[1]?.fault !== null && s.sites[1]?.fault !== undefined && s.syncPair === 'suspended');
    expect(faulted.sites[1]).toMatchObject({ up: false, fault: { errno: 'ENOSPC' } });
    expect(await d.threesite('status')).toMatch(/STORAGE FAULT ENOSPC/);
    await expect(d.threesite('recover', '--site', '1')).rejects.toMatchObject({ stderr: expect.stringMatching(/device error/) });

    // Host 2 takes over; then space is freed and site 1's process restarted over its repaired directory.
    await d.threesite('failover');
    await d.waitFor('site 2 primary', (s) => s.primary === 2);
    await run('qemu-io', ['-f', 'raw', d.nbdUri(2, 0), '-c', 'write -P 0x77 12M 64k']);
    execFileSync('mount', ['-o', 'remount,size=256m', mounted!]);
    await d.kill(1);
    d.start(1);
    await d.waitFor('site 1 answering, failed, no fault', (s) => s.sites[1] !== null && s.sites[1]?.up === false && s.sites[1]?.fault === null);
    await d.threesite('recover', '--site', '1');
    await d.waitFor('site 1 resyncing as secondary', (s) => s.sites[1]?.mode === 'resyncing' && s.sites[1]?.role === 'secondary');
    await d.threesite('resync', '--site', '1');
    await d.waitFor('sync pair reversed', (s) => s.syncPair === 'reversed');
    const caught = await d.waitFor('site 3 caught up', (s) => s.lag === 0 && Deployment.allConnected(s), 60_000);
    if (caught.asyncPair !== 'copying') await d.threesite(caught.asyncPair === 'fullCopy' ? 'full-copy' : 'delta-resync');
    await d.waitFor('site 3 copying, caught up', (s) => s.lag === 0 && s.asyncPair === 'copying', 60_000);
    expect(await d.threesite('failback')).toContain('failed back');
    await d.waitFor('back to site 1, in sync', (s) => s.primary === 1 && s.syncPair === 'inSync' && s.lag === 0, 60_000);

    const final = await d.status(true);
    expect(final.sites[2]?.volumeDigest).toBe(final.sites[1]?.volumeDigest);
    expect(final.sites[3]?.volumeDigest).toBe(final.sites[1]?.volumeDigest);
    // Every write acknowledged to host 1 before the disk filled, and host 2's, is on the primary.
    for (const k of acknowledged) {
      const read = await run('qemu-io', ['-f', 'raw', '-r', d.nbdUri(1, 0), '-c', `read -P 0x${(0x10 + k).toString(16)} ${k}M 1M`]);
      expect(read.stdout, `write ${k}`).not.toMatch(/Pattern verification failed/);
    }
    const host2 = await run('qemu-io', ['-f', 'raw', '-r', d.nbdUri(1, 0), '-c', 'read -P 0x77 12M 64k']);
    expect(host2.stdout).not.toMatch(/Pattern verification failed/);
  });
});
