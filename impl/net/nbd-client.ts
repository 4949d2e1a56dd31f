/**
 * A minimal NBD client: what a host does to reach a site's export, small enough to drive thousands of single
 * writes from a test without a process per write (qemu-io costs tens of milliseconds each). Fixed newstyle
 * only: the greeting, the client flags, `NBD_OPT_GO` for one export (its size and transmission flags, the
 * read-only one among them, come with it), then simple requests one at a time: `NBD_CMD_READ`,
 * `NBD_CMD_WRITE` (optionally FUA), `NBD_CMD_FLUSH` and `NBD_CMD_DISC`. No structured replies, no
 * pipelining. With `tls` it starts TLS first (`NBD_OPT_STARTTLS`, then a TLS 1.3 handshake on the same socket
 * with the host's certificate, the server's certificate checked to name the site expected) and chooses the
 * export inside TLS, as a host must where a site requires it (`nbdTls: required`); a server that refuses
 * STARTTLS is an {@link NbdClientError} of kind `tlsRefused`, never a silent fall back to plain. The
 * constants are the server's (`nbd-protocol.ts`), so both speak the spec's names.
 *
 * Errors are values: an export the server does not list is an {@link NbdClientError} of kind
 * `unknownExport`; an error in a reply is an {@link NbdReplyError} with the spec's errno (EPERM for a
 * write the export refuses, ENOSPC past its end, ...); anything that breaks the protocol or the connection,
 * or an answer later than `timeoutMs`, is an {@link NbdClientError} and ends the connection.
 *
 * Limits: one request in flight; a request's data at most {@link nbdPayloadBytesMax}; an option reply's
 * data at most {@link nbdOptionBytesMax}; every answer within the connection's `timeoutMs`.
 */

import * as net from 'node:net';
import * as tls from 'node:tls';
import { tlsClientOptions, type Principal, type TlsCredentials } from './tls-identity.ts';
import { encodeRequestHeader, NbdClientFlag, NbdCommand, NbdCommandFlag, NbdErrno, NbdHandshakeFlag, NbdInfo, NbdOption, NbdReply, NbdTransmissionFlag, nbdGreetingBytes, nbdMagic, nbdOptionBytesMax, nbdOptionMagic, nbdOptionReplyHeaderBytes, nbdOptionReplyMagic, nbdPayloadBytesMax, nbdSimpleReplyBytes, nbdSimpleReplyMagic } from './nbd-protocol.ts';

/** Default deadline of the handshake and of each reply, in milliseconds. */
export const nbdClientTimeoutMsDefault = 10_000;

/** Option replies one handshake reads at most before its ACK (a GO answers with a few INFO replies). */
export const nbdClientOptionRepliesMax = 64;

/** How a connection failed. */
export type NbdClientFailure = 'unknownExport' | 'optionRefused' | 'tlsRefused' | 'tlsRequired' | 'protocol' | 'closed' | 'timeout' | 'tooLarge';

/** TLS for a connection: the host's credentials and the principal the server's certificate must name. */
export interface NbdClientTls {
  readonly credentials: TlsCredentials;
  /** The site dialled (`{ kind: 'site', site: 2 }`): a certificate naming anything else is refused. */
  readonly server: Principal;
}

/** The connection failed or broke the protocol; it is closed. */
export class NbdClientError extends Error {
  constructor(
    readonly kind: NbdClientFailure,
    readonly detail: string,
  ) {
    super(`nbd client ${kind}: ${detail}`);
    this.name = 'NbdClientError';
  }
}

const errnoNames = new Map<number, string>(Object.entries(NbdErrno).map(([name, value]) => [value, name]));

/** The server answered a request with an error; the connection stays usable. */
export class NbdReplyError extends Error {
  /** The spec's name of the error (`EPERM`, `ENOSPC`, ...), or `E<number>`. */
  readonly errnoName: string;
  constructor(
    readonly command: 'read' | 'write' | 'flush',
    readonly errno: number,
  ) {
    const name = errnoNames.get(errno) ?? `E${errno}`;
    super(`nbd ${command} failed: ${name}`);
    this.name = 'NbdReplyError';
    this.errnoName = name;
  }
}

/** Bytes arriving on a socket, taken in exact amounts, one reader at a time. */
class ByteReader {
  readonly #chunks: Buffer[] = [];
  #bytes = 0;
  #want: { bytes: number; resolve(data: Buffer): void; reject(error: Error): void } | null = null;
  #failure: NbdClientError | null = null;

  /** Bytes received and not yet read. */
  get bufferedBytes(): number {
    return this.#bytes;
  }

