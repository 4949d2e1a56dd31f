/**
 * The driver of the deployment: a program that speaks the JSON-lines driver protocol (`threesite-driver-v1`,
 * README "Checking another implementation: the driver protocol") and carries every model event out on three
 * site processes (`threesite serve`, `impl/site/site-serve.ts`) the way a storage administrator and two hosts
 * would: host writes over NBD to the serving site's export, everything else through the operator
 * (`impl/site/operator.ts`) over the sites' control ports. `npm start -- --sut processes` runs it.
 *
 * - **reset** gives a fresh deployment: a `cluster.json` with the reset's bounds, a new data directory, new
 *   free loopback ports, a new cluster id, and site 3's pull and restore timers effectively off
 *   (`intervalMsMax`), because the model pulls and restores only on its `PULL_JOURNAL` and `RESTORE_JOURNAL`
 *   events. The first reset starts the three processes; each later one rewrites the file and sends them
 *   SIGHUP, on which each closes its site and serves anew from the file (`cli.ts`): the same as new
 *   processes over a new directory, in milliseconds instead of a process start. The driver answers once the
 *   three sites are up and connected. The processes run `impl/site/cli.ts` compiled once into one file by
 *   esbuild (0.2 s a start instead of tsx's 0.9 s; `bin/threesite.js` when esbuild is missing), and their
 *   data lives on `/dev/shm` when there is one (every state file is fsynced).
 * - **HOST_WRITE** is an NBD write (`nbd-client.ts`) to export `vol<volume>` of site `host`, on one
 *   connection per export, opened again after any other accepted event (the export's read-only flag is
 *   fixed at the handshake, and a failover or a fence changes it). EPERM answers `NotWritable`, EINVAL and
 *   ENOSPC `OutOfRange`, an export the site does not have `OutOfRange`.
 * - **PULL_JOURNAL**, **RESTORE_JOURNAL** and the operator's commands go through {@link Operator}; a typed
 *   refusal (a site's, carried back by the control port with its code) answers with its code.
 * - **After every step** the driver waits until the deployment is quiescent ({@link unsettledReason}: every
 *   link connected exactly when both ends are up and not cut, no site waiting for a peer's answer, no write
 *   in flight, both ends of every link agreeing on the frames sent and received, and two statuses in a row
 *   the same): the processes refine the model's atomic steps (a connection seen going down or coming up
 *   moves the pairs, R1 and R2; a reattached site 3 is judged; a copy ends with its acknowledgement), and the
 *   observation is taken when those refined steps have settled. Polled, never slept, with a bounded wait.
 * - **observe** builds the model's `Observation` (`model/observation.ts`) from the operator's status, each
 *   field as `cluster.ts` `observe()` derives it in one process.
 *
 * One request at a time; the driver exits after `close` or when its stdin ends, stopping its processes. The
 * site processes inherit the driver's process group, which the harness ends when the driver fails it. With
 * `THREESITE_DRIVER_LOG=1` the sites' logs and each request's time go to the driver's stderr.
 */

import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import type { Observation, SiteObservation, SyncSiteId } from '../../model/observation.ts';
import { intervalMsMax, validateDeploymentConfig, type DeploymentConfig } from '../site/deployment-config.ts';
import { createCredentialsFor, hostCredentials, operatorCredentials } from '../site/credentials.ts';
import { clusterConfigOf, driverLimits as inProcessDriverLimits, driverProtocol } from './driver.ts';
import { InvalidArgumentError, MalformedMessageError, RefusalError } from '../core/errors.ts';
import { NbdClient, NbdClientError, NbdReplyError } from '../net/nbd-client.ts';
import { memberRoleOf, Operator, remoteModeOf, type DeploymentStatus } from '../site/operator.ts';
import { tcpClient } from '../site/site-control.ts';
import type { TlsCredentials } from '../net/tls-identity.ts';
import type { SiteStatus } from '../site/site-node.ts';
import type { SiteId } from '../core/storage-system.ts';

/** The command that runs this driver from the repository's root (`--sut processes`). */
export const processDriverCommand = 'npx tsx impl/drivers/driver-processes.ts';

/** The name the driver gives in its `hello` answer. */
export const driverName = 'threesite impl/drivers/driver-processes.ts (three site processes: threesite serve, NBD, control ports)';

