/**
 * The file journal: the shared journal contract (with close and reopen inside the property, and small
 * segments so that rolling and whole-segment trims happen), persistence of the trim point and reset base,
 * and crash safety: every torn or corrupt tail is recovered, every defect in the middle is refused.
 */

import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import {
  CorruptJournalError,
  encodeFloorRecord,
  FileJournal,
  floorRecordBytes,
  journalFloorRecordName,
  journalMetaName,
  readFloorRecord,
  tailCacheEntryBytesMax,
  type RecoveryReport,
} from '../../impl/storage/journal-file.ts';
import { CorruptEntryError, entryBytes, JournalLimitsError, type Journal, type JournalLimits } from '../../impl/core/journal.ts';
import { DeviceError } from '../../impl/core/errors.ts';
import { journalContract, makeEntry, plain } from './journal-contract.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-journal-'));
let dirs = 0;
function freshDir(): string {
  dirs += 1;
  return path.join(root, `journal-${dirs}`);
}

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

const roomy: JournalLimits = { entriesMax: 1000, bytesMax: 10_000_000 };

function segments(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((name) => name.endsWith('.seg'))
    .sort();
}

function open(dir: string, limits: JournalLimits = roomy, segmentBytesMax?: number): { journal: FileJournal; recovery: RecoveryReport } {
  return FileJournal.open(dir, limits, segmentBytesMax === undefined ? {} : { segmentBytesMax });
}

/**
 * Leaves `journal.meta` as a crash leaves it: the journal was open (no clean shutdown recorded), so a damaged
 * tail is taken for a torn write and cut. The damage tests write their damage into a closed journal.
 */
function markUnclean(dir: string): void {
  const file = path.join(dir, journalMetaName);
  fs.writeFileSync(file, JSON.stringify({ ...JSON.parse(fs.readFileSync(file, 'utf8')), cleanLast: null }));
}

function openError(dir: string, limits: JournalLimits = roomy): unknown {
  try {
    open(dir, limits).journal.close();
  } catch (error) {
    return error;
  }
  return undefined;
}

