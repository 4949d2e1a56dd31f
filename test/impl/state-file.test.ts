/** The atomic state file: round trip, replacement, missing file, and each way a file can be unreadable. */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { readStateFile, StateFileError, writeStateFile } from '../../impl/storage/state-file.ts';

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-state-'));
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

describe('state file', () => {
  it('round-trips and replaces atomically, leaving no temporary file', () => {
    const file = path.join(root, 'a.json');
    expect(readStateFile(file, 'f')).toBeNull();
    writeStateFile(file, 'f', { role: 'primary', n: 1 });
    writeStateFile(file, 'f', { role: 'secondary', n: 2 });
    expect(readStateFile(file, 'f')).toEqual({ role: 'secondary', n: 2 });
    expect(fs.readdirSync(root)).toEqual(['a.json']);
  });

  it('refuses a file of another format, not JSON, or without a value', () => {
    const file = path.join(root, 'b.json');
    writeStateFile(file, 'f', 1);
    expect(() => readStateFile(file, 'g')).toThrow(StateFileError);
    fs.writeFileSync(file, '{"format":');
    expect(() => readStateFile(file, 'f')).toThrow(/not valid JSON/);
    fs.writeFileSync(file, '{"format":"f"}');
    expect(() => readStateFile(file, 'f')).toThrow(/not a f file/);
  });

  it('is readable by its owner alone', () => {
    const file = path.join(root, 'c.json');
    writeStateFile(file, 'f', { n: 1 });
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
  });

  it('refuses a file with any one character of its value changed, naming the file', () => {
    const file = path.join(root, 'd.json');
    // A site's changed-block record (base64 bitmaps) is what a damaged byte must never silently alter.
    writeStateFile(file, 'f', { role: 'secondary', changed: [Buffer.from([0, 0b100, 0, 0xff]).toString('base64')], ackedAlone: 12 });
    const text = fs.readFileSync(file, 'utf8');
    const valueStart = text.indexOf('"value":') + '"value":'.length;
    let refused = 0;
    for (let at = valueStart; at < text.length - 1; at += 1) {
      const replacement = text[at] === 'A' ? 'B' : text[at] === '1' ? '3' : text[at] === 's' ? 'S' : null;
      if (replacement === null) continue;
      fs.writeFileSync(file, text.slice(0, at) + replacement + text.slice(at + 1));
      let error: unknown;
      try {
        readStateFile(file, 'f');
      } catch (caught) {
        error = caught;
      }
      expect(error, `character ${at}`).toBeInstanceOf(StateFileError);
      expect(error).toMatchObject({ reason: 'checksum', file });
      expect((error as Error).message).toContain(file);
      refused += 1;
    }
    expect(refused).toBeGreaterThan(5);
    fs.writeFileSync(file, text);
    expect(readStateFile(file, 'f')).toMatchObject({ ackedAlone: 12 });
  });
});
