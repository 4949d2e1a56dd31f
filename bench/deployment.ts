/**
 * The deployment benchmark (`npm run bench -- --only deployment`): fio's nbd engine against site 1 of a
 * freshly initialised three-site deployment (three `threesite serve` processes, synchronous copy to site 2,
 * site 3 pulling and restoring on its timers), beside its floor measured in the same run with the same fio
 * jobs: `nbdkit memory` (no replication, no journal, RAM only). Both targets run side by side and each job
 * runs against nbdkit and then at once against site 1, so that the two halves of a ratio are measured
 * close in time.
 *
 * Per job: IOPS, bandwidth, completion latency (mean, p50, p99) from fio's JSON, and the ratios ours/nbdkit.
 * The 4 KiB qd16 job then runs against site 1 in {@link tlsRounds} pairs, in plain and over NBD with TLS
 * (`nbds://`, host 1's certificate), both halves as the same unprivileged user (libnbd finds the certificate
 * in `$HOME/.pki/libnbd` only then) and with no lag sampler: the median pair's ratio TLS/plain is the cost
 * of TLS on the NBD port.
 * During the 4 KiB qd16 run against our deployment, site 1's last update number and site 3's restored number
 * are sampled every {@link lagSampleIntervalMs} over the control ports (`site-control.ts`, no process spawned
 * per sample); site 3's lag is reported in update numbers and in seconds, the seconds two ways:
 * - by timestamps: for each sample of site 3 at restored number `u`, the time site 1 reached `u` is
 *   interpolated between the two site 1 samples around it; the lag is the difference of the two times;
 * - by rate: the lag in update numbers divided by site 1's write rate over the run.
 * Then each site's CPU share per job (from /proc/PID/stat) and its CPU per write, the peak resident set (VmHWM) of each site
 * process read before it is stopped, the time site 3 needs to catch up after the load stops, and whether the
 * three sites' volumes are equal then (SHA-256 over the control port). With `--profile` each site runs under
 * `node --cpu-prof` and the top self-time functions of each are summarised (`cpu-profile.ts`); the profiles
 * are kept under `reports/deployment-profiles/`.
 *
 * An edge, not a core: it owns processes, ports and clocks. Readiness is polled with bounded timeouts, never
 * slept for; the whole part is bounded by {@link deploymentBenchMsMax}; every process it started is stopped
 * (by its pid) and the temporary directory removed, on success and on failure.
 */

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { loadDeploymentConfig, type DeploymentConfig } from '../impl/site/deployment-config.ts';
import { credentialsLayoutOf } from '../impl/site/credentials.ts';
import { nbdInFlightBytesMax } from '../impl/net/nbd-protocol.ts';
import { Operator, type DeploymentStatus } from '../impl/site/operator.ts';
import { tcpClient } from '../impl/site/site-control.ts';
import { operatorCredentials } from '../impl/site/credentials.ts';
import type { SiteStatus } from '../impl/site/site-node.ts';
import type { SiteId } from '../impl/core/storage-system.ts';
import { outgoingBytesMaxDefault } from '../impl/net/transport-tcp.ts';
import { mainThreadProfileOf, summariseCpuProfile, type ProfileSummary } from './cpu-profile.ts';

const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------------------------------------------------
// Limits and settings

/** The volume fio writes, and the size of nbdkit's memory disk: 256 MiB. */
export const deploymentVolumeBytes = 256 * 1024 * 1024;
/** fio's ramp (not measured) and measured time of each job, in seconds. */
const rampSeconds = 1;
const runSeconds = 5;
/** How long a fio run may take beyond its ramp and run time before it is killed, in milliseconds. */
const fioSlackMs = 20_000;
/** Interval of the lag samples during the 4 KiB qd16 run, in milliseconds. */
export const lagSampleIntervalMs = 100;
/** Longest wait for one control-port answer, in milliseconds (a sample that misses it is skipped). */
const statusAnswerMsMax = 2_000;
/** Interval of the readiness and catch-up polls, in milliseconds. */
const pollIntervalMs = 25;
/** Longest wait for the three sites to be up, connected and in sync after they are started, in milliseconds. */
const readyMsMax = 20_000;
/** Longest wait for nbdkit to accept connections, in milliseconds. */
const nbdkitReadyMsMax = 10_000;
/** Longest wait for site 3 to restore everything once the load stopped, in milliseconds. */
const catchUpMsMax = 20_000;
/** Longest wait for the three sites' volume digests, in milliseconds. */
const digestMsMax = 30_000;
/** Longest wait for a process to exit after SIGTERM before it gets SIGKILL, in milliseconds. */
const stopMsMax = 5_000;
/** Longest the whole deployment part may take, in milliseconds; past it every process is killed. */
export const deploymentBenchMsMax = 90_000;
/** Lines of each process's stderr kept for a failure report. */
const logLinesMax = 200;
/** Functions listed per profiled site. */
const profileTopCount = 12;
/** Attempts at finding nine free consecutive ports. */
const portSearchAttemptsMax = 50;

/** The goal the team set: our 4 KiB qd16 IOPS with replication on, over nbdkit's. */
export const iopsRatioGoalMin = 0.5;

/** One fio job, run the same way against both targets. */
export interface FioJob {
  readonly name: string;
  readonly rw: 'randwrite' | 'write';
  readonly blockBytes: number;
  readonly iodepth: number;
  /** Sample site 3's lag during this job (our deployment only). */
  readonly sampleLag: boolean;
}

