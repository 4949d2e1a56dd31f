/**
 * A site process (`threesite serve --site N --config FILE`): one storage system over its data directory
 * (file volumes, segmented journal, state files), its peers over TLS with its own certificate (`transport-tcp.ts`,
 * `credentials.ts`), its volumes over NBD (`nbd-server.ts`) and its control port for the operator
 * (`site-control.ts`). This file is the edge:
 * it owns the sockets and the timers and hands every event to the site node (`site-node.ts`).
 *
 * Every site exports its volumes (`vol0`, `vol1`, ...): the writable primary read-write to its host; the
 * others read-only (reads serve comparisons such as `qemu-img compare` between sites), and a write there is
 * answered with EPERM, never dropped. A failed site answers every request with EIO.
 *
 * Restart: a process started over an existing data directory reopens it (the journal's torn tail is cut, the
 * state files read back) and comes back failed, with every journal block recorded as changed, until the
 * operator's `threesite recover --site N` (`site-node.ts` says why).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { deploymentHostWriteBytesMax, nbdTlsWarning, type DeploymentConfig } from './deployment-config.ts';
import { NotWritableError, RefusalError, SiteFailedError, StorageFaultError } from '../core/errors.ts';
import { NbdServer } from '../net/nbd-server.ts';
import { NbdErrno, NbdError, type NbdExport } from '../net/nbd-protocol.ts';
import { readStateFile, writeStateFile } from '../storage/state-file.ts';
import { serveControl, tcpClient } from './site-control.ts';
import { siteCredentials } from './credentials.ts';
import { formatMemoryBound, siteMemoryBound } from './site-memory.ts';
import { SiteNode, type HostWriteResult, type NodeConfig, type NodeLinks, type RemoteDurableState } from './site-node.ts';
import { SiteTrace } from './site-trace.ts';
import { openSite, rebuildSite, siteConfigOf, siteExists } from '../storage/site-open.ts';
import { protectSiteDir, siteDirMode } from '../storage/file-modes.ts';
import type { SiteId } from '../core/storage-system.ts';
import { traceConfigOf } from '../cluster/trace.ts';
import { PeerNetwork, peerIdsOf } from '../net/transport-tcp.ts';
import { OutOfRangeError } from '../core/volume.ts';

/** How often the process gives its node the time (answer timeouts), in milliseconds. */
export const tickIntervalMs = 50;

const remoteStateFormat = 'threesite-remote-state-v1';

/** A running site process. */
export interface RunningSite {
  readonly node: SiteNode;
  readonly network: PeerNetwork;
  readonly nbd: NbdServer;
  /** Stops the timers and servers, then saves and closes the site's storage. */
  close(): Promise<void>;
}

/** Maps a refusal of the site to the NBD error the host sees (exported for its test). */
export function nbdErrorOf(error: unknown): NbdError {
  if (error instanceof NbdError) return error;
  if (error instanceof NotWritableError) return new NbdError(NbdErrno.EPERM, error.message);
  // A write of no byte is a malformed request (EINVAL); a range past the end is ENOSPC for a write.
  if (error instanceof OutOfRangeError) return new NbdError(error.reason === 'empty' ? NbdErrno.EINVAL : NbdErrno.ENOSPC, error.message);
  // A device error the site detached on: a full device is ENOSPC to the host (EDQUOT and EFBIG have no NBD
  // value and mean the same to it), anything else EIO.
  if (error instanceof StorageFaultError) return new NbdError(['ENOSPC', 'EDQUOT', 'EFBIG'].includes(error.fault.errno) ? NbdErrno.ENOSPC : NbdErrno.EIO, error.message);
  if (error instanceof SiteFailedError) return new NbdError(NbdErrno.EIO, error.message);
  if (error instanceof RefusalError) return new NbdError(NbdErrno.EIO, error.message);
  throw error;
}

