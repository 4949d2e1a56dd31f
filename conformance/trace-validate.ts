/**
 * Trace validation: checks an implementation's ndjson trace (impl/cluster/trace.ts, schema in conformance/TRACE.md)
 * against the model, step by step, and reports the first step the model does not allow. This is how an
 * implementation the harness does not drive (a real deployment, another team's code) is checked.
 *
 * Every action record is mapped to a model event and taken by the statechart's own pure `transition`
 * function, as the lockstep loop does: the model must accept it (or refuse it with the same code), the
 * record's view must agree with the model's observation on every field it carries, and the detail records
 * that follow it (journal appends, restores) must be exactly the update numbers the model's step added.
 * Several logs (one per site process) are merged by `time`. Memory stays bounded: files are read line by
 * line, with a limit on a line's length.
 */
import { createReadStream } from 'node:fs';
import { createInterface } from 'node:readline';
import { initialTransition, transition, type SnapshotFrom } from 'xstate';
import { traceLineBytesMax, traceVersion, type TraceAction, type TraceConfig, type TraceWriterName } from '../impl/cluster/trace.ts';
import { formatEvent, type ModelEvent } from '../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../model/machine.ts';
import type { Observation } from '../model/observation.ts';
import { observe } from '../model/observe.ts';
import { defaultParams, type ModelParams } from '../model/params.ts';
import { journalOf } from '../model/semantics.ts';
import { initialContext, type Entry, type ModelContext } from '../model/state.ts';
import { expectedOutcome } from './lockstep.ts';
import { formatDifference, type FieldDifference } from './observation-diff.ts';

type Snapshot = SnapshotFrom<ReplicationMachine>;

/**
 * Largest number of logs merged in one validation: a site process writes a new log each time it starts, so
 * a deployment's directory holds several per site, and the operator's.
 */
export const traceFilesMax = 64;

/** A log that cannot be read as a trace: the file and line, and why. */
export class TraceFormatError extends Error {
  constructor(
    readonly file: string,
    readonly line: number,
    readonly reason: string,
  ) {
    super(`${file}:${line}: ${reason}`);
    this.name = 'TraceFormatError';
  }
}

/** Where a record came from. */
export interface TracePlace {
  file: string;
  line: number;
  seq: number;
}

/** The first step the model does not allow. */
export interface TraceViolation extends TracePlace {
  /** 0-based index of the action in the merged trace (details belong to the action before them). */
  step: number;
  /** The model event the action was read as (`formatEvent`), or the detail record's kind. */
  event: string;
  kind: 'outcome' | 'view' | 'detail';
  differences: FieldDifference[];
  summary: string;
}

/** The result of a validation. */
export interface TraceValidation {
  files: string[];
  writers: TraceWriterName[];
  actions: number;
  details: number;
  /** True when a write was opaque to the model, so volume digests were not compared from then on. */
  digestsSkipped: boolean;
  /**
   * Writes the secondary journaled whose acknowledgement no log records, taken as written when their primary
   * failed (the host was never told; NBD lets such a write be there or not). Site logs only.
   */
  committedUnacknowledged: number;
  /** Entries a sync member journaled that no model step put there, discarded by a later block copy (`journalReset`). */
  discardedUncommitted: number;
  /**
   * Entries a primary journaled alone before it failed (writes in flight that its secondary never had, the
   * host never told), kept when it came back as primary: taken as host writes it accepted alone at its
   * `RECOVER_SITE` (its resync then copies their blocks to its peer). Site logs only.
   */
  keptUncommitted: number;
  violation: TraceViolation | null;
}

// ---------------------------------------------------------------------------------------------------------
// Reading

type Parsed =
  | { kind: 'action'; place: TracePlace; time: number; action: TraceAction; outcome: { accepted: boolean; code?: string }; view: Record<string, unknown> }
  | { kind: 'detail'; place: TracePlace; time: number; detail: Detail };

/** A detail record, as compared with the model's step (`journalReset`: `updateNumber` is the new last). */
interface Detail {
  kind: 'journalAppend' | 'restore' | 'journalReset';
  site: 1 | 2 | 3;
  updateNumber: number;
  volume?: number;
  offset?: number;
  length?: number;
  /** The data's repeated byte, or null; absent in logs that do not say it. */
  fill?: number | null;
}

