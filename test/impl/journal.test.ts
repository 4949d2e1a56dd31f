/**
 * The journal's entry encoding (CRC-32C, torn and corrupt results) and the in-memory journal: the shared
 * journal contract, the paired checksum check on read, and its bounded storage under long runs.
 */

import { crc32c } from '@node-rs/crc32';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CorruptEntryError,
  entrySlabBytes,
  JournalFullError,
  NotCoveredError,
  decodeEntry,
  encodeEntry,
  entryBytes,
  entryDataBytesMax,
  entryHeaderBytes,
  InvalidEntryError,
  JournalLimitsError,
  MemoryJournal,
  memoryJournalBytesMaxCeiling,
  type JournalEntry,
} from '../../impl/core/journal.ts';
import { InvariantError } from '../../impl/core/invariant.ts';
import { journalContract, makeEntry, plain } from './journal-contract.ts';

/** Compares entries field by field, the data byte for byte (fast for megabytes, unlike a deep equal of arrays). */
function expectSameEntries(actual: readonly JournalEntry[], expected: readonly JournalEntry[]): void {
  expect(actual.map((e) => [e.updateNumber, e.volume, e.offset, e.data.length])).toEqual(
    expected.map((e) => [e.updateNumber, e.volume, e.offset, e.data.length]),
  );
  for (const [i, entry] of actual.entries()) expect(Buffer.from(entry.data).equals(expected[i]!.data), `data of u=${entry.updateNumber}`).toBe(true);
}

/** The header of the entry whose data `data` views: a journal's stored bytes, as memory corruption would reach them. */
function storedHeader(data: Uint8Array): { header: Uint8Array; view: DataView } {
  const header = new Uint8Array(data.buffer, data.byteOffset - entryHeaderBytes, entryHeaderBytes);
  return { header, view: new DataView(header.buffer, header.byteOffset, entryHeaderBytes) };
}

const known: JournalEntry = { updateNumber: 7, volume: 2, offset: 4096, data: new TextEncoder().encode('hello journal') };

