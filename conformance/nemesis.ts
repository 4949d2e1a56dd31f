/**
 * The nemesis run (Jepsen's shape): for each seeded schedule, a fresh deployment of three site processes,
 * a host workload that records every write and its acknowledgement, the schedule's faults applied and each
 * repaired as the operator would (`threesite recover`, `resync`, `failover`, `delta-resync`, `full-copy`),
 * then a final repair that fails back to site 1, and three checks:
 *
 * 1. **no lost write**: every block of the workload holds, on the primary, its latest acknowledged write or a
 *    later one (read over NBD, each block naming its write: nemesis-workload.ts);
 * 2. **no divergence**: online verify (`threesite verify`, DRBD's verify-alg) finds no differing block among
 *    the three sites, once while the host writes (after the last fault's repair) and once at the end; and the
 *    three volumes read over NBD block by block are identical (a check that does not trust the sites);
 * 3. **the traces replay on the model** (conformance/trace-validate.ts, as `npm start -- --validate-trace`).
 *
 * A schedule also fails when a site process exits that the run did not kill (a crash), when a damaged file
 * does not stop a site from starting, or when the repair does not reach full protection within its bounds.
 * Nothing is retried or hidden: a failure is reported with its schedule's seed, which replays it alone.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { formatValidation, validateTrace } from './trace-validate.ts';
import { NbdClient } from '../impl/net/nbd-client.ts';
import type { DeploymentStatus } from '../impl/site/operator.ts';
import { traceTime } from '../impl/cluster/trace.ts';
import { NemesisDeployment, WaitError, nemesisAnswerTimeoutMs, nemesisVolumeBytes } from './nemesis-deployment.ts';
import { faultKinds, formatFault, formatSchedule, scheduleOf, scheduleSeedOf, type Fault, type FaultKind, type FaultMix, type Schedule } from './nemesis-schedule.ts';
import type { VerifyOutcome, VerifyResult } from '../impl/core/verify.ts';
import { checkAcknowledged, Workload, workloadBlockBytes, workloadBlocks, type LostWrite } from './nemesis-workload.ts';

/** How long one schedule may take, from its deployment to its checks, before it fails. */
export const scheduleMsMax = 90_000;

/** Operator steps one repair takes at most (each a command or a poll). */
export const repairStepsMax = 400;

/** Lost writes and differing blocks listed in a report at most (the counts are always whole). */
export const listedMax = 20;

/** Schedules one run takes at most. */
export const schedulesMax = 10_000;

/**
 * A bug planted on purpose, to show the checks can fail: `loss` zeroes the block of the last acknowledged
 * write at the primary before the check, `divergence` changes a byte of site 3's volume file behind its
 * back, `both` does both.
 */
export type Plant = 'loss' | 'divergence' | 'both' | null;

/** What a run is asked to do. */
export interface NemesisOptions {
  seed: number;
  schedules: number;
  faults: FaultMix;
  /** Where the deployments go (one directory per schedule); removed after a passing schedule unless `keep`. */
  dir: string;
  keep: boolean;
  plant: Plant;
  /** Replays one schedule by its own seed instead of deriving seeds from `seed`. */
  scheduleSeed: number | null;
  /** Receives a line per event worth printing. */
  log: (line: string) => void;
}

/** The figures and the findings of one schedule. */
export interface ScheduleResult {
  index: number;
  seed: number;
  /** The mix the schedule was drawn from: a seed replays its schedule only with the same `--faults`. */
  mix: FaultMix;
  schedule: Schedule;
  passed: boolean;
  failures: string[];
  notes: string[];
  faultsInjected: Partial<Record<FaultKind, number>>;
  writesIssued: number;
  writesAcknowledged: number;
  blocksChecked: number;
  lost: LostWrite[];
  lostCount: number;
  differingBlocks: number;
  differing: { volume: number; block: number; sites: string }[];
  /** The online verifies run (under load, then at the end), each as `threesite verify --json` answered. */
  verifies: VerifyRun[];
  /** Blocks the online verifies compared, and found differing, over all of them. */
  verifyBlocksCompared: number;
  verifyDiffering: number;
  traceActions: number;
  traceValid: boolean | null;
  /** Why the traces were not validated (a fault the model has no event for), or null. */
  traceSkipped: string | null;
  commands: string[];
  durationMs: number;
  /** Milliseconds each phase took (start, faults, final repair, check, close, trace). */
  phasesMs: Record<string, number>;
  dir: string;
}

