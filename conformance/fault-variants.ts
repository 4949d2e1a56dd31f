/**
 * The fault catalogue's variants: realistic replication bugs, each a small variant of the implementation
 * built here, in harness code, by wrapping methods of a real cluster's objects: its operator methods, a
 * site's message handler or write path, or the journal and volumes a site holds. Nothing in `impl/` knows about them.
 * Each variant's description says which real bug it stands for.
 */
import { Cluster } from '../impl/cluster/cluster.ts';
import type { JournalEntry } from '../impl/core/journal.ts';
import type { SiteEnvelope, StorageSystem } from '../impl/core/storage-system.ts';
import { ClusterSut, clusterConfigFor } from './adapter.ts';
import type { SutFactory } from './sut.ts';

/** One realistic bug, as a small variant of the implementation. */
export interface FaultVariant {
  name: string;
  description: string;
  makeSut: SutFactory;
}

/** A variant that patches a fresh cluster of the given class after it is created. */
function variant(name: string, description: string, patch: (cluster: Cluster) => void): FaultVariant {
  return {
    name,
    description,
    makeSut: (params) => {
      const cluster = Cluster.create(clusterConfigFor(params));
      patch(cluster);
      return new ClusterSut(cluster, params.blockBytes);
    },
  };
}

/** Replaces one method of an object by a wrapper that gets the original. */
function wrap<T extends object, K extends keyof T>(target: T, key: K, wrapper: (original: T[K]) => T[K]): void {
  const original = (target[key] as (...args: unknown[]) => unknown).bind(target) as T[K];
  target[key] = wrapper(original);
}

/** Wraps a site's message handler: `rewrite` may change or replace each message it receives. */
function onMessage(site: StorageSystem, rewrite: (envelope: SiteEnvelope) => SiteEnvelope): void {
  wrap(site, 'handle', (handle) => (envelope: SiteEnvelope) => handle(rewrite(envelope)));
}

