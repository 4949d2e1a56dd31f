/**
 * The TCP link layer between site processes: one connection per pair of sites on loopback (or any
 * network), carrying opaque payload bytes. It knows nothing of message kinds: a site encodes with
 * `encodeMessage`, sends the bytes, and the far site decodes them with `decodeMessage` and calls
 * {@link PeerNetwork.disconnect} when they are malformed (a peer that sends garbage is disconnected with a
 * logged reason and nothing changes).
 *
 * Frames and hello (`peer-frames.ts`): every frame is a length-prefixed payload; the first frame in each
 * direction of every connection is a hello naming the protocol, the sender's site and its cluster. The
 * dialer sends its hello at once; the acceptor checks it and only then answers with its own, so a refused
 * dialer never sees its peer up. A connection whose first frame is not a valid hello, names another cluster,
 * names a site that is not the expected peer, or names our own id, is closed and the reason logged. There is
 * no authentication: the hello guards against misconfiguration (a site of another cluster, two processes
 * with the same id), not against an attacker.
 *
 * Who dials whom. Exactly one connection per pair: the site with the lower id dials the higher one (sites
 * 1→2, 1→3, 2→3); every site listens, and the higher one accepts. Only the dialer reconnects: after a
 * failed dial or a lost connection it dials again after a delay that starts at `reconnectDelayMs` and
 * doubles up to `reconnectDelayMsMax`; a connection that completes its hello resets the delay. When an
 * acceptor gets a new hello from a peer it already has a connection with, the new connection replaces the
 * old one (the dialer saw the old one die before the acceptor did).
 *
 * Limits: {@link frameBytesMax} per frame, {@link helloBytesMax} per hello, {@link clusterIdBytesMax} per
 * cluster id, `helloTimeoutMs` ({@link helloTimeoutMsDefault}) from connect to a checked hello,
 * {@link pendingConnectionsMax} inbound connections still waiting for their hello, and `outgoingBytesMax`
 * ({@link outgoingBytesMaxDefault}) bytes queued on one socket: a send that would queue more destroys the
 * connection (the peer goes down) instead of buffering without bound.
 *
 * Failure behaviour. A peer that is down, refuses connections (ECONNREFUSED), resets them, stalls or
 * sends garbage never throws out of this layer: the connection is closed, `onPeerDown` fires if it was up,
 * and the dialer retries. {@link PeerNetwork.send} to a peer that is not connected returns false: the
 * payload is lost, exactly like a message on a cut link, and the caller decides what that means.
 * {@link PeerNetwork.block} simulates a cut link (tests, the operator's link-cut command). Frames from one
 * peer are delivered in order, one at a time, synchronously from the socket's data handler; an exception
 * thrown by a listener is the site's bug and propagates (fail fast), it is not swallowed here.
 *
 * This file is an edge adapter: the frame decoder and the hello checks are pure; {@link PeerNetwork} owns
 * the sockets and the reconnect timers (the only wall-clock time in `impl/`).
 */

