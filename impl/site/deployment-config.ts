/**
 * The configuration of a deployment of three site processes (`threesite serve --site N --config FILE`):
 * the consistency group every site holds (volumes, journal capacity, limits), the timing of site 3's pulls
 * and of answers, and for each site where it listens (peer port, NBD port, control port) and where it keeps
 * its data. One file for the three processes and the operator, so they cannot disagree; relative paths are
 * read from the file's own directory. Checked field by field: a bad value is a {@link ConfigError} naming it.
 *
 * ```json
 * { "cluster": "demo", "volumeCount": 2, "volumeBytes": 67108864, "blockBytes": 4096,
 *   "journal": { "entriesMax": 65536, "bytesMax": 268435456 }, "pullBatchEntriesMax": 256,
 *   "pullIntervalMs": 20, "restoreIntervalMs": 20, "answerTimeoutMs": 2000, "fencePolicy": "keepWriting",
 *   "sites": { "1": { "host": "127.0.0.1", "peerPort": 7101, "nbdPort": 10809, "controlPort": 7201, "dir": "site-1" },
 *              "2": { ... }, "3": { ... } } }
 * ```
 *
 * Optional: `inFlightWritesMax`, `flushEachWrite`, the dialling site's reconnect backoff
 * `reconnectDelayMs` / `reconnectDelayMsMax` (default 50 ms doubling to 1000 ms: `transport-tcp.ts`), and
 * `credentialsDir` (default `tls`): the cluster's authority and the operator's and hosts' credentials
 * (`credentials.ts`); `nbdTls` (default `required`): whether hosts must start TLS on the NBD port;
 * the NBD port's deadlines and payload budget `nbdHandshakeTimeoutMs`, `nbdIdleTimeoutMs`, `nbdFrameTimeoutMs`,
 * `nbdBufferedBytesMax` (defaults: the constants of `net/nbd-server.ts` and `net/nbd-budget.ts`).
 * `inflowControl` (absent: off): `{"delayMs": N}` delays each host write N ms (at most 1000) while the primary's
 * journal is past its high-water mark and site 3 is reachable (journal inflow control, `site-node.ts`).
 * `traceDir`: where every site process and operator command writes its ndjson trace (impl/site/site-trace.ts),
 * for `npm start -- --validate-trace DIR/*.ndjson`; no trace when absent.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { hostWriteBytesMax, validateClusterConfig } from '../cluster/cluster-config.ts';
import { ConfigError } from '../core/errors.ts';
import type { JournalLimits } from '../core/journal.ts';
import type { SiteId } from '../core/storage-system.ts';
import { inflowDelayMsMax } from './site-node.ts';
import { NbdPayloadBudget, nbdBufferedBytesMaxDefault, nbdConnectionBytesGuaranteed } from '../net/nbd-budget.ts';
import { nbdConnectionsMax } from '../net/nbd-protocol.ts';
import { nbdFrameTimeoutMsDefault, nbdHandshakeTimeoutMsDefault, nbdIdleTimeoutMsDefault, nbdTimeoutMsMax, nbdTimeoutMsMin } from '../net/nbd-server.ts';
import { reconnectDelayMsCeiling, reconnectDelayMsDefault, reconnectDelayMsMaxDefault } from '../net/transport-tcp.ts';

/** Largest configuration file: 1 MiB. */
export const deploymentConfigBytesMax = 1 << 20;

/** Shortest and longest pull and restore intervals, in milliseconds. */
export const intervalMsMin = 1;
export const intervalMsMax = 3_600_000;

/** Shortest and longest answer timeout, in milliseconds. */
export const answerTimeoutMsMin = 10;
export const answerTimeoutMsMax = 600_000;

/** Largest `nbdBufferedBytesMax`, in bytes: 16 GiB. */
export const nbdBufferedBytesCeiling = 16 * 1024 * 1024 * 1024;

/** Where one site process listens and keeps its data. */
export interface SiteEndpoint {
  /** The address its ports listen on and its peers dial (loopback in tests). */
  host: string;
  peerPort: number;
  nbdPort: number;
  controlPort: number;
  /** Its data directory (volumes, journal, state files), absolute once loaded. */
  dir: string;
}

/** Whether the NBD port requires TLS of its hosts. */
export type NbdTlsMode = 'required' | 'optional';

