/**
 * The inflow benchmark (`npm run bench -- --only inflow`): journal inflow control (Hitachi Universal
 * Replicator's inflow control, SRDF/A write pacing; `site-node.ts` `inflowControl`) off, then on, under the
 * same sustained host write load, each run against a freshly initialised three-site deployment (three
 * `threesite serve` processes) in which site 3 copies more slowly than the host writes.
 *
 * How site 3 is made slower, the same in both runs: a small journal ({@link inflowJournalEntriesMax}
 * entries, so the 80% high-water mark and the capacity are reached within seconds) and a slow pull: at most
 * {@link inflowPullBatchEntriesMax} entries every {@link inflowPullIntervalMs} ms, a ceiling of
 * {@link siteThreeEntriesPerSecondMax} entries per second that the report states beside the host's rate.
 * The pull settings were chosen over SIGSTOP/SIGCONT duty cycling of site 3 because they set site 3's rate
 * exactly and identically in both runs, whatever the scheduler does, and leave site 3's control port
 * answering, so that its samples are not missed; a small journal alone would not do, since site 3 at the
 * default pull settings copies faster than one host writes.
 *
 * The load: fio's nbd engine, 4 KiB random writes at queue depth 16 against site 1 (the deployment part's
 * goal job), {@link inflowRampSeconds} s ramp and {@link inflowRunSeconds} s measured. During it, every
 * {@link inflowSampleIntervalMs} ms, the operator's status (the three control ports) gives site 1's journal
 * (entries, past its high-water mark, overflowed), site 3's restored number and the async pair. After it:
 * site 1's inflow counters, the async and standby pairs, site 3 catching up (bounded), whether the three volumes are
 * equal (SHA-256 over the control ports), and, where the async pair was suspended by overflow, the repair an
 * operator must do (a full copy, timed, then the digests again).
 *
 * An edge, not a core: it owns processes, ports and clocks (the machinery is the deployment part's,
 * `deployment.ts`). Every wait is bounded; the whole part is bounded by {@link inflowBenchMsMax}; every process
 * it started is stopped by its pid and every temporary directory removed, on success and on failure.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import type { AsyncPairState, StandbyPairState } from '../model/observation.ts';
import { loadDeploymentConfig } from '../impl/site/deployment-config.ts';
import { operatorCredentials } from '../impl/site/credentials.ts';
import { Operator, type DeploymentStatus } from '../impl/site/operator.ts';
import { tcpClient } from '../impl/site/site-control.ts';
import type { SiteStatus } from '../impl/site/site-node.ts';
import { tickIntervalMs } from '../impl/site/site-serve.ts';
import type { SiteId } from '../impl/core/storage-system.ts';
import { entryHeaderBytes, isHighWater, type JournalLimits } from '../impl/core/journal.ts';
import { Children, DeploymentBenchError, freePorts, pollUntil, ready, runCommand, runFio, toolMissing, type FioJob, type FioResult } from './deployment.ts';

// ---------------------------------------------------------------------------------------------------------
// Setup and limits

/** The one volume fio writes: 64 MiB (small: the full copy that repairs an overflow copies all of it). */
export const inflowVolumeBytes = 64 * 1024 * 1024;
/**
 * Each site's journal capacity in entries (one 4 KiB write is one entry); its high-water mark is 80% of it.
 * Small, so that with inflow control off the journal overflows within the run even on a loaded machine: at
 * 125 host writes/s (measured on the shared two-core machine) against site 3's 80 it is full in about 6 s.
 */
export const inflowJournalEntriesMax = 256;
/** Each journal's byte capacity: room for every entry above, so that the entry count is the limit reached. */
export const inflowJournalBytesMax = 64 * 1024 * 1024;
/** Entries site 3 asks for in one pull, and how often it pulls: its copy rate ceiling. */
export const inflowPullBatchEntriesMax = 8;
export const inflowPullIntervalMs = 100;
/** What site 3 may copy per second at most: {@link inflowPullBatchEntriesMax} per {@link inflowPullIntervalMs}. */
export const siteThreeEntriesPerSecondMax = (inflowPullBatchEntriesMax * 1000) / inflowPullIntervalMs;
/** fio's ramp (not measured) and measured time of each run, in seconds. */
export const inflowRampSeconds = 1;
export const inflowRunSeconds = 15;
/**
 * The sites' answer timeout, in ms (init's default is 2000). Site 3 gives up a full copy that has not
 * finished within one answer timeout of its request (`site-node.ts` counts from the request, not from the
 * last block received), and copying the 64 MiB volume takes longer than 2 s on a loaded two-core machine;
 * the repair after an overflow would then fail instead of being timed. The same in both runs.
 */