import * as net from 'node:net';
import { ConfigError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { messageBytesMax } from '../core/messages.ts';
import { isLinkSite, linkName, type LinkSite } from '../core/link.ts';
import {
  checkFramePayload,
  checkHello,
  decodeHello,
  encodeFrame,
  encodeFrameHeader,
  encodeHello,
  FrameDecoder,
  FrameError,
  frameBytesMax,
  frameHeaderBytes,
  HelloError,
  helloBytesMax,
  type Hello,
  type HelloExpectation,
} from './peer-frames.ts';

// ---------------------------------------------------------------------------------------------------------
// Limits

/** Default first reconnect delay of a dialer: 50 ms. */
export const reconnectDelayMsDefault = 50;

/** Default cap of the dialer's exponential backoff: 1000 ms. */
export const reconnectDelayMsMaxDefault = 1000;

/** Largest reconnect delay (initial or cap) a configuration may ask for: one minute. */
export const reconnectDelayMsCeiling = 60_000;

/** Default time from connect to a checked hello before a connection is given up: 5000 ms. */
export const helloTimeoutMsDefault = 5000;

/** Largest hello timeout a configuration may ask for: one minute. */
export const helloTimeoutMsCeiling = 60_000;

/** Default bytes queued on one socket before a send destroys the connection: 64 MiB. */
export const outgoingBytesMaxDefault = 64 * 1024 * 1024;

/** Largest `outgoingBytesMax` a configuration may ask for: 1 GiB. */
export const outgoingBytesMaxCeiling = 1024 * 1024 * 1024;

/** Inbound connections still waiting for their hello at once; a further one is closed at accept. */
export const pendingConnectionsMax = 16;

/** The two other sites of `self`, ascending: the peers of a site. */
export function peerIdsOf(self: LinkSite): readonly LinkSite[] {
  assert(isLinkSite(self), 'a site is 1, 2 or 3', () => `${String(self)}`);
  return ([1, 2, 3] as const).filter((site) => site !== self);
}

// ---------------------------------------------------------------------------------------------------------
// The network of one site

/** A TCP endpoint. */
export interface PeerAddress {
  readonly host: string;
  readonly port: number;
}

/** The configuration of one site's {@link PeerNetwork}. */
export interface PeerNetworkConfig {
  /** This site. */
  readonly self: LinkSite;
  /** The cluster id every hello must name (at most {@link clusterIdBytesMax} UTF-8 bytes). */
  readonly cluster: string;
  /** Where this site listens; port 0 takes an ephemeral port (see {@link PeerNetwork.listenAddress}). */
  readonly listen: PeerAddress;
  /** The peers' listen addresses. Required for the higher-id peers (dialed); a lower peer's is unused. */
  readonly peers: Readonly<Partial<Record<LinkSite, PeerAddress>>>;
  /** Where every connect, disconnect and refusal is reported, one line each. */
  readonly log: (line: string) => void;
  /** First reconnect delay in ms (default {@link reconnectDelayMsDefault}); it doubles per failed dial. */
  readonly reconnectDelayMs?: number;
  /** Cap of the reconnect delay in ms (default {@link reconnectDelayMsMaxDefault}). */
  readonly reconnectDelayMsMax?: number;
  /** Bytes queued on one socket at most (default {@link outgoingBytesMaxDefault}; at least {@link frameBytesMax}). */
  readonly outgoingBytesMax?: number;
  /** Time in ms from connect to a checked hello (default {@link helloTimeoutMsDefault}). */
  readonly helloTimeoutMs?: number;
}

/** What happened on the link to one peer (bytes count payloads, without prefixes; hellos not counted). */
export interface PeerCounters {
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  /** Connections that completed their hello. */
  connects: number;
  /** Connections that were up and went down. */
  disconnects: number;
  /** Why the last one went down. */
  lastDisconnectReason: string | undefined;
}

/** A snapshot of a network's counters. */
export interface PeerNetworkCounters {
  readonly peers: Readonly<Partial<Record<LinkSite, Readonly<PeerCounters>>>>;
  /** Connections closed for a bad first frame, a wrong hello or a blocked link, in either direction. */
  readonly rejectedConnections: number;
  readonly lastRejectReason: string | undefined;
}

interface Connection {
  readonly socket: net.Socket;
  readonly direction: 'dialed' | 'accepted';
  /** The dialed peer, or (accepted) the peer its hello named once checked. */
  peer: LinkSite | undefined;
  readonly remote: string;
  readonly decoder: FrameDecoder;
  /** The hello is checked both ways: frames flow. */
  up: boolean;
  /** Frames of this tick are being gathered for one write ({@link PeerNetwork.send}). */
  corked: boolean;
  /** This layer is done with it (closed or being destroyed). */
  closed: boolean;
  error: Error | undefined;
  helloTimer: NodeJS.Timeout | undefined;
}

interface PeerState {
  readonly id: LinkSite;
  /** Set when this site dials the peer (the peer's id is higher). */
  readonly address: PeerAddress | undefined;
  connection: Connection | undefined;
  dialing: Connection | undefined;
  timer: NodeJS.Timeout | undefined;
  delayMs: number;
  failedDials: number;
  blocked: boolean;
  readonly counters: PeerCounters;
}

function integer(field: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw new ConfigError(field, value, `must be an integer in [${min}, ${max}]`);
  }
  return value;
}

