/**
 * An NBD (network block device) server: exports a site's data volumes to a host over TCP, so that an
 * unmodified Linux host (the kernel's nbd client, qemu, libnbd's tools, fio) reads and writes them.
 * Protocol: https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md ("the spec" below).
 *
 * Shape. The byte level is pure and tested without sockets: {@link NbdFrameReader} cuts the incoming bytes
 * into frames (client flags, options, requests with their write payloads), the `parse*` functions check one
 * header each and throw {@link NbdProtocolError}, {@link checkRequest} decides a request's errno before the
 * backend sees it, and the `encode*` functions build what is sent. {@link NbdServer} is the edge: it owns
 * the listener and the sockets, calls the backend ({@link NbdExport}) and writes the replies.
 *
 * Protocol subset.
 * - Handshake: fixed newstyle only. The server sends NBDMAGIC, IHAVEOPT and the handshake flags
 *   FIXED_NEWSTYLE | NO_ZEROES; a client that does not set C_FIXED_NEWSTYLE, or sets any bit other than
 *   C_FIXED_NEWSTYLE / C_NO_ZEROES, is disconnected (the spec says MUST for unknown bits; the spec lets a
 *   server honour a non-fixed client, we do not: every client of interest sets the bit).
 * - Options: `NBD_OPT_GO` and `NBD_OPT_INFO` (reply `NBD_INFO_EXPORT`; `NBD_INFO_BLOCK_SIZE` when requested,
 *   with minimum {@link nbdBlockBytesMin}, preferred = the export's `blockBytes`, maximum
 *   {@link nbdPayloadBytesMax}; `NBD_INFO_NAME` and `NBD_INFO_DESCRIPTION` when requested), `NBD_OPT_LIST`
 *   (one `NBD_REP_SERVER` per export, with its description), `NBD_OPT_ABORT` (ack, then close),
 *   `NBD_OPT_EXPORT_NAME` (old style: an unknown export closes the connection, as the spec requires).
 *   `NBD_OPT_STRUCTURED_REPLY` and every other option (STARTTLS, meta contexts, extended headers...) get
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
 * (64 MiB), {@link nbdConnectionsMax} (128).
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
import { NotWritableError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import {
  NbdCommand, NbdCommandFlag, NbdErrno, type NbdErrnoValue, NbdError, type NbdExport, type NbdFrame, NbdFrameReader, NbdInfo, NbdOption, NbdProtocolError, type NbdProtocolErrorReason, NbdReply, type NbdRequestHeader, blockSizesOf, checkRequest, encodeExportNameReply, encodeGreeting, encodeInfoBlockSize, encodeInfoExport, encodeInfoString, encodeOptionReply, encodeServerEntry, encodeSimpleReply, isNbdErrno, nbdConnectionsMax, nbdInFlightBytesMax, nbdNameBytesMax, nbdOptionsPerHandshakeMax, nbdReplyBytesQueuedMax, nbdRequestsInFlightMax, parseInfoRequest, transmissionFlags,
} from './nbd-protocol.ts';

// ---------------------------------------------------------------------------------------------------------
// The server: sockets and the backend.

/** What a log entry reports. */
export type NbdLogEvent =
  | 'connectionsMax'
  | 'protocolError'
  | 'backendError'
  | 'socketError'
  | 'internalError'
  | 'optionRefused';

/** One log entry, with its facts in fields. */
export interface NbdLogEntry {
  readonly level: 'info' | 'warn' | 'error';
  readonly event: NbdLogEvent;
  /** The connection's number (1, 2, ... in order of acceptance). */
  readonly connection: number;
  readonly message: string;
  /** For `protocolError`: why the connection was closed. */
  readonly reason?: NbdProtocolErrorReason;
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
  connectionsOpen: number;
  /** Connections closed at once because {@link nbdConnectionsMax} were open. */
  connectionsRefused: number;
  /** Connections closed for a protocol error. */
  protocolErrors: number;
  requests: Record<NbdRequestKind, number>;
  /** Replies with a nonzero error. */
  errorReplies: number;
  /** Bytes sent to clients in READ replies. */
  bytesRead: number;
  /** Bytes written to backends by WRITE. */
  bytesWritten: number;
}