/** Limits and timing of the driver. */
export const processDriverLimits = {
  /** Longest request line (as `impl/drivers/driver.ts`). */
  requestLineBytesMax: inProcessDriverLimits.requestLineBytesMax,
  /** From spawning the three processes to all three up and connected. */
  startTimeoutMs: 20_000,
  /** Attempts to start a deployment (a port taken between its choice and its bind fails one). */
  startAttemptsMax: 3,
  /** From the end of a step to a quiescent deployment. */
  settleTimeoutMs: 10_000,
  /** Longest pause between two status polls while waiting; the first polls follow at once. */
  pollDelayMsMax: 8,
  /** A site process's exit after SIGTERM, before SIGKILL. */
  stopGraceMs: 2_000,
  /** Lines of each site's stderr kept for error reports. */
  logLinesKept: 60,
  /** Each control request's deadline (a full copy of conformance-sized volumes takes milliseconds). */
  controlTimeoutMs: 10_000,
  /** The dialler's reconnect backoff in the deployment: a returning peer is dialled again within this. */
  reconnectDelayMs: 2,
  reconnectDelayMsMax: 16,
};

const repository = fileURLToPath(new URL('../..', import.meta.url));

/**
 * How a site process is started: `node bin/threesite.js serve ...` (tsx compiles `impl/` as it loads, about
 * 0.9 s a process), or the same `impl/site/cli.ts` compiled once by esbuild into one file under
 * `node_modules/.cache/` (0.2 s a process; its packages resolve from the repository's `node_modules`).
 * The bundle is this driver's own and removed at its exit; without esbuild the driver uses the former.
 */
let siteCommand: Promise<{ file: string; bundled: boolean }> | null = null;

function siteCommandOf(): Promise<{ file: string; bundled: boolean }> {
  siteCommand ??= (async () => {
    const file = path.join(repository, 'node_modules', '.cache', 'threesite', `site-process-${process.pid}.mjs`);
    try {
      const esbuild = await import('esbuild');
      mkdirSync(path.dirname(file), { recursive: true });
      await esbuild.build({
        stdin: { contents: "import { main } from './impl/site/cli.ts';\nprocess.exitCode = await main(process.argv.slice(2));\n", resolveDir: repository, loader: 'ts', sourcefile: 'site-process.ts' },
        bundle: true,
        platform: 'node',
        format: 'esm',
        target: 'node20',
        packages: 'external',
        outfile: file,
        logLevel: 'silent',
      });
      process.once('exit', () => rmSync(file, { force: true }));
      return { file, bundled: true };
    } catch (error) {
      process.stderr.write(`driver-processes: no esbuild bundle (${(error as Error).message}); site processes start through tsx\n`);
      return { file: path.join(repository, 'bin', 'threesite.js'), bundled: false };
    }
  })();
  return siteCommand;
}

/** A JSON object of the protocol or of `cluster.json`. */
export type Json = Record<string, unknown>;

function object(value: unknown, field: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MalformedMessageError(field, 'must be a JSON object');
  return value as Json;
}

function integer(from: Json, field: string): number {
  const value = from[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new MalformedMessageError(`event.${field}`, 'must be an integer');
  return value;
}

/** A site number the operation takes; another is refused with {@link InvalidArgumentError}, as the cluster refuses it. */
function siteOf(value: number, allowed: readonly number[], operation: string): SiteId {
  if (!allowed.includes(value)) throw new InvalidArgumentError(operation, 'site', value);
  return value as SiteId;
}

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/** Nine free loopback ports (the kernel's choice; a race with another process fails the start, which is retried). */
async function freePorts(count: number): Promise<number[]> {
  const servers: net.Server[] = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const server = net.createServer();
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(0, '127.0.0.1', () => resolve());
      });
      servers.push(server);
    }
    return servers.map((server) => (server.address() as net.AddressInfo).port);
  } finally {
    await Promise.all(servers.map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  }
}

const pairs: [SiteId, SiteId][] = [
  [1, 2],
  [1, 3],
  [2, 3],
];

/**
 * Why the deployment is not quiescent yet, or null when it is: every link connected at both ends exactly
 * when both sites are up and neither end cut it, no site waiting for an answer, no host write in flight or
 * waiting, and on every connected link each end received as many frames as the other sent.
 */
