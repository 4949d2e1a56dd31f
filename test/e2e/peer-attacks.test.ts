/**
 * The attacks of issue 14 on the peer ports, against three real site processes on loopback: an outsider who
 * connects to a site's peer port and says hello as site 1 (in the clear, over TLS without a certificate, with
 * a valid site certificate of another cluster), then sends forged messages (a sync write to site 2, journal
 * entries and a verdict to site 3), is refused: the real links stay up, nothing is journaled or restored,
 * `status` is unchanged, and writes are still acknowledged by both sync members. A flood of idle and stalled
 * connections on site 2's peer port does not keep site 1 from connecting to site 2 again after site 2 is
 * killed with SIGKILL and restarted.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { encodeMessage, type Message } from '../../impl/core/messages.ts';
import { encodeFrame, encodeHello } from '../../impl/net/peer-frames.ts';
import type { TlsCredentials } from '../../impl/net/tls-identity.ts';
import { pendingConnectionsMax } from '../../impl/net/transport-tcp.ts';
import { createDeploymentCredentials, credentialsLayout, readCredentials } from '../../impl/site/credentials.ts';
import type { DeploymentStatus } from '../../impl/site/operator.ts';
import type { SiteId } from '../../impl/core/storage-system.ts';
import { Deployment, run } from './deployment.ts';

/** How long a site may take to close an outsider's connection before the test calls it kept. */
const refusalWaitMs = 10_000;

/** How long site 1 may take to be connected to site 2 again through the flood. */
const reconnectWaitMs = 60_000;

let d: Deployment;
let foreignDir = '';
/** Site 1's credentials in a cluster with our cluster's very name, made by another `threesite init`. */
let foreignSite1: TlsCredentials;

beforeAll(async () => {
  d = await Deployment.create({ pullIntervalMs: 50, restoreIntervalMs: 50 });
  for (const site of [1, 2, 3] as const) d.start(site);
  await d.waitFor('the three sites connected', Deployment.allConnected);
  foreignDir = mkdtempSync(join(tmpdir(), 'threesite-foreign-'));
  const layout = credentialsLayout(join(foreignDir, 'tls'), { 1: join(foreignDir, 'site-1'), 2: join(foreignDir, 'site-2'), 3: join(foreignDir, 'site-3') });
  await createDeploymentCredentials(layout, 'e2e', { 1: '127.0.0.1', 2: '127.0.0.1', 3: '127.0.0.1' }, []);
  foreignSite1 = readCredentials(layout.siteDir(1), 'server', 'e2e');
});

afterAll(async () => {
  await d?.stop();
  if (foreignDir !== '') rmSync(foreignDir, { recursive: true, force: true });
});

function peerPort(site: SiteId): number {
  return (d.config.sites as Record<string, { peerPort: number }>)[String(site)]!.peerPort;
}

/** How the outsider reaches the port: in the clear, TLS without a certificate, or TLS with a certificate. */
type Approach = 'plain' | 'tlsWithoutCertificate' | TlsCredentials;

function approachName(approach: Approach): string {
  return typeof approach === 'string' ? approach : `TLS with site 1's certificate of another cluster named ${JSON.stringify(approach.cluster)}`;
}

/** What an outsider saw: the bytes the site sent back, and whether the site closed the connection. */
interface Outcome {
  readonly received: Buffer;
  readonly closedBySite: boolean;
}

/**
 * An outsider connects to `port`, sends `bytes` (once its TLS handshake is done, over TLS), and waits for
 * the site to close the connection, at most {@link refusalWaitMs}.
 */
async function outsider(port: number, approach: Approach, bytes: Uint8Array): Promise<Outcome> {
  const chunks: Buffer[] = [];
  const socket: net.Socket =
    approach === 'plain'
      ? net.connect({ host: '127.0.0.1', port })
      : tls.connect({
          host: '127.0.0.1',
          port,
          minVersion: 'TLSv1.3',
          rejectUnauthorized: false,
          ...(approach === 'tlsWithoutCertificate' ? {} : { cert: approach.cert, key: approach.key }),
        });
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  socket.on('error', () => undefined);
  socket.once(approach === 'plain' ? 'connect' : 'secureConnect', () => socket.write(bytes));
  const closedBySite = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), refusalWaitMs);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  socket.destroy();
  return { received: Buffer.concat(chunks), closedBySite };
}

