/**
 * The NBD protocol at the byte level (https://github.com/NetworkBlockDevice/nbd/blob/master/doc/proto.md):
 * its constants and limits, the backend interface an export implements ({@link NbdExport}), the `parse*`
 * functions that check one header each (throwing {@link NbdProtocolError}), {@link checkRequest} that decides a
 * request's errno before the backend sees it, the `encode*` functions that build what is sent, and
 * {@link NbdFrameReader}, which cuts incoming bytes into frames. Pure and tested without sockets; the server
 * (`nbd-server.ts`) and the minimal client (`nbd-client.ts`) both speak through it.
 */

import { assert } from '../core/invariant.ts';

// ---------------------------------------------------------------------------------------------------------
// Protocol constants (the spec's names, camelCased).

/** `NBDMAGIC`: the first 8 bytes the server sends. */
export const nbdMagic = 0x4e42444d41474943n;
/** `IHAVEOPT`: the newstyle magic, sent by the server in the greeting and by the client before every option. */
export const nbdOptionMagic = 0x49484156454f5054n;
/** Magic of every fixed-newstyle option reply. */
export const nbdOptionReplyMagic = 0x3e889045565a9n;
/** Magic of a transmission request. */
export const nbdRequestMagic = 0x25609513;
/** Magic of a simple reply. */
export const nbdSimpleReplyMagic = 0x67446698;

/** Handshake flags the server sends. */
export const NbdHandshakeFlag = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;
/** Client flags the server understands; any other bit closes the connection. */
export const NbdClientFlag = { fixedNewstyle: 1 << 0, noZeroes: 1 << 1 } as const;

/** Option codes (`NBD_OPT_*`). Those not handled here are answered with `NBD_REP_ERR_UNSUP`. */
export const NbdOption = {
  exportName: 1,
  abort: 2,
  list: 3,
  startTls: 5,
  info: 6,
  go: 7,
  structuredReply: 8,
  listMetaContext: 9,
  setMetaContext: 10,
  extendedHeaders: 11,
} as const;

/** Option reply types (`NBD_REP_*`); the errors have bit 31 set. */
export const NbdReply = {
  ack: 1,
  server: 2,
  info: 3,
  errUnsup: 2 ** 31 + 1,
  errPolicy: 2 ** 31 + 2,
  errInvalid: 2 ** 31 + 3,
  errTlsReqd: 2 ** 31 + 5,
  errUnknown: 2 ** 31 + 6,
  errShutdown: 2 ** 31 + 7,
  errTooBig: 2 ** 31 + 9,
} as const;

/** Information types of `NBD_OPT_INFO` / `NBD_OPT_GO` (`NBD_INFO_*`). */
export const NbdInfo = { export: 0, name: 1, description: 2, blockSize: 3 } as const;

/** Transmission flags (`NBD_FLAG_*`, the 16 bits sent with the export's size). */
export const NbdTransmissionFlag = {
  hasFlags: 1 << 0,
  readOnly: 1 << 1,
  sendFlush: 1 << 2,
  sendFua: 1 << 3,
  rotational: 1 << 4,
  sendTrim: 1 << 5,
  sendWriteZeroes: 1 << 6,
  sendDf: 1 << 7,
  canMultiConn: 1 << 8,
} as const;

/** Command types (`NBD_CMD_*`). */
export const NbdCommand = {
  read: 0,
  write: 1,
  disc: 2,
  flush: 3,
  trim: 4,
  cache: 5,
  writeZeroes: 6,
  blockStatus: 7,
  resize: 8,
} as const;

/** Command flags (`NBD_CMD_FLAG_*`). */
export const NbdCommandFlag = { fua: 1 << 0, noHole: 1 << 1, df: 1 << 2, reqOne: 1 << 3, fastZero: 1 << 4 } as const;

/** The error values the spec allows in a reply (`NBD_E*`); a backend rejects with one of these in an {@link NbdError}. */
export const NbdErrno = {
  EPERM: 1,
  EIO: 5,
  ENOMEM: 12,
  EINVAL: 22,
  ENOSPC: 28,
  EOVERFLOW: 75,
  ENOTSUP: 95,
  ESHUTDOWN: 108,
} as const;

