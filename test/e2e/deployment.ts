/**
 * Test support for a deployment of three site processes on this machine: a data directory with its
 * cluster.json on free loopback ports, the site processes (`threesite serve`), the operator command, and
 * waiting on the deployment's status with a bounded timeout (never a fixed sleep).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { threadId } from 'node:worker_threads';
import { portsFree } from '../../conformance/nemesis-deployment.ts';
import { localDeploymentConfig, validateDeploymentConfig } from '../../impl/site/deployment-config.ts';
import { createCredentialsFor, operatorCredentials } from '../../impl/site/credentials.ts';
import type { TlsCredentials } from '../../impl/net/tls-identity.ts';
import type { DeploymentStatus } from '../../impl/site/operator.ts';
import { tcpClient } from '../../impl/site/site-control.ts';
import type { SiteId } from '../../impl/core/storage-system.ts';

export const run = promisify(execFile);

const cli = resolve('bin/threesite.js');

/** The user and group id of `nobody`, as whom a host's libnbd client runs ({@link Deployment.hostHome}). */
const nobodyId = 65534;

/** How long a wait on the deployment's status may take before the test fails. */
export const statusWaitMsMax = 30_000;

/**
 * A base port with the nine ports a deployment needs free, in [20000, 32760): below Linux's ephemeral range
 * (32768-60999), so no outgoing connection on the machine can take a site's port while it restarts.
 */
export async function freePortBase(): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt += 1) {
    // vitest runs test files in worker threads of one process: the thread's id keeps two files' deployments
    // apart (with the pid alone both chose the same base before either listened).
    const base = 20_000 + Math.floor(((process.pid * 7919 + threadId * 1_299_709 + attempt * 104_729) % 12_760) / 10) * 10;
    if (await portsFree(base, 9)) return base;
  }
  throw new Error('no nine free consecutive ports found');
}

/** A deployment of three site processes under a temporary directory. */
export class Deployment {
  readonly dir: string;
  readonly configFile: string;
  readonly processes = new Map<SiteId, ChildProcess>();
  readonly logs = new Map<SiteId, string[]>();

  private constructor(
    dir: string,
    readonly basePort: number,
    readonly config: Record<string, unknown>,
  ) {
    this.dir = dir;
    this.configFile = join(dir, 'cluster.json');
  }

  /** The operator's credentials (every control port requires them). */
  operatorCredentials(): TlsCredentials {
    return operatorCredentials(validateDeploymentConfig(this.config, this.dir));
  }

  /** A control-port client of `site` with the operator's credentials, in this process. */
  controlClient(site: SiteId, timeoutMs?: number): ReturnType<typeof tcpClient> {
    const port = (this.config.sites as Record<string, { controlPort: number }>)[String(site)]?.controlPort;
    if (port === undefined) throw new Error(`no control port for site ${site}`);
    return tcpClient(site, '127.0.0.1', port, this.operatorCredentials(), timeoutMs);
  }

  /** A new deployment's directory and cluster.json (`overrides` replace fields of the local defaults). */
  static async create(overrides: Record<string, unknown> = {}): Promise<Deployment> {
    const dir = mkdtempSync(join(tmpdir(), 'threesite-e2e-'));
    const basePort = await freePortBase();
    const config = { ...localDeploymentConfig({ cluster: 'e2e', dir, basePort, volumeBytes: 16 * 1024 * 1024 }), ...overrides };
    const deployment = new Deployment(dir, basePort, config);
    writeFileSync(deployment.configFile, JSON.stringify(config, null, 2));
    await createCredentialsFor(validateDeploymentConfig(config, dir));
    return deployment;
  }

  nbdPort(site: SiteId): number {
    return this.basePort + (site - 1) * 3 + 1;
  }

  nbdUri(site: SiteId, volume = 0): string {
    return `nbd://127.0.0.1:${this.nbdPort(site)}/vol${volume}`;
  }