function address(field: string, value: unknown, portMin: number): PeerAddress {
  if (typeof value !== 'object' || value === null) throw new ConfigError(field, value, 'must be { host, port }');
  const { host, port } = value as Record<string, unknown>;
  if (typeof host !== 'string' || host.length === 0) throw new ConfigError(`${field}.host`, host, 'must be a non-empty string');
  return { host, port: integer(`${field}.port`, port, portMin, 65535) };
}

/** Ends a tick's gathering of frames: they leave in one write. */
function uncork(connection: Connection): void {
  connection.corked = false;
  connection.socket.uncork();
}

function errorReason(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code === undefined ? error.message : `${code}`;
}

/**
 * One site's links to its two peers over TCP: listens, dials the higher-id peers, checks hellos, carries
 * frames, reconnects, and reports peers up and down. See the file header for the protocol and the limits.
 */
export class PeerNetwork {
  readonly #self: LinkSite;
  readonly #cluster: string;
  readonly #listen: PeerAddress;
  readonly #log: (line: string) => void;
  readonly #reconnectDelayMs: number;
  readonly #reconnectDelayMsMax: number;
  readonly #outgoingBytesMax: number;
  readonly #helloTimeoutMs: number;
  readonly #hello: Uint8Array;
  readonly #peers = new Map<LinkSite, PeerState>();
  /** Accepted connections still waiting for their hello. */
  readonly #pending = new Set<Connection>();
  /** Every socket not yet closed, so that {@link close} waits for them. */
  readonly #sockets = new Set<net.Socket>();
  readonly #upListeners = new Set<(peer: LinkSite) => void>();
  readonly #downListeners = new Set<(peer: LinkSite, reason: string) => void>();
  readonly #frameListeners = new Set<(peer: LinkSite, payload: Uint8Array) => void>();
  #server: net.Server | undefined;
  #listening: Promise<void> | undefined;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #rejectedConnections = 0;
  #lastRejectReason: string | undefined;