/** One of the spec's error values. */
export type NbdErrnoValue = (typeof NbdErrno)[keyof typeof NbdErrno];

/** Whether `value` is one of the spec's error values (anything else must not reach a client). */
export function isNbdErrno(value: number): value is NbdErrnoValue {
  return (Object.values(NbdErrno) as number[]).includes(value);
}

/** Bytes of the server's greeting: NBDMAGIC, IHAVEOPT, handshake flags. */
export const nbdGreetingBytes = 18;
/** Bytes of the client flags. */
export const nbdClientFlagsBytes = 4;
/** Bytes of an option header: IHAVEOPT, option, length. */
export const nbdOptionHeaderBytes = 16;
/** Bytes of an option reply header: magic, option, reply type, length. */
export const nbdOptionReplyHeaderBytes = 20;
/** Bytes of a request header: magic, flags, type, cookie, offset, length. */
export const nbdRequestHeaderBytes = 28;
/** Bytes of a simple reply header: magic, error, cookie. */
export const nbdSimpleReplyBytes = 16;
/** Zero bytes after an `NBD_OPT_EXPORT_NAME` reply unless the client set C_NO_ZEROES. */
export const nbdExportNameZeroesBytes = 124;

// ---------------------------------------------------------------------------------------------------------
// Limits.

/**
 * Largest READ or WRITE payload, in bytes: 32 MiB, the spec's default maximum payload (so a client that did
 * not ask for block sizes stays inside it) and half the volume's `ioBytesMax`. Advertised as the maximum in
 * `NBD_INFO_BLOCK_SIZE`.
 */
export const nbdPayloadBytesMax = 32 * 1024 * 1024;

/** Smallest block advertised in `NBD_INFO_BLOCK_SIZE`, in bytes: volumes are byte-addressed. */
export const nbdBlockBytesMin = 1;

/** Largest option data, in bytes: an INFO/GO with a 4096-byte name and its info list fits many times over. */
export const nbdOptionBytesMax = 16 * 1024;

/** Largest export name, in bytes: the spec's limit on strings. A longer name is an unknown export. */
export const nbdNameBytesMax = 4096;

/** Most options one handshake may send before the server calls it a loop and disconnects. */
export const nbdOptionsPerHandshakeMax = 128;

/** Most requests in flight on one connection (received, not yet replied to); reading pauses at it. */
export const nbdRequestsInFlightMax = 64;

/**
 * Most READ and WRITE payload bytes in flight on one connection; reading pauses at it. At least
 * {@link nbdPayloadBytesMax}, so that one request of the largest size always fits.
 */
export const nbdInFlightBytesMax = 128 * 1024 * 1024;

/** Most reply bytes queued in a socket (a client that sends but does not read); reading pauses above it. */
export const nbdReplyBytesQueuedMax = 64 * 1024 * 1024;

/** Most connections open at once; a connection beyond it is closed at once and logged. */
export const nbdConnectionsMax = 128;

// ---------------------------------------------------------------------------------------------------------
// The backend.

/**
 * One export: a volume as the NBD server sees it. The site adapts its volume (and its write path, which
 * replicates before it resolves) to this interface; tests adapt a `MemoryVolume`.
 */
export interface NbdExport {
  /** The export name a client asks for, e.g. `"vol0"`. At most {@link nbdNameBytesMax} UTF-8 bytes. */
  readonly name: string;
  /** Shown by `NBD_OPT_LIST` and `NBD_INFO_DESCRIPTION`. */
  readonly description?: string;
  /** Size in bytes (a safe integer). */
  readonly sizeBytes: number;
  /** Preferred block size in bytes: a power of two in [512, {@link nbdPayloadBytesMax}]. */
  readonly blockBytes: number;
  /** Whether the export refuses writes; evaluated at the handshake for the READ_ONLY flag. */
  readOnly(): boolean;
  /** Reads `length` bytes at `offset` (inside the export, at most {@link nbdPayloadBytesMax}). */
  read(offset: number, length: number): Promise<Uint8Array> | Uint8Array;
  /** Writes `data` at `offset`; resolves when the write is acknowledged (durable first if `fua`). May reject with {@link NbdError}. */
  write(offset: number, data: Uint8Array, fua: boolean): Promise<void>;
  /** Makes every write that has resolved durable. */
  flush(): Promise<void>;
  /** Discards a range (a hint: reading it afterwards may return anything). `length` may exceed {@link nbdPayloadBytesMax}. */
  trim(offset: number, length: number): Promise<void>;
  /** Writes zeros over a range; `length` may exceed {@link nbdPayloadBytesMax}. */
  writeZeroes(offset: number, length: number, fua: boolean): Promise<void>;
}

