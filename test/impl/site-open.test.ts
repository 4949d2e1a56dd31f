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

  it('redoes nothing after a clean shutdown, and never at site 3 (its journal is what it has not restored)', () => {
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
});
