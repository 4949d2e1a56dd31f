/**
 * The operator's trace (impl/cluster/trace.ts, writer `operator`): the model events that only the operator sees
 * whole, written by each `threesite` command into one log, `operator.ndjson` in the deployment's trace
 * directory, appended to by every command in turn. site-trace.ts says which events the sites record
 * themselves; the operator records the rest:
 *
 * - accepted: `FAIL_SITE`, `RECOVER_SITE`, `FENCE_SITE`, `CUT_LINK`, `RESTORE_LINK`, `FAILOVER`, `FAILBACK`,
 *   when the command has done every step; a failover, failback or recovery at the instant it took effect
 *   (before the new primary was promoted, before the recovered site was told: it may act at once);
 * - refused: every command, with the refusal's code (a refusal changes nothing, so its instant is free),
 *   except an answer that did not come in time (NotAcknowledged): the step's outcome is unknown then, and
 *   the site that ends it records it if it takes place;
 * - a site the operator cannot reach when it fails over is failed to the model (`FAIL_SITE`, once: the log
 *   remembers it until that site is recovered). A site process that was killed is such a site.
 *
 * The view after each record is built from the sites' status reports: modes, roles, the pairs, site 3's
 * numbers and the last judgement; a sync member's update numbers only while it is in sync with no write in
 * flight (a failed or resyncing member may hold writes its peer never had, which its resync discards, and
 * the model does not have them). Views are exact when host I/O is quiet while the command runs.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import type { SiteId } from '../../model/observation.ts';
import { InvalidArgumentError, RefusalError } from '../core/errors.ts';
import { memberRoleOf, remoteModeOf, type DeploymentStatus } from './operator.ts';
import { fileTraceSink, traceLineBytesMax, TraceWriter, type PartialView, type TraceAction, type TraceConfig } from '../cluster/trace.ts';
import { siteDirMode } from '../storage/file-modes.ts';

/** The operator's log in a trace directory. */
export const operatorTraceName = 'operator.ndjson';

/** Largest operator log a command reads back to go on numbering (operator records are few: one per command). */
export const operatorTraceBytesMax = 64 * 1024 * 1024;

/** The events the operator records when accepted (the others are recorded where they end: site-trace.ts). */
const recordedWhenAccepted: ReadonlySet<TraceAction['type']> = new Set(['FAIL_SITE', 'RECOVER_SITE', 'FENCE_SITE', 'CUT_LINK', 'RESTORE_LINK', 'FAILOVER', 'FAILBACK']);

/** The operator's log: appended to by each command. */
export class OperatorTrace {
  readonly #writer: TraceWriter;
  readonly #close: () => void;
  /** Sites this log has failed and not recovered since. */
  readonly #failed: Set<SiteId>;

  private constructor(writer: TraceWriter, close: () => void, failed: Set<SiteId>) {
    this.#writer = writer;
    this.#close = close;
    this.#failed = failed;
  }

  /**
   * Opens the log in `dir` (created with its header if new); reads it back to go on numbering and to know
   * which sites it failed. {@link InvalidArgumentError} if it is larger than {@link operatorTraceBytesMax}
   * or not an operator log.
   */
  static open(dir: string, config: TraceConfig): OperatorTrace {
    fs.mkdirSync(dir, { recursive: true, mode: siteDirMode });
    const file = path.join(dir, operatorTraceName);
    if (!fs.existsSync(file)) {
      const { sink, close } = fileTraceSink(file);
      return new OperatorTrace(new TraceWriter({ writer: 'operator', config }, sink), close, new Set());
    }
    const size = fs.statSync(file).size;
    if (size > operatorTraceBytesMax) throw new InvalidArgumentError('operatorTrace', 'size', `${file} is ${size} bytes, at most ${operatorTraceBytesMax}`);
    const lines = fs.readFileSync(file, 'utf8').split('\n').filter((line) => line.length > 0);
    const header = parse(file, lines[0] ?? '');
    if (header.trace !== 'threesite' || header.writer !== 'operator') throw new InvalidArgumentError('operatorTrace', 'header', `${file} is not an operator trace`);
    let seq = 0;
    let time = Number.NEGATIVE_INFINITY;
    const failed = new Set<SiteId>();
    for (const line of lines.slice(1)) {
      const record = parse(file, line);
      seq = record.seq as number;
      time = record.time as number;
      const action = record.action as { type?: string; site?: SiteId } | undefined;
      const accepted = (record.outcome as { accepted?: boolean } | undefined)?.accepted === true;
      if (!accepted || action?.site === undefined) continue;
      if (action.type === 'FAIL_SITE') failed.add(action.site);
      if (action.type === 'RECOVER_SITE') failed.delete(action.site);
    }
    const { sink, close } = fileTraceSink(file, 'a');
    return new OperatorTrace(new TraceWriter({ writer: 'operator', config }, sink, { seq, time }), close, failed);
  }