/** One online verify of a schedule: when it ran, its outcome, what it compared and found. */
export interface VerifyRun {
  when: 'under load' | 'final';
  outcome: VerifyOutcome | 'failed';
  blocksCompared: number;
  blocksDiffering: number;
  blocksNotVerified: number;
  /** The first differing blocks (site, volume, byte offset), or why it could not run or compare. */
  detail: string;
}

/** The whole run, as reports/nemesis.json holds it. */
export interface NemesisReport {
  seed: number;
  faults: FaultMix;
  root: boolean;
  skipped: string[];
  schedules: number;
  passed: number;
  failed: { index: number; seed: number; failures: string[]; dir: string }[];
  faultsInjected: Record<FaultKind, number>;
  writesIssued: number;
  writesAcknowledged: number;
  blocksChecked: number;
  lost: number;
  differingBlocks: number;
  verifies: number;
  verifyBlocksCompared: number;
  verifyDiffering: number;
  traceActions: number;
  results: ScheduleResult[];
}

/** Whether this process may mount a tmpfs (a full disk needs one). */
export function runsAsRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** What the run leaves out, and why, printed before it starts. */
export function skippedFaults(mix: FaultMix): string[] {
  const skipped = ['I/O error at a site: no fault-injecting backend exists that a site process can be told to use (issue 15 asks for one)'];
  if (mix === 'default') skipped.push("corruption of a sync member's file: only with --faults all");
  if (!runsAsRoot()) skipped.push('full disk: not root, so no tmpfs can be mounted');
  return skipped;
}

const pause = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs a nemesis; resolves with its report (the caller prints and writes it). */
export async function runNemesis(options: NemesisOptions): Promise<NemesisReport> {
  if (!Number.isInteger(options.schedules) || options.schedules < 1 || options.schedules > schedulesMax) throw new RangeError(`schedules must be in [1, ${schedulesMax}]`);
  const root = runsAsRoot();
  const skipped = skippedFaults(options.faults);
  for (const line of skipped) options.log(`skipped: ${line}`);
  const results: ScheduleResult[] = [];
  for (let index = 0; index < options.schedules; index += 1) {
    const seed = options.scheduleSeed ?? scheduleSeedOf(options.seed, index);
    const schedule = scheduleOf(index, seed, options.faults, nemesisAnswerTimeoutMs, root);
    options.log(formatSchedule(schedule));
    const result = await runSchedule(schedule, options);
    results.push(result);
    options.log(formatResult(result));
  }
  const faultsInjected = Object.fromEntries(faultKinds.map((kind) => [kind, results.reduce((sum, r) => sum + (r.faultsInjected[kind] ?? 0), 0)])) as Record<FaultKind, number>;
  const sum = (field: (r: ScheduleResult) => number): number => results.reduce((total, r) => total + field(r), 0);
  return {
    seed: options.scheduleSeed ?? options.seed,
    faults: options.faults,
    root,
    skipped,
    schedules: results.length,
    passed: results.filter((r) => r.passed).length,
    failed: results.filter((r) => !r.passed).map((r) => ({ index: r.index, seed: r.seed, failures: r.failures, dir: r.dir })),
    faultsInjected,
    writesIssued: sum((r) => r.writesIssued),
    writesAcknowledged: sum((r) => r.writesAcknowledged),
    blocksChecked: sum((r) => r.blocksChecked),
    lost: sum((r) => r.lostCount),
    differingBlocks: sum((r) => r.differingBlocks),
    verifies: sum((r) => r.verifies.length),
    verifyBlocksCompared: sum((r) => r.verifyBlocksCompared),
    verifyDiffering: sum((r) => r.verifyDiffering),
    traceActions: sum((r) => r.traceActions),
    results,
  };
}

/** One schedule's result in a few lines. */
export function formatResult(r: ScheduleResult): string {
  const faults = Object.entries(r.faultsInjected)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  const head = `${r.passed ? 'PASS' : 'FAIL'} schedule ${r.index} seed ${r.seed}: ${r.writesAcknowledged}/${r.writesIssued} writes acknowledged, ${r.blocksChecked} blocks checked, lost ${r.lostCount}, differing blocks ${r.differingBlocks}, verify ${r.verifies.map((v) => `${v.when} ${v.outcome}`).join(' / ') || 'not run'}, trace ${r.traceValid === null ? 'not validated' : r.traceValid ? `valid (${r.traceActions} steps)` : 'INVALID'}; faults: ${faults || 'none'} (${(r.durationMs / 1000).toFixed(1)} s: ${Object.entries(r.phasesMs).map(([name, ms]) => `${name} ${(ms / 1000).toFixed(1)}`).join(', ')})`;
  const lines = [head, ...r.notes.map((note) => `  note: ${note}`), ...r.failures.map((failure) => `  FAILURE: ${failure}`)];
  if (!r.passed) lines.push(`  replay: npm run nemesis -- --schedule-seed ${r.seed}${r.mix === 'all' ? ' --faults all' : ''}; directory kept: ${r.dir}`);
  return lines.join('\n');
}