export function unsettledReason(status: DeploymentStatus): string | null {
  for (const id of [1, 2, 3] as const) if (status.sites[id] === null) return `site ${id} is unreachable (${status.unreachable[id] ?? 'no answer'})`;
  const sites = status.sites as Record<SiteId, SiteStatus>;
  for (const [a, b] of pairs) {
    const sa = sites[a];
    const sb = sites[b];
    const up = sa.up && sb.up && !sa.cut.includes(b) && !sb.cut.includes(a);
    if (sa.connected.includes(b) !== up || sb.connected.includes(a) !== up) return `link ${a}-${b} is ${up ? 'not yet up at both ends' : 'not yet down at both ends'}`;
    if (!up) continue;
    const ab = sa.frames[b];
    const ba = sb.frames[a];
    if (ab === undefined || ba === undefined) return `link ${a}-${b} has no frame counts`;
    if (ab.sent !== ba.received || ba.sent !== ab.received) return `link ${a}-${b} carries frames (${a}: sent ${ab.sent} received ${ab.received}; ${b}: sent ${ba.sent} received ${ba.received})`;
  }
  for (const id of [1, 2, 3] as const) {
    const s = sites[id];
    if (s.busy !== null) return `site ${id} waits for ${s.busy}`;
    if (s.inFlightWrites > 0 || s.queuedWrites > 0) return `site ${id} has host writes in flight`;
  }
  return null;
}

/** The model's observation of a quiescent deployment, each field as `cluster.ts` `observe()` derives it. */
export function observationOf(status: DeploymentStatus): Observation {
  const sites = status.sites as Record<SiteId, SiteStatus>;
  const primary = status.primary;
  const secondary: SyncSiteId = primary === 1 ? 2 : 1;
  const digest = (s: SiteStatus): string => {
    if (s.volumeDigest === null) throw new Error(`site ${s.site}'s status has no volume digest`);
    return s.volumeDigest;
  };
  const member = (id: SyncSiteId): SiteObservation => {
    const s = sites[id];
    return {
      mode: s.mode,
      role: memberRoleOf(status, id),
      lastUpdateNumber: s.lastUpdateNumber,
      journal: { first: s.journal.first, last: s.journal.last, highWater: s.journal.highWater },
      acceptsHostWrites: s.acceptsHostWrites,
      fenced: s.fenced,
      changedBlocks: s.changedBlocks,
      volumeDigest: digest(s),
    };
  };
  const three = sites[3];
  const remote = three.remote;
  if (remote === null) throw new Error("site 3's status has no remote part");
  // A failed site 3 learns its new source when it recovers; until then the pair's source is the primary.
  const source = three.up ? remote.source : primary;
  const asyncPair = status.asyncPair ?? remote.asyncPair;
  const mode = remoteModeOf(status) ?? three.mode;
  const cut = new Set<string>();
  for (const [a, b] of pairs) if (sites[a].cut.includes(b) || sites[b].cut.includes(a)) cut.add(`${a}-${b}`);
  return {
    sites: {
      1: member(1),
      2: member(2),
      3: {
        mode,
        role: 'remote',
        lastUpdateNumber: three.lastUpdateNumber,
        journal: { first: remote.restored + 1, last: remote.received, highWater: three.journal.highWater },
        acceptsHostWrites: three.acceptsHostWrites,
        fenced: three.fenced,
        changedBlocks: three.changedBlocks,
        volumeDigest: digest(three),
        received: remote.received,
        restored: remote.restored,
        source,
        lag: sites[primary].lastUpdateNumber - remote.restored,
      },
    },
    syncPair: { state: status.syncPair, primary },
    asyncPair: { state: asyncPair, source },
    standbyPair: { state: status.standbyPair, from: secondary },
    cutLinks: [...cut].sort(),
    ackedOnOneSite: status.ackedOnOneSite,
    judgement: status.judgement === null ? null : { ...status.judgement },
  };
}

/** A host's write of `data` at byte `offset` of export `vol<volume>` of site `host` (host N writes at site N). */
export type DeploymentHostWrite = (host: SiteId, volume: number, offset: number, data: Uint8Array) => Promise<void>;

/** One event of the driver protocol, decoded: what carries it out, and whether it is a host write. */
export interface DeploymentCommand {
  hostWrite: boolean;
  run(): Promise<unknown>;
}

/**
 * Decodes an event of the driver protocol (throwing {@link MalformedMessageError} before anything is done)
 * into what carries it out on a deployment: a host write through `hostWrite` (NBD, for processes), anything
 * else through the operator. The processes' driver and the in-process deployment of the conformance run
 * (`conformance/memory-deployment.ts`) both carry events out through this one mapping.
 */