export const inflowAnswerTimeoutMs = 20_000;
/** Interval of the status samples during the load, in milliseconds. */
export const inflowSampleIntervalMs = 100;
/** Longest wait for one control-port answer during the load, in milliseconds (a sample that misses it is skipped). */
const statusAnswerMsMax = 2_000;
/** Longest wait for the digests and for the full copy's answer, in milliseconds. */
const longAnswerMsMax = 30_000;
/** Longest wait for the three sites to be ready after they are started, in milliseconds. */
const readyMsMax = 20_000;
/** Longest wait, after the load, for site 3 to restore everything or for the async pair to show it cannot. */
const catchUpMsMax = 20_000;
/** Longest wait for the async pair to copy again with site 3 caught up after the full copy, in milliseconds. */
const repairMsMax = 60_000;
/** Longest `threesite init` may take (it makes the cluster's keys), in milliseconds. */
const initMsMax = 30_000;
/** Longest the whole inflow part (both runs) may take, in milliseconds; past it every process is killed. */
export const inflowBenchMsMax = 300_000;

/** The load, the same in both runs: the deployment part's goal job. */
export const inflowJob: FioJob = { name: 'randwrite-4k-qd16', rw: 'randwrite', blockBytes: 4096, iodepth: 16, sampleLag: true };

/**
 * The delay per host write of the run with inflow control on, unless `--inflow-delay-ms` says otherwise:
 * 400 ms, the delay at which the host is paced to half of site 3's copy rate. While the journal is past high
 * water every new write waits its delay, so the {@link inflowJob}'s 16 writes in flight go at most 16 per
 * delay: 16 per 400 ms is 40 writes/s against site 3's {@link siteThreeEntriesPerSecondMax} (80), and the
 * journal drains back under its mark instead of climbing the last 20% to overflow. A multiple of the site
 * process's 50 ms tick (`site-serve.ts` `tickIntervalMs`): the node measures a write's wait in ticks, so a
 * delay between two multiples holds a write until the next one while the report counts the delay asked.
 */
export const inflowDelayMsDefault = (2 * inflowJob.iodepth * 1000) / siteThreeEntriesPerSecondMax;

// ---------------------------------------------------------------------------------------------------------
// Measurements and the report

/** One status sample during the load. */
export interface InflowSample {
  /** When the status arrived, ms since the load began. */
  readonly atMs: number;
  /** Site 1's last update number. */
  readonly lastUpdateNumber: number;
  /** Site 3's restored number. */
  readonly restored: number;
  /** Entries in site 1's journal, and whether that is past its high-water mark. */
  readonly journalEntries: number;
  readonly highWater: boolean;
  /** Site 1's journal discarded entries site 3 lacked (P7): the async pair is suspended by overflow. */
  readonly sourceOverflow: boolean;
  /** The async pair as the operator shows it (site 3's own state, or suspendedOverflow from site 1). */
  readonly asyncPair: AsyncPairState | null;
}

/** What one run measured, before it is summarised ({@link inflowRunOf}). */
export interface InflowMeasurement {
  /** `inflowControl.delayMs` of the run, or null: inflow control off. */
  readonly delayMs: number | null;
  readonly fio: FioResult;
  readonly samples: readonly InflowSample[];
  readonly missedSamples: number;
  /** Site 1's update numbers handed out by the end of the load (ramp included: the deployment starts at 0). */
  readonly writesTaken: number;
  /** Site 1's inflow counters after the load (`status.inflow`), null when off. */
  readonly inflow: SiteStatus['inflow'];
  readonly afterLoad: {
    readonly asyncPair: AsyncPairState | null;
    readonly standbyPair: StandbyPairState;
    readonly lag: number | null;
    /** From the end of the load to site 3 restored up to site 1, ms; null: it did not (the pair stopped copying). */
    readonly catchUpMs: number | null;
    readonly sitesEqual: boolean;
    readonly sitesOneAndTwoEqual: boolean;
  };
  /**
   * The full copy an overflow made necessary, done by the operator and timed, then the digests again; null
   * when none was needed. `error` says why it did not finish (then `ms` and `sitesEqual` are null).
   */
  readonly repair: { readonly ms: number | null; readonly sitesEqual: boolean | null; readonly error: string | null } | null;
}