  /** Host `host`'s credential directory (`tls/host-N`, made by init): what libnbd's `tls-certificates` and qemu's `tls-creds-x509` read. */
  hostDir(host = 1): string {
    return join(this.dir, 'tls', `host-${host}`);
  }

  /** libnbd's URI of an export over TLS with host `host`'s credentials (nbdinfo, nbdcopy, fio's nbd engine). */
  nbdsUri(site: SiteId, volume = 0, host = 1): string {
    return `nbds://127.0.0.1:${this.nbdPort(site)}/vol${volume}?tls-certificates=${this.hostDir(host)}`;
  }

  /**
   * The home of host `host`'s unprivileged user, for a libnbd client whose URI cannot carry
   * `tls-certificates` (fio's nbd engine: libnbd refuses a URI's local file unless the program allows it).
   * libnbd then reads `$HOME/.pki/libnbd`, but only for a user other than root (root's is /etc/pki/libnbd,
   * the machine's): so the host's credentials are copied there, owned by `nobody`, and the client runs as
   * `nobody` ({@link runAsHost}). The deployment's directory becomes traversable (0711) to reach it.
   */
  hostHome(host = 1): string {
    const home = join(this.dir, `home-host-${host}`);
    if (existsSync(home)) return home;
    chmodSync(this.dir, 0o711);
    mkdirSync(join(home, '.pki', 'libnbd'), { recursive: true });
    for (const file of ['ca-cert.pem', 'client-cert.pem', 'client-key.pem']) copyFileSync(join(this.hostDir(host), file), join(home, '.pki', 'libnbd', file));
    for (const path of [home, join(home, '.pki'), join(home, '.pki', 'libnbd'), ...['ca-cert.pem', 'client-cert.pem', 'client-key.pem'].map((file) => join(home, '.pki', 'libnbd', file))]) {
      chownSync(path, nobodyId, nobodyId);
    }
    return home;
  }

  /** Runs `file` as host `host`'s unprivileged user in its home ({@link hostHome}); resolves or rejects as {@link run}. */
  runAsHost(file: string, args: string[], host = 1, timeoutMs = 120_000): Promise<{ stdout: string; stderr: string }> {
    const home = this.hostHome(host);
    return run('setpriv', [`--reuid=${nobodyId}`, `--regid=${nobodyId}`, '--clear-groups', '--', file, ...args], { cwd: home, env: { ...process.env, HOME: home }, timeout: timeoutMs, maxBuffer: 16 * 1024 * 1024 });
  }

