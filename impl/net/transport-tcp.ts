/**
 * The peer links between site processes: one TLS 1.3 connection per pair of sites, mutually authenticated
 * with the cluster's certificates, carrying opaque payload bytes. It knows nothing of message kinds: a site
 * encodes with `encodeMessage`, sends the bytes, and the far site decodes them with `decodeMessage` and calls
 * {@link PeerNetwork.disconnect} when they are malformed (a peer that sends garbage is disconnected with a
 * logged reason and nothing changes).
 *
 * Authentication. Every link is TLS 1.3 with a certificate of the cluster's own authority at both ends
 * (`tls-identity.ts`; the site's credentials come in {@link PeerNetworkConfig.credentials} as PEM text: this
 * room reads no file). The certificate, not the hello, says who the peer is: the dialer accepts only the
 * certificate of the site it dialed; the acceptor takes a connection only from a certificate naming a site
 * of this cluster that dials it (a lower id), and the hello that follows must name that same site and this
 * cluster ({@link HelloExpectation.certified}), else the connection is refused and the reason logged. A
 * connection that has not authenticated never touches a peer's link: it is not a peer until then.
 *
 * Frames and hello (`peer-frames.ts`): every frame is a length-prefixed payload; the first frame in each
 * direction of every connection is a hello naming the protocol, the sender's site and its cluster. The
 * dialer sends its hello once its TLS handshake is done; the acceptor checks the certificate and the hello
 * and only then answers with its own, so a refused dialer never sees its peer up. After the hello each end
 * sends a keepalive (a zero-length frame) every `keepaliveIntervalMs`, so that a quiet link still shows it
 * is alive.
 *
 * Who dials whom. Exactly one connection per pair: the site with the lower id dials the higher one (sites
 * 1→2, 1→3, 2→3); every site listens, and the higher one accepts. Only the dialer reconnects: after a
 * failed dial or a lost connection it dials again after a delay that starts at `reconnectDelayMs` and
 * doubles up to `reconnectDelayMsMax`; a connection that completes its hello resets the delay.
 *
 * A second connection never replaces a healthy one. When an acceptor gets an authenticated hello from a
 * peer it already has a link with, the old link stays if it is healthy (something, a frame or a keepalive,
 * arrived on it within `silenceMsMax`): the new connection is refused. Only when the old link has been
 * silent longer than that (the dialer saw it die and the acceptor did not: a lost FIN, a crashed host) does
 * the new one replace it; the dialer's retries bring the link back within `silenceMsMax` plus its backoff.
 * An unauthenticated connection, or one with another site's certificate, is refused before this question
 * is asked.
 *
 * Before authentication (inbound connections, which cost us before we know who they are): a connection
 * that sends no byte within `idleTimeoutMs` ({@link idleTimeoutMsDefault}) is closed; one that has not
 * finished its TLS handshake with a certificate of this cluster within `handshakeTimeoutMs`
 * ({@link handshakeTimeoutMsDefault}) is closed; at most {@link pendingConnectionsMax} such connections are
 * kept, and one more evicts one of them ({@link evictionVictim}: a silent one before one in its handshake,
 * from the address holding the most, the oldest first), so that a flood of idle or slow connections never
 * locks the real peers out: the newest connection always gets its chance to authenticate.
 *
 * Limits: {@link frameBytesMax} per frame, {@link helloBytesMax} per hello, {@link clusterIdBytesMax} per
 * cluster id, `helloTimeoutMs` ({@link helloTimeoutMsDefault}) from connect to a checked hello (both
 * directions), the pre-authentication limits above, and `outgoingBytesMax` ({@link outgoingBytesMaxDefault})
 * bytes queued on one socket: a send that would queue more destroys the connection (the peer goes down)
 * instead of buffering without bound.
 *
 * Failure behaviour. A peer that is down, refuses connections (ECONNREFUSED), resets them, stalls, fails
 * its handshake or sends garbage never throws out of this layer: the connection is closed, `onPeerDown`
 * fires if it was up, and the dialer retries. {@link PeerNetwork.send} to a peer that is not connected
 * returns false: the payload is lost, exactly like a message on a cut link, and the caller decides what
 * that means. {@link PeerNetwork.block} simulates a cut link (tests, the operator's link-cut command).
 * Frames from one peer are delivered in order, one at a time, synchronously from the socket's data
 * handler; an exception thrown by a listener is the site's bug and propagates (fail fast), it is not
 * swallowed here.
 *
 * This file is an edge adapter: the frame decoder, the hello checks and the eviction rule are pure;
 * {@link PeerNetwork} owns the sockets and the timers (the only wall-clock time in `impl/`).
 */