/** What the async pair needs after the load, from its state then. */
export type AsyncPairNeeds = 'nothing' | 'resume' | 'deltaResync' | 'fullCopy' | 'unknown';

/** One run's figures. */
export interface InflowRun {
  readonly inflowControl: { readonly delayMs: number } | null;
  readonly host: { readonly iops: number; readonly clatMeanUs: number; readonly clatP50Us: number; readonly clatP99Us: number; readonly ios: number; readonly writesTaken: number };
  /** Writes inflow control delayed and their delays' sum as site 1 reports them (zero when off). */
  readonly inflow: { readonly delayedWrites: number; readonly delayMsTotal: number; readonly meanDelayMs: number; readonly delayedShare: number };
  readonly journal: {
    readonly entriesMax: number;
    readonly samples: number;
    readonly missedSamples: number;
    /** Samples in which site 1's journal was past its high-water mark, and their share of all samples. */
    readonly pastHighWaterSamples: number;
    readonly pastHighWaterShare: number;
    readonly entriesMaxSampled: number;
  };
  readonly asyncPair: {
    /** The states seen, in the order first seen (samples, then after the load). */
    readonly seen: readonly (AsyncPairState | null)[];
    readonly afterLoad: AsyncPairState | null;
    /** Site 1's journal overflowed (the async pair suspended by overflow): seen in a sample or after the load. */
    readonly overflowed: boolean;
    readonly needs: AsyncPairNeeds;
  };
  /**
   * The standby pair (site 2 to site 3) once the load stopped. Not sampled during the load: the operator reads
   * site 2's journal and site 3's received number one after the other, and a sample that reads site 3 after it
   * pulled past what site 2 was read holding shows a hold-error that never was.
   */
  readonly standbyPair: { readonly afterLoad: StandbyPairState };
  /** Site 3's lag in update numbers (site 1's last minus site 3's restored) over the samples. */
  readonly siteThreeLag: { readonly max: number; readonly mean: number; readonly afterLoad: number | null };
  readonly catchUpMs: number | null;
  readonly sitesEqualAfterLoad: boolean;
  readonly sitesOneAndTwoEqualAfterLoad: boolean;
  readonly repair: InflowMeasurement['repair'];
}

/** Whether the measurement tells the story issue 15 expects, and in words what it shows. */
export interface InflowStory {
  /** Off: site 1's journal overflowed and the async pair was suspended by it. */
  readonly offOverflowed: boolean;
  /** On: no overflow, the async pair copying after the load. */
  readonly onKeptCopying: boolean;
  /** On: inflow control delayed writes, and the host ran slower than off. */
  readonly onPaced: boolean;
  readonly asExpected: boolean;
  readonly summary: string;
}

/** Everything the inflow part measured: its key `inflow` in `reports/bench.json`. */
export interface InflowBench {
  readonly setup: {
    readonly volumeBytes: number;
    readonly journal: { readonly entriesMax: number; readonly bytesMax: number; readonly highWaterEntries: number };
    readonly pullBatchEntriesMax: number;
    readonly pullIntervalMs: number;
    readonly restoreIntervalMs: number;
    readonly answerTimeoutMs: number;
    readonly siteThreeEntriesPerSecondMax: number;
    readonly delayMs: number;
    readonly tickIntervalMs: number;
    readonly job: FioJob;
    readonly rampSeconds: number;
    readonly runSeconds: number;
    readonly sampleIntervalMs: number;
  };
  readonly off: InflowRun;
  readonly on: InflowRun;
  /** On over off, same part: host IOPS and site 3's maximum lag. */
  readonly ratios: { readonly iops: number; readonly maxLag: number };
  readonly story: InflowStory;
  readonly elapsedSeconds: number;
  readonly cpus: number;
  readonly node: string;
}

