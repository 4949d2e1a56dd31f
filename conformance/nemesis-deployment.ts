/**
 * The deployment a nemesis schedule runs against: three `threesite serve` processes on loopback, each
 * with its own copy of the cluster's configuration in which the peers it dials (the higher ids: 1→2, 1→3,
 * 2→3) are reached through a {@link LinkProxy} the run owns; the operator's `cluster.json` names the real
 * ports. The operator's commands run as `threesite` runs them (impl/site/cli.ts `main`, in this process, so
 * each one is traced in `operator.ndjson` without a process start per command); status polls go straight to
 * the control ports. Every wait is a status poll with a deadline, never a fixed sleep.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { createCredentialsFor, operatorCredentials } from '../impl/site/credentials.ts';
import { loadDeploymentConfig, localDeploymentConfig, validateDeploymentConfig } from '../impl/site/deployment-config.ts';
import { main as threesiteMain } from '../impl/site/cli.ts';
import { Operator, type DeploymentStatus } from '../impl/site/operator.ts';
import { tcpClient } from '../impl/site/site-control.ts';
import { fileTraceSink, traceConfigOf, traceTime, TraceWriter, type TraceAction } from '../impl/cluster/trace.ts';
import { LinkProxy } from './nemesis-proxy.ts';
import type { LinkName } from './nemesis-schedule.ts';
import { workloadBlockBytes } from './nemesis-workload.ts';
import { segmentBytesMax } from '../impl/storage/journal-file.ts';

/** Bytes of each of the two volumes: small, so a digest or a full copy takes milliseconds. */
export const nemesisVolumeBytes = 4 * 1024 * 1024;

/** The sites' answer timeout (rule R1): a stop longer than this suspends the pair. */
export const nemesisAnswerTimeoutMs = 1000;

/** How long a wait on the deployment may take before the schedule fails. */
export const waitMsMax = 20_000;

/** How long a site process may take to answer on its control port after its start (a loaded machine: tsx compiles first). */
export const processStartMsMax = 60_000;

/** How often a wait polls the status. */
export const pollIntervalMs = 25;

/** How long a status poll waits for a site's answer (a stopped site does not answer: it is unreachable). */
export const statusAnswerTimeoutMs = 2_000;

/** Bytes of a killed site's trace read back to find its last record (a record is far shorter). */
export const traceTailBytesMax = 64 * 1024;

/** A killed site's failure is recorded this long after its last record (ms): after it, in any merge. */
export const killAfterLastRecordMs = 0.001;

/** How long a site process may take to exit on its own (a refused start, SIGTERM). */
export const exitWaitMsMax = 15_000;

/**
 * Size of the tmpfs a site's directory is on for a full disk: its volumes, two journal segments (a journal
 * gives space back a whole segment at a time, when every entry of it is trimmed: impl/storage/journal-file.ts
 * `segmentBytesMax`) and 16 MiB more. Smaller, the disk stays full after the fault is lifted (a site 3 that
 * restores as it pulls still fills its one segment) and the site rightly refuses to start; that is a disk too
 * small for the journal, not the passing full disk this fault is.
 */
export const tmpfsBytes = 2 * nemesisVolumeBytes + 2 * segmentBytesMax + 16 * 1024 * 1024;

/** The log of the faults the run applied, as model events (writer `operator`), in the trace directory. */
export const faultTraceName = 'nemesis.ndjson';

/** Lines of a site process's stderr kept for the report. */
export const logLinesMax = 400;

/** Ports a deployment takes: nine for the sites, three for the proxies. */
const portsPerDeployment = 12;

const cli = path.resolve('bin/threesite.js');

/** Whether `count` consecutive ports from `base` are free on 127.0.0.1 (the e2e tests' deployments use it too). */
export async function portsFree(base: number, count: number): Promise<boolean> {
  for (let port = base; port < base + count; port += 1) {
    const free = await new Promise<boolean>((done) => {
      const server = net.createServer();
      server.once('error', () => done(false));
      server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
    });
    if (!free) return false;
  }
  return true;
}

/** A base of 12 free consecutive ports in [20005, 32705): below Linux's ephemeral range (as test/e2e does). */
async function freePortBase(seed: number): Promise<number> {
  for (let attempt = 0; attempt < 64; attempt += 1) {
    const base = 20_005 + (((seed >>> 0) + process.pid * 31 + attempt * 7_919) % 1_270) * 10;
    if (await portsFree(base, portsPerDeployment)) return base;
  }
  throw new WaitError(`${portsPerDeployment} free consecutive ports`, 'none found in 64 tries', null);
}