/** Every variant of the catalogue. */
export const faultVariants: FaultVariant[] = [
  variant(
    'ack without the remote answer',
    'Site 1 acknowledges host writes while site 2 is unreachable although the fence policy says refuse (a sync mirror that "degrades" silently: acknowledged writes on one site).',
    (cluster) => {
      const site = cluster.site(1);
      wrap(site, 'writeRefusal', (refusal) => () => {
        const reason = refusal();
        return reason === 'fencePolicy' ? null : reason;
      });
    },
  ),
  variant(
    'secondary acks before its write is durable',
    "Site 2 answers the sync write on receipt and loses the data (acknowledging before the write reached the volume): site 2's volumes miss acknowledged writes.",
    (cluster) => {
      const site = cluster.site(2);
      for (const volume of site.volumes) {
        wrap(volume, 'write', (write) => (offset: number, data: Uint8Array) => {
          if (site.role !== 'secondary') write(offset, data);
        });
      }
    },
  ),
  variant(
    'journaling after the ack',
    'Site 1 acknowledges a write and journals it only when the next write comes (a lazy journal flush): the journal lags the update numbers it handed out.',
    (cluster) => {
      const journal = cluster.site(1).journal;
      let pending: JournalEntry | null = null;
      wrap(journal, 'append', (append) => (entry: JournalEntry) => {
        if (pending && pending.updateNumber === journal.last + 1) append(pending);
        pending = entry;
      });
    },
  ),
  variant(
    'restore out of order',
    "Site 3 restores a batch of its journal newest first (write-order fidelity lost: its image is not a past image of the primary's).",
    (cluster) => {
      const journal = cluster.site(3).journal;
      wrap(journal, 'readAfter', (readAfter) => (updateNumber: number, entriesMax: number) => {
        const entries = readAfter(updateNumber, entriesMax);
        return entries.length > 1 ? [...entries].reverse().map((entry, i) => ({ ...entry, updateNumber: entries[i]!.updateNumber })) : entries;
      });
    },
  ),
  variant(
    'restore across a gap',
    "Site 3 skips the first entry of a restore batch (a gap restored over): its image misses an update it reports as restored.",
    (cluster) => {
      const volumes = cluster.site(3).volumes;
      const journal = cluster.site(3).journal;
      wrap(journal, 'readAfter', (readAfter) => (updateNumber: number, entriesMax: number) => {
        const entries = readAfter(updateNumber, entriesMax);
        const [first] = entries;
        // The first entry's data is read but never reaches the volume.
        if (first && entries.length > 0) {
          const volume = volumes[first.volume]!;
          const before = volume.read(first.offset, first.data.length);
          return [{ ...first, data: before }, ...entries.slice(1)];
        }
        return entries;
      });
    },
  ),
  variant(
    "trimming site 2's journal early",
    "Site 2 trims its journal through its own last update number instead of site 3's forwarded progress: the standby journal no longer covers site 3 and a failover cannot delta-resync.",
    (cluster) => {
      const journal = cluster.site(2).journal;
      wrap(journal, 'trimThrough', (trimThrough) => () => trimThrough(journal.last));
    },
  ),
  variant(
    'judge ignores the gap',
    "The judge answers 'delta resync' where site 2's journal no longer holds the next entry site 3 needs (a judge that only compares update numbers).",
    (cluster) => {
      const site = cluster.site(2);
      wrap(site, 'handle', (handle) => (envelope: SiteEnvelope) => {
        const message = envelope.message;
        if (message.kind !== 'judgeRequest') return handle(envelope);
        // While judging, the journal claims to start right after site 3's number: only numbers compared.
        const real = Object.getOwnPropertyDescriptor(Object.getPrototypeOf(site.journal), 'first')!;
        Object.defineProperty(site.journal, 'first', {
          configurable: true,
          get: () => Math.min(real.get!.call(site.journal) as number, message.received + 1),
        });
        try {
          return handle(envelope);
        } finally {
          delete (site.journal as { first?: number }).first;
        }
      });
    },
  ),
  variant(
    'update numbers restart after failover',
    'Site 2 starts a new update-number sequence when it takes over (claim 27 broken): its journal and site 3 see numbers that collide with old ones.',
    (cluster) => {
      wrap(cluster, 'failover', (failover) => (options: { force: boolean }) => {
        failover(options);
        const site = cluster.site(2);
        if (site.role === 'primary') site.journal.reset(0);
      });
    },
  ),
  variant(
    'site 1 writable after it returns',
    'Site 1, back after a failover, still takes host 1 writes (split brain: two sites accept host writes, P4).',
    (cluster) => {
      const site = cluster.site(1);
      wrap(site, 'writeRefusal', (refusal) => () => {
        const reason = refusal();
        return reason === 'notPrimary' && site.up ? null : reason;
      });
    },
  ),
  variant(
    "resync skips site 1's unacknowledged blocks",
    "Site 1's resync copies only the blocks site 2 changed since the failover, not the blocks site 1 wrote alone before it failed: site 1 keeps data site 2 never had.",
    (cluster) => {
      wrap(cluster, 'resyncSite', (resyncSite) => (site: 1 | 2) => {
        if (site === 1) cluster.site(1).changed.clear();
        resyncSite(site);
      });
    },
  ),
  variant(
    'overflow drops entries silently',
    "At journal overflow site 1 drops its oldest entry and keeps the async pair copying (a ring buffer journal): site 3 can never get the dropped entry (P7).",
    (cluster) => {
      const journal = cluster.site(1).journal;
      wrap(journal, 'fits', () => () => true);
      wrap(journal, 'append', (append) => (entry: JournalEntry) => {
        if (journal.entries >= journal.limits.entriesMax) journal.trimThrough(journal.first);
        append(entry);
      });
    },
  ),
  variant(
    "failback loses site 2's last write",
    "At failback site 1 becomes primary with its image one write behind site 2 (the last reversed write was not applied at site 1 before the switch).",
    (cluster) => {
      let undo: (() => void) | null = null;
      for (const volume of cluster.site(1).volumes) {
        wrap(volume, 'write', (write) => (offset: number, data: Uint8Array) => {
          const before = volume.read(offset, data.length);
          undo = () => write(offset, before);
          write(offset, data);
        });
      }
      wrap(cluster, 'failback', (failback) => () => {
        failback();
        undo?.();
      });
    },
  ),
  variant(
    'progress not forwarded',
    "Site 1 does not forward site 3's progress with its sync writes: site 2 never trims, its journal fills and the standby pair falls into hold-error for nothing.",
    (cluster) => {
      onMessage(cluster.site(2), (envelope) => {
        const message = envelope.message;
        return message.kind === 'syncWrite' ? { ...envelope, message: { ...message, restoredKnown: 0 } } : envelope;
      });
    },
  ),
  variant(
    'pull batch off by one',
    'Site 3 asks for one entry more than the configured pull batch (a batch limit checked with <= instead of <).',
    (cluster) => {
      const site = cluster.site(3);
      wrap(site, 'requestPull', (requestPull) => (batchEntriesMax: number) => requestPull(batchEntriesMax + 1));
    },
  ),
  variant(
    'fence not enforced',
    'The operator fences site 1 but the fence never reaches its write path: site 1 still takes host writes (P4 at risk during a takeover).',
    (cluster) => {
      wrap(cluster.site(1), 'fence', () => () => {});
    },
  ),
  variant(
    'changed-block record kept after resync',
    "A resync leaves the primary's changed-block record set: the next differential resync copies blocks for nothing and the record never drains.",
    (cluster) => {
      wrap(cluster, 'resyncSite', (resyncSite) => (site: 1 | 2) => {
        resyncSite(site);
        cluster.site(site === 1 ? 2 : 1).changed.mark(0, 0, 1);
      });
    },
  ),
];
