/**
 * The changed-block record of a sync member: one bitmap per volume, a bit per block, set for every block
 * the site wrote while its sync pair was not in sync (acknowledged on one site, or written and never
 * acknowledged). A resync copies exactly the union of the primary's and the secondary's records
 * (a differential resync: claims 29, 30, 31; model/README.md "Resync of a sync member").
 *
 * Memory is bounded by the volumes: `ceil(blocksPerVolume / 8)` bytes per volume.
 */

import { assert } from './invariant.ts';

/** The changed-block record of one site: which blocks of which volumes differ from the pair's last common image. */
export class ChangedBlocks {
  readonly volumeCount: number;
  readonly blocksPerVolume: number;
  readonly #bitmaps: Uint8Array[];
  #count = 0;

  /** An empty record for `volumeCount` volumes of `blocksPerVolume` blocks. */
  constructor(volumeCount: number, blocksPerVolume: number) {
    assert(Number.isSafeInteger(volumeCount) && volumeCount >= 1, 'a record has volumes', () => `${volumeCount}`);
    assert(Number.isSafeInteger(blocksPerVolume) && blocksPerVolume >= 1, 'a record has blocks', () => `${blocksPerVolume}`);
    this.volumeCount = volumeCount;
    this.blocksPerVolume = blocksPerVolume;
    this.#bitmaps = Array.from({ length: volumeCount }, () => new Uint8Array(Math.ceil(blocksPerVolume / 8)));
  }

  /** Number of blocks in the record (what the observation's `changedBlocks` shows). */
  get count(): number {
    return this.#count;
  }

  /** Marks `count` blocks from `first` of a volume; returns how many were not marked before. */
  mark(volume: number, first: number, count: number): number {
    const bitmap = this.#bitmap(volume);
    assert(first >= 0 && first + count <= this.blocksPerVolume, 'marked blocks lie in the volume', () => `${first}+${count}`);
    let added = 0;
    for (let block = first; block < first + count; block += 1) {
      const byte = block >> 3;
      const bit = 1 << (block & 7);
      if (((bitmap[byte] as number) & bit) === 0) {
        bitmap[byte] = (bitmap[byte] as number) | bit;
        added += 1;
      }
    }
    this.#count += added;
    return added;
  }

  /** Whether a block is in the record. */
  has(volume: number, block: number): boolean {
    return (((this.#bitmap(volume)[block >> 3] as number) >> (block & 7)) & 1) === 1;
  }

  /** Adds every block of another record, given as bitmaps (a resync's union); returns how many were added. */
  addBitmaps(bitmaps: readonly Uint8Array[]): number {
    assert(bitmaps.length === this.volumeCount, 'a record has one bitmap per volume', () => `${bitmaps.length} bitmaps`);
    let added = 0;
    for (const [volume, other] of bitmaps.entries()) {
      const bitmap = this.#bitmap(volume);
      assert(other.length === bitmap.length, 'bitmaps of one group have one size', () => `${other.length} != ${bitmap.length}`);
      for (const [byte, bits] of other.entries()) {
        const fresh = bits & ~(bitmap[byte] as number);
        bitmap[byte] = (bitmap[byte] as number) | fresh;
        added += popcount8(fresh);
      }
    }
    this.#count += added;
    return added;
  }

  /** Empties the record (after a resync). */
  clear(): void {
    for (const bitmap of this.#bitmaps) bitmap.fill(0);
    this.#count = 0;
  }

  /** Copies of the bitmaps, one per volume (for a resync request and the state file). */
  toBitmaps(): Uint8Array[] {
    return this.#bitmaps.map((bitmap) => bitmap.slice());
  }

  /** Replaces the record with saved bitmaps. */
  loadBitmaps(bitmaps: readonly Uint8Array[]): void {
    this.clear();
    this.addBitmaps(bitmaps);
  }

  /** The marked blocks in (volume, block) order, as `[volume, block]` pairs. */
  *blocks(): Generator<[number, number]> {
    for (const [volume, bitmap] of this.#bitmaps.entries()) {
      for (const [byte, bits] of bitmap.entries()) {
        // Each set bit, lowest first: `rest & -rest` isolates it, and clearing it ends the loop at zero.
        for (let rest = bits; rest !== 0; rest &= rest - 1) yield [volume, byte * 8 + (31 - Math.clz32(rest & -rest))];
      }
    }
  }

  #bitmap(volume: number): Uint8Array {
    const bitmap = this.#bitmaps[volume];
    assert(bitmap !== undefined, 'a record names volumes of its group', () => `volume ${volume}`);
    return bitmap;
  }
}

function popcount8(value: number): number {
  let v = value & 0xff;
  let n = 0;
  while (v !== 0) {
    v &= v - 1;
    n += 1;
  }
  return n;
}
