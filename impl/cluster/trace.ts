/**
 * The implementation's trace: an ndjson log of what it did, one JSON object per line, so that an
 * implementation the harness does not drive (a real deployment, another team's code) can be checked
 * afterwards against the model (`npm start -- --validate-trace FILE`, conformance/trace-validate.ts).
 *
 * Schema, version 1 (`docs` in conformance/TRACE.md):
 * - the first line is a {@link TraceHeader}: who wrote the log and the configuration the model needs;
 * - then {@link TraceActionRecord}s, one per operation that corresponds to a model event (host write, pull,
 *   restore, fault, operator command), accepted or refused, with the writer's view after it;
 * - between two actions, {@link TraceDetailRecord}s say what the action did inside: the update numbers newly
 *   held in a journal and the entries restored, in order.
 *
 * A log may come from the whole cluster (writer `cluster`, views are whole observations) or from one site
 * (writer `site-N`, views hold only what that site knows); the validator merges several logs by `time`.
 * This file is the implementation's side: the record types, a writer with named limits, and a tracer that
 * wraps the in-process {@link Cluster}'s operations. Nothing here is on the write path unless a trace is on.
 */

import { closeSync, openSync, writeSync } from 'node:fs';
import type { Observation, SiteId } from '../../model/observation.ts';
import type { Cluster } from './cluster.ts';
import { InvalidArgumentError, RefusalError } from '../core/errors.ts';
import type { StorageSystem } from '../core/storage-system.ts';
import { siteFileMode } from '../storage/file-modes.ts';

/** The schema version this file writes and the validator reads. */
export const traceVersion = 1;

/** Longest line a trace holds; a writer refuses to write a longer one, a reader refuses to read one. */
export const traceLineBytesMax = 1 << 20;

/** Largest number of detail records one action may produce (a delta resync of a full journal). */
export const traceDetailsPerActionMax = 1 << 20;

/** Who wrote a log. */
export type TraceWriterName = 'cluster' | 'site-1' | 'site-2' | 'site-3' | 'operator';

/** The configuration the model needs to replay a log (the cluster's, as far as the model sees it). */
export interface TraceConfig {
  volumeCount: number;
  volumeBytes: number;
  blockBytes: number;
  journalEntriesMax: number;
  journalBytesMax: number;
  pullBatchEntriesMax: number;
  fencePolicy: 'refuse' | 'keepWriting';
}

/** First line of every log. */
export interface TraceHeader {
  trace: 'threesite';
  version: typeof traceVersion;
  writer: TraceWriterName;
  config: TraceConfig;
}

/**
 * An operation in the model's terms. A host write carries its byte range and `fill`: the byte every
 * position of the data holds, or null when the data is not one repeated byte (the validator then cannot
 * predict volume digests).
 */
export type TraceAction =
  | { type: 'HOST_WRITE'; host: 1 | 2; volume: number; offset: number; length: number; fill: number | null }
  | { type: 'PULL_JOURNAL' }
  | { type: 'RESTORE_JOURNAL' }
  | { type: 'FAIL_SITE'; site: SiteId }
  | { type: 'RECOVER_SITE'; site: SiteId }
  | { type: 'CUT_LINK'; link: '1-2' | '1-3' | '2-3' }
  | { type: 'RESTORE_LINK'; link: '1-2' | '1-3' | '2-3' }
  | { type: 'FENCE_SITE'; site: SiteId }
  | { type: 'FAILOVER'; force: boolean }
  | { type: 'RESYNC_SITE'; site: 1 | 2 }
  | { type: 'DELTA_RESYNC' }
  | { type: 'FULL_COPY' }
  | { type: 'FAILBACK' };

/** What became of an action: accepted, or refused with the implementation's stable refusal code. */
export type TraceOutcome = { accepted: true } | { accepted: false; code: string; message: string };

/** A deep-partial view: a site's log carries only the fields that site knows. */
export type PartialView = { [key: string]: unknown };

/** One operation, after it ended. `time` is milliseconds since the epoch with sub-millisecond precision. */
export interface TraceActionRecord {
  seq: number;
  time: number;
  action: TraceAction;
  outcome: TraceOutcome;
  view: Observation | PartialView;
}

/**
 * What an action did inside. A whole-cluster log writes them right after the action they belong to; a site
 * process writes them when its journal changes, which may be before the action that the model's step is
 * (the secondary journals a write before the primary acknowledges it). `fill` (as in {@link TraceAction})
 * lets the validator take a journaled write no acknowledgement names as the write it is. `journalReset`: a
 * block copy (resync or full copy) replaced the site's journal, empty at update number `last`; whatever it
 * held and no model step put there (writes the site journaled that its peer never did) is gone.
 */