import * as net from 'node:net';
import * as tls from 'node:tls';
import { ConfigError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
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
  keepaliveFrame,
  type Hello,
  type HelloExpectation,
} from './peer-frames.ts';
import { authenticatedPrincipal, AuthenticationError, principalName, tlsClientOptions, tlsServerOptions, type Principal, type TlsCredentials } from './tls-identity.ts';

// ---------------------------------------------------------------------------------------------------------
// Limits

/** Default first reconnect delay of a dialer: 50 ms. */
export const reconnectDelayMsDefault = 50;

/** Default cap of the dialer's exponential backoff: 1000 ms. */
export const reconnectDelayMsMaxDefault = 1000;

/** Largest reconnect delay (initial or cap) a configuration may ask for: one minute. */
export const reconnectDelayMsCeiling = 60_000;

/** Default time from connect to a checked hello (TLS handshake included) before a connection is given up: 5000 ms. */
export const helloTimeoutMsDefault = 5000;

/** Largest hello timeout a configuration may ask for: one minute. */
export const helloTimeoutMsCeiling = 60_000;

/**
 * Default time from connect to a finished TLS handshake whose certificate is of this cluster: 3000 ms (a
 * handshake is two round trips; a slow one is a peer's problem or an attacker's trickle).
 */
export const handshakeTimeoutMsDefault = 3000;

/** Largest handshake timeout a configuration may ask for: one minute. */
export const handshakeTimeoutMsCeiling = 60_000;

/**
 * Default time an inbound connection may stay silent before its first byte: 2000 ms (a real dialer speaks
 * at once: its TLS ClientHello follows the TCP handshake).
 */
export const idleTimeoutMsDefault = 2000;

/** Largest idle timeout a configuration may ask for: one minute. */
export const idleTimeoutMsCeiling = 60_000;

/** Default interval between two keepalives on an up link: 1000 ms. */
export const keepaliveIntervalMsDefault = 1000;

/** Largest keepalive interval a configuration may ask for: one minute. */
export const keepaliveIntervalMsCeiling = 60_000;

/**
 * Default silence after which an up link is no longer healthy and a new authenticated connection from the
 * same peer may replace it: 5000 ms, five keepalive intervals (a site busy for a few seconds is not dead).
 */
export const silenceMsMaxDefault = 5000;

/** Largest `silenceMsMax` a configuration may ask for: ten minutes. */
export const silenceMsMaxCeiling = 600_000;

/** Default bytes queued on one socket before a send destroys the connection: 64 MiB. */
export const outgoingBytesMaxDefault = 64 * 1024 * 1024;

/** Largest `outgoingBytesMax` a configuration may ask for: 1 GiB. */
export const outgoingBytesMaxCeiling = 1024 * 1024 * 1024;

/**
 * Inbound connections not yet authenticated (before their first byte, or in their TLS handshake) kept at
 * once; one more evicts one of them ({@link evictionVictim}). Each costs a socket and, in its handshake, an
 * OpenSSL session (tens of KiB): 64 of them are a few MiB at most.
 */
export const pendingConnectionsMax = 64;

/** The two other sites of `self`, ascending: the peers of a site. */
export function peerIdsOf(self: LinkSite): readonly LinkSite[] {
  assert(isLinkSite(self), 'a site is 1, 2 or 3', () => `${String(self)}`);
  return ([1, 2, 3] as const).filter((site) => site !== self);
}

// ---------------------------------------------------------------------------------------------------------
// The eviction rule

/** What the eviction rule knows of a connection waiting to authenticate. */
export interface PendingConnection {
  /** The address it came from. */
  readonly remoteAddress: string;
  /** Its place in the order of arrival: a lower number came earlier. */
  readonly sequence: number;
  /** Whether it has sent nothing yet (no TLS handshake begun). */
  readonly silent: boolean;
}

