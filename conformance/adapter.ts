/**
 * The adapter: the one place that maps each model event to the in-process implementation's API call.
 */
import { Cluster, type ClusterConfig } from '../impl/cluster/cluster.ts';
import { TracedCluster, type TraceSink } from '../impl/cluster/trace.ts';
import { hostWriteRange, type ModelEvent } from '../model/events.ts';
import type { Observation } from '../model/observation.ts';
import type { ModelParams } from '../model/params.ts';
import { isRefusal, refusalCodeOf, type StepOutcome, type SystemUnderTest } from './sut.ts';

/**
 * Messages one run of the cluster's transport may deliver under a bounded model: a few per journal entry,
 * pulled entry and block it holds, plus a constant. Paths of `npm start` need at most 5 (measured over all
 * its generated paths, in memory and on files); a bound this close turns a message loop (a livelock) into a
 * crash divergence at the step that starts it, instead of a hang until the transport's default of a million.
 */
export function deliveriesPerRunFor(params: ModelParams): number {
  return 4 * (params.journalEntriesMax + params.pullBatchEntriesMax + params.volumeCount * params.blocksPerVolume) + 16;
}

/** The implementation's configuration that matches a bounded model: same volumes, blocks and journals. */
export function clusterConfigFor(params: ModelParams): ClusterConfig {
  return {
    volumeCount: params.volumeCount,
    volumeBytes: params.blocksPerVolume * params.blockBytes,
    blockBytes: params.blockBytes,
    // Entries bind first: the byte limit leaves room for a full journal of whole-block entries.
    journal: { entriesMax: params.journalEntriesMax, bytesMax: params.journalEntriesMax * (params.blockBytes + 4096) },
    pullBatchEntriesMax: params.pullBatchEntriesMax,
    pullIntervalTicks: 1,
    restoreIntervalTicks: 1,
    fencePolicy: params.fencePolicy,
    storage: { kind: 'memory' },
    deliveriesPerRunMax: deliveriesPerRunFor(params),
  };
}

/** The cluster operations the model's events map to: the cluster's own, or the same through a trace. */
export type ClusterCommands = Pick<
  Cluster,
  | 'hostWrite'
  | 'pullJournal'
  | 'restoreJournal'
  | 'failSite'
  | 'recoverSite'
  | 'cutLink'
  | 'restoreLink'
  | 'fenceSite'
  | 'failover'
  | 'resyncSite'
  | 'deltaResync'
  | 'fullCopy'
  | 'failback'
>;

/** Calls the cluster method that implements a model event. */
export function applyToCluster(cluster: ClusterCommands, event: ModelEvent, blockBytes: number): void {
  switch (event.type) {
    case 'HOST_WRITE': {
      // A whole block, or a byte range that may start and end mid-block (model/events.ts).
      const { offset, length } = hostWriteRange(event, blockBytes);
      cluster.hostWrite(event.host, event.volume, offset, new Uint8Array(length).fill(event.data));
      return;
    }
    case 'PULL_JOURNAL':
      return cluster.pullJournal();
    case 'RESTORE_JOURNAL':
      return cluster.restoreJournal();
    case 'FAIL_SITE':
      return cluster.failSite(event.site);
    case 'RECOVER_SITE':
      return cluster.recoverSite(event.site);
    case 'CUT_LINK': {
      const [a, b] = event.link.split('-').map(Number) as [1 | 2 | 3, 1 | 2 | 3];
      return cluster.cutLink(a, b);
    }
    case 'RESTORE_LINK': {
      const [a, b] = event.link.split('-').map(Number) as [1 | 2 | 3, 1 | 2 | 3];
      return cluster.restoreLink(a, b);
    }
    case 'FENCE_SITE':
      return cluster.fenceSite(event.site);
    case 'FAILOVER':
      return cluster.failover({ force: event.force });
    case 'RESYNC_SITE':
      return cluster.resyncSite(event.site);
    case 'DELTA_RESYNC':
      return cluster.deltaResync();
    case 'FULL_COPY':
      return cluster.fullCopy();
    case 'FAILBACK':
      return cluster.failback();
  }
}

/** The in-process implementation as a system under test. */
export class ClusterSut implements SystemUnderTest {
  readonly #commands: ClusterCommands;

  /** `trace`: write the implementation's trace (impl/cluster/trace.ts) of every step to this sink. */
  constructor(
    readonly cluster: Cluster,
    private readonly blockBytes: number,
    trace: TraceSink | null = null,
  ) {
    this.#commands = trace === null ? cluster : new TracedCluster(cluster, trace);
  }

  /** A fresh in-memory cluster configured like the bounded model. */
  static create(params: ModelParams, trace: TraceSink | null = null): ClusterSut {
    return new ClusterSut(Cluster.create(clusterConfigFor(params)), params.blockBytes, trace);
  }

  apply(event: ModelEvent): StepOutcome {
    try {
      applyToCluster(this.#commands, event, this.blockBytes);
      return { accepted: true };
    } catch (error) {
      if (!isRefusal(error)) throw error;
      return refusalCodeOf(error);
    }
  }

  observe(): Observation {
    return this.cluster.observe();
  }

  close(): void {
    this.cluster.close?.();
  }
}
