/**
 * The behaviour every {@link Volume} backend shares, run by each backend's test file against its own
 * factory: range checks at every boundary, block queries, and a fast-check property that any sequence of
 * writes reads back like a plain `Uint8Array`.
 */

import fc from 'fast-check';
import { expect, it } from 'vitest';
import { InvariantError } from '../../impl/core/invariant.ts';
import { digestVolumes, ioBytesMax, OutOfRangeError, type Volume } from '../../impl/core/volume.ts';
import { createHash } from 'node:crypto';

/** Makes a fresh all-zero volume of the given geometry; `reopen` (optional) closes and reopens one. */
export interface VolumeFactory {
  create(sizeBytes: number, blockBytes: number): Volume;
  reopen?(volume: Volume): Volume;
}

/** A byte pattern that differs at every position, so a misplaced copy shows. */
export function pattern(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) out[i] = (seed * 31 + i * 7 + 1) & 0xff;
  return out;
}

function expectOutOfRange(action: () => unknown, reason: OutOfRangeError['reason']): void {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(OutOfRangeError);
    expect((error as OutOfRangeError).reason).toBe(reason);
    return;
  }
  expect.unreachable(`expected OutOfRangeError ${reason}`);
}

/** Registers the shared tests (call inside a `describe`). */
export function volumeContract(factory: VolumeFactory): void {
  it('reads zeros where nothing was written', () => {
    const volume = factory.create(8192, 512);
    expect(volume.sizeBytes).toBe(8192);
    expect(volume.blockBytes).toBe(512);
    expect(volume.read(0, 8192)).toEqual(new Uint8Array(8192));
    volume.close();
  });

  it('writes across block boundaries and reads back, including unaligned ranges', () => {
    const volume = factory.create(4096, 512);
    const data = pattern(1000, 3);
    volume.write(300, data);
    expect(volume.read(300, 1000)).toEqual(data);
    expect(volume.read(0, 300)).toEqual(new Uint8Array(300));
    expect(volume.read(1300, 100)).toEqual(new Uint8Array(100));
    expect(volume.read(299, 3)).toEqual(Uint8Array.of(0, data[0]!, data[1]!));
    volume.close();
  });

  it('keeps its own copy of written data and returns copies on read', () => {
    const volume = factory.create(1024, 512);
    const data = pattern(16, 1);
    volume.write(0, data);
    data.fill(0);
    const read = volume.read(0, 16);
    expect(read).toEqual(pattern(16, 1));
    read.fill(9);
    expect(volume.read(0, 16)).toEqual(pattern(16, 1));
    volume.close();
  });

  it('accepts a write ending exactly at the end and refuses one byte past', () => {
    const volume = factory.create(2048, 512);
    volume.write(2048 - 10, pattern(10, 2));
    expect(volume.read(2038, 10)).toEqual(pattern(10, 2));
    expectOutOfRange(() => volume.write(2048 - 10, pattern(11, 2)), 'pastEnd');
    expectOutOfRange(() => volume.read(2048 - 10, 11), 'pastEnd');
    expectOutOfRange(() => volume.blocksOf(2048 - 10, 11), 'pastEnd');
    expectOutOfRange(() => volume.write(2048, pattern(1, 2)), 'pastEnd');
    expectOutOfRange(() => volume.read(2049, 0), 'pastEnd');
    volume.close();
  });

  it('refuses negative and non-integer offsets and lengths', () => {
    const volume = factory.create(2048, 512);
    expectOutOfRange(() => volume.write(-1, pattern(1, 0)), 'negative');
    expectOutOfRange(() => volume.read(-1, 1), 'negative');
    expectOutOfRange(() => volume.read(0, -1), 'negative');
    expectOutOfRange(() => volume.read(0.5, 1), 'notInteger');
    expectOutOfRange(() => volume.read(0, 1.5), 'notInteger');
    expectOutOfRange(() => volume.write(Number.NaN, pattern(1, 0)), 'notInteger');
    expectOutOfRange(() => volume.blocksOf(1.5, 1), 'notInteger');
    expectOutOfRange(() => volume.read(0, Number.POSITIVE_INFINITY), 'notInteger');
    volume.close();
  });

  it('refuses a single read longer than ioBytesMax', () => {
    const volume = factory.create(2048, 512);
    expectOutOfRange(() => volume.read(0, ioBytesMax + 1), 'tooLarge');
    volume.close();
  });

  it('carries the facts of a refused range in the error', () => {
    const volume = factory.create(2048, 512);
    try {
      volume.read(2000, 100);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ offset: 2000, length: 100, sizeBytes: 2048, reason: 'pastEnd' });
    }
    volume.close();
  });

  it('handles zero-length reads and writes anywhere up to the end', () => {
    const volume = factory.create(1024, 512);
    volume.write(0, new Uint8Array(0));
    volume.write(1024, new Uint8Array(0));
    expect(volume.read(1024, 0)).toEqual(new Uint8Array(0));
    expect(volume.read(0, 1024)).toEqual(new Uint8Array(1024));
    volume.close();
  });

  it('says which blocks a range touches', () => {
    const volume = factory.create(4096, 512);
    expect(volume.blocksOf(0, 512)).toEqual({ first: 0, count: 1 });
    expect(volume.blocksOf(0, 513)).toEqual({ first: 0, count: 2 });
    expect(volume.blocksOf(511, 2)).toEqual({ first: 0, count: 2 });
    expect(volume.blocksOf(512, 512)).toEqual({ first: 1, count: 1 });
    expect(volume.blocksOf(100, 0)).toEqual({ first: 0, count: 0 });
    expect(volume.blocksOf(4096, 0)).toEqual({ first: 8, count: 0 });
    expect(volume.blocksOf(0, 4096)).toEqual({ first: 0, count: 8 });
    expect(volume.blocksOf(4095, 1)).toEqual({ first: 7, count: 1 });
    volume.close();
  });

  it('flushes, and any call after close is an invariant violation', () => {
    const volume = factory.create(1024, 512);
    volume.write(0, pattern(4, 0));
    volume.flush();
    volume.close();
    for (const call of [
      () => volume.read(0, 1),
      () => volume.write(0, pattern(1, 0)),
      () => volume.blocksOf(0, 1),
      () => volume.flush(),
      () => volume.close(),
    ]) {
      expect(call).toThrow(InvariantError);
    }
  });

  it('digests like SHA-256 of the concatenated bytes', () => {
    const a = factory.create(1024, 512);
    const b = factory.create(2048, 1024);
    a.write(10, pattern(100, 1));
    b.write(1500, pattern(300, 2));
    const reference = new Uint8Array(3072);
    reference.set(pattern(100, 1), 10);
    reference.set(pattern(300, 2), 1024 + 1500);
    expect(digestVolumes([a, b])).toBe(createHash('sha256').update(reference).digest('hex'));
    expect(digestVolumes([b, a])).not.toBe(digestVolumes([a, b]));
    a.close();
    b.close();
  });

  it('property: any sequence of writes reads back like a plain Uint8Array', () => {
    const blockBytes = 512;
    const sizeBytes = 8 * blockBytes;
    const write = fc
      .record({ offset: fc.integer({ min: 0, max: sizeBytes }), length: fc.integer({ min: 0, max: 3 * blockBytes }), seed: fc.nat(255) })
      .map(({ offset, length, seed }) => ({ offset, data: pattern(Math.min(length, sizeBytes - offset), seed) }));
    const step = fc.oneof(
      { weight: 4, arbitrary: write.map((w) => ({ kind: 'write' as const, ...w })) },
      { weight: 1, arbitrary: fc.constant({ kind: 'reopen' as const }) },
    );
    fc.assert(
      fc.property(fc.array(step, { minLength: 0, maxLength: 30 }), (steps) => {
        let volume = factory.create(sizeBytes, blockBytes);
        const reference = new Uint8Array(sizeBytes);
        try {
          for (const s of steps) {
            if (s.kind === 'write') {
              volume.write(s.offset, s.data);
              reference.set(s.data, s.offset);
              const { first, count } = volume.blocksOf(s.offset, s.data.length);
              expect(first).toBe(Math.floor(s.offset / blockBytes));
              expect(count).toBe(s.data.length === 0 ? 0 : Math.ceil((s.offset + s.data.length) / blockBytes) - first);
            } else if (factory.reopen !== undefined) {
              volume = factory.reopen(volume);
            }
          }
          expect(volume.read(0, sizeBytes)).toEqual(reference);
          expect(digestVolumes([volume])).toBe(createHash('sha256').update(reference).digest('hex'));
        } finally {
          volume.close();
        }
      }),
      { numRuns: 100 },
    );
  });
}
