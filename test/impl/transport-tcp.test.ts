/**
 * The peer links: the frame decoder round-trips any payloads cut at any points and refuses oversized lengths
 * (and zero ones before the hello) with FrameError only; hellos are checked, against the certificate too;
 * three real PeerNetworks on 127.0.0.1 connect pairwise over TLS 1.3 with the cluster's certificates, carry
 * frames in order and intact (one at the frame limit, many small ones, real encoded messages), send
 * keepalives, reconnect after a lost connection or a restarted peer, honour block/unblock on either side,
 * bound their outgoing queue, and leave no handle open after close(). The security cases (`describe` "who
 * gets in"): plain TCP, TLS without a certificate, a certificate of another cluster, of the operator, of a
 * site that does not dial us, a hello that disagrees with its certificate, a second connection of the real
 * peer while its link is healthy: each refused with the link untouched; a silent link is replaced; idle and
 * slow connections are bounded in time and number and never lock the real peer out. Every wait is for an
 * event, with a bounded timeout. Credentials are made once per file.
 */

import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { ConfigError, MalformedMessageError } from '../../impl/core/errors.ts';
import { decodeMessage, encodeMessage, messageBytesMax, type Message } from '../../impl/core/messages.ts';
import {
  evictionVictim,
  handshakeTimeoutMsCeiling,
  idleTimeoutMsCeiling,
  keepaliveIntervalMsCeiling,
  peerIdsOf,
  PeerNetwork,
  pendingConnectionsMax,
  silenceMsMaxCeiling,
  type PeerAddress,
  type PeerNetworkConfig,
} from '../../impl/net/transport-tcp.ts';
import {
  checkHello,
  decodeHello,
  encodeFrame,
  encodeHello,
  FrameDecoder,
  FrameError,
  frameBytesMax,
  frameHeaderBytes,
  HelloError,
  helloBytesMax,
  helloVersion,
  keepaliveFrame,
} from '../../impl/net/peer-frames.ts';
import type { TlsCredentials } from '../../impl/net/tls-identity.ts';
import { createDeploymentCredentials, credentialsLayout, readCredentials } from '../../impl/site/credentials.ts';
import type { LinkSite } from '../../impl/core/link.ts';

const cluster = 'test-cluster';
const host = '127.0.0.1';
/** Every wait for an event gives up after this long: a hang is a failure, not a stuck run. */
const eventTimeoutMs = 5000;
/** Short backoff so that reconnects are quick. */
const fastReconnect = { reconnectDelayMs: 10, reconnectDelayMsMax: 100, helloTimeoutMs: 2000 } as const;

// -----------------------------------------------------------------------------------------------------------
// Credentials, made once for the file: our cluster's, and two other clusters' (one with our cluster's very
// name: only its authority differs).

interface ClusterCredentials {
  readonly sites: Record<LinkSite, TlsCredentials>;
  readonly operator: TlsCredentials;
  readonly host: TlsCredentials;
}

let credentialsDir = '';
let ours: ClusterCredentials;
let otherNamed: ClusterCredentials;
let sameNamed: ClusterCredentials;

async function makeCluster(name: string, dirName: string): Promise<ClusterCredentials> {
  const dir = join(credentialsDir, dirName);
  const layout = credentialsLayout(join(dir, 'tls'), { 1: join(dir, 'site-1'), 2: join(dir, 'site-2'), 3: join(dir, 'site-3') });
  await createDeploymentCredentials(layout, name, { 1: host, 2: host, 3: host }, [1]);
  const site = (id: LinkSite): TlsCredentials => readCredentials(layout.siteDir(id), 'server', name);
  return {
    sites: { 1: site(1), 2: site(2), 3: site(3) },
    operator: readCredentials(layout.operatorDir, 'client', name),
    host: readCredentials(layout.hostDir(1), 'client', name),
  };
}

beforeAll(async () => {
  credentialsDir = mkdtempSync(join(tmpdir(), 'threesite-peer-credentials-'));
  ours = await makeCluster(cluster, 'ours');
  otherNamed = await makeCluster('another-cluster', 'other-named');
  sameNamed = await makeCluster(cluster, 'same-named');
});

afterAll(() => rmSync(credentialsDir, { recursive: true, force: true }));

// -----------------------------------------------------------------------------------------------------------
// Helpers

function concat(parts: readonly Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((sum, part) => sum + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function drain(decoder: FrameDecoder, out: Uint8Array[]): void {
  for (let frame = decoder.next(); frame !== undefined; frame = decoder.next()) out.push(frame);
}

/** `promise`, or a rejection naming `what` after `ms`. */
function within<T>(promise: Promise<T>, what: string, ms = eventTimeoutMs): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function nextUp(network: PeerNetwork, peer: LinkSite): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      const off = network.onPeerUp((p) => {
        if (p !== peer) return;
        off();
        resolve();
      });
    }),
    `site ${network.self} to see site ${peer} up`,
  );
}

function nextDown(network: PeerNetwork, peer: LinkSite): Promise<string> {
  return within(
    new Promise<string>((resolve) => {
      const off = network.onPeerDown((p, reason) => {
        if (p !== peer) return;
        off();
        resolve(reason);
      });
    }),
    `site ${network.self} to see site ${peer} down`,
  );
}

function connected(network: PeerNetwork, peer: LinkSite): Promise<void> {
  return network.isConnected(peer) ? Promise.resolve() : nextUp(network, peer);
}

/** The frames `network` receives from `from` until it has `count` of them. */
function collect(network: PeerNetwork, from: LinkSite, count: number): Promise<Uint8Array[]> {
  const frames: Uint8Array[] = [];
  return within(
    new Promise<Uint8Array[]>((resolve) => {
      const off = network.onFrame((peer, payload) => {
        if (peer !== from) return;
        frames.push(payload);
        if (frames.length === count) {
          off();
          resolve(frames);
        }
      });
    }),
    `${count} frames at site ${network.self} from site ${from}`,
  );
}

/** A log that tests can wait on. */
class Log {
  readonly lines: string[] = [];
  readonly #waiters: { pattern: string; resolve: (line: string) => void }[] = [];