interface Header {
  writer: TraceWriterName;
  config: TraceConfig;
}

const writerNames: readonly string[] = ['cluster', 'site-1', 'site-2', 'site-3', 'operator'];
const actionTypes: readonly string[] = [
  'HOST_WRITE',
  'PULL_JOURNAL',
  'RESTORE_JOURNAL',
  'FAIL_SITE',
  'RECOVER_SITE',
  'CUT_LINK',
  'RESTORE_LINK',
  'FENCE_SITE',
  'FAILOVER',
  'RESYNC_SITE',
  'DELTA_RESYNC',
  'FULL_COPY',
  'FAILBACK',
];

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

class Reader {
  constructor(
    readonly file: string,
    private line = 0,
  ) {}

  fail(reason: string): never {
    throw new TraceFormatError(this.file, this.line, reason);
  }

  at(line: number): this {
    this.line = line;
    return this;
  }

  int(record: Record<string, unknown>, field: string, min = 0): number {
    const value = record[field];
    if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min) this.fail(`${field} must be an integer >= ${min}, got ${JSON.stringify(value)}`);
    return value;
  }

  oneOf<T extends number | string>(record: Record<string, unknown>, field: string, values: readonly T[]): T {
    const value = record[field];
    if (!values.includes(value as T)) this.fail(`${field} must be one of ${values.join(', ')}, got ${JSON.stringify(value)}`);
    return value as T;
  }

  header(value: unknown): Header {
    if (!isObject(value) || value.trace !== 'threesite') this.fail('the first line is not a threesite trace header');
    if (value.version !== traceVersion) this.fail(`trace version ${JSON.stringify(value.version)}, this validator reads ${traceVersion}`);
    const writer = this.oneOf(value, 'writer', writerNames) as TraceWriterName;
    const config = value.config;
    if (!isObject(config)) this.fail('header has no config');
    const volumeBytes = this.int(config, 'volumeBytes', 1);
    const blockBytes = this.int(config, 'blockBytes', 1);
    if (volumeBytes % blockBytes !== 0) this.fail(`volumeBytes ${volumeBytes} is not a multiple of blockBytes ${blockBytes}`);
    return {
      writer,
      config: {
        volumeCount: this.int(config, 'volumeCount', 1),
        volumeBytes,
        blockBytes,
        journalEntriesMax: this.int(config, 'journalEntriesMax', 1),
        journalBytesMax: this.int(config, 'journalBytesMax', 1),
        pullBatchEntriesMax: this.int(config, 'pullBatchEntriesMax', 1),
        fencePolicy: this.oneOf(config, 'fencePolicy', ['refuse', 'keepWriting'] as const),
      },
    };
  }

  record(value: unknown, line: number): Parsed {
    if (!isObject(value)) this.fail('a record must be a JSON object');
    const place = { file: this.file, line, seq: this.int(value, 'seq', 1) };
    const time = value.time;
    if (typeof time !== 'number' || !Number.isFinite(time)) this.fail(`time must be a number, got ${JSON.stringify(time)}`);
    if ('action' in value) {
      const action = value.action;
      if (!isObject(action)) this.fail('action must be an object');
      this.oneOf(action, 'type', actionTypes);
      this.actionArguments(action);
      const outcome = value.outcome;
      if (!isObject(outcome) || typeof outcome.accepted !== 'boolean') this.fail('outcome must be {accepted: boolean, ...}');
      if (!outcome.accepted && typeof outcome.code !== 'string') this.fail('a refused outcome needs its code');
      if (!isObject(value.view)) this.fail('view must be an object');
      return { kind: 'action', place, time, action: action as unknown as TraceAction, outcome: outcome as { accepted: boolean; code?: string }, view: value.view };
    }
    const kind = this.oneOf(value, 'kind', ['journalAppend', 'restore', 'journalReset'] as const);
    const site = this.oneOf(value, 'site', [1, 2, 3] as const);
    if (kind === 'journalReset') return { kind: 'detail', place, time, detail: { kind, site, updateNumber: this.int(value, 'last') } };
    const updateNumber = this.int(value, 'updateNumber', 1);
    if (kind === 'restore') {
      if (site !== 3) this.fail('only site 3 restores');
      return { kind: 'detail', place, time, detail: { kind, site, updateNumber } };
    }
    const detail: Detail = { kind, site, updateNumber, volume: this.int(value, 'volume'), offset: this.int(value, 'offset'), length: this.int(value, 'length', 1) };
    if ('fill' in value) {
      if (value.fill !== null) this.int(value, 'fill');
      if (value.fill !== null && (value.fill as number) > 255) this.fail(`fill must be a byte or null, got ${JSON.stringify(value.fill)}`);
      detail.fill = value.fill as number | null;
    }
    return { kind: 'detail', place, time, detail };
  }

  actionArguments(action: Record<string, unknown>): void {
    switch (action.type) {
      case 'HOST_WRITE':
        this.oneOf(action, 'host', [1, 2]);
        this.int(action, 'volume');
        this.int(action, 'offset');
        this.int(action, 'length', 1);
        if (action.fill !== null) this.int(action, 'fill');
        return;
      case 'FAIL_SITE':
      case 'RECOVER_SITE':
      case 'FENCE_SITE':
        this.oneOf(action, 'site', [1, 2, 3]);
        return;
      case 'RESYNC_SITE':
        this.oneOf(action, 'site', [1, 2]);
        return;
      case 'CUT_LINK':
      case 'RESTORE_LINK':
        this.oneOf(action, 'link', ['1-2', '1-3', '2-3']);
        return;
      case 'FAILOVER':
        if (typeof action.force !== 'boolean') this.fail('FAILOVER needs force: boolean');
        return;
    }
  }
}

