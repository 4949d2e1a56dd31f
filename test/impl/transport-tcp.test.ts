/**
 * The TCP link layer: the frame decoder round-trips any payloads cut at any points and refuses zero and
 * oversized lengths with FrameError only; hellos are checked; three real PeerNetworks on 127.0.0.1 connect
 * pairwise, carry frames in order and intact (one at the frame limit, many small ones, real encoded
 * messages), reconnect after a lost connection or a restarted peer, honour block/unblock on either side,
 * refuse raw sockets that send garbage or a wrong hello while the real links stay up, bound their outgoing
 * queue, and leave no handle open after close(). Every wait is for an event, with a bounded timeout.
 */

import fc from 'fast-check';
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { ConfigError, MalformedMessageError } from '../../impl/core/errors.ts';
import { decodeMessage, encodeMessage, messageBytesMax, type Message } from '../../impl/core/messages.ts';
import { peerIdsOf, PeerNetwork, type PeerAddress, type PeerNetworkConfig } from '../../impl/net/transport-tcp.ts';
import { checkHello, decodeHello, encodeFrame, encodeHello, FrameDecoder, FrameError, frameBytesMax, frameHeaderBytes, HelloError, helloBytesMax, helloVersion } from '../../impl/net/peer-frames.ts';
import type { LinkSite } from '../../impl/core/link.ts';

const cluster = 'test-cluster';
const host = '127.0.0.1';
/** Every wait for an event gives up after this long: a hang is a failure, not a stuck run. */
const eventTimeoutMs = 5000;
/** Short backoff so that reconnects are quick. */
const fastReconnect = { reconnectDelayMs: 10, reconnectDelayMsMax: 100, helloTimeoutMs: 2000 } as const;

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
const rawServers: net.Server[] = [];

function network(config: Omit<PeerNetworkConfig, 'log' | 'cluster'> & { log: Log; cluster?: string }): PeerNetwork {
  const result = new PeerNetwork({ ...fastReconnect, ...config, cluster: config.cluster ?? cluster, log: config.log.write });
  opened.push(result);
  return result;
}

afterEach(async () => {
  for (const socket of rawSockets.splice(0)) socket.destroy();
  await Promise.all(rawServers.splice(0).map((server) => new Promise<void>((resolve) => server.close(() => resolve()))));
  await Promise.all(opened.splice(0).map((n) => n.close()));
});

interface Trio {
  readonly nets: Record<LinkSite, PeerNetwork>;
  readonly logs: Record<LinkSite, Log>;
  readonly addresses: Record<LinkSite, PeerAddress>;
}

/** Three networks on ephemeral ports, started highest first (each dials only the ones already bound), all links up. */
async function startTrio(): Promise<Trio> {
  const logs = { 1: new Log(), 2: new Log(), 3: new Log() };
  const net3 = network({ self: 3, listen: { host, port: 0 }, peers: {}, log: logs[3] });
  await net3.start();
  const a3 = net3.listenAddress();
  const net2 = network({ self: 2, listen: { host, port: 0 }, peers: { 3: a3 }, log: logs[2] });
  await net2.start();
  const a2 = net2.listenAddress();
  const net1 = network({ self: 1, listen: { host, port: 0 }, peers: { 2: a2, 3: a3 }, log: logs[1] });
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

/** A raw listener that runs `onConnection` for each connection. */
async function rawServer(onConnection: (socket: net.Socket) => void): Promise<PeerAddress> {
  const server = net.createServer((socket) => {
    rawSockets.push(socket);
    socket.on('error', () => {});
    onConnection(socket);
  });
  rawServers.push(server);
  await new Promise<void>((resolve) => server.listen(0, host, () => resolve()));
  const bound = server.address() as net.AddressInfo;
  return { host, port: bound.port };
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

  it('refuses a zero length with FrameError, and keeps refusing', () => {
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
    expect(() => checkHello(hello, { self: 2, cluster, from: [1] })).not.toThrow();
    expect(rejection(() => checkHello(hello, { self: 2, cluster: 'other', from: [1] }))).toBe('cluster');
    expect(rejection(() => checkHello(hello, { self: 1, cluster, from: [] }))).toBe('ownSite');
    expect(rejection(() => checkHello(hello, { self: 3, cluster, from: [2] }))).toBe('unexpectedSite');
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
  });
});