/** The state a repair reaches: every site up and connected, the pairs protecting, site 3 caught up if asked. */
function isProtected(status: DeploymentStatus, primary: 1 | 2 | null, caughtUp: boolean): boolean {
  for (const id of [1, 2, 3] as const) {
    const site = status.sites[id];
    if (site === null || !site.up || site.connected.length !== 2) return false;
  }
  if (primary !== null && status.primary !== primary) return false;
  const pairOk = status.primary === 1 ? status.syncPair === 'inSync' : status.syncPair === 'reversed';
  if (!pairOk || status.asyncPair !== 'copying') return false;
  return !caughtUp || status.lag === 0;
}

/** Runs one schedule on a fresh deployment. */
async function runSchedule(schedule: Schedule, options: NemesisOptions): Promise<ScheduleResult> {
  const started = performance.now();
  const dir = path.join(options.dir, `schedule-${schedule.index}-${schedule.seed}`);
  fs.rmSync(dir, { recursive: true, force: true });
  const result: ScheduleResult = {
    index: schedule.index,
    seed: schedule.seed,
    mix: options.faults,
    schedule,
    passed: false,
    failures: [],
    notes: [],
    faultsInjected: {},
    writesIssued: 0,
    writesAcknowledged: 0,
    blocksChecked: 0,
    lost: [],
    lostCount: 0,
    differingBlocks: 0,
    differing: [],
    verifies: [],
    verifyBlocksCompared: 0,
    verifyDiffering: 0,
    traceActions: 0,
    traceValid: null,
    traceSkipped: null,
    commands: [],
    durationMs: 0,
    phasesMs: {},
    dir,
  };
  let phaseStart = started;
  const phase = (name: string): void => {
    const now = performance.now();
    result.phasesMs[name] = Math.round(now - phaseStart);
    phaseStart = now;
  };
  let deployment: NemesisDeployment | null = null;
  let workload: Workload | null = null;
  const deadline = started + scheduleMsMax;
  try {
    const d = await NemesisDeployment.create(dir, schedule.seed, schedule.fencePolicy, schedule.tmpfsSite);
    deployment = d;
    await Promise.all(([1, 2, 3] as const).map((site) => d.start(site)));
    await d.waitFor('the three sites connected and protecting', (s) => isProtected(s, 1, false));
    phase('start');
    // The host writes to the primary: site 1, site 2 after a failover, site 1 again after the failback.
    if (schedule.fencePolicy === 'refuse') result.traceSkipped = 'fence policy refuse: a refusal after a link loss a site saw alone is not traced (conformance/TRACE.md)';
    let writeSite: 1 | 2 = 1;
    const w = new Workload(schedule.seed, schedule.index, () => ({ site: writeSite, port: d.nbdPort(writeSite) }));
    workload = w;
    w.start();
    const run = new ScheduleRun(d, w, result, deadline, (site) => (writeSite = site));
    for (const fault of schedule.faults) {
      if (performance.now() > deadline) throw new WaitError(`schedule ${schedule.index}`, `over its ${scheduleMsMax} ms`, null);
      await pause(fault.atMs);
      await run.apply(fault);
      await run.repair(null, false, `after ${formatFault(fault)}`);
    }
    // Online verify while the host goes on writing: the sites compare at update numbers of their own choosing.
    await onlineVerify(d, result, 'under load');
    // The host stops (a failback quiesces host 2 first); the operator brings back the normal topology.
    await w.stop();
    phase('faults');
    await run.repair(1, true, 'the final repair and failback');
    phase('repair');
    await check(d, w, result, options);
    phase('check');
  } catch (error) {
    result.failures.push(error instanceof WaitError ? `${error.message}; last status ${JSON.stringify(summary(error.last))}` : (error as Error).stack ?? String(error));
    if (deployment !== null) result.notes.push(`site logs:\n${deployment.logText(15)}`);
  } finally {
    await workload?.stop().catch(() => undefined);
    if (workload !== null) {
      result.writesIssued = workload.writes.length;
      result.writesAcknowledged = workload.acknowledged;
    }
    if (deployment !== null) {
      result.commands = [...deployment.commands];
      await deployment.close().catch((error: unknown) => result.failures.push(`closing: ${(error as Error).message}`));
      phase('close');
    }
  }
  // The traces, once every process closed its files (also after another failure: they may say more).
  if (deployment !== null && result.traceSkipped !== null) result.notes.push(`traces not validated: ${result.traceSkipped}`);
  if (deployment !== null && result.traceSkipped === null) {
    try {
      const validation = await validateTrace(deployment.traceFiles());
      result.traceActions = validation.actions;
      result.traceValid = validation.violation === null;
      if (validation.violation !== null) {
        // The step the model does not allow first (the list of files is long and is the directory's).
        const lines = formatValidation(validation).split('\n');
        const at = Math.max(0, lines.findIndex((line) => line.startsWith('FAIL at')));
        result.failures.push(`trace: ${lines.slice(at, at + 6).join('\n  ')}\n  (${validation.files.length} logs in ${path.join(dir, 'trace')})`);
      }
      phase('trace');
    } catch (error) {
      result.traceValid = false;
      result.failures.push(`trace unreadable: ${(error as Error).message}`);
    }
  }
  result.passed = result.failures.length === 0;
  result.durationMs = performance.now() - started;
  if (result.passed && !options.keep) fs.rmSync(dir, { recursive: true, force: true });
  return result;
}