interface OpenLog {
  file: string;
  header: Header;
  lines: AsyncIterator<string>;
  reader: Reader;
  lineNumber: number;
  lastTime: number;
  lastSeq: number;
  next: Parsed | null;
}

async function openLog(file: string): Promise<OpenLog> {
  const stream = createReadStream(file, { encoding: 'utf8' });
  // A missing file surfaces here, as a typed error rather than an unhandled stream error.
  await new Promise<void>((resolve, reject) => {
    stream.once('open', () => resolve());
    stream.once('error', (error) => reject(new TraceFormatError(file, 0, `cannot read: ${error.message}`)));
  });
  const lines = createInterface({ input: stream, crlfDelay: Infinity })[Symbol.asyncIterator]();
  const reader = new Reader(file);
  const first = await lines.next();
  if (first.done) reader.at(1).fail('the log is empty (no header)');
  const header = reader.at(1).header(parseLine(reader, first.value));
  const log: OpenLog = { file, header, lines, reader, lineNumber: 1, lastTime: -Infinity, lastSeq: 0, next: null };
  await advance(log);
  return log;
}

function parseLine(reader: Reader, text: string): unknown {
  if (text.length > traceLineBytesMax) reader.fail(`line longer than ${traceLineBytesMax} characters`);
  try {
    return JSON.parse(text);
  } catch (error) {
    return reader.fail(`not JSON: ${(error as Error).message}`);
  }
}

async function advance(log: OpenLog): Promise<void> {
  for (;;) {
    const next = await log.lines.next();
    if (next.done) {
      log.next = null;
      return;
    }
    log.lineNumber += 1;
    if (next.value.trim() === '') continue;
    const reader = log.reader.at(log.lineNumber);
    const record = reader.record(parseLine(reader, next.value), log.lineNumber);
    if (record.place.seq <= log.lastSeq) reader.fail(`seq ${record.place.seq} does not follow ${log.lastSeq}`);
    if (record.time < log.lastTime) reader.fail(`time ${record.time} goes back from ${log.lastTime}`);
    log.lastSeq = record.place.seq;
    log.lastTime = record.time;
    log.next = record;
    return;
  }
}

// ---------------------------------------------------------------------------------------------------------
// The model's side