/** Why the inflow benchmark could not finish (a {@link DeploymentBenchError}: `bench/main.ts` reports either). */
export function inflowBenchError(run: string, error: unknown): Error {
  if (!(error instanceof DeploymentBenchError)) return error as Error;
  return new DeploymentBenchError(error.stage, `inflow part, run ${run}: ${error.detail}`, error.log);
}

const round = (value: number, digits = 0): number => Math.round(value * 10 ** digits) / 10 ** digits;

/** The states of `list` without repeats, in the order first seen. */
function distinct<T>(list: readonly T[]): T[] {
  return [...new Set(list)];
}

/** What the async pair needs, from its state after the load. */
export function asyncPairNeeds(state: AsyncPairState | null): AsyncPairNeeds {
  switch (state) {
    case 'copying':
      return 'nothing';
    case 'suspended':
      return 'resume';
    case 'deltaResync':
      return 'deltaResync';
    case 'suspendedOverflow':
    case 'fullCopy':
      return 'fullCopy';
    default:
      return 'unknown';
  }
}

/** Summarises one run's measurement. */
export function inflowRunOf(m: InflowMeasurement, journalEntriesMax: number): InflowRun {
  const samples = m.samples;
  const lags = samples.map((s) => Math.max(0, s.lastUpdateNumber - s.restored));
  const pastHighWater = samples.filter((s) => s.highWater).length;
  const asyncSeen = distinct([...samples.map((s) => s.asyncPair), m.afterLoad.asyncPair]);
  // Site 1 said its journal overflowed in a sample, or the pair shows it after the load (an overflow after the last sample).
  const overflowed = samples.some((s) => s.sourceOverflow) || asyncPairNeeds(m.afterLoad.asyncPair) === 'fullCopy';
  const delayedWrites = m.inflow?.delayedWrites ?? 0;
  // The node sums its own clock's readings: a fraction of a millisecond is noise here.
  const delayMsTotal = Math.round(m.inflow?.delayMsTotal ?? 0);
  return {
    inflowControl: m.delayMs === null ? null : { delayMs: m.delayMs },
    host: { iops: m.fio.iops, clatMeanUs: m.fio.clatMeanUs, clatP50Us: m.fio.clatP50Us, clatP99Us: m.fio.clatP99Us, ios: m.fio.ios, writesTaken: m.writesTaken },
    inflow: {
      delayedWrites,
      delayMsTotal,
      meanDelayMs: delayedWrites === 0 ? 0 : round(delayMsTotal / delayedWrites, 1),
      delayedShare: m.writesTaken === 0 ? 0 : round(delayedWrites / m.writesTaken, 3),
    },
    journal: {
      entriesMax: journalEntriesMax,
      samples: samples.length,
      missedSamples: m.missedSamples,
      pastHighWaterSamples: pastHighWater,
      pastHighWaterShare: samples.length === 0 ? 0 : round(pastHighWater / samples.length, 3),
      entriesMaxSampled: samples.length === 0 ? 0 : Math.max(...samples.map((s) => s.journalEntries)),
    },
    asyncPair: { seen: asyncSeen, afterLoad: m.afterLoad.asyncPair, overflowed, needs: asyncPairNeeds(m.afterLoad.asyncPair) },
    standbyPair: { afterLoad: m.afterLoad.standbyPair },
    siteThreeLag: {
      max: lags.length === 0 ? 0 : Math.max(...lags),
      mean: lags.length === 0 ? 0 : round(lags.reduce((sum, lag) => sum + lag, 0) / lags.length, 1),
      afterLoad: m.afterLoad.lag,
    },
    catchUpMs: m.afterLoad.catchUpMs,
    sitesEqualAfterLoad: m.afterLoad.sitesEqual,
    sitesOneAndTwoEqualAfterLoad: m.afterLoad.sitesOneAndTwoEqual,
    repair: m.repair,
  };
}

/** On over off, or 0 when off is 0 (no ratio). */
function ratio(on: number, off: number): number {
  return off === 0 ? 0 : round(on / off, 3);
}