/** The jobs, in the order they run. */
export const deploymentJobs: readonly FioJob[] = [
  { name: 'randwrite-4k-qd1', rw: 'randwrite', blockBytes: 4096, iodepth: 1, sampleLag: false },
  { name: 'randwrite-4k-qd16', rw: 'randwrite', blockBytes: 4096, iodepth: 16, sampleLag: true },
  { name: 'write-1m-qd4', rw: 'write', blockBytes: 1024 * 1024, iodepth: 4, sampleLag: false },
];

/** The job whose IOPS ratio the goal is about. */
const goalJob = 'randwrite-4k-qd16';

// ---------------------------------------------------------------------------------------------------------
// Results

/** What fio measured for one job against one target. */
export interface FioResult {
  readonly iops: number;
  readonly bandwidthMiBps: number;
  /** Completion latency (submission to completion), in microseconds. */
  readonly clatMeanUs: number;
  readonly clatP50Us: number;
  readonly clatP99Us: number;
  /** Total latency (slat + clat) mean, in microseconds. */
  readonly latMeanUs: number;
  readonly ios: number;
  /** fio's own CPU, user + system, in percent of one core. */
  readonly fioCpuPercent: number;
}

/** CPU used by a process during a job, in percent of one core. */
export type CpuShares = Record<string, number>;

/** Site 3's lag during the sampled run. */
export interface LagReport {
  readonly samples: number;
  readonly missedSamples: number;
  readonly intervalMs: number;
  readonly updateNumbers: { readonly max: number; readonly mean: number };
  /** Seconds by timestamps: when site 3 restored u minus when site 1 reached u (interpolated). */
  readonly secondsByTimestamps: { readonly max: number; readonly mean: number; readonly samples: number };
  /** Seconds by rate: the lag in update numbers over site 1's write rate during the run. */
  readonly secondsByRate: { readonly max: number; readonly mean: number; readonly writesPerSecond: number };
}

/** The memory of one site process, in MiB. */
export interface SiteMemory {
  readonly pid: number;
  /** VmRSS once the deployment was ready, before any load. */
  readonly idleRssMiB: number;
  /** VmHWM (peak resident set) read at the end, before the process was stopped. */
  readonly peakRssMiB: number;
  /** What the limits allow above idle: NBD in-flight bytes of one connection and two peer send queues. */
  readonly boundMiB: number;
  readonly withinBound: boolean;
}

/** One job's figures against both targets. */
export interface JobComparison {
  readonly job: FioJob;
  readonly ours: FioResult;
  readonly nbdkit: FioResult;
  readonly iopsRatio: number;
  readonly bandwidthRatio: number;
  readonly clatMeanRatio: number;
  readonly clatP99Ratio: number;
  /** CPU of each process during our run (`site 1`, `site 2`, `site 3`) and of nbdkit during its run. */
  readonly cpuPercent: CpuShares;
  /**
   * The same CPU per write, in microseconds: CPU share over IOPS (the ramp is inside the CPU window, so this
   * assumes the ramp ran at the measured rate). The sum over the sites is what one replicated write costs.
   */
  readonly cpuMicrosecondsPerWrite: CpuShares;
}

/**
 * What TLS on the NBD port costs: the goal job over TLS beside the same job in plain, same run, in
 * {@link tlsRounds} alternating pairs with the same user and no sampler; the median pair.
 */
export interface TlsCost {
  readonly job: string;
  readonly plain: FioResult;
  readonly tls: FioResult;
  /** IOPS over TLS / IOPS in plain. */
  readonly iopsRatio: number;
  /** Mean completion latency over TLS / in plain. */
  readonly clatMeanRatio: number;
  /** CPU of each site during the TLS run. */
  readonly cpuPercent: CpuShares;
  /** The IOPS ratio TLS/plain of each round; the figures above are the median round's. */
  readonly roundsIopsRatio: number[];
}

/** Rounds of the TLS cost (plain, then TLS, as the same host user): the median round is reported. */
export const tlsRounds = 3;

/** Everything the deployment benchmark measured. */
export interface DeploymentBench {
  readonly volumeBytes: number;
  readonly rampSeconds: number;
  readonly runSeconds: number;
  readonly config: Pick<DeploymentConfig, 'journal' | 'pullBatchEntriesMax' | 'pullIntervalMs' | 'restoreIntervalMs' | 'inFlightWritesMax' | 'flushEachWrite'>;
  readonly jobs: readonly JobComparison[];
  readonly goal: { readonly job: string; readonly iopsRatio: number; readonly min: number; readonly met: boolean };
  readonly lag: LagReport;
  /** The goal job over NBD with TLS against the same job in plain, run one after the other. */
  readonly tls: TlsCost;
  /** Time from the end of the last job to site 3 restored up to site 1's last update number, in ms. */
  readonly catchUpMs: number;
  readonly sitesEqualAfterCatchUp: boolean;
  readonly memory: Record<SiteId, SiteMemory>;
  /** The `threesite` command the sites ran. */
  readonly cli: string;
  readonly profiled: boolean;
  readonly profiles: Partial<Record<SiteId, ProfileSummary>>;
  readonly elapsedSeconds: number;
  readonly cpus: number;
  readonly node: string;
}