/** The model's parameters for a log's configuration, with the exploration bounds lifted (they refuse nothing). */
export function paramsForTrace(config: TraceConfig): ModelParams {
  return {
    ...defaultParams,
    volumeCount: config.volumeCount,
    blocksPerVolume: config.volumeBytes / config.blockBytes,
    blockBytes: config.blockBytes,
    journalEntriesMax: config.journalEntriesMax,
    pullBatchEntriesMax: config.pullBatchEntriesMax,
    writesMax: Number.MAX_SAFE_INTEGER,
    faultsMax: Number.MAX_SAFE_INTEGER,
    fencePolicy: config.fencePolicy,
  };
}

/**
 * The model's initial snapshot for any parameters: the chart's input validation keeps explorations small,
 * so the snapshot is resolved from the initial context directly (the regions' state value is the same for
 * every parameter set: they mirror the context).
 */
function initialSnapshot(params: ModelParams): Snapshot {
  const [shape] = initialTransition(replicationMachine, {});
  return replicationMachine.resolveState({ value: shape.value, context: initialContext(params) });
}

/** The model event an action stands for, and whether its data is opaque to the model. */
export function eventOfAction(action: TraceAction, params: ModelParams): { event: ModelEvent; opaque: boolean } {
  if (action.type !== 'HOST_WRITE') return { event: action as ModelEvent, opaque: false };
  const { blockBytes, blocksPerVolume } = params;
  const inside = action.offset + action.length <= blocksPerVolume * blockBytes;
  // A range past the end maps to a block past the end, which the model refuses (OutOfRange) as the
  // implementation does; any other range is one update (one update number) of the block it starts in.
  const block = inside ? Math.floor(action.offset / blockBytes) : blocksPerVolume;
  const whole = action.offset % blockBytes === 0 && action.length === blockBytes && action.fill !== null && action.fill > 0 && action.fill < 256;
  return { event: { type: 'HOST_WRITE', host: action.host, volume: action.volume, block, data: whole ? (action.fill as number) : 255 }, opaque: !whole && inside };
}

/** The entries a site's journal newly holds after a step, as the trace's detail records say them. */
function journalEntriesOf(context: ModelContext, site: 1 | 2 | 3): readonly Entry[] {
  return site === 3 ? context.sites[3].pending : journalOf(context.sites[site]);
}

function expectedDetails(before: ModelContext, after: ModelContext, sites: readonly (1 | 2 | 3)[], params: ModelParams, rangesOpaque: boolean): Detail[] {
  const out: Detail[] = [];
  for (const site of sites) {
    const beforeEntries = journalEntriesOf(before, site);
    const beforeLast = site === 3 ? before.sites[3].applied.length + beforeEntries.length : before.sites[site].applied.length;
    for (const entry of journalEntriesOf(after, site)) {
      if (entry.u <= beforeLast) continue;
      const detail: Detail = { kind: 'journalAppend', site, updateNumber: entry.u, volume: entry.volume };
      if (!rangesOpaque) Object.assign(detail, { offset: entry.block * params.blockBytes, length: params.blockBytes });
      out.push(detail);
    }
    if (site === 3) {
      for (let u = before.sites[3].applied.length + 1; u <= after.sites[3].applied.length; u += 1) out.push({ kind: 'restore', site: 3, updateNumber: u });
    }
  }
  return out;
}

/** The fields of `actual` (a partial view) that differ from `expected`. */
function partialDifferences(expected: unknown, actual: unknown, path: string, out: FieldDifference[]): void {
  if (isObject(actual) && isObject(expected)) {
    for (const key of Object.keys(actual)) partialDifferences(expected[key], actual[key], path ? `${path}.${key}` : key, out);
    return;
  }
  if (JSON.stringify(expected) !== JSON.stringify(actual)) out.push({ path, expected, actual });
}

function withoutDigests(view: Record<string, unknown>): Record<string, unknown> {
  const sites = view.sites;
  if (!isObject(sites)) return view;
  const copy: Record<string, unknown> = {};
  for (const [id, site] of Object.entries(sites)) {
    if (!isObject(site)) {
      copy[id] = site;
      continue;
    }
    const { volumeDigest: _digest, ...rest } = site;
    copy[id] = rest;
  }
  return { ...view, sites: copy };
}

const sitesOfWriter: Record<TraceWriterName, readonly (1 | 2 | 3)[]> = {
  cluster: [1, 2, 3],
  'site-1': [1],
  'site-2': [2],
  'site-3': [3],
  operator: [],
};

