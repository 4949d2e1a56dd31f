/**
 * A site process killed between appending entries to its journal and writing their trace records (nemesis
 * schedule 4112160065: site 1 journaled u=97, was killed before its `journalAppend` line, and came back
 * primary holding u=97 that no log named): at its restart, the new log names the entries its previous logs
 * lack, first, so that the validator sees them as any entry a crash left.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { MemoryJournal } from '../../impl/core/journal.ts';
import { StorageSystem, type SiteConfig } from '../../impl/core/storage-system.ts';
import { MemoryVolume } from '../../impl/core/volume.ts';
import { traceConfigOf } from '../../impl/cluster/trace.ts';
import { lastLoggedJournalNumber, previousLogChunkBytes, SiteTrace } from '../../impl/site/site-trace.ts';

const blockBytes = 4096;
const volumeBytes = 8 * blockBytes;
const config = traceConfigOf({ volumeCount: 1, volumeBytes, blockBytes, journal: { entriesMax: 64, bytesMax: 1 << 20 }, pullBatchEntriesMax: 8, fencePolicy: 'keepWriting' });

let dir = '';
afterEach(() => {
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
  dir = '';
});

/** Site 1, primary with its pair suspended, that has journaled `writes` host writes alone. */
function primaryWith(writes: number): StorageSystem {
  const siteConfig: SiteConfig = { id: 1, volumeCount: 1, volumeBytes, blockBytes, fencePolicy: 'keepWriting', inFlightWritesMax: 16, flushEachWrite: false };
  const site = new StorageSystem(siteConfig, [new MemoryVolume(volumeBytes, blockBytes)], new MemoryJournal({ entriesMax: 64, bytesMax: 1 << 20 }), null, () => undefined);
  site.setSyncPair('suspended');
  for (let k = 1; k <= writes; k += 1) site.hostWrite(k, 0, (k % 8) * blockBytes, new Uint8Array(blockBytes).fill(k));
  expect(site.journal.last).toBe(writes);
  return site;
}

function records(file: string): { kind?: string; site?: number; updateNumber?: number }[] {
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter((line) => line.length > 0)
    .map((line) => JSON.parse(line) as { kind?: string });
}

function writeLog(name: string, lines: object[], torn = ''): void {
  fs.writeFileSync(path.join(dir, name), lines.map((line) => JSON.stringify(line)).join('\n') + '\n' + torn);
}

describe("a restarted site's log names the journal entries its previous log lacks", () => {
  it('writes journalAppend records for the entries past the last one logged, before anything else', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-site-trace-'));
    // The previous process logged entries up to u=2 and was killed mid-line (a torn last line).
    writeLog('site-1-1000-11.ndjson', [{ trace: 'threesite', version: 1 }, { seq: 1, kind: 'journalAppend', site: 1, updateNumber: 1 }, { seq: 2, kind: 'journalAppend', site: 1, updateNumber: 2 }], '{"seq":3,"kind":"journalApp');
    // Another site's log in the same directory does not count.
    writeLog('site-2-2000-12.ndjson', [{ seq: 1, kind: 'journalAppend', site: 2, updateNumber: 9 }]);
    const site = primaryWith(4);
    const trace = SiteTrace.open(dir, site, config);
    trace.close();
    const appended = records(trace.file).filter((r) => r.kind === 'journalAppend');
    expect(appended.map((r) => r.updateNumber)).toEqual([3, 4]);
    expect(appended.every((r) => r.site === 1)).toBe(true);
    // They come right after the header: before any action of the new process.
    expect(records(trace.file)[1]?.kind).toBe('journalAppend');
  });

  it('writes nothing when the previous log names every entry, or at a first start', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-site-trace-'));
    const first = SiteTrace.open(dir, primaryWith(3), config);
    first.close();
    expect(records(first.file).filter((r) => r.kind === 'journalAppend')).toEqual([]);
    writeLog('site-1-1-1.ndjson', [{ seq: 1, kind: 'journalAppend', site: 1, updateNumber: 3 }]);
    fs.rmSync(first.file);
    const again = SiteTrace.open(dir, primaryWith(3), config);
    again.close();
    expect(records(again.file).filter((r) => r.kind === 'journalAppend')).toEqual([]);
  });

  it('finds the last journal record across chunk boundaries and older logs; a later journalReset counts', () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-site-trace-'));
    const own = path.join(dir, 'site-3-9000-1.ndjson');
    expect(lastLoggedJournalNumber(dir, 3, own)).toBeNull();
    // The older log holds the last journal record; the newer one, longer than a chunk, holds none.
    writeLog('site-3-100-5.ndjson', [{ seq: 1, kind: 'journalAppend', site: 3, updateNumber: 40 }, { seq: 2, kind: 'journalReset', site: 3, last: 57 }, { seq: 3, kind: 'restore', site: 3, updateNumber: 41 }]);
    const padding = 'x'.repeat(1000);
    writeLog('site-3-200-6.ndjson', Array.from({ length: Math.ceil((2.5 * previousLogChunkBytes) / 1000) }, (_, seq) => ({ seq, action: { type: 'PULL_JOURNAL' }, padding })));
    expect(lastLoggedJournalNumber(dir, 3, own)).toBe(57);
    // A record that straddles a chunk boundary in the newest log is read whole.
    const line = JSON.stringify({ seq: 1, kind: 'journalAppend', site: 3, updateNumber: 77 });
    const head = 'y'.repeat(previousLogChunkBytes - Math.floor(line.length / 2));
    fs.writeFileSync(path.join(dir, 'site-3-300-7.ndjson'), `${JSON.stringify({ pad: head })}\n${line}\n${'z'.repeat(previousLogChunkBytes - Math.ceil(line.length / 2) - 20)}\n`);
    expect(lastLoggedJournalNumber(dir, 3, own)).toBe(77);
    // Logs with no journal record at all: 0 (every entry the journal holds is unlogged).
    fs.rmSync(path.join(dir, 'site-3-300-7.ndjson'));
    fs.rmSync(path.join(dir, 'site-3-100-5.ndjson'));
    expect(lastLoggedJournalNumber(dir, 3, own)).toBe(0);
  });
});
