/**
 * Online verify's pure part (impl/core/verify.ts): the chunks a verify walks cover every byte once; a
 * block's digest changes with any byte of it; a chunk's image at an update number is the volume with the
 * journal's entries through that number written over it, never a later one; the comparison finds exactly
 * the blocks that differ, the first and the last included; site 3 holds at most verifyMarkersPendingMax
 * markers and gives them back in order as it reaches them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { MemoryVolume } from '../../impl/core/volume.ts';
import type { JournalEntry } from '../../impl/core/journal.ts';
import {
  blockDigests,
  chunkAt,
  differingBlocks,
  verifyChunkBytesMax,
  verifyChunks,
  verifyDifferencesListedMax,
  verifyDigestBytes,
  VerifyMarkers,
  verifyMarkersPendingMax,
  verifyOutcomeOf,
  VerifyTally,
  type VerifyChunk,
} from '../../impl/core/verify.ts';

describe('the chunks of a verify', () => {
  it('cover each chosen volume from its first byte to its last, once, in chunks of at most verifyChunkBytesMax', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 5 * verifyChunkBytesMax }), fc.uniqueArray(fc.nat({ max: 7 }), { minLength: 1, maxLength: 4 }), (volumeBytes, volumes) => {
        const chunks = [...verifyChunks(volumes, volumeBytes)];
        for (const volume of volumes) {
          const mine = chunks.filter((chunk) => chunk.volume === volume);
          let next = 0;
          for (const chunk of mine) {
            expect(chunk.offset).toBe(next);
            expect(chunk.length).toBeGreaterThan(0);
            expect(chunk.length).toBeLessThanOrEqual(verifyChunkBytesMax);
            next += chunk.length;
          }
          expect(next).toBe(volumeBytes);
        }
        const perVolume = Math.ceil(volumeBytes / verifyChunkBytesMax);
        expect(chunks.map((chunk) => chunk.volume)).toEqual(volumes.flatMap((volume) => Array.from({ length: perVolume }, () => volume)));
      }),
      { numRuns: 200 },
    );
  });

  it('a volume of exactly one chunk is one chunk; one byte more is two, the second one byte long', () => {
    expect([...verifyChunks([0], verifyChunkBytesMax)]).toEqual([{ volume: 0, offset: 0, length: verifyChunkBytesMax }]);
    expect([...verifyChunks([0], verifyChunkBytesMax + 512)]).toEqual([
      { volume: 0, offset: 0, length: verifyChunkBytesMax },
      { volume: 0, offset: verifyChunkBytesMax, length: 512 },
    ]);
  });
});

describe('block digests and their comparison', () => {
  it('one digest of verifyDigestBytes per block; a changed byte changes its block digest only', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 16 }), fc.nat(), fc.integer({ min: 1, max: 255 }), (blocks, at, flip) => {
        const bytes = new Uint8Array(blocks * 512).map((_, i) => (i * 31) & 0xff);
        const before = blockDigests(bytes, 512);
        expect(before.length).toBe(blocks * verifyDigestBytes);
        const changed = bytes.slice();
        const byte = at % changed.length;
        changed[byte] = (changed[byte] as number) ^ flip;
        const after = blockDigests(changed, 512);
        expect(differingBlocks(before, after, 0, 512)).toEqual([Math.floor(byte / 512) * 512]);
      }),
      { numRuns: 200 },
    );
  });

  it('finds exactly the differing blocks, at their byte offsets in the volume, the first and the last included', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 64 }), fc.nat({ max: 100 }), fc.array(fc.nat(), { maxLength: 8 }), (blocks, chunkIndex, picks) => {
        const reference = new Uint8Array(blocks * verifyDigestBytes).map((_, i) => i & 0xff);
        const other = reference.slice();
        const differing = [...new Set(picks.map((p) => p % blocks))].sort((a, b) => a - b);
        for (const b of differing) {
          const at = b * verifyDigestBytes + (b % verifyDigestBytes);
          other[at] = (other[at] as number) ^ 0x80;
        }
        const chunkOffset = chunkIndex * blocks * 4096;
        expect(differingBlocks(reference, other, chunkOffset, 4096)).toEqual(differing.map((b) => chunkOffset + b * 4096));
      }),
      { numRuns: 300 },
    );
    const reference = new Uint8Array(4 * verifyDigestBytes);
    const last = reference.slice();
    last[last.length - 1] = 1;
    expect(differingBlocks(reference, last, 0, 512)).toEqual([3 * 512]);
    const first = reference.slice();
    first[0] = 1;
    expect(differingBlocks(reference, first, 0, 512)).toEqual([0]);
  });

  it('a tally counts compared and differing blocks, lists at most verifyDifferencesListedMax, and never calls a chunk not compared equal', () => {
    const tally = new VerifyTally(2);
    const blocks = verifyDifferencesListedMax + 10;
    const reference = new Uint8Array(blocks * verifyDigestBytes);
    const other = reference.map(() => 1);
    const chunk: VerifyChunk = { volume: 1, offset: 0, length: blocks * 512 };
    expect(tally.compared(chunk, 7, reference, other, 512)).toHaveLength(blocks);
    tally.notVerified(3, 'site 2 is not connected');
    tally.notVerified(2, 'a later reason');
    const result = tally.result;
    expect(result).toMatchObject({ site: 2, blocksCompared: blocks, blocksDiffering: blocks, blocksNotVerified: 5, notVerifiedReason: 'site 2 is not connected', updateNumbers: { first: 7, last: 7 } });
    expect(result.differing).toHaveLength(verifyDifferencesListedMax);
    expect(verifyOutcomeOf([result])).toBe('differ');
    const notVerified = new VerifyTally(3);
    notVerified.notVerified(1, 'site 3 did not answer');
    const equal = new VerifyTally(2);
    equal.compared(chunk, 9, reference, reference.slice(), 512);
    expect(verifyOutcomeOf([equal.result, notVerified.result])).toBe('notVerified');
    expect(verifyOutcomeOf([equal.result])).toBe('equal');
  });
});

describe("a chunk's image at an update number (site 3: its volume and its journal's entries through it)", () => {
  const volumeBytes = 8 * 512;
  const write = fc.record({ volume: fc.nat({ max: 1 }), offset: fc.nat({ max: volumeBytes - 1 }), length: fc.integer({ min: 1, max: 1500 }), fill: fc.integer({ min: 1, max: 255 }) });

  it('equals the volume after restoring exactly the entries through that number, whatever comes after', () => {
    fc.assert(
      fc.property(fc.array(write, { maxLength: 12 }), fc.nat(), fc.nat({ max: 3 }), (writes, cut, chunkIndex) => {
        const entries: JournalEntry[] = writes.map((w, i) => ({
          updateNumber: 11 + i,
          volume: w.volume,
          offset: w.offset,
          data: new Uint8Array(Math.min(w.length, volumeBytes - w.offset)).fill(w.fill),
        }));
        const updateNumber = 10 + (entries.length === 0 ? 0 : cut % (entries.length + 1));
        const chunk: VerifyChunk = { volume: chunkIndex % 2, offset: (chunkIndex >> 1) * 2048, length: 2048 };
        const base = new MemoryVolume(volumeBytes, 512);
        base.write(0, new Uint8Array(volumeBytes).map((_, i) => i & 0xff));
        const restored = new MemoryVolume(volumeBytes, 512);
        restored.write(0, base.read(0, volumeBytes));
        for (const entry of entries) if (entry.updateNumber <= updateNumber && entry.volume === chunk.volume) restored.write(entry.offset, entry.data);
        expect(chunkAt(base, chunk, entries, updateNumber)).toEqual(restored.read(chunk.offset, chunk.length));
      }),
      { numRuns: 300 },
    );
  });
});

describe("site 3's verify markers", () => {
  it(`holds verifyMarkersPendingMax (${verifyMarkersPendingMax}) markers and refuses one more, naming the bound; gives them back in order as it reaches them`, () => {
    const markers = new VerifyMarkers();
    const chunk: VerifyChunk = { volume: 0, offset: 0, length: 512 };
    for (let i = 0; i < verifyMarkersPendingMax; i += 1) expect(markers.add({ verifyId: 1, chunk, updateNumber: 10 + i })).toBeNull();
    expect(markers.add({ verifyId: 1, chunk, updateNumber: 10 + verifyMarkersPendingMax })).toMatch(/verifyMarkersPendingMax/);
    expect(markers.size).toBe(verifyMarkersPendingMax);
    expect(markers.takeReached(9)).toEqual([]);
    expect(markers.takeReached(12).map((m) => m.updateNumber)).toEqual([10, 11, 12]);
    expect(markers.size).toBe(verifyMarkersPendingMax - 3);
    expect(markers.add({ verifyId: 2, chunk, updateNumber: 100 })).toBeNull();
    expect(markers.takeAll()).toHaveLength(verifyMarkersPendingMax - 2);
    expect(markers.size).toBe(0);
  });
});
