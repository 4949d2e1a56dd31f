/**
 * The sending side of a block copy: which blocks a full copy (every block, to site 3) or a resync (the
 * union of both sync members' changed-block records) still has to send, taken batch by batch so that every
 * message stays under the batch limits. The receiver acknowledges each batch before the next is sent, so a
 * copy holds at most one batch in flight.
 */

import type { ChangedBlocks } from './changed-blocks.ts';
import type { CopyPurpose } from './messages.ts';
import type { LinkSite } from './link.ts';

/** Walks the blocks of a group in (volume, block) order: all of them, or those marked in a record. */
export class BlockCursor {
  readonly #blocksPerVolume: number;
  readonly #total: number;
  readonly #record: ChangedBlocks | null;
  #position = 0;

  /** A cursor over every block (`record` null) or over the blocks of `record`, which it then owns. */
  constructor(volumeCount: number, blocksPerVolume: number, record: ChangedBlocks | null) {
    this.#blocksPerVolume = blocksPerVolume;
    this.#total = volumeCount * blocksPerVolume;
    this.#record = record;
    this.#skip();
  }

  /** True when every block has been taken. */
  get done(): boolean {
    return this.#position >= this.#total;
  }

  /** The next at most `count` blocks, as `[volume, block]` pairs. */
  take(count: number): [number, number][] {
    const out: [number, number][] = [];
    while (!this.done && out.length < count) {
      out.push([Math.floor(this.#position / this.#blocksPerVolume), this.#position % this.#blocksPerVolume]);
      this.#position += 1;
      this.#skip();
    }
    return out;
  }

  #skip(): void {
    const record = this.#record;
    if (record === null) return;
    while (this.#position < this.#total) {
      const volume = Math.floor(this.#position / this.#blocksPerVolume);
      if (record.has(volume, this.#position % this.#blocksPerVolume)) return;
      this.#position += 1;
    }
  }
}

/** A block copy under way at its sender. */
export interface CopySession {
  readonly purpose: CopyPurpose;
  readonly to: LinkSite;
  readonly cursor: BlockCursor;
  /** The sender's last update number, which the receiver takes over with the final batch. */
  readonly sourceLast: number;
  /** The sender's known site-3 progress, which a resynced secondary takes over. */
  readonly restoredKnown: number;
}
