/**
 * A site process's trace (impl/cluster/trace.ts, writer `site-N`): what one storage system did, as the model's
 * events, written where that site is the one that knows the step took place, so that the logs of the three
 * site processes and the operator, merged by time, replay on the model (`npm start -- --validate-trace`).
 *
 * The model's steps are atomic; a site process's are not. Each model event is recorded at one instant
 * (its linearization point), by the site that sees it:
 *
 * - `HOST_WRITE` accepted: at the primary, when the host is acknowledged (the secondary's answer came, or at
 *   once on this site alone with the pair suspended). Acknowledgements come in update-number order, and a
 *   source serves pulls only up to the last write its secondary answered, so the order of the primary's
 *   records is the model's order. Refused: at the site the host wrote to, when it refuses (failed, not the
 *   primary, fenced, out of range). A write refused for fence policy or for room among the writes in flight
 *   is not recorded: the first follows a link loss the site saw alone, which no model event marks, and the
 *   second is back-pressure the model does not have.
 * - `PULL_JOURNAL`: at site 3 when the entries arrive, stamped with the instant the source read them from its
 *   journal (`pullEntries.servedAt`). While its trace is on, site 3 does not restore with a pull under way,
 *   so its restores fall between pulls as the model's do; an answer that comes after site 3 gave its pull up
 *   and recorded something since the source read its journal is dropped (its entries are pulled again): its
 *   instant can no longer be recorded, and a later one would not be the read's.
 * - `RESTORE_JOURNAL`, `DELTA_RESYNC`, `FULL_COPY`: at site 3 when they end. `RESYNC_SITE`: at the primary,
 *   when it has sent the whole resync (the waiting host writes go on after it).
 * - The operator's events (fail, recover, fence, cut and restore a link, failover, failback): the operator's
 *   own log (`operator.ts`).
 *
 * Journal appends are detail records written when the site's journal changes, with the data's repeated byte
 * (`fill`): a write the secondary journaled whose acknowledgement was lost with the primary is taken by the
 * validator as the write it is when the primary fails. A block copy that replaces the journal writes
 * `journalReset`: the writes the site journaled that its peer never did (a primary killed mid-write) end there.
 *
 * Views carry only what the writing site knows at that instant and the model determines: the primary's own
 * update numbers run ahead of its acknowledgements (writes in flight), so its records carry its mode and role
 * and not its numbers; site 3's carry its received and restored numbers and journal. Nothing here runs unless
 * the deployment's configuration names a trace directory.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SyncSiteId } from '../../model/observation.ts';
import type { StorageSystem } from '../core/storage-system.ts';
import { siteDirMode } from '../storage/file-modes.ts';
import {
  fileTraceSink,
  fillOf,
  markSite,
  traceSiteDetails,
  traceTime,
  TraceWriter,
  type PartialView,
  type SiteMark,
  type TraceAction,
  type TraceConfig,
  type TraceOutcome,
} from '../cluster/trace.ts';

/** A host write's facts, kept from its arrival to its acknowledgement. */
export interface TracedWrite {
  volume: number;
  offset: number;
  length: number;
  fill: number | null;
}

/** One site process's trace: its writer, and the marks that turn journal changes into detail records. */
export class SiteTrace {
  readonly writer: TraceWriter;
  readonly file: string;
  readonly #close: () => void;

  private constructor(
    readonly site: StorageSystem,
    file: string,
    config: TraceConfig,
  ) {
    const { sink, close } = fileTraceSink(file);
    this.file = file;
    this.#close = close;
    this.writer = new TraceWriter({ writer: `site-${site.id}`, config }, sink);
  }

  /**
   * Opens a new log in `dir` for this process (a restarted process writes a new file: a log's records are
   * numbered from its header on). The name says the site, the time and the process.
   */
  static open(dir: string, site: StorageSystem, config: TraceConfig): SiteTrace {
    fs.mkdirSync(dir, { recursive: true, mode: siteDirMode });
    const file = path.join(dir, `site-${site.id}-${Math.round(traceTime())}-${process.pid}.ndjson`);
    const trace = new SiteTrace(site, file, config);
    trace.#recordUnloggedEntries(lastLoggedJournalNumber(dir, site.id, file));
    return trace;
  }