/** A site process that would not start: its exit status and what it said. */
export interface RefusedStart {
  code: number | null;
  signal: string | null;
  stderr: string;
}

/** The answer of one operator command: its exit status (cli.ts) and what it printed. */
export interface CommandResult {
  code: number;
  output: string;
}

/** One schedule's deployment. */
export class NemesisDeployment {
  readonly processes = new Map<1 | 2 | 3, ChildProcess>();
  readonly stopped = new Set<1 | 2 | 3>();
  readonly logs = new Map<1 | 2 | 3, string[]>();
  readonly commands: string[] = [];
  readonly operator: Operator;
  #mounted: string | null = null;
  #faultTrace: { writer: TraceWriter; close: () => void } | null = null;
  readonly #faultRecords: FaultRecord[] = [];

  private constructor(
    readonly dir: string,
    readonly basePort: number,
    readonly proxies: Record<LinkName, LinkProxy>,
  ) {
    // The operator's certificate, read when first used (the credentials are made after this object).
    const credentials = () => operatorCredentials(loadDeploymentConfig(this.configFile));
    const client = (id: 1 | 2 | 3) => tcpClient(id, '127.0.0.1', this.controlPort(id), credentials, statusAnswerTimeoutMs);
    this.operator = new Operator({ 1: client(1), 2: client(2), 3: client(3) });
  }

