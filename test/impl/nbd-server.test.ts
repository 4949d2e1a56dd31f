/**
 * The NBD server, with the real Debian clients (qemu-io, qemu-img, nbdinfo, nbdcopy, fio's nbd engine, all
 * libnbd or qemu) and a raw-socket client for what they never send: the pure parsers refuse truncated,
 * oversized and garbage input with NbdProtocolError only (a property over arbitrary bytes cut anywhere);
 * checkRequest's error mapping at every boundary; the handshake's options; READ/WRITE/FLUSH/TRIM/
 * WRITE_ZEROES/FUA round-trips checked on the MemoryVolume's bytes; bounds, read-only and refused writes
 * with the spec's errno; garbage closing only its own connection, logged; the in-flight limit holding
 * against a backend that stalls; FLUSH waiting for earlier writes; and fio's verify over a backend that
 * completes writes out of order. Every wait is for an event (a reply, a close, a process exit).
 */

import fc from 'fast-check';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NotWritableError } from '../../impl/core/errors.ts';
import { NbdServer, type NbdLogEntry } from '../../impl/net/nbd-server.ts';
import { checkRequest, encodeGreeting, NbdClientFlag, NbdCommand, NbdCommandFlag, NbdErrno, NbdError, NbdFrameReader, NbdInfo, nbdInFlightBytesMax, nbdOptionBytesMax, nbdOptionMagic, nbdOptionReplyMagic, NbdOption, nbdPayloadBytesMax, NbdProtocolError, NbdReply, nbdRequestHeaderBytes, nbdRequestMagic, nbdRequestsInFlightMax, nbdSimpleReplyMagic, NbdTransmissionFlag, parseClientFlags, parseInfoRequest, parseOptionHeader, parseRequestHeader, type NbdExport, type NbdRequestHeader } from '../../impl/net/nbd-protocol.ts';
import { MemoryVolume } from '../../impl/core/volume.ts';

const run = promisify(execFile);

/** Longest any single client run or awaited event may take before the test fails, in milliseconds. */
const waitMsMax = 15_000;

/** Output and exit code of a client, without throwing on a nonzero exit. */
async function client(file: string, args: string[], cwd?: string): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { cwd, timeout: waitMsMax, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, stdout: failed.stdout ?? '', stderr: failed.stderr ?? String(error) };
  }
}

