/**
 * The wire format of the links between site processes: frames and hellos, pure and tested without sockets.
 *
 * Frames. Every frame is a 4-byte little-endian unsigned length `n`, then `n` payload bytes. `n` is at
 * most the receiver's limit: {@link helloBytesMax} for the first frame of a connection, {@link frameBytesMax}
 * (`messageBytesMax` plus a margin) after it. A zero length is a keepalive ({@link keepaliveFrame}: it says
 * "I am here" and carries nothing), allowed only after the hello (the decoder's {@link FrameDecoder.keepalives});
 * before it, and an oversized length always, is a {@link FrameError}; the connection is closed. {@link FrameDecoder} is the pure incremental decoder: it
 * keeps the chunks it is given in a list and copies each frame out once, so a 16 MiB frame that arrives
 * in thousands of chunks costs one copy, not a quadratic concatenation.
 *
 * Hello. The first frame in each direction of every connection is a hello, UTF-8 JSON with exactly
 * `{ "hello": "threesite-peer-v2", "site": N, "cluster": "<cluster id>" }` ({@link encodeHello},
 * {@link decodeHello}, {@link checkHello}). It travels inside TLS, after the certificates: the certificate
 * decides who the peer is, and the hello must agree with it ({@link HelloExpectation.certified}).
 * `transport-tcp.ts` says who sends it when.
 */