/** Whether the runs tell the expected story, and what they show in words. */
export function inflowStoryOf(off: InflowRun, on: InflowRun): InflowStory {
  const offOverflowed = off.asyncPair.overflowed;
  const onKeptCopying = !on.asyncPair.overflowed && on.asyncPair.afterLoad === 'copying';
  const onPaced = on.inflow.delayedWrites > 0 && on.host.iops < off.host.iops;
  const asExpected = offOverflowed && onKeptCopying && onPaced;
  const describe = (label: string, run: InflowRun): string =>
    `${label}: host ${run.host.iops.toLocaleString('en')} IOPS, ${run.inflow.delayedWrites.toLocaleString('en')} writes delayed, ` +
    `journal past high water in ${run.journal.pastHighWaterSamples}/${run.journal.samples} samples, ` +
    `${run.asyncPair.overflowed ? 'journal overflowed' : 'no overflow'}, async pair ${run.asyncPair.afterLoad ?? 'unknown'} after the load ` +
    `(needs ${run.asyncPair.needs}), site 3 max lag ${run.siteThreeLag.max.toLocaleString('en')}`;
  const summary = asExpected
    ? 'as expected: off, the host ran faster and site 3 fell out (journal overflow: the async pair suspended, a full copy needed); on, the host was paced and site 3 kept copying'
    : `NOT the expected story (off: overflow; on: paced and copying). Measured: ${describe('off', off)}; ${describe('on', on)}`;
  return { offOverflowed, onKeptCopying, onPaced, asExpected, summary };
}

/** The part's report from its two runs' measurements. */
export function inflowBenchOf(setup: InflowBench['setup'], off: InflowMeasurement, on: InflowMeasurement, elapsedSeconds: number): InflowBench {
  const offRun = inflowRunOf(off, setup.journal.entriesMax);
  const onRun = inflowRunOf(on, setup.journal.entriesMax);
  return {
    setup,
    off: offRun,
    on: onRun,
    ratios: { iops: ratio(onRun.host.iops, offRun.host.iops), maxLag: ratio(onRun.siteThreeLag.max, offRun.siteThreeLag.max) },
    story: inflowStoryOf(offRun, onRun),
    elapsedSeconds,
    cpus: os.cpus().length,
    node: process.version,
  };
}

/** The fewest entries (of the setup's 4 KiB writes) past the journals' own high-water rule. */
function highWaterEntriesOf(limits: JournalLimits): number {
  let entries = 0;
  while (entries < limits.entriesMax && !isHighWater(entries, entries * (inflowJob.blockBytes + entryHeaderBytes), limits)) entries += 1;
  return entries;
}