/** Whether an address is loopback (a deployment that listens only there may serve plain NBD). */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

/** A deployment's configuration, validated. */
export interface DeploymentConfig {
  cluster: string;
  volumeCount: number;
  volumeBytes: number;
  blockBytes: number;
  journal: JournalLimits;
  pullBatchEntriesMax: number;
  pullIntervalMs: number;
  restoreIntervalMs: number;
  answerTimeoutMs: number;
  /** A dialling site's first redial delay after a lost or refused connection, doubling up to the next. */
  reconnectDelayMs: number;
  /** The cap of that backoff (how long a returning peer may wait to be dialled again). */
  reconnectDelayMsMax: number;
  fencePolicy: 'refuse' | 'keepWriting';
  inFlightWritesMax: number;
  /** fsync the journal and the volume at every write (default false: NBD FLUSH and FUA make writes durable). */
  flushEachWrite: boolean;
  /** Where the site processes and the operator write their traces (absolute once loaded), or null: none. */
  traceDir: string | null;
  /**
   * Where the cluster's authority, the operator's and the hosts' credentials live (absolute once loaded;
   * `tls` beside the configuration by default); each site's own are in `<its dir>/tls` (credentials.ts).
   */
  credentialsDir: string;
  /**
   * Whether a host must start TLS on the NBD port (`required`: a client that does not is refused before it
   * sees an export) or may (`optional`: plain NBD is served too). `threesite init` writes `required` when a
   * site listens on anything but loopback. Peer links and control ports always require TLS.
   */
  nbdTls: NbdTlsMode;
  /** Journal inflow control (`site-node.ts` `NodeConfig.inflowControl`): a delay per host write in ms, or null: off. */
  inflowControl: { delayMs: number } | null;
  /** From connect to the end of a host's option haggling on the NBD port, in ms. */
  nbdHandshakeTimeoutMs: number;
  /** Longest silence of an NBD connection not yet authenticated, in ms. */
  nbdIdleTimeoutMs: number;
  /** Longest a WRITE payload may take to arrive once the site reads it, in ms. */
  nbdFrameTimeoutMs: number;
  /** Most host payload bytes buffered across all NBD connections of the site (nbd-budget.ts). */
  nbdBufferedBytesMax: number;
  sites: Record<SiteId, SiteEndpoint>;
}

