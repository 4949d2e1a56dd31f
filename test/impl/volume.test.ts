/**
 * The in-memory volume: the shared volume contract, its configuration checks, and lazy allocation (a large
 * sparse volume costs only what was written).
 */

import { describe, expect, it } from 'vitest';
import {
  blockBytesMax,
  blockBytesMin,
  MemoryVolume,
  memoryVolumeBytesMax,
  VolumeConfigError,
  validateVolumeConfig,
  volumeBytesMax,
} from '../../impl/core/volume.ts';
import { pattern, volumeContract } from './volume-contract.ts';

function configReason(action: () => unknown): string {
  try {
    action();
  } catch (error) {
    expect(error).toBeInstanceOf(VolumeConfigError);
    return (error as VolumeConfigError).reason;
  }
  return 'accepted';
}

describe('MemoryVolume', () => {
  volumeContract({ create: (sizeBytes, blockBytes) => new MemoryVolume(sizeBytes, blockBytes) });

  it('refuses invalid geometry with the reason in a field', () => {
    expect(configReason(() => new MemoryVolume(4096, 1000))).toBe('blockBytesNotPowerOfTwo');
    expect(configReason(() => new MemoryVolume(4096, 256))).toBe('blockBytesOutOfRange');
    expect(configReason(() => new MemoryVolume(blockBytesMax * 4, blockBytesMax * 2))).toBe('blockBytesOutOfRange');
    expect(configReason(() => new MemoryVolume(4096, 512.5))).toBe('blockBytesOutOfRange');
    expect(configReason(() => new MemoryVolume(0, 512))).toBe('sizeNotPositive');
    expect(configReason(() => new MemoryVolume(-512, 512))).toBe('sizeNotPositive');
    expect(configReason(() => new MemoryVolume(1000, 512))).toBe('sizeNotMultipleOfBlock');
    expect(configReason(() => new MemoryVolume(memoryVolumeBytesMax + 512, 512))).toBe('sizeTooLarge');
    expect(configReason(() => new MemoryVolume(512, 512))).toBe('accepted');
    expect(configReason(() => new MemoryVolume(blockBytesMin, blockBytesMin))).toBe('accepted');
  });

  it('accepts sizes up to its named limit, and the file limit above it', () => {
    expect(configReason(() => new MemoryVolume(memoryVolumeBytesMax, 4096))).toBe('accepted');
    expect(configReason(() => validateVolumeConfig(volumeBytesMax, 4096, volumeBytesMax))).toBe('accepted');
    expect(configReason(() => validateVolumeConfig(volumeBytesMax + 4096, 4096, volumeBytesMax))).toBe('sizeTooLarge');
  });

  it('allocates blocks lazily: a 1 GiB sparse volume costs only the blocks written', () => {
    const volume = new MemoryVolume(memoryVolumeBytesMax, 4096);
    expect(volume.allocatedBlocks).toBe(0);
    volume.write(memoryVolumeBytesMax - 10, pattern(10, 5));
    volume.write(4095, pattern(2, 6));
    expect(volume.allocatedBlocks).toBe(3);
    expect(volume.read(memoryVolumeBytesMax - 10, 10)).toEqual(pattern(10, 5));
    expect(volume.read(1 << 20, 4096)).toEqual(new Uint8Array(4096));
    expect(volume.allocatedBlocks).toBe(3);
    volume.close();
    expect(volume.allocatedBlocks).toBe(0);
  });
});
