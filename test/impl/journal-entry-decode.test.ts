/**
 * Decoding entries whose header passes its own checksum but holds an impossible field (a length above
 * entryDataBytesMax, an update number 0 or beyond 2^53 - 1, an offset beyond 2^53 - 1): the bytes a writer
 * with a bug, or a stale block that happens to check out, would leave. Recovery trusts `headerSound` and
 * `bytes` to decide whether it can step over the entry, so each case checks the reason, both flags and the
 * value named in the detail; a length of exactly entryDataBytesMax is no corruption.
 */

import { crc32c } from '@node-rs/crc32';
import { describe, expect, it } from 'vitest';
import { CorruptEntryError, decodeEntry, encodeEntry, entryDataBytesMax, entryHeaderBytes } from '../../impl/core/journal.ts';
import { makeEntry } from './journal-contract.ts';

/** Header field offsets, from the encoding table in impl/core/journal.ts. */
const at = { length: 4, updateNumber: 8, offset: 16, checksum: 28, headerChecksum: 32 } as const;

/**
 * A valid encoded entry with some header fields overwritten, then both checksums recomputed over the
 * result, so that only the field's range can tell it is wrong.
 */
function crafted(patch: (view: DataView) => void, dataBytes = 16): Uint8Array {
  const bytes = encodeEntry(makeEntry(5, dataBytes));
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  patch(view);
  const data = bytes.subarray(entryHeaderBytes);
  view.setUint32(at.checksum, crc32c(data, crc32c(bytes.subarray(0, at.checksum))), true);
  view.setUint32(at.headerChecksum, crc32c(bytes.subarray(0, at.headerChecksum)), true);
  return bytes;
}

function setU64(view: DataView, offset: number, value: bigint): void {
  view.setBigUint64(offset, value, true);
}

describe('decodeEntry of a header-sound entry with an impossible field', () => {
  it('calls a length above entryDataBytesMax corrupt (length), with an unsound header and no size to skip', () => {
    const bytes = crafted((view) => view.setUint32(at.length, entryDataBytesMax + 1, true));
    const result = decodeEntry(bytes, 0, 'segment 3');
    expect(result.kind).toBe('corrupt');
    if (result.kind !== 'corrupt') return;
    expect(result.error).toBeInstanceOf(CorruptEntryError);
    expect([result.error.why, result.error.where, result.error.at]).toEqual(['length', 'segment 3', 0]);
    // A wild length cannot be trusted to find the next entry.
    expect([result.headerSound, result.bytes]).toEqual([false, 0]);
    expect(result.error.message).toContain(`length ${entryDataBytesMax + 1} > ${entryDataBytesMax}`);
  });

  it('accepts a length of exactly entryDataBytesMax: the bytes after the header are then torn, not corrupt', () => {
    const bytes = crafted((view) => view.setUint32(at.length, entryDataBytesMax, true));
    const result = decodeEntry(bytes, 0);
    expect(result).toEqual({ kind: 'torn', availableBytes: bytes.length, neededBytes: entryHeaderBytes + entryDataBytesMax });
  });

  it('decodes an entry of exactly entryDataBytesMax data', () => {
    const bytes = encodeEntry(makeEntry(5, entryDataBytesMax));
    const result = decodeEntry(bytes, 0);
    expect(result.kind === 'ok' && [result.bytes, result.entry.data.length]).toEqual([entryHeaderBytes + entryDataBytesMax, entryDataBytesMax]);
  });

  for (const [name, value, shown] of [
    ['0', 0n, '0'],
    ['2^53', 2n ** 53n, String(2 ** 53)],
    ['2^64 - 1', 2n ** 64n - 1n, String(2 ** 64)],
  ] as const) {
    it(`calls update number ${name} corrupt (updateNumber), header sound, its full size to skip`, () => {
      const bytes = crafted((view) => setU64(view, at.updateNumber, value));
      const result = decodeEntry(bytes, 0);
      expect(result.kind).toBe('corrupt');
      if (result.kind !== 'corrupt') return;
      expect(result.error.why).toBe('updateNumber');
      expect([result.headerSound, result.bytes]).toEqual([true, bytes.length]);
      expect(result.error.message).toContain(`update number ${shown}`);
    });
  }

  it('accepts update numbers 1 and 2^53 - 1, the ends of the range', () => {
    for (const u of [1, Number.MAX_SAFE_INTEGER]) {
      const result = decodeEntry(crafted((view) => setU64(view, at.updateNumber, BigInt(u))), 0);
      expect(result.kind === 'ok' && result.entry.updateNumber).toBe(u);
    }
  });

  it('calls an offset of 2^53 corrupt (offset), header sound, its full size to skip', () => {
    const bytes = crafted((view) => setU64(view, at.offset, 2n ** 53n), 40);
    const result = decodeEntry(bytes, 0);
    expect(result.kind).toBe('corrupt');
    if (result.kind !== 'corrupt') return;
    expect(result.error.why).toBe('offset');
    expect([result.headerSound, result.bytes]).toEqual([true, entryHeaderBytes + 40]);
    expect(result.error.message).toContain(`offset ${2 ** 53}`);
  });

  it('accepts an offset of 2^53 - 1', () => {
    const result = decodeEntry(crafted((view) => setU64(view, at.offset, BigInt(Number.MAX_SAFE_INTEGER))), 0);
    expect(result.kind === 'ok' && result.entry.offset).toBe(Number.MAX_SAFE_INTEGER);
  });

  it('names the source "buffer" when the caller names none', () => {
    const result = decodeEntry(crafted((view) => setU64(view, at.offset, 2n ** 60n)), 0);
    expect(result.kind === 'corrupt' && result.error.where).toBe('buffer');
  });

  it('names the bad magic and the entry whose data checksum fails in the detail', () => {
    const badMagic = encodeEntry(makeEntry(5));
    badMagic[0] = 0x00;
    const magic = decodeEntry(badMagic, 0);
    expect(magic.kind === 'corrupt' && magic.error.message).toContain('magic 0x314a5300');
    const badData = encodeEntry(makeEntry(5));
    badData[entryHeaderBytes]! ^= 0x01;
    const data = decodeEntry(badData, 0);
    expect(data.kind === 'corrupt' && data.error.message).toContain('entry u=5 checksum mismatch');
    const badHeader = encodeEntry(makeEntry(5));
    badHeader[at.offset]! ^= 0x01;
    const header = decodeEntry(badHeader, 0);
    expect(header.kind === 'corrupt' && header.error.message).toContain('header checksum mismatch');
  });
});
