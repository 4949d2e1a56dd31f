/**
 * Opening a site directory after a crash (impl/storage/site-open.ts): the journal is the write-ahead log, so a
 * volume write the crash tore is repaired from it before the site serves anything; and volumes are flushed
 * before the journal lets an entry go.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../impl/cluster/cluster.ts';
import { openSite, siteConfigOf, type SiteRecovery } from '../../impl/storage/site-open.ts';
import { protectSiteDir, siteDirMode, siteFileMode } from '../../impl/storage/file-modes.ts';
import { journalFloorRecordName, journalMetaName } from '../../impl/storage/journal-file.ts';
import { fileTraceSink } from '../../impl/cluster/trace.ts';
import { block, blockBytes, config } from './cluster-fixture.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-site-open-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

/** A file cluster that wrote `writes` blocks (each acknowledged on both sync members), left running. */
function clusterWith(name: string, writes: number): { cluster: Cluster; dir: string } {
  const dir = path.join(root, name);
  const cluster = Cluster.create(config({ storage: { kind: 'file', dir }, journal: { entriesMax: 16, bytesMax: 16 * (blockBytes + 4096) } }));
  for (let k = 0; k < writes; k += 1) cluster.hostWrite(1, 0, (k % 4) * blockBytes, block(0x10 + k));
  cluster.runUntilIdle();
  return { cluster, dir };
}

/** A copy of site `site`'s directory as a crash leaves it (the files as they are, nothing closed). */
function crashCopy(dir: string, site: 1 | 2 | 3, name: string): string {
  const copy = path.join(root, name);
  fs.cpSync(path.join(dir, `site-${site}`), copy, { recursive: true });
  return copy;
}

/** Tears the write of block `index` of volume 0: its second half is garbage, as a crash mid-write leaves it. */
function tear(siteDir: string, index: number): void {
  const fd = fs.openSync(path.join(siteDir, 'volume-0.img'), 'r+');
  fs.writeSync(fd, new Uint8Array(blockBytes / 2).fill(0xee), 0, blockBytes / 2, index * blockBytes + blockBytes / 2);
  fs.closeSync(fd);
}

function reopen(siteDir: string, site: 1 | 2 | 3): { recovery: SiteRecovery; read: (index: number) => Uint8Array; close: () => void } {
  const group = config({ journal: { entriesMax: 16, bytesMax: 16 * (blockBytes + 4096) } });
  let recovery: SiteRecovery | undefined;
  const system = openSite(siteConfigOf(site, { ...group, inFlightWritesMax: 256 }, false), group.journal, { kind: 'file', dir: siteDir, reopen: true }, (r) => (recovery = r));
  return {
    recovery: recovery!,
    read: (index) => system.volumes[0]!.read(index * blockBytes, blockBytes),
    close: () => {
      system.journal.close();
      for (const volume of system.volumes) volume.close();
    },
  };
}

