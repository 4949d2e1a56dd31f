/**
 * Opening one storage system over its storage: new volumes and journal in memory, or a site directory with
 * a file per volume, a segmented journal and a state file (created, or reopened after a stop or a crash:
 * the journal's torn tail is cut, the state file read back). The in-process cluster and the site process
 * (`site-serve.ts`) open their sites here, so a site directory means the same thing to both.
 *
 * Layout of a site directory: `volume-N.img` (one per volume), `journal/` (FileJournal segments),
 * `state.json` (the site's durable state, {@link SiteDurableState}).
 *
 * The journal is the write-ahead log of a sync member's volumes (claims 4, 6, 10: every write is journaled
 * with its update number). Two rules keep the volumes whole across a crash:
 * - **redo at restart**: after a shutdown that was not clean, every entry still in the journal is written
 *   again into the volumes, in update-number order, and the volumes flushed, before the storage system is
 *   made: a volume write the crash tore is repaired before the site serves anything. (Site 3's journal
 *   holds what it has not restored yet, and restoring that early would break write-order fidelity, P2: site
 *   3 redoes only the entries it had restored, below.)
 * - **no going back at restart**: the journal's saved floor may be stale after a crash (journal-file.ts);
 *   its floor record gives the real one. The entries up to it are redone into the volumes (site 3: exactly
 *   those, which it had restored in order before the crash, so its image is again the one it had) and
 *   trimmed, so site 3's restored number (its journal's floor) is what it was, and the site never restores
 *   again, as new restores, what it had restored (P2).
 * - **flush before discard**: the volumes are flushed before the journal makes a trim or a reset durable
 *   (`FileJournalOptions.beforeDurableTrim`), so an entry leaves the journal only once its write is on disk.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { ConfigError } from '../core/errors.ts';
import { MemoryJournal, type Journal, type JournalLimits } from '../core/journal.ts';
import { FileJournal, type RecoveryReport } from './journal-file.ts';
import { readStateFile, StateFileError, writeStateFile } from './state-file.ts';
import { epochInitial, StorageSystem, type SiteConfig, type SiteDurableState } from '../core/storage-system.ts';
import { epochMax } from '../core/messages.ts';
import { MemoryVolume, type Volume } from '../core/volume.ts';
import { FileVolume } from './volume-file.ts';
import { siteDirMode } from './file-modes.ts';

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

/** What opening a site directory found and repaired. */
export interface SiteRecovery {
  /** What the journal's recovery found (torn tail cut, clean shutdown or not). */
  readonly journal: RecoveryReport;
  /**
   * Journal entries written again into the volumes: 0 after a clean shutdown; at a sync member every entry
   * the journal held, at site 3 those up to the floor record (the ones it had restored).
   */
  readonly redoneEntries: number;
  /** Entries trimmed to bring the journal's stale saved floor up to its floor record (0 without one). */
  readonly floorRecordTrimmed: number;
}

/** Journal entries read at a time while redoing a journal. */
export const redoBatchEntries = 256;

/**
 * Writes the entries of `journal` up to `through` (all of them by default) into `volumes` again, in
 * update-number order, and flushes them: the redo of a write-ahead log after a crash. Returns the entries
 * written.
 */
export function redoJournal(journal: Journal, volumes: readonly Volume[], through: number = journal.last): number {
  let after = journal.first - 1;
  let redone = 0;
  while (after < through) {
    const batch = journal.readAfter(after, Math.min(redoBatchEntries, through - after));
    for (const entry of batch) {
      (volumes[entry.volume] as Volume).write(entry.offset, entry.data);
      after = entry.updateNumber;
      redone += 1;
    }
  }
  for (const volume of volumes) volume.flush();
  return redone;
}

/**
 * A storage system over new memory, or over a site directory (created, or reopened when `reopen`: the
 * journal recovered and, after a crash, redone into the volumes; `onRecovery` hears what was found).
 */