function frames(...messages: (Uint8Array | Message)[]): Uint8Array {
  const parts = messages.map((m) => encodeFrame(m instanceof Uint8Array ? m : encodeMessage(m)));
  return Buffer.concat(parts);
}

/** What must not change under an attack: every site's journal, numbers, links, site 3's progress, the images. */
function observed(status: DeploymentStatus): unknown {
  return {
    syncPair: status.syncPair,
    asyncPair: status.asyncPair,
    lag: status.lag,
    ackedOnOneSite: status.ackedOnOneSite,
    sites: ([1, 2, 3] as const).map((id) => {
      const site = status.sites[id];
      return site === null
        ? null
        : { up: site.up, role: site.role, mode: site.mode, last: site.lastUpdateNumber, journal: site.journal, connected: site.connected, remote: site.remote, digest: site.volumeDigest };
    }),
  };
}

/** The deployment at rest: in sync, site 3 caught up; with the volumes' digests. */
async function atRest(): Promise<DeploymentStatus> {
  await d.waitFor('in sync and site 3 caught up', (s) => Deployment.allConnected(s) && s.syncPair === 'inSync' && s.lag === 0);
  return d.status(true);
}

/** A 64 KiB write by host 1 at site 1 (qemu-io over NBD), which must be acknowledged. */
async function hostWrite(pattern: number, offset: string): Promise<void> {
  const out = await run('qemu-io', ['-f', 'raw', d.nbdUri(1, 1), '-c', `write -P ${pattern} ${offset} 64k`]);
  expect(out.stdout).toContain('wrote 65536/65536 bytes');
}

function logLines(site: SiteId, pattern: string): string[] {
  return (d.logs.get(site) ?? []).filter((line) => line.includes(pattern));
}

const forgedEntries = (updateNumber: number): Message => ({
  kind: 'pullEntries', epoch: 1,
  entries: [{ updateNumber, volume: 0, offset: 0, data: new Uint8Array(4096).fill(0xee) }],
  servedAt: 0,
});

const forgedVerdict: Message = { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'fullCopy', remoteReceived: 0, sourceLast: 1_000_000 };