export function deploymentCommandOf(operator: Operator, event: Json, hostWrite: DeploymentHostWrite): DeploymentCommand {
  const call = (run: () => Promise<unknown>) => ({ hostWrite: false, run });
  switch (event.type) {
    case 'HOST_WRITE': {
      const host = integer(event, 'host');
      const volume = integer(event, 'volume');
      const offset = integer(event, 'offset');
      if (typeof event.data !== 'string' || !base64Pattern.test(event.data)) throw new MalformedMessageError('event.data', 'must be base64 text');
      const data = new Uint8Array(Buffer.from(event.data, 'base64'));
      return {
        hostWrite: true,
        run: async () => {
          if (host !== 1 && host !== 2) throw new InvalidArgumentError('hostWrite', 'host', host);
          if (volume < 0) throw new InvalidArgumentError('hostWrite', 'volume', volume);
          if (offset < 0) throw new InvalidArgumentError('hostWrite', 'offset', offset);
          // Host h is served by site h (host 2 after a failover).
          await hostWrite(host, volume, offset, data);
        },
      };
    }
    case 'PULL_JOURNAL':
      return call(() => operator.pullJournal());
    case 'RESTORE_JOURNAL':
      return call(() => operator.restoreJournal());
    case 'FAIL_SITE': {
      const id = integer(event, 'site');
      return call(() => operator.fail(siteOf(id, [1, 2, 3], 'failSite')));
    }
    case 'RECOVER_SITE': {
      const id = integer(event, 'site');
      return call(() => operator.recover(siteOf(id, [1, 2, 3], 'recoverSite')));
    }
    case 'CUT_LINK':
    case 'RESTORE_LINK': {
      const link = event.link;
      if (link !== '1-2' && link !== '1-3' && link !== '2-3') throw new MalformedMessageError('event.link', 'must be "1-2", "1-3" or "2-3"');
      const [a, b] = link.split('-').map(Number) as [SiteId, SiteId];
      const cut = event.type === 'CUT_LINK';
      return call(() => operator.setLinkCut(a, b, cut));
    }
    case 'FENCE_SITE': {
      const id = integer(event, 'site');
      return call(() => operator.fence(siteOf(id, [1, 2, 3], 'fenceSite')));
    }
    case 'FAILOVER': {
      const force = event.force;
      if (typeof force !== 'boolean') throw new MalformedMessageError('event.force', 'must be true or false');
      return call(() => operator.failover(force));
    }
    case 'RESYNC_SITE': {
      const id = integer(event, 'site');
      return call(() => operator.resync(siteOf(id, [1, 2], 'resyncSite') as SyncSiteId));
    }
    case 'DELTA_RESYNC':
      return call(() => operator.deltaResync());
    case 'FULL_COPY':
      return call(() => operator.fullCopy());
    case 'FAILBACK':
      return call(() => operator.failback());
    default:
      throw new MalformedMessageError('event.type', `unknown event type ${JSON.stringify(event.type)}`);
  }
}

/** A refused step as the protocol answers it. */
export type RefusalAnswer = {
  accepted: false;
  code: string;
  message: string;
};

/**
 * The protocol's answer to an error of a step, or null when it is no refusal (a crash): a site's or the
 * operator's typed refusal answers with its code; a host write's NBD error with the refusal it stands for
 * (EPERM `NotWritable`, EINVAL and ENOSPC `OutOfRange`, another `Nbd<errno>`), an export the site does not
 * have `OutOfRange`.
 */
export function refusalAnswerOf(error: unknown): RefusalAnswer | null {
  if (error instanceof RefusalError) return { accepted: false, code: error.code, message: error.message };
  if (error instanceof NbdReplyError) {
    const code = error.errnoName === 'EPERM' ? 'NotWritable' : error.errnoName === 'EINVAL' || error.errnoName === 'ENOSPC' ? 'OutOfRange' : `Nbd${error.errnoName}`;
    return { accepted: false, code, message: error.message };
  }
  if (error instanceof NbdClientError && error.kind === 'unknownExport') return { accepted: false, code: 'OutOfRange', message: error.message };
  return null;
}

/** How {@link settleDeployment} waits: between polls, and when to give up. */
export interface SettleWait {
  /** Throws when the wait must end (a process exited, a deadline passed); `reason` and `last` are of the last poll (null before the first). */
  check(reason: string | null, last: string | null): void;
  /** Waits before the next poll while the deployment is not quiescent (`polls`: polls so far). */
  pause(polls: number): Promise<void>;
}

/**
 * Polls the deployment's status until it is quiescent ({@link unsettledReason}) and the same twice in a row,
 * and returns that status: the deployment refines the model's atomic steps (a connection seen going down or
 * coming up moves the pairs; a reattached site 3 is judged; a copy ends with its acknowledgement), and an
 * observation is taken once those refined steps have settled.
 */