export function openSite(config: SiteConfig, journalLimits: JournalLimits, storage: SiteStorage, onRecovery?: (recovery: SiteRecovery) => void): StorageSystem {
  if (storage.kind === 'memory') {
    const volumes = Array.from({ length: config.volumeCount }, () => new MemoryVolume(config.volumeBytes, config.blockBytes));
    return new StorageSystem(config, volumes, new MemoryJournal(journalLimits), null, null);
  }
  const dir = storage.dir;
  fs.mkdirSync(dir, { recursive: true, mode: siteDirMode });
  fs.mkdirSync(path.join(dir, 'journal'), { recursive: true, mode: siteDirMode });
  const stateFile = path.join(dir, 'state.json');
  const saved = storage.reopen ? decodeSiteState(stateFile, readStateFile(stateFile, siteStateFormat)) : null;
  if (storage.reopen && saved === null) throw new ConfigError('storage.dir', dir, 'site state file missing');
  const volumes: Volume[] = Array.from({ length: config.volumeCount }, (_, v) =>
    FileVolume.open(path.join(dir, `volume-${v}.img`), config.volumeBytes, config.blockBytes),
  );
  const flushVolumes = (): void => {
    for (const volume of volumes) volume.flush();
  };
  const opened = FileJournal.open(path.join(dir, 'journal'), journalLimits, { beforeDurableTrim: flushVolumes });
  const journal: Journal = opened.journal;
  const crashed = storage.reopen && !opened.recovery.cleanShutdown;
  const recorded = crashed ? opened.recovery.floorRecorded : null;
  let redoneEntries = 0;
  if (crashed && config.id !== 3) redoneEntries = redoJournal(journal, volumes);
  else if (recorded !== null) redoneEntries = redoJournal(journal, volumes, recorded);
  // The volumes hold every entry up to the record (redone and flushed just now): they may leave the journal.
  const floorRecordTrimmed = recorded === null ? 0 : journal.trimThrough(recorded);
  onRecovery?.({ journal: opened.recovery, redoneEntries, floorRecordTrimmed });
  const save = (state: SiteDurableState): void => writeStateFile(stateFile, siteStateFormat, encodeSiteState(state));
  return new StorageSystem(config, volumes, journal, saved, save);
}

/** Where {@link rebuildSite} moves what it will not start from: `damaged-<time>` in the site directory. */
export const damagedDirPrefix = 'damaged-';

/**
 * Rebuilds a site whose state file or journal is damaged (the operator's `threesite serve --rebuild`): the
 * state file and the journal are moved aside (kept for a post-mortem, never read again), and the site is
 * written anew as a failed site that knows nothing: a sync member with every block of every volume in its
 * changed-block record (its resync copies them all from the primary) and an empty journal; site 3 with an
 * empty journal (its caller marks its async pair as needing a full copy). Its volumes stay: every block is
 * copied over anyway. Returns the directory the damaged files went to.
 */
export function rebuildSite(config: SiteConfig, dir: string, nowIso: string): string {
  const aside = path.join(dir, `${damagedDirPrefix}${nowIso.replace(/[:.]/g, '-')}`);
  fs.mkdirSync(aside, { recursive: true, mode: siteDirMode });
  // A directory that holds none of them (a replaced disk) is rebuilt the same way.
  for (const name of ['state.json', 'state.json.tmp', 'journal']) {
    const from = path.join(dir, name);
    if (fs.existsSync(from)) fs.renameSync(from, path.join(aside, name));
  }
  fs.mkdirSync(path.join(dir, 'journal'), { recursive: true, mode: siteDirMode });
  const blocks = config.volumeBytes / config.blockBytes;
  const everyBlock = (): Uint8Array => {
    const bitmap = new Uint8Array(Math.ceil(blocks / 8)).fill(0xff);
    // Bits past the last block stay clear: the record holds blocks of the volume only.
    if (blocks % 8 !== 0) bitmap[bitmap.length - 1] = (1 << (blocks % 8)) - 1;
    return bitmap;
  };
  const state: SiteDurableState = {
    role: config.id === 3 ? 'remote' : 'secondary',
    // The first epoch: the operator's recover step carries the cluster's, which the site then takes.
    epoch: epochInitial,
    mode: 'failed',
    up: false,
    fenced: false,
    knownRestored: 0,
    takeover: null,
    ackedAlone: 0,
    syncPair: 'suspended',
    source: 1,
    changed: Array.from({ length: config.volumeCount }, () => (config.id === 3 ? new Uint8Array(Math.ceil(blocks / 8)) : everyBlock())),
  };
  writeStateFile(path.join(dir, 'state.json'), siteStateFormat, encodeSiteState(state));
  return aside;
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
