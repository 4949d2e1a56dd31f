/**
 * The configuration of a three-site cluster and its validation: every limit checked where it enters, with a
 * typed {@link ConfigError} naming the field.
 */

import { ConfigError } from '../core/errors.ts';
import {
  entriesMaxCeiling,
  entryDataBytesMax,
  entryHeaderBytes,
  memoryJournalBytesMaxCeiling,
  type JournalLimits,
} from '../core/journal.ts';
import { fileJournalBytesMaxCeiling } from '../storage/journal-file.ts';
import { batchItemsMax, bitmapBytesMax, messageVolumesMax } from '../core/messages.ts';
import { inFlightWritesMaxDefault } from '../core/storage-system.ts';
import { deliveriesPerRunMax } from './transport.ts';
import { memoryVolumeBytesMax, validateVolumeConfig, VolumeConfigError, volumeBytesMax } from '../core/volume.ts';

/** Where the sites keep their volumes, journals and state. */
export type StorageConfig = { kind: 'memory' } | { kind: 'file'; dir: string };

/**
 * The configuration of a cluster (one consistency group of `volumeCount` volumes at each site).
 * @see claims 1, 9 (the pull interval), 12, 13, 14
 */
export interface ClusterConfig {
  volumeCount: number;
  volumeBytes: number;
  blockBytes: number;
  /** Each site's journal (site 3's too). */
  journal: JournalLimits;
  /** Entries site 3 takes in one pull at most. */
  pullBatchEntriesMax: number;
  /** `advanceClock` pulls every this many ticks (claim 9: at specified time intervals). */
  pullIntervalTicks: number;
  /** `advanceClock` restores every this many ticks. */
  restoreIntervalTicks: number;
  fencePolicy: 'refuse' | 'keepWriting';
  storage: StorageConfig;
  /** Host writes the primary holds in flight at most (default {@link inFlightWritesMaxDefault}). */
  inFlightWritesMax?: number;
  /**
   * Messages one run of the in-process transport delivers at most before it is called a livelock (an
   * `InvariantError`); default and ceiling {@link deliveriesPerRunMax}. The conformance harness sets it from
   * the model's bounds, so that a message loop fails its path at once.
   */
  deliveriesPerRunMax?: number;
}

/** Largest interval of the logical clock: 2^20 ticks. */
export const intervalTicksMax = 2 ** 20;

/** Largest `advanceClock` step: 2^24 ticks in one call. */
export const advanceTicksMax = 2 ** 24;

/** Largest number of in-flight host writes. */
export const inFlightWritesMaxCeiling = 65_536;

function integer(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(field, value, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

/** The validated configuration, complete and frozen. Throws {@link ConfigError}. */
export function validateClusterConfig(config: ClusterConfig): Readonly<Required<ClusterConfig>> {
  if (typeof config !== 'object' || config === null) throw new ConfigError('config', config, 'must be an object');
  const volumeCount = integer('volumeCount', config.volumeCount, 1, messageVolumesMax);
  const storage = config.storage;
  if (typeof storage !== 'object' || storage === null || (storage.kind !== 'memory' && storage.kind !== 'file')) {
    throw new ConfigError('storage', storage, "must be { kind: 'memory' } or { kind: 'file', dir }");
  }
  if (storage.kind === 'file' && (typeof storage.dir !== 'string' || storage.dir.length === 0)) {
    throw new ConfigError('storage.dir', storage.dir, 'must be a directory path');
  }
  try {
    validateVolumeConfig(config.volumeBytes, config.blockBytes, storage.kind === 'memory' ? memoryVolumeBytesMax : volumeBytesMax);
  } catch (error) {
    if (!(error instanceof VolumeConfigError)) throw error;
    const field = error.reason.startsWith('blockBytes') ? 'blockBytes' : 'volumeBytes';
    throw new ConfigError(field, field === 'blockBytes' ? config.blockBytes : config.volumeBytes, error.message);
  }
  const blocksPerVolume = config.volumeBytes / config.blockBytes;
  if (Math.ceil(blocksPerVolume / 8) > bitmapBytesMax) {
    throw new ConfigError('volumeBytes', config.volumeBytes, `${blocksPerVolume} blocks per volume exceed the changed-block record's ${bitmapBytesMax * 8}`);
  }
  const journal = config.journal;
  if (typeof journal !== 'object' || journal === null) throw new ConfigError('journal', journal, 'must be { entriesMax, bytesMax }');
  const entriesMax = integer('journal.entriesMax', journal.entriesMax, 1, entriesMaxCeiling);
  const bytesCeiling = storage.kind === 'memory' ? memoryJournalBytesMaxCeiling : fileJournalBytesMaxCeiling;
  const bytesMax = integer('journal.bytesMax', journal.bytesMax, entryHeaderBytes + config.blockBytes, bytesCeiling);
  const fencePolicy = config.fencePolicy;
  if (fencePolicy !== 'refuse' && fencePolicy !== 'keepWriting') {
    throw new ConfigError('fencePolicy', fencePolicy, "must be 'refuse' or 'keepWriting'");
  }
  return Object.freeze({
    volumeCount,
    volumeBytes: config.volumeBytes,
    blockBytes: config.blockBytes,
    journal: Object.freeze({ entriesMax, bytesMax }),
    pullBatchEntriesMax: integer('pullBatchEntriesMax', config.pullBatchEntriesMax, 1, batchItemsMax),
    pullIntervalTicks: integer('pullIntervalTicks', config.pullIntervalTicks, 1, intervalTicksMax),
    restoreIntervalTicks: integer('restoreIntervalTicks', config.restoreIntervalTicks, 1, intervalTicksMax),
    fencePolicy,
    storage: storage.kind === 'memory' ? { kind: 'memory' as const } : { kind: 'file' as const, dir: storage.dir },
    inFlightWritesMax: integer('inFlightWritesMax', config.inFlightWritesMax ?? inFlightWritesMaxDefault, 1, inFlightWritesMaxCeiling),
    deliveriesPerRunMax: integer('deliveriesPerRunMax', config.deliveriesPerRunMax ?? deliveriesPerRunMax, 1, deliveriesPerRunMax),
  });
}

/**
 * The largest host write the configuration takes: one journal entry, which must fit an empty journal
 * (P7) and the entry encoding.
 */
export function hostWriteBytesMax(config: Pick<ClusterConfig, 'journal'>): number {
  return Math.min(entryDataBytesMax, config.journal.bytesMax - entryHeaderBytes);
}