export async function settleDeployment(status: () => Promise<DeploymentStatus>, wait: SettleWait): Promise<DeploymentStatus> {
  let previous: string | null = null;
  let reason: string | null = null;
  let last: string | null = null;
  for (let polls = 0; ; polls += 1) {
    wait.check(reason, last);
    const current = await status();
    reason = unsettledReason(current);
    last = JSON.stringify(current);
    if (reason === null && last === previous) return current;
    previous = reason === null ? last : null;
    if (reason !== null) await wait.pause(polls);
  }
}

/** What a reset asks for: the bounds of `cluster.json`. */
export type Bounds = Pick<DeploymentConfig, 'volumeCount' | 'volumeBytes' | 'blockBytes' | 'journal' | 'pullBatchEntriesMax' | 'fencePolicy'>;

/** The bounds of a reset's configuration (`clusterConfigOf` checks it: a malformed one throws). */
export function boundsOf(value: unknown): Bounds {
  const config = clusterConfigOf(value);
  return {
    volumeCount: config.volumeCount,
    volumeBytes: config.volumeBytes,
    blockBytes: config.blockBytes,
    journal: { ...config.journal },
    pullBatchEntriesMax: config.pullBatchEntriesMax,
    fencePolicy: config.fencePolicy,
  };
}

/**
 * The `cluster.json` of a deployment under the conformance run, with the bounds of its model: site 3's pull
 * and restore timers effectively off (the model pulls and restores on its own events only, PULL_JOURNAL and
 * RESTORE_JOURNAL), a fast reconnect, no fsync per write. `endpoint` gives each site's addresses and directory.
 */
export function conformanceDeploymentJson(bounds: Bounds, cluster: string, endpoint: (id: SiteId) => Json): Json {
  return {
    cluster,
    ...bounds,
    pullIntervalMs: intervalMsMax,
    restoreIntervalMs: intervalMsMax,
    reconnectDelayMs: processDriverLimits.reconnectDelayMs,
    reconnectDelayMsMax: processDriverLimits.reconnectDelayMsMax,
    flushEachWrite: false,
    sites: { 1: endpoint(1), 2: endpoint(2), 3: endpoint(3) },
  };
}

/**
 * The three `threesite serve` processes of the driver's life, over one configuration file: a reset rewrites
 * the file (a new data directory, new ports, a new cluster id) and sends each process SIGHUP, on which it
 * closes its site and serves anew from the file (`cli.ts`), so a reset costs milliseconds, not a process
 * start. Processes that exited (or never started) are started afresh.
 */
class SiteProcesses {
  readonly configFile: string;
  readonly #children = new Map<SiteId, ChildProcess>();
  readonly #logs = new Map<SiteId, string[]>();
  /** Why a process ended while it was needed, or null. */
  exited: string | null = null;
  #stopping = false;

  constructor(readonly home: string) {
    this.configFile = path.join(home, 'cluster.json');
  }