  /**
   * Sites the operator cannot reach and has not yet failed in this log are failed now (a failover acts on
   * them as failed). `status` is the deployment's status before the command.
   */
  failUnreachable(status: DeploymentStatus): void {
    for (const site of [1, 2, 3] as const) {
      if (status.sites[site] !== null || this.#failed.has(site)) continue;
      this.#failed.add(site);
      this.#writer.action({ type: 'FAIL_SITE', site }, { accepted: true }, operatorView(status, this.#failed));
    }
  }

  /**
   * Runs a command as `action`: a refusal is recorded (then rethrown); acceptance is recorded for the
   * events the operator records, with the view from `statusAfter`, at the instant `committedAt` gives (a
   * failover or failback takes effect when it promotes the new primary, before its last steps), or now.
   */
  async run<T>(action: TraceAction, command: () => Promise<T>, statusAfter: () => Promise<DeploymentStatus>, committedAt: () => number | undefined = () => undefined): Promise<T> {
    let result: T;
    try {
      result = await command();
    } catch (error) {
      // An answer that did not come (NotAcknowledged) is no refusal: the step may still take place, and the
      // site that ends it records it (a resync, a delta resync, a full copy); the model has no such outcome.
      if (error instanceof RefusalError && error.code !== 'NotAcknowledged') {
        this.#writer.action(action, { accepted: false, code: error.code, message: error.message }, operatorView(await statusAfter(), this.#failed));
      }
      throw error;
    }
    if (recordedWhenAccepted.has(action.type)) {
      if (action.type === 'FAIL_SITE') this.#failed.add(action.site);
      if (action.type === 'RECOVER_SITE') this.#failed.delete(action.site);
      const at = committedAt();
      // A recovery is recorded at the instant the site was told, and its view once the sites settled: site 3
      // may have pulled and restored in between, and records each of those itself, so its numbers are left out.
      const remoteNumbers = action.type !== 'RECOVER_SITE';
      this.#writer.action(action, { accepted: true }, operatorView(await statusAfter(), this.#failed, remoteNumbers), at);
    }
    return result;
  }

  close(): void {
    this.#close();
  }
}

function parse(file: string, line: string): Record<string, unknown> {
  if (line.length > traceLineBytesMax) throw new InvalidArgumentError('operatorTrace', 'line', `${file}: a line longer than ${traceLineBytesMax}`);
  try {
    return JSON.parse(line) as Record<string, unknown>;
  } catch {
    throw new InvalidArgumentError('operatorTrace', 'line', `${file}: not JSON: ${line.slice(0, 80)}`);
  }
}

/**
 * The view the operator's records carry (see the file comment); `remoteNumbers` false leaves out site 3's
 * received and restored numbers and journal (a record whose instant comes before its status: a recovery).
 */
export function operatorView(status: DeploymentStatus, failed: ReadonlySet<SiteId>, remoteNumbers = true): PartialView {
  const sites: Record<number, object> = {};
  const quiet = [status.sites[1], status.sites[2]].every((s) => s === null || (s.inFlightWrites === 0 && s.queuedWrites === 0));
  for (const id of [1, 2, 3] as const) {
    const s = status.sites[id];
    if (s === null) {
      if (failed.has(id)) sites[id] = { mode: 'failed' };
      continue;
    }
    const view: Record<string, unknown> = {
      mode: id === 3 ? (remoteModeOf(status) ?? s.mode) : s.mode,
      role: id === 3 ? 'remote' : memberRoleOf(status, id),
      acceptsHostWrites: s.acceptsHostWrites,
      fenced: s.fenced,
    };
    if (id === 3 && s.remote !== null && s.up && remoteNumbers) {
      Object.assign(view, { received: s.remote.received, restored: s.remote.restored, lastUpdateNumber: s.remote.restored, journal: { first: s.remote.restored + 1, last: s.remote.received } });
    }
    if (id !== 3 && quiet && (s.mode === 'normal' || s.mode === 'syncReversed')) {
      Object.assign(view, { lastUpdateNumber: s.lastUpdateNumber, journal: { last: s.journal.last } });
    }
    sites[id] = view;
  }
  const view: PartialView = { sites, syncPair: { state: status.syncPair, primary: status.primary }, judgement: status.judgement };
  if (status.asyncPair !== null) view.asyncPair = { state: status.asyncPair, source: status.primary };
  return view;
}