function integer(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(field, value, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function endpoint(site: SiteId, value: unknown, base: string): SiteEndpoint {
  if (typeof value !== 'object' || value === null) throw new ConfigError(`sites.${site}`, value, 'must be an object');
  const v = value as Record<string, unknown>;
  if (typeof v.host !== 'string' || v.host.length === 0) throw new ConfigError(`sites.${site}.host`, v.host, 'must be a host name or address');
  if (typeof v.dir !== 'string' || v.dir.length === 0) throw new ConfigError(`sites.${site}.dir`, v.dir, 'must be a directory path');
  return {
    host: v.host,
    peerPort: integer(`sites.${site}.peerPort`, v.peerPort, 1, 65535),
    nbdPort: integer(`sites.${site}.nbdPort`, v.nbdPort, 1, 65535),
    controlPort: integer(`sites.${site}.controlPort`, v.controlPort, 1, 65535),
    dir: path.resolve(base, v.dir),
  };
}

/** Checks a configuration object; `base` is the directory relative paths are read from. */
export function validateDeploymentConfig(value: unknown, base: string): DeploymentConfig {
  if (typeof value !== 'object' || value === null) throw new ConfigError('config', value, 'must be an object');
  const v = value as Record<string, unknown>;
  if (typeof v.cluster !== 'string' || v.cluster.length === 0 || v.cluster.length > 256) throw new ConfigError('cluster', v.cluster, 'must be a name of 1 to 256 characters');
  const fencePolicy = v.fencePolicy ?? 'keepWriting';
  // The group's volumes, journal and limits are checked as the in-process cluster checks them.
  const group = validateClusterConfig({
    volumeCount: v.volumeCount as number,
    volumeBytes: v.volumeBytes as number,
    blockBytes: v.blockBytes as number,
    journal: v.journal as JournalLimits,
    pullBatchEntriesMax: v.pullBatchEntriesMax as number,
    pullIntervalTicks: 1,
    restoreIntervalTicks: 1,
    fencePolicy: fencePolicy as 'refuse' | 'keepWriting',
    storage: { kind: 'file', dir: base },
    ...(v.inFlightWritesMax === undefined ? {} : { inFlightWritesMax: v.inFlightWritesMax as number }),
  });
  if (typeof v.sites !== 'object' || v.sites === null) throw new ConfigError('sites', v.sites, 'must name sites 1, 2 and 3');
  const sites = v.sites as Record<string, unknown>;
  const flushEachWrite = v.flushEachWrite ?? false;
  if (typeof flushEachWrite !== 'boolean') throw new ConfigError('flushEachWrite', flushEachWrite, 'must be a boolean');
  const reconnectDelayMs = integer('reconnectDelayMs', v.reconnectDelayMs ?? reconnectDelayMsDefault, 1, reconnectDelayMsCeiling);
  const traceDir = v.traceDir ?? null;
  const credentialsDir = v.credentialsDir ?? 'tls';
  if (typeof credentialsDir !== 'string' || credentialsDir.length === 0) throw new ConfigError('credentialsDir', credentialsDir, 'must be a directory path');
  const inflow = v.inflowControl ?? null;
  if (inflow !== null && (typeof inflow !== 'object' || Array.isArray(inflow))) throw new ConfigError('inflowControl', inflow, 'must be {"delayMs": N} or absent');
  const inflowControl = inflow === null ? null : { delayMs: integer('inflowControl.delayMs', (inflow as Record<string, unknown>).delayMs, 1, inflowDelayMsMax) };
  const nbdTls = v.nbdTls ?? 'required';
  if (nbdTls !== 'required' && nbdTls !== 'optional') throw new ConfigError('nbdTls', nbdTls, 'must be "required" or "optional"');
  if (traceDir !== null && (typeof traceDir !== 'string' || traceDir.length === 0)) throw new ConfigError('traceDir', traceDir, 'must be a directory path');
  const config: DeploymentConfig = {
    cluster: v.cluster,
    volumeCount: group.volumeCount,
    volumeBytes: group.volumeBytes,
    blockBytes: group.blockBytes,
    journal: group.journal,
    pullBatchEntriesMax: group.pullBatchEntriesMax,
    pullIntervalMs: integer('pullIntervalMs', v.pullIntervalMs, intervalMsMin, intervalMsMax),
    restoreIntervalMs: integer('restoreIntervalMs', v.restoreIntervalMs, intervalMsMin, intervalMsMax),
    answerTimeoutMs: integer('answerTimeoutMs', v.answerTimeoutMs ?? 2000, answerTimeoutMsMin, answerTimeoutMsMax),
    reconnectDelayMs,
    reconnectDelayMsMax: integer('reconnectDelayMsMax', v.reconnectDelayMsMax ?? Math.max(reconnectDelayMsMaxDefault, reconnectDelayMs), reconnectDelayMs, reconnectDelayMsCeiling),
    fencePolicy: group.fencePolicy,
    inFlightWritesMax: group.inFlightWritesMax,
    flushEachWrite,
    traceDir: traceDir === null ? null : path.resolve(base, traceDir),
    credentialsDir: path.resolve(base, credentialsDir),
    nbdTls,
    inflowControl,
    nbdHandshakeTimeoutMs: integer('nbdHandshakeTimeoutMs', v.nbdHandshakeTimeoutMs ?? nbdHandshakeTimeoutMsDefault, nbdTimeoutMsMin, nbdTimeoutMsMax),
    nbdIdleTimeoutMs: integer('nbdIdleTimeoutMs', v.nbdIdleTimeoutMs ?? nbdIdleTimeoutMsDefault, nbdTimeoutMsMin, nbdTimeoutMsMax),
    nbdFrameTimeoutMs: integer('nbdFrameTimeoutMs', v.nbdFrameTimeoutMs ?? nbdFrameTimeoutMsDefault, nbdTimeoutMsMin, nbdTimeoutMsMax),
    nbdBufferedBytesMax: integer('nbdBufferedBytesMax', v.nbdBufferedBytesMax ?? nbdBufferedBytesMaxDefault, NbdPayloadBudget.bytesMin(nbdConnectionBytesGuaranteed, nbdConnectionsMax), nbdBufferedBytesCeiling),
    sites: { 1: endpoint(1, sites['1'], base), 2: endpoint(2, sites['2'], base), 3: endpoint(3, sites['3'], base) },
  };
  const ports = new Set<string>();
  for (const id of [1, 2, 3] as const) {
    const site = config.sites[id];
    for (const port of [site.peerPort, site.nbdPort, site.controlPort]) {
      const key = `${site.host}:${port}`;
      if (ports.has(key)) throw new ConfigError(`sites.${id}`, key, 'a port is used twice');
      ports.add(key);
    }
  }
  return config;
}

/** Reads and checks a configuration file. */
export function loadDeploymentConfig(file: string): DeploymentConfig {
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > deploymentConfigBytesMax) throw new ConfigError('config', file, `is ${size} bytes, at most ${deploymentConfigBytesMax}`);
    text = fs.readFileSync(file, 'utf8');
  } catch (error) {
    if (error instanceof ConfigError) throw error;
    throw new ConfigError('config', file, `cannot be read: ${(error as Error).message}`);
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (error) {
    throw new ConfigError('config', file, `is not JSON: ${(error as Error).message}`);
  }
  return validateDeploymentConfig(value, path.dirname(path.resolve(file)));
}

/** The largest host write a deployment takes (one journal entry). */
export function deploymentHostWriteBytesMax(config: DeploymentConfig): number {
  return hostWriteBytesMax(config);
}

/** Where `threesite init` puts a site that is given no address: loopback. */
export const initHostDefault = '127.0.0.1';

/**
 * The warning a site logs when it would serve plain NBD beyond loopback (`nbdTls` edited to `optional` in a
 * configuration whose site listens on another address: any machine that reaches the port reads and writes
 * the exports), or null when there is nothing to warn of.
 */
export function nbdTlsWarning(config: Pick<DeploymentConfig, 'nbdTls' | 'sites'>, site: SiteId): string | null {
  const host = config.sites[site].host;
  if (config.nbdTls !== 'optional' || isLoopback(host)) return null;
  return `WARNING: nbdTls is "optional" but site ${site} listens on ${host}, not loopback: any machine that reaches its NBD port can read and write the exports without a certificate; set "nbdTls": "required"`;
}

/**
 * A configuration for three sites: ports from `basePort` (peer, NBD, control for site 1, then site 2, then
 * site 3), data under `dir`, each site listening on `hosts[N]` (the address its peers, the operator and its
 * hosts reach it at; loopback by default). What `threesite init` writes and the tests use. `nbdTls` is
 * `required` as soon as one site listens on anything but loopback.
 */
export function localDeploymentConfig(options: {
  cluster: string;
  dir: string;
  basePort: number;
  volumeCount?: number;
  volumeBytes?: number;
  fencePolicy?: 'refuse' | 'keepWriting';
  hosts?: Partial<Record<SiteId, string>>;
}): Record<string, unknown> {
  const hostOf = (id: SiteId): string => options.hosts?.[id] ?? initHostDefault;
  const allLoopback = ([1, 2, 3] as const).every((id) => isLoopback(hostOf(id)));
  const site = (id: SiteId): Record<string, unknown> => ({
    host: hostOf(id),
    peerPort: options.basePort + (id - 1) * 3,
    nbdPort: options.basePort + (id - 1) * 3 + 1,
    controlPort: options.basePort + (id - 1) * 3 + 2,
    dir: path.join(options.dir, `site-${id}`),
  });
  return {
    cluster: options.cluster,
    volumeCount: options.volumeCount ?? 2,
    volumeBytes: options.volumeBytes ?? 64 * 1024 * 1024,
    blockBytes: 4096,
    journal: { entriesMax: 65_536, bytesMax: 512 * 1024 * 1024 },
    pullBatchEntriesMax: 512,
    pullIntervalMs: 10,
    restoreIntervalMs: 10,
    answerTimeoutMs: 2000,
    fencePolicy: options.fencePolicy ?? 'keepWriting',
    inFlightWritesMax: 256,
    flushEachWrite: false,
    credentialsDir: path.join(options.dir, 'tls'),
    // Plain NBD is served on loopback only; any other address requires TLS of its hosts.
    nbdTls: allLoopback ? 'optional' : 'required',
    sites: { 1: site(1), 2: site(2), 3: site(3) },
  };
}
