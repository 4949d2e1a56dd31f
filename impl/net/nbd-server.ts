/**
 * An NBD (network block device) server: exports a site's data volumes to a host over TCP, so that an
 * unmodified Linux host (the kernel's nbd client, qemu, libnbd's tools, fio) reads and writes them.
 * Protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md ("the spec" below).
 *
 * Shape. The byte level is pure and tested without sockets: {@link NbdFrameReader} cuts the incoming bytes
 * into frames (client flags, options, requests with their write payloads), the `parse*` functions check one
 * header each and throw {@link NbdProtocolError}, {@link checkRequest} decides a request's errno before the
 * backend sees it, and the `encode*` functions build what is sent (all in `nbd-protocol.ts`). The payload
 * budget shared by every connection is `nbd-budget.ts`, pure too. {@link NbdServer} is the edge: it owns the
 * listener, the sockets, the TLS layer and the deadlines, calls the backend ({@link NbdExport}) and writes
 * the replies.
 *
 * Who gets in (issue 14). With `tls` in its options the server offers `NBD_OPT_STARTTLS` (the spec's "TLS
 * support"): it ACKs in plain, then the same socket carries a TLS 1.3 handshake with the site's certificate
 * that asks the client for one of the cluster's (`tls-identity.ts`); the option haggling then goes on inside
 * TLS. A client is let in if its certificate chains to the cluster's authority and names a host (`host-N`)
 * or the operator ({@link nbdPrincipalAllowed}); a site's certificate, another cluster's, or none is
 * refused (logged `authenticationFailed`). With `tls.required` (a site's `nbdTls: required`) every option but
 * STARTTLS and ABORT before TLS gets `NBD_REP_ERR_TLS_REQD` (EXPORT_NAME, which has no error reply, closes
 * the connection), so no export is served in plain; otherwise plain and TLS clients are both served. Plain
 * bytes sent after STARTTLS and before the handshake (the STARTTLS injection of CVE-2011-0411) close the
 * connection; a second STARTTLS inside TLS gets `NBD_REP_ERR_INVALID`; without `tls` STARTTLS gets
 * `NBD_REP_ERR_UNSUP`.
 *
 * Resources (every limit in {@link NbdServerLimits}, each a named default, configurable per site):
 * - A connection is *pending* until it is *admitted*: authenticated by TLS, or, where plain is allowed, at
 *   its GO / EXPORT_NAME. At most {@link nbdPendingPerAddressMaxDefault} are pending from one address and
 *   {@link nbdPendingConnectionsMaxDefault} in all; one more evicts a pending one ({@link nbdPendingVictim}:
 *   the oldest of its own address at the per-address cap, else the oldest of the address holding the most),
 *   so connections that never authenticate cannot keep a host out, and an address that churns connections
 *   evicts only its own. At most {@link nbdConnectionsMax} are admitted; a connection admitted beyond it is
 *   closed (`connectionsMax`). Pending connections never take an admitted slot.
 * - A pending connection is closed after {@link nbdIdleTimeoutMsDefault} without a byte, and any connection
 *   that has not chosen its export {@link nbdHandshakeTimeoutMsDefault} after connecting.
 * - Host payload bytes (WRITE payloads from header until the backend settles, READ data until the reply has
 *   left) are reserved from one budget of {@link nbdBufferedBytesMaxDefault} shared by every connection,
 *   each admitted connection guaranteed `nbdConnectionBytesGuaranteed` of it, before the payload is read:
 *   a request that does not fit waits with its socket paused (TCP back-pressure), never dropped. A WRITE
 *   whose payload, once the server reads it, does not arrive within {@link nbdFrameTimeoutMsDefault} closes
 *   the connection (its write was never acknowledged). {@link nbdMemoryBytesMax} is the bound they give.
 *
 * Protocol subset.
 * - Handshake: fixed newstyle only. The server sends NBDMAGIC, IHAVEOPT and the handshake flags
 *   FIXED_NEWSTYLE | NO_ZEROES; a client that does not set C_FIXED_NEWSTYLE, or sets any bit other than
 *   C_FIXED_NEWSTYLE / C_NO_ZEROES, is disconnected (the spec says MUST for unknown bits; the spec lets a
 *   server honour a non-fixed client, we do not: every client of interest sets the bit).
 * - Options: `NBD_OPT_STARTTLS` (above), `NBD_OPT_GO` and `NBD_OPT_INFO` (reply `NBD_INFO_EXPORT`;
 *   `NBD_INFO_BLOCK_SIZE` when requested, with minimum {@link nbdBlockBytesMin}, preferred = the export's
 *   `blockBytes`, maximum {@link nbdPayloadBytesMax}; `NBD_INFO_NAME` and `NBD_INFO_DESCRIPTION` when
 *   requested), `NBD_OPT_LIST` (one `NBD_REP_SERVER` per export, with its description), `NBD_OPT_ABORT` (ack,
 *   then close), `NBD_OPT_EXPORT_NAME` (old style: an unknown export closes the connection, as the spec
 *   requires). `NBD_OPT_STRUCTURED_REPLY` and every other option (meta contexts, extended headers...) get
 *   `NBD_REP_ERR_UNSUP`: we send simple replies only, which every client falls back to. An unknown export
 *   gets `NBD_REP_ERR_UNKNOWN`, a malformed GO/INFO/LIST `NBD_REP_ERR_INVALID`. The empty name selects the
 *   default export, the first one `exports()` lists. The export list is read at every option, so it follows
 *   failover; a connection keeps the export it opened.
 * - Transmission: simple replies; READ, WRITE (FUA), FLUSH, TRIM (FUA), WRITE_ZEROES (FUA, NO_HOLE), DISC.
 *   Flags HAS_FLAGS | SEND_FLUSH | SEND_FUA | SEND_TRIM | SEND_WRITE_ZEROES, plus READ_ONLY when the export's
 *   `readOnly()` says so at the handshake. CAN_MULTI_CONN is not advertised: a flush on one connection does
 *   not promise anything about writes another connection has in flight. FUA is accepted on every command
 *   (spec: "valid for all commands"); it is passed to the backend for WRITE and WRITE_ZEROES, and a TRIM with
 *   FUA is followed by a backend flush.
 * - Pipelining: requests are processed as they arrive and replied to when their backend call settles, so
 *   replies may come out of order (the client matches them by cookie). At most
 *   {@link nbdRequestsInFlightMax} requests and {@link nbdInFlightBytesMax} payload bytes are in flight per
 *   connection, and at most {@link nbdReplyBytesQueuedMax} reply bytes wait in the socket; at a limit the
 *   server stops parsing and pauses the socket (TCP back-pressure reaches the client) until the count drops,
 *   so nothing is buffered without bound. Replies that become ready in the same tick are written together
 *   (the socket is corked until the tick's promise reactions have run). The order in which concurrent
 *   writes reach the volume is the backend's choice. FLUSH first waits for every WRITE / TRIM / WRITE_ZEROES received before it on this
 *   connection to settle, then calls the backend's `flush`. DISC stops reading, lets the requests in flight
 *   finish and reply, then closes.
 *
 * Limits: {@link nbdPayloadBytesMax} (32 MiB, the spec's default maximum payload), {@link nbdOptionBytesMax}
 * (16 KiB), {@link nbdNameBytesMax} (4096, the spec's string limit), {@link nbdOptionsPerHandshakeMax} (128),
 * {@link nbdRequestsInFlightMax} (64), {@link nbdInFlightBytesMax} (128 MiB), {@link nbdReplyBytesQueuedMax}
 * (64 MiB) per connection; {@link nbdConnectionsMax} (128) admitted and {@link nbdPendingConnectionsMaxDefault}
 * (64) pending connections, the payload budget {@link nbdBufferedBytesMaxDefault} (256 MiB) across them.
 *
 * Error mapping (simple reply error field; only the spec's values are ever sent):
 * - READ past the end, or longer than {@link nbdPayloadBytesMax} → `EINVAL`.
 * - WRITE / WRITE_ZEROES past the end → `ENOSPC`; TRIM past the end → `EINVAL` (the spec's "Error values":
 *   ENOSPC for writes, EINVAL for reads and trims).
 * - WRITE longer than {@link nbdPayloadBytesMax} → `EINVAL`; the connection stays up: the payload is read
 *   and discarded as it arrives, never buffered (the spec lets a server disconnect instead; skipping keeps a
 *   confused but well-framed client alive and costs only bandwidth). TRIM and WRITE_ZEROES carry no payload
 *   and may be longer (the spec says a server SHOULD NOT refuse them); the backend gets the whole range.
 * - WRITE / TRIM / WRITE_ZEROES on an export that was read-only at the handshake → `EPERM`, the backend is
 *   not called.
 * - A command flag the command does not take (DF, REQ_ONE, FAST_ZERO: never negotiated) → `EINVAL`; an
 *   unknown or unsupported command (CACHE, BLOCK_STATUS without meta contexts, RESIZE...) → `EINVAL`.
 * - The backend rejects with {@link NbdError} → its errno (one of {@link NbdErrno}). The backend rejects with
 *   the system's {@link NotWritableError} (site not primary, fenced, fence policy) → `EPERM`: the spec has no
 *   EROFS (30), and "operation not permitted" is its word for a write the export refuses; Linux's nbd driver
 *   reports it to the application as an I/O error either way. Any other rejection (or a read returning the
 *   wrong number of bytes) → `EIO`, logged with the error.
 * Garbage (bad option or request magic, an option longer than {@link nbdOptionBytesMax}, bad client flags,
 * too many options, bytes left over when the client closes) closes that connection with the reason logged
 * through the injected {@link NbdLogger}; nothing is written, and the other connections carry on.
 */

import { createServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer, type Server as TlsServer, type TLSSocket } from 'node:tls';
import { NotWritableError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { NbdBudgetAccount, type NbdBudgetCounters, NbdPayloadBudget, nbdBufferedBytesMaxDefault, nbdConnectionBytesGuaranteed } from './nbd-budget.ts';
import {
  NbdCommand, NbdCommandFlag, NbdErrno, type NbdErrnoValue, NbdError, type NbdExport, type NbdFrame, NbdFrameReader, NbdInfo, NbdOption, NbdProtocolError, type NbdProtocolErrorReason, NbdReply, type NbdRequestHeader, blockSizesOf, checkRequest, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeOptionReply, encodeServerEntry, encodeSimpleReply, isNbdErrno, nbdConnectionsMax, nbdInFlightBytesMax, nbdNameBytesMax, nbdOptionsPerHandshakeMax, nbdPayloadBytesMax, nbdReplyBytesQueuedMax, nbdRequestsInFlightMax, parseInfoRequest, transmissionFlags,
} from './nbd-protocol.ts';
import { AuthenticationError, authenticatedPrincipal, principalName, tlsServerOptions, type Principal, type TlsCredentials } from './tls-identity.ts';

// ---------------------------------------------------------------------------------------------------------
// Limits of the server's resources (the byte-level limits are nbd-protocol.ts's).

/**
 * Default of the most connections not yet admitted (before TLS authentication, or before a plain client's
 * GO where plain NBD is allowed): 64. A connection beyond it evicts one not yet admitted from the address
 * that holds the most ({@link nbdPendingVictim}), so that connections that never authenticate cannot keep a
 * host out, and never take an admitted connection's slot.
 */
export const nbdPendingConnectionsMaxDefault = 64;

/**
 * Default of the most connections not yet admitted from one address: 16 (a quarter of the pending pool). A
 * connection beyond it evicts the oldest pending one of its own address, so one address that reopens
 * connections as fast as they are closed churns only its own and never evicts a host's handshake from
 * another address. Room for a host that opens several connections at once (nbdcopy opens 4, a multi-queue
 * client one per queue) behind one address.
 */
export const nbdPendingPerAddressMaxDefault = 16;

/** Default of the time from connect to the end of option haggling (GO or EXPORT_NAME), in ms: 10 s. */
export const nbdHandshakeTimeoutMsDefault = 10_000;

/** Default of the longest silence of a connection not yet admitted (no byte received), in ms: 5 s. */
export const nbdIdleTimeoutMsDefault = 5_000;

/**
 * Default of the time a WRITE's payload may take to arrive once the server has room for it and reads it,
 * in ms: 30 s (32 MiB at 1.1 MB/s). A client that sends a header and part of a payload, then stalls, is
 * disconnected (its write was never acknowledged), so it holds its share of the payload budget for no longer.
 */
export const nbdFrameTimeoutMsDefault = 30_000;

/** Smallest and largest value of a configured NBD timeout, in ms. */
export const nbdTimeoutMsMin = 10;
export const nbdTimeoutMsMax = 3_600_000;

/**
 * Bytes a connection may hold outside the payload budget: the socket's read chunk (64 KiB) and TLS records
 * the frame reader holds when the server stops reading, a frame header, the TLS state (two 16 KiB records and
 * OpenSSL's session). An estimate, used only to state the server's memory bound ({@link nbdMemoryBytesMax}).
 */
export const nbdConnectionOverheadBytes = 256 * 1024;

/** The resource limits of one server; every field defaults to the constant of its name. */
export interface NbdServerLimits {
  /** Most admitted connections (authenticated, or plain in transmission where plain is allowed). */
  readonly connectionsMax: number;
  /** Most connections not yet admitted; a new one beyond it evicts one ({@link nbdPendingVictim}). */
  readonly pendingConnectionsMax: number;
  /** Most connections not yet admitted from one remote address; a new one beyond it evicts that address's oldest. */
  readonly pendingPerAddressMax: number;
  readonly handshakeTimeoutMs: number;
  readonly idleTimeoutMs: number;
  readonly frameTimeoutMs: number;
  /** Most host payload bytes (WRITE payloads, READ data) held across all connections. */
  readonly bufferedBytesMax: number;
  /** Of it, the bytes each admitted connection may always hold. */
  readonly connectionBytesGuaranteed: number;
}

/** The limits a server has unless its options say otherwise. */
export const nbdServerLimitsDefault: NbdServerLimits = {
  connectionsMax: nbdConnectionsMax,
  pendingConnectionsMax: nbdPendingConnectionsMaxDefault,
  pendingPerAddressMax: nbdPendingPerAddressMaxDefault,
  handshakeTimeoutMs: nbdHandshakeTimeoutMsDefault,
  idleTimeoutMs: nbdIdleTimeoutMsDefault,
  frameTimeoutMs: nbdFrameTimeoutMsDefault,
  bufferedBytesMax: nbdBufferedBytesMaxDefault,
  connectionBytesGuaranteed: nbdConnectionBytesGuaranteed,
};

/**
 * The most memory a server's connections hold, in bytes: the payload budget and every connection's
 * overhead. A site states it at start (with the rest of its bound) and keeps its peak RSS within it.
 */
export function nbdMemoryBytesMax(limits: NbdServerLimits): number {
  return limits.bufferedBytesMax + (limits.connectionsMax + limits.pendingConnectionsMax) * nbdConnectionOverheadBytes;
}

/** What the eviction rule knows of a connection not yet admitted. */
export interface NbdPendingConnection {
  /** The address it came from. */
  readonly remoteAddress: string;
}

/**
 * The pending connection a newcomer from `address` evicts, or undefined when there is room for it. `pending`
 * is oldest first. At {@link NbdServerLimits.pendingPerAddressMax} from `address`: that address's oldest (an
 * address churning connections evicts only its own). Else, at {@link NbdServerLimits.pendingConnectionsMax}
 * in all: the oldest of the address holding the most (ties: the address whose connection is oldest), so a
 * host from an address holding one or a few is evicted only when every address holds as few, which takes
 * more addresses than the pool has slots per address (a flood from many addresses: the network's business).
 * The newcomer itself is never the victim: it always gets its chance to authenticate. Pure.
 */
export function nbdPendingVictim<T extends NbdPendingConnection>(
  pending: readonly T[],
  address: string,
  limits: Pick<NbdServerLimits, 'pendingConnectionsMax' | 'pendingPerAddressMax'>,
): T | undefined {
  const held = new Map<string, number>();
  for (const connection of pending) held.set(connection.remoteAddress, (held.get(connection.remoteAddress) ?? 0) + 1);
  if ((held.get(address) ?? 0) >= limits.pendingPerAddressMax) return pending.find((connection) => connection.remoteAddress === address);
  if (pending.length < limits.pendingConnectionsMax) return undefined;
  let victim: T | undefined;
  for (const connection of pending) {
    // Oldest first: a later connection replaces the victim only from an address that holds strictly more.
    if (victim === undefined || held.get(connection.remoteAddress)! > held.get(victim.remoteAddress)!) victim = connection;
  }
  return victim;
}

// ---------------------------------------------------------------------------------------------------------
// The server: sockets and the backend.

/** What a log entry reports. */
export type NbdLogEvent =
  | 'connectionsMax'
  | 'pendingEvicted'
  | 'timeout'
  | 'tlsRequired'
  | 'authenticationFailed'
  | 'protocolError'
  | 'backendError'
  | 'socketError'
  | 'internalError'
  | 'optionRefused';

/** Which deadline closed a connection. */
export type NbdTimeout = 'handshake' | 'idle' | 'frame';

/** One log entry, with its facts in fields. */
export interface NbdLogEntry {
  readonly level: 'info' | 'warn' | 'error';
  readonly event: NbdLogEvent;
  /** The connection's number (1, 2, ... in order of acceptance). */
  readonly connection: number;
  readonly message: string;
  /** For `protocolError`: why the connection was closed. */
  readonly reason?: NbdProtocolErrorReason;
  /** For `timeout`: which deadline passed. */
  readonly timeout?: NbdTimeout;
  /** The error behind the entry, if any. */
  readonly error?: unknown;
}

/** Where the server reports what clients and backends did wrong. */
export type NbdLogger = (entry: NbdLogEntry) => void;

/** Request kinds counted by {@link NbdCounters.requests}. */
export type NbdRequestKind = 'read' | 'write' | 'flush' | 'trim' | 'writeZeroes' | 'disc' | 'other';

/** What the server has done so far (a snapshot). */
export interface NbdCounters {
  connectionsAccepted: number;
  /** Connections open now, admitted or not. */
  connectionsOpen: number;
  /** Connections admitted now (authenticated, or plain in transmission). */
  connectionsAdmitted: number;
  /** Connections closed because {@link NbdServerLimits.connectionsMax} were admitted. */
  connectionsRefused: number;
  /** Connections not yet admitted, closed to make room for a newer one. */
  connectionsEvicted: number;
  /** Connections closed by a deadline, by which one. */
  timeouts: Record<NbdTimeout, number>;
  /** Connections that completed STARTTLS and authenticated as a principal allowed on the NBD port. */
  tlsAuthenticated: number;
  /** Connections whose TLS handshake or certificate was refused. */
  authenticationFailures: number;
  /** Options refused with `NBD_REP_ERR_TLS_REQD` (or EXPORT_NAME closed) because TLS had not been started. */
  tlsRequiredRefusals: number;
  /** Connections closed for a protocol error. */
  protocolErrors: number;
  requests: Record<NbdRequestKind, number>;
  /** Replies with a nonzero error. */
  errorReplies: number;
  /** Bytes sent to clients in READ replies. */
  bytesRead: number;
  /** Bytes written to backends by WRITE. */
  bytesWritten: number;
  /** The payload budget shared by every connection. */
  budget: NbdBudgetCounters;
}

/**
 * TLS on the NBD port (`NBD_OPT_STARTTLS`): the site's credentials (PEM texts: net/ reads no files) and
 * whether a client must start TLS before it sees an export.
 */
export interface NbdServerTls {
  readonly credentials: TlsCredentials;
  /** `true`: every option but STARTTLS and ABORT is refused before TLS; `false`: plain NBD is served too. */
  readonly required: boolean;
}

/** How a server is set up. */
export interface NbdServerOptions {
  /** The exports offered now; called at every option, so the set may change (failover). */
  exports(): readonly NbdExport[];
  /** TLS; without it STARTTLS is answered `NBD_REP_ERR_UNSUP` and every client is plain. */
  tls?: NbdServerTls;
  /** Resource limits; each missing field is {@link nbdServerLimitsDefault}'s. */
  limits?: Partial<NbdServerLimits>;
  /** Defaults to `console.warn` for warnings and errors. */
  logger?: NbdLogger;
}

/**
 * Whether a principal of the cluster may use a site's NBD port: a host (`host-N`: any host may open any
 * export; which host writes to which site is the deployment's business) or the operator (so that it can read
 * the exports for comparisons; it gets what a host gets, writes to the writable primary's exports included).
 * A site's certificate is refused: no site is an NBD client of another.
 */
export function nbdPrincipalAllowed(principal: Principal): boolean {
  return principal.kind === 'host' || principal.kind === 'operator';
}

function defaultLogger(entry: NbdLogEntry): void {
  if (entry.level !== 'info') console.warn(`nbd[${entry.connection}] ${entry.event}: ${entry.message}`, entry.error ?? '');
}

function kindOf(type: number): NbdRequestKind {
  switch (type) {
    case NbdCommand.read:
      return 'read';
    case NbdCommand.write:
      return 'write';
    case NbdCommand.flush:
      return 'flush';
    case NbdCommand.trim:
      return 'trim';
    case NbdCommand.writeZeroes:
      return 'writeZeroes';
    case NbdCommand.disc:
      return 'disc';
    default:
      return 'other';
  }
}

/** Payload bytes a request holds while it is served: a READ's data or a WRITE's payload (0 when refused for its size). */
function payloadBytesOf(request: NbdRequestHeader): number {
  if (request.type !== NbdCommand.read && request.type !== NbdCommand.write) return 0;
  return request.length > nbdPayloadBytesMax ? 0 : request.length;
}

/**
 * A Buffer's bytes as a plain `Uint8Array` view (no copy): what {@link NbdExport.write} is given. A Buffer
 * carries `toJSON`, which `JSON.stringify` calls before any replacer sees the value, spelling out every byte
 * as a number; a backend that encodes the bytes into a JSON-headed message (the site's `encodeMessage`)
 * would pay that for every write (4096 numbers for a 4 KiB write, a million for 1 MiB).
 */
function plainBytes(buffer: Buffer): Uint8Array {
  return new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
}

/** The state a connection shares with its server. */
interface ServerContext {
  readonly options: NbdServerOptions;
  readonly limits: NbdServerLimits;
  readonly log: NbdLogger;
  readonly counters: NbdCounters;
  /** Hands a socket whose client asked for STARTTLS to the server's TLS layer. */
  startTls(connection: NbdConnection, raw: Socket): void;
  /** Moves a connection to the admitted set and opens its budget account; null when every slot is taken. */
  admit(connection: NbdConnection): NbdBudgetAccount | null;
  /** The connection's socket closed. */
  closed(connection: NbdConnection): void;
}

/** A failed backend call, turned into the errno the client gets. */
function errnoOfRejection(error: unknown): NbdErrnoValue | undefined {
  if (error instanceof NbdError && isNbdErrno(error.errno)) return error.errno;
  if (error instanceof NotWritableError) return NbdErrno.EPERM;
  return undefined;
}

/** A socket's remote end, which names a connection while its TLS handshake runs. */
function socketKey(socket: Socket): string {
  return `${socket.remoteAddress}|${socket.remotePort}`;
}

/** Where a connection's TLS stands. */
type TlsState = 'plain' | 'handshaking' | 'authenticated' | 'failed';

/** One client connection: the handshake (with STARTTLS), then its requests. */
class NbdConnection {
  readonly #context: ServerContext;
  /** The socket bytes are read from and written to: the TCP socket, then the TLS socket after STARTTLS. */
  #socket: Socket;
  /** The TCP socket (the same as #socket until STARTTLS). */
  readonly #raw: Socket;
  readonly id: number;
  /** The address it came from (the eviction rule's unit; '' when the socket closed before it was read). */
  readonly remoteAddress: string;
  /** Its key in the server's map of TLS handshakes under way, once it asked for STARTTLS. */
  handshakeKey: string | undefined;
  readonly #reader = new NbdFrameReader();
  #noZeroes = false;
  #options = 0;
  #tls: TlsState = 'plain';
  #principal: Principal | undefined;
  /** The connection's share of the payload budget, once admitted. */
  #account: NbdBudgetAccount | null = null;
  /** Budget bytes reserved for the request being read (a WRITE's payload) or held back until room frees. */
  #reserved = 0;
  #waitingForBudget = false;
  /** A request frame read but held back until its payload bytes are reserved. */
  #held: NbdFrame | undefined;
  /** READ replies whose data has not left for the kernel yet: their budget bytes, released once it has. */
  readonly #replyBytes = new Set<{ bytes: number }>();
  #handshakeTimer: NodeJS.Timeout | undefined;
  #idleTimer: NodeJS.Timeout | undefined;
  #frameTimer: NodeJS.Timeout | undefined;
  #export: NbdExport | undefined;
  #readOnly = false;
  #inFlight = 0;
  #inFlightBytes = 0;
  /** Writes, trims and write-zeroes not yet settled, for FLUSH to wait on. */
  readonly #pendingWrites = new Set<Promise<unknown>>();
  #paused = false;
  /** Replies are being gathered for one write at the end of this tick ({@link NbdConnection.#write}). */
  #corked = false;
  #disconnecting = false;
  #readEnded = false;
  #closed = false;
  #closeReported = false;

  constructor(context: ServerContext, socket: Socket, id: number, remoteAddress: string) {
    this.#context = context;
    this.#socket = socket;
    this.#raw = socket;
    this.id = id;
    this.remoteAddress = remoteAddress;
    socket.setNoDelay(true);
    this.#attach(socket);
    const { handshakeTimeoutMs, idleTimeoutMs } = context.limits;
    this.#handshakeTimer = setTimeout(() => this.#timedOut('handshake', `no export chosen within ${handshakeTimeoutMs} ms of connecting`), handshakeTimeoutMs);
    this.#idleTimer = setTimeout(() => this.#timedOut('idle', `nothing received for ${idleTimeoutMs} ms before authentication`), idleTimeoutMs);
    socket.write(encodeGreeting());
  }

  /** Whether the connection is admitted (authenticated, or plain in transmission where plain is allowed). */
  get admitted(): boolean {
    return this.#account !== null;
  }

  /** The principal its certificate names, once TLS authenticated it. */
  get principal(): Principal | undefined {
    return this.#principal;
  }

  #attach(socket: Socket): void {
    socket.on('data', (chunk: Buffer) => {
      if (this.#account === null) this.#idleTimer?.refresh();
      this.#reader.push(chunk);
      this.#pump();
    });
    socket.on('end', () => this.#onEnd());
    socket.on('drain', () => this.#pump());
    socket.on('error', (error) => {
      if (this.#tls === 'handshaking') this.#authenticationFailed(`TLS handshake: ${error.message}`, error);
      else this.#context.log({ level: 'info', event: 'socketError', connection: this.id, message: error.message, error });
      this.#destroy();
    });
    socket.on('close', () => this.#onClose());
  }

  /** Closes the connection now (server shutdown, protocol error, eviction). */
  destroy(): void {
    this.#destroy();
  }

  #destroy(): void {
    this.#closed = true;
    this.#clearTimers();
    this.#socket.destroy();
    this.#raw.destroy();
  }

  #clearTimers(): void {
    clearTimeout(this.#handshakeTimer);
    clearTimeout(this.#idleTimer);
    clearTimeout(this.#frameTimer);
    this.#handshakeTimer = undefined;
    this.#idleTimer = undefined;
    this.#frameTimer = undefined;
  }

  #onClose(): void {
    // A certificate the handshake refused closes the socket without an error event.
    if (this.#tls === 'handshaking') this.#authenticationFailed('the TLS handshake did not complete (no certificate of this cluster, or the client left)');
    this.#closed = true;
    this.#clearTimers();
    if (this.#closeReported) return;
    this.#closeReported = true;
    // What the connection held and no request will give back: a reservation for a payload that never came,
    // the data of replies that never left.
    if (this.#account !== null) {
      if (this.#reserved > 0) this.#account.release(this.#reserved);
      this.#reserved = 0;
      for (const reply of this.#replyBytes) this.#account.release(reply.bytes);
      this.#replyBytes.clear();
      this.#account.close();
    }
    this.#context.closed(this);
  }

  #timedOut(timeout: NbdTimeout, message: string): void {
    if (this.#closed) return;
    this.#context.counters.timeouts[timeout] += 1;
    this.#context.log({ level: 'warn', event: 'timeout', connection: this.id, timeout, message });
    this.#destroy();
  }

  #onEnd(): void {
    this.#readEnded = true;
    this.#pump();
  }

  /** Ends the socket once nothing is in flight after DISC or the client's end. */
  #endIfIdle(): void {
    if ((this.#disconnecting || this.#readEnded) && this.#inFlight === 0 && !this.#closed) {
      this.#closed = true;
      this.#clearTimers();
      this.#socket.end();
    }
  }

  #atLimit(): boolean {
    return (
      this.#inFlight >= nbdRequestsInFlightMax ||
      this.#inFlightBytes >= nbdInFlightBytesMax ||
      this.#socket.writableLength > nbdReplyBytesQueuedMax
    );
  }

  #pause(): void {
    // A payload the server does not read is not late: its deadline starts again when reading resumes.
    clearTimeout(this.#frameTimer);
    this.#frameTimer = undefined;
    if (!this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    }
  }

  /**
   * Whether `bytes` of the payload budget are reserved for the next request; if not, waits for room (the
   * grant pumps again). A connection waits for one request at a time.
   */
  #reserve(bytes: number): boolean {
    if (bytes === 0) return true;
    if (this.#reserved > 0) {
      assert(this.#reserved === bytes, 'a reservation is for the request read next', () => `${this.#reserved} reserved, ${bytes} needed`);
      return true;
    }
    const account = this.#account;
    assert(account !== null, 'only an admitted connection sends requests', 'no budget account');
    if (this.#waitingForBudget) return false;
    if (account.tryReserve(bytes)) {
      this.#reserved = bytes;
      return true;
    }
    this.#waitingForBudget = true;
    account.wait(bytes, () => {
      this.#waitingForBudget = false;
      this.#reserved = bytes;
      setImmediate(() => this.#pump());
    });
    return false;
  }

  /** Handles every complete frame it may; pauses the socket at a limit or until the budget has room, resumes it below. */
  #pump(): void {
    try {
      while (!this.#closed && !this.#disconnecting) {
        const held = this.#held;
        if (held !== undefined) {
          assert(held.kind === 'request', 'only requests are held', held.kind);
          if (!this.#reserve(payloadBytesOf(held.request))) return this.#pause();
          this.#held = undefined;
          this.#handle(held);
          continue;
        }
        if (this.#reader.phase === 'transmission' && this.#atLimit()) return this.#pause();
        const frame = this.#reader.next();
        if (frame === undefined) {
          const pending = this.#reader.phase === 'transmission' ? this.#reader.pendingPayloadBytes : 0;
          if (pending > 0) {
            // A WRITE's header is in and its payload on the way: room first, then its bytes, within the deadline.
            if (!this.#reserve(pending)) return this.#pause();
            const { frameTimeoutMs } = this.#context.limits;
            this.#frameTimer ??= setTimeout(() => this.#timedOut('frame', `a WRITE payload of ${pending} bytes not received within ${frameTimeoutMs} ms`), frameTimeoutMs);
          }
          // The client closed its side: whatever is left is a frame it cut off.
          if (this.#readEnded) this.#reader.finish();
          break;
        }
        if (frame.kind === 'request') {
          clearTimeout(this.#frameTimer);
          this.#frameTimer = undefined;
          if (!this.#reserve(payloadBytesOf(frame.request))) {
            this.#held = frame;
            return this.#pause();
          }
        }
        this.#handle(frame);
      }
      if (this.#paused && !this.#closed) {
        this.#paused = false;
        this.#socket.resume();
      }
      this.#endIfIdle();
    } catch (error) {
      this.#fail(error);
    }
  }

  /** Closes after a protocol error (logged as such) or a bug (logged as internal): never throws. */
  #fail(error: unknown): void {
    if (error instanceof NbdProtocolError) {
      this.#context.counters.protocolErrors += 1;
      this.#context.log({ level: 'warn', event: 'protocolError', connection: this.id, message: error.message, reason: error.reason, error });
    } else {
      this.#context.log({ level: 'error', event: 'internalError', connection: this.id, message: String(error), error });
    }
    this.#destroy();
  }

  #handle(frame: NbdFrame): void {
    switch (frame.kind) {
      case 'clientFlags':
        this.#noZeroes = frame.flags.noZeroes;
        this.#reader.phase = 'options';
        return;
      case 'option':
        this.#options += 1;
        if (this.#options > nbdOptionsPerHandshakeMax) {
          throw new NbdProtocolError('optionsMax', this.#options, `more than ${nbdOptionsPerHandshakeMax} options in one handshake`);
        }
        this.#handleOption(frame.option, frame.data);
        return;
      case 'request':
        this.#handleRequest(frame.request, frame.payload);
        return;
    }
  }

  #find(name: string, nameBytes: number): NbdExport | undefined {
    if (nameBytes > nbdNameBytesMax) return undefined;
    const exports = this.#context.options.exports();
    if (name === '') return exports[0];
    return exports.find((candidate) => candidate.name === name);
  }

  #reply(option: number, replyType: number, data?: Uint8Array): void {
    this.#write(encodeOptionReply(option, replyType, data));
  }

  #refuse(option: number, replyType: number, message: string): void {
    this.#context.log({ level: 'info', event: 'optionRefused', connection: this.id, message });
    this.#reply(option, replyType);
  }

  /** Whether this option must wait for TLS: TLS is required and not started (STARTTLS and ABORT never wait). */
  #tlsRequiredFor(option: number): boolean {
    return this.#context.options.tls?.required === true && this.#tls === 'plain' && option !== NbdOption.startTls && option !== NbdOption.abort;
  }

  #handleOption(option: number, data: Buffer): void {
    // Bytes can reach the option parser only after the TLS handshake; this holds whatever the socket does.
    assert(this.#tls === 'plain' || this.#tls === 'authenticated', 'options are read in plain or once TLS authenticated', () => `option ${option} with TLS ${this.#tls}`);
    if (this.#tlsRequiredFor(option)) {
      this.#context.counters.tlsRequiredRefusals += 1;
      this.#context.log({ level: 'info', event: 'tlsRequired', connection: this.id, message: `option ${option} before STARTTLS` });
      // EXPORT_NAME has no error reply: the spec says disconnect.
      if (option === NbdOption.exportName) throw new NbdProtocolError('exportNameBeforeTls', option, 'NBD_OPT_EXPORT_NAME before STARTTLS where TLS is required');
      return this.#reply(option, NbdReply.errTlsReqd);
    }
    switch (option) {
      case NbdOption.startTls:
        return this.#startTls(data);
      case NbdOption.exportName: {
        const name = data.toString('utf8');
        const found = this.#find(name, data.length);
        if (found === undefined) throw new NbdProtocolError('unknownExportName', undefined, `NBD_OPT_EXPORT_NAME of unknown export '${name.slice(0, 64)}'`);
        if (!this.#admit()) return;
        const readOnly = found.readOnly();
        this.#write(encodeExportNameReply(found.sizeBytes, transmissionFlags(readOnly), this.#noZeroes));
        this.#enterTransmission(found, readOnly);
        return;
      }
      case NbdOption.abort:
        this.#reply(option, NbdReply.ack);
        this.#disconnecting = true;
        this.#closed = true;
        this.#clearTimers();
        this.#socket.end();
        return;
      case NbdOption.list:
        if (data.length !== 0) return this.#refuse(option, NbdReply.errInvalid, `NBD_OPT_LIST with ${data.length} data bytes`);
        for (const exported of this.#context.options.exports()) {
          this.#reply(option, NbdReply.server, encodeServerEntry(exported.name, exported.description));
        }
        this.#reply(option, NbdReply.ack);
        return;
      case NbdOption.info:
      case NbdOption.go: {
        const parsed = parseInfoRequest(data);
        if (!parsed.ok) return this.#refuse(option, NbdReply.errInvalid, parsed.detail);
        const found = this.#find(parsed.name, parsed.nameBytes);
        if (found === undefined) return this.#refuse(option, NbdReply.errUnknown, `unknown export '${parsed.name.slice(0, 64)}'`);
        if (option === NbdOption.go && !this.#admit()) return;
        const readOnly = found.readOnly();
        this.#reply(option, NbdReply.info, encodeInfoExport(found.sizeBytes, transmissionFlags(readOnly)));
        if (parsed.infos.includes(NbdInfo.name)) this.#reply(option, NbdReply.info, encodeInfoString(NbdInfo.name, found.name));
        if (parsed.infos.includes(NbdInfo.description) && found.description !== undefined) {
          this.#reply(option, NbdReply.info, encodeInfoString(NbdInfo.description, found.description));
        }
        if (parsed.infos.includes(NbdInfo.blockSize)) {
          const sizes = blockSizesOf(found);
          this.#reply(option, NbdReply.info, encodeInfoBlockSize(sizes.minimum, sizes.preferred, sizes.maximum));
        }
        this.#reply(option, NbdReply.ack);
        if (option === NbdOption.go) this.#enterTransmission(found, readOnly);
        return;
      }
      default:
        this.#refuse(option, NbdReply.errUnsup, `option ${option} not supported`);
    }
  }

  /**
   * `NBD_OPT_STARTTLS` (the spec's "TLS support"): ACK in plain, then the same socket carries a TLS 1.3
   * server handshake that asks for a client certificate of the cluster; the option haggling goes on inside
   * TLS. Bytes the client sent after the option and before the handshake would be plain text taken for
   * protected (the STARTTLS injection of CVE-2011-0411): they close the connection.
   */
  #startTls(data: Buffer): void {
    const tls = this.#context.options.tls;
    if (tls === undefined) return this.#refuse(NbdOption.startTls, NbdReply.errUnsup, 'STARTTLS without TLS credentials');
    if (data.length !== 0) return this.#refuse(NbdOption.startTls, NbdReply.errInvalid, `STARTTLS with ${data.length} data bytes`);
    if (this.#tls !== 'plain') return this.#refuse(NbdOption.startTls, NbdReply.errInvalid, 'STARTTLS inside TLS');
    if (this.#reader.bufferedBytes !== 0) {
      throw new NbdProtocolError('bytesBeforeTls', this.#reader.bufferedBytes, `${this.#reader.bufferedBytes} plain bytes sent after STARTTLS, before the TLS handshake`);
    }
    const raw = this.#socket;
    this.#reply(NbdOption.startTls, NbdReply.ack);
    // The ACK leaves now, in plain, before the TLS layer takes the socket over (nothing else is read or
    // written in this turn: the client sends its ClientHello only once it has the ACK).
    if (this.#corked) raw.uncork();
    raw.removeAllListeners('data');
    raw.removeAllListeners('end');
    raw.removeAllListeners('drain');
    this.#tls = 'handshaking';
    // Until the handshake completes nobody reads the TLS socket: a client that leaves then must close it
    // (half-open it would stay, holding its slot until the idle deadline). Half-open again once secured.
    raw.allowHalfOpen = false;
    this.#context.startTls(this, raw);
  }

  /** The TLS handshake completed (the chain was verified by the server's TLS layer): authenticate. */
  secured(secure: TLSSocket): void {
    const tls = this.#context.options.tls;
    assert(tls !== undefined, 'a TLS handshake comes from a server with TLS', () => `connection ${this.id}`);
    if (this.#closed) return void secure.destroy();
    secure.allowHalfOpen = true;
    this.#socket = secure;
    this.#attach(secure);
    this.#authenticate(secure, tls);
  }

  /** The TLS handshake failed (no certificate, one of another authority, a protocol error). */
  tlsFailed(error: Error): void {
    this.#authenticationFailed(error.message, error);
    this.#destroy();
  }

  #authenticationFailed(message: string, error?: unknown): void {
    if (this.#tls === 'failed') return;
    this.#tls = 'failed';
    this.#context.counters.authenticationFailures += 1;
    this.#context.log({ level: 'warn', event: 'authenticationFailed', connection: this.id, message, error });
  }

  /** After the TLS handshake: the certificate must name a principal of this cluster the NBD port takes. */
  #authenticate(secure: TLSSocket, tls: NbdServerTls): void {
    if (this.#closed) return;
    try {
      const principal = authenticatedPrincipal(secure, tls.credentials.cluster);
      if (!nbdPrincipalAllowed(principal)) throw new AuthenticationError('wrongPrincipal', `${principalName(principal)} may not use the NBD port`);
      this.#principal = principal;
    } catch (error) {
      this.#authenticationFailed(error instanceof Error ? error.message : String(error), error);
      return this.#destroy();
    }
    this.#tls = 'authenticated';
    this.#context.counters.tlsAuthenticated += 1;
    this.#admit();
  }

  /**
   * Takes an admitted slot and the budget account (at authentication, or for a plain client where plain is
   * allowed when it chooses its export); false (connection closed) when every slot is taken.
   */
  #admit(): boolean {
    if (this.#account !== null) return true;
    const account = this.#context.admit(this);
    if (account === null) {
      this.#destroy();
      return false;
    }
    this.#account = account;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
    return true;
  }

  #enterTransmission(exported: NbdExport, readOnly: boolean): void {
    assert(this.#account !== null, 'a connection in transmission is admitted', () => `connection ${this.id}`);
    this.#export = exported;
    this.#readOnly = readOnly;
    this.#reader.phase = 'transmission';
    clearTimeout(this.#handshakeTimer);
    this.#handshakeTimer = undefined;
  }

  #handleRequest(request: NbdRequestHeader, payload: Buffer | undefined): void {
    const exported = this.#export;
    const account = this.#account;
    assert(exported !== undefined && account !== null, 'a request comes after the export is chosen', 'no export');
    const counters = this.#context.counters;
    counters.requests[kindOf(request.type)] += 1;
    const reserved = this.#reserved;
    assert(reserved === payloadBytesOf(request), 'a request is handled with its payload bytes reserved', () => `${reserved} reserved for ${request.length}`);
    this.#reserved = 0;
    if (request.type === NbdCommand.disc) {
      this.#disconnecting = true;
      this.#endIfIdle();
      return;
    }
    const bytes = request.type === NbdCommand.read || request.type === NbdCommand.write ? request.length : 0;
    this.#inFlight += 1;
    this.#inFlightBytes += bytes;
    // A READ's data is held until its reply has left (#sendReply); anything else's until it settles.
    let heldUntilSettled = reserved;
    const done = this.#execute(exported, request, payload).then(
      (outcome) => {
        if (outcome.errno === 0 && outcome.data !== undefined) heldUntilSettled = 0;
        this.#sendReply(request, outcome, reserved);
      },
      (error: unknown) => this.#fail(error),
    );
    const isWrite = request.type === NbdCommand.write || request.type === NbdCommand.trim || request.type === NbdCommand.writeZeroes;
    if (isWrite) this.#pendingWrites.add(done);
    void done.finally(() => {
      if (heldUntilSettled > 0) account.release(heldUntilSettled);
      this.#pendingWrites.delete(done);
      this.#inFlight -= 1;
      this.#inFlightBytes -= bytes;
      this.#endIfIdle();
      this.#pump();
    });
  }

  /** Runs one request against the backend: its errno (0 on success) and a READ's data. */
  async #execute(exported: NbdExport, request: NbdRequestHeader, payload: Buffer | undefined): Promise<{ errno: NbdErrnoValue | 0; data?: Uint8Array }> {
    const errno = checkRequest(request, { sizeBytes: exported.sizeBytes, readOnly: this.#readOnly });
    if (errno !== 0) return { errno };
    const offset = Number(request.offset);
    const fua = (request.flags & NbdCommandFlag.fua) !== 0;
    try {
      switch (request.type) {
        case NbdCommand.read: {
          const data = await exported.read(offset, request.length);
          if (data.length !== request.length) {
            return this.#backendFailure(request, new Error(`backend read returned ${data.length} bytes, ${request.length} asked`));
          }
          return { errno: 0, data };
        }
        case NbdCommand.write:
          assert(payload !== undefined && payload.length === request.length, 'a checked write has its payload', () => `${payload?.length}`);
          await exported.write(offset, plainBytes(payload), fua);
          this.#context.counters.bytesWritten += payload.length;
          return { errno: 0 };
        case NbdCommand.flush: {
          // Every write received before this flush, on this connection, settles first (the spec's ordering rule).
          await Promise.allSettled([...this.#pendingWrites]);
          await exported.flush();
          return { errno: 0 };
        }
        case NbdCommand.trim:
          await exported.trim(offset, request.length);
          if (fua) await exported.flush();
          return { errno: 0 };
        case NbdCommand.writeZeroes:
          await exported.writeZeroes(offset, request.length, fua);
          return { errno: 0 };
        default:
          return { errno: NbdErrno.EINVAL };
      }
    } catch (error) {
      return this.#backendFailure(request, error);
    }
  }

  #backendFailure(request: NbdRequestHeader, error: unknown): { errno: NbdErrnoValue } {
    const mapped = errnoOfRejection(error);
    if (mapped !== undefined) return { errno: mapped };
    this.#context.log({
      level: 'error',
      event: 'backendError',
      connection: this.id,
      message: `${kindOf(request.type)} offset=${request.offset} length=${request.length}: ${error instanceof Error ? error.message : String(error)}`,
      error,
    });
    return { errno: NbdErrno.EIO };
  }

  /** Sends a reply; a READ's data keeps its `reservedBytes` of the budget until the socket has passed it on. */
  #sendReply(request: NbdRequestHeader, outcome: { errno: NbdErrnoValue | 0; data?: Uint8Array }, reservedBytes: number): void {
    const account = this.#account;
    assert(account !== null, 'a reply goes to an admitted connection', () => `connection ${this.id}`);
    const counters = this.#context.counters;
    if (outcome.errno === 0 && outcome.data !== undefined) {
      if (this.#socket.destroyed || !this.#socket.writable || this.#closeReported) {
        account.release(reservedBytes);
        return;
      }
      const held = { bytes: reservedBytes };
      this.#replyBytes.add(held);
      this.#write(encodeSimpleReply(0, request.cookie));
      this.#write(outcome.data, () => {
        // Once: the close handler releases what is still in the set.
        if (this.#replyBytes.delete(held)) account.release(held.bytes);
      });
      counters.bytesRead += outcome.data.length;
      return;
    }
    if (this.#socket.destroyed || !this.#socket.writable) return;
    if (outcome.errno !== 0) counters.errorReplies += 1;
    this.#write(encodeSimpleReply(outcome.errno, request.cookie));
  }

  /**
   * Queues bytes for the client. The socket is corked at the first write of a tick and uncorked once the
   * tick's callbacks and promise reactions have run (`process.nextTick` runs after the microtask queue
   * drains), so the replies of requests that complete together (every acknowledgement one peer frame
   * brings, every read of one incoming chunk) leave in one writev rather than one syscall each. The reply
   * back-pressure limit still sees them: `writableLength` counts corked bytes.
   */
  #write(bytes: Uint8Array, written?: () => void): void {
    if (!this.#corked) {
      this.#corked = true;
      const socket = this.#socket;
      socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        socket.uncork();
      });
    }
    this.#socket.write(bytes, written);
  }
}

/**
 * An NBD server over TCP exporting what `options.exports()` lists, with STARTTLS when `options.tls` is given.
 * `listen` binds it, `close` stops it and drops every connection; `counters` says what it has done.
 */
export class NbdServer {
  readonly #options: NbdServerOptions;
  readonly #limits: NbdServerLimits;
  readonly #log: NbdLogger;
  readonly #budget: NbdPayloadBudget;
  /**
   * The TLS layer of STARTTLS: a TLS server that never listens and is handed each socket that asked for
   * STARTTLS (`emit('connection')`, as Node documents for sockets accepted elsewhere). It verifies the
   * client's chain against the cluster's authority and refuses any other; one secure context for every
   * connection (making one costs milliseconds).
   */
  readonly #tlsServer: TlsServer | undefined;
  /** Connections in their TLS handshake, by their socket's remote address and port. */
  readonly #handshaking = new Map<string, NbdConnection>();
  readonly #counters: Omit<NbdCounters, 'budget'> = {
    connectionsAccepted: 0,
    connectionsOpen: 0,
    connectionsAdmitted: 0,
    connectionsRefused: 0,
    connectionsEvicted: 0,
    timeouts: { handshake: 0, idle: 0, frame: 0 },
    tlsAuthenticated: 0,
    authenticationFailures: 0,
    tlsRequiredRefusals: 0,
    protocolErrors: 0,
    requests: { read: 0, write: 0, flush: 0, trim: 0, writeZeroes: 0, disc: 0, other: 0 },
    errorReplies: 0,
    bytesRead: 0,
    bytesWritten: 0,
  };
  /** Connections not yet admitted, oldest first (a Set keeps the order of insertion). */
  readonly #pending = new Set<NbdConnection>();
  readonly #admitted = new Set<NbdConnection>();
  #server: Server | undefined;
  #nextId = 1;

  constructor(options: NbdServerOptions) {
    this.#options = options;
    this.#limits = { ...nbdServerLimitsDefault, ...options.limits };
    const limits = this.#limits;
    for (const [name, value] of Object.entries(limits)) assert(Number.isSafeInteger(value) && value > 0, 'an NBD limit is a positive integer', () => `${name}=${value}`);
    for (const name of ['handshakeTimeoutMs', 'idleTimeoutMs', 'frameTimeoutMs'] as const) {
      assert(limits[name] >= nbdTimeoutMsMin && limits[name] <= nbdTimeoutMsMax, 'an NBD timeout is within its bounds', () => `${name}=${limits[name]}`);
    }
    this.#budget = new NbdPayloadBudget(limits.bufferedBytesMax, limits.connectionBytesGuaranteed, limits.connectionsMax);
    this.#log = options.logger ?? defaultLogger;
    if (options.tls === undefined) {
      this.#tlsServer = undefined;
    } else {
      const tlsServer = createTlsServer({ ...tlsServerOptions(options.tls.credentials), handshakeTimeout: limits.handshakeTimeoutMs });
      tlsServer.on('secureConnection', (secure: TLSSocket) => this.#handshakeOf(secure)?.secured(secure));
      tlsServer.on('tlsClientError', (error: Error, secure: TLSSocket) => this.#handshakeOf(secure)?.tlsFailed(error));
      this.#tlsServer = tlsServer;
    }
  }

  /** The limits in force. */
  get limits(): NbdServerLimits {
    return this.#limits;
  }

  /** Listens on `host:port` (port 0: any free port) and resolves with the bound port. */
  listen(port: number, host = '127.0.0.1'): Promise<number> {
    assert(this.#server === undefined, 'an NBD server listens once', 'listen called twice');
    const context: ServerContext = {
      options: this.#options,
      limits: this.#limits,
      log: this.#log,
      counters: this.#counters as NbdCounters,
      startTls: (connection, raw) => {
        const tlsServer = this.#tlsServer;
        assert(tlsServer !== undefined, 'STARTTLS is accepted only with TLS credentials', () => `connection ${connection.id}`);
        this.#handshaking.set(socketKey(raw), connection);
        connection.handshakeKey = socketKey(raw);
        tlsServer.emit('connection', raw);
      },
      admit: (connection) => this.#admit(connection),
      closed: (connection) => this.#closed(connection),
    };
    const server = createServer({ allowHalfOpen: true }, (socket) => this.#accept(context, socket));
    this.#server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        const address = server.address();
        assert(address !== null && typeof address === 'object', 'a TCP server has an address', () => String(address));
        resolve(address.port);
      });
    });
  }

  #accept(context: ServerContext, socket: Socket): void {
    const id = this.#nextId++;
    this.#counters.connectionsAccepted += 1;
    const address = socket.remoteAddress ?? '';
    // A connection not yet admitted makes room, from the newcomer's own address or the busiest: a host, which
    // authenticates at once, is never kept out by connections that do not, nor by one address's churn.
    const victim = nbdPendingVictim([...this.#pending], address, this.#limits);
    if (victim !== undefined) {
      this.#pending.delete(victim);
      this.#counters.connectionsEvicted += 1;
      const message =
        victim.remoteAddress === address
          ? `${this.#limits.pendingPerAddressMax} connections not yet admitted from ${address}; closing its oldest for connection ${id}`
          : `${this.#limits.pendingConnectionsMax} connections not yet admitted; closing the oldest of ${victim.remoteAddress}, the address holding the most, for connection ${id}`;
      this.#log({ level: 'warn', event: 'pendingEvicted', connection: victim.id, message });
      victim.destroy();
    }
    const connection = new NbdConnection(context, socket, id, address);
    this.#pending.add(connection);
    this.#counters.connectionsOpen += 1;
    assert(this.#pending.size <= this.#limits.pendingConnectionsMax, 'connections not yet admitted at most pendingConnectionsMax', () => `${this.#pending.size}`);
    assert(
      [...this.#pending].filter((other) => other.remoteAddress === address).length <= this.#limits.pendingPerAddressMax,
      'connections not yet admitted from one address at most pendingPerAddressMax',
      () => address,
    );
  }

  #admit(connection: NbdConnection): NbdBudgetAccount | null {
    // Slots are the budget's accounts: a closed connection whose writes are still settling keeps its slot.
    if (this.#admitted.size >= this.#limits.connectionsMax || this.#budget.accountsOpen >= this.#limits.connectionsMax) {
      this.#counters.connectionsRefused += 1;
      this.#log({ level: 'warn', event: 'connectionsMax', connection: connection.id, message: `${this.#limits.connectionsMax} connections admitted; closing this one` });
      return null;
    }
    this.#pending.delete(connection);
    this.#admitted.add(connection);
    this.#counters.connectionsAdmitted = this.#admitted.size;
    return this.#budget.open();
  }

  #handshakeOf(secure: TLSSocket): NbdConnection | undefined {
    const key = socketKey(secure);
    const connection = this.#handshaking.get(key);
    this.#handshaking.delete(key);
    return connection;
  }

  #closed(connection: NbdConnection): void {
    if (connection.handshakeKey !== undefined && this.#handshaking.get(connection.handshakeKey) === connection) this.#handshaking.delete(connection.handshakeKey);
    this.#pending.delete(connection);
    this.#admitted.delete(connection);
    this.#counters.connectionsOpen -= 1;
    this.#counters.connectionsAdmitted = this.#admitted.size;
  }

  /** Stops listening and closes every connection (requests in flight get no reply). */
  close(): Promise<void> {
    const server = this.#server;
    for (const connection of [...this.#pending, ...this.#admitted]) connection.destroy();
    if (server === undefined) return Promise.resolve();
    return new Promise((resolve, reject) => server.close((error) => (error === undefined ? resolve() : reject(error))));
  }

  /** A snapshot of the counters. */
  counters(): NbdCounters {
    const c = this.#counters;
    return { ...c, timeouts: { ...c.timeouts }, requests: { ...c.requests }, budget: this.#budget.counters() };
  }
}