describe('entry encoding', () => {
  it('uses CRC-32C (Castagnoli): the check value of "123456789" is 0xe3069283', () => {
    expect(crc32c(new TextEncoder().encode('123456789'))).toBe(0xe3069283);
  });

  it('encodes a known entry to stable bytes and checksums', () => {
    const encoded = encodeEntry(known);
    expect(encoded.length).toBe(entryHeaderBytes + 13);
    expect(entryBytes(known)).toBe(encoded.length);
    const view = new DataView(encoded.buffer, encoded.byteOffset, encoded.byteLength);
    expect(view.getUint32(0, true)).toBe(0x314a5354);
    expect(view.getUint32(4, true)).toBe(13);
    expect(view.getUint32(8, true)).toBe(7);
    expect(view.getUint32(16, true)).toBe(4096);
    expect(view.getUint32(24, true)).toBe(2);
    // The checksum covers header bytes 0..27 and the data; the header checksum covers bytes 0..31.
    expect(view.getUint32(28, true)).toBe(crc32c(encoded.subarray(entryHeaderBytes), crc32c(encoded.subarray(0, 28))));
    expect(view.getUint32(32, true)).toBe(crc32c(encoded.subarray(0, 32)));
    expect(view.getUint32(28, true)).toBe(0x24c24dea);
    expect(view.getUint32(32, true)).toBe(0xe2484903);
  });

  it('round-trips every field, including 53-bit update numbers and offsets', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
        fc.integer({ min: 0, max: 0xffff_ffff }),
        fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
        fc.uint8Array({ maxLength: 300 }),
        (updateNumber, volume, offset, data) => {
          const entry = { updateNumber, volume, offset, data };
          const encoded = encodeEntry(entry);
          const result = decodeEntry(encoded, 0);
          expect(result.kind).toBe('ok');
          if (result.kind === 'ok') {
            expect(plain([result.entry])).toEqual(plain([entry]));
            expect(result.bytes).toBe(encoded.length);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('decodes at an offset inside a larger buffer, data as a view', () => {
    const a = encodeEntry(makeEntry(1, 10));
    const b = encodeEntry(makeEntry(2, 20));
    const both = new Uint8Array(a.length + b.length);
    both.set(a);
    both.set(b, a.length);
    const second = decodeEntry(both, a.length);
    expect(second.kind === 'ok' && plain([second.entry])).toEqual(plain([makeEntry(2, 20)]));
    expect(second.kind === 'ok' && second.entry.data.buffer).toBe(both.buffer);
  });

  it('calls every proper prefix torn', () => {
    const encoded = encodeEntry(known);
    for (let cut = 0; cut < encoded.length; cut += 1) {
      const result = decodeEntry(encoded.subarray(0, cut), 0);
      expect(result.kind, `cut at ${cut}`).toBe('torn');
    }
  });

  it('calls every single flipped bit corrupt, with a reason', () => {
    const encoded = encodeEntry(known);
    for (let at = 0; at < encoded.length; at += 1) {
      for (let bit = 0; bit < 8; bit += 1) {
        const copy = encoded.slice();
        copy[at]! ^= 1 << bit;
        const result = decodeEntry(copy, 0, 'test');
        expect(result.kind, `byte ${at} bit ${bit}`).toBe('corrupt');
        if (result.kind === 'corrupt') {
          expect(result.error).toBeInstanceOf(CorruptEntryError);
          expect(result.error.where).toBe('test');
          expect(result.error.at).toBe(0);
          const expected = at < 4 ? 'magic' : at < 36 ? 'headerChecksum' : 'checksum';
          expect(result.error.why).toBe(expected);
          expect(result.headerSound).toBe(expected === 'checksum');
        }
      }
    }
  });

  it('refuses to encode fields it cannot hold', () => {
    const cases: [JournalEntry, string][] = [
      [{ ...known, updateNumber: 0 }, 'updateNumber'],
      [{ ...known, updateNumber: 2 ** 53 }, 'updateNumber'],
      [{ ...known, volume: 2 ** 32 }, 'volume'],
      [{ ...known, offset: -4096 }, 'offset'],
      [{ ...known, data: new Uint8Array(entryDataBytesMax + 1) }, 'data'],
    ];
    for (const [entry, field] of cases) {
      expect(() => encodeEntry(entry)).toThrow(InvalidEntryError);
      try {
        encodeEntry(entry);
      } catch (error) {
        expect((error as InvalidEntryError).field).toBe(field);
      }
    }
    expect(encodeEntry({ ...known, data: new Uint8Array(entryDataBytesMax) }).length).toBe(entryHeaderBytes + entryDataBytesMax);
  });
});

describe('journal errors', () => {
  it('each error class names itself, so that logs and error reports say which one it is', () => {
    const limits = { entriesMax: 1, bytesMax: 100 };
    const errors: [Error, string][] = [
      [new InvalidEntryError('offset', -1, Number.MAX_SAFE_INTEGER), 'InvalidEntryError'],
      [new CorruptEntryError('buffer', 0, 'magic', 'magic 0x0'), 'CorruptEntryError'],
      [new JournalFullError(limits, 1, 50, 50, 2), 'JournalFullError'],
      [new NotCoveredError(1, 3, 4), 'NotCoveredError'],
      [new JournalLimitsError(limits, 'bytesMax', memoryJournalBytesMaxCeiling, 'too small'), 'JournalLimitsError'],
    ];
    for (const [error, name] of errors) {
      expect(error.name).toBe(name);
      expect(String(error).startsWith(`${name}: `)).toBe(true);
    }
  });
});

describe('MemoryJournal', () => {
  journalContract({ create: (limits, last) => new MemoryJournal(limits, last) });

  it('verifies each entry on read: data changed through a returned view is found corrupt', () => {
    const journal = new MemoryJournal({ entriesMax: 10, bytesMax: 10_000 });
    journal.append(makeEntry(1, 8));
    journal.append(makeEntry(2, 8));
    const [, second] = journal.readAfter(0, 2);
    second!.data[3]! ^= 0xff;
    expect(() => journal.readAfter(0, 2)).toThrow(CorruptEntryError);
    expect(plain(journal.readAfter(0, 1))).toEqual(plain([makeEntry(1, 8)]));
  });

  it('refuses a bytesMax above its memory ceiling and a negative base', () => {
    expect(() => new MemoryJournal({ entriesMax: 1, bytesMax: memoryJournalBytesMaxCeiling + 1 })).toThrow(JournalLimitsError);
    expect(() => new MemoryJournal({ entriesMax: 1, bytesMax: memoryJournalBytesMaxCeiling })).not.toThrow();
    expect(() => new MemoryJournal({ entriesMax: 1, bytesMax: 1 }, -1)).toThrow(InvariantError);
    expect(() => new MemoryJournal({ entriesMax: 1, bytesMax: 1 }, -1)).toThrow('MemoryJournal(-1)');
  });

  it('holds entries larger than what is left of a slab, and entries of the largest size, intact', () => {
    const journal = new MemoryJournal({ entriesMax: 10, bytesMax: 4 * (entryHeaderBytes + entryDataBytesMax) });
    // A small entry, then largest ones (each more than a slab holds), then small ones again: every carve
    // from a slab, and a slab of its own for each large entry.
    const sizes = [100, entryDataBytesMax, entryDataBytesMax, 100, entrySlabBytes - 2 * entryHeaderBytes - 100, 1000];
    const entries = sizes.map((size, i) => makeEntry(i + 1, size));
    for (const entry of entries) journal.append(entry);
    expect(journal.bytes).toBe(entries.reduce((sum, e) => sum + entryBytes(e), 0));
    expectSameEntries(journal.readAfter(0, 10), entries);
    journal.reset(0);
    journal.appendAll([makeEntry(1, entryDataBytesMax), makeEntry(2, 10)]);
    expectSameEntries(journal.readAfter(0, 10), [makeEntry(1, entryDataBytesMax), makeEntry(2, 10)]);
  });

  it('refuses a stored entry whose header was rewritten soundly with another update number (sequence)', () => {
    const journal = new MemoryJournal({ entriesMax: 10, bytesMax: 10_000 });
    for (let u = 1; u <= 3; u += 1) journal.append(makeEntry(u, 8));
    const [, second] = journal.readAfter(0, 3);
    const { header, view } = storedHeader(second!.data);
    view.setUint32(8, 3, true);
    view.setUint32(28, crc32c(second!.data, crc32c(header.subarray(0, 28))), true);
    view.setUint32(32, crc32c(header.subarray(0, 32)), true);
    const error = (() => {
      try {
        journal.readAfter(0, 3);
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(CorruptEntryError);
    expect(error).toMatchObject({ why: 'sequence', where: 'memory journal (u=2)', at: 0 });
    expect((error as Error).message).toContain('holds u=3');
    expect(plain(journal.readAfter(0, 1))).toEqual(plain([makeEntry(1, 8)]));
  });

  it('refuses a stored entry whose sound header claims more data than it holds (length)', () => {
    const journal = new MemoryJournal({ entriesMax: 10, bytesMax: 10_000 });
    journal.append(makeEntry(1, 8));
    journal.append(makeEntry(2, 8));
    const [first] = journal.readAfter(0, 1);
    const { header, view } = storedHeader(first!.data);
    view.setUint32(4, 9, true);
    view.setUint32(32, crc32c(header.subarray(0, 32)), true);
    expect(() => journal.readAfter(0, 2)).toThrow(CorruptEntryError);
    try {
      journal.readAfter(0, 2);
    } catch (error) {
      expect(error).toMatchObject({ why: 'length', where: 'memory journal (u=1)', at: 0 });
    }
    expect(plain(journal.readAfter(1, 1))).toEqual(plain([makeEntry(2, 8)]));
  });

  it('drops its entries when closed', () => {
    const journal = new MemoryJournal({ entriesMax: 10, bytesMax: 10_000 });
    journal.append(makeEntry(1, 8));
    journal.close();
    expect(journal.entries).toBe(0);
  });

  it('stays correct over a long run of appends and trims (head index compaction)', () => {
    const journal = new MemoryJournal({ entriesMax: 3000, bytesMax: 10_000_000 });
    let u = 0;
    for (let round = 0; round < 20; round += 1) {
      for (let i = 0; i < 2500; i += 1) journal.append(makeEntry(++u, 4));
      journal.trimThrough(u - 7);
      expect([journal.first, journal.last, journal.entries]).toEqual([u - 6, u, 7]);
      expect(plain(journal.readAfter(u - 7, 10))).toEqual(plain([...Array(7).keys()].map((k) => makeEntry(u - 6 + k, 4))));
    }
  });
});