/** A status in one line per site, for a failure report. */
function summary(status: DeploymentStatus | null): unknown {
  if (status === null) return null;
  const site = (id: 1 | 2 | 3) => {
    const s = status.sites[id];
    return s === null ? `unreachable (${status.unreachable[id] ?? ''})` : `${s.up ? 'up' : 'FAILED'} ${s.role} ${s.mode} u=${s.lastUpdateNumber} conn=${s.connected.join('')} pair=${s.syncPair ?? s.remote?.asyncPair}`;
  };
  return { 1: site(1), 2: site(2), 3: site(3), primary: status.primary, syncPair: status.syncPair, asyncPair: status.asyncPair, lag: status.lag };
}

/** The faults of one schedule and the operator's answers to them. */
class ScheduleRun {
  constructor(
    readonly d: NemesisDeployment,
    readonly w: Workload,
    readonly result: ScheduleResult,
    readonly deadline: number,
    readonly setWriteSite: (site: 1 | 2) => void,
  ) {}

  /**
   * Runs an operator command with the host quiet (the writers held, none in flight), as the traces' views
   * need (impl/site/operator-trace.ts); the faults themselves hit the sites under load.
   */
  async #command(...args: string[]): Promise<{ code: number; output: string }> {
    await this.w.hold();
    try {
      return await this.d.threesite(...args);
    } finally {
      this.w.release();
    }
  }

  #count(kind: FaultKind): void {
    this.result.faultsInjected[kind] = (this.result.faultsInjected[kind] ?? 0) + 1;
  }

  /** Applies one fault and lifts it (the process restarted, resumed, the link restored, the space freed). */
  async apply(fault: Fault): Promise<void> {
    const d = this.d;
    switch (fault.kind) {
      case 'kill': {
        this.#count('kill');
        const primary = (await d.status()).primary;
        const failover = fault.site === 1 && primary === 1 && fault.failover;
        const killedAt = await d.kill(fault.site);
        // The model's FAIL_SITE at the instant of the kill; before a failover the operator's own log records
        // it (a site it cannot reach is failed then: operator-trace.ts), as in test/e2e.
        if (!failover) d.recordFault({ type: 'FAIL_SITE', site: fault.site }, killedAt, fault.site !== 3 && fault.site !== primary ? primary : null);
        if (failover) await this.#failover();
        await pause(fault.durationMs);
        await d.start(fault.site);
        return;
      }
      case 'stop':
        this.#count('stop');
        if (fault.site !== 3 && fault.durationMs >= nemesisAnswerTimeoutMs) this.result.traceSkipped ??= `site ${fault.site} stopped past the answer timeout: its peer suspends the pair alone, which no model event marks`;
        d.pause(fault.site);
        await pause(fault.durationMs);
        d.resume(fault.site);
        return;
      case 'cut': {
        this.#count('cut');
        const proxy = d.proxies[fault.link];
        const observer = fault.link === '1-2' ? (await d.status()).primary : null;
        const cutAt = traceTime();
        proxy.cut();
        d.recordFault({ type: 'CUT_LINK', link: fault.link }, cutAt, observer);
        await pause(fault.durationMs);
        // The link's return, recorded at the instant the proxy carries again: no site can act on the link
        // before that, and site 3 may pull the moment it reconnects. The model's RESTORE_LINK applies rules R1
        // and R2 in the same step; the sites take a moment, so the host is held until they have settled.
        await this.w.hold();
        try {
          proxy.restore();
          d.recordFault({ type: 'RESTORE_LINK', link: fault.link }, traceTime());
          const [a, b] = fault.link.split('-').map(Number) as [1 | 2 | 3, 1 | 2 | 3];
          await d.waitFor(`link ${fault.link} reconnected`, (s) => s.sites[a]?.connected.includes(b) === true && s.sites[b]?.connected.includes(a) === true && settled(s));
        } finally {
          this.w.release();
        }
        return;
      }
      case 'corrupt':
        this.#count('corrupt');
        await this.#corrupt(fault.site, fault.file);
        return;
      case 'diskFull':
        this.#count('diskFull');
        await this.#diskFull(fault.site, fault.durationMs);
        return;
    }
  }

  /** Site 1 is gone: host 2 takes over at site 2, as the operator does, and site 3 is brought up to date. */
  async #failover(): Promise<void> {
    const d = this.d;
    await d.waitFor('site 2 to see site 1 gone', (s) => s.sites[1] === null && s.sites[2]?.syncPair === 'suspended');
    const failover = await this.#command('failover');
    if (failover.code !== 0) {
      this.result.notes.push(`failover refused (${failover.output.split('\n')[0]}): site 1 is restarted and recovered instead`);
      return;
    }
    this.setWriteSite(2);
  }

  /** Damages a file of a stopped site; it must refuse to start; the operator rebuilds it from an empty directory. */
  async #corrupt(site: 1 | 2 | 3, file: 'state' | 'journal'): Promise<void> {
    const d = this.d;
    const siteDir = d.siteDir(site);
    const primary = (await d.status()).primary;
    if (site === 2 && primary === 2) {
      // A rebuilt member knows nothing and cannot stay primary; the operator has no failover from site 2 back.
      this.result.notes.push('corrupt of site 2 not applied: site 2 is the primary, and there is no failover from site 2 to site 1');
      return;
    }
    const stoppedAt = traceTime();
    if (file === 'state') await d.kill(site);
    else await d.terminate(site);
    if (site === 1 && primary === 1) {
      // A rebuilt member knows nothing: host 1's writes move to site 2 first (the operator's own log records site 1 failed).
      await this.#failover();
    } else {
      d.recordFault({ type: 'FAIL_SITE', site }, stoppedAt);
    }
    this.result.traceSkipped = `site ${site} was rebuilt from an empty directory, which the model has no event for`;
    // Site 3 restores as fast as it pulls and a clean close leaves its journal empty: with no entry to
    // damage, its other checked state file (remote.json: received, restored, source) is damaged instead.
    const segment = file === 'journal' ? lastSegment(path.join(siteDir, 'journal')) : null;
    const remote = path.join(siteDir, 'remote.json');
    const target = file === 'state' ? path.join(siteDir, 'state.json') : (segment ?? (fs.existsSync(remote) ? remote : path.join(siteDir, 'state.json')));
    if (file === 'journal' && segment === null) this.result.notes.push(`site ${site}'s journal held no entry after its clean stop: ${path.basename(target)} damaged instead`);
    const isSegment = target === segment;
    const bytes = fs.readFileSync(target);
    // A state file: a bit of a character inside the value (past the header's checksum); a segment: a bit of
    // its last entry's data, 16 bytes before its end.
    const at = isSegment ? Math.max(0, bytes.length - 16) : Math.max(0, bytes.length - 8);
    bytes[at] = (bytes[at] as number) ^ (isSegment ? 0x10 : 0x01);
    fs.writeFileSync(target, bytes);
    const refused = await d.startRefused(site);
    const name = path.basename(target);
    if (refused === null) {
      this.result.failures.push(`site ${site} started from a damaged ${name} (bit flipped at byte ${at}) instead of refusing`);
    } else if (!refused.stderr.includes(isSegment ? 'journal' : name)) {
      this.result.failures.push(`site ${site} refused to start from a damaged ${name} but its error does not name the file: ${refused.stderr.trim().split('\n').slice(-2).join(' | ')}`);
    } else {
      this.result.notes.push(`site ${site} refused a damaged ${name} (exit ${refused.code}): ${errorLine(refused.stderr.split('\n'))}`);
    }
    // The rebuild: its data goes, its credentials stay; the site starts empty with `--rebuild` (failed, knowing
    // nothing: a sync member to be resynced block by block, site 3 to be copied in full), never as a new site.
    for (const entry of fs.readdirSync(siteDir)) if (entry !== 'tls') fs.rmSync(path.join(siteDir, entry), { recursive: true, force: true });
    await d.start(site, true);
  }

  /** Fills the site's tmpfs for `durationMs`, then frees it; a site process that ended is restarted. */
  async #diskFull(site: 1 | 2 | 3, durationMs: number): Promise<void> {
    const d = this.d;
    const primary = (await d.status()).primary;
    const filledAt = traceTime();
    const filler = path.join(d.siteDir(site), 'nemesis-filler');
    const fd = fs.openSync(filler, 'w');
    const chunk = Buffer.alloc(64 * 1024);
    try {
      for (let size = chunk.length; size >= 512; ) {
        try {
          fs.writeSync(fd, chunk, 0, size);
        } catch (error) {
          if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
          size = Math.floor(size / 2);
        }
      }
    } finally {
      fs.closeSync(fd);
    }
    await pause(durationMs);
    fs.rmSync(filler, { force: true });
    if (!d.running(site)) {
      this.result.failures.push(`site ${site}'s process ended on a full disk: ${errorLine(d.logs.get(site) ?? [])}`);
      await d.start(site);
      return;
    }
    // A site that met the full disk detached (DRBD's on-io-error detach): it stays up, says so in `status`,
    // and refuses `recover` until its storage is repaired and its process restarted, as the operator does now.
    const status = await d.status();
    const fault = status.sites[site]?.fault ?? null;
    if (fault !== null) {
      this.result.notes.push(`site ${site} detached on ${fault.errno} (${fault.device}); space freed, its process restarted`);
      // A detached secondary does not record its FAIL_SITE (site-node.ts): its primary's log says where.
      if (site !== 3 && primary !== null && site !== primary) d.recordFault({ type: 'FAIL_SITE', site }, filledAt, primary);
      await d.terminate(site);
      await d.start(site);
    }
  }

  /**
   * Brings the deployment to full protection as the operator would: every site recovered, the returning
   * member resynced, site 3 caught up by delta resync or full copy; `primary` 1 asks for a failback when site
   * 2 is primary. Each step is a command or a status poll; bounded by {@link repairStepsMax} and the
   * schedule's deadline. A site process that ended on its own is a failure (a crash), and is restarted.
   */
  async repair(primary: 1 | 2 | null, caughtUp: boolean, what: string): Promise<void> {
    const d = this.d;
    // The last instant no site was seen detached: a sync secondary that detaches later did so after it.
    let healthyAt = traceTime();
    for (let step = 0; step < repairStepsMax; step += 1) {
      if (performance.now() > this.deadline) break;
      for (const site of [1, 2, 3] as const) {
        if (!d.running(site)) {
          this.result.failures.push(`site ${site}'s process ended on its own (${what}): ${errorLine(d.logs.get(site) ?? [])}`);
          await d.start(site);
        }
      }
      const polledAt = traceTime();
      const s = await d.status();
      // A site detached on a device error (a full disk met again, by a catch-up that refilled it) is repaired
      // the one way it can be: its storage has room again, so its process is restarted, then recovered.
      const detached = ([1, 2, 3] as const).find((site) => (s.sites[site]?.fault ?? null) !== null);
      if (detached !== undefined) {
        this.result.notes.push(`site ${detached} detached on ${s.sites[detached]?.fault?.errno} (${what}): its process restarted`);
        // A detached secondary does not record its FAIL_SITE (site-node.ts): its primary's log says where.
        if (detached !== 3 && s.primary !== null && detached !== s.primary) d.recordFault({ type: 'FAIL_SITE', site: detached }, healthyAt, s.primary);
        await d.terminate(detached);
        await d.start(detached);
        continue;
      }
      healthyAt = polledAt;
      if (isProtected(s, primary, caughtUp)) return;
      const command = nextCommand(s, primary);
      if (command === null) {
        await pause(25);
        continue;
      }
      const answer = await this.#command(...command);
      if (command[0] === 'failback' && answer.code === 0) this.setWriteSite(1);
      if (answer.code !== 0) await pause(50);
    }
    const last = await d.status();
    throw new WaitError(what, `no full protection after ${repairStepsMax} steps or the schedule's deadline; commands: ${this.d.commands.slice(-8).join('; ')}`, last);
  }
}