/** A backend's refusal with the NBD error value the client gets (for example `EPERM` for a fenced site). */
export class NbdError extends Error {
  constructor(
    readonly errno: NbdErrnoValue,
    message: string,
  ) {
    super(message);
    this.name = 'NbdError';
  }
}

// ---------------------------------------------------------------------------------------------------------
// The pure byte level.

/** Why a client's bytes are not NBD: each closes the connection. */
export type NbdProtocolErrorReason =
  | 'badClientFlags'
  | 'clientNotFixedNewstyle'
  | 'badOptionMagic'
  | 'optionTooLarge'
  | 'optionsMax'
  | 'unknownExportName'
  | 'badRequestMagic'
  | 'truncated'
  | 'bytesBeforeTls'
  | 'exportNameBeforeTls';

/** A client broke the protocol; the server logs it and closes the connection. */
export class NbdProtocolError extends Error {
  constructor(
    readonly reason: NbdProtocolErrorReason,
    /** The offending value (a magic, a flag word, a length), when there is one. */
    readonly value: number | bigint | undefined,
    detail: string,
  ) {
    super(`NBD protocol error (${reason}): ${detail}`);
    this.name = 'NbdProtocolError';
  }
}

/** The client flags that matter after they are checked. */
export interface NbdClientFlags {
  readonly noZeroes: boolean;
}

/** Checks the client's 4 flag bytes; throws {@link NbdProtocolError} for an unknown bit or a non-fixed client. */
export function parseClientFlags(bytes: Uint8Array): NbdClientFlags {
  assert(bytes.length === nbdClientFlagsBytes, 'client flags are 4 bytes', () => `${bytes.length} bytes`);
  const flags = view(bytes).getUint32(0);
  const known = NbdClientFlag.fixedNewstyle | NbdClientFlag.noZeroes;
  if ((flags & ~known) !== 0) throw new NbdProtocolError('badClientFlags', flags, `unknown client flags 0x${flags.toString(16)}`);
  if ((flags & NbdClientFlag.fixedNewstyle) === 0) {
    throw new NbdProtocolError('clientNotFixedNewstyle', flags, 'client did not set NBD_FLAG_C_FIXED_NEWSTYLE');
  }
  return { noZeroes: (flags & NbdClientFlag.noZeroes) !== 0 };
}

/** An option header. */
export interface NbdOptionHeader {
  readonly option: number;
  /** Bytes of option data that follow. */
  readonly length: number;
}

/** Checks a 16-byte option header; throws {@link NbdProtocolError} for a bad magic or data over {@link nbdOptionBytesMax}. */
export function parseOptionHeader(bytes: Uint8Array): NbdOptionHeader {
  assert(bytes.length === nbdOptionHeaderBytes, 'option header is 16 bytes', () => `${bytes.length} bytes`);
  const v = view(bytes);
  const magic = v.getBigUint64(0);
  if (magic !== nbdOptionMagic) throw new NbdProtocolError('badOptionMagic', magic, `option magic 0x${magic.toString(16)}`);
  const option = v.getUint32(8);
  const length = v.getUint32(12);
  if (length > nbdOptionBytesMax) {
    throw new NbdProtocolError('optionTooLarge', length, `option ${option} has ${length} data bytes, more than ${nbdOptionBytesMax}`);
  }
  return { option, length };
}

/** A parsed `NBD_OPT_INFO` / `NBD_OPT_GO` request, or why it is malformed (answered `NBD_REP_ERR_INVALID`). */
export type NbdInfoRequest =
  | { readonly ok: true; readonly name: string; readonly nameBytes: number; readonly infos: readonly number[] }
  | { readonly ok: false; readonly detail: string };