/** Resolves once `ready()` holds, checking after every event-loop turn; fails after {@link waitMsMax}. */
async function until(ready: () => boolean, what: string): Promise<void> {
  const start = performance.now();
  while (!ready()) {
    if (performance.now() - start > waitMsMax) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

// ---------------------------------------------------------------------------------------------------------
// Test exports built on MemoryVolume.

interface TestExport extends NbdExport {
  readonly volume: MemoryVolume;
  /** Backend calls in order: `write 0 4096 fua`, `flush`, ... */
  readonly calls: string[];
  /** Writes whose backend call is running now, and the most seen at once. */
  inFlight: number;
  inFlightMax: number;
  /** Write completion order differed from call order at least once. */
  completedOutOfOrder: boolean;
}

interface TestExportOptions {
  readOnly?: boolean;
  /** Each write waits this many event-loop turns (by call number), so completions interleave. */
  delayTurns?: (call: number) => number;
  /** Each write waits for this gate (a test opens it). */
  gate?: () => Promise<void>;
  /** A write is refused with this error. */
  writeError?: () => unknown;
}

function testExport(name: string, sizeBytes: number, options: TestExportOptions = {}): TestExport {
  const volume = new MemoryVolume(sizeBytes, 4096);
  let writeCalls = 0;
  let lastCompleted = -1;
  const exported: TestExport = {
    name,
    description: `test volume ${name}`,
    sizeBytes,
    blockBytes: volume.blockBytes,
    volume,
    calls: [],
    inFlight: 0,
    inFlightMax: 0,
    completedOutOfOrder: false,
    readOnly: () => options.readOnly ?? false,
    read: (offset, length) => volume.read(offset, length),
    async write(offset, data, fua) {
      exported.calls.push(`write ${offset} ${data.length}${fua ? ' fua' : ''}`);
      const call = writeCalls++;
      exported.inFlight += 1;
      exported.inFlightMax = Math.max(exported.inFlightMax, exported.inFlight);
      try {
        if (options.gate !== undefined) await options.gate();
        for (let turn = 0; turn < (options.delayTurns?.(call) ?? 0); turn += 1) await new Promise((resolve) => setImmediate(resolve));
        if (options.writeError !== undefined) throw options.writeError();
        volume.write(offset, data);
        if (call < lastCompleted) exported.completedOutOfOrder = true;
        lastCompleted = Math.max(lastCompleted, call);
      } finally {
        exported.inFlight -= 1;
      }
    },
    async flush() {
      exported.calls.push('flush');
      volume.flush();
    },
    async trim(offset, length) {
      exported.calls.push(`trim ${offset} ${length}`);
      volume.write(offset, new Uint8Array(length));
    },
    async writeZeroes(offset, length, fua) {
      exported.calls.push(`writeZeroes ${offset} ${length}${fua ? ' fua' : ''}`);
      volume.write(offset, new Uint8Array(length));
    },
  };
  return exported;
}

const mib = 1024 * 1024;

// ---------------------------------------------------------------------------------------------------------
// A raw client: what the real clients never send.

class RawClient {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  #buffer = Buffer.alloc(0);
  #ended = false;
  #wake: (() => void) | undefined;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    this.closed = new Promise((resolve) => {
      socket.on('close', () => {
        this.#ended = true;
        this.#wake?.();
        resolve();
      });
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new RawClient(socket)));
      socket.once('error', reject);
    });
  }

  async read(n: number): Promise<Buffer> {
    const start = performance.now();
    while (this.#buffer.length < n) {
      if (this.#ended) throw new Error(`connection closed with ${this.#buffer.length} of ${n} bytes`);
      if (performance.now() - start > waitMsMax) throw new Error(`timed out reading ${n} bytes`);
      await new Promise<void>((resolve) => {
        this.#wake = resolve;
        setTimeout(resolve, 100);
      });
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  /** Reads the greeting and sends the client flags. */
  async greet(flags = NbdClientFlag.fixedNewstyle | NbdClientFlag.noZeroes): Promise<Buffer> {
    const greeting = await this.read(18);
    const out = Buffer.alloc(4);
    out.writeUInt32BE(flags);
    this.write(out);
    return greeting;
  }

  sendOption(option: number, data: Uint8Array = Buffer.alloc(0)): void {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(nbdOptionMagic, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    this.write(Buffer.concat([header, data]));
  }

  async readOptionReply(): Promise<{ option: number; type: number; data: Buffer }> {
    const header = await this.read(20);
    expect(header.readBigUInt64BE(0)).toBe(nbdOptionReplyMagic);
    const length = header.readUInt32BE(16);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: await this.read(length) };
  }

  /** Option replies up to and including the final one (ACK or an error). */
  async readOptionReplies(): Promise<{ option: number; type: number; data: Buffer }[]> {
    const replies = [];
    for (;;) {
      const reply = await this.readOptionReply();
      replies.push(reply);
      if (reply.type !== NbdReply.info && reply.type !== NbdReply.server) return replies;
    }
  }

  /** Greets and GOes to `name`; resolves with the export's size and transmission flags. */
  async open(name: string): Promise<{ sizeBytes: number; flags: number }> {
    await this.greet();
    this.sendOption(NbdOption.go, goData(name, [NbdInfo.blockSize]));
    const replies = await this.readOptionReplies();
    expect(replies.at(-1)?.type).toBe(NbdReply.ack);
    const info = replies.find((reply) => reply.type === NbdReply.info && reply.data.readUInt16BE(0) === NbdInfo.export);
    if (info === undefined) throw new Error('no NBD_INFO_EXPORT');
    return { sizeBytes: Number(info.data.readBigUInt64BE(2)), flags: info.data.readUInt16BE(10) };
  }

  request(type: number, cookie: number, offset: number | bigint, length: number, flags = 0, payload?: Uint8Array): void {
    this.write(requestHeader(type, cookie, offset, length, flags));
    if (payload !== undefined) this.write(payload);
  }

  /** A simple reply; `dataBytes` is how many bytes follow it on success (a READ's length). */
  async reply(dataBytes = 0): Promise<{ errno: number; cookie: number; data: Buffer }> {
    const header = await this.read(16);
    expect(header.readUInt32BE(0)).toBe(nbdSimpleReplyMagic);
    const errno = header.readUInt32BE(4);
    const data = errno === 0 && dataBytes > 0 ? await this.read(dataBytes) : Buffer.alloc(0);
    return { errno, cookie: Number(header.readBigUInt64BE(8)), data };
  }
}

function goData(name: string, infos: number[]): Buffer {
  const nameBytes = Buffer.from(name);
  const out = Buffer.alloc(6 + nameBytes.length + 2 * infos.length);
  out.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(out, 4);
  out.writeUInt16BE(infos.length, 4 + nameBytes.length);
  infos.forEach((info, i) => out.writeUInt16BE(info, 6 + nameBytes.length + 2 * i));
  return out;
}

function requestHeader(type: number, cookie: number, offset: number | bigint, length: number, flags = 0): Buffer {
  const out = Buffer.alloc(nbdRequestHeaderBytes);
  out.writeUInt32BE(nbdRequestMagic, 0);
  out.writeUInt16BE(flags, 4);
  out.writeUInt16BE(type, 6);
  out.writeBigUInt64BE(BigInt(cookie), 8);
  out.writeBigUInt64BE(BigInt(offset), 16);
  out.writeUInt32BE(length, 24);
  return out;
}

function header(type: number, offset: bigint | number, length: number, flags = 0): NbdRequestHeader {
  return { type, flags, cookie: 1n, offset: BigInt(offset), length };
}

// ---------------------------------------------------------------------------------------------------------
// The pure byte level.

describe('NBD parsing (pure)', () => {
  it('refuses bad magics, bad client flags and oversized options with NbdProtocolError naming the reason', () => {
    const reason = (thunk: () => unknown): string | undefined => {
      try {
        thunk();
        return undefined;
      } catch (error) {
        expect(error).toBeInstanceOf(NbdProtocolError);
        return (error as NbdProtocolError).reason;
      }
    };
    expect(reason(() => parseRequestHeader(Buffer.alloc(nbdRequestHeaderBytes)))).toBe('badRequestMagic');
    expect(parseRequestHeader(requestHeader(NbdCommand.read, 7, 2n ** 64n - 1n, 512, NbdCommandFlag.fua))).toEqual({
      type: NbdCommand.read,
      flags: NbdCommandFlag.fua,
      cookie: 7n,
      offset: 2n ** 64n - 1n,
      length: 512,
    });
    const option = (length: number, magic = nbdOptionMagic): Buffer => {
      const out = Buffer.alloc(16);
      out.writeBigUInt64BE(magic, 0);
      out.writeUInt32BE(NbdOption.go, 8);
      out.writeUInt32BE(length, 12);
      return out;
    };
    expect(parseOptionHeader(option(nbdOptionBytesMax))).toEqual({ option: NbdOption.go, length: nbdOptionBytesMax });
    expect(reason(() => parseOptionHeader(option(nbdOptionBytesMax + 1)))).toBe('optionTooLarge');
    expect(reason(() => parseOptionHeader(option(0, nbdOptionMagic + 1n)))).toBe('badOptionMagic');
    const flags = (value: number): Buffer => {
      const out = Buffer.alloc(4);
      out.writeUInt32BE(value);
      return out;
    };
    expect(parseClientFlags(flags(3))).toEqual({ noZeroes: true });
    expect(reason(() => parseClientFlags(flags(4 | 1)))).toBe('badClientFlags');
    expect(reason(() => parseClientFlags(flags(0)))).toBe('clientNotFixedNewstyle');
  });

  it('parses INFO/GO data and reports a malformed one as a value', () => {
    expect(parseInfoRequest(goData('vol0', [NbdInfo.blockSize, NbdInfo.name]))).toEqual({ ok: true, name: 'vol0', nameBytes: 4, infos: [3, 1] });
    expect(parseInfoRequest(goData('', []))).toEqual({ ok: true, name: '', nameBytes: 0, infos: [] });
    expect(parseInfoRequest(Buffer.alloc(5)).ok).toBe(false);
    const nameTooLong = goData('vol0', []);
    nameTooLong.writeUInt32BE(5, 0);
    expect(parseInfoRequest(nameTooLong).ok).toBe(false);
    expect(parseInfoRequest(Buffer.concat([goData('vol0', [3]), Buffer.alloc(1)])).ok).toBe(false);
  });

  it('maps each request to the spec errno at the boundaries', () => {
    const size = 1 * mib;
    const writable = { sizeBytes: size, readOnly: false };
    const readOnly = { sizeBytes: size, readOnly: true };
    const { read, write, flush, trim, writeZeroes, cache, blockStatus } = NbdCommand;
    expect(checkRequest(header(read, size - 512, 512), writable)).toBe(0);
    expect(checkRequest(header(read, size - 511, 512), writable)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(read, 2n ** 64n - 1n, 1), writable)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(read, 0, 0), writable)).toBe(0);
    expect(checkRequest(header(write, size - 512, 512), writable)).toBe(0);
    expect(checkRequest(header(write, size - 511, 512), writable)).toBe(NbdErrno.ENOSPC);
    expect(checkRequest(header(writeZeroes, size, 1, NbdCommandFlag.noHole | NbdCommandFlag.fua), writable)).toBe(NbdErrno.ENOSPC);
    expect(checkRequest(header(trim, size, 1), writable)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(trim, 0, size, NbdCommandFlag.fua), writable)).toBe(0);
    const big = { sizeBytes: 4 * nbdPayloadBytesMax, readOnly: false };
    expect(checkRequest(header(read, 0, nbdPayloadBytesMax), big)).toBe(0);
    expect(checkRequest(header(read, 0, nbdPayloadBytesMax + 1), big)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(write, 0, nbdPayloadBytesMax + 1), big)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(writeZeroes, 0, nbdPayloadBytesMax + 1), big)).toBe(0);
    for (const type of [write, trim, writeZeroes]) expect(checkRequest(header(type, 0, 512), readOnly)).toBe(NbdErrno.EPERM);
    expect(checkRequest(header(read, 0, 512), readOnly)).toBe(0);
    expect(checkRequest(header(flush, 0, 0, NbdCommandFlag.fua), readOnly)).toBe(0);
    expect(checkRequest(header(read, 0, 512, NbdCommandFlag.df), writable)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(write, 0, 512, NbdCommandFlag.noHole), writable)).toBe(NbdErrno.EINVAL);
    expect(checkRequest(header(writeZeroes, 0, 512, NbdCommandFlag.fastZero), writable)).toBe(NbdErrno.EINVAL);
    for (const type of [cache, blockStatus, 99]) expect(checkRequest(header(type, 0, 512), writable)).toBe(NbdErrno.EINVAL);
  });

  it('cuts frames the same wherever the chunks end, skips an oversized write payload and reports truncation', () => {
    const bytes = Buffer.concat([
      Buffer.from([0, 0, 0, 3]),
      (() => {
        const option = Buffer.alloc(16);
        option.writeBigUInt64BE(nbdOptionMagic, 0);
        option.writeUInt32BE(NbdOption.go, 8);
        option.writeUInt32BE(10, 12);
        return option;
      })(),
      goData('vol0', []),
      requestHeader(NbdCommand.write, 1, 0, 5),
      Buffer.from('hello'),
      requestHeader(NbdCommand.write, 2, 0, nbdPayloadBytesMax + 1),
      Buffer.alloc(nbdPayloadBytesMax + 1, 0xee),
      requestHeader(NbdCommand.read, 3, 4096, 512),
    ]);
    const frames = (chunkBytes: number): string[] => {
      const reader = new NbdFrameReader();
      const out: string[] = [];
      for (let at = 0; at < bytes.length; at += chunkBytes) {
        reader.push(bytes.subarray(at, at + chunkBytes));
        for (let frame = reader.next(); frame !== undefined; frame = reader.next()) {
          if (frame.kind === 'clientFlags') {
            out.push(`flags noZeroes=${frame.flags.noZeroes}`);
            reader.phase = 'options';
          } else if (frame.kind === 'option') {
            out.push(`option ${frame.option} ${frame.data.length}`);
            reader.phase = 'transmission';
          } else {
            out.push(`request ${frame.request.type} ${frame.request.cookie} ${frame.payload?.toString() ?? '-'}`);
          }
        }
        expect(reader.bufferedBytes).toBeLessThanOrEqual(nbdRequestHeaderBytes + chunkBytes);
      }
      reader.finish();
      return out;
    };
    const expected = ['flags noZeroes=true', 'option 7 10', 'request 1 1 hello', 'request 1 2 -', 'request 0 3 -'];
    for (const chunkBytes of [1 << 20, 65536, 4099]) expect(frames(chunkBytes)).toEqual(expected);

    const truncated = new NbdFrameReader();
    truncated.phase = 'transmission';
    truncated.push(requestHeader(NbdCommand.read, 1, 0, 512).subarray(0, 27));
    expect(truncated.next()).toBeUndefined();
    expect(() => truncated.finish()).toThrow(NbdProtocolError);
  });

  it('throws nothing but NbdProtocolError on arbitrary bytes cut anywhere, in any phase (property)', () => {
    fc.assert(
      fc.property(
        fc.constantFrom('clientFlags' as const, 'options' as const, 'transmission' as const),
        fc.array(fc.oneof(fc.uint8Array({ maxLength: 64 }), fc.constant(requestHeader(NbdCommand.write, 1, 0, 8)), fc.constant(encodeGreeting().subarray(8, 16))), { maxLength: 20 }),
        fc.boolean(),
        (phase, chunks, finish) => {
          const reader = new NbdFrameReader();
          reader.phase = phase;
          try {
            for (const chunk of chunks) {
              reader.push(Buffer.from(chunk));
              for (let frame = reader.next(); frame !== undefined; frame = reader.next()) {
                if (frame.kind === 'clientFlags') reader.phase = 'options';
                else if (frame.kind === 'option') reader.phase = 'transmission';
                else if (frame.payload !== undefined) expect(frame.payload.length).toBe(frame.request.length);
              }
            }
            if (finish) reader.finish();
          } catch (error) {
            if (!(error instanceof NbdProtocolError)) throw error;
          }
        },
      ),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------------------
// The server with real clients.

describe('NbdServer', () => {
  const log: NbdLogEntry[] = [];
  const vol0 = testExport('vol0', 8 * mib);
  const vol1 = testExport('vol1', 8 * mib);
  const readOnly = testExport('ro', 1 * mib, { readOnly: true });
  const fenced = testExport('fenced', 1 * mib, { writeError: () => new NbdError(NbdErrno.EPERM, 'site is fenced') });
  const notPrimary = testExport('notprimary', 1 * mib, { writeError: () => new NotWritableError(1, 1, 'notPrimary') });
  const broken = testExport('broken', 1 * mib, { writeError: () => new Error('disk on fire') });
  // Writes finish after 0-4 event-loop turns by call number: completions come out of order.
  const shuffled = testExport('shuffled', 8 * mib, { delayTurns: (call) => (call * 7) % 5 });
  let gateOpen = false;
  const gateWaiters: (() => void)[] = [];
  const gated = testExport('gated', 8 * mib, {
    gate: () => (gateOpen ? Promise.resolve() : new Promise<void>((resolve) => gateWaiters.push(resolve))),
  });
  const exportList: NbdExport[] = [vol0, vol1, readOnly, fenced, notPrimary, broken, shuffled, gated];
  const server = new NbdServer({ exports: () => exportList, logger: (entry) => log.push(entry) });
  let port = 0;
  let uri = '';
  let scratch = '';

  beforeAll(async () => {
    port = await server.listen(0);
    uri = `nbd://127.0.0.1:${port}`;
    scratch = await mkdtemp(join(tmpdir(), 'nbd-test-'));
  });

  afterAll(async () => {
    await server.close();
    await rm(scratch, { recursive: true, force: true });
  });

  it('nbdinfo lists every export with its size, and reports one with its block sizes', async () => {
    const list = await client('/usr/bin/nbdinfo', ['--list', '--json', uri]);
    expect(list.code, list.stderr).toBe(0);
    const listed = JSON.parse(list.stdout) as { exports: { 'export-name': string; 'export-size': number; description?: string; is_read_only: boolean }[] };
    expect(listed.exports.map((entry) => [entry['export-name'], entry['export-size']])).toEqual(exportList.map((entry) => [entry.name, entry.sizeBytes]));
    expect(listed.exports.find((entry) => entry['export-name'] === 'ro')?.is_read_only).toBe(true);
    expect(listed.exports[0]?.description).toBe('test volume vol0');

    const one = await client('/usr/bin/nbdinfo', ['--json', `${uri}/vol0`]);
    expect(one.code, one.stderr).toBe(0);
    const info = JSON.parse(one.stdout) as { structured: boolean; exports: Record<string, unknown>[] };
    expect(info.structured).toBe(false);
    expect(info.exports[0]).toMatchObject({
      'export-name': 'vol0',
      'export-size': 8 * mib,
      block_size_minimum: 1,
      block_size_preferred: 4096,
      block_size_maximum: nbdPayloadBytesMax,
      can_flush: true,
      can_fua: true,
      can_trim: true,
      can_zero: true,
      can_multi_conn: false,
      is_read_only: false,
    });

    const unknown = await client('/usr/bin/nbdinfo', [`${uri}/nosuch`]);
    expect(unknown.code).not.toBe(0);
    expect(unknown.stderr).toMatch(/No such file or directory for export: nosuch/);
  });

  it('qemu-io round-trips write, writev, aio_write, FUA write, discard, write zeroes and flush on the volume', async () => {
    const result = await client('/usr/bin/qemu-io', [
      '-f', 'raw', `${uri}/vol0`,
      '-c', 'write -P 0xab 0 1M',
      '-c', 'read -P 0xab 0 1M',
      '-c', 'writev -P 0xcd 1M 4k 8k',
      '-c', 'read -P 0xcd 1M 12k',
      '-c', 'aio_write -P 0x11 2M 64k',
      '-c', 'aio_flush',
      '-c', 'write -f -P 0x22 3M 4k',
      '-c', 'write -P 0x33 4M 128k',
      '-c', 'discard 4M 64k',
      '-c', 'write -z 4160k 64k',
      '-c', 'read -P 0 4M 128k',
      '-c', 'flush',
    ]);
    expect(result.code, result.stderr).toBe(0);
    expect(result.stdout).not.toMatch(/Pattern verification failed|failed/);
    expect(result.stdout).toContain('read 1048576/1048576 bytes at offset 0');
    expect(result.stdout).toContain('read 12288/12288 bytes at offset 1048576');
    expect(result.stdout).toContain('read 131072/131072 bytes at offset 4194304');
    const bytes = (offset: number, length: number): Uint8Array => vol0.volume.read(offset, length);
    expect(bytes(0, mib).every((b) => b === 0xab)).toBe(true);
    expect(bytes(mib, 12 * 1024).every((b) => b === 0xcd)).toBe(true);
    expect(bytes(mib + 12 * 1024, 1)[0]).toBe(0);
    expect(bytes(2 * mib, 64 * 1024).every((b) => b === 0x11)).toBe(true);
    expect(bytes(3 * mib, 4096).every((b) => b === 0x22)).toBe(true);
    expect(bytes(4 * mib, 128 * 1024).every((b) => b === 0)).toBe(true);
    expect(vol0.calls).toContain(`write ${3 * mib} 4096 fua`);
    expect(vol0.calls).toContain(`trim ${4 * mib} 65536`);
    expect(vol0.calls.some((call) => call.startsWith(`writeZeroes ${4 * mib + 64 * 1024} 65536`))).toBe(true);
    expect(vol0.calls).toContain('flush');
    const counters = server.counters();
    expect(counters.requests.trim).toBeGreaterThanOrEqual(1);
    expect(counters.requests.writeZeroes).toBeGreaterThanOrEqual(1);
    expect(counters.bytesWritten).toBeGreaterThanOrEqual(mib + 12 * 1024 + 64 * 1024 + 4096 + 128 * 1024);
  });

  it('refuses requests past the end with the spec errno and keeps serving', async () => {
    const qemu = await client('/usr/bin/qemu-io', ['-f', 'raw', `${uri}/vol1`, '-c', 'read 8M 4k']);
    expect(qemu.stdout + qemu.stderr).toMatch(/read failed: (Input\/output error|Invalid argument)/);

    const raw = await RawClient.connect(port);
    const { sizeBytes, flags } = await raw.open('vol1');
    expect(sizeBytes).toBe(8 * mib);
    expect(flags & NbdTransmissionFlag.readOnly).toBe(0);
    expect(flags & NbdTransmissionFlag.canMultiConn).toBe(0);
    raw.request(NbdCommand.read, 1, sizeBytes - 4096, 8192);
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.EINVAL, cookie: 1 });
    raw.request(NbdCommand.write, 2, sizeBytes - 4096, 8192, 0, Buffer.alloc(8192, 1));
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.ENOSPC, cookie: 2 });
    raw.request(NbdCommand.writeZeroes, 3, sizeBytes, 1);
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.ENOSPC, cookie: 3 });
    raw.request(NbdCommand.trim, 4, 2n ** 63n, 1);
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.EINVAL, cookie: 4 });
    raw.request(42, 5, 0, 0);
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.EINVAL, cookie: 5 });
    raw.request(NbdCommand.blockStatus, 6, 0, 4096);
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.EINVAL, cookie: 6 });
    // A write over the payload limit: refused, its payload skipped, the connection still in step.
    raw.request(NbdCommand.write, 7, 0, nbdPayloadBytesMax + 1, 0, Buffer.alloc(nbdPayloadBytesMax + 1, 0x77));
    expect(await raw.reply()).toMatchObject({ errno: NbdErrno.EINVAL, cookie: 7 });
    raw.request(NbdCommand.read, 8, sizeBytes - 4096, 4096);
    const last = await raw.reply(4096);
    expect(last).toMatchObject({ errno: 0, cookie: 8 });
    expect(last.data.every((b) => b === 0)).toBe(true);
    expect(vol1.calls.filter((call) => call.startsWith('write'))).toEqual([]);
    raw.request(NbdCommand.disc, 9, 0, 0);
    await raw.closed;
  });

  it('qemu-img compare tells identical from different exports, and nbdcopy copies an export byte for byte', async () => {
    const differs = await client('/usr/bin/qemu-img', ['compare', '-f', 'raw', '-F', 'raw', `${uri}/vol0`, `${uri}/vol1`]);
    expect(differs.code).toBe(1);
    expect(differs.stdout).toMatch(/Content mismatch at offset 0!/);
    const same = await client('/usr/bin/qemu-img', ['compare', '-f', 'raw', '-F', 'raw', `${uri}/vol0`, `${uri}/vol0`]);
    expect(same.code, same.stderr).toBe(0);
    expect(same.stdout).toMatch(/Images are identical/);

    const file = join(scratch, 'vol0.img');
    const copy = await client('/usr/bin/nbdcopy', [`${uri}/vol0`, file]);
    expect(copy.code, copy.stderr).toBe(0);
    expect(Buffer.compare(await readFile(file), Buffer.from(vol0.volume.read(0, vol0.sizeBytes)))).toBe(0);

    // And back the other way, into vol1: now the two compare identical.
    const back = await client('/usr/bin/nbdcopy', [file, `${uri}/vol1`]);
    expect(back.code, back.stderr).toBe(0);
    const now = await client('/usr/bin/qemu-img', ['compare', '-f', 'raw', '-F', 'raw', `${uri}/vol0`, `${uri}/vol1`]);
    expect(now.code, now.stderr + now.stdout).toBe(0);
  });

  it('a read-only export and a backend refusing writes answer EPERM, and nothing changes', async () => {
    const before = Buffer.from(readOnly.volume.read(0, readOnly.sizeBytes));
    const qemu = await client('/usr/bin/qemu-io', ['-f', 'raw', `${uri}/ro`, '-c', 'write -P 1 0 4k']);
    expect(qemu.code).not.toBe(0);
    expect(qemu.stderr).toMatch(/Permission denied|read-only/i);
    const copy = await client('/usr/bin/nbdcopy', ['--', '[', '/usr/bin/nbdkit', 'pattern', 'size=1M', ']', `${uri}/ro`]);
    expect(copy.code).not.toBe(0);
    expect(copy.stderr).toMatch(/the destination is read-only/);

    const raw = await RawClient.connect(port);
    const { flags } = await raw.open('ro');
    expect(flags & NbdTransmissionFlag.readOnly).not.toBe(0);
    raw.request(NbdCommand.write, 1, 0, 4096, 0, Buffer.alloc(4096, 1));
    raw.request(NbdCommand.trim, 2, 0, 4096);
    raw.request(NbdCommand.writeZeroes, 3, 0, 4096);
    raw.request(NbdCommand.read, 4, 0, 4096);
    const replies = [await raw.reply(), await raw.reply(), await raw.reply(), await raw.reply(4096)];
    expect(replies.map((reply) => [reply.cookie, reply.errno])).toEqual([
      [1, NbdErrno.EPERM],
      [2, NbdErrno.EPERM],
      [3, NbdErrno.EPERM],
      [4, 0],
    ]);
    raw.socket.end();
    await raw.closed;
    expect(readOnly.calls).toEqual([]);
    expect(Buffer.compare(Buffer.from(readOnly.volume.read(0, readOnly.sizeBytes)), before)).toBe(0);

    // Writable at the handshake, refused by the site (fenced: NbdError; not primary: NotWritableError).
    for (const refusing of [fenced, notPrimary]) {
      const result = await client('/usr/bin/qemu-io', ['-f', 'raw', `${uri}/${refusing.name}`, '-c', 'write -P 1 0 4k']);
      expect(result.stdout + result.stderr).toMatch(/write failed: Operation not permitted/);
      expect(refusing.volume.allocatedBlocks).toBe(0);
    }
    // Any other backend failure is EIO, logged.
    const failing = await client('/usr/bin/qemu-io', ['-f', 'raw', `${uri}/broken`, '-c', 'write -P 1 0 4k']);
    expect(failing.stdout + failing.stderr).toMatch(/write failed: Input\/output error/);
    expect(log.some((entry) => entry.event === 'backendError' && entry.message.includes('disk on fire'))).toBe(true);
  });

  it('answers the handshake options: LIST, INFO, GO with the default export, STRUCTURED_REPLY refused, unknown ones, ABORT, EXPORT_NAME', async () => {
    const raw = await RawClient.connect(port);
    const greeting = await raw.greet();
    expect(greeting.subarray(0, 8).toString()).toBe('NBDMAGIC');
    expect(greeting.readBigUInt64BE(8)).toBe(nbdOptionMagic);
    expect(greeting.readUInt16BE(16)).toBe(3);
    raw.sendOption(NbdOption.structuredReply);
    expect((await raw.readOptionReply()).type).toBe(NbdReply.errUnsup);
    raw.sendOption(NbdOption.extendedHeaders);
    expect((await raw.readOptionReply()).type).toBe(NbdReply.errUnsup);
    raw.sendOption(4242, Buffer.alloc(100));
    expect((await raw.readOptionReply()).type).toBe(NbdReply.errUnsup);
    raw.sendOption(NbdOption.list, Buffer.alloc(1));
    expect((await raw.readOptionReply()).type).toBe(NbdReply.errInvalid);
    raw.sendOption(NbdOption.list);
    const listed = await raw.readOptionReplies();
    expect(listed.map((reply) => reply.type)).toEqual([...exportList.map(() => NbdReply.server), NbdReply.ack]);
    expect(listed[1]?.data.subarray(4, 8).toString()).toBe('vol1');
    raw.sendOption(NbdOption.info, goData('nosuch', []));
    expect((await raw.readOptionReplies()).map((reply) => reply.type)).toEqual([NbdReply.errUnknown]);
    raw.sendOption(NbdOption.info, Buffer.alloc(3));
    expect((await raw.readOptionReplies()).map((reply) => reply.type)).toEqual([NbdReply.errInvalid]);
    raw.sendOption(NbdOption.info, goData('vol1', [NbdInfo.name, NbdInfo.description, NbdInfo.blockSize, 999]));
    const info = await raw.readOptionReplies();
    expect(info.map((reply) => reply.type)).toEqual([NbdReply.info, NbdReply.info, NbdReply.info, NbdReply.info, NbdReply.ack]);
    expect(info.slice(0, 4).map((reply) => reply.data.readUInt16BE(0))).toEqual([NbdInfo.export, NbdInfo.name, NbdInfo.description, NbdInfo.blockSize]);
    expect(info[4]?.data.length).toBe(0);
    expect(info[2]?.data.subarray(2).toString()).toBe('test volume vol1');
    const blockSize = info[3]!.data;
    expect([blockSize.readUInt32BE(2), blockSize.readUInt32BE(6), blockSize.readUInt32BE(10)]).toEqual([1, 4096, nbdPayloadBytesMax]);
    raw.sendOption(NbdOption.go, goData('', []));
    const go = await raw.readOptionReplies();
    expect(go.at(-1)?.type).toBe(NbdReply.ack);
    expect(Number(go[0]!.data.readBigUInt64BE(2))).toBe(vol0.sizeBytes);
    raw.request(NbdCommand.read, 11, 0, 16);
    expect((await raw.reply(16)).data.every((b) => b === 0xab)).toBe(true);
    raw.request(NbdCommand.disc, 12, 0, 0);
    await raw.closed;

    const aborting = await RawClient.connect(port);
    await aborting.greet();
    aborting.sendOption(NbdOption.abort);
    expect((await aborting.readOptionReply()).type).toBe(NbdReply.ack);
    await aborting.closed;

    for (const noZeroes of [true, false]) {
      const old = await RawClient.connect(port);
      await old.greet(NbdClientFlag.fixedNewstyle | (noZeroes ? NbdClientFlag.noZeroes : 0));
      old.sendOption(NbdOption.exportName, Buffer.from('vol1'));
      const reply = await old.read(10 + (noZeroes ? 0 : 124));
      expect(Number(reply.readBigUInt64BE(0))).toBe(vol1.sizeBytes);
      expect(reply.readUInt16BE(8) & NbdTransmissionFlag.hasFlags).not.toBe(0);
      old.request(NbdCommand.flush, 1, 0, 0);
      expect(await old.reply()).toMatchObject({ errno: 0, cookie: 1 });
      old.request(NbdCommand.disc, 2, 0, 0);
      await old.closed;
    }
    const unknownOld = await RawClient.connect(port);
    await unknownOld.greet();
    unknownOld.sendOption(NbdOption.exportName, Buffer.from('nosuch'));
    await unknownOld.closed;
    expect(log.some((entry) => entry.reason === 'unknownExportName')).toBe(true);
  });

  it('closes a connection that sends garbage, logs why, and keeps serving the others', async () => {
    const bystander = await RawClient.connect(port);
    await bystander.open('vol0');
    const cases: { reason: string; send: (raw: RawClient) => Promise<void> }[] = [
      { reason: 'badClientFlags', send: async (raw) => void (await raw.greet(0xffffffff)) },
      { reason: 'clientNotFixedNewstyle', send: async (raw) => void (await raw.greet(0)) },
      {
        reason: 'badOptionMagic',
        send: async (raw) => {
          await raw.greet();
          raw.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
        },
      },
      {
        reason: 'optionTooLarge',
        send: async (raw) => {
          await raw.greet();
          const option = Buffer.alloc(16);
          option.writeBigUInt64BE(nbdOptionMagic, 0);
          option.writeUInt32BE(NbdOption.go, 8);
          option.writeUInt32BE(0xffffffff, 12);
          raw.write(option);
        },
      },
      {
        reason: 'badRequestMagic',
        send: async (raw) => {
          await raw.open('vol0');
          raw.write(Buffer.alloc(nbdRequestHeaderBytes, 0xff));
        },
      },
      {
        reason: 'truncated',
        send: async (raw) => {
          await raw.open('vol0');
          raw.write(requestHeader(NbdCommand.write, 1, 0, 4096));
          raw.write(Buffer.alloc(100));
          raw.socket.end();
        },
      },
      {
        reason: 'optionsMax',
        send: async (raw) => {
          await raw.greet();
          for (let i = 0; i < 200; i += 1) raw.sendOption(NbdOption.structuredReply);
        },
      },
    ];
    const writesBefore = vol0.calls.length;
    for (const { reason, send } of cases) {
      const raw = await RawClient.connect(port);
      await send(raw);
      await raw.closed;
      await until(() => log.some((entry) => entry.event === 'protocolError' && entry.reason === reason), `a ${reason} log entry`);
    }
    expect(vol0.calls.length).toBe(writesBefore);
    bystander.request(NbdCommand.read, 1, 0, 4096);
    expect((await bystander.reply(4096)).errno).toBe(0);
    bystander.request(NbdCommand.disc, 2, 0, 0);
    await bystander.closed;
    const info = await client('/usr/bin/nbdinfo', [`${uri}/vol0`]);
    expect(info.code, info.stderr).toBe(0);
    expect(server.counters().protocolErrors).toBeGreaterThanOrEqual(cases.length);
  });

  it('fio with iodepth 16 verifies random writes through a backend that completes them out of order', async () => {
    const result = await client('/usr/bin/fio', [
      '--ioengine=nbd',
      `--uri=${uri}/shuffled`,
      '--rw=randwrite',
      '--bs=4k',
      '--size=4M',
      '--iodepth=16',
      '--verify=crc32c',
      '--do_verify=1',
      '--randseed=1',
      '--verify_state_save=0',
      '--name=t',
    ], scratch);
    expect(result.code, result.stdout + result.stderr).toBe(0);
    expect(result.stdout + result.stderr).not.toMatch(/verify: bad|verify failed|bad magic|crc32c: verify/i);
    expect(result.stdout).toMatch(/err= 0/);
    expect(result.stdout).toMatch(/issued rwts: total=1024,1024/);
    expect(shuffled.inFlightMax).toBeGreaterThan(1);
    expect(shuffled.inFlightMax).toBeLessThanOrEqual(16);
    expect(shuffled.completedOutOfOrder).toBe(true);
  });

  it('holds at most nbdRequestsInFlightMax requests against a stalled backend, and FLUSH waits for the writes before it', async () => {
    const raw = await RawClient.connect(port);
    await raw.open('gated');
    const writes = nbdRequestsInFlightMax * 3;
    const payload = Buffer.alloc(4096, 0x5a);
    for (let cookie = 0; cookie < writes; cookie += 1) raw.request(NbdCommand.write, cookie, cookie * 4096, 4096, 0, payload);
    raw.request(NbdCommand.flush, writes, 0, 0);
    await until(() => gated.inFlight >= nbdRequestsInFlightMax, 'the in-flight limit to fill');
    // More requests are on the wire, but the server reads no further until some finish.
    for (let turn = 0; turn < 50; turn += 1) await new Promise((resolve) => setImmediate(resolve));
    expect(gated.inFlight).toBe(nbdRequestsInFlightMax);
    expect(gated.calls).not.toContain('flush');
    expect(nbdInFlightBytesMax).toBeGreaterThanOrEqual(nbdPayloadBytesMax);
    gateOpen = true;
    for (const wake of gateWaiters.splice(0)) wake();
    const replies = [];
    for (let i = 0; i <= writes; i += 1) replies.push(await raw.reply());
    expect(replies.every((reply) => reply.errno === 0)).toBe(true);
    expect(new Set(replies.map((reply) => reply.cookie)).size).toBe(writes + 1);
    expect(replies.at(-1)?.cookie).toBe(writes);
    expect(gated.calls.indexOf('flush')).toBe(writes);
    expect(gated.inFlightMax).toBe(nbdRequestsInFlightMax);
    expect(gated.volume.read(0, writes * 4096).every((b) => b === 0x5a)).toBe(true);
    raw.request(NbdCommand.disc, writes + 1, 0, 0);
    await raw.closed;
  });

  it('close() drops every connection and stops listening', async () => {
    const other = new NbdServer({ exports: () => [testExport('x', 1 * mib)], logger: (entry) => log.push(entry) });
    const otherPort = await other.listen(0);
    const raw = await RawClient.connect(otherPort);
    await raw.open('x');
    expect(other.counters().connectionsOpen).toBe(1);
    await other.close();
    await raw.closed;
    await expect(RawClient.connect(otherPort)).rejects.toThrow();
  });
});