/** The line of a process's output that names its error (the last one that does), or its last line. */
function errorLine(lines: readonly string[]): string {
  const named = lines.filter((line) => /\b[A-Z][A-Za-z]*Error\b|\bE[A-Z]{2,}\b/.test(line) && !/^\s+at /.test(line));
  return (named[named.length - 1] ?? lines.filter((line) => line.trim().length > 0).slice(-1)[0] ?? '').trim().slice(0, 300);
}

/** No site waits for a peer's answer to an operator step (a pull may be under way). */
function settled(s: DeploymentStatus): boolean {
  return ([1, 2, 3] as const).every((id) => {
    const site = s.sites[id];
    return site === null || !site.up || site.busy === null || site.busy === 'pull';
  });
}

/** The operator's next command for a status, or null to wait for the sites (a reconnection, a pull). */
export function nextCommand(s: DeploymentStatus, primary: 1 | 2 | null): string[] | null {
  for (const id of [1, 2, 3] as const) {
    const site = s.sites[id];
    if (site !== null && !site.up) return ['recover', '--site', String(id)];
  }
  for (const id of [1, 2, 3] as const) {
    const site = s.sites[id];
    if (site === null) return null;
    if (site.connected.length !== 2) return null;
  }
  const secondary = s.primary === 1 ? 2 : 1;
  // The returning member resyncs; so does one the primary says needs it (a member rebuilt from an empty
  // directory says it is in sync: the primary knows better).
  if (s.sites[secondary]?.mode === 'resyncing' || s.syncPair === 'resyncing') return ['resync', '--site', String(secondary)];
  if (s.asyncPair === 'deltaResync') return ['delta-resync'];
  if (s.asyncPair === 'fullCopy' || s.asyncPair === 'suspendedOverflow') return ['full-copy'];
  if (primary === 1 && s.primary === 2 && s.syncPair === 'reversed' && s.asyncPair === 'copying' && s.lag === 0) return ['failback'];
  return null;
}