  /**
   * A process killed between appending entries to its journal and writing their records leaves entries that
   * no log names (the journal is durable first, the log line follows). The new log names them first, at the
   * restart, so that the validator sees them as it sees any entry a crash left: writes in flight at the crash,
   * kept by a primary that comes back primary, discarded by a resync, or taken as written.
   */
  #recordUnloggedEntries(logged: number | null): void {
    if (logged === null) return;
    const journal = this.site.journal;
    if (journal.last <= Math.max(logged, journal.first - 1)) return;
    traceSiteDetails(this.writer, this.site, { journalLast: logged, restored: this.site.id === 3 ? this.site.restored : 0 });
  }

  /** The trace clock (impl/cluster/trace.ts `traceTime`), for `pullEntries.servedAt`. */
  now(): number {
    return traceTime();
  }

  /**
   * Whether an event that took place at `at` (site 3's pull, at its source's read) can still be recorded at
   * that instant: not when this log already holds a later record (a restore after the pull was given up).
   */
  canRecordAt(at: number): boolean {
    return at >= this.writer.lastTime;
  }

  /** The facts of a host write the trace keeps until its acknowledgement. */
  write(volume: number, offset: number, data: Uint8Array): TracedWrite {
    return { volume, offset, length: data.length, fill: fillOf(data) };
  }

  /** The site's journal and restore point before an input (see {@link details}). */
  mark(): SiteMark {
    return markSite(this.site);
  }

  /** Detail records for what the input since `before` changed: entries newly journaled, updates restored. */
  details(before: SiteMark): void {
    traceSiteDetails(this.writer, this.site, before);
  }

  /** A block copy replaced the journal: it is empty at the sender's last update number. */
  journalReset(): void {
    this.writer.detail({ kind: 'journalReset', site: this.site.id, last: this.site.journal.last });
  }

  /** A host write at this site, acknowledged or refused. */
  hostWrite(write: TracedWrite, outcome: TraceOutcome, view: PartialView): void {
    const host = this.site.id as SyncSiteId;
    this.writer.action({ type: 'HOST_WRITE', host, ...write }, outcome, view);
  }

  /** Any other event this site is the one to see (`at`: when it took place, if before now). */
  action(action: TraceAction, view: PartialView, at?: number): void {
    this.writer.action(action, { accepted: true }, view, at);
  }

  close(): void {
    this.#close();
  }
}

/** Bytes of a previous log read at a time, from its end, when looking for its last journal record. */
export const previousLogChunkBytes = 1024 * 1024;

/**
 * The last update number this site's previous logs in `dir` say its journal held (its last `journalAppend`, or
 * the `last` of a later `journalReset`); 0 when they name none; null when there is no previous log (a first
 * start: nothing to compare the journal with). Reads the logs newest first, each from its end in chunks of
 * {@link previousLogChunkBytes}; a torn last line (the crash) and other lines that do not parse are skipped.
 */
export function lastLoggedJournalNumber(dir: string, siteId: number, exclude: string): number | null {
  const pattern = new RegExp(`^site-${siteId}-(\\d+)-(\\d+)\\.ndjson$`);
  const previous = fs
    .readdirSync(dir)
    .map((name) => ({ name, match: pattern.exec(name) }))
    .filter((entry) => entry.match !== null && path.join(dir, entry.name) !== exclude)
    .sort((a, b) => Number(b.match?.[1]) - Number(a.match?.[1]) || Number(b.match?.[2]) - Number(a.match?.[2]));
  if (previous.length === 0) return null;
  for (const { name } of previous) {
    const found = lastJournalRecord(path.join(dir, name), siteId);
    if (found !== null) return found;
  }
  return 0;
}

/** The number of the last journal record of `siteId` in one log, read backwards; null if it has none. */
function lastJournalRecord(file: string, siteId: number): number | null {
  const fd = fs.openSync(file, 'r');
  try {
    let end = fs.fstatSync(fd).size;
    let carry = '';
    while (end > 0) {
      const start = Math.max(0, end - previousLogChunkBytes);
      const chunk = Buffer.alloc(end - start);
      fs.readSync(fd, chunk, 0, chunk.length, start);
      const lines = (chunk.toString('utf8') + carry).split('\n');
      // The first piece may be the end of a line that began in the chunk before: kept for the next read.
      carry = start > 0 ? (lines.shift() ?? '') : '';
      for (let i = lines.length - 1; i >= 0; i -= 1) {
        const number = journalNumberOf(lines[i] as string, siteId);
        if (number !== null) return number;
      }
      end = start;
    }
    return null;
  } finally {
    fs.closeSync(fd);
  }
}

function journalNumberOf(line: string, siteId: number): number | null {
  if (!line.includes('"journal')) return null;
  let record: unknown;
  try {
    record = JSON.parse(line);
  } catch {
    return null;
  }
  if (typeof record !== 'object' || record === null) return null;
  const r = record as { kind?: unknown; site?: unknown; updateNumber?: unknown; last?: unknown };
  if (r.site !== siteId) return null;
  if (r.kind === 'journalAppend' && Number.isSafeInteger(r.updateNumber)) return r.updateNumber as number;
  if (r.kind === 'journalReset' && Number.isSafeInteger(r.last)) return r.last as number;
  return null;
}