// -----------------------------------------------------------------------------------------------------------
// Real sockets

describe('PeerNetwork over TCP on 127.0.0.1', () => {
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

  it('refuses raw sockets that send garbage or a wrong hello, and logs why, while the real links stay up', async () => {
    const { nets, logs, addresses } = await startTrio();
    const downs = countDowns(nets);
    const cases: { what: string; bytes: Uint8Array; reason: string }[] = [
      { what: 'an HTTP request', bytes: bytesOf('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), reason: 'bad first frame' },
      { what: 'a zero length', bytes: new Uint8Array([0, 0, 0, 0]), reason: 'frame length 0' },
      { what: 'a frame that is not JSON', bytes: encodeFrame(bytesOf('hello?')), reason: 'not UTF-8 JSON' },
      { what: 'another protocol', bytes: helloFrame({ hello: 'other-v1', site: 1, cluster }), reason: 'is not "threesite-peer-v1"' },
      { what: 'a wrong cluster', bytes: helloFrame({ hello: helloVersion, site: 1, cluster: 'other' }), reason: 'wrong cluster' },
      { what: 'a site that must not dial site 2', bytes: helloFrame({ hello: helloVersion, site: 3, cluster }), reason: 'expected site 1' },
      { what: 'our own id', bytes: helloFrame({ hello: helloVersion, site: 2, cluster }), reason: 'our own id' },
      { what: 'no site 4', bytes: helloFrame({ hello: helloVersion, site: 4, cluster }), reason: 'is not 1, 2 or 3' },
    ];
    for (const { what, bytes, reason } of cases) {
      const refusals = nets[2].counters().rejectedConnections;
      const raw = await rawConnect(addresses[2]);
      const logged = logs[2].next(reason);
      raw.socket.write(bytes);
      await raw.closed;
      expect(await logged, what).toContain('refused');
      expect(raw.received, `${what}: site 2 sends no hello to a refused connection`).toEqual([]);
      expect(nets[2].counters().rejectedConnections).toBe(refusals + 1);
    }
    expect(downs()).toBe(0);
    expectAllConnected(nets);
    const arrived = collect(nets[2], 1, 1);
    expect(nets[1].send(2, bytesOf('still here'))).toBe(true);
    expect(await arrived).toEqual([bytesOf('still here')]);
  });

  it('an acceptor takes a new connection from a peer in place of the old one (the dialer saw the old one die first)', async () => {
    const { nets } = await startTrio();
    const downAt2 = nextDown(nets[2], 1);
    const upAt2 = nextUp(nets[2], 1);
    const downAt1 = nextDown(nets[1], 2);
    const raw = await rawConnect(nets[2].listenAddress());
    raw.socket.write(encodeFrame(encodeHello(1, cluster)));
    expect(await downAt2).toContain('replaced by a new connection');
    await upAt2;
    await downAt1;
    // The impostor goes away; site 1 dials again and wins the link back.
    const back = nextUp(nets[2], 1);
    raw.socket.destroy();
    await back;
    await connected(nets[1], 2);
    expectAllConnected(nets);
  });

  it('a dialer refuses an acceptor whose hello names the wrong site or cluster, and keeps retrying', async () => {
    const log = new Log();
    const wrongSite = await rawServer((socket) => socket.once('data', () => socket.write(encodeFrame(encodeHello(3, cluster)))));
    const wrongCluster = await rawServer((socket) => socket.once('data', () => socket.write(encodeFrame(encodeHello(3, 'other')))));
    const net1 = network({ self: 1, listen: { host, port: 0 }, peers: { 2: wrongSite, 3: wrongCluster }, log });
    let ups = 0;
    net1.onPeerUp(() => (ups += 1));
    const refusedSite = log.next('expected site 2');
    const refusedCluster = log.next('wrong cluster');
    await net1.start();
    expect(await refusedSite).toContain(`connection to site 2 at ${host}:${wrongSite.port} refused`);
    await refusedCluster;
    await log.next('expected site 2'); // dialed again after a backoff
    expect(ups).toBe(0);
    expect(net1.isConnected(2)).toBe(false);
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
    const stalled = await rawServer((socket) =>
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
      process.getActiveResourcesInfo().filter((kind) => kind === 'TCPSocketWrap' || kind === 'TCPServerWrap' || kind === 'Timeout').length;
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