  /** Serves configuration `raw`: SIGHUP to running processes (`reload`), or new processes. */
  async serve(raw: Json, reload: boolean): Promise<void> {
    const temporary = `${this.configFile}.tmp`;
    writeFileSync(temporary, `${JSON.stringify(raw, null, 2)}\n`);
    // The reset's cluster is a new cluster: its own authority and certificates (tens of milliseconds).
    await createCredentialsFor(validateDeploymentConfig(raw, this.home));
    renameSync(temporary, this.configFile);
    if (reload && this.exited === null && this.#children.size === 3) {
      for (const child of this.#children.values()) child.kill('SIGHUP');
      return;
    }
    await this.stop();
    this.#stopping = false;
    this.exited = null;
    const command = await siteCommandOf();
    for (const id of [1, 2, 3] as const) this.#spawn(id, command.file);
  }

  #spawn(id: SiteId, command: string): void {
    const child = spawn(process.execPath, [command, 'serve', '--site', String(id), '--config', this.configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
    const lines: string[] = [];
    this.#logs.set(id, lines);
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (chunk: string) => {
      lines.push(...chunk.trimEnd().split('\n'));
      if (process.env.THREESITE_DRIVER_LOG) process.stderr.write(chunk);
      if (lines.length > processDriverLimits.logLinesKept) lines.splice(0, lines.length - processDriverLimits.logLinesKept);
    });
    child.once('exit', (code, signal) => {
      if (!this.#stopping) this.exited ??= `site ${id}'s process exited (${signal ?? `code ${code}`})`;
    });
    this.#children.set(id, child);
  }

  logText(): string {
    return [...this.#logs].map(([id, lines]) => `--- site ${id}\n${lines.join('\n')}`).join('\n');
  }

  /** Stops the processes: SIGTERM, then SIGKILL after the grace. */
  async stop(): Promise<void> {
    this.#stopping = true;
    await Promise.all([...this.#children.values()].map((child) => stopChild(child)));
    this.#children.clear();
  }

  /** Ends the processes at once (the driver's own exit). */
  killNow(): void {
    this.#stopping = true;
    for (const child of this.#children.values()) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }
}

let deploymentsStarted = 0;

/** One reset's deployment: its configuration and data directory, the operator, one NBD connection per export. */
class ProcessDeployment {
  readonly operator: Operator;
  readonly #nbd = new Map<string, { client: NbdClient; epoch: number }>();
  /** Bumped by every accepted event but a host write: an NBD connection of an earlier epoch is opened again. */
  #epoch = 0;

  private constructor(
    readonly processes: SiteProcesses,
    readonly dir: string,
    readonly raw: Json,
    readonly config: DeploymentConfig,
  ) {
    // The operator's certificate, which every control port requires, is made when the deployment is served
    // (SiteProcesses.serve, after this constructor): read at the first request.
    let operatorTls: TlsCredentials | null = null;
    const credentials = (): TlsCredentials => (operatorTls ??= operatorCredentials(config));
    const client = (id: SiteId) => tcpClient(id, config.sites[id].host, config.sites[id].controlPort, credentials, processDriverLimits.controlTimeoutMs);
    this.operator = new Operator({ 1: client(1), 2: client(2), 3: client(3) });
  }

  /**
   * Serves a new deployment with these bounds on `processes` (reloading them when `reload`, else starting
   * them) and resolves once its three sites are up and connected; a few attempts, the later ones with new
   * processes.
   */
  static async start(processes: SiteProcesses, bounds: Bounds, reload: boolean): Promise<ProcessDeployment> {
    let lastError: unknown = null;
    for (let attempt = 1; attempt <= processDriverLimits.startAttemptsMax; attempt += 1) {
      const deployment = await ProcessDeployment.#create(processes, bounds);
      try {
        await processes.serve(deployment.raw, reload && attempt === 1);
        await deployment.#waitConnected();
        return deployment;
      } catch (error) {
        lastError = error;
        await deployment.close();
        await processes.stop();
      }
    }
    throw lastError;
  }

  static async #create(processes: SiteProcesses, bounds: Bounds): Promise<ProcessDeployment> {
    deploymentsStarted += 1;
    const dir = path.join(processes.home, `deployment-${deploymentsStarted}`);
    const ports = await freePorts(9);
    const endpoint = (id: SiteId) => ({
      host: '127.0.0.1',
      peerPort: ports[(id - 1) * 3] as number,
      nbdPort: ports[(id - 1) * 3 + 1] as number,
      controlPort: ports[(id - 1) * 3 + 2] as number,
      dir: path.join(dir, `site-${id}`),
    });
    // A new cluster id each reset: a connection between two incarnations fails its hello.
    const raw = conformanceDeploymentJson(bounds, `conformance-${process.pid}-${deploymentsStarted}`, endpoint);
    const config = validateDeploymentConfig(raw, processes.home);
    return new ProcessDeployment(processes, dir, raw, config);
  }

  async #waitConnected(): Promise<void> {
    const deadline = performance.now() + processDriverLimits.startTimeoutMs;
    let last: DeploymentStatus | null = null;
    for (let polls = 0; ; polls += 1) {
      if (this.processes.exited !== null) throw new Error(`${this.processes.exited} at start\n${this.processes.logText()}`);
      last = await this.operator.status();
      const ready = ([1, 2, 3] as const).every((id) => last?.sites[id]?.up === true && last.sites[id]?.connected.length === 2);
      if (ready && unsettledReason(last) === null) return;
      if (performance.now() > deadline) {
        throw new Error(`the three sites were not connected within ${processDriverLimits.startTimeoutMs} ms; last status ${JSON.stringify(last)}\n${this.processes.logText()}`);
      }
      await pause(Math.min(processDriverLimits.pollDelayMsMax, 2 ** polls / 2));
    }
  }

  /** Waits until the deployment is quiescent ({@link unsettledReason}) and the same twice in a row; returns that status. */
  settle(): Promise<DeploymentStatus> {
    const deadline = performance.now() + processDriverLimits.settleTimeoutMs;
    return settleDeployment(() => this.operator.status(true), {
      check: (reason, last) => {
        if (this.processes.exited !== null) throw new Error(`${this.processes.exited}\n${this.processes.logText()}`);
        if (last !== null && performance.now() > deadline) {
          throw new Error(`the deployment did not settle within ${processDriverLimits.settleTimeoutMs} ms: ${reason ?? 'its status kept changing'}; last status ${last}\n${this.processes.logText()}`);
        }
      },
      pause: (polls) => pause(Math.min(processDriverLimits.pollDelayMsMax, 2 ** polls / 2)),
    });
  }

  /**
   * Carries out one event; resolves with the protocol's answer object. A malformed event throws before
   * anything is done; a refusal (the operator's, a site's, an NBD error) is an answer, not an error.
   */
  async apply(value: unknown): Promise<Json> {
    const command = deploymentCommandOf(this.operator, object(value, 'event'), async (host, volume, offset, data) => {
      const client = await this.#nbdClient(host, volume);
      await client.write(offset, data);
    });
    try {
      await command.run();
    } catch (error) {
      const refusal = refusalAnswerOf(error);
      if (refusal === null) throw error;
      return refusal;
    }
    if (!command.hostWrite) this.#epoch += 1;
    return { accepted: true };
  }

  /** The connection to export `vol<volume>` of `site`, opened again when an event since may have changed its flags. */
  async #nbdClient(id: SiteId, volume: number): Promise<NbdClient> {
    const key = `${id}/${volume}`;
    const open = this.#nbd.get(key);
    if (open !== undefined && open.epoch === this.#epoch && !open.client.closed) return open.client;
    this.#nbd.delete(key);
    if (open !== undefined) await open.client.close();
    // Host N writes at site N, with its credentials of the reset's cluster (the sites require NBD over TLS).
    const tls = { credentials: hostCredentials(this.config, id), server: { kind: 'site', site: id } as const };
    const client = await NbdClient.connect(this.config.sites[id].host, this.config.sites[id].nbdPort, `vol${volume}`, processDriverLimits.controlTimeoutMs, tls);
    this.#nbd.set(key, { client, epoch: this.#epoch });
    return client;
  }

  /** Closes the NBD connections (before the sites close: an NBD server ends its connections then anyway). */
  async closeConnections(): Promise<void> {
    await Promise.all([...this.#nbd.values()].map(({ client }) => client.close()));
    this.#nbd.clear();
  }

  /** Closes the NBD connections and removes the data directory: its processes serve another one, or none, by now. */
  async close(): Promise<void> {
    await this.closeConnections();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => (ms < 1 ? setImmediate(resolve) : setTimeout(resolve, ms)));
}

function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), processDriverLimits.stopGraceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/**
 * The driver's state: its site processes, the deployment of the current reset, and the status the last step
 * settled on. {@link handle} takes one request line and resolves with its answer line.
 */
export class ProcessDriverSession {
  #processes: SiteProcesses | null = null;
  #current: ProcessDeployment | null = null;
  /** The status the last step settled on (the next `observe` answers from it). */
  #settled: DeploymentStatus | null = null;

  /** Answers one request line; never rejects (a failure answers `ok: false` with its error). */
  async handle(text: string): Promise<{ line: string; done: boolean }> {
    try {
      const request = object(JSON.parse(text), 'request');
      return await this.#handle(request);
    } catch (error) {
      const message = error instanceof SyntaxError ? `MalformedMessageError: request is not JSON: ${error.message}` : error instanceof Error ? `${error.name}: ${error.message}` : String(error);
      process.stderr.write(`driver-processes: ${message}\n`);
      return { line: JSON.stringify({ ok: false, error: message }), done: false };
    }
  }

  async #handle(request: Json): Promise<{ line: string; done: boolean }> {
    switch (request.op) {
      case 'hello':
        if (request.protocol !== driverProtocol) throw new MalformedMessageError('protocol', `this driver speaks ${driverProtocol}, not ${JSON.stringify(request.protocol)}`);
        return { line: JSON.stringify({ ok: true, protocol: driverProtocol, name: driverName }), done: false };
      case 'reset': {
        const bounds = boundsOf(request.config);
        const previous = this.#current;
        this.#current = null;
        this.#settled = null;
        this.#processes ??= new SiteProcesses(driverHome());
        await previous?.closeConnections();
        this.#current = await ProcessDeployment.start(this.#processes, bounds, previous !== null);
        await previous?.close();
        this.#settled = await this.#current.settle();
        return { line: JSON.stringify({ ok: true }), done: false };
      }
      case 'apply': {
        const deployment = this.#deployment();
        this.#settled = null;
        const answer = await deployment.apply(request.event);
        this.#settled = await deployment.settle();
        return { line: JSON.stringify(answer), done: false };
      }
      case 'observe': {
        const deployment = this.#deployment();
        this.#settled ??= await deployment.settle();
        return { line: JSON.stringify({ observation: observationOf(this.#settled) }), done: false };
      }
      case 'close':
        await this.close();
        return { line: JSON.stringify({ ok: true }), done: true };
      default:
        throw new MalformedMessageError('op', `unknown op ${JSON.stringify(request.op)} (hello, reset, apply, observe, close)`);
    }
  }

  #deployment(): ProcessDeployment {
    if (this.#current === null) throw new MalformedMessageError('op', 'no deployment yet: send reset first');
    return this.#current;
  }

  /** Stops the processes and removes the driver's directory. */
  async close(): Promise<void> {
    const current = this.#current;
    const processes = this.#processes;
    this.#current = null;
    this.#processes = null;
    await current?.closeConnections();
    if (processes === null) return;
    await processes.stop();
    rmSync(processes.home, { recursive: true, force: true });
  }

  /** Kills every process at once (the driver's exit without `close`). */
  killNow(): void {
    this.#processes?.killNow();
  }
}

/**
 * The driver's directory: on a RAM disk when there is one (every state file is fsynced), else in the
 * temporary directory, named with the driver's pid; those of drivers no longer running (killed by the
 * harness before their `close`) are removed.
 */
function driverHome(): string {
  let root = tmpdir();
  try {
    accessSync('/dev/shm', constants.W_OK);
    root = '/dev/shm';
  } catch {
    // No RAM disk: the temporary directory.
  }
  for (const name of readdirSync(root)) {
    const match = /^threesite-driver-(\d+)-/.exec(name);
    if (match !== null && !processAlive(Number(match[1]))) rmSync(path.join(root, name), { recursive: true, force: true });
  }
  return mkdtempSync(path.join(root, `threesite-driver-${process.pid}-`));
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Runs the driver on stdin and stdout until `close` or the end of stdin. */
export function runProcessDriver(input: NodeJS.ReadableStream = process.stdin, output: NodeJS.WritableStream = process.stdout): void {
  const session = new ProcessDriverSession();
  /** Request lines waiting, in order; null for one that was too long (answered in its turn). */
  const lines: (string | null)[] = [];
  let parts: Buffer[] = [];
  let partsBytes = 0;
  let skipping = false;
  let busy = false;
  let done = false;
  process.once('exit', () => session.killNow());
  const next = async (): Promise<void> => {
    if (busy) return;
    busy = true;
    while (lines.length > 0 && !done) {
      const line = lines.shift() as string | null;
      const tooLong = JSON.stringify({ ok: false, error: `MalformedMessageError: request line longer than ${processDriverLimits.requestLineBytesMax} bytes` });
      const started = performance.now();
      const result = line === null ? { line: tooLong, done: false } : await session.handle(line);
      if (process.env.THREESITE_DRIVER_LOG) process.stderr.write(`${(performance.now() - started).toFixed(1)} ms ${line?.slice(0, 80)}\n`);
      output.write(`${result.line}\n`);
      if (result.done) {
        done = true;
        input.removeListener('data', onData);
        (input as NodeJS.ReadStream).destroy?.();
      }
    }
    busy = false;
  };
  const onData = (chunk: Buffer): void => {
    let start = 0;
    for (;;) {
      const newline = chunk.indexOf(10, start);
      const end = newline === -1 ? chunk.length : newline;
      if (!skipping) {
        parts.push(chunk.subarray(start, end));
        partsBytes += end - start;
        if (partsBytes > processDriverLimits.requestLineBytesMax) {
          lines.push(null);
          parts = [];
          partsBytes = 0;
          skipping = true;
        }
      }
      if (newline === -1) break;
      if (!skipping) lines.push(Buffer.concat(parts).toString('utf8').replace(/\r$/, ''));
      parts = [];
      partsBytes = 0;
      skipping = false;
      start = newline + 1;
    }
    void next();
  };
  input.on('data', onData);
  input.on('end', () => {
    const finish = async (): Promise<void> => {
      while (busy) await pause(5);
      await session.close();
    };
    void finish();
  });
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) runProcessDriver();
