/**
 * Online verify of three site processes (`threesite verify`): while fio writes to site 1, a verify compares
 * the three sites block by block, each chunk at one update number, and finds no difference; then a byte
 * changed behind a site's back in its volume file (site 2, and site 3) is reported by site, volume and byte
 * offset (exit status 5), `threesite status` shows the verify, `resync` repairs both sites (site 2 from
 * site 1's changed-block record, site 3 by a full copy), and a new verify finds none.
 */
import { openSync, readSync, writeSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Deployment, run } from './deployment.ts';
import { verifyDifferExit } from '../../impl/site/cli.ts';
import { NbdClient } from '../../impl/net/nbd-client.ts';
import { verifyChunkBytesMax, type VerifyResult } from '../../impl/core/verify.ts';

let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.stop();
  deployment = undefined;
});

const volumeBytes = 4 * 1024 * 1024;
const blockBytes = 4096;

/** Runs `threesite verify` and returns its exit status and output (a non-zero status is not an error here). */
async function verify(d: Deployment, ...args: string[]): Promise<{ code: number; stdout: string }> {
  try {
    const { stdout } = await run(process.execPath, ['bin/threesite.js', 'verify', ...args, '--config', d.configFile], { timeout: 120_000 });
    return { code: 0, stdout };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw error;
    return { code: failed.code, stdout: `${failed.stdout ?? ''}${failed.stderr ?? ''}` };
  }
}

/** Flips every bit of one byte of a site's volume file, behind the site's back. */
function corrupt(d: Deployment, site: 2 | 3, volume: number, offset: number): void {
  const fd = openSync(join(d.dir, `site-${site}`, `volume-${volume}.img`), 'r+');
  try {
    const byte = Buffer.alloc(1);
    readSync(fd, byte, 0, 1, offset);
    byte[0] = (byte[0] as number) ^ 0xff;
    writeSync(fd, byte, 0, 1, offset);
  } finally {
    closeSync(fd);
  }
}

describe('threesite verify', () => {
  it('finds no difference while writes go on; finds a changed byte at site 2 and at site 3 by volume and offset; resync repairs both', async () => {
    // Site 3 pulls every 2 s: it lags, so the verify's markers wait at site 3 while the writes after their
    // update number are acknowledged, and arrive with the ones before (site 3 must hash at the marker's
    // number, not at what it holds then).
    const d = await Deployment.create({ volumeBytes, volumeCount: 2, answerTimeoutMs: 20_000, pullIntervalMs: 2000 });
    deployment = d;
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);

    // A host writes blocks of the first chunk of both volumes of site 1 (a pseudo-random walk, a writer per
    // volume) for as long as the verify runs: every write after a chunk's update number changes that chunk.
    let writing = true;
    let written = 0;
    const writer = async (volume: number): Promise<void> => {
      const nbd = await NbdClient.connect('127.0.0.1', d.nbdPort(1), `vol${volume}`);
      for (let i = 1; writing; i += 1) {
        const block = (i * 7919 + volume * 104_729) % (verifyChunkBytesMax / blockBytes);
        await nbd.write(block * blockBytes, new Uint8Array(blockBytes).fill((i % 255) + 1));
        written += 1;
      }
      await nbd.close();
    };
    const writers = [writer(0), writer(1)];
    await d.waitForUpdateNumber(1, (u) => u > 100);
    const during = await verify(d, '--json');
    const duringStatus = await d.status();
    writing = false;
    await Promise.all(writers);
    expect(during.code, during.stdout).toBe(0);
    expect(written).toBeGreaterThan(100);
    const { result } = JSON.parse(during.stdout) as { result: VerifyResult };
    expect(result.outcome).toBe('equal');
    expect(result.blocks).toBe((2 * volumeBytes) / blockBytes);
    for (const site of result.sites) {
      expect(site.blocksCompared).toBe((2 * volumeBytes) / blockBytes);
      expect(site.blocksDiffering).toBe(0);
      expect(site.blocksNotVerified).toBe(0);
    }
    // The writes went on during the verify: its chunks were compared at different update numbers.
    const [two, three] = result.sites;
    expect(two.updateNumbers!.last).toBeGreaterThan(two.updateNumbers!.first);
    expect(three.updateNumbers!.last).toBeGreaterThan(three.updateNumbers!.first);
    expect(duringStatus.sites[1]?.lastUpdateNumber).toBeGreaterThan(two.updateNumbers!.last);

    await d.waitFor('site 3 caught up', (s) => s.lag === 0, 60_000);
    const secondaryOffset = 3 * 1024 * 1024 + 5 * blockBytes;
    const site3Offset = volumeBytes - blockBytes;
    corrupt(d, 2, 1, secondaryOffset + 17);
    corrupt(d, 3, 0, site3Offset + blockBytes - 1);
    const found = await verify(d);
    expect(found.code, found.stdout).toBe(verifyDifferExit);
    expect(found.stdout).toContain(`site 2  DIFFERS  volume 1 offset ${secondaryOffset}`);
    expect(found.stdout).toContain(`site 3  DIFFERS  volume 0 offset ${site3Offset}`);
    expect(found.stdout.match(/DIFFERS/g)).toHaveLength(2);
    expect(found.stdout).toContain('threesite resync --site 2');
    expect(found.stdout).toContain('threesite resync --site 3');
    const shown = await d.threesite('status');
    expect(shown).toMatch(/last verify \d+ .*: differ, site 1 \(primary\)/);
    expect(shown).toMatch(/site 2 {2}u=\d+(\.\.\d+)? {2}2048 blocks compared, 1 differing/);
    const after = await d.status();
    expect(after.sites[1]?.changedBlocks).toBe(1);
    expect(after.sites[3]?.remote?.asyncPair).toBe('fullCopy');

    await d.threesite('resync', '--site', '2');
    await d.waitFor('the pair in sync', (s) => s.syncPair === 'inSync' && s.sites[1]?.changedBlocks === 0);
    await d.threesite('resync', '--site', '3');
    await d.waitFor('site 3 copying', (s) => s.asyncPair === 'copying' && s.lag === 0);
    const repaired = await verify(d);
    expect(repaired.code, repaired.stdout).toBe(0);
    expect(repaired.stdout).toMatch(/: equal, site 1 \(primary\) hashed 2048 blocks/);
    expect(repaired.stdout).not.toContain('DIFFERS');
  });
});