export type TraceDetailRecord =
  | { seq: number; time: number; kind: 'journalAppend'; site: SiteId; updateNumber: number; volume: number; offset: number; length: number; fill?: number | null }
  | { seq: number; time: number; kind: 'restore'; site: 3; updateNumber: number }
  | { seq: number; time: number; kind: 'journalReset'; site: SiteId; last: number };

/** Any line of a log after the header. */
export type TraceRecord = TraceActionRecord | TraceDetailRecord;

/** Where trace lines go: a function taking one line without its newline. */
export type TraceSink = (line: string) => void;

/** Milliseconds since the epoch with sub-millisecond precision, comparable across processes of one machine. */
export function traceTime(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Writes one log: the header at construction, then numbered records. Lines longer than
 * {@link traceLineBytesMax} are refused with a typed error before anything is written.
 */
export class TraceWriter {
  #seq = 0;
  /** The last record's time: a log's times never go back (the validator refuses a log whose times do). */
  #time = Number.NEGATIVE_INFINITY;
  readonly #sink: TraceSink;

  /**
   * Writes the header, or with `resume` (a log that already has its header and records up to `seq` and
   * `time`, opened for appending) goes on numbering after them.
   */
  constructor(header: Omit<TraceHeader, 'trace' | 'version'>, sink: TraceSink, resume?: { seq: number; time: number }) {
    this.#sink = sink;
    if (resume === undefined) {
      this.#write({ trace: 'threesite', version: traceVersion, ...header });
      return;
    }
    this.#seq = resume.seq;
    this.#time = resume.time;
  }

  /**
   * Records an operation and its outcome, with the writer's view after it. `at`: the instant the operation
   * took place when that was before now (site 3's pull took place when its source read its journal); a
   * log's times never go back, so an earlier `at` than the last record's is taken as that record's time.
   */
  action(action: TraceAction, outcome: TraceOutcome, view: Observation | PartialView, at?: number): void {
    this.#seq += 1;
    this.#write({ seq: this.#seq, time: this.#stamp(at ?? traceTime()), action, outcome, view });
  }

  /** Records what an action did inside. */
  detail(detail: DistributiveOmit<TraceDetailRecord, 'seq' | 'time'>): void {
    this.#seq += 1;
    this.#write({ seq: this.#seq, time: this.#stamp(traceTime()), ...detail });
  }

  /** The last record's time (−∞ before the first): a record stamped earlier would be placed here instead. */
  get lastTime(): number {
    return this.#time;
  }

  #stamp(time: number): number {
    this.#time = Math.max(this.#time, time);
    return this.#time;
  }

  #write(record: object): void {
    const line = JSON.stringify(record);
    if (line.length > traceLineBytesMax) throw new InvalidArgumentError('trace', 'record', `${line.length} bytes, at most ${traceLineBytesMax}`);
    this.#sink(line);
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

/** A sink that writes lines to a file (created or truncated; `a`: appended), synchronously; `close` releases it. */
export function fileTraceSink(path: string, flags: 'w' | 'a' = 'w'): { sink: TraceSink; close: () => void } {
  const fd = openSync(path, flags, siteFileMode);
  // One write per line: a process killed between two writes leaves whole lines behind.
  let open = true;
  return {
    sink: (line) => {
      if (open) writeSync(fd, `${line}\n`);
    },
    close: () => {
      if (open) closeSync(fd);
      open = false;
    },
  };
}

/** The byte every position of `data` holds, or null when the data is empty or not one repeated byte. */
export function fillOf(data: Uint8Array): number | null {
  if (data.length === 0) return null;
  const first = data[0] as number;
  for (let i = 1; i < data.length; i += 1) if (data[i] !== first) return null;
  return first;
}

/** What a site's journal and restore point were before an action (to derive the detail records after it). */
export interface SiteMark {
  readonly journalLast: number;
  readonly restored: number;
}

/** Marks a site before an action. */
export function markSite(site: StorageSystem): SiteMark {
  return { journalLast: site.journal.last, restored: site.id === 3 ? site.restored : 0 };
}

/**
 * Writes the detail records of one site for an action: every journal entry newly held since `before` (in
 * update-number order; entries appended and trimmed within the action are not held and not written), and
 * for site 3 every update number restored. A site process calls this after each of its own actions.
 */
export function traceSiteDetails(writer: TraceWriter, site: StorageSystem, before: SiteMark): void {
  const journal = site.journal;
  const from = Math.max(before.journalLast, journal.first - 1);
  const count = journal.last - from;
  if (count > 0 && count <= traceDetailsPerActionMax) {
    for (const entry of journal.readAfter(from, count)) {
      writer.detail({
        kind: 'journalAppend',
        site: site.id,
        updateNumber: entry.updateNumber,
        volume: entry.volume,
        offset: entry.offset,
        length: entry.data.length,
        fill: fillOf(entry.data),
      });
    }
  }
  if (site.id === 3) {
    for (let u = before.restored + 1; u <= site.restored; u += 1) writer.detail({ kind: 'restore', site: 3, updateNumber: u });
  }
}

/** The fields of a cluster's or a deployment's configuration that a trace header carries. */
export interface TracedConfigFields {
  volumeCount: number;
  volumeBytes: number;
  blockBytes: number;
  journal: { entriesMax: number; bytesMax: number };
  pullBatchEntriesMax: number;
  fencePolicy: 'refuse' | 'keepWriting';
}

/** The trace header for a cluster's (or a deployment's) configuration. */
export function traceConfigOf(config: TracedConfigFields): TraceConfig {
  return {
    volumeCount: config.volumeCount,
    volumeBytes: config.volumeBytes,
    blockBytes: config.blockBytes,
    journalEntriesMax: config.journal.entriesMax,
    journalBytesMax: config.journal.bytesMax,
    pullBatchEntriesMax: config.pullBatchEntriesMax,
    fencePolicy: config.fencePolicy,
  };
}

/**
 * The in-process cluster's operations with a trace: each call is performed on the cluster and written as an
 * action record (a refusal too, then rethrown) with the whole observation after it, followed by the detail
 * records of every site. Errors that are not refusals (crashes) are rethrown unrecorded.
 */
export class TracedCluster {
  readonly writer: TraceWriter;

  constructor(
    readonly cluster: Cluster,
    sink: TraceSink,
  ) {
    this.writer = new TraceWriter({ writer: 'cluster', config: traceConfigOf(cluster.config) }, sink);
  }

  /** Performs `run` as `action` and traces it. */
  run<T>(action: TraceAction, run: () => T): T {
    const sites = [1, 2, 3].map((id) => this.cluster.site(id as SiteId));
    const marks = sites.map(markSite);
    let result: T;
    try {
      result = run();
    } catch (error) {
      if (!(error instanceof RefusalError)) throw error;
      this.writer.action(action, { accepted: false, code: error.code, message: error.message }, this.cluster.observe());
      sites.forEach((site, i) => traceSiteDetails(this.writer, site, marks[i] as SiteMark));
      throw error;
    }
    this.writer.action(action, { accepted: true }, this.cluster.observe());
    sites.forEach((site, i) => traceSiteDetails(this.writer, site, marks[i] as SiteMark));
    return result;
  }

  hostWrite(host: 1 | 2, volume: number, offset: number, data: Uint8Array): { updateNumber: number } {
    const action: TraceAction = { type: 'HOST_WRITE', host, volume, offset, length: data.length, fill: fillOf(data) };
    return this.run(action, () => this.cluster.hostWrite(host, volume, offset, data));
  }
  pullJournal(): void {
    this.run({ type: 'PULL_JOURNAL' }, () => this.cluster.pullJournal());
  }
  restoreJournal(): void {
    this.run({ type: 'RESTORE_JOURNAL' }, () => this.cluster.restoreJournal());
  }
  failSite(site: SiteId): void {
    this.run({ type: 'FAIL_SITE', site }, () => this.cluster.failSite(site));
  }
  recoverSite(site: SiteId): void {
    this.run({ type: 'RECOVER_SITE', site }, () => this.cluster.recoverSite(site));
  }
  cutLink(a: SiteId, b: SiteId): void {
    this.run({ type: 'CUT_LINK', link: linkOf(a, b) }, () => this.cluster.cutLink(a, b));
  }
  restoreLink(a: SiteId, b: SiteId): void {
    this.run({ type: 'RESTORE_LINK', link: linkOf(a, b) }, () => this.cluster.restoreLink(a, b));
  }
  fenceSite(site: SiteId): void {
    this.run({ type: 'FENCE_SITE', site }, () => this.cluster.fenceSite(site));
  }
  failover(options: { force: boolean }): void {
    this.run({ type: 'FAILOVER', force: options.force }, () => this.cluster.failover(options));
  }
  resyncSite(site: 1 | 2): void {
    this.run({ type: 'RESYNC_SITE', site }, () => this.cluster.resyncSite(site));
  }
  deltaResync(): void {
    this.run({ type: 'DELTA_RESYNC' }, () => this.cluster.deltaResync());
  }
  fullCopy(): void {
    this.run({ type: 'FULL_COPY' }, () => this.cluster.fullCopy());
  }
  failback(): void {
    this.run({ type: 'FAILBACK' }, () => this.cluster.failback());
  }
}

function linkOf(a: SiteId, b: SiteId): '1-2' | '1-3' | '2-3' {
  const name = `${Math.min(a, b)}-${Math.max(a, b)}`;
  if (name !== '1-2' && name !== '1-3' && name !== '2-3') throw new InvalidArgumentError('trace', 'link', name);
  return name;
}