/**
 * The connection a new one evicts when {@link pendingConnectionsMax} wait to authenticate: a silent one if any
 * is silent (a real dialer's ClientHello follows its connect at once, so an idle flood never evicts a real
 * peer in its handshake); among those, one from the address that holds the most waiting connections (a flood
 * from one address evicts itself before a peer from another address); among those, the oldest. The newest
 * connection is never the victim: whoever connects last gets its chance to authenticate, so a real peer's
 * fresh dial always gets in unless the pool churns faster than one handshake (a volumetric flood, filtered
 * at the network's edge, out of this layer's reach). Pure; undefined for an empty list.
 */
export function evictionVictim<T extends PendingConnection>(pending: readonly T[]): T | undefined {
  const held = new Map<string, number>();
  for (const connection of pending) held.set(connection.remoteAddress, (held.get(connection.remoteAddress) ?? 0) + 1);
  const silent = pending.filter((connection) => connection.silent);
  const candidates = silent.length > 0 ? silent : pending;
  let victim: T | undefined;
  for (const connection of candidates) {
    if (victim === undefined) {
      victim = connection;
      continue;
    }
    const more = (held.get(connection.remoteAddress) ?? 0) - (held.get(victim.remoteAddress) ?? 0);
    if (more > 0 || (more === 0 && connection.sequence < victim.sequence)) victim = connection;
  }
  return victim;
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
  /** The cluster id every hello must name (at most {@link clusterIdBytesMax} UTF-8 bytes); the credentials' cluster. */
  readonly cluster: string;
  /**
   * This site's TLS credentials as PEM text (`siteCredentials(config, site)` in the site room): the cluster's
   * authority, this site's certificate (naming `site-N` of `cluster`) and its key. Server and client of every link.
   */
  readonly credentials: TlsCredentials;
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
  /** Time in ms from connect to a finished, authenticated TLS handshake (default {@link handshakeTimeoutMsDefault}). */
  readonly handshakeTimeoutMs?: number;
  /** Time in ms an inbound connection may stay silent before its first byte (default {@link idleTimeoutMsDefault}). */
  readonly idleTimeoutMs?: number;
  /** Interval in ms between keepalives on an up link (default {@link keepaliveIntervalMsDefault}). */
  readonly keepaliveIntervalMs?: number;
  /**
   * Silence in ms after which an up link is not healthy and may be replaced by a new authenticated
   * connection from its peer (default {@link silenceMsMaxDefault}; at least twice `keepaliveIntervalMs`).
   */
  readonly silenceMsMax?: number;
}

/** What happened on the link to one peer (bytes count payloads, without prefixes; hellos and keepalives not counted). */
export interface PeerCounters {
  framesSent: number;
  bytesSent: number;
  framesReceived: number;
  bytesReceived: number;
  keepalivesReceived: number;
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
  /**
   * Connections closed before they were up, in either direction: a failed or unauthenticated TLS handshake,
   * a bad first frame, a wrong hello, a blocked link, a healthy link already there, a timeout, an eviction.
   */
  readonly rejectedConnections: number;
  readonly lastRejectReason: string | undefined;
  /** Inbound connections waiting to authenticate now (at most {@link pendingConnectionsMax}). */
  readonly pendingConnections: number;
  /** Of those, the ones that have not sent their first byte yet. */
  readonly silentConnections: number;
  /** Inbound connections evicted from the pending pool by a newer one. */
  readonly evictedConnections: number;
}

/** Where a connection is: before its first byte, in its TLS handshake, waiting for the hello, up. */
type Stage = 'silent' | 'handshake' | 'hello' | 'up';

interface Connection {
  /** The socket whose 'close' ends the connection: the accepted TCP socket, or the dialed TLS socket. */
  readonly socket: net.Socket;
  /** The TLS socket frames travel on: the dialed socket itself, or (accepted) the one made after the first byte. */
  tls: tls.TLSSocket | undefined;
  readonly direction: 'dialed' | 'accepted';
  /** The dialed peer, or (accepted) the site its certificate names once the handshake is done. */
  peer: LinkSite | undefined;
  readonly remote: string;
  readonly remoteAddress: string;
  /** Local and remote endpoints: finds an accepted connection again from its TLS socket. */
  readonly key: string;
  readonly sequence: number;
  stage: Stage;
  readonly decoder: FrameDecoder;
  /** When the last bytes arrived (performance.now(), ms), once up: the link's health. */
  lastReceivedMs: number;
  /** Frames of this tick are being gathered for one write ({@link PeerNetwork.send}). */
  corked: boolean;
  /** This layer is done with it (closed or being destroyed). */
  closed: boolean;
  error: Error | undefined;
  /** Every deadline still running (hello, handshake, idle), cleared when the connection ends. */
  readonly timers: Set<NodeJS.Timeout>;
  /** The handshake deadline, cleared once the TLS handshake is done. */
  handshakeTimer: NodeJS.Timeout | undefined;
}

