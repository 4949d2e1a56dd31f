/**
 * Bugs of the four classes the conformance run used to miss (issue 16), each planted as the fault catalogue
 * plants its faults: a wrapper around a real cluster's objects, built here in harness code, never a switch
 * in `impl/`. `test/conformance/planted-bugs.test.ts` shows that `npm start`'s generated paths catch each,
 * through the generator made for its class, and that the generators the run had before miss it.
 *
 * - **Journal ranges** ({@link trimPastRestored}): visible only with a journal of several entries.
 * - **A refusal condition** ({@link failbackIgnoresCutLinks}): visible only in a state where that
 *   condition alone refuses the event.
 * - **Byte ranges** ({@link changedRecordFirstBlockOnly}): visible only with a write that spans blocks.
 * - **Files and crashes** ({@link tornTailCutsOneEntryTooMany}): visible only on the file backends, after
 *   a crash that tore the journal's tail.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Cluster } from '../impl/cluster/cluster.ts';
import { entryBytes } from '../impl/core/journal.ts';
import { FileJournal, journalMetaName } from '../impl/storage/journal-file.ts';
import type { ModelParams } from '../model/params.ts';
import { ClusterSut, clusterConfigFor } from './adapter.ts';
import { CrashingFileSut } from './crash-sut.ts';
import type { SutFactory } from './sut.ts';

/** A planted bug: its class, what it stands for, and its system under test (memory, or files with crashes). */
export interface PlantedBug {
  name: string;
  issueClass: 'journal ranges' | 'refusal conditions' | 'byte ranges' | 'files and crashes';
  description: string;
  /** The bug on the in-process memory cluster (for the files class: the faithful cluster, which has no files). */
  makeSut: SutFactory;
  /** The bug on the file backends with crashes (`crash-sut.ts`). */
  makeFileSut: (seed: number) => SutFactory;
}

/** Replaces one method of an object by a wrapper that gets the original. */
function wrap<T extends object, K extends keyof T>(target: T, key: K, wrapper: (original: T[K]) => T[K]): void {
  const original = (target[key] as (...args: unknown[]) => unknown).bind(target) as T[K];
  target[key] = wrapper(original);
}

function memoryVariant(patch: (cluster: Cluster) => void): SutFactory {
  return (params: ModelParams) => {
    const cluster = Cluster.create(clusterConfigFor(params));
    patch(cluster);
    return new ClusterSut(cluster, params.blockBytes);
  };
}

function fileVariant(patch: (cluster: Cluster) => void): (seed: number) => SutFactory {
  return (seed) => {
    let paths = 0;
    return (params: ModelParams) => {
      paths += 1;
      const sut = CrashingFileSut.create(params, seed * 100_003 + paths);
      patch(sut.cluster);
      return sut;
    };
  };
}

function bug(name: string, issueClass: PlantedBug['issueClass'], description: string, patch: (cluster: Cluster) => void): PlantedBug {
  return { name, issueClass, description, makeSut: memoryVariant(patch), makeFileSut: fileVariant(patch) };
}

/**
 * A sync member's trim takes the whole journal as soon as site 3's restored number falls inside it, instead
 * of the entries through that number (a trim that compares with the journal's first entry and then frees
 * every segment). With a journal of one entry the restored number is inside the journal only when it is the
 * last entry, where both trims agree.
 */
export const trimPastRestored = bug(
  'trim past the restored number',
  'journal ranges',
  "A sync member's trim discards every entry as soon as site 3's restored number reaches the journal, not just the entries through that number: entries site 3 has not restored are gone.",
  (cluster) => {
    for (const site of [1, 2] as const) {
      const journal = cluster.site(site).journal;
      wrap(journal, 'trimThrough', (trimThrough) => (updateNumber: number) =>
        trimThrough(updateNumber >= journal.first && updateNumber < journal.last ? journal.last : updateNumber),
      );
    }
  },
);

/**
 * Failback checks every site and the async pair but reads the cut links from a list that forgets them
 * (here: a transport whose `cutLinks()` answers nothing during the failback). Only a state where a link is
 * cut and every other condition of a failback holds shows it.
 */
export const failbackIgnoresCutLinks = bug(
  'failback ignores cut links',
  'refusal conditions',
  'Failback forgets one of its conditions: every link must be up. With link 1-3 cut it promotes site 1, which cannot reach site 3, as the new source.',
  (cluster) => {
    wrap(cluster, 'failback', (failback) => () => {
      const cutLinks = cluster.transport.cutLinks.bind(cluster.transport);
      cluster.transport.cutLinks = () => [];
      try {
        failback();
      } finally {
        cluster.transport.cutLinks = cutLinks;
      }
    });
  },
);

/**
 * The changed-block record of a write acknowledged on one site marks the block where the write starts only
 * (a byte range mapped to its first block): a write that spans two blocks leaves the second unmarked, and
 * the differential resync does not copy it.
 */
export const changedRecordFirstBlockOnly = bug(
  'changed-block record marks only the first block of a range',
  'byte ranges',
  "A write acknowledged on one site records only the block it starts in: the second block of a write that spans two is missing from the changed-block record, so a resync leaves it stale.",
  (cluster) => {
    for (const site of [1, 2] as const) {
      const changed = cluster.site(site).changed;
      wrap(changed, 'mark', (mark) => (volume: number, first: number, count: number) => mark(volume, first, Math.min(count, 1)));
    }
  },
);

/**
 * Recovery of a journal whose tail was torn cuts back to the start of the last *valid* entry as well (the
 * scan keeps the offset of the entry before the one it failed to read): a crash loses the last write the
 * site had journaled, an acknowledged one. Planted around `FileJournal.open`, the implementation's recovery,
 * while the cluster reopens a crashed site.
 */
export const tornTailCutsOneEntryTooMany: PlantedBug = {
  name: 'torn-tail recovery cuts one entry too many',
  issueClass: 'files and crashes',
  description: "Recovery of a journal with a torn tail truncates the last valid entry too: the crashed site comes back without the last write it journaled.",
  makeSut: (params) => ClusterSut.create(params),
  makeFileSut: fileVariant((cluster) => {
    wrap(cluster, 'recoverSite', (recoverSite) => (site: 1 | 2 | 3) => {
      const open = FileJournal.open;
      FileJournal.open = (dir, limits, options) => {
        const opened = open.call(FileJournal, dir, limits, options);
        const { journal, recovery } = opened;
        if (recovery.discardedReason !== 'torn' || journal.entries === 0) return opened;
        const [last] = journal.readAfter(journal.last - 1, 1);
        journal.close();
        // close() records a clean shutdown; the bug is in the recovery of a crash, so the journal stays unclean.
        const meta = path.join(dir, journalMetaName);
        fs.writeFileSync(meta, JSON.stringify({ ...JSON.parse(fs.readFileSync(meta, 'utf8')), cleanLast: null }));
        const segments = fs.readdirSync(dir).filter((name) => name.endsWith('.seg')).sort();
        const segment = path.join(dir, segments.at(-1)!);
        fs.truncateSync(segment, fs.statSync(segment).size - entryBytes(last!));
        return open.call(FileJournal, dir, limits, options);
      };
      try {
        recoverSite(site);
      } finally {
        FileJournal.open = open;
      }
    });
  }),
};

/** Every planted bug, one per class of issue 16. */
export const plantedBugs: readonly PlantedBug[] = [trimPastRestored, failbackIgnoresCutLinks, changedRecordFirstBlockOnly, tornTailCutsOneEntryTooMany];