/** Why the deployment benchmark could not finish; `log` holds the tail of the processes' stderr. */
export class DeploymentBenchError extends Error {
  constructor(
    readonly stage: 'tools' | 'ports' | 'init' | 'start' | 'ready' | 'nbdkit' | 'fio' | 'catchUp' | 'digest' | 'timeout',
    readonly detail: string,
    readonly log: string,
  ) {
    super(`deployment benchmark, ${stage}: ${detail}${log === '' ? '' : `\n${log}`}`);
    this.name = 'DeploymentBenchError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// Processes

/** A child process started by the benchmark, with the tail of its stderr. */
export class Child {
  readonly lines: string[] = [];
  readonly exited: Promise<void>;
  constructor(
    readonly label: string,
    readonly process: ChildProcess,
  ) {
    this.exited = new Promise((resolve) => {
      if (process.exitCode !== null || process.signalCode !== null) resolve();
      else process.once('exit', () => resolve());
    });
    process.stderr?.setEncoding('utf8');
    process.stderr?.on('data', (chunk: string) => {
      for (const line of chunk.trimEnd().split('\n')) this.lines.push(line);
      if (this.lines.length > logLinesMax) this.lines.splice(0, this.lines.length - logLinesMax);
    });
  }

  get pid(): number {
    return this.process.pid as number;
  }

  get running(): boolean {
    return this.process.exitCode === null && this.process.signalCode === null;
  }

  /** SIGTERM, then SIGKILL after {@link stopMsMax}; resolves once the process is gone. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.process.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<'late'>((resolve) => {
      timer = setTimeout(() => resolve('late'), stopMsMax);
    });
    const outcome = await Promise.race([this.exited.then(() => 'exited' as const), late]);
    clearTimeout(timer);
    if (outcome === 'late' && this.running) {
      this.process.kill('SIGKILL');
      await this.exited;
    }
  }
}

/** Every process the benchmark started, so that any failure stops them all (the inflow part uses it too). */
export class Children {
  readonly #all = new Set<Child>();
  readonly #onExit = (): void => {
    for (const child of this.#all) if (child.running) child.process.kill('SIGKILL');
  };

  constructor() {
    process.on('exit', this.#onExit);
  }

  spawn(label: string, command: string, args: string[]): Child {
    const child = new Child(label, spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] }));
    this.#all.add(child);
    return child;
  }

  /** The tail of every process's stderr. */
  log(linesEach = 30): string {
    return [...this.#all].map((child) => `--- ${child.label} (pid ${child.pid})\n${child.lines.slice(-linesEach).join('\n')}`).join('\n');
  }

  /** Stops every process still running (sites first, so their SIGTERM closes cleanly). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.#all].map((child) => child.stop()));
  }

  /** Kills every process at once (the deadline passed). */
  killAll(): void {
    this.#onExit();
  }

  dispose(): void {
    process.off('exit', this.#onExit);
  }
}

/** Runs `command` to completion, bounded by `timeoutMs`; rejects on a non-zero exit or timeout. */
export async function runCommand(command: string, args: string[], timeoutMs: number, env?: NodeJS.ProcessEnv): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(command, args, { timeout: timeoutMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, env });
}

/** The user and group id fio runs as over TLS (`nobody`): libnbd reads `$HOME/.pki/libnbd` only for a user other than root. */
const hostUserId = 65534;

/**
 * A home for host 1's unprivileged user with its credentials where libnbd looks for them
 * (`$HOME/.pki/libnbd`), for fio's nbd engine over `nbds://` (its URI cannot name a certificate directory:
 * libnbd refuses a URI's local file unless the program allows it).
 */
function hostHome(dir: string, hostDir: string): string {
  const home = path.join(dir, 'home-host-1');
  fs.chmodSync(dir, 0o711);
  fs.mkdirSync(path.join(home, '.pki', 'libnbd'), { recursive: true });
  const files = ['ca-cert.pem', 'client-cert.pem', 'client-key.pem'];
  for (const file of files) fs.copyFileSync(path.join(hostDir, file), path.join(home, '.pki', 'libnbd', file));
  for (const entry of [home, path.join(home, '.pki'), path.join(home, '.pki', 'libnbd'), ...files.map((file) => path.join(home, '.pki', 'libnbd', file))]) fs.chownSync(entry, hostUserId, hostUserId);
  return home;
}

/** Whether `command` cannot be run (not installed). */
export function toolMissing(command: string): boolean {
  return spawnSync(command, ['--version'], { stdio: 'ignore' }).error !== undefined;
}

// ---------------------------------------------------------------------------------------------------------
// Ports and /proc

async function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

/** Lowest base port tried. */
const basePortMin = 20_000;

/** The first port of the kernel's ephemeral range (outgoing connections take ports from it). */
function ephemeralPortMin(): number {
  try {
    const low = Number(fs.readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(low) && low > basePortMin + 100 ? low : 32_768;
  } catch {
    return 32_768;
  }
}

/**
 * A base port with nine consecutive free ports (three per site), and one more free port for nbdkit, all
 * below the ephemeral range: a port found free there could be taken by any outgoing connection (ours
 * included) before the site binds it.
 */
export async function freePorts(): Promise<{ base: number; nbdkit: number }> {
  const slots = Math.floor((ephemeralPortMin() - basePortMin) / 10) - 1;
  for (let attempt = 0; attempt < portSearchAttemptsMax; attempt += 1) {
    const base = basePortMin + ((process.pid * 7919 + attempt * 104_729) % slots) * 10;
    let free = true;
    for (let port = base; port < base + 10 && free; port += 1) free = await portFree(port);
    if (free) return { base, nbdkit: base + 9 };
  }
  throw new DeploymentBenchError('ports', `no ten free consecutive ports found in ${portSearchAttemptsMax} attempts`, '');
}

async function connects(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

function procStatusKiB(pid: number, field: 'VmHWM' | 'VmRSS'): number {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(text);
  return match === null ? 0 : Number(match[1]);
}

/** Clock ticks of CPU (user + system) a process has used; Linux's USER_HZ is 100 on every architecture node runs on. */
const clockTicksPerSecond = 100;

function cpuTicks(pid: number): number {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces) start after the last ')'.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return 0;
  }
}

const mib = (bytes: number): number => Math.round((bytes / (1024 * 1024)) * 10) / 10;
const round = (value: number, digits = 0): number => Math.round(value * 10 ** digits) / 10 ** digits;

// ---------------------------------------------------------------------------------------------------------
// fio

interface FioJson {
  jobs: {
    error: number;
    usr_cpu: number;
    sys_cpu: number;
    write: {
      iops: number;
      bw_bytes: number;
      total_ios: number;
      clat_ns: { mean: number; percentile?: Record<string, number> };
      lat_ns: { mean: number };
    };
  }[];
}

/** How long a fio job runs and over how many bytes of the volume: the deployment part's by default. */
export interface FioShape {
  readonly sizeBytes: number;
  readonly rampSeconds: number;
  readonly runSeconds: number;
}

const deploymentFioShape: FioShape = { sizeBytes: deploymentVolumeBytes, rampSeconds, runSeconds };

/**
 * Runs one fio job against `uri`; its JSON goes to a file (fio's nbd engine prints to stdout too). With
 * `home`, fio runs as the host's unprivileged user in that home ({@link hostHome}): for an `nbds://` URI.
 * Killed past its ramp and run time plus {@link fioSlackMs}.
 */
export async function runFio(job: FioJob, uri: string, dir: string, label: string, home?: string, shape: FioShape = deploymentFioShape): Promise<FioResult> {
  const output = path.join(home ?? dir, `fio-${label}-${job.name}.json`);
  const args = [
    `--name=${job.name}`,
    '--ioengine=nbd',
    `--uri=${uri}`,
    `--rw=${job.rw}`,
    `--bs=${job.blockBytes}`,
    `--iodepth=${job.iodepth}`,
    `--size=${shape.sizeBytes}`,
    '--time_based',
    `--ramp_time=${shape.rampSeconds}`,
    `--runtime=${shape.runSeconds}`,
    '--randrepeat=1',
    '--output-format=json',
    `--output=${output}`,
  ];
  try {
    const timeoutMs = (shape.rampSeconds + shape.runSeconds) * 1000 + fioSlackMs;
    if (home === undefined) await runCommand('fio', args, timeoutMs);
    else await runCommand('setpriv', [`--reuid=${hostUserId}`, `--regid=${hostUserId}`, '--clear-groups', '--', 'fio', ...args], timeoutMs, { ...process.env, HOME: home });
  } catch (error) {
    const e = error as { stderr?: string; message: string };
    throw new DeploymentBenchError('fio', `fio ${job.name} against ${label} (${uri}) failed: ${e.message.split('\n')[0]}\n${e.stderr ?? ''}`, '');
  }
  const parsed = JSON.parse(fs.readFileSync(output, 'utf8')) as FioJson;
  const run = parsed.jobs[0];
  if (run === undefined || run.error !== 0) throw new DeploymentBenchError('fio', `fio ${job.name} against ${label} reported error ${run?.error}`, '');
  const w = run.write;
  const percentile = (key: string): number => round((w.clat_ns.percentile?.[key] ?? 0) / 1000, 1);
  return {
    iops: Math.round(w.iops),
    bandwidthMiBps: round(w.bw_bytes / (1024 * 1024), 1),
    clatMeanUs: round(w.clat_ns.mean / 1000, 1),
    clatP50Us: percentile('50.000000'),
    clatP99Us: percentile('99.000000'),
    latMeanUs: round(w.lat_ns.mean / 1000, 1),
    ios: w.total_ios,
    fioCpuPercent: round(run.usr_cpu + run.sys_cpu, 1),
  };
}

/** Runs `body` while measuring the CPU of `pids` (percent of one core over the wall time). */
async function withCpu<T>(pids: Record<string, number>, body: () => Promise<T>): Promise<{ value: T; cpu: CpuShares }> {
  const before = Object.fromEntries(Object.entries(pids).map(([label, pid]) => [label, cpuTicks(pid)]));
  const started = performance.now();
  const value = await body();
  const seconds = (performance.now() - started) / 1000;
  const cpu: CpuShares = {};
  for (const [label, pid] of Object.entries(pids)) cpu[label] = round((100 * (cpuTicks(pid) - (before[label] as number))) / clockTicksPerSecond / seconds, 0);
  return { value, cpu };
}

// ---------------------------------------------------------------------------------------------------------
// Lag sampling

interface LagSample {
  /** When site 1's answer arrived, ms. */
  t1: number;
  last: number;
  /** When site 3's answer arrived, ms. */
  t3: number;
  restored: number;
}

/** Samples site 1's last update number and site 3's restored number until stopped. */
class LagSampler {
  readonly samples: LagSample[] = [];
  missed = 0;
  #stopped = false;
  #loop: Promise<void> | undefined;

  constructor(
    readonly one: ReturnType<typeof tcpClient>,
    readonly three: ReturnType<typeof tcpClient>,
  ) {}

  start(): void {
    this.#loop = this.#run();
  }

  async stop(): Promise<LagReport> {
    this.#stopped = true;
    await this.#loop;
    return lagReport(this.samples, this.missed);
  }

  async #run(): Promise<void> {
    while (!this.#stopped) {
      const began = performance.now();
      const timed = async (client: ReturnType<typeof tcpClient>): Promise<{ status: SiteStatus; at: number }> => {
        const status = await client.status(false);
        return { status, at: performance.now() };
      };
      try {
        const [a, b] = await Promise.all([timed(this.one), timed(this.three)]);
        const restored = b.status.remote?.restored;
        if (restored === undefined) this.missed += 1;
        else this.samples.push({ t1: a.at, last: a.status.lastUpdateNumber, t3: b.at, restored });
      } catch {
        this.missed += 1;
      }
      const waitMs = lagSampleIntervalMs - (performance.now() - began);
      if (waitMs > 0 && !this.#stopped) await new Promise((resolve) => setTimeout(resolve, waitMs));
    }
  }
}

/** When site 1 reached `u`, interpolated between the samples around it; undefined before the first sample. */
function timeReached(samples: readonly LagSample[], u: number): number | undefined {
  const first = samples[0];
  if (first === undefined || u <= first.last) return undefined;
  for (let i = 1; i < samples.length; i += 1) {
    const a = samples[i - 1] as LagSample;
    const b = samples[i] as LagSample;
    if (b.last >= u) return b.last === a.last ? b.t1 : a.t1 + ((u - a.last) / (b.last - a.last)) * (b.t1 - a.t1);
  }
  return undefined;
}

function lagReport(samples: readonly LagSample[], missed: number): LagReport {
  const mean = (list: number[]): number => (list.length === 0 ? 0 : list.reduce((s, x) => s + x, 0) / list.length);
  const max = (list: number[]): number => (list.length === 0 ? 0 : Math.max(...list));
  const lags = samples.map((s) => Math.max(0, s.last - s.restored));
  const byTimestamps: number[] = [];
  for (const s of samples) {
    if (s.restored >= s.last) {
      byTimestamps.push(0);
      continue;
    }
    const reached = timeReached(samples, s.restored);
    if (reached !== undefined) byTimestamps.push(Math.max(0, (s.t3 - reached) / 1000));
  }
  const first = samples[0];
  const last = samples.at(-1);
  const writesPerSecond = first !== undefined && last !== undefined && last.t1 > first.t1 ? ((last.last - first.last) * 1000) / (last.t1 - first.t1) : 0;
  const byRate = writesPerSecond > 0 ? lags.map((lag) => lag / writesPerSecond) : [];
  return {
    samples: samples.length,
    missedSamples: missed,
    intervalMs: lagSampleIntervalMs,
    updateNumbers: { max: max(lags), mean: round(mean(lags), 1) },
    secondsByTimestamps: { max: round(max(byTimestamps), 4), mean: round(mean(byTimestamps), 4), samples: byTimestamps.length },
    secondsByRate: { max: round(max(byRate), 4), mean: round(mean(byRate), 4), writesPerSecond: Math.round(writesPerSecond) },
  };
}

// ---------------------------------------------------------------------------------------------------------
// The run

/** Polls `probe` every {@link pollIntervalMs} until it returns a value, or fails with `stage` after `timeoutMs`. */
export async function pollUntil<T>(stage: DeploymentBenchError['stage'], what: string, timeoutMs: number, probe: () => Promise<T | undefined>, log: () => string): Promise<T> {
  const deadline = performance.now() + timeoutMs;
  let last = 'nothing yet';
  while (performance.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = (error as Error).message;
    }
    await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
  }
  throw new DeploymentBenchError(stage, `timed out after ${timeoutMs} ms waiting for ${what} (last: ${last})`, log());
}

/** Whether a fresh deployment is ready for load: three sites up and connected, site 1 primary, pairs in sync and copying. */
export function ready(status: DeploymentStatus): boolean {
  const all = ([1, 2, 3] as const).every((id) => status.sites[id]?.up === true && status.sites[id]?.connected.length === 2);
  return all && status.primary === 1 && status.syncPair === 'inSync' && status.asyncPair === 'copying';
}

/** What {@link benchDeployment} is asked to do. */
export interface DeploymentBenchOptions {
  /** Run each site under `node --cpu-prof` and summarise its profile (the figures drop a little). */
  readonly profile: boolean;
  /** Progress lines (to stderr in `bench/main.ts`). */
  readonly progress: (line: string) => void;
  /** The `threesite` command the sites run (default `bin/threesite.js`): a candidate build to compare. */
  readonly cli?: string;
}

/** Runs the deployment benchmark: each fio job against nbdkit, then against our deployment. */
export async function benchDeployment(options: DeploymentBenchOptions): Promise<DeploymentBench> {
  for (const tool of ['fio', 'nbdkit']) {
    if (toolMissing(tool)) throw new DeploymentBenchError('tools', `${tool} is not installed (apt-get install fio nbdkit)`, '');
  }
  const started = performance.now();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-bench-'));
  const children = new Children();
  let timedOut = false;
  const watchdog = setTimeout(() => {
    timedOut = true;
    children.killAll();
  }, deploymentBenchMsMax);
  const onSignal = (): void => {
    children.killAll();
    fs.rmSync(dir, { recursive: true, force: true });
    process.exit(130);
  };
  process.once('SIGINT', onSignal);
  try {
    return await run(dir, children, options, started);
  } catch (error) {
    if (timedOut) throw new DeploymentBenchError('timeout', `the deployment part took longer than ${deploymentBenchMsMax} ms; every process was killed`, children.log());
    throw error;
  } finally {
    clearTimeout(watchdog);
    process.off('SIGINT', onSignal);
    await children.stopAll();
    children.dispose();
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

async function run(dir: string, children: Children, options: DeploymentBenchOptions, started: number): Promise<DeploymentBench> {
  const { progress } = options;
  const ports = await freePorts();

  // (b) The floor: nbdkit's memory plugin, no replication.
  const nbdkit = children.spawn('nbdkit', 'nbdkit', ['--foreground', '--exit-with-parent', '--ipaddr', '127.0.0.1', '--port', String(ports.nbdkit), 'memory', String(deploymentVolumeBytes)]);
  await pollUntil('nbdkit', `nbdkit on port ${ports.nbdkit}`, nbdkitReadyMsMax, async () => ((await connects(ports.nbdkit)) ? true : undefined), () => children.log());
  const nbdkitUri = `nbd://127.0.0.1:${ports.nbdkit}/`;

  // (a) Our deployment: threesite init, three site processes.
  const cli = path.resolve(options.cli ?? 'bin/threesite.js');
  const clusterDir = path.join(dir, 'cluster');
  try {
    await runCommand(process.execPath, [cli, 'init', '--dir', clusterDir, '--base-port', String(ports.base), '--volume-bytes', String(deploymentVolumeBytes), '--volumes', '1'], 30_000);
  } catch (error) {
    throw new DeploymentBenchError('init', (error as Error).message, '');
  }
  const configFile = path.join(clusterDir, 'cluster.json');
  const config = loadDeploymentConfig(configFile);
  const operatorTls = operatorCredentials(config);
  const profileDir = path.join(dir, 'profiles');
  const siteArgs = (id: SiteId): string[] => [
    ...(options.profile ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []),
    cli,
    'serve',
    '--site',
    String(id),
    '--config',
    configFile,
  ];
  const sites = {
    1: children.spawn('site 1', process.execPath, siteArgs(1)),
    2: children.spawn('site 2', process.execPath, siteArgs(2)),
    3: children.spawn('site 3', process.execPath, siteArgs(3)),
  } as const;
  const client = (id: SiteId) => tcpClient(id, config.sites[id].host, config.sites[id].controlPort, operatorTls, statusAnswerMsMax);
  const operator = new Operator({ 1: client(1), 2: client(2), 3: client(3) });
  const siteLog = (): string => children.log();
  const alive = (): void => {
    for (const id of [1, 2, 3] as const) {
      if (!sites[id].running) throw new DeploymentBenchError('start', `site ${id} exited (code ${sites[id].process.exitCode})`, siteLog());
    }
  };
  const readyAt = performance.now();
  await pollUntil('ready', 'three sites up, connected, sync pair inSync, async pair copying', readyMsMax, async () => {
    alive();
    return ready(await operator.status()) ? true : undefined;
  }, siteLog);
  progress(`deployment bench: three sites ready in ${Math.round(performance.now() - readyAt)} ms (base port ${ports.base})`);
  const idleRss = { 1: procStatusKiB(sites[1].pid, 'VmRSS'), 2: procStatusKiB(sites[2].pid, 'VmRSS'), 3: procStatusKiB(sites[3].pid, 'VmRSS') };

  const ourUri = `nbd://127.0.0.1:${config.sites[1].nbdPort}/vol0`;
  // The same port over TLS (init makes nbdTls optional on loopback: plain and TLS side by side).
  const ourTlsUri = `nbds://127.0.0.1:${config.sites[1].nbdPort}/vol0`;
  const home = hostHome(dir, credentialsLayoutOf(config).hostDir(1));
  let tls: TlsCost | undefined;
  const sitePids = { 'site 1': sites[1].pid, 'site 2': sites[2].pid, 'site 3': sites[3].pid };
  const comparisons: JobComparison[] = [];
  let lag: LagReport | undefined;
  // Each job against nbdkit, then at once against our deployment: the two figures of a ratio are taken
  // side by side in time, so a machine whose speed drifts (a shared or nested VM) skews them least.
  for (const job of deploymentJobs) {
    progress(`deployment bench: ${job.name} against nbdkit memory ${mib(deploymentVolumeBytes)} MiB`);
    const base = await withCpu({ nbdkit: nbdkit.pid }, () => runFio(job, nbdkitUri, dir, 'nbdkit'));
    progress(`deployment bench: ${job.name} against site 1 (${ourUri}), replication on`);
    const sampler = job.sampleLag ? new LagSampler(client(1), client(3)) : undefined;
    sampler?.start();
    const { value: ours, cpu } = await withCpu(sitePids, () => runFio(job, ourUri, dir, 'ours'));
    if (sampler !== undefined) lag = await sampler.stop();
    alive();
    if (job.name === goalJob) {
      // Plain and TLS in alternation, both as the host user with no lag sampler, so that the halves of each
      // pair differ by TLS alone; the cost is the median of the pairs' ratios (a shared machine drifts).
      const pairs: { plain: FioResult; tls: FioResult; cpu: CpuShares }[] = [];
      for (let round = 1; round <= tlsRounds; round += 1) {
        progress(`deployment bench: ${job.name} against site 1 in plain and over TLS (${ourTlsUri}, host 1's certificate), round ${round} of ${tlsRounds}`);
        const plain = await runFio(job, ourUri, dir, `ours-plain-${round}`, home);
        alive();
        const overTls = await withCpu(sitePids, () => runFio(job, ourTlsUri, dir, `ours-tls-${round}`, home));
        alive();
        pairs.push({ plain, tls: overTls.value, cpu: overTls.cpu });
      }
      const ratios = pairs.map((pair) => ({ ...pair, iops: pair.tls.iops / Math.max(1, pair.plain.iops), clat: pair.tls.clatMeanUs / Math.max(0.1, pair.plain.clatMeanUs) }));
      const median = [...ratios].sort((a, b) => a.iops - b.iops)[Math.floor(ratios.length / 2)] as (typeof ratios)[number];
      tls = {
        job: job.name,
        plain: median.plain,
        tls: median.tls,
        iopsRatio: round(median.iops, 3),
        clatMeanRatio: round(median.clat, 3),
        cpuPercent: median.cpu,
        roundsIopsRatio: ratios.map((r) => round(r.iops, 3)),
      };
    }
    const ratio = (a: number, b: number): number => (b === 0 ? 0 : round(a / b, 3));
    const perWrite = (shares: CpuShares, iops: number): CpuShares =>
      Object.fromEntries(Object.entries(shares).map(([label, percent]) => [label, iops === 0 ? 0 : Math.round((percent / 100 / iops) * 1e6)]));
    comparisons.push({
      job,
      ours,
      nbdkit: base.value,
      iopsRatio: ratio(ours.iops, base.value.iops),
      bandwidthRatio: ratio(ours.bandwidthMiBps, base.value.bandwidthMiBps),
      clatMeanRatio: ratio(ours.clatMeanUs, base.value.clatMeanUs),
      clatP99Ratio: ratio(ours.clatP99Us, base.value.clatP99Us),
      cpuPercent: { ...cpu, ...base.cpu },
      cpuMicrosecondsPerWrite: { ...perWrite(cpu, ours.iops), ...perWrite(base.cpu, base.value.iops) },
    });
  }
  await nbdkit.stop();

  // Site 3 catches up; then the three volumes must be equal.
  const loadEnded = performance.now();
  await pollUntil('catchUp', 'site 3 restored up to site 1', catchUpMsMax, async () => {
    const status = await operator.status();
    return status.lag === 0 ? true : undefined;
  }, siteLog);
  const catchUpMs = Math.round(performance.now() - loadEnded);
  const digests = await pollUntil('digest', 'the three sites\' volume digests', digestMsMax, async () => {
    const status = await new Operator({
      1: tcpClient(1, config.sites[1].host, config.sites[1].controlPort, operatorTls, digestMsMax),
      2: tcpClient(2, config.sites[2].host, config.sites[2].controlPort, operatorTls, digestMsMax),
      3: tcpClient(3, config.sites[3].host, config.sites[3].controlPort, operatorTls, digestMsMax),
    }).status(true);
    const all = [status.sites[1]?.volumeDigest, status.sites[2]?.volumeDigest, status.sites[3]?.volumeDigest];
    return all.every((d) => typeof d === 'string') ? (all as string[]) : undefined;
  }, siteLog);
  const sitesEqualAfterCatchUp = digests[0] === digests[1] && digests[1] === digests[2];

  // Peak memory, read before the processes stop.
  const boundAboveIdleBytes = nbdInFlightBytesMax + 2 * outgoingBytesMaxDefault;
  const memory = {} as Record<SiteId, SiteMemory>;
  for (const id of [1, 2, 3] as const) {
    const peakKiB = procStatusKiB(sites[id].pid, 'VmHWM');
    const boundBytes = idleRss[id] * 1024 + boundAboveIdleBytes;
    memory[id] = { pid: sites[id].pid, idleRssMiB: mib(idleRss[id] * 1024), peakRssMiB: mib(peakKiB * 1024), boundMiB: mib(boundBytes), withinBound: peakKiB * 1024 <= boundBytes };
  }

  // Profiles are written when a site exits after SIGTERM.
  const profiles: Partial<Record<SiteId, ProfileSummary>> = {};
  if (options.profile) {
    await Promise.all([sites[1].stop(), sites[2].stop(), sites[3].stop()]);
    const keep = path.join('reports', 'deployment-profiles');
    fs.mkdirSync(keep, { recursive: true });
    for (const id of [1, 2, 3] as const) {
      const file = mainThreadProfileOf(profileDir, sites[id].pid);
      if (file === undefined) continue;
      const kept = path.join(keep, `site-${id}.cpuprofile`);
      fs.copyFileSync(file, kept);
      profiles[id] = summariseCpuProfile(kept, profileTopCount);
    }
  }

  const goal = comparisons.find((c) => c.job.name === goalJob) as JobComparison;
  return {
    volumeBytes: deploymentVolumeBytes,
    rampSeconds,
    runSeconds,
    config: {
      journal: config.journal,
      pullBatchEntriesMax: config.pullBatchEntriesMax,
      pullIntervalMs: config.pullIntervalMs,
      restoreIntervalMs: config.restoreIntervalMs,
      inFlightWritesMax: config.inFlightWritesMax,
      flushEachWrite: config.flushEachWrite,
    },
    jobs: comparisons,
    goal: { job: goalJob, iopsRatio: goal.iopsRatio, min: iopsRatioGoalMin, met: goal.iopsRatio >= iopsRatioGoalMin },
    lag: lag as LagReport,
    tls: tls as TlsCost,
    catchUpMs,
    sitesEqualAfterCatchUp,
    memory,
    cli: path.relative(process.cwd(), cli),
    profiled: options.profile,
    profiles,
    elapsedSeconds: round((performance.now() - started) / 1000, 1),
    cpus: os.cpus().length,
    node: process.version,
  };
}

// ---------------------------------------------------------------------------------------------------------
// The table

/** The deployment benchmark's lines for the printed report (markdown tables). */
export function formatDeploymentBench(bench: DeploymentBench): string {
  const n = (value: number): string => value.toLocaleString('en');
  const lat = (r: FioResult): string => `${r.clatMeanUs} / ${r.clatP50Us} / ${r.clatP99Us}`;
  const lines = [
    `deployment: fio nbd engine against site 1 of three site processes (replication on: sync to site 2, site 3 pulls every ${bench.config.pullIntervalMs} ms) ` +
      `beside nbdkit memory, ${mib(bench.volumeBytes)} MiB, ${bench.rampSeconds} s ramp + ${bench.runSeconds} s per job, ${bench.cpus} CPUs, sites run ${bench.cli}${bench.profiled ? ' under --cpu-prof' : ''}`,
    '',
    '| job | ours IOPS | nbdkit IOPS | IOPS ratio | ours MiB/s | nbdkit MiB/s | ours clat mean / p50 / p99 us | nbdkit clat mean / p50 / p99 us | clat mean ratio | CPU % (site 1 / 2 / 3; nbdkit) | CPU us per write (site 1 / 2 / 3; nbdkit) |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |',
    ...bench.jobs.map(
      (c) =>
        `| ${c.job.name} | ${n(c.ours.iops)} | ${n(c.nbdkit.iops)} | ${c.iopsRatio.toFixed(3)} | ${c.ours.bandwidthMiBps} | ${c.nbdkit.bandwidthMiBps} | ${lat(c.ours)} | ${lat(c.nbdkit)} | ${c.clatMeanRatio.toFixed(2)} | ` +
        `${c.cpuPercent['site 1']} / ${c.cpuPercent['site 2']} / ${c.cpuPercent['site 3']}; ${c.cpuPercent.nbdkit} | ` +
        `${c.cpuMicrosecondsPerWrite['site 1']} / ${c.cpuMicrosecondsPerWrite['site 2']} / ${c.cpuMicrosecondsPerWrite['site 3']}; ${c.cpuMicrosecondsPerWrite.nbdkit} |`,
    ),
    '',
    `goal: ${bench.goal.job} IOPS ours/nbdkit = ${bench.goal.iopsRatio.toFixed(3)} (aim >= ${bench.goal.min}): ${bench.goal.met ? 'met' : 'NOT met'}`,
    `site 3 lag during ${goalJob} (${bench.lag.samples} samples every ${bench.lag.intervalMs} ms, ${bench.lag.missedSamples} missed): ` +
      `max ${n(bench.lag.updateNumbers.max)} / mean ${bench.lag.updateNumbers.mean} update numbers; ` +
      `by timestamps (site 3 restored u minus site 1 reached u) max ${bench.lag.secondsByTimestamps.max} s / mean ${bench.lag.secondsByTimestamps.mean} s; ` +
      `by rate (lag / ${n(bench.lag.secondsByRate.writesPerSecond)} writes/s) max ${bench.lag.secondsByRate.max} s / mean ${bench.lag.secondsByRate.mean} s`,
    `NBD TLS: ${bench.tls.job} over TLS ${n(bench.tls.tls.iops)} IOPS (clat mean ${bench.tls.tls.clatMeanUs} us, site 1 CPU ${bench.tls.cpuPercent['site 1']} %) ` +
      `vs plain ${n(bench.tls.plain.iops)} IOPS (clat mean ${bench.tls.plain.clatMeanUs} us): IOPS ratio TLS/plain ${bench.tls.iopsRatio.toFixed(3)} (median of ${bench.tls.roundsIopsRatio.length} rounds: ${bench.tls.roundsIopsRatio.map((r) => r.toFixed(3)).join(', ')}), clat mean ratio ${bench.tls.clatMeanRatio.toFixed(3)}`,
    `site 3 caught up ${bench.catchUpMs} ms after the load stopped; the three volumes equal (SHA-256): ${bench.sitesEqualAfterCatchUp}`,
    '',
    '| site | idle RSS MiB | peak RSS (VmHWM) MiB | bound MiB (idle + NBD in flight + 2 peer send queues) | within |',
    '| --- | ---: | ---: | ---: | --- |',
    ...([1, 2, 3] as const).map((id) => {
      const m = bench.memory[id];
      return `| ${id} | ${m.idleRssMiB} | ${m.peakRssMiB} | ${m.boundMiB} | ${m.withinBound ? 'yes' : 'NO'} |`;
    }),
  ];
  for (const id of [1, 2, 3] as const) {
    const p = bench.profiles[id];
    if (p === undefined) continue;
    lines.push(
      '',
      `site ${id} profile (${p.file}): ${p.sampledMs} ms sampled, ${p.busyMs} ms in functions, ${p.garbageCollectorMs} ms GC, ${p.idleMs} ms idle`,
      '',
      '| self ms | self % | function |',
      '| ---: | ---: | --- |',
      ...p.top.map((e) => `| ${e.selfMs} | ${e.selfPercent} | ${e.frame.replaceAll('|', '\\|')} |`),
    );
  }
  lines.push('', `deployment part: ${bench.elapsedSeconds} s (bound ${deploymentBenchMsMax / 1000} s)`);
  return lines.join('\n');
}