/** A pending connection as the eviction rule sees it. */
interface PendingView extends PendingConnection {
  readonly connection: Connection;
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

function credentialsOf(value: unknown, cluster: string): TlsCredentials {
  if (typeof value !== 'object' || value === null) throw new ConfigError('credentials', value, 'must be { cluster, ca, cert, key } (PEM text)');
  const credentials = value as Record<string, unknown>;
  for (const field of ['ca', 'cert', 'key'] as const) {
    const pem = credentials[field];
    if (typeof pem !== 'string' || !pem.includes('-----BEGIN ')) throw new ConfigError(`credentials.${field}`, typeof pem, 'must be PEM text');
  }
  if (credentials.cluster !== cluster) throw new ConfigError('credentials.cluster', credentials.cluster, `must be the network's cluster ${JSON.stringify(cluster)}`);
  return value as TlsCredentials;
}

/** Ends a tick's gathering of frames: they leave in one write. */
function uncork(connection: Connection): void {
  connection.corked = false;
  connection.tls?.uncork();
}

function errorReason(error: Error): string {
  const code = (error as NodeJS.ErrnoException).code;
  return code === undefined ? error.message : `${code}`;
}

/** The endpoints of a socket, the same for an accepted TCP socket and the TLS socket made over it. */
function endpointsOf(socket: net.Socket): string {
  return `${socket.localAddress ?? '?'}:${socket.localPort ?? '?'}|${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
}

/** The site a principal names, when it is a site. */
function siteOf(principal: Principal): LinkSite | undefined {
  return principal.kind === 'site' ? principal.site : undefined;
}

/**
 * One site's links to its two peers over TLS: listens, dials the higher-id peers, authenticates both ends,
 * checks hellos, carries frames, sends keepalives, reconnects, and reports peers up and down. See the file
 * header for the protocol, the replacement rule and the limits.
 */
export class PeerNetwork {
  readonly #self: LinkSite;
  readonly #cluster: string;
  readonly #credentials: TlsCredentials;
  readonly #listen: PeerAddress;
  readonly #log: (line: string) => void;
  readonly #reconnectDelayMs: number;
  readonly #reconnectDelayMsMax: number;
  readonly #outgoingBytesMax: number;
  readonly #helloTimeoutMs: number;
  readonly #handshakeTimeoutMs: number;
  readonly #idleTimeoutMs: number;
  readonly #keepaliveIntervalMs: number;
  readonly #silenceMsMax: number;
  readonly #hello: Uint8Array;
  readonly #peers = new Map<LinkSite, PeerState>();
  /** Inbound connections not yet authenticated (silent or in their TLS handshake), by {@link endpointsOf}. */
  readonly #pending = new Map<string, Connection>();
  /** Every socket not yet closed, so that {@link close} waits for them. */
  readonly #sockets = new Set<net.Socket>();
  readonly #upListeners = new Set<(peer: LinkSite) => void>();
  readonly #downListeners = new Set<(peer: LinkSite, reason: string) => void>();
  readonly #frameListeners = new Set<(peer: LinkSite, payload: Uint8Array) => void>();
  #server: net.Server | undefined;
  /** Does the server side of TLS for accepted sockets (it never listens itself: {@link #accept} hands it sockets). */
  #tlsServer: tls.Server | undefined;
  #keepaliveTimer: NodeJS.Timeout | undefined;
  #listening: Promise<void> | undefined;
  #started = false;
  #closed = false;
  #closing: Promise<void> | undefined;
  #sequence = 0;
  #rejectedConnections = 0;
  #evictedConnections = 0;
  #lastRejectReason: string | undefined;

  /** Validates the configuration (throws {@link ConfigError}); nothing happens until {@link start}. */
  constructor(config: PeerNetworkConfig) {
    if (!isLinkSite(config.self)) throw new ConfigError('self', config.self, 'must be 1, 2 or 3');
    this.#self = config.self;
    this.#hello = encodeHello(config.self, config.cluster);
    this.#cluster = config.cluster;
    this.#credentials = credentialsOf(config.credentials, config.cluster);
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
    this.#handshakeTimeoutMs = integer('handshakeTimeoutMs', config.handshakeTimeoutMs ?? handshakeTimeoutMsDefault, 1, handshakeTimeoutMsCeiling);
    this.#idleTimeoutMs = integer('idleTimeoutMs', config.idleTimeoutMs ?? idleTimeoutMsDefault, 1, idleTimeoutMsCeiling);
    this.#keepaliveIntervalMs = integer('keepaliveIntervalMs', config.keepaliveIntervalMs ?? keepaliveIntervalMsDefault, 1, keepaliveIntervalMsCeiling);
    this.#silenceMsMax = integer(
      'silenceMsMax',
      config.silenceMsMax ?? Math.max(silenceMsMaxDefault, 2 * this.#keepaliveIntervalMs),
      2 * this.#keepaliveIntervalMs,
      silenceMsMaxCeiling,
    );
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
        counters: {
          framesSent: 0,
          bytesSent: 0,
          framesReceived: 0,
          bytesReceived: 0,
          keepalivesReceived: 0,
          connects: 0,
          disconnects: 0,
          lastDisconnectReason: undefined,
        },
      });
    }
  }

  /** This site's id. */
  get self(): LinkSite {
    return this.#self;
  }

  /**
   * Binds the listener and resolves once it listens (rejects with the listen error, e.g. EADDRINUSE);
   * dialing the higher-id peers then proceeds in the background. Called once. Throws (synchronously) when
   * the credentials are not a usable certificate and key (OpenSSL's error).
   */
  start(): Promise<void> {
    assert(!this.#started, 'a peer network is started once', 'start() called twice');
    assert(!this.#closed, 'a closed peer network is not started', 'start() after close()');
    this.#started = true;
    const tlsServer = tls.createServer(tlsServerOptions(this.#credentials));
    tlsServer.on('secureConnection', (socket: tls.TLSSocket) => this.#handshakeDone(socket));
    tlsServer.on('tlsClientError', (error: Error, socket: tls.TLSSocket) => {
      const connection = this.#pending.get(endpointsOf(socket));
      if (connection !== undefined) this.#reject(connection, `TLS handshake failed: ${errorReason(error)}`);
    });
    this.#tlsServer = tlsServer;
    const server = net.createServer({ noDelay: true }, (socket) => this.#accept(socket));
    this.#server = server;
    this.#keepaliveTimer = setInterval(() => this.#sendKeepalives(), this.#keepaliveIntervalMs);
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
        this.#log(`site ${this.#self}: listening on ${bound.host}:${bound.port} (TLS 1.3, certificates of cluster ${JSON.stringify(this.#cluster)})`);
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

  /** Whether the link to `peer` is up (authenticated, hello checked both ways): {@link send} would carry a frame. */
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
   * first and uncorked once the tick's callbacks and promise reactions have run, one TLS write for all of
   * them instead of one each (the acknowledgements of every sync write one chunk carried, say).
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
    const socket = connection.tls;
    assert(socket !== undefined, 'an up link has its TLS socket', () => `site ${peer}`);
    const frameBytes = frameHeaderBytes + payload.length;
    const queuedBytes = socket.writableLength;
    if (queuedBytes + frameBytes > this.#outgoingBytesMax) {
      this.#drop(connection, `outgoing queue ${queuedBytes} + ${frameBytes} bytes would exceed outgoingBytesMax ${this.#outgoingBytesMax}`);
      return false;
    }
    if (!connection.corked) {
      connection.corked = true;
      socket.cork();
      process.nextTick(uncork, connection);
    }
    socket.write(encodeFrameHeader(payload.length));
    socket.write(payload);
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
   * data handler; `payload` is the listener's to keep. Keepalives are not frames to a listener. Returns the
   * unsubscribe function.
   */
  onFrame(listener: (peer: LinkSite, payload: Uint8Array) => void): () => void {
    this.#frameListeners.add(listener);
    return () => this.#frameListeners.delete(listener);
  }

  /** A snapshot of the counters: per peer, the refused and evicted connections, the pending ones now. */
  counters(): PeerNetworkCounters {
    const peers: Partial<Record<LinkSite, PeerCounters>> = {};
    for (const [id, state] of this.#peers) peers[id] = { ...state.counters };
    return {
      peers,
      rejectedConnections: this.#rejectedConnections,
      lastRejectReason: this.#lastRejectReason,
      pendingConnections: this.#pending.size,
      silentConnections: [...this.#pending.values()].filter((connection) => connection.stage === 'silent').length,
      evictedConnections: this.#evictedConnections,
    };
  }

  /**
   * Stops dialing, closes every connection (`onPeerDown` fires for those that were up) and the listener,
   * and resolves once every socket and the listener are closed: no handle is left open.
   */
  close(): Promise<void> {
    if (this.#closing !== undefined) return this.#closing;
    this.#closed = true;
    if (this.#keepaliveTimer !== undefined) clearInterval(this.#keepaliveTimer);
    this.#keepaliveTimer = undefined;
    for (const state of this.#peers.values()) {
      this.#clearTimer(state);
      if (state.connection !== undefined) this.#drop(state.connection, 'network closed');
      if (state.dialing !== undefined) this.#drop(state.dialing, 'network closed');
    }
    for (const connection of [...this.#pending.values()]) this.#drop(connection, 'network closed');
    // Accepted connections past their handshake and before their hello are neither pending nor a peer's.
    for (const socket of [...this.#sockets]) socket.destroy();
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

  /** Runs `action` on `connection` after `ms` unless the connection ends first. */
  #deadline(connection: Connection, ms: number, action: () => void): NodeJS.Timeout {
    const timer = setTimeout(() => {
      connection.timers.delete(timer);
      action();
    }, ms);
    connection.timers.add(timer);
    return timer;
  }

  #clearDeadline(connection: Connection, timer: NodeJS.Timeout | undefined): void {
    if (timer === undefined) return;
    clearTimeout(timer);
    connection.timers.delete(timer);
  }

  /** A new connection's record; its socket's end is this layer's to report. */
  #track(socket: net.Socket, secure: tls.TLSSocket | undefined, direction: Connection['direction'], peer: LinkSite | undefined, remote: string): Connection {
    this.#sequence += 1;
    const connection: Connection = {
      socket,
      tls: secure,
      direction,
      peer,
      remote,
      remoteAddress: socket.remoteAddress ?? remote,
      key: direction === 'accepted' ? endpointsOf(socket) : '',
      sequence: this.#sequence,
      stage: direction === 'accepted' ? 'silent' : 'handshake',
      decoder: new FrameDecoder(helloBytesMax),
      lastReceivedMs: 0,
      corked: false,
      closed: false,
      error: undefined,
      timers: new Set(),
      handshakeTimer: undefined,
    };
    this.#sockets.add(socket);
    socket.on('error', (error) => {
      connection.error ??= error;
    });
    socket.on('close', () => {
      this.#sockets.delete(socket);
      if (connection.closed) return;
      connection.closed = true;
      const reason = connection.error === undefined ? 'closed by peer' : errorReason(connection.error);
      if (connection.direction === 'accepted' && connection.stage === 'handshake') {
        // The TLS server drops a client whose certificate does not chain to our authority without telling us.
        this.#countRejection(connection, `TLS handshake not completed (${reason}): no certificate of cluster ${JSON.stringify(this.#cluster)}, or the peer gave up`);
      }
      this.#finish(connection, reason);
    });
    this.#deadline(connection, this.#helloTimeoutMs, () => this.#reject(connection, `no hello within ${this.#helloTimeoutMs} ms (helloTimeoutMs)`));
    return connection;
  }

  #dial(state: PeerState): void {
    const target = state.address;
    assert(target !== undefined, 'only the lower-id site dials', () => `site ${this.#self} dialing site ${state.id}`);
    if (this.#closed || state.blocked || state.connection !== undefined || state.dialing !== undefined) return;
    const expected: Principal = { kind: 'site', site: state.id };
    const socket = tls.connect({ host: target.host, port: target.port, ...tlsClientOptions(this.#credentials, expected) });
    socket.setNoDelay(true);
    const connection = this.#track(socket, socket, 'dialed', state.id, `${target.host}:${target.port}`);
    state.dialing = connection;
    connection.handshakeTimer = this.#deadline(connection, this.#handshakeTimeoutMs, () =>
      this.#reject(connection, `no TLS handshake within ${this.#handshakeTimeoutMs} ms (handshakeTimeoutMs)`),
    );
    socket.on('data', (chunk: Buffer) => this.#receive(connection, chunk));
    socket.once('secureConnect', () => {
      this.#clearDeadline(connection, connection.handshakeTimer);
      if (connection.closed) return;
      try {
        // tlsClientOptions already refused any other certificate; this says so again where the link is made.
        authenticatedPrincipal(socket, this.#cluster, expected);
      } catch (error) {
        if (!(error instanceof AuthenticationError)) throw error;
        this.#reject(connection, error.message);
        return;
      }
      connection.stage = 'hello';
      socket.write(encodeFrame(this.#hello));
    });
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

  /**
   * An inbound TCP connection: pending until its TLS handshake shows a certificate of a site that dials
   * us. It waits for its first byte (idle deadline), then TLS takes the socket (handshake deadline).
   */
  #accept(socket: net.Socket): void {
    const remote = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    if (this.#closed) {
      socket.destroy();
      return;
    }
    const connection = this.#track(socket, undefined, 'accepted', undefined, remote);
    if (this.#pending.size >= pendingConnectionsMax) {
      const views: PendingView[] = [...this.#pending.values()].map((c) => ({ connection: c, remoteAddress: c.remoteAddress, sequence: c.sequence, silent: c.stage === 'silent' }));
      const victim = evictionVictim(views);
      assert(victim !== undefined, 'a full pending pool has a victim', () => `${this.#pending.size} pending`);
      this.#evictedConnections += 1;
      this.#reject(
        victim.connection,
        `evicted by a newer connection: ${pendingConnectionsMax} connections were waiting to authenticate (pendingConnectionsMax); ${victim.silent ? 'silent' : 'in its handshake'} since #${victim.sequence}`,
      );
    }
    assert(!this.#pending.has(connection.key), 'one pending connection per pair of endpoints', () => connection.key);
    this.#pending.set(connection.key, connection);
    const idle = this.#deadline(connection, this.#idleTimeoutMs, () => this.#reject(connection, `silent for ${this.#idleTimeoutMs} ms (idleTimeoutMs)`));
    connection.handshakeTimer = this.#deadline(connection, this.#handshakeTimeoutMs, () =>
      this.#reject(connection, `no TLS handshake within ${this.#handshakeTimeoutMs} ms (handshakeTimeoutMs)`),
    );
    socket.once('data', (chunk: Buffer) => {
      if (connection.closed) return;
      this.#clearDeadline(connection, idle);
      connection.stage = 'handshake';
      // Give the bytes back and let the TLS server take the socket: it reads what is buffered first.
      socket.pause();
      socket.unshift(chunk);
      const tlsServer = this.#tlsServer;
      assert(tlsServer !== undefined, 'the TLS server exists once started', 'accept before start');
      tlsServer.emit('connection', socket);
    });
  }

  /** An accepted connection's TLS handshake is done: the certificate must name a site that dials us. */
  #handshakeDone(socket: tls.TLSSocket): void {
    const connection = this.#pending.get(endpointsOf(socket));
    if (connection === undefined || connection.closed) {
      socket.destroy();
      return;
    }
    this.#pending.delete(connection.key);
    connection.tls = socket;
    connection.stage = 'hello';
    this.#clearDeadline(connection, connection.handshakeTimer);
    socket.on('error', (error) => {
      connection.error ??= error;
    });
    let principal: Principal;
    try {
      principal = authenticatedPrincipal(socket, this.#cluster);
    } catch (error) {
      if (!(error instanceof AuthenticationError)) throw error;
      this.#reject(connection, error.message);
      return;
    }
    const site = siteOf(principal);
    const dialers = peerIdsOf(this.#self).filter((peer) => peer < this.#self);
    if (site === undefined || !dialers.includes(site)) {
      this.#reject(connection, `certificate names ${principalName(principal)}: only site ${dialers.join(' or ') || '(none)'} connects to site ${this.#self}`);
      return;
    }
    connection.peer = site;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.#receive(connection, chunk));
  }

  #receive(connection: Connection, chunk: Uint8Array): void {
    if (connection.closed) return;
    connection.lastReceivedMs = performance.now();
    connection.decoder.push(chunk);
    while (!connection.closed) {
      let frame: Uint8Array | undefined;
      try {
        frame = connection.decoder.next();
      } catch (error) {
        if (!(error instanceof FrameError)) throw error;
        if (connection.stage === 'up') this.#drop(connection, `bad frame: ${error.message}`);
        else this.#reject(connection, `bad first frame: ${error.message}`);
        return;
      }
      if (frame === undefined) return;
      if (connection.stage === 'up') this.#deliver(connection, frame);
      else this.#helloReceived(connection, frame);
    }
  }

  #deliver(connection: Connection, frame: Uint8Array): void {
    const peer = connection.peer as LinkSite;
    const counters = this.#state(peer).counters;
    if (frame.length === 0) {
      counters.keepalivesReceived += 1;
      return;
    }
    counters.framesReceived += 1;
    counters.bytesReceived += frame.length;
    for (const listener of [...this.#frameListeners]) {
      if (connection.closed) return;
      listener(peer, frame);
    }
  }

  #helloReceived(connection: Connection, frame: Uint8Array): void {
    // Frames flow only on a connection whose certificate named its peer (a dial checks it at secureConnect).
    assert(connection.stage === 'hello', 'a hello arrives after the TLS handshake', () => connection.stage);
    const certified = connection.peer as LinkSite;
    const expected: HelloExpectation = {
      self: this.#self,
      cluster: this.#cluster,
      from: connection.direction === 'dialed' ? [certified] : peerIdsOf(this.#self).filter((peer) => peer < this.#self),
      certified,
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
    const now = performance.now();
    if (connection.direction === 'accepted') {
      const old = state.connection;
      if (old !== undefined) {
        const silentMs = Math.round(now - old.lastReceivedMs);
        if (silentMs <= this.#silenceMsMax) {
          this.#reject(connection, `site ${hello.site} is already connected (${old.remote}) and healthy: heard ${silentMs} ms ago, within silenceMsMax ${this.#silenceMsMax}`);
          return;
        }
        this.#drop(old, `replaced by a new connection from ${connection.remote}: silent for ${silentMs} ms, above silenceMsMax ${this.#silenceMsMax}`);
      }
      connection.tls?.write(encodeFrame(this.#hello));
    } else {
      assert(state.dialing === connection, 'a dialed connection is the one being dialed', () => `site ${hello.site}`);
      state.dialing = undefined;
    }
    for (const timer of [...connection.timers]) this.#clearDeadline(connection, timer);
    connection.decoder.limitBytes = frameBytesMax;
    connection.decoder.keepalives = true;
    connection.stage = 'up';
    connection.lastReceivedMs = now;
    state.connection = connection;
    state.delayMs = this.#reconnectDelayMs;
    state.counters.connects += 1;
    const after = state.failedDials > 0 ? ` after ${state.failedDials} failed dials` : '';
    state.failedDials = 0;
    this.#log(`site ${this.#self}: link ${linkName(this.#self, hello.site)} up (${connection.direction} ${connection.remote}, TLS)${after}`);
    for (const listener of [...this.#upListeners]) listener(hello.site);
  }

  /** One keepalive on every up link whose queue has room for it (a full queue is a link already in trouble). */
  #sendKeepalives(): void {
    for (const state of this.#peers.values()) {
      const socket = state.connection?.tls;
      if (socket === undefined || socket.writableLength + keepaliveFrame.length > this.#outgoingBytesMax) continue;
      socket.write(keepaliveFrame);
    }
  }

  #countRejection(connection: Connection, reason: string): void {
    this.#rejectedConnections += 1;
    this.#lastRejectReason = reason;
    const from = connection.direction === 'dialed' ? `to site ${connection.peer} at` : 'from';
    this.#log(`site ${this.#self}: connection ${from} ${connection.remote} refused: ${reason}`);
  }

  /** Closes a connection that did not come up, counting and logging the reason. */
  #reject(connection: Connection, reason: string): void {
    if (connection.closed) return;
    this.#countRejection(connection, reason);
    this.#drop(connection, reason);
  }

  /** Closes a connection now, with `reason`; the state changes at once, not when the socket has closed. */
  #drop(connection: Connection, reason: string): void {
    if (connection.closed) return;
    connection.closed = true;
    connection.tls?.destroy();
    connection.socket.destroy();
    this.#finish(connection, reason);
  }

  /** The bookkeeping of a connection's end: timers, peer down, dial failure, redial. */
  #finish(connection: Connection, reason: string): void {
    for (const timer of connection.timers) clearTimeout(timer);
    connection.timers.clear();
    if (this.#pending.get(connection.key) === connection) this.#pending.delete(connection.key);
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
