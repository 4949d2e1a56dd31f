/**
 * The file volume: the shared volume contract (with close and reopen inside the property), sparse files,
 * persistence across reopen, and the refusal to reopen a file with another size.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { FileVolume } from '../../impl/storage/volume-file.ts';
import { VolumeConfigError, volumeBytesMax, type Volume } from '../../impl/core/volume.ts';
import { pattern, volumeContract } from './volume-contract.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-volume-'));
let files = 0;
function freshPath(): string {
  files += 1;
  return path.join(root, `volume-${files}.img`);
}

afterAll(() => {
  fs.rmSync(root, { recursive: true, force: true });
});

describe('FileVolume', () => {
  volumeContract({
    create: (sizeBytes, blockBytes) => FileVolume.open(freshPath(), sizeBytes, blockBytes),
    reopen: (volume: Volume) => {
      const file = volume as FileVolume;
      file.close();
      return FileVolume.open(file.path, file.sizeBytes, file.blockBytes);
    },
  });

  it('keeps data across close and reopen', () => {
    const file = freshPath();
    const volume = FileVolume.open(file, 8192, 4096);
    volume.write(4000, pattern(200, 9));
    volume.flush();
    volume.close();
    const again = FileVolume.open(file, 8192, 4096);
    expect(again.read(4000, 200)).toEqual(pattern(200, 9));
    expect(again.read(0, 4000)).toEqual(new Uint8Array(4000));
    again.close();
  });

  it('creates a sparse file of exactly sizeBytes', () => {
    const file = freshPath();
    const sizeBytes = 1024 * 1024 * 1024;
    const volume = FileVolume.open(file, sizeBytes, 4096);
    volume.write(sizeBytes - 4096, pattern(4096, 1));
    const stat = fs.statSync(file);
    expect(stat.size).toBe(sizeBytes);
    expect(stat.blocks * 512).toBeLessThan(1024 * 1024);
    expect(volume.read(sizeBytes - 4096, 4096)).toEqual(pattern(4096, 1));
    volume.close();
  });

  it('refuses to reopen a file with another size, and a configuration above volumeBytesMax', () => {
    const file = freshPath();
    FileVolume.open(file, 4096, 512).close();
    expect(() => FileVolume.open(file, 8192, 512)).toThrow(VolumeConfigError);
    try {
      FileVolume.open(file, 2048, 512);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ reason: 'sizeMismatch', sizeBytes: 2048 });
    }
    try {
      FileVolume.open(freshPath(), volumeBytesMax * 2, 4096);
      expect.unreachable();
    } catch (error) {
      expect(error).toMatchObject({ reason: 'sizeTooLarge' });
    }
  });
});