function describeDetail(detail: Detail | undefined): string {
  if (!detail) return 'nothing';
  const range = detail.offset === undefined ? '' : ` offset=${detail.offset} length=${detail.length}`;
  return `${detail.kind} site=${detail.site} u=${detail.updateNumber}${detail.volume === undefined ? '' : ` volume=${detail.volume}`}${range}`;
}

function sameDetail(expected: Detail, actual: Detail): boolean {
  return (
    expected.kind === actual.kind &&
    expected.site === actual.site &&
    expected.updateNumber === actual.updateNumber &&
    (expected.volume === undefined || expected.volume === actual.volume) &&
    (expected.offset === undefined || (expected.offset === actual.offset && expected.length === actual.length))
  );
}

// ---------------------------------------------------------------------------------------------------------
// Validation

/** Validates one or more logs of one cluster against the model; throws {@link TraceFormatError} on unusable input. */
export async function validateTrace(files: readonly string[]): Promise<TraceValidation> {
  if (files.length === 0 || files.length > traceFilesMax) throw new TraceFormatError('(arguments)', 0, `give 1 to ${traceFilesMax} trace files, got ${files.length}`);
  const logs: OpenLog[] = [];
  for (const file of files) logs.push(await openLog(file));
  const first = logs[0] as OpenLog;
  for (const log of logs) {
    if (JSON.stringify(log.header.config) !== JSON.stringify(first.header.config)) {
      throw new TraceFormatError(log.file, 1, `configuration differs from ${first.file}'s: the logs are not of one cluster`);
    }
  }
  const params = paramsForTrace(first.header.config);
  let snapshot = initialSnapshot(params);
  let digests = true;
  let actions = 0;
  let details = 0;
  let committedUnacknowledged = 0;
  let discardedUncommitted = 0;
  let keptUncommitted = 0;
  // Detail records are matched per site, in order, against the entries the model's steps added at that site
  // (a queue of expected details per site). A whole-cluster log writes an action's details right after it, so
  // there every expected detail must have been seen before the next action. A site's log is written by
  // another process than the action it follows (site 2 journals a write before site 1 logs the acknowledgement),
  // so there the order within the site is checked, and completeness at the end.
  const siteWriters = new Set<1 | 2 | 3>(logs.flatMap((log) => sitesOfWriter[log.header.writer]));
  const strict = logs.some((log) => log.header.writer === 'cluster');
  const expectedQueue: Record<1 | 2 | 3, { detail: Detail; step: number; event: string; place: TracePlace }[]> = { 1: [], 2: [], 3: [] };
  const unmatched: Record<1 | 2 | 3, { detail: Detail; place: TracePlace }[]> = { 1: [], 2: [], 3: [] };
  const result = (violation: TraceViolation | null): TraceValidation => ({
    files: [...files],
    writers: logs.map((log) => log.header.writer),
    actions,
    details,
    digestsSkipped: !digests,
    committedUnacknowledged,
    discardedUncommitted,
    keptUncommitted,
    violation,
  });
  const match = (site: 1 | 2 | 3): TraceViolation | null => {
    const wanted = expectedQueue[site];
    const seen = unmatched[site];
    while (wanted.length > 0 && seen.length > 0) {
      const expected = wanted.shift() as (typeof wanted)[number];
      const actual = seen.shift() as (typeof seen)[number];
      if (!sameDetail(expected.detail, actual.detail)) {
        return {
          ...actual.place,
          step: expected.step,
          event: actual.detail.kind,
          kind: 'detail',
          differences: [{ path: `details.site${site}`, expected: describeDetail(expected.detail), actual: describeDetail(actual.detail) }],
          summary: `after ${expected.event}: expected ${describeDetail(expected.detail)}, the log says ${describeDetail(actual.detail)}`,
        };
      }
    }
    return null;
  };
  const leftover = (at: TracePlace): TraceViolation | null => {
    for (const site of [1, 2, 3] as const) {
      const expected = expectedQueue[site][0];
      if (expected && siteWriters.has(site)) {
        return {
          ...expected.place,
          step: expected.step,
          event: expected.event,
          kind: 'detail',
          differences: [{ path: `details.site${site}`, expected: describeDetail(expected.detail), actual: 'nothing' }],
          summary: `after ${expected.event} (${expected.place.file}:${expected.place.line}) the log lacks ${describeDetail(expected.detail)} (looked up to ${at.file}:${at.line})`,
        };
      }
      const actual = unmatched[site][0];
      if (actual) {
        return {
          ...actual.place,
          step: actions - 1,
          event: actual.detail.kind,
          kind: 'detail',
          differences: [{ path: `details.site${site}`, expected: 'nothing', actual: describeDetail(actual.detail) }],
          summary: `the model's steps add nothing more at site ${site}, the log says ${describeDetail(actual.detail)}`,
        };
      }
    }
    return null;
  };

  /**
   * Before the primary fails: the writes its secondary journaled and no acknowledgement in the logs names
   * (in flight when the primary died) are taken as written, in update-number order, as host writes the model
   * must accept. Their entries at both sync members are then matched as any write's are.
   */
  const commitUnacknowledged = (failing: 1 | 2 | 3, place: TracePlace): TraceViolation | null => {
    for (;;) {
      const context = snapshot.context;
      if (failing !== context.primary || (context.syncPair !== 'inSync' && context.syncPair !== 'reversed')) return null;
      const secondary = context.primary === 1 ? 2 : 1;
      const head = unmatched[secondary][0];
      if (head === undefined || expectedQueue[secondary].length > 0) return null;
      const d = head.detail;
      if (d.kind !== 'journalAppend' || d.updateNumber !== context.sites[secondary].applied.length + 1) return null;
      const action: TraceAction = { type: 'HOST_WRITE', host: context.primary, volume: d.volume as number, offset: d.offset as number, length: d.length as number, fill: d.fill ?? null };
      const { event, opaque } = eventOfAction(action, params);
      if (opaque) digests = false;
      const label = formatEvent(event);
      const expected = expectedOutcome(snapshot, event);
      const step = actions;
      if (!expected.accepted) {
        return {
          ...head.place,
          step,
          event: label,
          kind: 'outcome',
          differences: [{ path: 'outcome', expected: expected.code, actual: 'journaled at the secondary' }],
          summary: `site ${secondary} journaled u=${d.updateNumber} that no acknowledgement names; as a write it would be refused (${expected.code}: ${expected.reason}) before ${place.file}:${place.line}`,
        };
      }
      actions += 1;
      committedUnacknowledged += 1;
      const before = snapshot.context;
      [snapshot] = transition(replicationMachine, snapshot, event);
      for (const detail of expectedDetails(before, snapshot.context, [...siteWriters], params, !digests)) {
        expectedQueue[detail.site].push({ detail, step, event: `${label} (unacknowledged)`, place: head.place });
        const mismatch = match(detail.site);
        if (mismatch) return mismatch;
      }
    }
  };

  /**
   * At the recovery of the model's primary (a sync member that failed and came back primary, with no
   * failover between): the entries it journaled that no step put there, writes in flight when it failed that
   * its secondary never had, are still in its journal and volumes. The implementation keeps them (it hands
   * out no update number twice) and its resync copies their blocks to the secondary; the host was never told
   * (NBD lets such a write be there or not). They are taken as host writes the primary accepted alone, in
   * update-number order, right after its recovery (the sync pair is not in sync from its failure on), as host
   * writes the model must accept. Their entries at the primary are then matched as any write's are.
   */
  /** Whether `site`, the model's primary, failed holding (first) an entry no step made: see {@link keepUncommitted}. */
  const holdsUncommitted = (site: 1 | 2 | 3): boolean => {
    const context = snapshot.context;
    const head = unmatched[site][0];
    return (
      site === context.primary &&
      !context.sites[site].up &&
      head !== undefined &&
      expectedQueue[site].length === 0 &&
      head.detail.kind === 'journalAppend' &&
      head.detail.updateNumber === context.sites[site].applied.length + 1
    );
  };
  const keepUncommitted = (recovered: 1 | 2 | 3, place: TracePlace): TraceViolation | null => {
    for (;;) {
      const context = snapshot.context;
      if (recovered !== context.primary || context.syncPair === 'inSync' || context.syncPair === 'reversed') return null;
      const head = unmatched[recovered][0];
      if (head === undefined || expectedQueue[recovered].length > 0) return null;
      const d = head.detail;
      if (d.kind !== 'journalAppend' || d.updateNumber !== context.sites[recovered].applied.length + 1) return null;
      const action: TraceAction = { type: 'HOST_WRITE', host: recovered, volume: d.volume as number, offset: d.offset as number, length: d.length as number, fill: d.fill ?? null };
      const { event, opaque } = eventOfAction(action, params);
      if (opaque) digests = false;
      const label = formatEvent(event);
      const expected = expectedOutcome(snapshot, event);
      const step = actions;
      if (!expected.accepted) {
        return {
          ...head.place,
          step,
          event: label,
          kind: 'outcome',
          differences: [{ path: 'outcome', expected: expected.code, actual: 'kept at its recovery' }],
          summary: `site ${recovered} came back primary holding u=${d.updateNumber} that no step made; as a write it would be refused (${expected.code}: ${expected.reason}) at ${place.file}:${place.line}`,
        };
      }
      actions += 1;
      keptUncommitted += 1;
      const before = snapshot.context;
      [snapshot] = transition(replicationMachine, snapshot, event);
      for (const detail of expectedDetails(before, snapshot.context, [...siteWriters], params, !digests)) {
        expectedQueue[detail.site].push({ detail, step, event: `${label} (kept at recovery)`, place: head.place });
        const mismatch = match(detail.site);
        if (mismatch) return mismatch;
      }
    }
  };

  for (;;) {
    // The earliest next record of all logs; ties go to the earlier file.
    let log: OpenLog | null = null;
    for (const candidate of logs) {
      if (candidate.next && (!log || candidate.next.time < (log.next as Parsed).time)) log = candidate;
    }
    if (!log) break;
    const record = log.next as Parsed;
    await advance(log);

    if (record.kind === 'detail') {
      details += 1;
      if (record.detail.kind === 'journalReset') {
        // A block copy replaced the site's journal: what it journaled that no model step put there (a
        // primary's writes its peer never had) is gone. The model's steps must have nothing pending there.
        const site = record.detail.site;
        const pending = expectedQueue[site][0];
        if (pending) {
          return result({
            ...record.place,
            step: pending.step,
            event: 'journalReset',
            kind: 'detail',
            differences: [{ path: `details.site${site}`, expected: describeDetail(pending.detail), actual: `journalReset last=${record.detail.updateNumber}` }],
            summary: `site ${site} reset its journal before it held ${describeDetail(pending.detail)} (after ${pending.event})`,
          });
        }
        discardedUncommitted += unmatched[site].length;
        unmatched[site] = [];
        continue;
      }
      unmatched[record.detail.site].push({ detail: record.detail, place: record.place });
      const mismatch = match(record.detail.site);
      if (mismatch) return result(mismatch);
      if (strict && expectedQueue[record.detail.site].length === 0 && unmatched[record.detail.site].length > 0) return result(leftover(record.place));
      continue;
    }

    if (strict) {
      const missing = leftover(record.place);
      if (missing) return result(missing);
    }
    if (!strict && record.action.type === 'FAIL_SITE' && record.outcome.accepted) {
      const committed = commitUnacknowledged(record.action.site, record.place);
      if (committed) return result(committed);
    }
    const step = actions;
    actions += 1;
    const { event, opaque } = eventOfAction(record.action, params);
    if (opaque) digests = false;
    const label = formatEvent(event);
    const expected = expectedOutcome(snapshot, event);
    const actual = record.outcome;
    if (expected.accepted !== actual.accepted || (!expected.accepted && expected.code !== actual.code)) {
      const summary = expected.accepted
        ? `the model accepts ${label}, the log says it was refused with ${actual.code}`
        : actual.accepted
          ? `the model refuses ${label} (${expected.code}: ${expected.reason}), the log says it was accepted`
          : `the model refuses ${label} with ${expected.code} (${expected.reason}), the log with ${actual.code}`;
      return result({
        ...record.place,
        step,
        event: label,
        kind: 'outcome',
        differences: [{ path: 'outcome', expected: expected.accepted ? 'accepted' : expected.code, actual: actual.accepted ? 'accepted' : actual.code }],
        summary,
      });
    }
    // A primary that comes back holding writes no step made keeps them (keepUncommitted), and it judges site 3
    // when their link comes up, with those writes in its journal. The model judges at the recovery itself, so
    // the link to site 3 is taken as coming up just after the kept writes: cut before the recovery, restored
    // after them (model events both; the observation after is the same but for that judgement).
    const keeping = !strict && record.action.type === 'RECOVER_SITE' && record.outcome.accepted && holdsUncommitted(record.action.site);
    const remoteLink = keeping && record.action.type === 'RECOVER_SITE' ? linkTo3(record.action.site) : null;
    const detour = remoteLink !== null && !snapshot.context.cut.includes(remoteLink) && snapshot.context.sites[3].up;
    if (detour) {
      actions += 1;
      [snapshot] = transition(replicationMachine, snapshot, { type: 'CUT_LINK', link: remoteLink });
    }
    const before = snapshot.context;
    // As in the lockstep loop, a refused event is taken too: the chart records a refused promotion's judgement.
    [snapshot] = transition(replicationMachine, snapshot, event);
    const stepDetails = expectedDetails(before, snapshot.context, [...siteWriters], params, !digests);
    if (keeping && record.action.type === 'RECOVER_SITE') {
      // The recovery's own details first, then the writes it keeps; its view is the one after both.
      for (const detail of stepDetails.splice(0)) {
        expectedQueue[detail.site].push({ detail, step, event: label, place: record.place });
        const mismatch = match(detail.site);
        if (mismatch) return result(mismatch);
      }
      const kept = keepUncommitted(record.action.site, record.place);
      if (kept) return result(kept);
      if (detour) {
        actions += 1;
        const beforeLink = snapshot.context;
        [snapshot] = transition(replicationMachine, snapshot, { type: 'RESTORE_LINK', link: remoteLink });
        stepDetails.push(...expectedDetails(beforeLink, snapshot.context, [...siteWriters], params, !digests));
      }
    }
    const model: Observation = observe(snapshot.context, digests);
    const view = digests ? record.view : withoutDigests(record.view);
    const differences: FieldDifference[] = [];
    partialDifferences(digests ? model : withoutDigests(model as unknown as Record<string, unknown>), view, '', differences);
    if (differences.length > 0) {
      return result({
        ...record.place,
        step,
        event: label,
        kind: 'view',
        differences,
        summary: `after ${label}:\n  ${differences.map(formatDifference).join('\n  ')}`,
      });
    }
    for (const detail of stepDetails) {
      expectedQueue[detail.site].push({ detail, step, event: label, place: record.place });
      const mismatch = match(detail.site);
      if (mismatch) return result(mismatch);
    }
  }
  const last = logs[logs.length - 1] as OpenLog;
  return result(leftover({ file: last.file, line: last.lineNumber + 1, seq: last.lastSeq }));
}