/** A host write waiting for the end of its event-loop turn, to go to the site with the others of that turn. */
interface GatheredWrite {
  volume: number;
  offset: number;
  data: Uint8Array;
  resolve(result: HostWriteResult): void;
  reject(error: unknown): void;
}

/**
 * Gathers the host writes of one event-loop turn (every write of the NBD requests one socket read brought,
 * on every connection) and gives them to the node together once the turn's callbacks have run
 * (`process.nextTick`), so that they are journaled with one write and replicated with one message
 * ({@link SiteNode.hostWriteBatch}). At queue depth 1 a turn holds one write and nothing changes.
 */
function writeGatherer(node: SiteNode): (volume: number, offset: number, data: Uint8Array) => Promise<HostWriteResult> {
  let gathered: GatheredWrite[] = [];
  const submit = (): void => {
    const writes = gathered;
    gathered = [];
    const results = node.hostWriteBatch(writes);
    for (const [i, result] of results.entries()) {
      const write = writes[i] as GatheredWrite;
      result.then(write.resolve, write.reject);
    }
  };
  return (volume, offset, data) =>
    new Promise((resolve, reject) => {
      if (gathered.length === 0) process.nextTick(submit);
      gathered.push({ volume, offset, data, resolve, reject });
    });
}

/** One volume of the site as an NBD export: writes go through the site's replicated write path. */
function exportOf(node: SiteNode, volume: number, config: DeploymentConfig, hostWrite: ReturnType<typeof writeGatherer>): NbdExport {
  const chunkBytes = deploymentHostWriteBytesMax(config);
  const write = async (offset: number, data: Uint8Array, fua: boolean): Promise<void> => {
    try {
      // A request larger than one journal entry is journaled as consecutive writes, acknowledged together.
      // A write of no byte goes to the node too, which refuses it (`OutOfRange`, reason `empty`: EINVAL).
      const parts: Promise<unknown>[] = data.length === 0 ? [hostWrite(volume, offset, data)] : [];
      for (let at = 0; at < data.length; at += chunkBytes) parts.push(hostWrite(volume, offset + at, data.subarray(at, Math.min(data.length, at + chunkBytes))));
      await Promise.all(parts);
      // FUA: answered once the write is on stable storage at both sync members (SiteNode.flush).
      if (fua) await node.flush();
    } catch (error) {
      throw nbdErrorOf(error);
    }
  };
  const zeroes = async (offset: number, length: number, fua: boolean): Promise<void> => {
    const zero = new Uint8Array(Math.min(length, chunkBytes));
    const parts: Promise<void>[] = [];
    for (let at = 0; at < length; at += zero.length) parts.push(write(offset + at, zero.subarray(0, Math.min(zero.length, length - at)), false));
    await Promise.all(parts);
    if (fua) {
      try {
        await node.flush();
      } catch (error) {
        throw nbdErrorOf(error);
      }
    }
  };
  return {
    name: `vol${volume}`,
    description: `site ${node.id} volume ${volume}`,
    sizeBytes: config.volumeBytes,
    blockBytes: config.blockBytes,
    readOnly: () => !node.acceptsHostWrites(),
    read: (offset, length) => {
      try {
        return node.hostRead(volume, offset, length);
      } catch (error) {
        if (error instanceof OutOfRangeError) throw new NbdError(NbdErrno.EINVAL, error.message);
        throw nbdErrorOf(error);
      }
    },
    write,
    // FLUSH: the NBD server has let every write before it on the connection settle; answered once they are
    // on stable storage at both sync members (or per fence policy when the pair is not in sync).
    flush: async () => {
      try {
        await node.flush();
      } catch (error) {
        throw nbdErrorOf(error);
      }
    },
    // Trim is a hint; writing zeros keeps every site's image equal without a new message kind.
    trim: (offset, length) => zeroes(offset, length, false),
    writeZeroes: zeroes,
  };
}

