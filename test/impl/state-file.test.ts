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
});