/** Parses the data of an INFO/GO option: name length, name, count of info requests, the requests. */
export function parseInfoRequest(data: Uint8Array): NbdInfoRequest {
  if (data.length < 6) return { ok: false, detail: `INFO/GO data of ${data.length} bytes, less than 6` };
  const v = view(data);
  const nameBytes = v.getUint32(0);
  if (nameBytes > data.length - 6) return { ok: false, detail: `name length ${nameBytes} exceeds the option data` };
  const count = v.getUint16(4 + nameBytes);
  if (data.length !== 6 + nameBytes + 2 * count) {
    return { ok: false, detail: `${count} info requests do not fill the ${data.length - 6 - nameBytes} bytes left` };
  }
  const infos: number[] = [];
  for (let i = 0; i < count; i += 1) infos.push(v.getUint16(6 + nameBytes + 2 * i));
  const name = Buffer.from(data.buffer, data.byteOffset + 4, nameBytes).toString('utf8');
  return { ok: true, name, nameBytes, infos };
}

/** A request header. Offset is a bigint: the client may send any 64-bit value. */
export interface NbdRequestHeader {
  readonly flags: number;
  readonly type: number;
  /** The client's opaque cookie (the spec's older name: handle), echoed in the reply. */
  readonly cookie: bigint;
  readonly offset: bigint;
  readonly length: number;
}

/** Parses a 28-byte request header; throws {@link NbdProtocolError} for a bad magic. */
export function parseRequestHeader(bytes: Uint8Array): NbdRequestHeader {
  assert(bytes.length === nbdRequestHeaderBytes, 'request header is 28 bytes', () => `${bytes.length} bytes`);
  const v = view(bytes);
  const magic = v.getUint32(0);
  if (magic !== nbdRequestMagic) throw new NbdProtocolError('badRequestMagic', magic, `request magic 0x${magic.toString(16)}`);
  return { flags: v.getUint16(4), type: v.getUint16(6), cookie: v.getBigUint64(8), offset: v.getBigUint64(16), length: v.getUint32(24) };
}

/** What {@link checkRequest} needs to know of the export. */
export interface NbdRequestTarget {
  readonly sizeBytes: number;
  /** Read-only as announced at the handshake. */
  readonly readOnly: boolean;
}

/**
 * The errno a request gets before the backend is called (0 when it may go ahead): the flags it may carry,
 * the payload limit, read-only, and the bounds (EINVAL for READ and TRIM, ENOSPC for WRITE and
 * WRITE_ZEROES). DISC is checked by the caller (it has no reply); FLUSH ignores offset and length.
 */
export function checkRequest(request: NbdRequestHeader, target: NbdRequestTarget): NbdErrnoValue | 0 {
  const { fua, noHole } = NbdCommandFlag;
  const pastEnd = request.offset + BigInt(request.length) > BigInt(target.sizeBytes);
  switch (request.type) {
    case NbdCommand.read:
      if ((request.flags & ~fua) !== 0) return NbdErrno.EINVAL;
      if (request.length > nbdPayloadBytesMax || pastEnd) return NbdErrno.EINVAL;
      return 0;
    case NbdCommand.write:
      if ((request.flags & ~fua) !== 0 || request.length > nbdPayloadBytesMax) return NbdErrno.EINVAL;
      if (target.readOnly) return NbdErrno.EPERM;
      return pastEnd ? NbdErrno.ENOSPC : 0;
    case NbdCommand.flush:
      return (request.flags & ~fua) !== 0 ? NbdErrno.EINVAL : 0;
    case NbdCommand.trim:
      if ((request.flags & ~fua) !== 0) return NbdErrno.EINVAL;
      if (target.readOnly) return NbdErrno.EPERM;
      return pastEnd ? NbdErrno.EINVAL : 0;
    case NbdCommand.writeZeroes:
      if ((request.flags & ~(fua | noHole)) !== 0) return NbdErrno.EINVAL;
      if (target.readOnly) return NbdErrno.EPERM;
      return pastEnd ? NbdErrno.ENOSPC : 0;
    default:
      return NbdErrno.EINVAL;
  }
}