/** The configuration of a deployment's site node (the same at every site). */
export function nodeConfigOf(config: DeploymentConfig): NodeConfig {
  return {
    pullBatchEntriesMax: config.pullBatchEntriesMax,
    hostWriteBytesMax: deploymentHostWriteBytesMax(config),
    answerTimeoutMs: config.answerTimeoutMs,
    ...(config.inflowControl === null ? {} : { inflowControl: config.inflowControl }),
  };
}

/**
 * The site's volumes as NBD exports (`vol0`, `vol1`, ...), their host writes gathered per event-loop turn
 * into the node's batches ({@link SiteNode.hostWriteBatch}): what the site's NBD server serves, and what the
 * conformance run's in-process deployment writes through (`conformance/memory-deployment.ts`).
 */
export function siteExports(node: SiteNode, config: DeploymentConfig): NbdExport[] {
  const hostWrite = writeGatherer(node);
  return Array.from({ length: config.volumeCount }, (_, v) => exportOf(node, v, config, hostWrite));
}

/** Starts site `id` of a deployment. `log` receives one line per event worth an operator's attention. */
export async function serveSite(config: DeploymentConfig, id: SiteId, log: (line: string) => void, options: { rebuild?: boolean } = {}): Promise<RunningSite> {
  const endpoint = config.sites[id];
  // The hosts' data is the site owner's alone (README "Security"): the directory is 0700, made so or tightened.
  const looser = protectSiteDir(endpoint.dir);
  if (looser !== null) log(`${endpoint.dir} was mode ${looser.toString(8)}, readable by other local users: tightened to ${siteDirMode.toString(8)}`);
  if (options.rebuild === true) {
    // The operator's answer to a damaged state file or journal, or to a replaced disk (an empty directory):
    // start as a failed site that knows nothing, never as a new site (which would say it is in sync at 0).
    const aside = rebuildSite(siteConfigOf(id, config, config.flushEachWrite), endpoint.dir, new Date().toISOString());
    const remote = path.join(endpoint.dir, 'remote.json');
    if (fs.existsSync(remote)) fs.renameSync(remote, path.join(aside, 'remote.json'));
    if (id === 3) writeStateFile(remote, remoteStateFormat, { asyncPair: 'fullCopy', judgement: null } satisfies RemoteDurableState);
    log(`rebuilt ${endpoint.dir}: state and journal moved to ${aside}; the site is failed, ${id === 3 ? 'needing a full copy' : 'every block to be resynced'}`);
  }
  const reopen = siteExists(endpoint.dir);
  const site = openSite(siteConfigOf(id, config, config.flushEachWrite), config.journal, { kind: 'file', dir: endpoint.dir, reopen }, (recovery) => {
    if (!reopen) return;
    const { journal } = recovery;
    log(`reopened ${endpoint.dir}: ${journal.cleanShutdown ? 'clean shutdown' : 'after a crash'}, ${journal.entriesRecovered} journal entries, ${journal.discardedBytes} torn bytes cut, ${recovery.redoneEntries} entries redone into the volumes, ${recovery.floorRecordTrimmed} trimmed up to the floor record`);
  });
  // A new site's state file is written at once: a process restarted over this directory must reopen it.
  if (!reopen) site.save();
  const remoteFile = path.join(endpoint.dir, 'remote.json');
  const savedRemote = id === 3 && reopen ? (readStateFile(remoteFile, remoteStateFormat) as RemoteDurableState | null) : null;
  const peers = peerIdsOf(id);
  const network = new PeerNetwork({
    self: id,
    cluster: config.cluster,
    credentials: siteCredentials(config, id),
    listen: { host: endpoint.host, port: endpoint.peerPort },
    peers: Object.fromEntries(peers.map((peer) => [peer, { host: config.sites[peer].host, port: config.sites[peer].peerPort }])),
    reconnectDelayMs: config.reconnectDelayMs,
    reconnectDelayMsMax: config.reconnectDelayMsMax,
    log: (line) => log(`net: ${line}`),
  });
  // A peer is blocked while this site is off the network (failed) or the operator cut the link to it.
  let online = true;
  const cut = new Set<SiteId>();
  const applyBlocks = (): void => {
    for (const peer of peers) {
      if (!online || cut.has(peer)) network.block(peer);
      else network.unblock(peer);
    }
  };
  // The site's own certificate serves its control port and asks its peer's before it takes the primary role.
  const credentials = siteCredentials(config, id);
  const peerControl = (peer: SiteId) => tcpClient(peer, config.sites[peer].host, config.sites[peer].controlPort, credentials, config.answerTimeoutMs);
  const links: NodeLinks = {
    send: (peer, payload) => network.send(peer, payload),
    isConnected: (peer) => network.isConnected(peer),
    disconnect: (peer, reason) => network.disconnect(peer, reason),
    queuedBytes: (peer) => network.queuedBytes(peer),
    setOnline: (value) => {
      online = value;
      applyBlocks();
    },
    setCut: (peer, value) => {
      if (value) cut.add(peer);
      else cut.delete(peer);
      applyBlocks();
    },
    askPeer: async (peer) => {
      const status = await peerControl(peer).status(false);
      return { up: status.up, role: status.role, fenced: status.fenced };
    },
  };
  const trace = config.traceDir === null ? null : SiteTrace.open(config.traceDir, site, traceConfigOf(config));
  if (trace !== null) log(`trace: ${trace.file}`);
  const node = new SiteNode(
    site,
    nodeConfigOf(config),
    links,
    log,
    { saved: savedRemote, save: id === 3 ? (state) => writeStateFile(remoteFile, remoteStateFormat, state) : null },
    trace,
  );
  if (reopen) {
    log(`reopened ${endpoint.dir}: journal [${site.journal.first}..${site.journal.last}], role ${site.role}`);
    node.restartedAfterStop();
  }
  if (!site.up) links.setOnline(false);
  network.onPeerUp((peer) => node.onPeerUp(peer));
  network.onPeerDown((peer, reason) => node.onPeerDown(peer, reason));
  network.onFrame((peer, payload) => node.onFrame(peer, payload));
  await network.start();

  const exports = siteExports(node, config);
  // Hosts start TLS with a certificate of the cluster (required unless the configuration says optional).
  const nbd = new NbdServer({
    exports: () => exports,
    tls: { credentials: siteCredentials(config, id), required: config.nbdTls === 'required' },
    limits: {
      handshakeTimeoutMs: config.nbdHandshakeTimeoutMs,
      idleTimeoutMs: config.nbdIdleTimeoutMs,
      frameTimeoutMs: config.nbdFrameTimeoutMs,
      bufferedBytesMax: config.nbdBufferedBytesMax,
    },
    logger: (entry) => {
      if (entry.level !== 'info') log(`nbd[${entry.connection}] ${entry.event}: ${entry.message}`);
    },
  });
  // Plain NBD beyond loopback is a configuration edited by hand (init makes it required there): say so loudly.
  const plainNbdWarning = nbdTlsWarning(config, id);
  if (plainNbdWarning !== null) log(plainNbdWarning);
  await nbd.listen(endpoint.nbdPort, endpoint.host);
  const control = await serveControl({ node: () => node, host: endpoint.host, port: endpoint.controlPort, credentials, log });

  const timers = [setInterval(() => node.onTick(performance.now()), tickIntervalMs)];
  if (id === 3) {
    timers.push(setInterval(() => node.onPullTimer(), config.pullIntervalMs));
    timers.push(setInterval(() => node.onRestoreTimer(), config.restoreIntervalMs));
  }
  log(`site ${id} serving: peers ${endpoint.host}:${endpoint.peerPort}, nbd ${endpoint.nbdPort} (TLS ${config.nbdTls}), control ${endpoint.controlPort}`);
  log(formatMemoryBound(siteMemoryBound(process.memoryUsage().rss, nbd.limits)));

  return {
    node,
    network,
    nbd,
    close: async () => {
      for (const timer of timers) clearInterval(timer);
      await control.close();
      await nbd.close();
      await network.close();
      node.close();
    },
  };
}