describe('FileJournal', () => {
  journalContract({
    create: (limits, last) => {
      // Small segments and background fsyncs every 100 bytes: rolls and background syncs happen all the time.
      const { journal, recovery } = FileJournal.open(freshDir(), limits, { segmentBytesMax: 200, backgroundSyncBytes: 100, tailCacheBytes: 300 });
      expect(recovery).toEqual({ entriesRecovered: 0, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 0, cleanShutdown: true, floorRecorded: null });
      if (last !== undefined) journal.reset(last);
      return journal;
    },
    reopen: (journal: Journal) => {
      const file = journal as FileJournal;
      file.close();
      const again = FileJournal.open(file.dir, file.limits, { segmentBytesMax: file.segmentBytesMax, backgroundSyncBytes: 100, tailCacheBytes: 300 });
      expect(again.recovery.discardedReason).toBeNull();
      expect(again.recovery.entriesRecovered).toBe(again.journal.entries);
      return again.journal;
    },
  });

  it('calls beforeDurableTrim before a trim or a reset is made durable, while journal.meta still holds the old floor', () => {
    const dir = freshDir();
    const size = entryBytes(makeEntry(1, 64));
    const seen: number[] = [];
    const floorNow = (): number => JSON.parse(fs.readFileSync(path.join(dir, journalMetaName), 'utf8')).floor;
    const { journal } = FileJournal.open(dir, roomy, { segmentBytesMax: 3 * size, beforeDurableTrim: () => seen.push(floorNow()) });
    for (let u = 1; u <= 10; u += 1) journal.append(makeEntry(u, 64));
    journal.trimThrough(1); // the first trim after an open clears the exact floor: durable
    expect(seen).toEqual([0]);
    journal.trimThrough(2); // inside the first segment: nothing durable, nothing flushed
    expect(seen).toEqual([0]);
    journal.trimThrough(7); // two segments go
    expect(seen).toEqual([0, 1]);
    journal.reset(20);
    expect(seen).toEqual([0, 1, 7]);
    expect(floorNow()).toBe(20);
    journal.close();
  });

  it('rolls segments at segmentBytesMax and trims by deleting whole segments', () => {
    const dir = freshDir();
    const size = entryBytes(makeEntry(1, 64));
    const { journal } = open(dir, roomy, 3 * size);
    for (let u = 1; u <= 10; u += 1) journal.append(makeEntry(u, 64));
    expect(segments(dir)).toEqual(['journal-000001.seg', 'journal-000002.seg', 'journal-000003.seg', 'journal-000004.seg']);
    expect(fs.statSync(path.join(dir, 'journal-000001.seg')).size).toBe(3 * size);
    expect(journal.trimThrough(7)).toBe(7);
    expect(segments(dir)).toEqual(['journal-000003.seg', 'journal-000004.seg']);
    expect(JSON.parse(fs.readFileSync(path.join(dir, journalMetaName), 'utf8'))).toMatchObject({ floor: 7, firstSegment: 3 });
    expect(plain(journal.readAfter(7, 10))).toEqual(plain([8, 9, 10].map((u) => makeEntry(u, 64))));
    journal.close();
    const { journal: again, recovery } = open(dir, roomy, 3 * size);
    expect(recovery).toEqual({ entriesRecovered: 3, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 0, cleanShutdown: true, floorRecorded: null });
    expect([again.first, again.last, again.entries, again.bytes]).toEqual([8, 10, 3, 3 * size]);
    expect(plain(again.readAfter(7, 10))).toEqual(plain([8, 9, 10].map((u) => makeEntry(u, 64))));
    again.append(makeEntry(11, 64));
    expect(segments(dir)).toEqual(['journal-000003.seg', 'journal-000004.seg']);
    again.append(makeEntry(12, 64));
    expect(segments(dir).at(-1)).toBe('journal-000004.seg');
    again.append(makeEntry(13, 64));
    expect(segments(dir).at(-1)).toBe('journal-000005.seg');
    again.close();
  });

  it('puts an entry larger than segmentBytesMax alone in its own segment', () => {
    const dir = freshDir();
    const { journal } = open(dir, roomy, 100);
    journal.append(makeEntry(1, 10));
    journal.append(makeEntry(2, 500));
    journal.append(makeEntry(3, 10));
    expect(segments(dir)).toHaveLength(3);
    journal.close();
    const { journal: again } = open(dir, roomy, 100);
    expect(plain(again.readAfter(0, 5))).toEqual(plain([makeEntry(1, 10), makeEntry(2, 500), makeEntry(3, 10)]));
    again.close();
  });

  it('keeps the reset base and a trim beyond last across reopen, with no segment left', () => {
    const dir = freshDir();
    const { journal } = open(dir);
    for (let u = 1; u <= 4; u += 1) journal.append(makeEntry(u));
    journal.reset(50);
    expect(segments(dir)).toEqual([]);
    journal.close();
    const { journal: again } = open(dir);
    expect([again.first, again.last, again.entries]).toEqual([51, 50, 0]);
    again.append(makeEntry(51));
    again.append(makeEntry(52));
    expect(again.trimThrough(80)).toBe(2);
    // The segment appends go to is kept while wholly trimmed; a clean reopen deletes it.
    expect(segments(dir)).toEqual(['journal-000002.seg']);
    again.close();
    const { journal: third } = open(dir);
    expect([third.first, third.last, third.entries]).toEqual([53, 52, 0]);
    third.append(makeEntry(53));
    expect(segments(dir)).toEqual(['journal-000003.seg']);
    third.close();
  });

  it('recovers a partly trimmed segment from its trim point', () => {
    const dir = freshDir();
    const { journal } = open(dir);
    for (let u = 1; u <= 6; u += 1) journal.append(makeEntry(u, 30));
    journal.trimThrough(4);
    journal.close();
    const { journal: again, recovery } = open(dir);
    expect(recovery.entriesRecovered).toBe(2);
    expect([again.first, again.last, again.bytes]).toEqual([5, 6, 2 * entryBytes(makeEntry(5, 30))]);
    again.close();
  });

  it('reads recent entries from its tail cache (verified) and older ones from the segments, the same entries either way', () => {
    const dir = freshDir();
    const size = entryBytes(makeEntry(1, 100));
    const { journal } = FileJournal.open(dir, roomy, { segmentBytesMax: 4 * size, tailCacheBytes: 3 * size });
    journal.append(makeEntry(1, 100));
    journal.appendAll([2, 3, 4, 5, 6].map((u) => makeEntry(u, 100)));
    const expected = [1, 2, 3, 4, 5, 6].map((u) => makeEntry(u, 100));
    // 4..6 are cached: a byte changed in the file is not seen there, and is seen by a read of 1..6.
    const file = path.join(dir, 'journal-000002.seg');
    const bytes = fs.readFileSync(file);
    bytes[size + 40]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    expect(plain(journal.readAfter(3, 3))).toEqual(plain(expected.slice(3)));
    expect(() => journal.readAfter(0, 6)).toThrow(CorruptEntryError);
    bytes[size + 40]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    expect(plain(journal.readAfter(0, 6))).toEqual(plain(expected));
    journal.trimThrough(5);
    expect(plain(journal.readAfter(5, 3))).toEqual(plain(expected.slice(5)));
    journal.reset(10);
    journal.append(makeEntry(11, 100));
    expect(plain(journal.readAfter(10, 3))).toEqual(plain([makeEntry(11, 100)]));
    journal.close();
  });

  it('keeps no entry larger than tailCacheEntryBytesMax in its tail cache: one empties it, and reads go to the segments', () => {
    const dir = freshDir();
    const { journal } = FileJournal.open(dir, roomy);
    journal.append(makeEntry(1, 100));
    journal.append(makeEntry(2, tailCacheEntryBytesMax));
    journal.append(makeEntry(3, 100));
    const file = path.join(dir, 'journal-000001.seg');
    const bytes = fs.readFileSync(file);
    // Entry 1 left the cache with the large entry 2: a byte changed in the file is seen by a read of it.
    bytes[40]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    expect(() => journal.readAfter(0, 1)).toThrow(CorruptEntryError);
    expect(plain(journal.readAfter(2, 1))).toEqual(plain([makeEntry(3, 100)]));
    bytes[40]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    expect(plain(journal.readAfter(0, 3))).toEqual(plain([makeEntry(1, 100), makeEntry(2, tailCacheEntryBytesMax), makeEntry(3, 100)]));
    journal.close();
  });

  it('keeps the last segment when a trim empties the journal, and appends on into it', () => {
    const dir = freshDir();
    const { journal } = open(dir);
    for (let u = 1; u <= 3; u += 1) journal.append(makeEntry(u, 30));
    expect(journal.trimThrough(3)).toBe(3);
    expect([journal.first, journal.last, journal.entries, journal.bytes]).toEqual([4, 3, 0, 0]);
    expect(segments(dir)).toEqual(['journal-000001.seg']);
    journal.append(makeEntry(4, 30));
    journal.append(makeEntry(5, 30));
    expect(segments(dir)).toEqual(['journal-000001.seg']);
    expect(plain(journal.readAfter(3, 5))).toEqual(plain([makeEntry(4, 30), makeEntry(5, 30)]));
    expect(journal.trimThrough(4)).toBe(1);
    journal.close();
    const { journal: again, recovery } = open(dir);
    expect(recovery).toEqual({ entriesRecovered: 1, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 0, cleanShutdown: true, floorRecorded: null });
    expect([again.first, again.last, again.bytes]).toEqual([5, 5, entryBytes(makeEntry(5, 30))]);
    again.close();
  });

  describe('a floor saved lazily (a crash between trims)', () => {
    /** The journal's files as a crash would leave them: a copy taken while it is open, after a flush. */
    function crashCopy(journal: FileJournal): string {
      journal.flush();
      const copy = freshDir();
      fs.cpSync(journal.dir, copy, { recursive: true });
      return copy;
    }

    function savedMeta(dir: string): { floor: number; firstSegment: number; floorExact: boolean } {
      return JSON.parse(fs.readFileSync(path.join(dir, journalMetaName), 'utf8'));
    }

    it('a trim inside the segments in use rewrites the metadata once per open, then not until a segment goes', () => {
      const dir = freshDir();
      const { journal } = open(dir);
      expect(savedMeta(dir)).toMatchObject({ floor: 0, floorExact: true });
      for (let u = 1; u <= 8; u += 1) journal.append(makeEntry(u, 30));
      journal.trimThrough(2);
      expect(savedMeta(dir)).toMatchObject({ floor: 2, firstSegment: 1, floorExact: false });
      journal.trimThrough(5);
      expect(savedMeta(dir)).toMatchObject({ floor: 2, floorExact: false });
      journal.close();
      expect(savedMeta(dir)).toMatchObject({ floor: 5, firstSegment: 1, floorExact: true });
    });

    it('recovers from a stale floor the trimmed entries that are still in the segment, in order', () => {
      const { journal } = open(freshDir());
      for (let u = 1; u <= 8; u += 1) journal.append(makeEntry(u, 30));
      journal.trimThrough(2);
      journal.trimThrough(6);
      const copy = crashCopy(journal);
      journal.close();
      const { journal: again, recovery } = open(copy);
      // The floor record says the real floor (6); the journal still starts at the saved one for its caller to redo.
      expect(recovery).toEqual({ entriesRecovered: 6, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 0, cleanShutdown: false, floorRecorded: 6 });
      // The saved floor is a lower bound of the real one (6): entries 3..6 come back, none is lost.
      expect([again.first, again.last]).toEqual([3, 8]);
      expect(plain(again.readAfter(2, 10))).toEqual(plain([3, 4, 5, 6, 7, 8].map((u) => makeEntry(u, 30))));
      again.close();
    });

    it('keeps the real floor in its floor record at every trim and reset, and gives it at open only after a crash', () => {
      const { journal } = open(freshDir());
      for (let u = 1; u <= 8; u += 1) journal.append(makeEntry(u, 30));
      journal.trimThrough(2);
      expect(readFloorRecord(journal.dir)).toBe(2);
      journal.trimThrough(5);
      // The metadata still says 2 (one rewrite per open): the record says 5.
      expect(savedMeta(journal.dir)).toMatchObject({ floor: 2 });
      expect(readFloorRecord(journal.dir)).toBe(5);
      const crashed = crashCopy(journal);
      journal.reset(3);
      expect(readFloorRecord(journal.dir)).toBe(3);
      journal.append(makeEntry(4, 30));
      journal.append(makeEntry(5, 30));
      const afterReset = crashCopy(journal);
      journal.close();
      const recoveredOf = (dir: string): RecoveryReport => {
        const { journal: again, recovery } = open(dir);
        again.close();
        return recovery;
      };
      expect(recoveredOf(crashed).floorRecorded).toBe(5);
      // A reset's record is the reset floor, not an older and higher one.
      expect(recoveredOf(afterReset).floorRecorded).toBe(null);
      // After a clean close the saved floor is exact: no record is given.
      expect(recoveredOf(journal.dir)).toMatchObject({ cleanShutdown: true, floorRecorded: null });
    });

    it('ignores a floor record that does not check, or that is at most the saved floor or past the last entry', () => {
      const { journal } = open(freshDir());
      for (let u = 1; u <= 8; u += 1) journal.append(makeEntry(u, 30));
      journal.trimThrough(2);
      journal.trimThrough(6);
      const base = crashCopy(journal);
      journal.close();
      const variant = (bytes: Uint8Array): number | null => {
        const dir = freshDir();
        fs.cpSync(base, dir, { recursive: true });
        fs.writeFileSync(path.join(dir, journalFloorRecordName), bytes);
        const { journal: again, recovery } = open(dir);
        again.close();
        return recovery.floorRecorded;
      };
      expect(variant(encodeFloorRecord(6))).toBe(6);
      expect(variant(encodeFloorRecord(8))).toBe(8);
      // At most the saved floor (2), past the last entry (8): not a floor this journal had.
      expect(variant(encodeFloorRecord(2))).toBe(null);
      expect(variant(encodeFloorRecord(9))).toBe(null);
      // Torn or damaged (a power loss): the saved floor stays the lower bound.
      const flipped = encodeFloorRecord(6);
      flipped[5] = (flipped[5] as number) ^ 1;
      expect(variant(flipped)).toBe(null);
      expect(variant(encodeFloorRecord(6).subarray(0, floorRecordBytes - 1))).toBe(null);
      expect(variant(new Uint8Array(0))).toBe(null);
      expect(variant(new Uint8Array([...encodeFloorRecord(6), 0]))).toBe(null);
    });

    it('raises a stale floor until the recovered entries fit the limits, oldest first', () => {
      const size = entryBytes(makeEntry(1, 30));
      const limits: JournalLimits = { entriesMax: 4, bytesMax: 10_000 };
      const { journal } = open(freshDir(), limits, 100 * size);
      for (let u = 1; u <= 4; u += 1) journal.append(makeEntry(u, 30));
      journal.trimThrough(2);
      journal.append(makeEntry(5, 30));
      journal.append(makeEntry(6, 30));
      journal.trimThrough(4);
      journal.append(makeEntry(7, 30));
      journal.append(makeEntry(8, 30));
      const copy = crashCopy(journal);
      journal.close();
      const { journal: again, recovery } = open(copy, limits, 100 * size);
      expect(recovery).toEqual({ entriesRecovered: 4, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 2, cleanShutdown: false, floorRecorded: null });
      expect([again.first, again.last, again.entries, again.bytes]).toEqual([5, 8, 4, 4 * size]);
      expect(savedMeta(copy)).toMatchObject({ floor: 4, floorExact: false });
      again.close();
      // By bytes too, deleting the segments the raised floor leaves behind.
      const bytesLimits: JournalLimits = { entriesMax: 100, bytesMax: 2 * size };
      const small = open(freshDir(), bytesLimits, 3 * size).journal;
      small.append(makeEntry(1, 30));
      small.append(makeEntry(2, 30));
      small.trimThrough(1);
      small.append(makeEntry(3, 30));
      // Drained while its segment is the last: kept, no metadata rewrite; the next append rolls.
      small.trimThrough(3);
      small.append(makeEntry(4, 30));
      small.append(makeEntry(5, 30));
      expect([small.first, small.last]).toEqual([4, 5]);
      expect(segments(small.dir)).toEqual(['journal-000001.seg', 'journal-000002.seg']);
      const copyBytes = crashCopy(small);
      small.close();
      const reopened = open(copyBytes, bytesLimits, 3 * size);
      expect(reopened.recovery.floorRaisedEntries).toBe(2);
      expect([reopened.journal.first, reopened.journal.last, reopened.journal.bytes]).toEqual([4, 5, 2 * size]);
      expect(segments(copyBytes)).toEqual(['journal-000002.seg']);
      expect(savedMeta(copyBytes)).toMatchObject({ floor: 3, firstSegment: 2, floorExact: false });
      reopened.journal.close();
      expect(open(copyBytes, bytesLimits, 3 * size).journal.first).toBe(4);
    });

    it('still refuses after a clean close when the limits were lowered (the floor is exact)', () => {
      const dir = freshDir();
      const { journal } = open(dir);
      for (let u = 1; u <= 6; u += 1) journal.append(makeEntry(u));
      journal.trimThrough(1);
      journal.close();
      expect(openError(dir, { entriesMax: 4, bytesMax: 10_000 })).toBeInstanceOf(JournalLimitsError);
      expect(openError(dir, { entriesMax: 5, bytesMax: 10_000 })).toBeUndefined();
    });

    it('reads a version-1 metadata file (every trim wrote it) as an exact floor', () => {
      const dir = freshDir();
      const { journal } = open(dir);
      for (let u = 1; u <= 6; u += 1) journal.append(makeEntry(u));
      journal.close();
      fs.writeFileSync(path.join(dir, journalMetaName), '{"format":"threesite-journal-meta","version":1,"floor":1,"firstSegment":1}');
      expect(openError(dir, { entriesMax: 4, bytesMax: 10_000 })).toBeInstanceOf(JournalLimitsError);
      const { journal: again } = open(dir);
      expect([again.first, again.last]).toEqual([2, 6]);
      again.close();
    });
  });

  it('finishes an interrupted trim or reset: segments below firstSegment and a temporary metadata file are removed', () => {
    const dir = freshDir();
    const size = entryBytes(makeEntry(1, 20));
    const { journal } = open(dir, roomy, 2 * size);
    for (let u = 1; u <= 6; u += 1) journal.append(makeEntry(u, 20));
    const first = fs.readFileSync(path.join(dir, 'journal-000001.seg'));
    journal.trimThrough(4);
    journal.close();
    fs.writeFileSync(path.join(dir, 'journal-000001.seg'), first);
    fs.writeFileSync(path.join(dir, 'journal.meta.tmp'), '{"half');
    const { journal: again } = open(dir, roomy, 2 * size);
    expect(segments(dir)).toEqual(['journal-000003.seg']);
    expect(fs.existsSync(path.join(dir, 'journal.meta.tmp'))).toBe(false);
    expect([again.first, again.last]).toEqual([5, 6]);
    again.close();
  });

  it('removes a trailing empty segment (a crash right after a roll)', () => {
    const dir = freshDir();
    const { journal } = open(dir);
    for (let u = 1; u <= 3; u += 1) journal.append(makeEntry(u));
    journal.close();
    fs.writeFileSync(path.join(dir, 'journal-000002.seg'), new Uint8Array(0));
    const { journal: again, recovery } = open(dir);
    expect(recovery).toEqual({ entriesRecovered: 3, discardedBytes: 0, discardedReason: null, floorRaisedEntries: 0, cleanShutdown: true, floorRecorded: null });
    expect(segments(dir)).toEqual(['journal-000001.seg']);
    again.append(makeEntry(4));
    again.close();
  });

  it('refuses to reopen with limits the recovered entries exceed', () => {
    const dir = freshDir();
    const { journal } = open(dir);
    for (let u = 1; u <= 5; u += 1) journal.append(makeEntry(u));
    journal.close();
    expect(openError(dir, { entriesMax: 4, bytesMax: 10_000 })).toBeInstanceOf(JournalLimitsError);
    expect(openError(dir, { entriesMax: 5, bytesMax: 5 * entryBytes(makeEntry(1)) - 1 })).toBeInstanceOf(JournalLimitsError);
    expect(openError(dir, { entriesMax: 5, bytesMax: 5 * entryBytes(makeEntry(1)) })).toBeUndefined();
  });

  it('refuses missing or damaged metadata', () => {
    const dir = freshDir();
    const { journal } = open(dir);
    journal.append(makeEntry(1));
    journal.close();
    const meta = path.join(dir, journalMetaName);
    const saved = fs.readFileSync(meta);
    fs.writeFileSync(meta, '{"format":"threesite-journal-meta","version":1,"floor":-1,"firstSegment":1}');
    expect(openError(dir)).toMatchObject({ reason: 'metadata', segment: journalMetaName });
    fs.writeFileSync(meta, 'not json');
    expect(openError(dir)).toMatchObject({ reason: 'metadata' });
    fs.unlinkSync(meta);
    expect(openError(dir)).toBeInstanceOf(CorruptJournalError);
    fs.writeFileSync(meta, saved);
    expect(openError(dir)).toBeUndefined();
  });

  it('refuses a gap in update numbers: a missing middle or first segment', () => {
    const size = entryBytes(makeEntry(1, 20));
    const build = (): string => {
      const dir = freshDir();
      const { journal } = open(dir, roomy, 2 * size);
      for (let u = 1; u <= 6; u += 1) journal.append(makeEntry(u, 20));
      journal.close();
      return dir;
    };
    const middle = build();
    fs.unlinkSync(path.join(middle, 'journal-000002.seg'));
    expect(openError(middle)).toMatchObject({ reason: 'gap', segment: 'journal-000003.seg', offset: 0 });
    const head = build();
    fs.unlinkSync(path.join(head, 'journal-000001.seg'));
    expect(openError(head)).toMatchObject({ reason: 'gap', segment: 'journal-000002.seg' });
  });

  it('verifies entries read from disk: a byte changed under an open journal is CorruptEntryError', () => {
    const dir = freshDir();
    // Without the tail cache, so that every read goes to the segment.
    const { journal } = FileJournal.open(dir, roomy, { tailCacheBytes: 0 });
    for (let u = 1; u <= 3; u += 1) journal.append(makeEntry(u, 50));
    journal.flush();
    const file = path.join(dir, 'journal-000001.seg');
    const bytes = fs.readFileSync(file);
    bytes[entryBytes(makeEntry(1, 50)) + 40]! ^= 0x01;
    fs.writeFileSync(file, bytes);
    expect(plain(journal.readAfter(0, 1))).toEqual(plain([makeEntry(1, 50)]));
    expect(() => journal.readAfter(0, 3)).toThrow(CorruptEntryError);
    expect(() => journal.readAfter(1, 1)).toThrow(CorruptEntryError);
    expect(plain(journal.readAfter(2, 1))).toEqual(plain([makeEntry(3, 50)]));
    journal.close();
  });

  describe('crash safety', () => {
    const dataBytes = 200;
    const count = 5;
    const size = entryBytes(makeEntry(1, dataBytes));
    const lastStart = (count - 1) * size;

    /** A closed journal of `count` entries in one segment; returns its directory and segment bytes. */
    function build(entryData = dataBytes, segmentBytesMax?: number): { dir: string; file: string; bytes: Buffer } {
      const dir = freshDir();
      const { journal } = open(dir, roomy, segmentBytesMax);
      for (let u = 1; u <= count; u += 1) journal.append(makeEntry(u, entryData));
      journal.close();
      const names = segments(dir);
      const file = path.join(dir, names.at(-1)!);
      return { dir, file, bytes: fs.readFileSync(file) };
    }

    function expectRecovered(dir: string, entries: number, report: RecoveryReport, entryData = dataBytes): void {
      markUnclean(dir);
      const { journal, recovery } = open(dir);
      expect(recovery).toEqual(report);
      expect([journal.first, journal.last, journal.entries]).toEqual([1, entries, entries]);
      const expected = [...Array(entries).keys()].map((k) => makeEntry(k + 1, entryData));
      expect(plain(journal.readAfter(0, count))).toEqual(plain(expected));
      journal.close();
    }

    it('recovers exactly the complete entries when the last entry is torn at every byte offset', () => {
      const { dir, file, bytes } = build();
      expect(bytes.length).toBe(count * size);
      for (let cut = lastStart; cut < bytes.length; cut += 1) {
        fs.writeFileSync(file, bytes.subarray(0, cut));
        const discarded = cut - lastStart;
        expectRecovered(dir, count - 1, {
          entriesRecovered: count - 1,
          discardedBytes: discarded,
          discardedReason: discarded === 0 ? null : 'torn',
          floorRaisedEntries: 0,
          cleanShutdown: false,
          floorRecorded: null,
        });
        expect(fs.statSync(file).size).toBe(lastStart);
      }
      fs.writeFileSync(file, bytes);
      markUnclean(dir);
      const { journal } = open(dir);
      expect(journal.last).toBe(count);
      journal.close();
    });

    it('appends after a recovered torn tail, over the truncated bytes', () => {
      const { dir, file, bytes } = build();
      fs.writeFileSync(file, bytes.subarray(0, lastStart + 17));
      markUnclean(dir);
      const { journal } = open(dir);
      journal.append(makeEntry(count, dataBytes));
      journal.append(makeEntry(count + 1, dataBytes));
      journal.close();
      const { journal: again, recovery } = open(dir);
      expect(recovery.discardedReason).toBeNull();
      expect(again.last).toBe(count + 1);
      expect(plain(again.readAfter(count - 1, 2))).toEqual(plain([makeEntry(count, dataBytes), makeEntry(count + 1, dataBytes)]));
      again.close();
    });

    it('discards the last entry as corrupt when any one of its bytes is flipped', () => {
      const { dir, file, bytes } = build();
      for (let at = lastStart; at < bytes.length; at += 1) {
        const damaged = Buffer.from(bytes);
        damaged[at]! ^= 0x5a;
        fs.writeFileSync(file, damaged);
        expectRecovered(dir, count - 1, { entriesRecovered: count - 1, discardedBytes: size, discardedReason: 'corrupt', floorRaisedEntries: 0, cleanShutdown: false, floorRecorded: null });
      }
    });

    it('after a clean shutdown, a flipped bit in the last entry is corruption, named, and the file is left as it was', () => {
      const { dir, file, bytes } = build();
      const damaged = Buffer.from(bytes);
      damaged[lastStart + 30]! ^= 0x01;
      fs.writeFileSync(file, damaged);
      const error = openError(dir);
      expect(error).toBeInstanceOf(CorruptJournalError);
      expect(error).toMatchObject({ reason: 'corrupt', offset: lastStart });
      expect((error as Error).message).toMatch(new RegExp(`after a clean shutdown at u=${count}, the entry after u=${count - 1} is damaged`));
      // Nothing was cut: the update number of the damaged entry can never be handed out again from here.
      expect(fs.readFileSync(file).equals(damaged)).toBe(true);
    });

    it('after a clean shutdown, a whole entry missing from the end is corruption too', () => {
      const { dir, file, bytes } = build();
      fs.writeFileSync(file, bytes.subarray(0, lastStart));
      const error = openError(dir);
      expect(error).toBeInstanceOf(CorruptJournalError);
      expect(error).toMatchObject({ reason: 'metadata' });
      expect((error as Error).message).toMatch(new RegExp(`closed cleanly at u=${count}, but the segments end at u=${count - 1}`));
    });

    it('records the shutdown: clean after close, not after a crash; an open journal is marked open at once', () => {
      const { dir } = build();
      const { journal, recovery } = open(dir);
      expect(recovery.cleanShutdown).toBe(true);
      expect(JSON.parse(fs.readFileSync(path.join(dir, journalMetaName), 'utf8')).cleanLast).toBeNull();
      journal.append(makeEntry(count + 1, dataBytes));
      journal.flush();
      const crashed = freshDir();
      fs.cpSync(dir, crashed, { recursive: true });
      journal.close();
      expect(JSON.parse(fs.readFileSync(path.join(dir, journalMetaName), 'utf8')).cleanLast).toBe(count + 1);
      const after = open(crashed);
      expect(after.recovery.cleanShutdown).toBe(false);
      expect(after.journal.last).toBe(count + 1);
      after.journal.close();
    });

    it('handles the last entry alone in the last segment: a torn or corrupt one is discarded with its segment', () => {
      const { dir, file, bytes } = build(dataBytes, 4 * size);
      expect(segments(dir)).toEqual(['journal-000001.seg', 'journal-000002.seg']);
      expect(bytes.length).toBe(size);
      fs.writeFileSync(file, bytes.subarray(0, 10));
      expectRecovered(dir, count - 1, { entriesRecovered: count - 1, discardedBytes: 10, discardedReason: 'torn', floorRaisedEntries: 0, cleanShutdown: false, floorRecorded: null });
      expect(segments(dir)).toEqual(['journal-000001.seg']);
    });

    it('property: a 4 KiB last entry torn or flipped anywhere (sampled) recovers the entries before it', () => {
      const big = 4096;
      const bigSize = entryBytes(makeEntry(1, big));
      const { dir, file, bytes } = build(big);
      const start = (count - 1) * bigSize;
      fc.assert(
        fc.property(fc.integer({ min: 0, max: bigSize - 1 }), fc.integer({ min: 1, max: 255 }), fc.boolean(), (at, mask, tear) => {
          if (tear) {
            fs.writeFileSync(file, bytes.subarray(0, start + at));
            expectRecovered(dir, count - 1, { entriesRecovered: count - 1, discardedBytes: at, discardedReason: at === 0 ? null : 'torn', floorRaisedEntries: 0, cleanShutdown: false, floorRecorded: null }, big);
          } else {
            const damaged = Buffer.from(bytes);
            damaged[start + at]! ^= mask;
            fs.writeFileSync(file, damaged);
            expectRecovered(dir, count - 1, { entriesRecovered: count - 1, discardedBytes: bigSize, discardedReason: 'corrupt', floorRaisedEntries: 0, cleanShutdown: false, floorRecorded: null }, big);
          }
        }),
        { numRuns: 200 },
      );
    });

    it('refuses a flipped byte in a middle entry, header or data, with segment and offset', () => {
      const { dir, file, bytes } = build();
      const middle = 2 * size;
      for (const at of [middle, middle + 5, middle + 30, middle + 36, middle + 150, middle + size - 1]) {
        const damaged = Buffer.from(bytes);
        damaged[at]! ^= 0x01;
        fs.writeFileSync(file, damaged);
        const error = openError(dir);
        expect(error, `flip at ${at}`).toBeInstanceOf(CorruptJournalError);
        expect(error).toMatchObject({ reason: 'corrupt', segment: 'journal-000001.seg', offset: middle });
      }
      fs.writeFileSync(file, bytes);
      expect(openError(dir)).toBeUndefined();
    });

    it('refuses a defect in a segment that is not the last: corrupt or torn', () => {
      const { dir, bytes } = build(dataBytes, 2 * size);
      expect(segments(dir)).toEqual(['journal-000001.seg', 'journal-000002.seg', 'journal-000003.seg']);
      expect(bytes.length).toBe(size);
      const second = path.join(dir, 'journal-000002.seg');
      const saved = fs.readFileSync(second);
      const damaged = Buffer.from(saved);
      damaged[size + 100]! ^= 0x80;
      fs.writeFileSync(second, damaged);
      expect(openError(dir)).toMatchObject({ reason: 'corrupt', segment: 'journal-000002.seg', offset: size });
      fs.writeFileSync(second, saved.subarray(0, size + 50));
      expect(openError(dir)).toMatchObject({ reason: 'torn', segment: 'journal-000002.seg', offset: size });
      fs.writeFileSync(second, saved);
      expect(openError(dir)).toBeUndefined();
    });

    it('refuses garbage followed by a valid entry in the last segment', () => {
      const { dir, file, bytes } = build();
      const damaged = Buffer.concat([bytes.subarray(0, 2 * size), Buffer.alloc(7, 0xee), bytes.subarray(2 * size)]);
      fs.writeFileSync(file, damaged);
      expect(openError(dir)).toMatchObject({ reason: 'corrupt', offset: 2 * size });
    });
  });
});

