/**
 * The behaviour every {@link Journal} backend shares, run by each backend's test file against its own
 * factory: the update-number range, limits at their exact boundaries (one by one and as an all-or-nothing
 * appendAll), P3 on append, reads, covering,
 * trimming, resets, and a fast-check property comparing any sequence of operations (with reopens, where the
 * backend has them) with a plain array model.
 */

import fc from 'fast-check';
import { expect, it } from 'vitest';
import { InvariantError } from '../../impl/core/invariant.ts';
import {
  entryBytes,
  entryHeaderBytes,
  InvalidEntryError,
  JournalFullError,
  JournalLimitsError,
  NotCoveredError,
  type Journal,
  type JournalEntry,
  type JournalLimits,
} from '../../impl/core/journal.ts';

/** Makes an empty journal with the given limits and base; `reopen` (optional) closes and reopens one. */
export interface JournalFactory {
  create(limits: JournalLimits, last?: number): Journal;
  reopen?(journal: Journal): Journal;
}

/** An entry whose data differs at every byte and between entries. */
export function makeEntry(updateNumber: number, dataBytes = 16, volume = updateNumber % 3, offset = updateNumber * 512): JournalEntry {
  const data = new Uint8Array(dataBytes);
  for (let i = 0; i < dataBytes; i += 1) data[i] = (updateNumber * 37 + i * 11 + 5) & 0xff;
  return { updateNumber, volume, offset, data };
}

/** Plain copies of entries, for deep comparison independent of views. */
export function plain(entries: readonly JournalEntry[]): { updateNumber: number; volume: number; offset: number; data: number[] }[] {
  return entries.map((e) => ({ updateNumber: e.updateNumber, volume: e.volume, offset: e.offset, data: Array.from(e.data) }));
}

function thrown(action: () => unknown): unknown {
  try {
    action();
  } catch (error) {
    return error;
  }
  return undefined;
}

const roomy: JournalLimits = { entriesMax: 1000, bytesMax: 1_000_000 };