/** The journal segment with the highest number that holds bytes, or null. */
function lastSegment(dir: string): string | null {
  if (!fs.existsSync(dir)) return null;
  const segments = fs
    .readdirSync(dir)
    .filter((name) => /^journal-\d{6,}\.seg$/.test(name))
    .sort()
    .reverse();
  for (const name of segments) {
    const file = path.join(dir, name);
    if (fs.statSync(file).size > 0) return file;
  }
  return null;
}

/** Reads a whole volume of a site over NBD. */
async function readVolume(port: number, volume: number): Promise<Uint8Array> {
  const client = await NbdClient.connect('127.0.0.1', port, `vol${volume}`);
  try {
    return await client.read(0, nemesisVolumeBytes);
  } finally {
    await client.close();
  }
}

/** The checks at the end of a schedule: acknowledged writes on the primary, three equal images. */
async function check(d: NemesisDeployment, w: Workload, result: ScheduleResult, options: NemesisOptions): Promise<void> {
  const acked = w.writes.filter((write) => write.outcome === 'acknowledged');
  if ((options.plant === 'loss' || options.plant === 'both') && acked.length > 0) {
    // A planted bug: the block of the last acknowledged write is zeroed at the primary (through the
    // replicated write path, so the three images stay equal): the check must report that write lost.
    const last = acked[acked.length - 1] as (typeof acked)[number];
    const client = await NbdClient.connect('127.0.0.1', d.nbdPort(1), 'vol0');
    await client.write(last.block * workloadBlockBytes, new Uint8Array(workloadBlockBytes));
    await client.close();
    result.notes.push(`planted: block ${last.block} (write ${last.sequence}, acknowledged) zeroed at the primary`);
    await d.waitFor('site 3 caught up after the planted write', (s) => s.lag === 0);
  }
  if (options.plant === 'divergence' || options.plant === 'both') {
    // A planted bug: one byte of site 3's volume 1 file changed behind the site's back.
    const file = path.join(d.siteDir(3), 'volume-1.img');
    const fd = fs.openSync(file, 'r+');
    fs.writeSync(fd, Buffer.from([0x5a]), 0, 1, 12_345);
    fs.closeSync(fd);
    result.notes.push(`planted: byte 12345 of ${path.basename(file)} at site 3 changed on disk`);
  }
  const primaryImage = await readVolume(d.nbdPort(1), 0);
  const { checked, lost } = checkAcknowledged((block) => primaryImage.subarray(block * workloadBlockBytes, (block + 1) * workloadBlockBytes), w.writes, result.seed, result.index);
  result.blocksChecked = checked;
  result.lostCount = lost.length;
  result.lost = lost.slice(0, 20);
  if (lost.length > 0) result.failures.push(`${lost.length} acknowledged writes not on the primary, first: ${lost.slice(0, 3).map((l) => `block ${l.block} acknowledged write ${l.acknowledged}, found ${l.found}`).join('; ')}`);
  // The three images, block by block over NBD.
  const blocksPerVolume = nemesisVolumeBytes / workloadBlockBytes;
  for (const volume of [0, 1]) {
    const images = await Promise.all(([1, 2, 3] as const).map((site) => readVolume(d.nbdPort(site), volume)));
    for (let block = 0; block < blocksPerVolume; block += 1) {
      const [a, b, c] = images.map((image) => Buffer.from(image.buffer, image.byteOffset + block * workloadBlockBytes, workloadBlockBytes)) as [Buffer, Buffer, Buffer];
      const ab = a.equals(b);
      const ac = a.equals(c);
      if (ab && ac) continue;
      result.differingBlocks += 1;
      if (result.differing.length < listedMax) result.differing.push({ volume, block, sites: !ab && !ac ? (b.equals(c) ? '1 vs 2,3' : '1,2,3 all differ') : !ab ? '2 vs 1,3' : '3 vs 1,2' });
    }
  }
  if (result.differingBlocks > 0) result.failures.push(`${result.differingBlocks} blocks differ among the sites' exports, first: ${result.differing.slice(0, 3).map((x) => `vol${x.volume} block ${x.block} (${x.sites})`).join('; ')}`);
  // The sites' own comparison, as the operator runs it: it must find what the NBD reads found, and no more.
  await onlineVerify(d, result, 'final');
}