/** A request header as a client sends it: the minimal client and the tests' raw clients build theirs here. */
export function encodeRequestHeader(request: NbdRequestHeader): Buffer {
  const out = Buffer.alloc(nbdRequestHeaderBytes);
  out.writeUInt32BE(nbdRequestMagic, 0);
  out.writeUInt16BE(request.flags, 4);
  out.writeUInt16BE(request.type, 6);
  out.writeBigUInt64BE(request.cookie, 8);
  out.writeBigUInt64BE(request.offset, 16);
  out.writeUInt32BE(request.length, 24);
  return out;
}

/** The transmission flags of an export. */
export function transmissionFlags(readOnly: boolean): number {
  const f = NbdTransmissionFlag;
  return f.hasFlags | f.sendFlush | f.sendFua | f.sendTrim | f.sendWriteZeroes | (readOnly ? f.readOnly : 0);
}

/** The server's greeting: NBDMAGIC, IHAVEOPT, FIXED_NEWSTYLE | NO_ZEROES. */
export function encodeGreeting(): Buffer {
  const out = Buffer.alloc(nbdGreetingBytes);
  out.writeBigUInt64BE(nbdMagic, 0);
  out.writeBigUInt64BE(nbdOptionMagic, 8);
  out.writeUInt16BE(NbdHandshakeFlag.fixedNewstyle | NbdHandshakeFlag.noZeroes, 16);
  return out;
}

/** A fixed-newstyle option reply with its data. */
export function encodeOptionReply(option: number, replyType: number, data: Uint8Array = new Uint8Array(0)): Buffer {
  const out = Buffer.alloc(nbdOptionReplyHeaderBytes + data.length);
  out.writeBigUInt64BE(nbdOptionReplyMagic, 0);
  out.writeUInt32BE(option, 8);
  out.writeUInt32BE(replyType, 12);
  out.writeUInt32BE(data.length, 16);
  out.set(data, nbdOptionReplyHeaderBytes);
  return out;
}

/** The data of an `NBD_REP_SERVER`: name length, name, description. */
export function encodeServerEntry(name: string, description = ''): Buffer {
  const nameBytes = Buffer.from(name, 'utf8');
  const descriptionBytes = Buffer.from(description, 'utf8');
  const out = Buffer.alloc(4 + nameBytes.length + descriptionBytes.length);
  out.writeUInt32BE(nameBytes.length, 0);
  out.set(nameBytes, 4);
  out.set(descriptionBytes, 4 + nameBytes.length);
  return out;
}

/** The data of an `NBD_REP_INFO` of type `NBD_INFO_EXPORT`: type, size, transmission flags. */
export function encodeInfoExport(sizeBytes: number, flags: number): Buffer {
  const out = Buffer.alloc(12);
  out.writeUInt16BE(NbdInfo.export, 0);
  out.writeBigUInt64BE(BigInt(sizeBytes), 2);
  out.writeUInt16BE(flags, 10);
  return out;
}

/** The data of an `NBD_REP_INFO` of type `NBD_INFO_BLOCK_SIZE`: type, minimum, preferred, maximum. */
export function encodeInfoBlockSize(minimumBytes: number, preferredBytes: number, maximumBytes: number): Buffer {
  const out = Buffer.alloc(14);
  out.writeUInt16BE(NbdInfo.blockSize, 0);
  out.writeUInt32BE(minimumBytes, 2);
  out.writeUInt32BE(preferredBytes, 6);
  out.writeUInt32BE(maximumBytes, 10);
  return out;
}

/** The data of an `NBD_REP_INFO` carrying a string (`NBD_INFO_NAME`, `NBD_INFO_DESCRIPTION`). */
export function encodeInfoString(infoType: number, text: string): Buffer {
  const textBytes = Buffer.from(text, 'utf8');
  const out = Buffer.alloc(2 + textBytes.length);
  out.writeUInt16BE(infoType, 0);
  out.set(textBytes, 2);
  return out;
}