  /**
   * A new deployment under `dir` (created; must not exist): cluster.json, the credentials, a configuration
   * per site that dials its peers through the proxies, the proxies. `tmpfsSite`: that site's directory is a
   * tmpfs of {@link tmpfsBytes} (the caller checked it runs as root).
   */
  static async create(dir: string, seed: number, fencePolicy: 'keepWriting' | 'refuse', tmpfsSite: 1 | 2 | 3 | null): Promise<NemesisDeployment> {
    fs.mkdirSync(dir, { recursive: true });
    const basePort = await freePortBase(seed);
    const config: Record<string, unknown> = {
      ...localDeploymentConfig({ cluster: 'nemesis', dir, basePort, volumeBytes: nemesisVolumeBytes, fencePolicy }),
      blockBytes: workloadBlockBytes,
      answerTimeoutMs: nemesisAnswerTimeoutMs,
      traceDir: 'trace',
    };
    fs.writeFileSync(path.join(dir, 'cluster.json'), JSON.stringify(config, null, 2));
    const validated = validateDeploymentConfig(config, dir);
    let mounted: string | null = null;
    if (tmpfsSite !== null) {
      const siteDir = validated.sites[tmpfsSite].dir;
      fs.mkdirSync(siteDir, { recursive: true });
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsBytes}`, 'tmpfs', siteDir]);
      mounted = siteDir;
    }
    await createCredentialsFor(validated);
    const proxyPort = (link: LinkName): number => basePort + 9 + ['1-2', '1-3', '2-3'].indexOf(link);
    const peerPort = (site: 1 | 2 | 3): number => basePort + (site - 1) * 3;
    const proxies = {
      '1-2': await LinkProxy.start(proxyPort('1-2'), peerPort(2)),
      '1-3': await LinkProxy.start(proxyPort('1-3'), peerPort(3)),
      '2-3': await LinkProxy.start(proxyPort('2-3'), peerPort(3)),
    };
    // Each site's own view: the peers it dials are at their proxies.
    const sites = config.sites as Record<string, Record<string, unknown>>;
    const viaProxy = (self: 1 | 2 | 3): Record<string, unknown> => ({
      ...config,
      sites: Object.fromEntries(
        (['1', '2', '3'] as const).map((id) => {
          const peer = Number(id) as 1 | 2 | 3;
          const endpoint = sites[id] as Record<string, unknown>;
          return [id, peer > self ? { ...endpoint, peerPort: proxyPort(`${self}-${peer}` as LinkName) } : endpoint];
        }),
      ),
    });
    for (const site of [1, 2, 3] as const) fs.writeFileSync(path.join(dir, `site-${site}.json`), JSON.stringify(viaProxy(site), null, 2));
    const deployment = new NemesisDeployment(dir, basePort, proxies);
    deployment.#mounted = mounted;
    // The faults the run applies, as the model's events, in a log of their own beside the operator's.
    fs.mkdirSync(path.join(dir, 'trace'), { recursive: true });
    const { sink, close } = fileTraceSink(path.join(dir, 'trace', faultTraceName));
    deployment.#faultTrace = { writer: new TraceWriter({ writer: 'operator', config: traceConfigOf(validated) }, sink), close };
    return deployment;
  }

  /**
   * Records a fault as the model event it is (`FAIL_SITE` for a kill, `CUT_LINK` / `RESTORE_LINK` for the
   * proxy), at the instant `at` the run applied it, with no view (the sites' own records show what they saw).
   * The log is written when the deployment closes: with `observer`, the sync member that sees the fault (the
   * primary, when its secondary is killed or their link cut), the event's instant is refined then (see
   * {@link refinedInstant}).
   */
  recordFault(action: TraceAction, at: number = traceTime(), observer: 1 | 2 | null = null): void {
    this.#faultRecords.push({ action, at, observer });
  }

  /** Writes the faults' log, each at its instant (refined where it has an observer), in time order. */
  #writeFaultTrace(): void {
    const trace = this.#faultTrace;
    if (trace === null) return;
    const records = [...this.#faultRecords].sort((a, b) => a.at - b.at);
    let previous = Number.NEGATIVE_INFINITY;
    for (const [i, record] of records.entries()) {
      const next = records[i + 1]?.at ?? Number.POSITIVE_INFINITY;
      const at = record.observer === null ? record.at : refinedInstant(this.traceFiles().filter((file) => path.basename(file).startsWith(`site-${record.observer}-`)), record.at, next);
      previous = Math.max(previous, at);
      trace.writer.action(record.action, { accepted: true }, {}, previous);
    }
    trace.close();
    this.#faultTrace = null;
  }

  get configFile(): string {
    return path.join(this.dir, 'cluster.json');
  }

  controlPort(site: 1 | 2 | 3): number {
    return this.basePort + (site - 1) * 3 + 2;
  }

  nbdPort(site: 1 | 2 | 3): number {
    return this.basePort + (site - 1) * 3 + 1;
  }

  siteDir(site: 1 | 2 | 3): string {
    return path.join(this.dir, `site-${site}`);
  }

  /** Whether the site's process is running (stopped or not). */
  running(site: 1 | 2 | 3): boolean {
    const child = this.processes.get(site);
    return child !== undefined && child.exitCode === null && child.signalCode === null;
  }

  #spawn(site: 1 | 2 | 3, rebuild = false): ChildProcess {
    const args = [cli, 'serve', '--site', String(site), ...(rebuild ? ['--rebuild'] : []), '--config', path.join(this.dir, `site-${site}.json`)];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    const lines = this.logs.get(site) ?? [];
    this.logs.set(site, lines);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      lines.push(...chunk.trimEnd().split('\n'));
      if (lines.length > logLinesMax) lines.splice(0, lines.length - logLinesMax);
    });
    return child;
  }

  /**
   * Starts a site process (`threesite serve`; with `rebuild`, `--rebuild`: the operator's start of a site whose
   * directory was damaged or emptied) and resolves when its control port answers.
   */
  async start(site: 1 | 2 | 3, rebuild = false): Promise<void> {
    const child = this.#spawn(site, rebuild);
    this.processes.set(site, child);
    await this.waitFor(`site ${site} answering after its start`, (status) => status.sites[site] !== null, () => (child.exitCode !== null ? `site ${site} exited with ${child.exitCode}` : null), processStartMsMax);
  }

  /**
   * Starts a site process that must refuse to start (a damaged file): resolves with how it exited, or with
   * null if it is still running after {@link processStartMsMax} (then it is killed). It must get as far as a
   * start does before it can refuse: on a loaded machine that took longer than {@link exitWaitMsMax}.
   */
  async startRefused(site: 1 | 2 | 3): Promise<RefusedStart | null> {
    const child = this.#spawn(site);
    let stderr = '';
    child.stderr?.on('data', (chunk: string) => (stderr += chunk));
    const exited = new Promise<RefusedStart>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal, stderr })));
    let timer: NodeJS.Timeout | undefined;
    const result = await Promise.race([exited, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), processStartMsMax)))]);
    clearTimeout(timer);
    if (result === null) {
      this.processes.set(site, child);
      await this.kill(site);
    }
    return result;
  }

  /**
   * kill -9 of a site process; resolves when it is gone, with the instant (trace time) just before the
   * signal, or just after the site's last trace record if that is later: the site's peers may see its
   * connections close before this process hears of its exit, but not before the site died.
   */
  async kill(site: 1 | 2 | 3): Promise<number> {
    const child = this.processes.get(site);
    this.stopped.delete(site);
    const at = traceTime();
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return at;
    const gone = new Promise<void>((done) => child.once('exit', () => done()));
    child.kill('SIGKILL');
    await gone;
    this.processes.delete(site);
    // The site died after its last record: on a loaded machine this run can be held up between reading the
    // clock and sending the signal while the site goes on (a restore recorded 7 ms after `at` was seen), and
    // no peer can see the death before it happened, so the failure's instant is just after that record.
    const last = child.pid === undefined ? null : this.#lastTraceTime(site, child.pid);
    return last === null ? at : Math.max(at, last + killAfterLastRecordMs);
  }

  /** The time of the last record of the site process `pid`'s trace (null without one), from its log's tail. */
  #lastTraceTime(site: 1 | 2 | 3, pid: number): number | null {
    const dir = path.join(this.dir, 'trace');
    const name = fs.existsSync(dir) ? fs.readdirSync(dir).find((file) => file.startsWith(`site-${site}-`) && file.endsWith(`-${pid}.ndjson`)) : undefined;
    if (name === undefined) return null;
    const file = path.join(dir, name);
    const size = fs.statSync(file).size;
    const bytes = Math.min(size, traceTailBytesMax);
    const tail = Buffer.alloc(bytes);
    const fd = fs.openSync(file, 'r');
    try {
      fs.readSync(fd, tail, 0, bytes, size - bytes);
    } finally {
      fs.closeSync(fd);
    }
    // A killed writer may leave a torn last line: the last one that parses.
    const lines = tail.toString('utf8').split('\n').reverse();
    for (const line of lines) {
      try {
        const time = (JSON.parse(line) as { time?: unknown }).time;
        if (typeof time === 'number') return time;
      } catch {
        // a torn line, or the cut first line of the tail
      }
    }
    return null;
  }

  /** SIGTERM: the site closes its files (a clean shutdown); resolves when it is gone. */
  async terminate(site: 1 | 2 | 3): Promise<void> {
    const child = this.processes.get(site);
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    if (this.stopped.has(site)) this.resume(site);
    const gone = new Promise<void>((done) => child.once('exit', () => done()));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), exitWaitMsMax);
    await gone;
    clearTimeout(timer);
    this.processes.delete(site);
  }

  /** SIGSTOP of a site process. */
  pause(site: 1 | 2 | 3): void {
    const child = this.processes.get(site);
    if (child === undefined || !this.running(site)) return;
    child.kill('SIGSTOP');
    this.stopped.add(site);
  }

  /** SIGCONT of a stopped site process. */
  resume(site: 1 | 2 | 3): void {
    const child = this.processes.get(site);
    if (child !== undefined && this.running(site)) child.kill('SIGCONT');
    this.stopped.delete(site);
  }

  /** Runs a `threesite` command as the operator types it (with this deployment's cluster.json). */
  async threesite(...args: string[]): Promise<CommandResult> {
    const output: string[] = [];
    const saved = { log: console.log, error: console.error };
    console.log = (...parts: unknown[]) => output.push(parts.map(String).join(' '));
    console.error = (...parts: unknown[]) => output.push(parts.map(String).join(' '));
    let code: number;
    try {
      code = await threesiteMain([...args, '--config', this.configFile]);
    } catch (error) {
      code = -1;
      output.push(`threw ${(error as Error).stack ?? String(error)}`);
    } finally {
      console.log = saved.log;
      console.error = saved.error;
    }
    const text = output.join('\n');
    this.commands.push(`threesite ${args.join(' ')} -> ${code}${code === 0 ? '' : `: ${text.split('\n')[0]}`}`);
    return { code, output: text };
  }

  /** Every site's status (unreachable sites null), read over the control ports. */
  async status(digest = false): Promise<DeploymentStatus> {
    return this.operator.status(digest);
  }

  /**
   * Polls the status until `ready` holds; rejects with the last status after `timeoutMs`, or at once when
   * `broken` names a reason (a process that exited).
   */
  async waitFor(what: string, ready: (status: DeploymentStatus) => boolean, broken: () => string | null = () => null, timeoutMs = waitMsMax): Promise<DeploymentStatus> {
    const deadline = performance.now() + timeoutMs;
    let last: DeploymentStatus | null = null;
    while (performance.now() < deadline) {
      const reason = broken();
      if (reason !== null) throw new WaitError(what, reason, last);
      last = await this.status();
      if (ready(last)) return last;
      await new Promise((resolve) => setTimeout(resolve, pollIntervalMs));
    }
    throw new WaitError(what, `not within ${timeoutMs} ms`, last);
  }

  /** The traces the processes and the operator wrote. */
  traceFiles(): string[] {
    const dir = path.join(this.dir, 'trace');
    if (!fs.existsSync(dir)) return [];
    return fs
      .readdirSync(dir)
      .filter((name) => name.endsWith('.ndjson'))
      .sort()
      .map((name) => path.join(dir, name));
  }

  /** The last lines of each site's stderr. */
  logText(linesPerSite = 30): string {
    return [...this.logs].map(([site, lines]) => `--- site ${site}\n${lines.slice(-linesPerSite).join('\n')}`).join('\n');
  }

  /** Stops every process (SIGTERM: the traces end with whole lines), the proxies, and unmounts a tmpfs. */
  async close(): Promise<void> {
    await Promise.all([...this.processes.keys()].map((site) => this.terminate(site)));
    this.#writeFaultTrace();
    // Each site's last lines and the operator's commands stay beside the traces (the directory of a
    // failing schedule is kept).
    for (const [site, lines] of this.logs) fs.writeFileSync(path.join(this.dir, `site-${site}.log`), `${lines.join('\n')}\n`);
    fs.writeFileSync(path.join(this.dir, 'commands.log'), `${this.commands.join('\n')}\n`);
    for (const proxy of Object.values(this.proxies)) await proxy.close();
    if (this.#mounted !== null) {
      try {
        execFileSync('umount', [this.#mounted]);
      } catch {
        execFileSync('umount', ['-l', this.#mounted]);
      }
      this.#mounted = null;
    }
  }
}

/** A fault as the model's event, waiting to be written to the faults' log. */
interface FaultRecord {
  action: TraceAction;
  /** The instant the run applied it (just before the signal, the reset). */
  at: number;
  /** The sync member whose records show when it took effect there, or null. */
  observer: 1 | 2 | null;
}

/** How far before the observer's first record of a suspended pair the refined instant is put, in ms. */
export const refinedInstantLeadMs = 0.001;

/**
 * When a fault that ends the sync pair took effect, as the primary saw it. The run knows when it sent the
 * signal or reset the link (`from`), not when the primary learnt of it: answers already on their way are
 * still taken and acknowledged in sync for a moment (the primary's event loop runs late on a loaded
 * machine). The model's step must fall after the last write the pair acknowledged in sync and before the
 * first one the primary acknowledged alone: the instant just before the primary's first record after `from`
 * whose view shows the pair out of sync, and never after the run's next fault (`before`). `from` when the
 * logs show none.
 */
export function refinedInstant(files: readonly string[], from: number, before: number): number {
  let first = Number.POSITIVE_INFINITY;
  for (const file of files) {
    for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
      if (!line.includes('"syncPair"')) continue;
      let record: { time?: number; view?: { syncPair?: { state?: string } } };
      try {
        record = JSON.parse(line) as typeof record;
      } catch {
        continue; // a line a kill cut short: the validator reports it
      }
      const state = record.view?.syncPair?.state;
      if (record.time === undefined || record.time < from || state === undefined || state === 'inSync' || state === 'reversed') continue;
      first = Math.min(first, record.time);
      break;
    }
  }
  if (first === Number.POSITIVE_INFINITY) return from;
  return Math.max(from, Math.min(first - refinedInstantLeadMs, before - refinedInstantLeadMs));
}

/** A wait on the deployment that did not end as asked. */
export class WaitError extends Error {
  constructor(
    readonly what: string,
    readonly reason: string,
    readonly last: DeploymentStatus | null,
  ) {
    super(`waiting for ${what}: ${reason}`);
    this.name = 'WaitError';
  }
}
