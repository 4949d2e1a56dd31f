/**
 * The file-backed cluster as a system under test, where a site failure is a crash (issue 16).
 *
 * The in-process cluster over `impl/storage/` (a directory per site: volume files, a segmented journal with
 * CRC-32C entries, a state file), driven like the memory one, except for two events:
 *
 * - **FAIL_SITE** is a crash. The cluster fails the site, then this layer takes the crash image of the site's
 *   data files (its volumes and its `journal/` directory) as they are at that instant, and tears the journal:
 *   the entry the site was appending when it died (update number `last + 1`, never acknowledged, so never
 *   part of the model's history) is in its last segment up to a seeded byte, cut anywhere inside its
 *   header or its data; or, at every other crash by the seed, whole in length with one seeded byte flipped
 *   (the corruption branches of the entry decoder, not only its short reads). Nothing the site wrote after
 *   that instant reaches those files.
 * - **RECOVER_SITE** reopens the site from its directory: the cluster closes the failed site's storage and
 *   reopens it (`Cluster.recoverSite`); this layer puts the crash image back between the two, so the reopen
 *   sees the files a crash leaves, not the ones a clean close writes: the journal's metadata as last saved
 *   (its floor may be stale, `impl/storage/journal-file.ts`), the torn tail, the volumes as written.
 *
 * Fault model, and what is not simulated: the file cluster fsyncs every journal append and volume write
 * (`flushEachWrite`, as `Cluster` sets it for file storage), so no acknowledged byte is unsynced at a crash;
 * what a crash loses is the clean close (the journal's metadata rewrite) and the half-written entry. The site's
 * state file is written atomically and the cluster controller keeps writing it while the site is down (it
 * stands for the operator's record), so it is not reset to the crash image. Seeded: the torn byte comes from
 * the path's seed and the number of crashes so far, so a failing path replays exactly.
 *
 * Faults live here, in harness code; nothing in `impl/` knows about them (STYLE.md).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Cluster } from '../impl/cluster/cluster.ts';
import { encodeEntry } from '../impl/core/journal.ts';
import type { ModelEvent } from '../model/events.ts';
import type { Observation } from '../model/observation.ts';
import type { ModelParams } from '../model/params.ts';
import { ClusterSut, clusterConfigFor } from './adapter.ts';
import type { StepOutcome, SutFactory, SystemUnderTest } from './sut.ts';

/** What the crash layer did over one path, for the run's report. */
export interface CrashCounts {
  /** Site failures carried out as crashes. */
  crashes: number;
  /** Crashes whose journal got a torn tail: the entry cut short (a site with an empty journal directory gets none). */
  tornTails: number;
  /**
   * Crashes whose journal got a corrupt tail instead: the entry whole in length, one of its bytes flipped (a
   * sector that landed garbled). Recovery must find it by its checksums and discard it like a torn one.
   */
  corruptTails: number;
  /** Sites reopened from a crash image. */
  recoveries: number;
}

/** Limits of the crash layer. */
export const crashLimits = {
  /** Bytes of one site's data files the crash image holds at most (the bounded model's sites are tiny). */
  crashImageBytesMax: 16 * 1024 * 1024,
};

/**
 * Where the clusters' directories go: `/dev/shm` where there is one (a memory file system: the file
 * backends' fsyncs cost nothing there, and a simulated crash does not need real ones), else the system's
 * temporary directory.
 */
export function crashDirRoot(): string {
  try {
    fs.accessSync('/dev/shm', fs.constants.W_OK);
    return '/dev/shm';
  } catch {
    return os.tmpdir();
  }
}

/** A site's data files at the instant of its crash: relative path to bytes. */
type CrashImage = Map<string, Uint8Array>;

/** The files of a site that a crash image holds: its volumes and its journal directory (not its state file). */
function dataFiles(siteDir: string): string[] {
  const files = fs.readdirSync(siteDir).filter((name) => name.startsWith('volume-'));
  const journalDir = path.join(siteDir, 'journal');
  if (fs.existsSync(journalDir)) for (const name of fs.readdirSync(journalDir)) files.push(path.join('journal', name));
  return files.sort();
}