  readonly write = (line: string): void => {
    this.lines.push(line);
    for (const waiter of [...this.#waiters]) {
      if (!line.includes(waiter.pattern)) continue;
      this.#waiters.splice(this.#waiters.indexOf(waiter), 1);
      waiter.resolve(line);
    }
  };

  /** The next line (from now on) containing `pattern`. */
  next(pattern: string): Promise<string> {
    return within(new Promise<string>((resolve) => this.#waiters.push({ pattern, resolve })), `a log line with ${JSON.stringify(pattern)}`);
  }

  count(pattern: string): number {
    return this.lines.filter((line) => line.includes(pattern)).length;
  }
}

const opened: PeerNetwork[] = [];
const rawSockets: net.Socket[] = [];
const tlsServers: tls.Server[] = [];

function network(config: Omit<PeerNetworkConfig, 'log' | 'cluster' | 'credentials'> & { log: Log; cluster?: string; credentials?: TlsCredentials }): PeerNetwork {
  const result = new PeerNetwork({
    ...fastReconnect,
    ...config,
    cluster: config.cluster ?? cluster,
    credentials: config.credentials ?? ours.sites[config.self],
    log: config.log.write,
  });
  opened.push(result);
  return result;
}

afterEach(async () => {
  for (const socket of rawSockets.splice(0)) socket.destroy();
  for (const server of tlsServers.splice(0)) server.close();
  await Promise.all(opened.splice(0).map((n) => n.close()));
});

interface Trio {
  readonly nets: Record<LinkSite, PeerNetwork>;
  readonly logs: Record<LinkSite, Log>;
  readonly addresses: Record<LinkSite, PeerAddress>;
}

/** Three networks on ephemeral ports, started highest first (each dials only the ones already bound), all links up. */
async function startTrio(limits: Partial<PeerNetworkConfig> = {}): Promise<Trio> {
  const logs = { 1: new Log(), 2: new Log(), 3: new Log() };
  const net3 = network({ ...limits, self: 3, listen: { host, port: 0 }, peers: {}, log: logs[3] });
  await net3.start();
  const a3 = net3.listenAddress();
  const net2 = network({ ...limits, self: 2, listen: { host, port: 0 }, peers: { 3: a3 }, log: logs[2] });
  await net2.start();
  const a2 = net2.listenAddress();
  const net1 = network({ ...limits, self: 1, listen: { host, port: 0 }, peers: { 2: a2, 3: a3 }, log: logs[1] });
  await net1.start();
  const nets = { 1: net1, 2: net2, 3: net3 };
  await allConnected(nets);
  return { nets, logs, addresses: { 1: net1.listenAddress(), 2: a2, 3: a3 } };
}

async function allConnected(nets: Record<LinkSite, PeerNetwork>): Promise<void> {
  const waits: Promise<void>[] = [];
  for (const site of [1, 2, 3] as const) for (const peer of peerIdsOf(site)) waits.push(connected(nets[site], peer));
  await Promise.all(waits);
}

function expectAllConnected(nets: Record<LinkSite, PeerNetwork>): void {
  for (const site of [1, 2, 3] as const) for (const peer of peerIdsOf(site)) expect(nets[site].isConnected(peer), `${site}->${peer}`).toBe(true);
}

/** Counts every peer-down event of the trio from now on. */
function countDowns(nets: Record<LinkSite, PeerNetwork>): () => number {
  let downs = 0;
  for (const site of [1, 2, 3] as const) nets[site].onPeerDown(() => (downs += 1));
  return () => downs;
}

/** A raw client socket to `address`, connected, recording what it receives. */
async function rawConnect(address: PeerAddress): Promise<{ socket: net.Socket; received: Uint8Array[]; closed: Promise<void> }> {
  const socket = net.connect(address);
  rawSockets.push(socket);
  const received: Uint8Array[] = [];
  socket.on('data', (chunk: Buffer) => received.push(chunk));
  socket.on('error', () => {});
  const closed = within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 'the raw socket to be closed');
  await within(new Promise<void>((resolve) => socket.once('connect', () => resolve())), 'the raw socket to connect');
  return { socket, received, closed };
}

/** What a TLS client saw of a connection: its socket, the frames it received, its handshake and its end. */
interface TlsClient {
  readonly socket: tls.TLSSocket;
  readonly frames: Uint8Array[];
  /** Resolves when the client's side of the handshake is done, rejects with the TLS error. */
  readonly secure: Promise<void>;
  readonly closed: Promise<void>;
}

/**
 * A TLS 1.3 client of `address` presenting `credentials`' certificate (null: none at all), which does not
 * check the server (an outsider has no reason to): the attacker's side, or a stolen-certificate replay.
 */
function tlsConnect(address: PeerAddress, credentials: TlsCredentials | null): TlsClient {
  const options: tls.ConnectionOptions = { minVersion: 'TLSv1.3', rejectUnauthorized: false };
  if (credentials !== null) Object.assign(options, { cert: credentials.cert, key: credentials.key });
  const socket = tls.connect({ host: address.host, port: address.port, ...options });
  rawSockets.push(socket);
  const frames: Uint8Array[] = [];
  const decoder = new FrameDecoder(frameBytesMax);
  decoder.keepalives = true;
  socket.on('data', (chunk: Buffer) => {
    decoder.push(chunk);
    drain(decoder, frames);
  });
  const secure = within(
    new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', () => resolve());
      socket.once('error', reject);
    }),
    'the TLS client to finish its handshake',
  );
  secure.catch(() => undefined);
  socket.on('error', () => {});
  const closed = within(new Promise<void>((resolve) => socket.once('close', () => resolve())), 'the TLS client to be closed');
  return { socket, frames, secure, closed };
}

/** A TLS server with `credentials` that runs `onConnection` for each connection (a fake peer). */
async function tlsServer(credentials: TlsCredentials, onConnection: (socket: tls.TLSSocket) => void): Promise<PeerAddress> {
  const server = tls.createServer({ minVersion: 'TLSv1.3', cert: credentials.cert, key: credentials.key }, (socket) => {
    rawSockets.push(socket);
    socket.on('error', () => {});
    onConnection(socket);
  });
  tlsServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  return { host, port: (server.address() as net.AddressInfo).port };
}

/** A port nothing listens on (bound on 0, then released). */
async function closedPort(): Promise<PeerAddress> {
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const { port } = server.address() as net.AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return { host, port };
}

function bytesOf(text: string): Uint8Array {
  return new TextEncoder().encode(text);
}

function helloFrame(fields: Record<string, unknown>): Uint8Array {
  return encodeFrame(bytesOf(JSON.stringify(fields)));
}

/** A payload with a position-dependent pattern (no dice: a mismatch is reproducible). */
function patterned(length: number, salt: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i += 1) out[i] = (i ^ (i >>> 8) ^ (i >>> 16) ^ salt) & 0xff;
  return out;
}

// -----------------------------------------------------------------------------------------------------------
// Pure: frames and hellos