/** The reply to `NBD_OPT_EXPORT_NAME`: size, transmission flags, and 124 zeros unless the client set C_NO_ZEROES. */
export function encodeExportNameReply(sizeBytes: number, flags: number, noZeroes: boolean): Buffer {
  const out = Buffer.alloc(10 + (noZeroes ? 0 : nbdExportNameZeroesBytes));
  out.writeBigUInt64BE(BigInt(sizeBytes), 0);
  out.writeUInt16BE(flags, 8);
  return out;
}

/** A simple reply header (a READ's data follows it when `errno` is 0). */
export function encodeSimpleReply(errno: NbdErrnoValue | 0, cookie: bigint): Buffer {
  const out = Buffer.alloc(nbdSimpleReplyBytes);
  out.writeUInt32BE(nbdSimpleReplyMagic, 0);
  out.writeUInt32BE(errno, 4);
  out.writeBigUInt64BE(cookie, 8);
  return out;
}

/**
 * The block sizes advertised for an export: minimum {@link nbdBlockBytesMin}, preferred its `blockBytes`,
 * maximum {@link nbdPayloadBytesMax}. Asserts the spec's constraints (preferred a power of two, at least 512,
 * at most the maximum).
 */
export function blockSizesOf(exported: Pick<NbdExport, 'blockBytes'>): { minimum: number; preferred: number; maximum: number } {
  const preferred = exported.blockBytes;
  assert(Number.isSafeInteger(preferred) && preferred >= 512, 'export block size at least 512', () => `${preferred}`);
  assert((preferred & (preferred - 1)) === 0, 'export block size a power of two', () => `${preferred}`);
  assert(preferred <= nbdPayloadBytesMax, 'export block size at most the payload limit', () => `${preferred}`);
  return { minimum: nbdBlockBytesMin, preferred, maximum: nbdPayloadBytesMax };
}

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Which frames the reader expects next: set by the server as the session moves on. */
export type NbdPhase = 'clientFlags' | 'options' | 'transmission';

/** A unit of the client's byte stream. */
export type NbdFrame =
  | { readonly kind: 'clientFlags'; readonly flags: NbdClientFlags }
  | { readonly kind: 'option'; readonly option: number; readonly data: Buffer }
  | {
      readonly kind: 'request';
      readonly request: NbdRequestHeader;
      /** A WRITE's payload; undefined for other commands and for a WRITE over {@link nbdPayloadBytesMax} (its payload is skipped). */
      readonly payload: Buffer | undefined;
    };

/**
 * Cuts the client's bytes into frames, incrementally and without sockets. `push` the chunks as they arrive,
 * then call `next` until it returns undefined (more bytes needed). A payload inside one chunk is returned as a
 * view of it (no copy); one spanning chunks is copied once. It buffers at most one frame plus what was pushed
 * past it, because the caller stops pushing (pauses the socket) when it stops calling `next`; a WRITE payload
 * over {@link nbdPayloadBytesMax} is dropped as it arrives. Throws only {@link NbdProtocolError}.
 */
export class NbdFrameReader {
  /** What the next frame is; the server moves it on (options after the flags, transmission after GO). */
  phase: NbdPhase = 'clientFlags';
  readonly #chunks: Buffer[] = [];
  #head = 0;
  #length = 0;
  #pendingWrite: NbdRequestHeader | undefined;
  #skipBytes = 0;
  #pendingOption: NbdOptionHeader | undefined;

  /**
   * Payload bytes of the WRITE whose header has been read and whose payload has not all arrived yet (0 when
   * none): the server reserves them from its budget before it reads on.
   */
  get pendingPayloadBytes(): number {
    return this.#pendingWrite?.length ?? 0;
  }

  /** Bytes held (received, not yet returned in a frame). */
  get bufferedBytes(): number {
    return this.#length;
  }