/** The setup of the part with inflow control's delay `delayMs` for the run with it on. */
export function inflowSetupOf(delayMs: number, restoreIntervalMs: number): InflowBench['setup'] {
  return {
    volumeBytes: inflowVolumeBytes,
    journal: { entriesMax: inflowJournalEntriesMax, bytesMax: inflowJournalBytesMax, highWaterEntries: highWaterEntriesOf({ entriesMax: inflowJournalEntriesMax, bytesMax: inflowJournalBytesMax }) },
    pullBatchEntriesMax: inflowPullBatchEntriesMax,
    pullIntervalMs: inflowPullIntervalMs,
    restoreIntervalMs,
    answerTimeoutMs: inflowAnswerTimeoutMs,
    siteThreeEntriesPerSecondMax,
    delayMs,
    tickIntervalMs,
    job: inflowJob,
    rampSeconds: inflowRampSeconds,
    runSeconds: inflowRunSeconds,
    sampleIntervalMs: inflowSampleIntervalMs,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The table

/** The inflow part's lines for the printed report (markdown). */
export function formatInflowBench(bench: InflowBench): string {
  const n = (value: number): string => value.toLocaleString('en');
  const s = bench.setup;
  const row = (label: string, cell: (run: InflowRun) => string): string => `| ${label} | ${cell(bench.off)} | ${cell(bench.on)} |`;
  const repair = (run: InflowRun): string => {
    if (run.repair === null) return 'none needed';
    if (run.repair.error !== null) return `full copy did not finish: ${run.repair.error.replaceAll('|', '\\|')}`;
    return `full copy + catch-up ${n(run.repair.ms ?? 0)} ms, then equal: ${run.repair.sitesEqual}`;
  };
  return [
    `journal inflow control: fio ${s.job.rw} ${s.job.blockBytes / 1024} KiB qd${s.job.iodepth} against site 1, ${s.rampSeconds} s ramp + ${s.runSeconds} s, a fresh deployment per run; ` +
      `journal ${n(s.journal.entriesMax)} entries (high water ${n(s.journal.highWaterEntries)}), site 3 pulls at most ${s.pullBatchEntriesMax} entries every ${s.pullIntervalMs} ms ` +
      `(${n(s.siteThreeEntriesPerSecondMax)} entries/s), inflow control on: delayMs ${s.delayMs} (the node's tick: ${s.tickIntervalMs} ms), ${bench.cpus} CPUs`,
    '',
    '| measure | off | on |',
    '| --- | ---: | ---: |',
    row('host IOPS', (r) => n(r.host.iops)),
    row('host clat mean / p50 / p99 us', (r) => `${r.host.clatMeanUs} / ${r.host.clatP50Us} / ${r.host.clatP99Us}`),
    row('writes taken by site 1 (ramp included)', (r) => n(r.host.writesTaken)),
    row('writes inflow control delayed (share)', (r) => `${n(r.inflow.delayedWrites)} (${r.inflow.delayedShare})`),
    row('total delay reported, ms (mean per delayed write)', (r) => `${n(r.inflow.delayMsTotal)} (${r.inflow.meanDelayMs})`),
    row(`samples past high water (every ${s.sampleIntervalMs} ms; missed)`, (r) => `${r.journal.pastHighWaterSamples}/${r.journal.samples} = ${r.journal.pastHighWaterShare} (${r.journal.missedSamples})`),
    row('site 1 journal entries, max sampled', (r) => n(r.journal.entriesMaxSampled)),
    row('journal overflowed', (r) => (r.asyncPair.overflowed ? 'yes' : 'no')),
    row('async pair seen / after the load', (r) => `${r.asyncPair.seen.join(', ')} / ${r.asyncPair.afterLoad}`),
    row('async pair needs', (r) => r.asyncPair.needs),
    row('standby pair after the load', (r) => r.standbyPair.afterLoad),
    row('site 3 lag, update numbers: max / mean / after the load', (r) => `${n(r.siteThreeLag.max)} / ${r.siteThreeLag.mean} / ${r.siteThreeLag.afterLoad ?? 'unknown'}`),
    row('site 3 caught up after the load', (r) => (r.catchUpMs === null ? 'no' : `${n(r.catchUpMs)} ms`)),
    row('three sites equal after the load (sites 1 and 2)', (r) => `${r.sitesEqualAfterLoad} (${r.sitesOneAndTwoEqualAfterLoad})`),
    row('repair', repair),
    '',
    `on/off: IOPS ${bench.ratios.iops.toFixed(3)}, site 3 max lag ${bench.ratios.maxLag.toFixed(3)}`,
    bench.story.summary,
    `inflow part: ${bench.elapsedSeconds} s (bound ${inflowBenchMsMax / 1000} s)`,
  ].join('\n');
}

// ---------------------------------------------------------------------------------------------------------
// The run

/** What {@link benchInflow} is asked to do. */
export interface InflowBenchOptions {
  /** `inflowControl.delayMs` of the run with inflow control on. */
  readonly delayMs: number;
  /** Progress lines (to stderr in `bench/main.ts`). */
  readonly progress: (line: string) => void;
}

/** Runs the inflow benchmark: the load with inflow control off, then on, each against a fresh deployment. */
export async function benchInflow(options: InflowBenchOptions): Promise<InflowBench> {
  if (toolMissing('fio')) throw new DeploymentBenchError('tools', 'fio is not installed (apt-get install fio)', '');
  const started = performance.now();
  const dirs: string[] = [];
  let children: Children | undefined;
  let timedOut = false;
  const watchdog = setTimeout(() => {
    timedOut = true;
    children?.killAll();
  }, inflowBenchMsMax);
  const onSignal = (): void => {
    children?.killAll();
    for (const dir of dirs) fs.rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  let restoreIntervalMs = 0;
  const runOnce = async (label: 'off' | 'on', delayMs: number | null): Promise<InflowMeasurement> => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), `threesite-inflow-${label}-`));
    dirs.push(dir);
    children = new Children();
    try {
      const { measurement, restoreMs } = await measureRun(dir, children, delayMs, options.progress);
      restoreIntervalMs = restoreMs;
      return measurement;
    } catch (error) {
      if (timedOut) throw new DeploymentBenchError('timeout', `the inflow part took longer than ${inflowBenchMsMax} ms; every process was killed`, children.log());
      throw inflowBenchError(label, error);
    } finally {
      await children.stopAll();
      children.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  };
  try {
    const off = await runOnce('off', null);
    const on = await runOnce('on', options.delayMs);
    return inflowBenchOf(inflowSetupOf(options.delayMs, restoreIntervalMs), off, on, round((performance.now() - started) / 1000, 1));
  } finally {
    clearTimeout(watchdog);
    process.off('SIGINT', onSignal);
  }
}