describe('peer ports of three site processes under attack', () => {
  it('(a) an outsider saying hello as site 1 to site 2 is refused; the 1-2 link is untouched and writes are acknowledged on both', async () => {
    await hostWrite(0x11, '0');
    const before = await atRest();
    const downsBefore = logLines(2, 'link 1-2 down').length;
    const forged: Message = { kind: 'syncWrite', epoch: 1, updateNumber: before.sites[2]!.lastUpdateNumber + 1, volume: 1, offset: 0, data: new Uint8Array(4096).fill(0x66), restoredKnown: 0 };
    for (const approach of ['plain', 'tlsWithoutCertificate'] as const) {
      const outcome = await outsider(peerPort(2), approach, frames(encodeHello(1, 'e2e'), forged));
      expect(outcome.closedBySite, approach).toBe(true);
      expect(outcome.received.includes('threesite-peer'), `${approach}: site 2 answered with its hello`).toBe(false);
    }
    expect(observed(await d.status(true))).toEqual(observed(before));
    expect(logLines(2, 'link 1-2 down').length).toBe(downsBefore);
    expect(logLines(2, 'refused: TLS handshake').length).toBeGreaterThanOrEqual(2);
    // Host 1's writes are still acknowledged by both sync members.
    await hostWrite(0x22, '64k');
    const after = await atRest();
    expect(after.sites[1]!.lastUpdateNumber).toBeGreaterThan(before.sites[1]!.lastUpdateNumber);
    expect(after.sites[2]!.lastUpdateNumber).toBe(after.sites[1]!.lastUpdateNumber);
    expect(after.ackedOnOneSite).toBe(0);
  });

  it('(b) forged journal entries and a verdict sent to site 3 are neither journaled nor restored, and status is unchanged', async () => {
    const before = await atRest();
    const received = before.sites[3]!.remote!.received;
    for (const approach of ['plain', 'tlsWithoutCertificate'] as const) {
      for (const claimed of [1, 2] as const) {
        const outcome = await outsider(peerPort(3), approach, frames(encodeHello(claimed, 'e2e'), forgedEntries(received + 1), forgedEntries(received + 2), forgedVerdict));
        expect(outcome.closedBySite, `${approach} as site ${claimed}`).toBe(true);
        expect(outcome.received.includes('threesite-peer'), `${approach} as site ${claimed}`).toBe(false);
      }
    }
    expect(observed(await d.status(true))).toEqual(observed(before));
    expect(logLines(3, 'refused: TLS handshake').length).toBeGreaterThanOrEqual(4);
  });

  it('(c) a valid site certificate of another cluster, even one with our cluster\'s name, is refused at site 2 and site 3', async () => {
    const before = await atRest();
    const received = before.sites[3]!.remote!.received;
    const attacks: [SiteId, Uint8Array][] = [
      [2, frames(encodeHello(1, 'e2e'), { kind: 'syncWrite', epoch: 1, updateNumber: before.sites[2]!.lastUpdateNumber + 1, volume: 0, offset: 0, data: new Uint8Array(4096), restoredKnown: 0 })],
      [3, frames(encodeHello(1, 'e2e'), forgedEntries(received + 1), forgedVerdict)],
    ];
    for (const [site, bytes] of attacks) {
      const outcome = await outsider(peerPort(site), foreignSite1, bytes);
      expect(outcome.closedBySite, `${approachName(foreignSite1)} at site ${site}`).toBe(true);
      expect(outcome.received.includes('threesite-peer')).toBe(false);
    }
    expect(observed(await d.status(true))).toEqual(observed(before));
    for (const site of [2, 3] as const) {
      expect(logLines(site, 'refused: TLS handshake not completed').length, logLines(site, 'refused').join('\n')).toBeGreaterThanOrEqual(1);
    }
  });

  it('(d) a flood of idle and stalled connections on site 2\'s peer port does not keep site 1 from connecting again after site 2 is killed and restarted', async () => {
    // The flood: the pending pool's worth of idle connections and a quarter more from 127.0.0.1 (site 1's
    // address), each reopened 10 ms after the site closes it, and a pool's worth of stalled TLS handshakes
    // from 127.0.0.2, reopened after 100 ms.
    const idle = new Flood(peerPort(2), pendingConnectionsMax + pendingConnectionsMax / 4, '127.0.0.1', false, 10);
    const stalled = new Flood(peerPort(2), pendingConnectionsMax, '127.0.0.2', true, 100);
    try {
      await d.kill(2);
      d.start(2);
      await d.waitFor('site 2 answering, failed after its restart', (s) => s.sites[2] !== null && s.sites[2].up === false);
      await d.waitFor('the flood at site 2', () => idle.opened + stalled.opened > 3 * pendingConnectionsMax);
      await d.threesite('recover', '--site', '2');
      const back = await d.waitFor(
        'site 1 and site 2 connected again through the flood',
        (s) => s.sites[1]?.connected.includes(2) === true && s.sites[2]?.connected.includes(1) === true,
        reconnectWaitMs,
      );
      expect(back.sites[2]?.up).toBe(true);
      // The flood did fill site 2's pool of connections waiting to authenticate.
      expect(logLines(2, 'evicted by a newer connection').length).toBeGreaterThan(0);
    } finally {
      idle.stop();
      stalled.stop();
    }
    expect(idle.opened).toBeGreaterThan(2 * pendingConnectionsMax);
    // Afterwards the link carries host 1's writes again.
    await hostWrite(0x33, '128k');
  });
});

/** Connections held open against a port, each reopened a while after it is closed (an attacker's flood). */
class Flood {
  opened = 0;
  readonly #sockets = new Set<net.Socket>();
  #running = true;

  constructor(
    readonly port: number,
    count: number,
    readonly localAddress: string,
    /** Send a TLS record header announcing 16 KiB, then nothing: a handshake that never ends. */
    readonly handshake: boolean,
    /** Delay before a closed connection is opened again. */
    readonly reopenMs: number,
  ) {
    for (let i = 0; i < count; i += 1) this.#open();
  }

  #open(): void {
    if (!this.#running) return;
    const socket = net.connect({ host: '127.0.0.1', port: this.port, localAddress: this.localAddress });
    this.#sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('connect', () => {
      this.opened += 1;
      if (this.handshake) socket.write(new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00]));
    });
    socket.once('close', () => {
      this.#sockets.delete(socket);
      if (this.#running) setTimeout(() => this.#open(), this.reopenMs);
    });
  }

  stop(): void {
    this.#running = false;
    for (const socket of this.#sockets) socket.destroy();
  }
}
