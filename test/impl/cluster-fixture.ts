/**
 * The small cluster the cluster's tests share: two volumes of four 4 KiB blocks, a journal of four entries,
 * pulls of two entries every two ticks and restores every three, in memory unless `overrides` say otherwise.
 * Small on purpose: an overflow, a batch cut or a full copy takes a few writes.
 */

import type { ClusterConfig } from '../../impl/cluster/cluster.ts';

/** Bytes of a block in the shared configuration. */
export const blockBytes = 4096;

/** The shared configuration, with `overrides` applied. */
export function config(overrides: Partial<ClusterConfig> = {}): ClusterConfig {
  return {
    volumeCount: 2,
    volumeBytes: 4 * blockBytes,
    blockBytes,
    journal: { entriesMax: 4, bytesMax: 4 * (blockBytes + 4096) },
    pullBatchEntriesMax: 2,
    pullIntervalTicks: 2,
    restoreIntervalTicks: 3,
    fencePolicy: 'keepWriting',
    storage: { kind: 'memory' },
    ...overrides,
  };
}

/** One block of `value` bytes. */
export const block = (value: number): Uint8Array => new Uint8Array(blockBytes).fill(value);