/** How long an online verify of the nemesis may take (two 4 MiB volumes; a loaded machine). */
export const nemesisVerifyDeadlineMs = 30_000;

/**
 * Runs `threesite verify --json` as the operator does and records it. Any differing block is a failure; so is
 * a final verify that could not compare every block (the deployment is quiet and fully protected then). Under
 * load, blocks not compared (a site busy past the deadline) are a note, not a failure.
 */
async function onlineVerify(d: NemesisDeployment, result: ScheduleResult, when: VerifyRun['when']): Promise<void> {
  const answer = await d.threesite('verify', '--json', '--deadline-ms', String(nemesisVerifyDeadlineMs));
  const json = answer.output.split('\n').find((line) => line.startsWith('{'));
  if (json === undefined) {
    result.verifies.push({ when, outcome: 'failed', blocksCompared: 0, blocksDiffering: 0, blocksNotVerified: 0, detail: answer.output.split('\n')[0] ?? '' });
    result.failures.push(`online verify (${when}) did not run: exit ${answer.code}: ${answer.output.split('\n')[0] ?? ''}`);
    return;
  }
  const { result: verify } = JSON.parse(json) as { result: VerifyResult };
  const compared = verify.sites.reduce((n, site) => n + site.blocksCompared, 0);
  const differing = verify.sites.reduce((n, site) => n + site.blocksDiffering, 0);
  const notVerified = verify.sites.reduce((n, site) => n + site.blocksNotVerified, 0);
  const listed = verify.sites.flatMap((site) => site.differing.map((block) => `site ${site.site} volume ${block.volume} offset ${block.offset}`));
  const reasons = verify.sites.filter((site) => site.notVerifiedReason !== null).map((site) => `site ${site.site}: ${site.notVerifiedReason}`);
  const detail = differing > 0 ? listed.slice(0, 3).join('; ') : reasons.join('; ');
  result.verifies.push({ when, outcome: verify.outcome, blocksCompared: compared, blocksDiffering: differing, blocksNotVerified: notVerified, detail });
  result.verifyBlocksCompared += compared;
  result.verifyDiffering += differing;
  if (differing > 0) result.failures.push(`online verify (${when}, verify ${verify.verifyId}): ${differing} blocks differ, first: ${detail}`);
  else if (notVerified > 0 && when === 'final') result.failures.push(`online verify (final) could not compare ${notVerified} blocks: ${detail}`);
  else if (notVerified > 0) result.notes.push(`online verify (under load) compared ${compared} blocks, ${notVerified} not compared: ${detail}`);
}

/** The default directory of a run's deployments. */
export function defaultRunDir(seed: number): string {
  return path.join(os.tmpdir(), `threesite-nemesis-${seed}-${process.pid}`);
}