/** The link between a sync member and site 3. */
function linkTo3(site: 1 | 2 | 3): '1-3' | '2-3' | null {
  return site === 1 ? '1-3' : site === 2 ? '2-3' : null;
}

/** A validation as lines for a terminal. */
export function formatValidation(validation: TraceValidation): string {
  const head = `trace: ${validation.files.join(', ')} (${validation.writers.join(', ')}): ${validation.actions} steps, ${validation.details} detail records`;
  const digestNote = validation.digestsSkipped ? '\n  volume digests not compared: the log has writes the model cannot represent (not one repeated byte per whole block)' : '';
  const commitNote =
    validation.committedUnacknowledged + validation.discardedUncommitted + validation.keptUncommitted > 0
      ? `\n  ${validation.committedUnacknowledged} unacknowledged writes taken as written when their primary failed; ${validation.discardedUncommitted} journal entries no step made, discarded by a block copy; ${validation.keptUncommitted} kept by a primary that came back`
      : '';
  if (!validation.violation) return `${head}${digestNote}${commitNote}\nPASS: the model allows every step`;
  const v = validation.violation;
  return `${head}${digestNote}${commitNote}\nFAIL at step ${v.step} (${v.file}:${v.line}, seq ${v.seq}): ${v.event}\n  ${v.summary}`;
}