  /** Adds bytes from the client. */
  push(chunk: Buffer): void {
    if (this.#skipBytes > 0) {
      const skipped = Math.min(this.#skipBytes, chunk.length);
      this.#skipBytes -= skipped;
      chunk = chunk.subarray(skipped);
    }
    if (chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#length += chunk.length;
  }

  /** The next complete frame, or undefined until more bytes arrive. */
  next(): NbdFrame | undefined {
    if (this.#skipBytes > 0) this.#skipBuffered();
    if (this.#skipBytes > 0) return undefined;
    switch (this.phase) {
      case 'clientFlags':
        if (this.#length < nbdClientFlagsBytes) return undefined;
        return { kind: 'clientFlags', flags: parseClientFlags(this.#take(nbdClientFlagsBytes)) };
      case 'options': {
        if (this.#pendingOption === undefined) {
          if (this.#length < nbdOptionHeaderBytes) return undefined;
          this.#pendingOption = parseOptionHeader(this.#take(nbdOptionHeaderBytes));
        }
        const header = this.#pendingOption;
        if (this.#length < header.length) return undefined;
        this.#pendingOption = undefined;
        return { kind: 'option', option: header.option, data: this.#take(header.length) };
      }
      case 'transmission': {
        if (this.#pendingWrite === undefined) {
          if (this.#length < nbdRequestHeaderBytes) return undefined;
          const request = parseRequestHeader(this.#take(nbdRequestHeaderBytes));
          if (request.type !== NbdCommand.write) return { kind: 'request', request, payload: undefined };
          if (request.length > nbdPayloadBytesMax) {
            this.#skipBytes = request.length;
            this.#skipBuffered();
            return { kind: 'request', request, payload: undefined };
          }
          this.#pendingWrite = request;
        }
        const request = this.#pendingWrite;
        if (this.#length < request.length) return undefined;
        this.#pendingWrite = undefined;
        return { kind: 'request', request, payload: this.#take(request.length) };
      }
    }
  }

  /** Called when the client closes its side: throws `'truncated'` if a frame was cut off. */
  finish(): void {
    if (this.#length > 0 || this.#skipBytes > 0 || this.#pendingWrite !== undefined || this.#pendingOption !== undefined) {
      const missing = this.#skipBytes + (this.#pendingWrite?.length ?? 0) + (this.#pendingOption?.length ?? 0);
      throw new NbdProtocolError('truncated', this.#length, `client closed with ${this.#length} bytes of an incomplete ${this.phase} frame buffered (${missing} payload bytes expected)`);
    }
  }

  #skipBuffered(): void {
    const skipped = this.#drop(Math.min(this.#skipBytes, this.#length));
    this.#skipBytes -= skipped;
  }

  #take(n: number): Buffer {
    assert(n <= this.#length, 'reader takes only buffered bytes', () => `${n} > ${this.#length}`);
    if (n === 0) return Buffer.alloc(0);
    const first = this.#chunks[0];
    assert(first !== undefined, 'reader has a chunk when bytes are buffered', () => `${this.#length} bytes`);
    if (first.length - this.#head >= n) {
      const out = first.subarray(this.#head, this.#head + n);
      this.#advance(n);
      return out;
    }
    const out = Buffer.allocUnsafe(n);
    let copied = 0;
    while (copied < n) {
      const chunk = this.#chunks[0];
      assert(chunk !== undefined, 'reader has a chunk when bytes are buffered', () => `${n - copied} bytes missing`);
      const count = Math.min(chunk.length - this.#head, n - copied);
      out.set(chunk.subarray(this.#head, this.#head + count), copied);
      copied += count;
      this.#advance(count);
    }
    return out;
  }

  #drop(n: number): number {
    let dropped = 0;
    while (dropped < n) {
      const chunk = this.#chunks[0];
      assert(chunk !== undefined, 'reader has a chunk when bytes are buffered', () => `${n - dropped} bytes missing`);
      const count = Math.min(chunk.length - this.#head, n - dropped);
      dropped += count;
      this.#advance(count);
    }
    return dropped;
  }

  /** Consumes `n` bytes of the first chunk. */
  #advance(n: number): void {
    const first = this.#chunks[0];
    assert(first !== undefined && n <= first.length - this.#head, 'reader advances within its first chunk', () => `${n}`);
    this.#head += n;
    this.#length -= n;
    if (this.#head === first.length) {
      this.#chunks.shift();
      this.#head = 0;
    }
  }
}