/** Registers the shared tests (call inside a `describe`). */
export function journalContract(factory: JournalFactory): void {
  it('starts empty at its base: first = last + 1', () => {
    const journal = factory.create(roomy);
    expect([journal.first, journal.last, journal.entries, journal.bytes, journal.highWater]).toEqual([1, 0, 0, 0, false]);
    expect(journal.limits).toEqual(roomy);
    journal.close();
    const based = factory.create(roomy, 41);
    expect([based.first, based.last]).toEqual([42, 41]);
    based.append(makeEntry(42));
    expect([based.first, based.last, based.entries]).toEqual([42, 42, 1]);
    based.close();
  });

  it('appends, counts bytes as header plus data, and reads back in order', () => {
    const journal = factory.create(roomy);
    const entries = [makeEntry(1, 0), makeEntry(2, 4096), makeEntry(3, 1)];
    for (const entry of entries) journal.append(entry);
    expect(journal.entries).toBe(3);
    expect(journal.bytes).toBe(3 * entryHeaderBytes + 4097);
    expect(journal.bytes).toBe(entries.reduce((sum, e) => sum + entryBytes(e), 0));
    expect(plain(journal.readAfter(0, 10))).toEqual(plain(entries));
    expect(plain(journal.readAfter(1, 1))).toEqual(plain([entries[1]!]));
    expect(journal.readAfter(3, 10)).toEqual([]);
    expect(journal.readAfter(99, 10)).toEqual([]);
    expect(journal.readAfter(0, 0)).toEqual([]);
    journal.close();
  });

  it('keeps its own copy of appended data', () => {
    const journal = factory.create(roomy);
    const entry = makeEntry(1, 32);
    journal.append(entry);
    entry.data.fill(0);
    expect(plain(journal.readAfter(0, 1))).toEqual(plain([makeEntry(1, 32)]));
    journal.close();
  });

  it('P3: refuses an append that is not last + 1 and changes nothing', () => {
    const journal = factory.create(roomy, 10);
    for (const u of [12, 10, 0, 10.5]) {
      const error = thrown(() => journal.append(makeEntry(u)));
      expect(error).toBeInstanceOf(InvariantError);
      expect((error as InvariantError).invariant).toBe('P3 journal append is last+1');
    }
    expect([journal.first, journal.last, journal.entries]).toEqual([11, 10, 0]);
    journal.append(makeEntry(11));
    expect(thrown(() => journal.append(makeEntry(13)))).toBeInstanceOf(InvariantError);
    expect(journal.last).toBe(11);
    journal.close();
  });

  it('refuses entries whose fields the encoding cannot hold', () => {
    const journal = factory.create(roomy);
    const cases: [JournalEntry, string][] = [
      [{ ...makeEntry(1), volume: -1 }, 'volume'],
      [{ ...makeEntry(1), volume: 2 ** 32 }, 'volume'],
      [{ ...makeEntry(1), volume: 1.5 }, 'volume'],
      [{ ...makeEntry(1), offset: -1 }, 'offset'],
      [{ ...makeEntry(1), offset: 0.5 }, 'offset'],
      [{ ...makeEntry(1), offset: 2 ** 53 }, 'offset'],
    ];
    for (const [entry, field] of cases) {
      const error = thrown(() => journal.append(entry));
      expect(error).toBeInstanceOf(InvalidEntryError);
      expect((error as InvalidEntryError).field).toBe(field);
    }
    expect(journal.entries).toBe(0);
    journal.close();
  });

  it('holds exactly entriesMax entries; one more is JournalFullError with the facts', () => {
    const journal = factory.create({ entriesMax: 5, bytesMax: 1_000_000 });
    for (let u = 1; u <= 5; u += 1) {
      expect(journal.fits(makeEntry(u))).toBe(true);
      journal.append(makeEntry(u));
    }
    expect(journal.fits(makeEntry(6))).toBe(false);
    const error = thrown(() => journal.append(makeEntry(6)));
    expect(error).toBeInstanceOf(JournalFullError);
    expect(error).toMatchObject({
      limits: { entriesMax: 5, bytesMax: 1_000_000 },
      entries: 5,
      bytes: 5 * entryBytes(makeEntry(1)),
      entryBytes: entryBytes(makeEntry(6)),
      updateNumber: 6,
    });
    expect([journal.entries, journal.last]).toEqual([5, 5]);
    expect(journal.trimThrough(1)).toBe(1);
    journal.append(makeEntry(6));
    expect([journal.first, journal.last, journal.entries]).toEqual([2, 6, 5]);
    journal.close();
  });

  it('holds exactly bytesMax bytes; one byte more is JournalFullError', () => {
    const size = entryBytes(makeEntry(1, 100));
    const journal = factory.create({ entriesMax: 100, bytesMax: 3 * size });
    journal.append(makeEntry(1, 100));
    journal.append(makeEntry(2, 100));
    expect(journal.fits(makeEntry(3, 101))).toBe(false);
    const error = thrown(() => journal.append(makeEntry(3, 101)));
    expect(error).toBeInstanceOf(JournalFullError);
    expect(error).toMatchObject({ bytes: 2 * size, entryBytes: size + 1 });
    expect(journal.fits(makeEntry(3, 100))).toBe(true);
    journal.append(makeEntry(3, 100));
    expect(journal.bytes).toBe(3 * size);
    expect(journal.fits(makeEntry(4, 0))).toBe(false);
    expect(thrown(() => journal.append(makeEntry(4, 0)))).toBeInstanceOf(JournalFullError);
    journal.close();
  });

  it('appendAll: a batch that would pass entriesMax is JournalFullError for its first entry that does not fit, and appends none', () => {
    const journal = factory.create({ entriesMax: 5, bytesMax: 1_000_000 });
    journal.append(makeEntry(1));
    journal.append(makeEntry(2));
    const before = [journal.first, journal.last, journal.entries, journal.bytes];
    const error = thrown(() => journal.appendAll([3, 4, 5, 6, 7].map((u) => makeEntry(u))));
    expect(error).toBeInstanceOf(JournalFullError);
    // The facts are those of the journal as the batch would have left it just before entry 6.
    expect(error).toMatchObject({
      limits: { entriesMax: 5, bytesMax: 1_000_000 },
      entries: 5,
      bytes: 5 * entryBytes(makeEntry(1)),
      entryBytes: entryBytes(makeEntry(6)),
      updateNumber: 6,
    });
    expect([journal.first, journal.last, journal.entries, journal.bytes]).toEqual(before);
    expect(plain(journal.readAfter(0, 10))).toEqual(plain([makeEntry(1), makeEntry(2)]));
    journal.appendAll([3, 4, 5].map((u) => makeEntry(u)));
    expect([journal.first, journal.last, journal.entries]).toEqual([1, 5, 5]);
    journal.close();
  });

  it('appendAll: a batch that would pass bytesMax is JournalFullError for its first entry that does not fit, and appends none', () => {
    const size = entryBytes(makeEntry(1, 100));
    const journal = factory.create({ entriesMax: 100, bytesMax: 4 * size });
    journal.append(makeEntry(1, 100));
    const error = thrown(() => journal.appendAll([makeEntry(2, 100), makeEntry(3, 100), makeEntry(4, 100), makeEntry(5, 0)]));
    expect(error).toBeInstanceOf(JournalFullError);
    expect(error).toMatchObject({ entries: 4, bytes: 4 * size, entryBytes: entryHeaderBytes, updateNumber: 5 });
    expect([journal.last, journal.entries, journal.bytes]).toEqual([1, 1, size]);
    const oneByteOver = thrown(() => journal.appendAll([makeEntry(2, 100), makeEntry(3, 100), makeEntry(4, 101)]));
    expect(oneByteOver).toMatchObject({ entries: 3, bytes: 3 * size, entryBytes: size + 1, updateNumber: 4 });
    expect([journal.last, journal.bytes]).toEqual([1, size]);
    // Exactly bytesMax fits.
    journal.appendAll([2, 3, 4].map((u) => makeEntry(u, 100)));
    expect([journal.last, journal.entries, journal.bytes]).toEqual([4, 4, 4 * size]);
    expect(plain(journal.readAfter(0, 10))).toEqual(plain([1, 2, 3, 4].map((u) => makeEntry(u, 100))));
    journal.close();
  });

  it('reports high water at 80% of entries or of bytes, not below', () => {
    const byEntries = factory.create({ entriesMax: 5, bytesMax: 1_000_000 });
    for (let u = 1; u <= 3; u += 1) byEntries.append(makeEntry(u));
    expect(byEntries.highWater).toBe(false);
    byEntries.append(makeEntry(4));
    expect(byEntries.highWater).toBe(true);
    byEntries.trimThrough(1);
    expect(byEntries.highWater).toBe(false);
    byEntries.close();
    const size = entryBytes(makeEntry(1, 64));
    const byBytes = factory.create({ entriesMax: 1000, bytesMax: 5 * size });
    for (let u = 1; u <= 3; u += 1) byBytes.append(makeEntry(u, 64));
    expect(byBytes.highWater).toBe(false);
    byBytes.append(makeEntry(4, 63));
    expect(byBytes.highWater).toBe(false);
    byBytes.reset(4);
    for (let u = 5; u <= 8; u += 1) byBytes.append(makeEntry(u, 64));
    expect(byBytes.highWater).toBe(true);
    byBytes.close();
  });

  it('covers a number when it holds every entry after it up to last', () => {
    const journal = factory.create(roomy, 10);
    expect(journal.covers(10)).toBe(true);
    expect(journal.covers(9)).toBe(false);
    expect(journal.covers(11)).toBe(false);
    for (let u = 11; u <= 15; u += 1) journal.append(makeEntry(u));
    expect([9, 10, 12, 15, 16].map((u) => journal.covers(u))).toEqual([false, true, true, true, false]);
    journal.trimThrough(12);
    expect([11, 12, 13, 15, 16].map((u) => journal.covers(u))).toEqual([false, true, true, true, false]);
    journal.close();
  });

  it('refuses to read after a trimmed number (NotCoveredError), never hiding the gap', () => {
    const journal = factory.create(roomy);
    for (let u = 1; u <= 6; u += 1) journal.append(makeEntry(u));
    expect(journal.trimThrough(3)).toBe(3);
    expect(plain(journal.readAfter(3, 10))).toEqual(plain([4, 5, 6].map((u) => makeEntry(u))));
    const error = thrown(() => journal.readAfter(2, 10));
    expect(error).toBeInstanceOf(NotCoveredError);
    expect(error).toMatchObject({ updateNumber: 2, first: 4, last: 6 });
    // A batch of none asks for nothing, so nothing is hidden: empty, not NotCoveredError.
    expect(journal.readAfter(2, 0)).toEqual([]);
    expect(journal.readAfter(0, 0)).toEqual([]);
    journal.trimThrough(6);
    expect(journal.readAfter(6, 10)).toEqual([]);
    expect(thrown(() => journal.readAfter(5, 10))).toBeInstanceOf(NotCoveredError);
    journal.close();
  });

  it('trims: returns how many; below first is a no-op; beyond last empties and keeps last', () => {
    const journal = factory.create(roomy);
    for (let u = 1; u <= 8; u += 1) journal.append(makeEntry(u, u * 10));
    expect(journal.trimThrough(0)).toBe(0);
    expect(journal.trimThrough(3)).toBe(3);
    expect(journal.trimThrough(2)).toBe(0);
    expect([journal.first, journal.last, journal.entries]).toEqual([4, 8, 5]);
    expect(journal.bytes).toBe([4, 5, 6, 7, 8].reduce((sum, u) => sum + entryBytes(makeEntry(u, u * 10)), 0));
    expect(journal.trimThrough(100)).toBe(5);
    expect([journal.first, journal.last, journal.entries, journal.bytes]).toEqual([9, 8, 0, 0]);
    expect(journal.trimThrough(100)).toBe(0);
    journal.append(makeEntry(9));
    expect([journal.first, journal.last]).toEqual([9, 9]);
    journal.close();
  });

  it('resets to any base, higher or lower, and continues from it', () => {
    const journal = factory.create(roomy);
    for (let u = 1; u <= 4; u += 1) journal.append(makeEntry(u));
    journal.reset(20);
    expect([journal.first, journal.last, journal.entries, journal.bytes]).toEqual([21, 20, 0, 0]);
    expect(journal.readAfter(20, 10)).toEqual([]);
    expect(thrown(() => journal.readAfter(0, 10))).toBeInstanceOf(NotCoveredError);
    journal.append(makeEntry(21));
    journal.reset(2);
    expect([journal.first, journal.last, journal.entries]).toEqual([3, 2, 0]);
    journal.append(makeEntry(3));
    expect(plain(journal.readAfter(2, 10))).toEqual(plain([makeEntry(3)]));
    journal.close();
  });

  it('refuses invalid limits and invalid arguments', () => {
    for (const limits of [
      { entriesMax: 0, bytesMax: 100 },
      { entriesMax: 1, bytesMax: 0 },
      { entriesMax: -1, bytesMax: 100 },
      { entriesMax: 1.5, bytesMax: 100 },
      { entriesMax: 2 ** 40, bytesMax: 100 },
      { entriesMax: 1, bytesMax: 2 ** 50 },
    ]) {
      expect(thrown(() => factory.create(limits))).toBeInstanceOf(JournalLimitsError);
    }
    const journal = factory.create(roomy);
    expect(thrown(() => journal.trimThrough(-1))).toBeInstanceOf(InvariantError);
    expect(thrown(() => journal.reset(1.5))).toBeInstanceOf(InvariantError);
    expect(thrown(() => journal.readAfter(-1, 1))).toBeInstanceOf(InvariantError);
    expect(thrown(() => journal.readAfter(0, -1))).toBeInstanceOf(InvariantError);
    journal.close();
  });

  it('names the call and the argument it refused in the invariant message', () => {
    const journal = factory.create(roomy);
    for (const [call, named] of [
      [() => journal.trimThrough(-1), 'trimThrough(-1)'],
      [() => journal.reset(1.5), 'reset(1.5)'],
      [() => journal.readAfter(-1, 1), 'readAfter(-1)'],
    ] as const) {
      const error = thrown(call);
      expect(error).toBeInstanceOf(InvariantError);
      expect((error as InvariantError).invariant).toBe('update numbers are non-negative integers');
      expect((error as InvariantError).message).toContain(named);
    }
    journal.close();
  });

  it('any call after close is an invariant violation', () => {
    const journal = factory.create(roomy);
    journal.append(makeEntry(1));
    journal.flush();
    journal.close();
    for (const [name, call] of [
      ['append', () => journal.append(makeEntry(2))],
      ['readAfter', () => journal.readAfter(0, 1)],
      ['trimThrough', () => journal.trimThrough(1)],
      ['reset', () => journal.reset(0)],
      ['flush', () => journal.flush()],
      ['close', () => journal.close()],
    ] as const) {
      const error = thrown(call);
      expect(error, name).toBeInstanceOf(InvariantError);
      // The message names the call made after close, so that a log line points at the caller.
      expect((error as InvariantError).invariant, name).toBe('journal is open');
      expect((error as InvariantError).message, name).toContain(`${name} after close`);
    }
  });

  it('property: any sequence of appends, trims, resets and reads equals an array model', () => {
    type Step =
      | { kind: 'append'; skew: number; dataBytes: number; volume: number; offset: number }
      | { kind: 'trim'; back: number }
      | { kind: 'reset'; delta: number }
      | { kind: 'read'; back: number; batch: number }
      | { kind: 'reopen' };
    const step: fc.Arbitrary<Step> = fc.oneof(
      {
        weight: 8,
        arbitrary: fc.record({
          kind: fc.constant('append' as const),
          skew: fc.oneof({ weight: 9, arbitrary: fc.constant(0) }, { weight: 1, arbitrary: fc.constantFrom(-1, 1, 2) }),
          dataBytes: fc.integer({ min: 0, max: 80 }),
          volume: fc.nat(3),
          offset: fc.nat(1 << 20),
        }),
      },
      { weight: 3, arbitrary: fc.record({ kind: fc.constant('trim' as const), back: fc.integer({ min: -2, max: 6 }) }) },
      { weight: 1, arbitrary: fc.record({ kind: fc.constant('reset' as const), delta: fc.integer({ min: -5, max: 5 }) }) },
      {
        weight: 3,
        arbitrary: fc.record({ kind: fc.constant('read' as const), back: fc.integer({ min: -1, max: 8 }), batch: fc.nat(5) }),
      },
      { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
    );
    const limits: JournalLimits = { entriesMax: 6, bytesMax: 6 * entryHeaderBytes + 240 };
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 5 }), fc.array(step, { maxLength: 40 }), (base, steps) => {
        let journal = factory.create(limits, base);
        // The model: a base `floor` and the entries after it, consecutive.
        let floor = base;
        let held: JournalEntry[] = [];
        const last = (): number => floor + held.length;
        const heldBytes = (): number => held.reduce((sum, e) => sum + entryBytes(e), 0);
        try {
          for (const s of steps) {
            switch (s.kind) {
              case 'append': {
                const u = last() + 1 + s.skew;
                const entry = makeEntry(Math.max(0, u), s.dataBytes, s.volume, s.offset);
                const error = thrown(() => journal.append(entry));
                if (entry.updateNumber !== last() + 1) {
                  expect(error).toBeInstanceOf(InvariantError);
                } else if (held.length + 1 > limits.entriesMax || heldBytes() + entryBytes(entry) > limits.bytesMax) {
                  expect(error).toBeInstanceOf(JournalFullError);
                } else {
                  expect(error).toBeUndefined();
                  held.push(makeEntry(entry.updateNumber, s.dataBytes, s.volume, s.offset));
                }
                break;
              }
              case 'trim': {
                const point = Math.max(0, last() - s.back);
                const count = Math.max(0, Math.min(point, last()) - floor);
                expect(journal.trimThrough(point)).toBe(count);
                held = held.slice(count);
                floor += count;
                break;
              }
              case 'reset': {
                const point = Math.max(0, last() + s.delta);
                journal.reset(point);
                floor = point;
                held = [];
                break;
              }
              case 'read': {
                const after = Math.max(0, last() - s.back);
                if (after >= last() || s.batch === 0) {
                  expect(journal.readAfter(after, s.batch)).toEqual([]);
                } else if (after + 1 < floor + 1) {
                  expect(thrown(() => journal.readAfter(after, s.batch))).toBeInstanceOf(NotCoveredError);
                } else {
                  const expected = held.slice(after - floor, after - floor + s.batch);
                  expect(plain(journal.readAfter(after, s.batch))).toEqual(plain(expected));
                }
                break;
              }
              case 'reopen':
                if (factory.reopen !== undefined) journal = factory.reopen(journal);
                break;
            }
            expect(journal.first).toBe(floor + 1);
            expect(journal.last).toBe(last());
            expect(journal.entries).toBe(held.length);
            expect(journal.bytes).toBe(heldBytes());
            expect(journal.highWater).toBe(held.length * 5 >= limits.entriesMax * 4 || heldBytes() * 5 >= limits.bytesMax * 4);
            for (const u of [floor - 1, floor, last(), last() + 1]) {
              expect(journal.covers(u)).toBe(u <= last() && floor + 1 <= u + 1);
            }
          }
          expect(plain(journal.readAfter(floor, 100))).toEqual(plain(held));
        } finally {
          journal.close();
        }
      }),
      { numRuns: 150 },
    );
  });
}