  push(chunk: Buffer): void {
    this.#chunks.push(chunk);
    this.#bytes += chunk.length;
    this.#pump();
  }

  fail(error: NbdClientError): void {
    this.#failure ??= error;
    const want = this.#want;
    this.#want = null;
    want?.reject(this.#failure);
  }

  read(bytes: number): Promise<Buffer> {
    if (this.#failure !== null) return Promise.reject(this.#failure);
    return new Promise((resolve, reject) => {
      this.#want = { bytes, resolve, reject };
      this.#pump();
    });
  }

  #pump(): void {
    const want = this.#want;
    if (want === null || this.#bytes < want.bytes) return;
    this.#want = null;
    const all = this.#chunks.length === 1 ? (this.#chunks[0] as Buffer) : Buffer.concat(this.#chunks);
    this.#chunks.length = 0;
    const rest = all.subarray(want.bytes);
    if (rest.length > 0) this.#chunks.push(rest);
    this.#bytes = rest.length;
    want.resolve(all.subarray(0, want.bytes));
  }
}

/** One connection to one export, after `NBD_OPT_GO`. */
export class NbdClient {
  readonly #socket: net.Socket | tls.TLSSocket;
  readonly #reader: ByteReader;
  readonly #timeoutMs: number;
  #nextCookie = 1n;
  /** The request under way: requests are serialised. */
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;

  private constructor(
    socket: net.Socket | tls.TLSSocket,
    reader: ByteReader,
    timeoutMs: number,
    /** The export's size in bytes, as `NBD_INFO_EXPORT` gave it. */
    readonly sizeBytes: number,
    /** The transmission flags of the export at the handshake. */
    readonly transmissionFlags: number,
  ) {
    this.#socket = socket;
    this.#reader = reader;
    this.#timeoutMs = timeoutMs;
    // A connection the server ended is closed here too: the next request fails at once.
    socket.once('close', () => {
      this.#closed = true;
    });
  }

  /** Whether the export was read-only when this connection opened it (writes then get EPERM). */
  get readOnly(): boolean {
    return (this.transmissionFlags & NbdTransmissionFlag.readOnly) !== 0;
  }

  /** Whether the connection has ended (closed, or broken by an error). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Connects to `host:port`, starts TLS when `tls` is given, and opens export `name` with `NBD_OPT_GO`;
   * rejects with {@link NbdClientError}.
   */
  static async connect(host: string, port: number, name: string, timeoutMs = nbdClientTimeoutMsDefault, tlsOptions?: NbdClientTls): Promise<NbdClient> {
    const raw = net.connect({ host, port, noDelay: true });
    const reader = new ByteReader();
    const listen = (socket: net.Socket): void => {
      socket.on('data', (chunk: Buffer) => reader.push(chunk));
      socket.on('error', (error) => reader.fail(new NbdClientError('closed', error.message)));
      socket.on('close', () => reader.fail(new NbdClientError('closed', 'the server closed the connection')));
    };
    listen(raw);
    let socket: net.Socket = raw;
    const handshakeAll = async (): Promise<{ sizeBytes: number; flags: number }> => {
      await greet(raw, reader);
      if (tlsOptions !== undefined) {
        socket = await startTls(raw, reader, tlsOptions);
        listen(socket);
      }
      return go(socket, reader, name);
    };
    try {
      const { sizeBytes, flags } = await withDeadline(handshakeAll(), timeoutMs, 'the handshake');
      return new NbdClient(socket, reader, timeoutMs, sizeBytes, flags);
    } catch (error) {
      socket.destroy();
      raw.destroy();
      throw error;
    }
  }

  /** Writes `data` at `offset`; resolves when the server answered, rejects with {@link NbdReplyError} or {@link NbdClientError}. */
  write(offset: number, data: Uint8Array, options: { fua?: boolean } = {}): Promise<void> {
    if (data.length > nbdPayloadBytesMax) return Promise.reject(new NbdClientError('tooLarge', `a write of ${data.length} bytes (at most ${nbdPayloadBytesMax})`));
    const flags = options.fua === true ? NbdCommandFlag.fua : 0;
    return this.#request('write', NbdCommand.write, flags, offset, data.length, data, 0).then(() => undefined);
  }

  /** Reads `length` bytes at `offset`. */
  read(offset: number, length: number): Promise<Uint8Array> {
    if (length > nbdPayloadBytesMax) return Promise.reject(new NbdClientError('tooLarge', `a read of ${length} bytes (at most ${nbdPayloadBytesMax})`));
    return this.#request('read', NbdCommand.read, 0, offset, length, null, length);
  }

  /** Asks the server to make every completed write durable. */
  flush(): Promise<void> {
    return this.#request('flush', NbdCommand.flush, 0, 0, 0, null, 0).then(() => undefined);
  }

  /** Sends `NBD_CMD_DISC` (after the request under way) and closes the connection. */
  async close(): Promise<void> {
    if (this.#closed) return;
    await this.#tail.catch(() => undefined);
    if (this.#closed) return;
    this.#closed = true;
    const header = requestHeader(NbdCommand.disc, 0, this.#nextCookie, 0, 0);
    await new Promise<void>((resolve) => {
      this.#socket.once('close', () => resolve());
      this.#socket.end(header);
      setTimeout(() => {
        this.#socket.destroy();
        resolve();
      }, this.#timeoutMs).unref();
    });
  }

  #request(command: 'read' | 'write' | 'flush', type: number, flags: number, offset: number, length: number, data: Uint8Array | null, replyBytes: number): Promise<Uint8Array> {
    const run = async (): Promise<Uint8Array> => {
      if (this.#closed) throw new NbdClientError('closed', 'the connection is closed');
      const cookie = this.#nextCookie;
      this.#nextCookie += 1n;
      this.#socket.write(requestHeader(type, flags, cookie, offset, length));
      if (data !== null && data.length > 0) this.#socket.write(data);
      try {
        return await withDeadline(this.#reply(command, cookie, replyBytes), this.#timeoutMs, `the reply to ${command}`);
      } catch (error) {
        if (error instanceof NbdClientError) this.#break(error);
        throw error;
      }
    };
    const result = this.#tail.then(run, run);
    this.#tail = result.catch(() => undefined);
    return result;
  }

  async #reply(command: 'read' | 'write' | 'flush', cookie: bigint, replyBytes: number): Promise<Uint8Array> {
    const reply = await this.#reader.read(nbdSimpleReplyBytes);
    const magic = reply.readUInt32BE(0);
    if (magic !== nbdSimpleReplyMagic) throw new NbdClientError('protocol', `reply magic 0x${magic.toString(16)} (structured replies were not asked for)`);
    const errno = reply.readUInt32BE(4);
    const answered = reply.readBigUInt64BE(8);
    if (answered !== cookie) throw new NbdClientError('protocol', `a reply to cookie ${answered} while ${cookie} was the one request in flight`);
    if (errno !== 0) throw new NbdReplyError(command, errno);
    return replyBytes === 0 ? new Uint8Array(0) : new Uint8Array(await this.#reader.read(replyBytes));
  }

  #break(error: NbdClientError): void {
    this.#closed = true;
    this.#reader.fail(error);
    this.#socket.destroy();
  }
}

function requestHeader(type: number, flags: number, cookie: bigint, offset: number, length: number): Buffer {
  return encodeRequestHeader({ type, flags, cookie, offset: BigInt(offset), length });
}

/** Reads the greeting and sends the client flags; resolves with the server's handshake flags. */
async function greet(socket: net.Socket, reader: ByteReader): Promise<number> {
  const greeting = await reader.read(nbdGreetingBytes);
  if (greeting.readBigUInt64BE(0) !== nbdMagic || greeting.readBigUInt64BE(8) !== nbdOptionMagic) {
    throw new NbdClientError('protocol', 'the greeting is not NBDMAGIC IHAVEOPT (oldstyle servers are not supported)');
  }
  const handshakeFlags = greeting.readUInt16BE(16);
  if ((handshakeFlags & NbdHandshakeFlag.fixedNewstyle) === 0) throw new NbdClientError('protocol', 'the server is not fixed newstyle');
  const clientFlags = Buffer.alloc(4);
  clientFlags.writeUInt32BE(NbdClientFlag.fixedNewstyle | (handshakeFlags & NbdHandshakeFlag.noZeroes ? NbdClientFlag.noZeroes : 0));
  socket.write(clientFlags);
  return handshakeFlags;
}

function optionHeader(option: number, dataBytes: number): Buffer {
  const header = Buffer.alloc(16);
  header.writeBigUInt64BE(nbdOptionMagic, 0);
  header.writeUInt32BE(option, 8);
  header.writeUInt32BE(dataBytes, 12);
  return header;
}

/** One option reply: its type and data. */
async function optionReply(reader: ByteReader): Promise<{ replyType: number; data: Buffer }> {
  const header = await reader.read(nbdOptionReplyHeaderBytes);
  if (header.readBigUInt64BE(0) !== nbdOptionReplyMagic) throw new NbdClientError('protocol', 'an option reply without its magic');
  const replyType = header.readUInt32BE(12);
  const length = header.readUInt32BE(16);
  if (length > nbdOptionBytesMax) throw new NbdClientError('protocol', `an option reply of ${length} bytes`);
  const data = length === 0 ? Buffer.alloc(0) : await reader.read(length);
  return { replyType, data };
}

/**
 * `NBD_OPT_STARTTLS`: on its ACK, a TLS 1.3 client handshake over the same socket with the host's
 * certificate; resolves with the TLS socket once the server's certificate named the site expected.
 */
async function startTls(raw: net.Socket, reader: ByteReader, options: NbdClientTls): Promise<tls.TLSSocket> {
  raw.write(optionHeader(NbdOption.startTls, 0));
  const { replyType, data } = await optionReply(reader);
  if (replyType !== NbdReply.ack) throw new NbdClientError('tlsRefused', `NBD_OPT_STARTTLS answered with reply type 0x${replyType.toString(16)}${data.length ? `: ${data.toString('utf8')}` : ''}`);
  if (reader.bufferedBytes !== 0) throw new NbdClientError('protocol', `${reader.bufferedBytes} bytes after the STARTTLS ACK, before TLS`);
  // From here the TLS layer reads the socket: the plain listeners go.
  raw.removeAllListeners('data');
  raw.removeAllListeners('close');
  return new Promise((resolve, reject) => {
    const secure = tls.connect({ socket: raw, ...tlsClientOptions(options.credentials, options.server) }, () => {
      secure.off('error', reject);
      resolve(secure);
    });
    secure.once('error', (error) => {
      // The TLS layer holds the TCP connection now: it is ended here, or the server would see it open.
      secure.destroy();
      raw.destroy();
      reject(new NbdClientError('tlsRefused', `the TLS handshake failed: ${error.message}`));
    });
  });
}

/** `NBD_OPT_GO` for export `name`, up to its ACK. */
async function go(socket: net.Socket, reader: ByteReader, name: string): Promise<{ sizeBytes: number; flags: number }> {
  const nameBytes = Buffer.from(name, 'utf8');
  const data = Buffer.alloc(4 + nameBytes.length + 2);
  data.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(data, 4);
  data.writeUInt16BE(0, 4 + nameBytes.length); // no information requests: NBD_INFO_EXPORT comes anyway
  socket.write(Buffer.concat([optionHeader(NbdOption.go, data.length), data]));

  let exported: { sizeBytes: number; flags: number } | null = null;
  for (let replies = 0; replies < nbdClientOptionRepliesMax; replies += 1) {
    const { replyType, data } = await optionReply(reader);
    if (replyType === NbdReply.ack) {
      if (exported === null) throw new NbdClientError('protocol', 'NBD_OPT_GO acknowledged without NBD_INFO_EXPORT');
      return exported;
    }
    if (replyType === NbdReply.info) {
      if (data.length >= 2 && data.readUInt16BE(0) === NbdInfo.export) {
        if (data.length !== 12) throw new NbdClientError('protocol', `NBD_INFO_EXPORT of ${data.length} bytes`);
        exported = { sizeBytes: Number(data.readBigUInt64BE(2)), flags: data.readUInt16BE(10) };
      }
      continue;
    }
    if (replyType === NbdReply.errTlsReqd) throw new NbdClientError('tlsRequired', 'the server requires TLS (NBD_REP_ERR_TLS_REQD): connect with host credentials');
    if (replyType === NbdReply.errUnknown) throw new NbdClientError('unknownExport', `the server has no export ${JSON.stringify(name)}`);
    if (replyType >= 2 ** 31) throw new NbdClientError('optionRefused', `NBD_OPT_GO refused with reply type 0x${replyType.toString(16)}${data.length ? `: ${data.toString('utf8')}` : ''}`);
    throw new NbdClientError('protocol', `unexpected option reply type ${replyType}`);
  }
  throw new NbdClientError('protocol', `more than ${nbdClientOptionRepliesMax} option replies without an ACK`);
}

/** Rejects with a `timeout` {@link NbdClientError} when `promise` takes longer than `timeoutMs`. */
function withDeadline<T>(promise: Promise<T>, timeoutMs: number, what: string): Promise<T> {
  // The loser of the race still settles (the connection is ended after a timeout): it is handled here.
  promise.catch(() => undefined);
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new NbdClientError('timeout', `no answer to ${what} within ${timeoutMs} ms`)), timeoutMs);
  });
  return Promise.race([promise, deadline]).finally(() => clearTimeout(timer));
}