/** How a server is set up. */
export interface NbdServerOptions {
  /** The exports offered now; called at every option, so the set may change (failover). */
  exports(): readonly NbdExport[];
  /** Defaults to `console.warn` for warnings and errors. */
  logger?: NbdLogger;
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
  readonly log: NbdLogger;
  readonly counters: NbdCounters;
}

/** A failed backend call, turned into the errno the client gets. */
function errnoOfRejection(error: unknown): NbdErrnoValue | undefined {
  if (error instanceof NbdError && isNbdErrno(error.errno)) return error.errno;
  if (error instanceof NotWritableError) return NbdErrno.EPERM;
  return undefined;
}

/** One client connection: the handshake, then its requests. */
class NbdConnection {
  readonly #context: ServerContext;
  readonly #socket: Socket;
  readonly #id: number;
  readonly #reader = new NbdFrameReader();
  #noZeroes = false;
  #options = 0;
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

  constructor(context: ServerContext, socket: Socket, id: number) {
    this.#context = context;
    this.#socket = socket;
    this.#id = id;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      this.#reader.push(chunk);
      this.#pump();
    });
    socket.on('end', () => this.#onEnd());
    socket.on('drain', () => this.#pump());
    socket.on('error', (error) => {
      this.#context.log({ level: 'info', event: 'socketError', connection: this.#id, message: error.message, error });
      this.#destroy();
    });
    socket.on('close', () => {
      this.#closed = true;
    });
    socket.write(encodeGreeting());
  }

  /** Closes the connection now (server shutdown, protocol error). */
  destroy(): void {
    this.#destroy();
  }

  #destroy(): void {
    this.#closed = true;
    this.#socket.destroy();
  }

  #onEnd(): void {
    this.#readEnded = true;
    this.#pump();
  }

  /** Ends the socket once nothing is in flight after DISC or the client's end. */
  #endIfIdle(): void {
    if ((this.#disconnecting || this.#readEnded) && this.#inFlight === 0 && !this.#closed) {
      this.#closed = true;
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

  /** Handles every complete frame it may; pauses the socket at a limit, resumes it below. */
  #pump(): void {
    try {
      while (!this.#closed && !this.#disconnecting) {
        if (this.#reader.phase === 'transmission' && this.#atLimit()) {
          if (!this.#paused) {
            this.#paused = true;
            this.#socket.pause();
          }
          return;
        }
        const frame = this.#reader.next();
        if (frame === undefined) {
          // The client closed its side: whatever is left is a frame it cut off.
          if (this.#readEnded) this.#reader.finish();
          break;
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
      this.#context.log({ level: 'warn', event: 'protocolError', connection: this.#id, message: error.message, reason: error.reason, error });
    } else {
      this.#context.log({ level: 'error', event: 'internalError', connection: this.#id, message: String(error), error });
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
    this.#context.log({ level: 'info', event: 'optionRefused', connection: this.#id, message });
    this.#reply(option, replyType);
  }

  #handleOption(option: number, data: Buffer): void {
    switch (option) {
      case NbdOption.exportName: {
        const name = data.toString('utf8');
        const found = this.#find(name, data.length);
        if (found === undefined) throw new NbdProtocolError('unknownExportName', undefined, `NBD_OPT_EXPORT_NAME of unknown export '${name.slice(0, 64)}'`);
        const readOnly = found.readOnly();
        this.#write(encodeExportNameReply(found.sizeBytes, transmissionFlags(readOnly), this.#noZeroes));
        this.#enterTransmission(found, readOnly);
        return;
      }
      case NbdOption.abort:
        this.#reply(option, NbdReply.ack);
        this.#disconnecting = true;
        this.#closed = true;
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

  #enterTransmission(exported: NbdExport, readOnly: boolean): void {
    this.#export = exported;
    this.#readOnly = readOnly;
    this.#reader.phase = 'transmission';
  }

  #handleRequest(request: NbdRequestHeader, payload: Buffer | undefined): void {
    const exported = this.#export;
    assert(exported !== undefined, 'a request comes after the export is chosen', 'no export');
    const counters = this.#context.counters;
    counters.requests[kindOf(request.type)] += 1;
    if (request.type === NbdCommand.disc) {
      this.#disconnecting = true;
      this.#endIfIdle();
      return;
    }
    const bytes = request.type === NbdCommand.read || request.type === NbdCommand.write ? request.length : 0;
    this.#inFlight += 1;
    this.#inFlightBytes += bytes;
    const done = this.#execute(exported, request, payload).then(
      (outcome) => this.#sendReply(request, outcome),
      (error: unknown) => this.#fail(error),
    );
    const isWrite = request.type === NbdCommand.write || request.type === NbdCommand.trim || request.type === NbdCommand.writeZeroes;
    if (isWrite) this.#pendingWrites.add(done);
    void done.finally(() => {
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
      connection: this.#id,
      message: `${kindOf(request.type)} offset=${request.offset} length=${request.length}: ${error instanceof Error ? error.message : String(error)}`,
      error,
    });
    return { errno: NbdErrno.EIO };
  }

  #sendReply(request: NbdRequestHeader, outcome: { errno: NbdErrnoValue | 0; data?: Uint8Array }): void {
    if (this.#socket.destroyed || !this.#socket.writable) return;
    const counters = this.#context.counters;
    if (outcome.errno !== 0) counters.errorReplies += 1;
    if (outcome.errno === 0 && outcome.data !== undefined) {
      this.#write(encodeSimpleReply(0, request.cookie));
      this.#write(outcome.data);
      counters.bytesRead += outcome.data.length;
      return;
    }
    this.#write(encodeSimpleReply(outcome.errno, request.cookie));
  }

  /**
   * Queues bytes for the client. The socket is corked at the first write of a tick and uncorked once the
   * tick's callbacks and promise reactions have run (`process.nextTick` runs after the microtask queue
   * drains), so the replies of requests that complete together (every acknowledgement one peer frame
   * brings, every read of one incoming chunk) leave in one writev rather than one syscall each. The reply
   * back-pressure limit still sees them: `writableLength` counts corked bytes.
   */
  #write(bytes: Uint8Array): void {
    if (!this.#corked) {
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    this.#socket.write(bytes);
  }
}

/**
 * An NBD server over TCP exporting what `options.exports()` lists. `listen` binds it, `close` stops it and
 * drops every connection; `counters` says what it has done.
 */
export class NbdServer {
  readonly #options: NbdServerOptions;
  readonly #log: NbdLogger;
  readonly #counters: NbdCounters = {
    connectionsAccepted: 0,
    connectionsOpen: 0,
    connectionsRefused: 0,
    protocolErrors: 0,
    requests: { read: 0, write: 0, flush: 0, trim: 0, writeZeroes: 0, disc: 0, other: 0 },
    errorReplies: 0,
    bytesRead: 0,
    bytesWritten: 0,
  };
  readonly #connections = new Set<NbdConnection>();
  #server: Server | undefined;
  #nextId = 1;

  constructor(options: NbdServerOptions) {
    this.#options = options;
    this.#log = options.logger ?? defaultLogger;
  }

  /** Listens on `host:port` (port 0: any free port) and resolves with the bound port. */
  listen(port: number, host = '127.0.0.1'): Promise<number> {
    assert(this.#server === undefined, 'an NBD server listens once', 'listen called twice');
    const context: ServerContext = { options: this.#options, log: this.#log, counters: this.#counters };
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
    if (this.#connections.size >= nbdConnectionsMax) {
      this.#counters.connectionsRefused += 1;
      this.#log({ level: 'warn', event: 'connectionsMax', connection: id, message: `${nbdConnectionsMax} connections open; closing this one` });
      socket.destroy();
      return;
    }
    const connection = new NbdConnection(context, socket, id);
    this.#connections.add(connection);
    this.#counters.connectionsOpen += 1;
    socket.once('close', () => {
      this.#connections.delete(connection);
      this.#counters.connectionsOpen -= 1;
    });
  }

  /** Stops listening and closes every connection (requests in flight get no reply). */
  close(): Promise<void> {
    const server = this.#server;
    for (const connection of this.#connections) connection.destroy();
    if (server === undefined) return Promise.resolve();
    return new Promise((resolve, reject) => server.close((error) => (error === undefined ? resolve() : reject(error))));
  }

  /** A snapshot of the counters. */
  counters(): NbdCounters {
    return { ...this.#counters, requests: { ...this.#counters.requests } };
  }
}