describe('FrameDecoder and encodeFrame', () => {
  it('decodes any payloads, encoded and cut at arbitrary points, back to the same payloads', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 20 }),
        fc.array(fc.nat(), { maxLength: 40 }),
        fc.boolean(),
        (payloads, cuts, drainEachChunk) => {
          const wire = concat(payloads.map(encodeFrame));
          const points = [...new Set(cuts.map((cut) => cut % (wire.length + 1)))].sort((a, b) => a - b);
          const decoder = new FrameDecoder();
          const out: Uint8Array[] = [];
          let from = 0;
          for (const to of [...points, wire.length]) {
            decoder.push(wire.subarray(from, to));
            from = to;
            if (drainEachChunk) drain(decoder, out);
          }
          drain(decoder, out);
          expect(out).toEqual(payloads);
          expect(decoder.bufferedBytes).toBe(0);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('copes with a frame spread over thousands of one-byte chunks (one copy, no quadratic concatenation)', () => {
    const payloads = [patterned(3000, 1), patterned(3000, 2), patterned(5, 3)];
    const wire = concat(payloads.map(encodeFrame));
    const decoder = new FrameDecoder();
    for (let i = 0; i < wire.length; i += 1) decoder.push(wire.subarray(i, i + 1));
    expect(decoder.bufferedBytes).toBe(wire.length);
    const out: Uint8Array[] = [];
    drain(decoder, out);
    expect(out).toEqual(payloads);
  });

  it('takes a zero length for a keepalive (an empty payload) once keepalives are allowed, and a prefix split anywhere', () => {
    const decoder = new FrameDecoder();
    decoder.keepalives = true;
    const wire = concat([keepaliveFrame, encodeFrame(bytesOf('a')), keepaliveFrame]);
    const out: Uint8Array[] = [];
    for (let i = 0; i < wire.length; i += 1) {
      decoder.push(wire.subarray(i, i + 1));
      drain(decoder, out);
    }
    expect(out).toEqual([new Uint8Array(0), bytesOf('a'), new Uint8Array(0)]);
    expect(keepaliveFrame).toEqual(new Uint8Array(frameHeaderBytes));
  });

  it('refuses a zero length with FrameError while keepalives are not allowed (before the hello), and keeps refusing', () => {
    const decoder = new FrameDecoder();
    decoder.push(new Uint8Array([0, 0, 0, 0, 1, 2, 3]));
    let error: unknown;
    try {
      decoder.next();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(FrameError);
    expect(error).toMatchObject({ reason: 'zeroLength', lengthBytes: 0 });
    expect(() => decoder.next()).toThrow(error as Error);
  });

  it('accepts a length of exactly the limit and refuses one byte more', () => {
    const prefix = (length: number): Uint8Array => {
      const out = new Uint8Array(frameHeaderBytes);
      new DataView(out.buffer).setUint32(0, length, true);
      return out;
    };
    const atLimit = new FrameDecoder();
    atLimit.push(prefix(frameBytesMax));
    expect(atLimit.next()).toBeUndefined();
    const above = new FrameDecoder();
    above.push(prefix(frameBytesMax + 1));
    expect(() => above.next()).toThrow(FrameError);
    try {
      above.next();
    } catch (e) {
      expect(e).toMatchObject({ reason: 'tooLarge', lengthBytes: frameBytesMax + 1, limitBytes: frameBytesMax });
    }
    const hello = new FrameDecoder(helloBytesMax);
    hello.push(prefix(helloBytesMax));
    expect(hello.next()).toBeUndefined();
    const helloAbove = new FrameDecoder(helloBytesMax);
    helloAbove.push(prefix(helloBytesMax + 1));
    expect(() => helloAbove.next()).toThrow(FrameError);
    const huge = new FrameDecoder();
    huge.push(new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    expect(() => huge.next()).toThrow(FrameError);
  });

  it('encodeFrame refuses an empty payload and one above frameBytesMax, and takes one of exactly frameBytesMax', () => {
    expect(() => encodeFrame(new Uint8Array(0))).toThrow(FrameError);
    expect(() => encodeFrame(new Uint8Array(frameBytesMax + 1))).toThrow(FrameError);
    expect(encodeFrame(new Uint8Array(frameBytesMax)).length).toBe(frameBytesMax + frameHeaderBytes);
    expect(frameBytesMax).toBeGreaterThan(messageBytesMax);
  });

  it('never throws anything but FrameError on arbitrary bytes', () => {
    fc.assert(
      fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 20 }), fc.integer({ min: 1, max: 64 }), (chunks, limitBytes) => {
        for (const decoder of [new FrameDecoder(), new FrameDecoder(limitBytes)]) {
          try {
            for (const chunk of chunks) {
              decoder.push(chunk);
              drain(decoder, []);
            }
          } catch (error) {
            expect(error).toBeInstanceOf(FrameError);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});

describe('hello', () => {
  const rejection = (f: () => void): string | undefined => {
    try {
      f();
    } catch (error) {
      if (error instanceof HelloError) return error.rejection;
      throw error;
    }
    return undefined;
  };

  it('round-trips and is checked against the expected cluster and peers', () => {
    const hello = decodeHello(encodeHello(1, cluster));
    expect(hello).toEqual({ hello: helloVersion, site: 1, cluster });
    expect(() => checkHello(hello, { self: 2, cluster, from: [1], certified: 1 })).not.toThrow();
    expect(rejection(() => checkHello(hello, { self: 2, cluster: 'other', from: [1], certified: 1 }))).toBe('cluster');
    expect(rejection(() => checkHello(hello, { self: 1, cluster, from: [], certified: 1 }))).toBe('ownSite');
    expect(rejection(() => checkHello(hello, { self: 3, cluster, from: [2], certified: 2 }))).toBe('unexpectedSite');
    // The certificate says site 2; a hello that says site 1 is not believed, though site 1 may dial site 3.
    expect(rejection(() => checkHello(hello, { self: 3, cluster, from: [1, 2], certified: 2 }))).toBe('notCertified');
  });

  it('refuses anything that is not exactly a hello', () => {
    const cases: [unknown, string][] = [
      ['not json', 'malformed'],
      [[1, 2], 'malformed'],
      [{ hello: 'threesite-peer-v0', site: 1, cluster }, 'version'],
      [{ site: 1, cluster }, 'version'],
      [{ hello: helloVersion, site: 4, cluster }, 'malformed'],
      [{ hello: helloVersion, site: '1', cluster }, 'malformed'],
      [{ hello: helloVersion, site: 1, cluster: '' }, 'malformed'],
      [{ hello: helloVersion, site: 1, cluster: 'x'.repeat(257) }, 'malformed'],
      [{ hello: helloVersion, site: 1, cluster, extra: true }, 'malformed'],
    ];
    for (const [value, expected] of cases) {
      const payload = typeof value === 'string' ? bytesOf(value) : bytesOf(JSON.stringify(value));
      expect(rejection(() => decodeHello(payload)), JSON.stringify(value)).toBe(expected);
    }
    expect(rejection(() => decodeHello(new Uint8Array([0xff, 0xfe])))).toBe('malformed');
    expect(rejection(() => decodeHello(new Uint8Array(helloBytesMax + 1)))).toBe('malformed');
  });

  it('peerIdsOf gives the two other sites', () => {
    expect(peerIdsOf(1)).toEqual([2, 3]);
    expect(peerIdsOf(2)).toEqual([1, 3]);
    expect(peerIdsOf(3)).toEqual([1, 2]);
  });
});

describe('PeerNetwork configuration', () => {
  it('refuses a configuration it cannot run with ConfigError', () => {
    const log = new Log();
    const base = { self: 1 as const, listen: { host, port: 0 }, peers: { 2: { host, port: 1 }, 3: { host, port: 2 } }, log };
    expect(() => network({ ...base, peers: { 2: { host, port: 1 } } })).toThrow(ConfigError);
    expect(() => network({ ...base, cluster: '' })).toThrow(ConfigError);
    expect(() => network({ ...base, outgoingBytesMax: frameBytesMax - 1 })).toThrow(ConfigError);
    expect(() => network({ ...base, reconnectDelayMs: 0 })).toThrow(ConfigError);
    expect(() => network({ ...base, reconnectDelayMs: 100, reconnectDelayMsMax: 50 })).toThrow(ConfigError);
    expect(() => network({ ...base, listen: { host, port: 70000 } })).toThrow(ConfigError);
    expect(() => network({ ...base, credentials: { ...ours.sites[1], cert: 'not pem' } })).toThrow(ConfigError);
    expect(() => network({ ...base, credentials: otherNamed.sites[1] })).toThrow(/credentials.cluster/);
  });

  it('takes each pre-authentication and keepalive limit from 1 ms to its ceiling, and refuses either side of that', () => {
    const log = new Log();
    const base = { self: 1 as const, listen: { host, port: 0 }, peers: { 2: { host, port: 1 }, 3: { host, port: 2 } }, log };
    const limits: [keyof PeerNetworkConfig, number][] = [
      ['idleTimeoutMs', idleTimeoutMsCeiling],
      ['handshakeTimeoutMs', handshakeTimeoutMsCeiling],
      ['keepaliveIntervalMs', keepaliveIntervalMsCeiling],
    ];
    for (const [field, ceiling] of limits) {
      for (const ok of [1, ceiling]) expect(() => network({ ...base, [field]: ok, silenceMsMax: silenceMsMaxCeiling }), `${field} ${ok}`).not.toThrow();
      for (const bad of [0, ceiling + 1, 1.5]) expect(() => network({ ...base, [field]: bad, silenceMsMax: silenceMsMaxCeiling }), `${field} ${bad}`).toThrow(ConfigError);
    }
    // A link is judged silent only after two keepalive intervals at least.
    expect(() => network({ ...base, keepaliveIntervalMs: 100, silenceMsMax: 200 })).not.toThrow();
    expect(() => network({ ...base, keepaliveIntervalMs: 100, silenceMsMax: 199 })).toThrow(ConfigError);
    expect(() => network({ ...base, silenceMsMax: silenceMsMaxCeiling })).not.toThrow();
    expect(() => network({ ...base, silenceMsMax: silenceMsMaxCeiling + 1 })).toThrow(ConfigError);
  });
});

describe('evictionVictim', () => {
  const c = (remoteAddress: string, sequence: number, silent: boolean) => ({ remoteAddress, sequence, silent });

  it('evicts a silent connection before one in its handshake, from the address holding most, the oldest first', () => {
    expect(evictionVictim([])).toBeUndefined();
    // Silent before handshaking, even when the handshaking one is older.
    expect(evictionVictim([c('a', 1, false), c('a', 2, true), c('a', 3, false)])).toEqual(c('a', 2, true));
    // The address with the most pending connections pays, though another's is older.
    expect(evictionVictim([c('peer', 1, true), c('flood', 2, true), c('flood', 3, true)])).toEqual(c('flood', 2, true));
    // Counted over every pending connection, silent or not.
    expect(evictionVictim([c('peer', 1, true), c('flood', 2, false), c('flood', 3, true)])).toEqual(c('flood', 3, true));
    // Nothing silent: among handshakes, by address then age.
    expect(evictionVictim([c('peer', 1, false), c('flood', 5, false), c('flood', 4, false)])).toEqual(c('flood', 4, false));
    // Ties: the oldest.
    expect(evictionVictim([c('b', 7, true), c('a', 3, true)])).toEqual(c('a', 3, true));
  });

  it('on any pool: a silent victim whenever one is silent, none of its stage older at its address or at an address holding more', () => {
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.constantFrom('a', 'b', 'c'), fc.boolean()), { minLength: 1, maxLength: 20 }), (rows) => {
        const pool = rows.map(([address, silent], i) => c(address, i, silent));
        const victim = evictionVictim(pool)!;
        expect(pool).toContain(victim);
        if (pool.some((x) => x.silent)) expect(victim.silent).toBe(true);
        const held = (address: string): number => pool.filter((x) => x.remoteAddress === address).length;
        for (const other of pool.filter((x) => x.silent === victim.silent && x !== victim)) {
          expect(held(other.remoteAddress) > held(victim.remoteAddress), JSON.stringify(other)).toBe(false);
          if (other.remoteAddress === victim.remoteAddress) expect(other.sequence).toBeGreaterThan(victim.sequence);
        }
      }),
      { numRuns: 300 },
    );
  });
});

// -----------------------------------------------------------------------------------------------------------
// Real sockets

describe('PeerNetwork over TLS on 127.0.0.1', () => {
  it('connects the three sites pairwise, the lower id dialing the higher', async () => {
    const { nets, logs } = await startTrio();
    expectAllConnected(nets);
    for (const site of [1, 2, 3] as const) {
      for (const peer of peerIdsOf(site)) {
        expect(nets[site].counters().peers[peer]?.connects).toBe(1);
        expect(logs[site].count(`up (${peer > site ? 'dialed' : 'accepted'}`)).toBeGreaterThan(0);
      }
    }
    expect(logs[1].count('up (dialed')).toBe(2);
    expect(logs[3].count('up (accepted')).toBe(2);
  });

  it('carries frames in order and intact: one of exactly frameBytesMax, then many small ones, both ways', async () => {
    const { nets } = await startTrio();
    const big = patterned(frameBytesMax, 7);
    const small = Array.from({ length: 2000 }, (_, i) => bytesOf(`frame ${i}`));
    const at2 = collect(nets[2], 1, 1 + small.length);
    const at1 = collect(nets[1], 2, small.length);
    const at3 = collect(nets[3], 2, small.length);
    expect(nets[1].send(2, big)).toBe(true);
    for (const payload of small) {
      expect(nets[1].send(2, payload)).toBe(true);
      expect(nets[2].send(1, payload)).toBe(true);
      expect(nets[2].send(3, payload)).toBe(true);
    }
    const [from1, from2, from2at3] = await Promise.all([at2, at1, at3]);
    expect(from1[0]?.length).toBe(frameBytesMax);
    expect(sameBytes(from1[0] as Uint8Array, big)).toBe(true);
    expect(from1.slice(1)).toEqual(small);
    expect(from2).toEqual(small);
    expect(from2at3).toEqual(small);
    const sent = nets[1].counters().peers[2];
    const received = nets[2].counters().peers[1];
    expect(sent).toMatchObject({ framesSent: 1 + small.length, bytesSent: received?.bytesReceived });
    expect(received?.framesReceived).toBe(1 + small.length);
  });

  it('carries an encoded Message that decodes equal at the far end; a malformed one gets its sender disconnected', async () => {
    const { nets, logs } = await startTrio();
    const messages: Message[] = [
      { kind: 'syncWrite', epoch: 1, updateNumber: 42, volume: 1, offset: 8192, data: patterned(65536, 3), restoredKnown: 40 },
      {
        kind: 'pullEntries', epoch: 1,
        entries: [
          { updateNumber: 41, volume: 0, offset: 0, data: patterned(4096, 4) },
          { updateNumber: 42, volume: 1, offset: 8192, data: patterned(512, 5) },
        ],
        servedAt: 1764672000123.5,
      },
    ];
    const decoded: Message[] = [];
    nets[2].onFrame((peer, payload) => {
      try {
        decoded.push(decodeMessage(payload));
      } catch (error) {
        if (!(error instanceof MalformedMessageError)) throw error;
        nets[2].disconnect(peer, error.message);
      }
    });
    const arrived = collect(nets[2], 1, messages.length);
    for (const message of messages) expect(nets[1].send(2, encodeMessage(message))).toBe(true);
    await arrived;
    expect(decoded).toEqual(messages);

    const down = nextDown(nets[1], 2);
    const up = nextUp(nets[1], 2);
    const logged = logs[2].next('malformed message');
    expect(nets[1].send(2, bytesOf('garbage, not a message'))).toBe(true);
    expect(await down).toBe('closed by peer');
    expect(await logged).toContain('link 1-2 down: disconnected: malformed message');
    await up;
    expect(nets[2].counters().peers[1]?.lastDisconnectReason).toContain('malformed message');
    expect(decoded).toHaveLength(messages.length);
  });

  it('reconnects after a disconnect from either side, and after a peer process restarts on its port', async () => {
    const { nets, logs, addresses } = await startTrio();
    // The acceptor drops the link: the dialer sees it down, then dials again.
    let downAt1 = nextDown(nets[1], 2);
    let upAt1 = nextUp(nets[1], 2);
    let upAt2 = nextUp(nets[2], 1);
    nets[2].disconnect(1, 'test');
    expect(nets[2].isConnected(1)).toBe(false);
    await Promise.all([downAt1, upAt1, upAt2]);
    expect(nets[1].counters().peers[2]).toMatchObject({ connects: 2, disconnects: 1, lastDisconnectReason: 'closed by peer' });
    expect(nets[2].counters().peers[1]).toMatchObject({ connects: 2, disconnects: 1, lastDisconnectReason: 'disconnected: test' });
    // The dialer drops the link: it dials again itself.
    const downAt3 = nextDown(nets[3], 1);
    const upAt3 = nextUp(nets[3], 1);
    nets[1].disconnect(3, 'test');
    await Promise.all([downAt3, upAt3, connected(nets[1], 3)]);

    // Site 2's process dies and comes back on the same port: sites 1 and 3 see it down, then up.
    downAt1 = nextDown(nets[1], 2);
    const downAt3b = nextDown(nets[3], 2);
    await nets[2].close();
    await Promise.all([downAt1, downAt3b]);
    expect(nets[1].send(2, bytesOf('lost'))).toBe(false);
    upAt1 = nextUp(nets[1], 2);
    const upAt3b = nextUp(nets[3], 2);
    const restarted = network({ self: 2, listen: addresses[2], peers: { 3: addresses[3] }, log: logs[2] });
    await restarted.start();
    await Promise.all([upAt1, upAt3b, connected(restarted, 1), connected(restarted, 3)]);
    const arrived = collect(restarted, 1, 1);
    expect(nets[1].send(2, bytesOf('after restart'))).toBe(true);
    expect(await arrived).toEqual([bytesOf('after restart')]);
  });

  it('block on the dialer side: the link goes down, no dial is attempted, unblock reconnects', async () => {
    const { nets } = await startTrio();
    const downAt1 = nextDown(nets[1], 2);
    const downAt2 = nextDown(nets[2], 1);
    nets[1].block(2);
    expect(await downAt1).toBe('link blocked');
    await downAt2;
    expect(nets[1].send(2, bytesOf('x'))).toBe(false);
    expect(nets[2].send(1, bytesOf('x'))).toBe(false);
    // A reconnect on another link goes through the same backoff timers: by the time it is back, a dial
    // to the blocked peer would have been made too, and none was.
    const up3 = nextUp(nets[1], 3);
    nets[1].disconnect(3, 'probe');
    await up3;
    expect(nets[1].isConnected(2)).toBe(false);
    expect(nets[2].counters().peers[1]?.connects).toBe(1);
    expect(nets[2].counters().rejectedConnections).toBe(0);
    const upAt1 = nextUp(nets[1], 2);
    const upAt2 = nextUp(nets[2], 1);
    nets[1].unblock(2);
    await Promise.all([upAt1, upAt2]);
    expect(nets[2].counters().peers[1]?.connects).toBe(2);
    expectAllConnected(nets);
  });

  it('block on the accepting side: the dialer is refused right after its hello, never up, until unblock', async () => {
    const { nets, logs } = await startTrio();
    let upsAt1 = 0;
    nets[1].onPeerUp((peer) => (peer === 2 ? (upsAt1 += 1) : undefined));
    const downAt1 = nextDown(nets[1], 2);
    const refusedTwice = (async () => {
      await logs[2].next('is blocked');
      await logs[2].next('is blocked');
    })();
    nets[2].block(1);
    await downAt1;
    await refusedTwice;
    expect(upsAt1).toBe(0);
    expect(nets[1].isConnected(2)).toBe(false);
    expect(nets[2].counters().lastRejectReason).toContain('link 1-2 is blocked');
    const upAt1 = nextUp(nets[1], 2);
    nets[2].unblock(1);
    await upAt1;
    await connected(nets[2], 1);
    expectAllConnected(nets);
  });

  it('a dialer refuses an acceptor with another site\'s or another cluster\'s certificate, or a hello that disagrees, and keeps retrying', async () => {
    const log = new Log();
    const answer = (hello: Uint8Array) => (socket: tls.TLSSocket) => socket.once('data', () => socket.write(encodeFrame(hello)));
    const site3Certificate = await tlsServer(ours.sites[3], answer(encodeHello(2, cluster)));
    // Site 3's own certificate, but a hello that names site 2.
    const wrongSite = await tlsServer(ours.sites[3], answer(encodeHello(2, cluster)));
    const net1 = network({ self: 1, listen: { host, port: 0 }, peers: { 2: site3Certificate, 3: wrongSite }, log });
    let ups = 0;
    net1.onPeerUp(() => (ups += 1));
    const refusedCertificate = log.next('dial to site 2');
    const refusedHello = log.next('expected site 3');
    await net1.start();
    expect(await refusedCertificate).toContain('certificate names site-3, expected site-2');
    expect(await refusedHello).toContain(`connection to site 3 at ${host}:${wrongSite.port} refused`);
    await log.next('expected site 3'); // dialed again after a backoff
    expect(ups).toBe(0);

    // A valid site 2 certificate of another cluster, named like ours or not: its chain does not lead to our authority.
    for (const other of [sameNamed, otherNamed]) {
      const foreignLog = new Log();
      const foreign = await tlsServer(other.sites[2], answer(encodeHello(2, cluster)));
      const net = network({ self: 1, listen: { host, port: 0 }, peers: { 2: foreign, 3: await closedPort() }, log: foreignLog });
      net.onPeerUp(() => (ups += 1));
      const failed = foreignLog.next('dial to site 2');
      await net.start();
      expect(await failed).toMatch(/failed: (UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY|CERT_SIGNATURE_FAILURE)/);
    }
    expect(ups).toBe(0);
  });

  it('send to a down peer returns false; a peer that refuses connections only makes the dialer retry', async () => {
    const log = new Log();
    const net1 = network({ self: 1, listen: { host, port: 0 }, peers: { 2: await closedPort(), 3: await closedPort() }, log });
    const failed = log.next('dial to site 2');
    await net1.start();
    expect(await failed).toContain('ECONNREFUSED');
    expect(net1.isConnected(2)).toBe(false);
    expect(net1.send(2, bytesOf('lost'))).toBe(false);
    expect(net1.send(3, bytesOf('lost'))).toBe(false);
    expect(net1.counters().peers[2]).toMatchObject({ framesSent: 0, connects: 0 });
  });

  it('destroys a connection whose outgoing queue would exceed outgoingBytesMax instead of buffering', async () => {
    const log = new Log();
    // A fake site 2 that completes the hello, then stops reading.
    const stalled = await tlsServer(ours.sites[2], (socket) =>
      socket.once('data', () => {
        socket.write(encodeFrame(encodeHello(2, cluster)));
        socket.pause();
      }),
    );
    const net1 = network({ self: 1, listen: { host, port: 0 }, peers: { 2: stalled, 3: await closedPort() }, log, outgoingBytesMax: frameBytesMax });
    const up = nextUp(net1, 2);
    await net1.start();
    await up;
    const down = nextDown(net1, 2);
    const payload = new Uint8Array(8 * 1024 * 1024);
    let accepted = 0;
    for (let i = 0; i < 32 && net1.send(2, payload); i += 1) accepted += 1;
    expect(accepted).toBeLessThan(32);
    expect(await down).toContain('would exceed outgoingBytesMax');
    expect(net1.isConnected(2)).toBe(false);
  });

  it('close() stops everything and leaves no socket, listener or timer open', async () => {
    const handles = (): number =>
      process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap' || kind === 'TLSWrap' || kind === 'TCPServerWrap' || kind === 'Timeout').length;
    const baseline = handles();
    const { nets } = await startTrio();
    // A fourth dial target that refuses, so that backoff timers are running at close time.
    const log = new Log();
    const lonely = network({ self: 1, listen: { host, port: 0 }, peers: { 2: await closedPort(), 3: await closedPort() }, log });
    const failed = log.next('dial to site 2');
    await lonely.start();
    await failed;
    expect(handles(), 'the count sees the sockets and listeners (else this test proves nothing)').toBeGreaterThan(baseline + 6);
    const downs = [nextDown(nets[1], 2), nextDown(nets[2], 1)];
    await Promise.all([nets[1].close(), nets[2].close(), nets[3].close(), lonely.close()]);
    expect(await Promise.all(downs)).toEqual(['network closed', 'network closed']);
    expect(nets[1].isConnected(2)).toBe(false);
    expect(nets[1].send(2, bytesOf('x'))).toBe(false);
    expect(handles()).toBeLessThanOrEqual(baseline);
  });
});

// -----------------------------------------------------------------------------------------------------------
// Who gets in: each attack on a peer port, refused with the real links untouched.

/** The hello frame of `site` as an outsider sends it (any cluster, any site: what it says is not believed). */
function forgedHello(site: number, clusterId = cluster): Uint8Array {
  return helloFrame({ hello: helloVersion, site, cluster: clusterId });
}

/** Waits until `condition()` holds, checking at every event-loop turn, within the event timeout. */
function until(what: string, condition: () => boolean): Promise<void> {
  return within(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (condition()) resolve();
        else setTimeout(check, 5);
      };
      check();
    }),
    what,
  );
}