  /** qemu's TLS object with host `host`'s credentials, named `tls0` (qemu-io, qemu-img). */
  qemuTlsObject(host = 1): string[] {
    return ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${this.hostDir(host)}`];
  }

  /** qemu's `--image-opts` of an export over TLS (with {@link qemuTlsObject}). */
  qemuImage(site: SiteId, volume = 0): string {
    return `driver=nbd,host=127.0.0.1,port=${this.nbdPort(site)},export=vol${volume},tls-creds=tls0`;
  }

  /** The peak RSS a site process printed at start that it keeps within (`memory bound: peak RSS at most N bytes`). */
  memoryBoundBytes(site: SiteId): number {
    const line = (this.logs.get(site) ?? []).find((text) => text.includes('memory bound: peak RSS at most'));
    const bytes = line === undefined ? null : /at most (\d+) bytes/.exec(line)?.[1];
    if (bytes === undefined || bytes === null) throw new Error(`site ${site} printed no memory bound\n${this.logText()}`);
    return Number(bytes);
  }

  /** A site process's peak resident set so far, in bytes (VmHWM of /proc/PID/status). */
  peakRssBytes(site: SiteId): number {
    const pid = this.processes.get(site)?.pid;
    if (pid === undefined) throw new Error(`site ${site} has no process`);
    const hwm = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
    if (hwm === undefined) throw new Error(`no VmHWM for site ${site}`);
    return Number(hwm) * 1024;
  }

  /** Starts a site process (`threesite serve`, with `options` such as `--rebuild`); its stderr is kept for the failure report. */
  start(site: SiteId, ...options: string[]): ChildProcess {
    const child = spawn(process.execPath, [cli, 'serve', '--site', String(site), ...options, '--config', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    const lines: string[] = this.logs.get(site) ?? [];
    this.logs.set(site, lines);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => lines.push(...chunk.trimEnd().split('\n')));
    this.processes.set(site, child);
    return child;
  }

  /** kill -9 of a site process; resolves when it is gone. */
  async kill(site: SiteId): Promise<void> {
    const child = this.processes.get(site);
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise<void>((done) => child.once('exit', () => done()));
    child.kill('SIGKILL');
    await gone;
    this.processes.delete(site);
  }

  /** Runs the operator command; resolves with its output, rejects with it on a non-zero exit. */
  async threesite(...args: string[]): Promise<string> {
    const { stdout } = await run(process.execPath, [cli, ...args, '--config', this.configFile], { timeout: 120_000 });
    return stdout;
  }

  async status(digest = false): Promise<DeploymentStatus> {
    const out = await this.threesite('status', '--json', ...(digest ? ['--digest'] : []));
    return JSON.parse(out) as DeploymentStatus;
  }

  /** Polls the status until `ready` holds; fails with the last status and the sites' logs after the bound. */
  async waitFor(what: string, ready: (status: DeploymentStatus) => boolean, timeoutMs = statusWaitMsMax): Promise<DeploymentStatus> {
    const deadline = Date.now() + timeoutMs;
    let last: DeploymentStatus | null = null;
    while (Date.now() < deadline) {
      last = await this.status();
      if (ready(last)) return last;
      await new Promise((done) => setTimeout(done, 50));
    }
    throw new Error(`timed out waiting for ${what}; last status ${JSON.stringify(last)}\n${this.logText()}`);
  }

  /**
   * Polls one site's control port from this process (no operator process per poll: fast enough to land a
   * kill in the middle of a fio job) until `ready` holds for its last update number.
   */
  async waitForUpdateNumber(site: SiteId, ready: (last: number) => boolean, timeoutMs = statusWaitMsMax): Promise<number> {
    const client = this.controlClient(site);
    const deadline = Date.now() + timeoutMs;
    let last = -1;
    while (Date.now() < deadline) {
      last = (await client.status(false)).lastUpdateNumber;
      if (ready(last)) return last;
      await new Promise((done) => setTimeout(done, 2));
    }
    throw new Error(`timed out waiting on site ${site}'s update number (last ${last})\n${this.logText()}`);
  }

  /** Every site connected to the two others, up. */
  static allConnected(status: DeploymentStatus): boolean {
    return ([1, 2, 3] as const).every((id) => status.sites[id]?.up === true && status.sites[id]?.connected.length === 2);
  }

  logText(): string {
    return [...this.logs].map(([site, lines]) => `--- site ${site}\n${lines.slice(-40).join('\n')}`).join('\n');
  }

  /** The trace logs the processes and the operator wrote (the configuration's `traceDir`). */
  traceFiles(): string[] {
    const dir = this.config.traceDir;
    if (typeof dir !== 'string') throw new Error('this deployment writes no trace (no traceDir in its configuration)');
    const abs = resolve(this.dir, dir);
    return readdirSync(abs)
      .filter((name) => name.endsWith('.ndjson'))
      .sort()
      .map((name) => join(abs, name));
  }

  /** Stops every process with SIGTERM (each closes its files: its trace ends with whole lines); resolves when all are gone. */
  async terminate(): Promise<void> {
    for (const [site, child] of [...this.processes]) {
      if (child.exitCode === null && child.signalCode === null) {
        const gone = new Promise<void>((done) => child.once('exit', () => done()));
        child.kill('SIGTERM');
        await gone;
      }
      this.processes.delete(site);
    }
  }

  /** Kills every process and removes the directory. */
  async stop(): Promise<void> {
    for (const site of [...this.processes.keys()]) await this.kill(site);
    rmSync(this.dir, { recursive: true, force: true });
  }
}