/** A small deterministic generator (mulberry32): the torn byte of each crash. */
function seeded(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/**
 * The file cluster behind the model's events, with FAIL_SITE a crash and RECOVER_SITE a reopen from the
 * crash image. Its directory is removed at {@link close}.
 */
export class CrashingFileSut implements SystemUnderTest {
  readonly counts: CrashCounts = { crashes: 0, tornTails: 0, corruptTails: 0, recoveries: 0 };
  readonly #inner: ClusterSut;
  readonly #dir: string;
  readonly #images = new Map<1 | 2 | 3, CrashImage>();
  readonly #random: () => number;

  constructor(
    readonly cluster: Cluster,
    dir: string,
    blockBytes: number,
    seed: number,
  ) {
    this.#inner = new ClusterSut(cluster, blockBytes);
    this.#dir = dir;
    this.#random = seeded(seed);
  }

  /** A fresh file cluster in a new temporary directory, configured like the bounded model. */
  static create(params: ModelParams, seed = 1): CrashingFileSut {
    const dir = fs.mkdtempSync(path.join(crashDirRoot(), 'threesite-crash-'));
    const cluster = Cluster.create({ ...clusterConfigFor(params), storage: { kind: 'file', dir } });
    return new CrashingFileSut(cluster, dir, params.blockBytes, seed);
  }

  apply(event: ModelEvent): StepOutcome {
    if (event.type === 'RECOVER_SITE' && !this.cluster.site(event.site).up) this.#restoreOnReopen(event.site);
    const outcome = this.#inner.apply(event);
    if (event.type === 'FAIL_SITE' && outcome.accepted) this.#crash(event.site);
    if (event.type === 'RECOVER_SITE' && outcome.accepted && this.#images.has(event.site)) {
      this.#images.delete(event.site);
      this.counts.recoveries += 1;
    }
    return outcome;
  }

  observe(): Observation {
    return this.#inner.observe();
  }

  close(): void {
    try {
      this.#inner.close();
    } finally {
      fs.rmSync(this.#dir, { recursive: true, force: true });
    }
  }

  #siteDir(site: 1 | 2 | 3): string {
    return path.join(this.#dir, `site-${site}`);
  }

  /** Takes the crash image of a site that just failed, with its journal's last entry torn or corrupt. */
  #crash(site: 1 | 2 | 3): void {
    const siteDir = this.#siteDir(site);
    const image: CrashImage = new Map();
    let bytes = 0;
    for (const file of dataFiles(siteDir)) {
      const data = new Uint8Array(fs.readFileSync(path.join(siteDir, file)));
      bytes += data.length;
      if (bytes > crashLimits.crashImageBytesMax) throw new RangeError(`crash image of site ${site} exceeds ${crashLimits.crashImageBytesMax} bytes`);
      image.set(file, data);
    }
    const segments = [...image.keys()].filter((file) => file.endsWith('.seg'));
    const last = segments.at(-1);
    if (last !== undefined) {
      const journal = this.cluster.site(site).journal;
      const data = new Uint8Array(this.cluster.config.blockBytes).fill(0xee);
      const entry = encodeEntry({ updateNumber: journal.last + 1, volume: 0, offset: 0, data });
      const segment = image.get(last)!;
      if (this.#random() < 0.5) {
        // Torn anywhere: 1 byte of its header at least, one byte short of the whole entry at most.
        const torn = 1 + Math.floor(this.#random() * (entry.length - 1));
        const withTail = new Uint8Array(segment.length + torn);
        withTail.set(segment);
        withTail.set(entry.subarray(0, torn), segment.length);
        image.set(last, withTail);
        this.counts.tornTails += 1;
      } else {
        // Whole in length, one byte anywhere in it flipped (every bit of it).
        const flipped = entry.slice();
        const at = Math.floor(this.#random() * flipped.length);
        flipped[at] = flipped[at]! ^ 0xff;
        const withTail = new Uint8Array(segment.length + flipped.length);
        withTail.set(segment);
        withTail.set(flipped, segment.length);
        image.set(last, withTail);
        this.counts.corruptTails += 1;
      }
    }
    this.#images.set(site, image);
    this.counts.crashes += 1;
  }

  /**
   * Makes the cluster's reopen of a crashed site read its crash image: the site's storage is closed by
   * `Cluster.recoverSite` first (a clean close), then the image replaces every data file before the reopen.
   */
  #restoreOnReopen(site: 1 | 2 | 3): void {
    const image = this.#images.get(site);
    if (!image) return;
    const storage = this.cluster.site(site);
    const close = storage.close.bind(storage);
    storage.close = () => {
      close();
      const siteDir = this.#siteDir(site);
      for (const file of dataFiles(siteDir)) fs.rmSync(path.join(siteDir, file));
      for (const [file, data] of image) fs.writeFileSync(path.join(siteDir, file), data);
    };
  }
}

/** The crash layer's factory; every system it makes is recorded so the run can add up their counts. */
export function crashingFileSutFactory(seed: number): SutFactory & { made: CrashingFileSut[] } {
  let paths = 0;
  const made: CrashingFileSut[] = [];
  const make = (params: ModelParams): CrashingFileSut => {
    paths += 1;
    const sut = CrashingFileSut.create(params, seed * 100_003 + paths);
    made.push(sut);
    return sut;
  };
  return Object.assign(make, { made });
}