/** Samples the operator's status until stopped. */
class InflowSampler {
  readonly samples: InflowSample[] = [];
  missed = 0;
  #stopped = false;
  #loop: Promise<void> | undefined;
  #began = 0;

  constructor(readonly operator: Operator) {}

  start(): void {
    this.#began = performance.now();
    this.#loop = this.#run();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const began = performance.now();
      try {
        const sample = sampleOf(await this.operator.status(), performance.now() - this.#began);
        if (sample === undefined) this.missed += 1;
        else this.samples.push(sample);
      } catch {
        this.missed += 1;
      }
      const waitMs = inflowSampleIntervalMs - (performance.now() - began);
      if (waitMs > 0 && !this.#stopped) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/** One sample from the operator's status, or undefined when site 1 or site 3 did not answer. */
function sampleOf(status: DeploymentStatus, atMs: number): InflowSample | undefined {
  const one = status.sites[1];
  const restored = status.sites[3]?.remote?.restored;
  if (one === null || restored === undefined) return undefined;
  return {
    atMs: Math.round(atMs),
    lastUpdateNumber: one.lastUpdateNumber,
    restored,
    journalEntries: one.journal.entries,
    highWater: one.journal.highWater,
    sourceOverflow: one.sourceOverflow,
    asyncPair: status.asyncPair,
  };
}

/** One run: init, the part's setup in cluster.json, three sites, the load with samples, then the aftermath. */
async function measureRun(dir: string, children: Children, delayMs: number | null, progress: (line: string) => void): Promise<{ measurement: InflowMeasurement; restoreMs: number }> {
  const label = delayMs === null ? 'off' : `on (delayMs ${delayMs})`;
  const ports = await freePorts();
  const cli = path.resolve('bin/threesite.js');
  const clusterDir = path.join(dir, 'cluster');
  try {
    await runCommand(process.execPath, [cli, 'init', '--dir', clusterDir, '--base-port', String(ports.base), '--volume-bytes', String(inflowVolumeBytes), '--volumes', '1'], initMsMax);
  } catch (error) {
    throw new DeploymentBenchError('init', (error as Error).message, '');
  }
  const configFile = path.join(clusterDir, 'cluster.json');
  const raw = JSON.parse(fs.readFileSync(configFile, 'utf8')) as Record<string, unknown>;
  raw.journal = { entriesMax: inflowJournalEntriesMax, bytesMax: inflowJournalBytesMax };
  raw.pullBatchEntriesMax = inflowPullBatchEntriesMax;
  raw.pullIntervalMs = inflowPullIntervalMs;
  raw.answerTimeoutMs = inflowAnswerTimeoutMs;
  if (delayMs === null) delete raw.inflowControl;
  else raw.inflowControl = { delayMs };
  fs.writeFileSync(configFile, `${JSON.stringify(raw, null, 2)}\n`);
  // Checked as the sites will check it: a setup the sites refuse fails here, naming the field.
  const config = loadDeploymentConfig(configFile);
  const operatorTls = operatorCredentials(config);
  const sites = {
    1: children.spawn('site 1', process.execPath, [cli, 'serve', '--site', '1', '--config', configFile]),
    2: children.spawn('site 2', process.execPath, [cli, 'serve', '--site', '2', '--config', configFile]),
    3: children.spawn('site 3', process.execPath, [cli, 'serve', '--site', '3', '--config', configFile]),
  } as const;
  const operatorWith = (timeoutMs: number): Operator => {
    const client = (id: SiteId) => tcpClient(id, config.sites[id].host, config.sites[id].controlPort, operatorTls, timeoutMs);
    return new Operator({ 1: client(1), 2: client(2), 3: client(3) });
  };
  const operator = operatorWith(statusAnswerMsMax);
  const patient = operatorWith(longAnswerMsMax);
  const log = (): string => children.log();
  const alive = (): void => {
    for (const id of [1, 2, 3] as const) {
      if (!sites[id].running) throw new DeploymentBenchError('start', `site ${id} exited (code ${sites[id].process.exitCode})`, log());
    }
  };
  await pollUntil('ready', 'three sites up, connected, sync pair inSync, async pair copying', readyMsMax, async () => {
    alive();
    return ready(await operator.status()) ? true : undefined;
  }, log);

  progress(`inflow bench, ${label}: ${inflowJob.name} against site 1 for ${inflowRampSeconds} + ${inflowRunSeconds} s`);
  const sampler = new InflowSampler(operator);
  sampler.start();
  let fio: FioResult;
  try {
    fio = await runFio(inflowJob, `nbd://127.0.0.1:${config.sites[1].nbdPort}/vol0`, dir, `inflow-${delayMs === null ? 'off' : 'on'}`, undefined, {
      sizeBytes: inflowVolumeBytes,
      rampSeconds: inflowRampSeconds,
      runSeconds: inflowRunSeconds,
    });
  } finally {
    await sampler.stop();
  }
  alive();
  const loadEnded = performance.now();
  const ended = await operator.status();
  const writesTaken = ended.sites[1]?.lastUpdateNumber ?? 0;
  const inflow = ended.sites[1]?.inflow ?? null;

  // Site 3 catches up, unless the async pair no longer copies (then it waits for the operator).
  const settled = await pollUntil('catchUp', 'site 3 restored up to site 1, or the async pair stopped copying', catchUpMsMax, async () => {
    const status = await operator.status();
    if (status.lag === 0) return { status, caughtUp: true };
    return status.asyncPair !== 'copying' && status.asyncPair !== 'deltaResync' && status.asyncPair !== null ? { status, caughtUp: false } : undefined;
  }, log);
  const catchUpMs = settled.caughtUp ? Math.round(performance.now() - loadEnded) : null;
  const digests = async (): Promise<string[]> =>
    pollUntil('digest', "the three sites' volume digests", longAnswerMsMax, async () => {
      const status = await patient.status(true);
      const all = [status.sites[1]?.volumeDigest, status.sites[2]?.volumeDigest, status.sites[3]?.volumeDigest];
      return all.every((d) => typeof d === 'string') ? (all as string[]) : undefined;
    }, log);
  const afterLoad = await digests();
  progress(`inflow bench, ${label}: async pair ${settled.status.asyncPair} after the load, site 3 lag ${settled.status.lag}`);

  // The repair an overflow costs: the operator's full copy, then site 3 caught up and the digests again.
  let repair: InflowMeasurement['repair'] = null;
  if (asyncPairNeeds(settled.status.asyncPair) === 'fullCopy') {
    const repairStarted = performance.now();
    try {
      await patient.fullCopy();
      await pollUntil('catchUp', 'the async pair copying with site 3 caught up after the full copy', repairMsMax, async () => {
        const status = await operator.status();
        return status.asyncPair === 'copying' && status.lag === 0 ? true : undefined;
      }, log);
      const ms = Math.round(performance.now() - repairStarted);
      const repaired = await digests();
      repair = { ms, sitesEqual: repaired[0] === repaired[1] && repaired[1] === repaired[2], error: null };
      progress(`inflow bench, ${label}: full copy and catch-up in ${ms} ms, three sites equal: ${repair.sitesEqual}`);
    } catch (error) {
      // A repair that does not finish is a finding of the run, reported as such; the figures above stand.
      const message = (error as Error).message.split('\n')[0] as string;
      repair = { ms: null, sitesEqual: null, error: message };
      progress(`inflow bench, ${label}: the full copy after the overflow did not finish: ${message}`);
    }
  }
  alive();
  return {
    restoreMs: config.restoreIntervalMs,
    measurement: {
      delayMs,
      fio,
      samples: sampler.samples,
      missedSamples: sampler.missed,
      writesTaken,
      inflow,
      afterLoad: {
        asyncPair: settled.status.asyncPair,
        standbyPair: settled.status.standbyPair,
        lag: settled.status.lag,
        catchUpMs,
        sitesEqual: afterLoad[0] === afterLoad[1] && afterLoad[1] === afterLoad[2],
        sitesOneAndTwoEqual: afterLoad[0] === afterLoad[1],
      },
      repair,
    },
  };
}
