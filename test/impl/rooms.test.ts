/**
 * The rooms of `impl/` (impl/README.md): each folder is a layer, and an import runs only downward, to the rooms
 * a folder's README names. The core does no I/O. Checked on the source text of every file, so a new import
 * that runs upward or a core file that opens a file fails here, not in a review.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const implDir = path.join(import.meta.dirname, '..', '..', 'impl');

/** The rooms, bottom first, and what each may import: rooms of impl/, files of model/, and packages. */
const rooms = {
  core: { rooms: ['core'], model: ['observation.ts'], packages: ['@node-rs/crc32', 'node:crypto'] },
  storage: { rooms: ['core', 'storage'], model: [], packages: ['node:fs', 'node:path', '@node-rs/crc32'] },
  cluster: { rooms: ['core', 'storage', 'cluster'], model: ['observation.ts'], packages: ['node:fs', 'node:path'] },
  net: { rooms: ['core', 'net'], model: [], packages: ['node:net', 'node:tls', 'node:crypto', 'node:events'] },
  site: { rooms: ['core', 'storage', 'cluster', 'net', 'site'], model: ['observation.ts'], packages: ['*'] },
  drivers: { rooms: ['core', 'storage', 'cluster', 'net', 'site', 'drivers'], model: ['observation.ts'], packages: ['*'] },
} as const satisfies Record<string, { rooms: readonly string[]; model: readonly string[]; packages: readonly string[] }>;

type Room = keyof typeof rooms;

/** Every import specifier of a TypeScript source (static and dynamic). */
function importsOf(source: string): string[] {
  const patterns = [
    /^\s*(?:import|export)\b[^;'"]*?\bfrom\s*(['"])([^'"\n]+)\1/gm, // import { a } from '...' (over several lines too)
    /^\s*import\s*(['"])([^'"\n]+)\1/gm, // import '...'
    /\bimport\(\s*(['"])([^'"\n]+)\1\s*\)/g, // import('...')
  ];
  return patterns.flatMap((pattern) => [...source.matchAll(pattern)].map((match) => match[2]!));
}

/** The rule an import of `file` (a path under impl/) breaks, or null. */
function breach(file: string, specifier: string): string | null {
  const room = file.split('/')[0] as Room;
  const allowed = rooms[room];
  if (allowed === undefined) return `${file} is not in a room (${Object.keys(rooms).join(', ')})`;
  if (specifier.startsWith('.')) {
    const target = path.posix.normalize(path.posix.join(path.posix.dirname(file), specifier));
    if (target.startsWith('../model/')) {
      const modelFile = target.slice('../model/'.length);
      return (allowed.model as readonly string[]).includes(modelFile) ? null : `${file} imports model/${modelFile}`;
    }
    const targetRoom = target.split('/')[0]!;
    return (allowed.rooms as readonly string[]).includes(targetRoom) ? null : `${file} imports ${target}: ${room} may import only ${allowed.rooms.join(', ')}`;
  }
  const packages = allowed.packages as readonly string[];
  if (packages.includes('*')) return null;
  const name = specifier.startsWith('@') ? specifier.split('/').slice(0, 2).join('/') : specifier.split('/')[0]!;
  return packages.includes(name) ? null : `${file} imports ${name}: ${room} may import only ${packages.join(', ')}`;
}

function sources(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = path.join(dir, name);
    const relative = prefix === '' ? name : `${prefix}/${name}`;
    if (statSync(full).isDirectory()) return sources(full, relative);
    return name.endsWith('.ts') ? [relative] : [];
  });
}

describe('impl/ rooms', () => {
  const files = sources(implDir);

  it('every source file lives in a room and every room has its README', () => {
    expect(files.length).toBeGreaterThan(25);
    for (const file of files) expect(Object.keys(rooms), file).toContain(file.split('/')[0]);
    for (const room of Object.keys(rooms)) expect(statSync(path.join(implDir, room, 'README.md')).isFile(), room).toBe(true);
  });

  it('every import runs downward, and the core does no I/O', () => {
    const breaches = files.flatMap((file) =>
      importsOf(readFileSync(path.join(implDir, file), 'utf8')).flatMap((specifier) => breach(file, specifier) ?? []),
    );
    expect(breaches).toEqual([]);
  });

  it('catches the breaches it exists for', () => {
    expect(breach('core/storage-system.ts', '../cluster/transport.ts')).toMatch(/core may import only core/);
    expect(breach('core/volume.ts', 'node:fs')).toMatch(/imports node:fs/);
    expect(breach('core/judge.ts', '../../model/semantics.ts')).toMatch(/imports model\/semantics.ts/);
    expect(breach('storage/state-file.ts', '../cluster/cluster-config.ts')).toMatch(/storage may import only/);
    expect(breach('net/nbd-server.ts', '../site/site-node.ts')).toMatch(/net may import only/);
    expect(breach('site/site-node.ts', '../drivers/driver.ts')).toMatch(/site may import only/);
    expect(breach('site/site-node.ts', '../core/messages.ts')).toBeNull();
    expect(importsOf("import { a } from './a.ts';\nconst b = await import('../b.ts');\nimport './c.ts';")).toEqual(['./a.ts', './c.ts', '../b.ts']);
  });
});