describe('an append that meets a full device is all or nothing on disk (a real full tmpfs; the tests run as root)', () => {
  it('cuts the whole entries a failed batch wrote and removes the segment it rolled to: the reopened journal ends where the batch began', () => {
    if (process.getuid?.() !== 0) throw new Error('this test mounts a tmpfs: run the suite as root (CI does)');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-journal-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=256k', 'tmpfs', dir]);
    try {
      const wide: JournalLimits = { entriesMax: 10_000, bytesMax: 64 * 1024 * 1024 };
      const entryDataBytes = 4096;
      // Segments of 20 entries: the failing batch fills one segment and rolls to the next before the disk is full.
      const segmentBytes = 20 * entryBytes(makeEntry(1, entryDataBytes));
      const opened = FileJournal.open(dir, wide, { segmentBytesMax: segmentBytes });
      const journal = opened.journal;
      journal.appendAll(Array.from({ length: 10 }, (_, k) => makeEntry(k + 1, entryDataBytes)));
      const batch = Array.from({ length: 100 }, (_, k) => makeEntry(k + 11, entryDataBytes));
      expect(() => journal.appendAll(batch)).toThrow(DeviceError);
      expect(fs.readdirSync(dir).filter((name) => name.endsWith('.seg'))).toEqual(['journal-000001.seg']);
      journal.close(); // not marked clean: the append failed
      const again = FileJournal.open(dir, wide, { segmentBytesMax: segmentBytes });
      expect(again.journal.last).toBe(10);
      expect(again.recovery.discardedBytes).toBe(0);
      again.journal.close();
    } finally {
      execFileSync('umount', ['-l', dir]);
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