/** One attacking TLS connection: its certificate, then `send` once its handshake is done; resolves when it is closed. */
async function attack(address: PeerAddress, credentials: TlsCredentials | null, send: Uint8Array): Promise<TlsClient> {
  const client = tlsConnect(address, credentials);
  client.secure.then(() => client.socket.write(send), () => undefined);
  await client.closed;
  return client;
}

/** Site 2 alone (site 3 never answers), with `limits`, started. */
async function lonelySite2(limits: Partial<PeerNetworkConfig> = {}): Promise<{ net2: PeerNetwork; log: Log; address: PeerAddress }> {
  const log = new Log();
  const net2 = network({ ...limits, self: 2, listen: { host, port: 0 }, peers: { 3: await closedPort() }, log });
  await net2.start();
  return { net2, log, address: net2.listenAddress() };
}

describe('who gets in: the peer port', () => {
  it('refuses plain TCP (garbage, or a hello as site 1) and TLS without a certificate, while the real links stay up', async () => {
    const { nets, logs, addresses } = await startTrio();
    const downs = countDowns(nets);
    const plain: { what: string; bytes: Uint8Array }[] = [
      { what: 'an HTTP request', bytes: bytesOf('GET / HTTP/1.1\r\nHost: x\r\n\r\n') },
      { what: 'a hello as site 1 in the clear', bytes: forgedHello(1) },
      { what: 'forged frames in the clear', bytes: concat([forgedHello(1), encodeFrame(bytesOf('{"kind":"verdict"}'))]) },
    ];
    for (const { what, bytes } of plain) {
      const refusals = nets[2].counters().rejectedConnections;
      const raw = await rawConnect(addresses[2]);
      const logged = logs[2].next('refused: TLS handshake');
      raw.socket.write(bytes);
      await raw.closed;
      expect(await logged, what).toContain('refused');
      expect(Buffer.concat(raw.received).includes('threesite'), `${what}: site 2 sends no hello`).toBe(false);
      expect(nets[2].counters().rejectedConnections).toBe(refusals + 1);
    }
    const logged = logs[2].next('refused: TLS handshake failed');
    const noCertificate = await attack(addresses[2], null, forgedHello(1));
    expect(await logged).toContain('CERTIFICATE');
    expect(noCertificate.frames).toEqual([]);
    expect(downs()).toBe(0);
    expectAllConnected(nets);
    expect(nets[2].counters().peers[1]).toMatchObject({ connects: 1, framesReceived: 0 });
    const arrived = collect(nets[2], 1, 1);
    expect(nets[1].send(2, bytesOf('still here'))).toBe(true);
    expect(await arrived).toEqual([bytesOf('still here')]);
  });

  it('refuses a certificate of another cluster (named like ours or not), of the operator, of a host, of a site that does not dial us', async () => {
    const { nets, logs, addresses } = await startTrio();
    const downs = countDowns(nets);
    const cases: { what: string; credentials: TlsCredentials; reason: string }[] = [
      { what: 'site 1 of a cluster with our name', credentials: sameNamed.sites[1], reason: 'TLS handshake not completed' },
      { what: 'site 1 of another cluster', credentials: otherNamed.sites[1], reason: 'TLS handshake not completed' },
      { what: 'our operator', credentials: ours.operator, reason: 'certificate names operator: only site 1 connects to site 2' },
      { what: 'our host 1', credentials: ours.host, reason: 'certificate names host-1' },
      { what: 'site 3, which does not dial site 2', credentials: ours.sites[3], reason: 'certificate names site-3' },
      { what: 'site 2 itself', credentials: ours.sites[2], reason: 'certificate names site-2' },
    ];
    for (const { what, credentials, reason } of cases) {
      const refusals = nets[2].counters().rejectedConnections;
      const logged = logs[2].next('refused');
      const client = await attack(addresses[2], credentials, forgedHello(1));
      expect(await logged, what).toContain(reason);
      expect(client.frames, `${what}: no hello from site 2`).toEqual([]);
      expect(nets[2].counters().rejectedConnections).toBe(refusals + 1);
    }
    expect(downs()).toBe(0);
    expectAllConnected(nets);
    expect(nets[2].counters().peers[1]).toMatchObject({ connects: 1, framesReceived: 0 });
  });

  it('refuses, after a good certificate, a first frame that is not a hello or a hello that disagrees with the certificate', async () => {
    const { nets, logs, addresses } = await startTrio();
    const downs = countDowns(nets);
    const cases: { what: string; to: PeerAddress; at: LinkSite; bytes: Uint8Array; reason: string }[] = [
      { what: 'a zero length', to: addresses[2], at: 2, bytes: new Uint8Array(4), reason: 'frame length 0' },
      { what: 'not JSON', to: addresses[2], at: 2, bytes: encodeFrame(bytesOf('hello?')), reason: 'not UTF-8 JSON' },
      { what: 'another protocol', to: addresses[2], at: 2, bytes: helloFrame({ hello: 'threesite-peer-v1', site: 1, cluster }), reason: 'is not "threesite-peer-v2"' },
      { what: 'a wrong cluster', to: addresses[2], at: 2, bytes: forgedHello(1, 'other'), reason: 'wrong cluster' },
      { what: 'site 3 with site 1\'s certificate', to: addresses[2], at: 2, bytes: forgedHello(3), reason: 'expected site 1' },
      { what: 'site 2 with site 1\'s certificate, at site 3', to: addresses[3], at: 3, bytes: forgedHello(2), reason: 'certificate names site 1' },
    ];
    for (const { what, to, at, bytes, reason } of cases) {
      const logged = logs[at].next('refused');
      const client = await attack(to, ours.sites[1], bytes);
      expect(await logged, what).toContain(reason);
      expect(client.frames, what).toEqual([]);
    }
    expect(downs()).toBe(0);
    expectAllConnected(nets);
  });

  it('never lets a second connection with the real peer\'s certificate replace a healthy link, however long it keeps trying', async () => {
    const limits = { keepaliveIntervalMs: 50, silenceMsMax: 300 };
    const { nets, logs, addresses } = await startTrio(limits);
    const downs = countDowns(nets);
    const started = performance.now();
    let attempts = 0;
    // Attempts span three silenceMsMax: the real link's keepalives keep it healthy all along.
    while (performance.now() - started < 3 * limits.silenceMsMax) {
      const logged = logs[2].next('refused');
      const client = await attack(addresses[2], ours.sites[1], forgedHello(1));
      expect(await logged).toContain('site 1 is already connected');
      expect(client.frames).toEqual([]);
      attempts += 1;
    }
    expect(attempts).toBeGreaterThan(1);
    expect(downs()).toBe(0);
    expectAllConnected(nets);
    expect(nets[2].counters().peers[1]).toMatchObject({ connects: 1, disconnects: 0 });
    expect(nets[2].counters().peers[1]!.keepalivesReceived).toBeGreaterThan(0);
    const arrived = collect(nets[2], 1, 1);
    expect(nets[1].send(2, bytesOf('still the real link'))).toBe(true);
    expect(await arrived).toEqual([bytesOf('still the real link')]);
  });

  it('lets a new authenticated connection of the peer replace a link silent beyond silenceMsMax (the dialer saw it die first)', async () => {
    const { net2, log, address } = await lonelySite2({ keepaliveIntervalMs: 50, silenceMsMax: 500 });
    // Site 1's connection comes up, then falls silent without closing (a lost FIN, a host gone).
    const up = nextUp(net2, 1);
    const old = tlsConnect(address, ours.sites[1]);
    await old.secure;
    old.socket.write(forgedHello(1));
    await up;
    await until('the hello of site 2', () => old.frames.length > 0);
    const firstRefusal = log.next('refused');
    const early = await attack(address, ours.sites[1], forgedHello(1));
    expect(await firstRefusal).toContain('site 1 is already connected');
    expect(early.frames).toEqual([]);
    // Site 1 keeps dialing; once the old link has been silent long enough, a new connection takes over.
    const replaced = log.next('replaced by a new connection');
    let taken: TlsClient | undefined;
    await within(
      (async () => {
        while (taken === undefined) {
          const client = tlsConnect(address, ours.sites[1]);
          await client.secure;
          client.socket.write(forgedHello(1));
          await Promise.race([client.closed, until('a hello', () => client.frames.length > 0)]);
          if (client.frames.length > 0) taken = client;
        }
      })(),
      'a new connection to replace the silent one',
    );
    expect(await replaced).toMatch(/silent for \d+ ms, above silenceMsMax 500/);
    await old.closed;
    expect(net2.isConnected(1)).toBe(true);
    expect(net2.counters().peers[1]).toMatchObject({ connects: 2, disconnects: 1 });
  });

  it('closes an inbound connection silent for idleTimeoutMs, and one that trickles its handshake at handshakeTimeoutMs', async () => {
    const { net2, log, address } = await lonelySite2({ idleTimeoutMs: 100, handshakeTimeoutMs: 600, helloTimeoutMs: 5000 });
    const silentLogged = log.next('(idleTimeoutMs)');
    const silent = await rawConnect(address);
    await silent.closed;
    expect(await silentLogged).toContain('silent for 100 ms');
    // A TLS record header announcing 16 KiB, then one byte at a time: never silent, never a handshake.
    const slowLogged = log.next('(handshakeTimeoutMs)');
    const slow = await rawConnect(address);
    slow.socket.write(new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00]));
    const trickle = setInterval(() => slow.socket.write(new Uint8Array([0])), 50);
    await slow.closed;
    clearInterval(trickle);
    expect(await slowLogged).toContain('no TLS handshake within 600 ms');
    expect(log.count('(idleTimeoutMs)')).toBe(1);
    expect(net2.counters().pendingConnections).toBe(0);
  });

  it(`keeps at most pendingConnectionsMax (${pendingConnectionsMax}) waiting: one more evicts the oldest silent one, never one in its handshake`, async () => {
    const { net2, log, address } = await lonelySite2({ idleTimeoutMs: 30_000, handshakeTimeoutMs: 30_000, helloTimeoutMs: 30_000 });
    // A connection from 127.0.0.1 that has begun its handshake (a TLS record header, then nothing).
    const handshaking = await rawConnect(address);
    handshaking.socket.write(new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00]));
    let handshakingClosed = false;
    void handshaking.closed.then(() => (handshakingClosed = true), () => undefined);
    const flood: Awaited<ReturnType<typeof rawConnect>>[] = [];
    for (let i = 1; i < pendingConnectionsMax; i += 1) flood.push(await rawConnect(address));
    await until('the pool to be full', () => net2.counters().pendingConnections === pendingConnectionsMax);
    expect(net2.counters().evictedConnections).toBe(0);
    // One more: the oldest silent connection goes, the pool stays full.
    const evictedLogged = log.next('evicted');
    flood.push(await rawConnect(address));
    await flood[0]!.closed;
    expect(await evictedLogged).toContain(`${pendingConnectionsMax} connections were waiting to authenticate`);
    expect(net2.counters()).toMatchObject({ pendingConnections: pendingConnectionsMax, evictedConnections: 1 });
    // A flood twice the pool's size: every silent connection but the newest goes; the handshaking one stays.
    for (let i = 0; i < 2 * pendingConnectionsMax; i += 1) flood.push(await rawConnect(address));
    await until('the flood evicted', () => net2.counters().evictedConnections === 1 + 2 * pendingConnectionsMax);
    await Promise.all(flood.slice(0, flood.length - (pendingConnectionsMax - 1)).map((c) => c.closed));
    expect(handshakingClosed).toBe(false);
    expect(log.lines.filter((line) => line.includes(`:${handshaking.socket.localPort} refused`))).toEqual([]);
    expect(net2.counters().pendingConnections).toBe(pendingConnectionsMax);
  });

  it('a flood of connections from another address evicts itself before a handshake from the peer\'s address', async () => {
    const { net2, log, address } = await lonelySite2({ idleTimeoutMs: 30_000, handshakeTimeoutMs: 30_000, helloTimeoutMs: 30_000 });
    const fromAddress = async (localAddress: string, handshake: boolean) => {
      const socket = net.connect({ ...address, localAddress });
      rawSockets.push(socket);
      socket.on('error', () => {});
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
      await within(new Promise<void>((resolve) => socket.once('connect', () => resolve())), 'connect');
      if (handshake) socket.write(new Uint8Array([0x16, 0x03, 0x01, 0x40, 0x00]));
      // Every connection has begun its handshake before the next one comes: no silent one to evict first.
      await until('no silent connection at site 2', () => net2.counters().silentConnections === 0);
      return { socket, closed };
    };
    // The peer's address holds one connection in its handshake; 127.0.0.2 floods with handshakes too.
    const peer = await fromAddress('127.0.0.1', true);
    let peerClosed = false;
    void peer.closed.then(() => (peerClosed = true));
    for (let i = 0; i < 2 * pendingConnectionsMax; i += 1) await fromAddress('127.0.0.2', true);
    await until('the flood evicted', () => net2.counters().evictedConnections === pendingConnectionsMax + 1);
    expect(log.lines.filter((line) => line.includes('evicted') && line.includes('127.0.0.1:'))).toEqual([]);
    expect(peerClosed).toBe(false);
  });

  it('a real site 1 connects through a pool full of silent connections, and so after site 2 restarts', async () => {
    const limits = { idleTimeoutMs: 30_000, handshakeTimeoutMs: 30_000, helloTimeoutMs: 30_000 };
    const { net2, log, address } = await lonelySite2(limits);
    const flood: Awaited<ReturnType<typeof rawConnect>>[] = [];
    for (let i = 0; i < 2 * pendingConnectionsMax; i += 1) flood.push(await rawConnect(address));
    await until('the pool to be full', () => net2.counters().pendingConnections === pendingConnectionsMax);
    const net1Log = new Log();
    const net1 = network({ ...limits, self: 1, listen: { host, port: 0 }, peers: { 2: address, 3: await closedPort() }, log: net1Log });
    const up = nextUp(net2, 1);
    await net1.start();
    await up;
    await connected(net1, 2);
    expect(log.count('link 1-2 up')).toBe(1);
    // Site 2 restarts on its port; the flood is back before site 1 redials.
    const down = nextDown(net1, 2);
    await net2.close();
    await down;
    const restarted = network({ ...limits, self: 2, listen: address, peers: { 3: await closedPort() }, log });
    const upAgain = nextUp(restarted, 1);
    await restarted.start();
    for (let i = 0; i < 2 * pendingConnectionsMax; i += 1) flood.push(await rawConnect(address));
    await upAgain;
    await connected(net1, 2);
  });

  it('sends keepalives on an idle link; they are not frames to a listener', async () => {
    const { nets } = await startTrio({ keepaliveIntervalMs: 20, silenceMsMax: 100 });
    let frames = 0;
    nets[2].onFrame(() => (frames += 1));
    await until('keepalives at site 2 from site 1 and site 3', () => nets[2].counters().peers[1]!.keepalivesReceived >= 3 && nets[2].counters().peers[3]!.keepalivesReceived >= 3);
    expect(frames).toBe(0);
    expect(nets[2].counters().peers[1]).toMatchObject({ framesReceived: 0, bytesReceived: 0 });
  });
});