  /** Validates the configuration (throws {@link ConfigError}); nothing happens until {@link start}. */
  constructor(config: PeerNetworkConfig) {
    if (!isLinkSite(config.self)) throw new ConfigError('self', config.self, 'must be 1, 2 or 3');
    this.#self = config.self;
    this.#hello = encodeHello(config.self, config.cluster);
    this.#cluster = config.cluster;
    this.#listen = address('listen', config.listen, 0);
    if (typeof config.log !== 'function') throw new ConfigError('log', config.log, 'must be a function');
    this.#log = config.log;
    this.#reconnectDelayMs = integer('reconnectDelayMs', config.reconnectDelayMs ?? reconnectDelayMsDefault, 1, reconnectDelayMsCeiling);
    this.#reconnectDelayMsMax = integer(
      'reconnectDelayMsMax',
      config.reconnectDelayMsMax ?? Math.max(reconnectDelayMsMaxDefault, this.#reconnectDelayMs),
      this.#reconnectDelayMs,
      reconnectDelayMsCeiling,
    );
    this.#outgoingBytesMax = integer('outgoingBytesMax', config.outgoingBytesMax ?? outgoingBytesMaxDefault, frameBytesMax, outgoingBytesMaxCeiling);
    this.#helloTimeoutMs = integer('helloTimeoutMs', config.helloTimeoutMs ?? helloTimeoutMsDefault, 1, helloTimeoutMsCeiling);
    if (typeof config.peers !== 'object' || config.peers === null) throw new ConfigError('peers', config.peers, 'must be an object');
    for (const key of Object.keys(config.peers)) {
      if (!peerIdsOf(this.#self).some((peer) => String(peer) === key)) throw new ConfigError(`peers.${key}`, key, `is not a peer of site ${this.#self}`);
    }
    for (const id of peerIdsOf(this.#self)) {
      const dialed = id > this.#self;
      const given = config.peers[id];
      if (dialed && given === undefined) throw new ConfigError(`peers.${id}`, given, `site ${this.#self} dials site ${id}: its address is required`);
      this.#peers.set(id, {
        id,
        address: dialed ? address(`peers.${id}`, given, 1) : undefined,
        connection: undefined,
        dialing: undefined,
        timer: undefined,
        delayMs: this.#reconnectDelayMs,
        failedDials: 0,
        blocked: false,
        counters: { framesSent: 0, bytesSent: 0, framesReceived: 0, bytesReceived: 0, connects: 0, disconnects: 0, lastDisconnectReason: undefined },
      });
    }
  }

  /** This site's id. */
  get self(): LinkSite {
    return this.#self;
  }

  /**
   * Binds the listener and resolves once it listens (rejects with the listen error, e.g. EADDRINUSE);
   * dialing the higher-id peers then proceeds in the background. Called once.
   */
  start(): Promise<void> {
    assert(!this.#started, 'a peer network is started once', 'start() called twice');
    assert(!this.#closed, 'a closed peer network is not started', 'start() after close()');
    this.#started = true;
    const server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    this.#listening = new Promise<void>((resolve, reject) => {
      const onListenError = (error: Error): void => reject(error);
      server.once('error', onListenError);
      server.listen(this.#listen.port, this.#listen.host, () => {
        server.off('error', onListenError);
        if (this.#closed) {
          resolve();
          return;
        }
        server.on('error', (error) => this.#log(`site ${this.#self}: listener error: ${errorReason(error)}`));
        const bound = this.listenAddress();
        this.#log(`site ${this.#self}: listening on ${bound.host}:${bound.port}`);
        for (const state of this.#peers.values()) if (state.address !== undefined) this.#dial(state);
        resolve();
      });
    });
    return this.#listening;
  }

  /** The bound listen address (the actual port when configured with port 0). Only after {@link start}. */
  listenAddress(): PeerAddress {
    const bound = this.#server?.address();
    assert(typeof bound === 'object' && bound !== null, 'listenAddress after start', 'the listener is not bound');
    return { host: bound.address, port: bound.port };
  }

  /** Whether the link to `peer` is up (hello checked both ways): {@link send} would carry a frame. */
  isConnected(peer: LinkSite): boolean {
    return this.#state(peer).connection !== undefined;
  }

  /**
   * Sends one frame to `peer`. Returns false when the peer is not connected (the payload is lost, like a
   * message on a cut link), or when queuing it would exceed `outgoingBytesMax` bytes on the socket: then
   * the connection is destroyed and the peer goes down. Throws {@link FrameError} for an empty payload or
   * one above {@link frameBytesMax} (the caller's bug: messages are at most `messageBytesMax`).
   *
   * The payload is queued without a copy, so the caller must not change it afterwards (a site sends each
   * freshly encoded message once). Frames sent in one tick leave together: the socket is corked at the
   * first and uncorked once the tick's callbacks and promise reactions have run, one writev for all of
   * them instead of a syscall each (the acknowledgements of every sync write one chunk carried, say).
   */
  /** Bytes sent to `peer` and still waiting in this side's socket (0 when not connected): what a sender's back-pressure reads. */
  queuedBytes(peer: LinkSite): number {
    const connection = this.#peers.get(peer)?.connection;
    return connection === null || connection === undefined ? 0 : connection.socket.writableLength;
  }

  send(peer: LinkSite, payload: Uint8Array): boolean {
    const state = this.#state(peer);
    checkFramePayload(payload);
    const connection = state.connection;
    if (connection === undefined) return false;
    const frameBytes = frameHeaderBytes + payload.length;
    const queuedBytes = connection.socket.writableLength;
    if (queuedBytes + frameBytes > this.#outgoingBytesMax) {
      this.#drop(connection, `outgoing queue ${queuedBytes} + ${frameBytes} bytes would exceed outgoingBytesMax ${this.#outgoingBytesMax}`);
      return false;
    }
    if (!connection.corked) {
      connection.corked = true;
      connection.socket.cork();
      process.nextTick(uncork, connection);
    }
    connection.socket.write(encodeFrameHeader(payload.length));
    connection.socket.write(payload);
    state.counters.framesSent += 1;
    state.counters.bytesSent += payload.length;
    return true;
  }

  /**
   * Closes the link to `peer` now, logging `reason` (a site calls this when a peer sent a malformed
   * message). `onPeerDown` fires if it was up; the dialer side reconnects as usual.
   */
  disconnect(peer: LinkSite, reason: string): void {
    const state = this.#state(peer);
    if (state.connection !== undefined) this.#drop(state.connection, `disconnected: ${reason}`);
    if (state.dialing !== undefined) this.#drop(state.dialing, `disconnected: ${reason}`);
  }

  /**
   * Cuts the link to `peer` (tests, the operator's link-cut command): closes the connection, dials no
   * more, and refuses the peer's inbound connections right after their hello, until {@link unblock}.
   */
  block(peer: LinkSite): void {
    const state = this.#state(peer);
    if (state.blocked) return;
    state.blocked = true;
    this.#log(`site ${this.#self}: link ${linkName(this.#self, peer)} blocked`);
    this.#clearTimer(state);
    if (state.connection !== undefined) this.#drop(state.connection, 'link blocked');
    if (state.dialing !== undefined) this.#drop(state.dialing, 'link blocked');
  }

  /** Restores a link cut by {@link block}: the dialer side dials at once (with a fresh backoff). */
  unblock(peer: LinkSite): void {
    const state = this.#state(peer);
    if (!state.blocked) return;
    state.blocked = false;
    this.#log(`site ${this.#self}: link ${linkName(this.#self, peer)} unblocked`);
    state.delayMs = this.#reconnectDelayMs;
    this.#clearTimer(state);
    if (state.address !== undefined) this.#dial(state);
  }

  /** Whether the link to `peer` is blocked. */
  isBlocked(peer: LinkSite): boolean {
    return this.#state(peer).blocked;
  }

  /** Calls `listener(peer)` when a link comes up; returns the unsubscribe function. */
  onPeerUp(listener: (peer: LinkSite) => void): () => void {
    this.#upListeners.add(listener);
    return () => this.#upListeners.delete(listener);
  }

  /** Calls `listener(peer, reason)` when a link that was up goes down; returns the unsubscribe function. */
  onPeerDown(listener: (peer: LinkSite, reason: string) => void): () => void {
    this.#downListeners.add(listener);
    return () => this.#downListeners.delete(listener);
  }

  /**
   * Calls `listener(peer, payload)` for every frame, in order per peer, synchronously from the socket's
   * data handler; `payload` is the listener's to keep. Returns the unsubscribe function.
   */
  onFrame(listener: (peer: LinkSite, payload: Uint8Array) => void): () => void {
    this.#frameListeners.add(listener);
    return () => this.#frameListeners.delete(listener);
  }

  /** A snapshot of the counters: per peer, and the refused connections. */
  counters(): PeerNetworkCounters {
    const peers: Partial<Record<LinkSite, PeerCounters>> = {};
    for (const [id, state] of this.#peers) peers[id] = { ...state.counters };
    return { peers, rejectedConnections: this.#rejectedConnections, lastRejectReason: this.#lastRejectReason };
  }

  /**
   * Stops dialing, closes every connection (`onPeerDown` fires for those that were up) and the listener,
   * and resolves once every socket and the listener are closed: no handle is left open.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    for (const state of this.#peers.values()) {
      this.#clearTimer(state);
      if (state.connection !== undefined) this.#drop(state.connection, 'network closed');
      if (state.dialing !== undefined) this.#drop(state.dialing, 'network closed');
    }
    for (const connection of [...this.#pending]) this.#drop(connection, 'network closed');
    const waits: Promise<void>[] = [...this.#sockets].map((socket) => new Promise<void>((resolve) => socket.once('close', () => resolve())));
    const server = this.#server;
    if (server !== undefined) {
      const closeServer = (): Promise<void> =>
        server.listening ? new Promise<void>((resolve) => server.close(() => resolve())) : Promise.resolve();
      // A close() during start() waits for the bind to finish (or fail) before closing the listener.
      waits.push((this.#listening ?? Promise.resolve()).then(closeServer, closeServer));
    }
    this.#closing = Promise.all(waits).then(() => this.#log(`site ${this.#self}: network closed`));
    return this.#closing;
  }

  // -------------------------------------------------------------------------------------------------------

  #state(peer: LinkSite): PeerState {
    const state = this.#peers.get(peer);
    assert(state !== undefined, 'a peer is one of the two other sites', () => `site ${this.#self} has no peer ${String(peer)}`);
    return state;
  }

  #clearTimer(state: PeerState): void {
    if (state.timer !== undefined) clearTimeout(state.timer);
    state.timer = undefined;
  }

  #track(socket: net.Socket, direction: Connection['direction'], peer: LinkSite | undefined, remote: string): Connection {
    const connection: Connection = {
      socket,
      direction,
      peer,
      remote,
      decoder: new FrameDecoder(helloBytesMax),
      up: false,
      corked: false,
      closed: false,
      error: undefined,
      helloTimer: undefined,
    };
    this.#sockets.add(socket);
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#receive(connection, chunk));
    socket.on('error', (error) => {
      connection.error ??= error;
    });
    socket.on('close', () => {
      this.#sockets.delete(socket);
      if (connection.closed) return;
      connection.closed = true;
      this.#finish(connection, connection.error === undefined ? 'closed by peer' : errorReason(connection.error));
    });
    connection.helloTimer = setTimeout(() => {
      connection.helloTimer = undefined;
      this.#reject(connection, `no hello within ${this.#helloTimeoutMs} ms`);
    }, this.#helloTimeoutMs);
    return connection;
  }

  #dial(state: PeerState): void {
    const target = state.address;
    assert(target !== undefined, 'only the lower-id site dials', () => `site ${this.#self} dialing site ${state.id}`);
    if (this.#closed || state.blocked || state.connection !== undefined || state.dialing !== undefined) return;
    const socket = net.connect({ host: target.host, port: target.port });
    const connection = this.#track(socket, 'dialed', state.id, `${target.host}:${target.port}`);
    state.dialing = connection;
    socket.write(encodeFrame(this.#hello));
  }

  #scheduleDial(state: PeerState): void {
    if (this.#closed || state.blocked || state.address === undefined) return;
    if (state.timer !== undefined || state.connection !== undefined || state.dialing !== undefined) return;
    const delayMs = state.delayMs;
    state.delayMs = Math.min(delayMs * 2, this.#reconnectDelayMsMax);
    state.timer = setTimeout(() => {
      state.timer = undefined;
      this.#dial(state);
    }, delayMs);
  }

  #accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const connection = this.#track(socket, 'accepted', undefined, remote);
    if (this.#pending.size >= pendingConnectionsMax) {
      this.#reject(connection, `${pendingConnectionsMax} connections already wait for their hello (pendingConnectionsMax)`);
      return;
    }
    this.#pending.add(connection);
  }

  #receive(connection: Connection, chunk: Uint8Array): void {
    if (connection.closed) return;
    connection.decoder.push(chunk);
    while (!connection.closed) {
      let frame: Uint8Array | undefined;
      try {
        frame = connection.decoder.next();
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        if (connection.up) this.#drop(connection, `bad frame: ${error.message}`);
        else this.#reject(connection, `bad first frame: ${error.message}`);
        return;
      }
      if (frame === undefined) return;
      if (connection.up) this.#deliver(connection, frame);
      else this.#helloReceived(connection, frame);
    }
  }

  #deliver(connection: Connection, frame: Uint8Array): void {
    const peer = connection.peer as LinkSite;
    const counters = this.#state(peer).counters;
    counters.framesReceived += 1;
    counters.bytesReceived += frame.length;
    for (const listener of [...this.#frameListeners]) {
      if (connection.closed) return;
      listener(peer, frame);
    }
  }

  #helloReceived(connection: Connection, frame: Uint8Array): void {
    const expected: HelloExpectation = {
      self: this.#self,
      cluster: this.#cluster,
      from: connection.direction === 'dialed' ? [connection.peer as LinkSite] : peerIdsOf(this.#self).filter((peer) => peer < this.#self),
    };
    let hello: Hello;
    try {
      hello = decodeHello(frame);
      checkHello(hello, expected);
    } catch (error) {
      if (!(error instanceof HelloError)) throw error;
      this.#reject(connection, error.message);
      return;
    }
    const state = this.#state(hello.site);
    if (state.blocked) {
      this.#reject(connection, `hello from site ${hello.site}: link ${linkName(this.#self, hello.site)} is blocked`);
      return;
    }
    if (connection.direction === 'accepted') {
      this.#pending.delete(connection);
      connection.peer = hello.site;
      if (state.connection !== undefined) this.#drop(state.connection, `replaced by a new connection from ${connection.remote}`);
      connection.socket.write(encodeFrame(this.#hello));
    } else {
      assert(state.dialing === connection, 'a dialed connection is the one being dialed', () => `site ${hello.site}`);
      state.dialing = undefined;
    }
    if (connection.helloTimer !== undefined) clearTimeout(connection.helloTimer);
    connection.helloTimer = undefined;
    connection.decoder.limitBytes = frameBytesMax;
    connection.up = true;
    state.connection = connection;
    state.delayMs = this.#reconnectDelayMs;
    state.counters.connects += 1;
    const after = state.failedDials > 0 ? ` after ${state.failedDials} failed dials` : '';
    state.failedDials = 0;
    this.#log(`site ${this.#self}: link ${linkName(this.#self, hello.site)} up (${connection.direction} ${connection.remote})${after}`);
    for (const listener of [...this.#upListeners]) listener(hello.site);
  }

  /** Closes a connection that failed its hello, counting and logging the reason. */
  #reject(connection: Connection, reason: string): void {
    if (connection.closed) return;
    this.#rejectedConnections += 1;
    this.#lastRejectReason = reason;
    const from = connection.direction === 'dialed' ? `to site ${connection.peer} at` : 'from';
    this.#log(`site ${this.#self}: connection ${from} ${connection.remote} refused: ${reason}`);
    this.#drop(connection, reason);
  }

  /** Closes a connection now, with `reason`; the state changes at once, not when the socket has closed. */
  #drop(connection: Connection, reason: string): void {
    if (connection.closed) return;
    connection.closed = true;
    connection.socket.destroy();
    this.#finish(connection, reason);
  }

  /** The bookkeeping of a connection's end: peer down, dial failure, redial. */
  #finish(connection: Connection, reason: string): void {
    if (connection.helloTimer !== undefined) clearTimeout(connection.helloTimer);
    connection.helloTimer = undefined;
    this.#pending.delete(connection);
    const peer = connection.peer;
    if (peer === undefined) return;
    const state = this.#state(peer);
    if (state.connection === connection) {
      state.connection = undefined;
      state.counters.disconnects += 1;
      state.counters.lastDisconnectReason = reason;
      this.#log(`site ${this.#self}: link ${linkName(this.#self, peer)} down: ${reason}`);
      for (const listener of [...this.#downListeners]) listener(peer, reason);
    }
    if (state.dialing === connection) {
      state.dialing = undefined;
      state.failedDials += 1;
      if (state.failedDials === 1 && !this.#closed && !state.blocked) {
        this.#log(`site ${this.#self}: dial to site ${peer} at ${connection.remote} failed: ${reason} (retrying with backoff)`);
      }
    }
    if (connection.direction === 'dialed') this.#scheduleDial(state);
  }
}
