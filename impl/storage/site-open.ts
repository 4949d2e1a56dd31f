/**
 * Opening one storage system over its storage: new volumes and journal in memory, or a site directory with
 * a file per volume, a segmented journal and a state file (created, or reopened after a stop or a crash:
 * the journal's torn tail is cut, the state file read back). The in-process cluster and the site process
 * (`site-serve.ts`) open their sites here, so a site directory means the same thing to both.
 *
 * Layout of a site directory: `volume-N.img` (one per volume), `journal/` (FileJournal segments),
 * `state.json` (the site's durable state, {@link SiteDurableState}).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../core/errors.ts';
import { MemoryJournal, type Journal, type JournalLimits } from '../core/journal.ts';
import { FileJournal } from './journal-file.ts';
import { readStateFile, StateFileError, writeStateFile } from './state-file.ts';
import { epochInitial, StorageSystem, type SiteConfig, type SiteDurableState } from '../core/storage-system.ts';
import { epochMax } from '../core/messages.ts';
import { MemoryVolume, type Volume } from '../core/volume.ts';
import { FileVolume } from './volume-file.ts';

/** The format tag of a site's state file. */
export const siteStateFormat = 'threesite-site-state-v1';

/** Where a site keeps its data: in memory, or in a directory of its own. */
export type SiteStorage = { kind: 'memory' } | { kind: 'file'; dir: string; reopen: boolean };

/** The configuration of site `id` of a consistency group: the group's volumes and limits, the site's id. */
export function siteConfigOf(
  id: SiteConfig['id'],
  group: Pick<SiteConfig, 'volumeCount' | 'volumeBytes' | 'blockBytes' | 'fencePolicy' | 'inFlightWritesMax'>,
  flushEachWrite: boolean,
): SiteConfig {
  const { volumeCount, volumeBytes, blockBytes, fencePolicy, inFlightWritesMax } = group;
  return { id, volumeCount, volumeBytes, blockBytes, fencePolicy, inFlightWritesMax, flushEachWrite };
}

/** A storage system over new memory, or over a site directory (created, or reopened when `reopen`). */
export function openSite(config: SiteConfig, journalLimits: JournalLimits, storage: SiteStorage): StorageSystem {
  if (storage.kind === 'memory') {
    const volumes = Array.from({ length: config.volumeCount }, () => new MemoryVolume(config.volumeBytes, config.blockBytes));
    return new StorageSystem(config, volumes, new MemoryJournal(journalLimits), null, null);
  }
  const dir = storage.dir;
  fs.mkdirSync(path.join(dir, 'journal'), { recursive: true });
  const stateFile = path.join(dir, 'state.json');
  const saved = storage.reopen ? decodeSiteState(stateFile, readStateFile(stateFile, siteStateFormat)) : null;
  if (storage.reopen && saved === null) throw new ConfigError('storage.dir', dir, 'site state file missing');
  const volumes: Volume[] = Array.from({ length: config.volumeCount }, (_, v) =>
    FileVolume.open(path.join(dir, `volume-${v}.img`), config.volumeBytes, config.blockBytes),
  );
  const journal: Journal = FileJournal.open(path.join(dir, 'journal'), journalLimits).journal;
  const save = (state: SiteDurableState): void => writeStateFile(stateFile, siteStateFormat, encodeSiteState(state));
  return new StorageSystem(config, volumes, journal, saved, save);
}

/**
 * Whether a directory already holds a site: its state file or its first volume. A directory with volumes but
 * no state file is reopened, and refused for the missing file, never taken for a new site (which would come
 * up as a writable primary over old data).
 */
export function siteExists(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'state.json')) || fs.existsSync(path.join(dir, 'volume-0.img'));
}

/** The site state file's JSON form: bitmaps in base64. */
function encodeSiteState(state: SiteDurableState): unknown {
  return { ...state, changed: state.changed.map((bitmap) => Buffer.from(bitmap).toString('base64')) };
}

/**
 * The site state file's content back. The epoch is checked where it enters (an integer in [1, epochMax]);
 * a file written before epochs existed has none and is read as {@link epochInitial}, the epoch its
 * cluster had then.
 */
function decodeSiteState(file: string, value: unknown): SiteDurableState | null {
  if (value === null) return null;
  const record = value as Omit<SiteDurableState, 'changed' | 'epoch'> & { changed: string[]; epoch?: unknown };
  const epoch = 'epoch' in record ? record.epoch : epochInitial;
  if (typeof epoch !== 'number' || !Number.isSafeInteger(epoch) || epoch < epochInitial || epoch > epochMax) {
    throw new StateFileError(file, 'wrongFormat', `epoch ${JSON.stringify(epoch)} is not an integer in [${epochInitial}, ${epochMax}]`);
  }
  return { ...record, epoch, changed: record.changed.map((text) => new Uint8Array(Buffer.from(text, 'base64'))) };
}
