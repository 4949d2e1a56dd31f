/**
 * The changed-block record and the block cursor that walks it: against a plain set of block keys (the
 * model), marks, counts, unions, clears and the cursor's order; the cursor over all blocks of a group.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { BlockCursor } from '../../impl/core/block-copy.ts';
import { ChangedBlocks } from '../../impl/core/changed-blocks.ts';
import { InvariantError } from '../../impl/core/invariant.ts';

const volumes = 3;
const blocks = 21;
const range = fc.tuple(fc.nat(volumes - 1), fc.nat(blocks - 1), fc.nat(5)).map(([v, first, n]) => [v, first, Math.min(n, blocks - first)] as const);

describe('ChangedBlocks', () => {
  it('behaves like a set of block keys (property)', () => {
    fc.assert(
      fc.property(fc.array(range), fc.array(range), (mine, theirs) => {
        const record = new ChangedBlocks(volumes, blocks);
        const model = new Set<number>();
        for (const [v, first, n] of mine) {
          const before = model.size;
          for (let b = first; b < first + n; b += 1) model.add(v * blocks + b);
          expect(record.mark(v, first, n)).toBe(model.size - before);
        }
        const other = new ChangedBlocks(volumes, blocks);
        for (const [v, first, n] of theirs) {
          other.mark(v, first, n);
          for (let b = first; b < first + n; b += 1) model.add(v * blocks + b);
        }
        record.addBitmaps(other.toBitmaps());
        expect(record.count).toBe(model.size);
        const listed = [...record.blocks()].map(([v, b]) => v * blocks + b);
        expect(listed).toEqual([...model].sort((a, b) => a - b));
        const cursor = new BlockCursor(volumes, blocks, record);
        const walked: number[] = [];
        while (!cursor.done) for (const [v, b] of cursor.take(4)) walked.push(v * blocks + b);
        expect(walked).toEqual(listed);
        const copy = new ChangedBlocks(volumes, blocks);
        copy.loadBitmaps(record.toBitmaps());
        expect(copy.count).toBe(model.size);
        record.clear();
        expect(record.count).toBe(0);
        expect(new BlockCursor(volumes, blocks, record).done).toBe(true);
      }),
    );
  });

  it('hands out copies of its bitmaps: changing one changes neither the record nor the next copy', () => {
    const record = new ChangedBlocks(2, 16);
    record.mark(1, 3, 2);
    const bitmaps = record.toBitmaps();
    expect(bitmaps.map((b) => Array.from(b))).toEqual([[0, 0], [0b0001_1000, 0]]);
    bitmaps[0]!.fill(0xff);
    bitmaps[1]!.fill(0);
    expect([record.count, record.has(0, 0), record.has(1, 3), record.has(1, 4)]).toEqual([2, false, true, true]);
    expect([...record.blocks()]).toEqual([[1, 3], [1, 4]]);
    expect(record.toBitmaps().map((b) => Array.from(b))).toEqual([[0, 0], [0b0001_1000, 0]]);
  });

  it('walks every block of the group when there is no record, and refuses blocks outside it', () => {
    const cursor = new BlockCursor(2, 3, null);
    expect(cursor.take(4)).toEqual([[0, 0], [0, 1], [0, 2], [1, 0]]);
    expect(cursor.take(4)).toEqual([[1, 1], [1, 2]]);
    expect(cursor.done).toBe(true);
    const record = new ChangedBlocks(2, 3);
    expect(() => record.mark(2, 0, 1)).toThrow(InvariantError);
    expect(() => record.mark(0, 2, 2)).toThrow(InvariantError);
    expect(() => record.addBitmaps([new Uint8Array(1)])).toThrow(InvariantError);
  });
});