import { ConfigError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { messageBytesMax } from '../core/messages.ts';
import { isLinkSite, type LinkSite } from '../core/link.ts';

// ---------------------------------------------------------------------------------------------------------
// Limits

/** Bytes of a frame's length prefix. */
export const frameHeaderBytes = 4;

/** Largest frame payload: `messageBytesMax` (16 MiB) plus 64 KiB of margin, so any encoded message fits. */
export const frameBytesMax = messageBytesMax + 64 * 1024;

/** Largest hello frame payload: 1 KiB (the decoder's limit until a connection's hello has arrived). */
export const helloBytesMax = 1024;

/** Largest cluster id in a hello, in UTF-8 bytes. */
export const clusterIdBytesMax = 256;

/**
 * The protocol tag every hello carries; another value is another protocol (or version) and is refused. v2:
 * inside TLS 1.3 with the cluster's certificates, and zero-length frames are keepalives (v1 refused them).
 */
export const helloVersion = 'threesite-peer-v2';

/** The keepalive frame on the wire: a zero length and no payload (written as it is; nothing changes it). */
export const keepaliveFrame: Uint8Array = new Uint8Array(frameHeaderBytes);

// ---------------------------------------------------------------------------------------------------------
// Frames

/** Why a frame length is refused. */
export type FrameErrorReason = 'zeroLength' | 'tooLarge';

/**
 * A frame length that is zero or above the limit, on the wire ({@link FrameDecoder.next}) or at
 * {@link encodeFrame}. The connection that carried it is closed.
 */
export class FrameError extends Error {
  constructor(
    readonly reason: FrameErrorReason,
    /** The frame length, in bytes, without the prefix. */
    readonly lengthBytes: number,
    /** The limit it was checked against, in bytes. */
    readonly limitBytes: number,
  ) {
    super(
      reason === 'zeroLength'
        ? 'frame length 0: a frame carries at least one byte'
        : `frame length ${lengthBytes} bytes exceeds the limit of ${limitBytes} bytes`,
    );
    this.name = 'FrameError';
  }
}

/**
 * One frame for the wire: the 4-byte little-endian length, then a copy of `payload` (the caller may reuse
 * its buffer afterwards). Throws {@link FrameError} for an empty payload or one above {@link frameBytesMax}.
 */
export function encodeFrame(payload: Uint8Array): Uint8Array {
  checkFramePayload(payload);
  const out = new Uint8Array(frameHeaderBytes + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length, true);
  out.set(payload, frameHeaderBytes);
  return out;
}

/** Throws {@link FrameError} for a payload a frame cannot carry: empty, or above {@link frameBytesMax}. */
export function checkFramePayload(payload: Uint8Array): void {
  if (payload.length === 0) throw new FrameError('zeroLength', 0, frameBytesMax);
  if (payload.length > frameBytesMax) throw new FrameError('tooLarge', payload.length, frameBytesMax);
}

/**
 * The 4-byte little-endian length prefix of a frame of `payloadBytes` bytes (already checked), for a
 * sender that writes the payload after it without copying it into one array ({@link PeerNetwork.send}).
 */
export function encodeFrameHeader(payloadBytes: number): Uint8Array {
  const out = new Uint8Array(frameHeaderBytes);
  new DataView(out.buffer).setUint32(0, payloadBytes, true);
  return out;
}

/** Consumed chunks kept at the list's head before it is compacted. */
const consumedChunksCompactMin = 1024;

/**
 * The pure incremental frame decoder: {@link push} the chunks as they arrive, then call {@link next}
 * until it returns undefined. One frame is taken at a time so that the caller can change
 * {@link limitBytes} between frames (the hello's limit, then the frame limit) and stop when it closes the
 * connection. The caller drains after every push, so at most one frame plus one chunk is buffered.
 */
export class FrameDecoder {
  /**
   * Whether a zero length is a keepalive ({@link next} returns an empty payload) rather than a
   * {@link FrameError}: false until the connection's hello has been checked.
   */
  keepalives = false;
  #chunks: (Uint8Array | undefined)[] = [];
  /** Index of the first chunk not wholly consumed. */
  #first = 0;
  /** Bytes consumed of the first chunk. */
  #offset = 0;
  #bufferedBytes = 0;
  /** Length of the frame whose prefix has been read, until its payload is complete. */
  #pendingBytes: number | undefined;
  #error: FrameError | undefined;
  #limitBytes = frameBytesMax;

  /** A decoder refusing frames above `limitBytes` (default {@link frameBytesMax}). */
  constructor(limitBytes: number = frameBytesMax) {
    this.limitBytes = limitBytes;
  }

  /** The largest frame length {@link next} accepts, in bytes: 1..{@link frameBytesMax}. */
  get limitBytes(): number {
    return this.#limitBytes;
  }

  set limitBytes(value: number) {
    assert(Number.isSafeInteger(value) && value >= 1 && value <= frameBytesMax, 'frame limit within 1..frameBytesMax', () => `${value}`);
    this.#limitBytes = value;
  }

  /** Bytes received and not yet returned as a frame (prefixes included). */
  get bufferedBytes(): number {
    return this.#bufferedBytes + (this.#pendingBytes === undefined ? 0 : frameHeaderBytes);
  }

  /** Adds received bytes (kept by reference, not copied). Ignored after a {@link FrameError}. */
  push(chunk: Uint8Array): void {
    if (this.#error !== undefined || chunk.length === 0) return;
    this.#chunks.push(chunk);
    this.#bufferedBytes += chunk.length;
  }

  /**
   * The next complete frame's payload (a fresh copy; empty for a keepalive when {@link keepalives}), or
   * undefined when more bytes are needed. Throws {@link FrameError} for an oversized length or a zero one
   * while keepalives are not allowed, and the same error on every later call: after it the stream is unusable.
   */
  next(): Uint8Array | undefined {
    if (this.#error !== undefined) throw this.#error;
    if (this.#pendingBytes === undefined) {
      if (this.#bufferedBytes < frameHeaderBytes) return undefined;
      const prefix = this.#take(frameHeaderBytes);
      const length = new DataView(prefix.buffer).getUint32(0, true);
      if (length === 0 && !this.keepalives) this.#fail(new FrameError('zeroLength', 0, this.#limitBytes));
      if (length > this.#limitBytes) this.#fail(new FrameError('tooLarge', length, this.#limitBytes));
      this.#pendingBytes = length;
    }
    if (this.#bufferedBytes < this.#pendingBytes) return undefined;
    const frame = this.#take(this.#pendingBytes);
    this.#pendingBytes = undefined;
    return frame;
  }

  #fail(error: FrameError): never {
    this.#error = error;
    this.#chunks = [];
    this.#first = 0;
    this.#offset = 0;
    this.#bufferedBytes = 0;
    throw error;
  }

  /** Removes `count` buffered bytes (count <= buffered) into one fresh array: the one copy per frame. */
  #take(count: number): Uint8Array {
    assert(count <= this.#bufferedBytes, 'a frame is taken only when buffered', () => `${count} > ${this.#bufferedBytes}`);
    const out = new Uint8Array(count);
    let at = 0;
    while (at < count) {
      const chunk = this.#chunks[this.#first] as Uint8Array;
      const n = Math.min(chunk.length - this.#offset, count - at);
      out.set(chunk.subarray(this.#offset, this.#offset + n), at);
      at += n;
      this.#offset += n;
      if (this.#offset === chunk.length) {
        this.#chunks[this.#first] = undefined;
        this.#first += 1;
        this.#offset = 0;
      }
    }
    this.#bufferedBytes -= count;
    if (this.#first === this.#chunks.length) {
      this.#chunks = [];
      this.#first = 0;
    } else if (this.#first > consumedChunksCompactMin && this.#first * 2 > this.#chunks.length) {
      this.#chunks = this.#chunks.slice(this.#first);
      this.#first = 0;
    }
    return out;
  }
}

// ---------------------------------------------------------------------------------------------------------
// Hello

/** What a hello says: the protocol version, the sender's site id and its cluster id. */
export interface Hello {
  readonly hello: typeof helloVersion;
  readonly site: LinkSite;
  readonly cluster: string;
}

/** Why a hello is refused. */
export type HelloRejection = 'malformed' | 'version' | 'cluster' | 'ownSite' | 'unexpectedSite' | 'notCertified';

/** A first frame that is not an acceptable hello: `rejection` says which check failed, `detail` the facts. */
export class HelloError extends Error {
  constructor(
    readonly rejection: HelloRejection,
    readonly detail: string,
  ) {
    super(`hello refused (${rejection}): ${detail}`);
    this.name = 'HelloError';
  }
}

const helloFields: readonly string[] = ['hello', 'site', 'cluster'];

function clusterIdProblem(cluster: unknown): string | undefined {
  if (typeof cluster !== 'string' || cluster.length === 0) return 'cluster must be a non-empty string';
  const bytes = new TextEncoder().encode(cluster).length;
  if (bytes > clusterIdBytesMax) return `cluster id of ${bytes} bytes exceeds ${clusterIdBytesMax}`;
  return undefined;
}

/** The hello frame payload of `site` in `cluster`. Throws {@link ConfigError} for a bad site or cluster id. */
export function encodeHello(site: LinkSite, cluster: string): Uint8Array {
  if (!isLinkSite(site)) throw new ConfigError('self', site, 'must be 1, 2 or 3');
  const problem = clusterIdProblem(cluster);
  if (problem !== undefined) throw new ConfigError('cluster', cluster, problem);
  const hello: Hello = { hello: helloVersion, site, cluster };
  const bytes = new TextEncoder().encode(JSON.stringify(hello));
  assert(bytes.length <= helloBytesMax, 'a hello fits helloBytesMax', () => `${bytes.length} bytes`);
  return bytes;
}

/**
 * Parses a hello frame payload: UTF-8 JSON with exactly the fields `hello`, `site`, `cluster`. Throws
 * {@link HelloError} (`malformed` or `version`); whether the hello is the one expected is {@link checkHello}'s.
 */
export function decodeHello(payload: Uint8Array): Hello {
  if (payload.length > helloBytesMax) throw new HelloError('malformed', `${payload.length} bytes exceed ${helloBytesMax}`);
  let value: unknown;
  try {
    value = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(payload));
  } catch {
    throw new HelloError('malformed', 'not UTF-8 JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new HelloError('malformed', 'not a JSON object');
  const fields = value as Record<string, unknown>;
  for (const key of Object.keys(fields)) {
    if (!helloFields.includes(key)) throw new HelloError('malformed', `unknown field ${JSON.stringify(key)}`);
  }
  if (fields.hello !== helloVersion) {
    throw new HelloError('version', `hello ${JSON.stringify(fields.hello)} is not ${JSON.stringify(helloVersion)}`);
  }
  if (!isLinkSite(fields.site)) throw new HelloError('malformed', `site ${JSON.stringify(fields.site)} is not 1, 2 or 3`);
  const problem = clusterIdProblem(fields.cluster);
  if (problem !== undefined) throw new HelloError('malformed', problem);
  return { hello: helloVersion, site: fields.site, cluster: fields.cluster as string };
}

/** What a site expects of a hello: its own id and cluster, and the peers that may connect this way. */
export interface HelloExpectation {
  readonly self: LinkSite;
  readonly cluster: string;
  /** The sites this connection may come from: the dialed peer, or the lower-id peers at an acceptor. */
  readonly from: readonly LinkSite[];
  /** The site the connection's TLS certificate names: the hello must name the same site. */
  readonly certified: LinkSite;
}

/** Checks a parsed hello against what this connection expects; throws {@link HelloError} if it is not. */
export function checkHello(hello: Hello, expected: HelloExpectation): void {
  if (hello.cluster !== expected.cluster) {
    throw new HelloError('cluster', `wrong cluster: hello names cluster ${JSON.stringify(hello.cluster)}, this is ${JSON.stringify(expected.cluster)}`);
  }
  if (hello.site === expected.self) throw new HelloError('ownSite', `hello names site ${hello.site}, our own id`);
  if (!expected.from.includes(hello.site)) {
    throw new HelloError('unexpectedSite', `hello names site ${hello.site}, expected site ${expected.from.join(' or ') || '(none)'}`);
  }
  if (hello.site !== expected.certified) {
    throw new HelloError('notCertified', `hello names site ${hello.site}, but the connection's certificate names site ${expected.certified}`);
  }
}

