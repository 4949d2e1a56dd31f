/**
 * On-disk corruption is never passed over in silence. One changed character in a site's state file (its
 * changed-block record) or one flipped bit in its journal's last entry after a clean shutdown: the site
 * process refuses to start from it, exit status 4 naming the file (before: the record hid a block from the
 * resync, or the entry was cut as a torn tail and its update number handed out again). The operator then
 * starts it with `--rebuild` (the damaged files moved aside), recovers and resyncs it, and the pair holds one
 * image again; so too for a replaced disk (an empty directory started with `--rebuild`).
 */
import type { ChildProcess } from 'node:child_process';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Deployment, run } from './deployment.ts';

let deployment: Deployment | undefined;
afterEach(async () => {
  await deployment?.stop();
  deployment = undefined;
});

/** SIGTERM to a site process (it closes its files: a clean shutdown); resolves when it is gone. */
async function stopCleanly(d: Deployment, site: 2): Promise<void> {
  const child = d.processes.get(site)!;
  const gone = new Promise<void>((done) => child.once('exit', () => done()));
  child.kill('SIGTERM');
  await gone;
  d.processes.delete(site);
}

/** The exit code of a process that must end by itself. */
function exitOf(child: ChildProcess): Promise<number | null> {
  return new Promise((done) => child.once('exit', (code) => done(code)));
}

/** Site 1 and 2 in sync holding a few writes; site 2 stopped cleanly. */
async function withSite2Stopped(): Promise<Deployment> {
  const d = await Deployment.create({ volumeBytes: 4 * 1024 * 1024, volumeCount: 1 });
  deployment = d;
  for (const site of [1, 2, 3] as const) d.start(site);
  await d.waitFor('the three sites connected', Deployment.allConnected);
  for (let k = 0; k < 4; k += 1) await run('qemu-io', ['-f', 'raw', d.nbdUri(1, 0), '-c', `write -P 0x${(0x31 + k).toString(16)} ${k * 64}k 64k`]);
  await stopCleanly(d, 2);
  return d;
}

/** Rebuilds site 2 and resyncs it from site 1: the pair back in sync with one image. */
async function rebuildAndResync(d: Deployment): Promise<void> {
  d.start(2, '--rebuild');
  await d.waitFor('site 2 answering, failed', (s) => s.sites[2] !== null && s.sites[2]?.up === false);
  expect(d.logText()).toMatch(/rebuilt .*site-2: state and journal moved to .*damaged-/);
  await d.threesite('recover', '--site', '2');
  await d.waitFor('site 2 resyncing', (s) => s.sites[2]?.mode === 'resyncing');
  await d.threesite('resync', '--site', '2');
  const synced = await d.waitFor('pair in sync', (s) => s.syncPair === 'inSync' && s.sites[2]?.up === true);
  expect(synced.sites[2]?.lastUpdateNumber).toBe(synced.sites[1]?.lastUpdateNumber);
  const digests = await d.status(true);
  expect(digests.sites[2]?.volumeDigest).toBe(digests.sites[1]?.volumeDigest);
}

describe('a damaged site directory', () => {
  it('one changed character in state.json: the site refuses to start (exit 4, the file named); --rebuild and a resync make the pair whole', async () => {
    const d = await withSite2Stopped();
    const file = join(d.dir, 'site-2', 'state.json');
    const text = readFileSync(file, 'utf8');
    const at = text.indexOf('"ackedAlone":') + '"ackedAlone":'.length;
    writeFileSync(file, `${text.slice(0, at)}${text[at] === '0' ? '1' : '0'}${text.slice(at + 1)}`);
    const refused = d.start(2);
    expect(await exitOf(refused)).toBe(4);
    expect(d.logText()).toMatch(/threesite: storage: state file .*site-2\/state.json: checksum/);
    await rebuildAndResync(d);
  });

  it('one flipped bit in the last journal entry after a clean shutdown: corruption, not a torn tail (exit 4); --rebuild, resync', async () => {
    const d = await withSite2Stopped();
    const journalDir = join(d.dir, 'site-2', 'journal');
    const segment = join(journalDir, readdirSync(journalDir).filter((name) => name.endsWith('.seg')).sort().at(-1)!);
    const bytes = readFileSync(segment);
    bytes[bytes.length - 100]! ^= 0x01;
    writeFileSync(segment, bytes);
    const refused = d.start(2);
    expect(await exitOf(refused)).toBe(4);
    expect(d.logText()).toMatch(/threesite: storage: journal .*after a clean shutdown at u=\d+/);
    await rebuildAndResync(d);
  });

  it('a replaced disk (an empty directory, its credentials kept): --rebuild starts it failed, not as a new site in sync; resync', async () => {
    const d = await withSite2Stopped();
    const siteDir = join(d.dir, 'site-2');
    for (const entry of readdirSync(siteDir)) if (entry !== 'tls') rmSync(join(siteDir, entry), { recursive: true, force: true });
    await rebuildAndResync(d);
  });
});