describe('opening a site directory', () => {
  it('redoes the journal after a crash: a torn volume write is whole again before the site serves', () => {
    const { cluster, dir } = clusterWith('redo', 3);
    const copy = crashCopy(dir, 2, 'redo-site-2');
    cluster.close();
    tear(copy, 2);
    const site = reopen(copy, 2);
    expect(site.recovery.journal.cleanShutdown).toBe(false);
    expect(site.recovery.redoneEntries).toBe(3);
    expect(Buffer.from(site.read(2)).equals(Buffer.from(block(0x12)))).toBe(true);
    expect(Buffer.from(site.read(0)).equals(Buffer.from(block(0x10)))).toBe(true);
    site.close();
  });

  it('redoes nothing after a clean shutdown, nor at site 3 what it has not restored', () => {
    const { cluster, dir } = clusterWith('clean', 2);
    cluster.pullJournal();
    cluster.runUntilIdle();
    expect(cluster.observe().sites[3]).toMatchObject({ received: 2, restored: 0 });
    const crashed3 = crashCopy(dir, 3, 'clean-site-3');
    cluster.close();
    const clean = reopen(path.join(dir, 'site-1'), 1);
    expect(clean.recovery).toMatchObject({ redoneEntries: 0, journal: { cleanShutdown: true } });
    clean.close();
    const remote = reopen(crashed3, 3);
    expect(remote.recovery).toMatchObject({ redoneEntries: 0, journal: { cleanShutdown: false } });
    remote.close();
  });

  it('site 3 after a crash: restored where it was (never back to a stale saved floor), its restored entries redone', () => {
    // Writes u1..u3 to blocks 0, 1, 2.
    const { cluster, dir } = clusterWith('remote-floor', 3);
    const pull = (): void => {
      cluster.pullJournal();
      cluster.runUntilIdle();
    };
    // The first trim after the open saves the floor (2); the next one moves it in memory only (5).
    pull();
    cluster.restoreJournal();
    cluster.hostWrite(1, 0, 3 * blockBytes, block(0x13));
    cluster.hostWrite(1, 0, 0, block(0x14));
    pull();
    pull();
    cluster.restoreJournal();
    cluster.hostWrite(1, 0, blockBytes, block(0x15));
    pull();
    expect(cluster.observe().sites[3]).toMatchObject({ received: 6, restored: 5 });
    const crashed3 = crashCopy(dir, 3, 'remote-floor-site-3');
    cluster.close();
    // Entry 5 (block 0, 0x14) was restored just before the crash, and its volume write is torn.
    tear(crashed3, 0);
    const remote = reopen(crashed3, 3);
    expect(remote.recovery).toMatchObject({ redoneEntries: 3, floorRecordTrimmed: 3, journal: { cleanShutdown: false, floorRecorded: 5 } });
    expect(Buffer.from(remote.read(0)).equals(Buffer.from(block(0x14)))).toBe(true);
    // Entry 6 (block 1) is not restored: its old content (entry 2's) stays until site 3 restores it in order.
    expect(Buffer.from(remote.read(1)).equals(Buffer.from(block(0x11)))).toBe(true);
    remote.close();
    const system = openSite(siteConfigOf(3, { ...config(), inFlightWritesMax: 256 }, false), config().journal, { kind: 'file', dir: crashed3, reopen: true });
    expect([system.restored, system.received]).toEqual([5, 6]);
    system.journal.close();
    for (const volume of system.volumes) volume.close();
  });
});

/** Every entry under `dir` (itself included) with its permission bits, by path relative to `dir`. */
function modesUnder(dir: string): Map<string, number> {
  const modes = new Map<string, number>([['.', fs.statSync(dir).mode & 0o777]]);
  for (const name of fs.readdirSync(dir, { recursive: true }) as string[]) modes.set(name, fs.statSync(path.join(dir, name)).mode & 0o777);
  return modes;
}

describe('who may read a site directory: its owner alone', () => {
  it('creates every file a site writes 0600 and its directories 0700', () => {
    const { cluster, dir } = clusterWith('modes', 3);
    cluster.pullJournal();
    cluster.runUntilIdle();
    cluster.restoreJournal();
    cluster.close();
    for (const site of [1, 2, 3] as const) {
      const modes = modesUnder(path.join(dir, `site-${site}`));
      // What a site writes: volumes, a journal segment, its metadata and floor record, the state file.
      for (const name of ['volume-0.img', 'volume-1.img', 'state.json', path.join('journal', journalMetaName), path.join('journal', journalFloorRecordName)]) {
        expect(modes.has(name), `site ${site} ${name}`).toBe(true);
      }
      expect([...modes.keys()].some((name) => name.endsWith('.seg')), `site ${site} has a journal segment`).toBe(true);
      for (const [name, mode] of modes) {
        const directory = fs.statSync(path.join(dir, `site-${site}`, name)).isDirectory();
        expect(mode.toString(8), `site ${site} ${name}`).toBe((directory ? siteDirMode : siteFileMode).toString(8));
      }
    }
  });

  it('writes trace files 0600', () => {
    const file = path.join(root, 'modes.ndjson');
    const { sink, close } = fileTraceSink(file);
    sink('{}');
    close();
    expect((fs.statSync(file).mode & 0o777).toString(8)).toBe('600');
  });

  it('tightens a site directory others may enter, returning the mode it found (serve logs it); leaves a tight one alone', () => {
    const dir = path.join(root, 'loose');
    fs.mkdirSync(dir, { mode: 0o755 });
    fs.chmodSync(dir, 0o755);
    expect(protectSiteDir(dir)).toBe(0o755);
    expect((fs.statSync(dir).mode & 0o777).toString(8)).toBe('700');
    expect(protectSiteDir(dir)).toBeNull();
    const fresh = path.join(root, 'fresh', 'site-1');
    expect(protectSiteDir(fresh)).toBeNull();
    expect((fs.statSync(fresh).mode & 0o777).toString(8)).toBe('700');
  });
});
