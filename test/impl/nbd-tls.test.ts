/**
 * The NBD server's TLS (NBD_OPT_STARTTLS) and its bounded resources, in process with a raw client and the
 * project's NbdClient: where TLS is required every option but STARTTLS and ABORT is refused with
 * NBD_REP_ERR_TLS_REQD and no export is served in plain; STARTTLS upgrades the same socket and the haggling
 * goes on inside TLS; a host's or the operator's certificate of the cluster is let in, a site's, another
 * cluster's or none is not; plain bytes sent after STARTTLS close the connection. Then the limits at their
 * boundaries, on a fake clock: the idle and handshake deadlines of a connection not yet admitted, the frame
 * deadline of a stalled WRITE payload; connections not yet admitted evict the oldest, never an admitted one,
 * and from the newcomer's own address at its cap or else from the busiest address, so that addresses churning
 * connections do not keep a host from 127.0.0.1 out;
 * the admitted slots; and the payload budget across connections (a stalled 32 MiB write holds back another
 * large write, never a host's small one, and nothing is buffered past the budget).
 */
import { mkdtempSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { MemoryVolume } from '../../impl/core/volume.ts';
import { NbdClient, NbdClientError } from '../../impl/net/nbd-client.ts';
import { encodeRequestHeader, NbdClientFlag, NbdCommand, NbdOption, nbdOptionMagic, nbdOptionReplyMagic, nbdPayloadBytesMax, NbdReply, type NbdExport } from '../../impl/net/nbd-protocol.ts';
import { NbdServer, nbdPendingVictim, type NbdLogEntry, type NbdServerLimits, type NbdServerOptions } from '../../impl/net/nbd-server.ts';
import { tlsClientOptions, type Principal, type TlsCredentials } from '../../impl/net/tls-identity.ts';
import { createDeploymentCredentials, credentialsLayout, readCredentials, type CredentialsLayout } from '../../impl/site/credentials.ts';

const mib = 1024 * 1024;
/** Longest any awaited event may take before the test fails, in milliseconds (a bound, not a claim). */
const waitMsMax = 15_000;

interface Cluster {
  layout: CredentialsLayout;
  site(n: 1 | 2 | 3): TlsCredentials;
  host(n: number): TlsCredentials;
  operator: TlsCredentials;
}

async function cluster(name: string): Promise<Cluster> {
  const dir = mkdtempSync(join(tmpdir(), `threesite-nbd-tls-${name}-`));
  const layout = credentialsLayout(join(dir, 'tls'), { 1: join(dir, 'site-1'), 2: join(dir, 'site-2'), 3: join(dir, 'site-3') });
  await createDeploymentCredentials(layout, name, { 1: '127.0.0.1', 2: '127.0.0.1', 3: '127.0.0.1' }, [1]);
  return {
    layout,
    site: (n) => readCredentials(layout.siteDir(n), 'server', name),
    host: (n) => readCredentials(layout.hostDir(n), 'client', name),
    operator: readCredentials(layout.operatorDir, 'client', name),
  };
}

/** An export over a MemoryVolume that counts its backend calls. */
function memoryExport(name: string, sizeBytes = 4 * mib, gate?: () => Promise<void>): NbdExport & { calls: number; volume: MemoryVolume } {
  const volume = new MemoryVolume(sizeBytes, 4096);
  const exported = {
    name,
    sizeBytes,
    blockBytes: 4096,
    volume,
    calls: 0,
    readOnly: () => false,
    read: (offset: number, length: number) => {
      exported.calls += 1;
      return volume.read(offset, length);
    },
    write: async (offset: number, data: Uint8Array) => {
      exported.calls += 1;
      if (gate !== undefined) await gate();
      volume.write(offset, data);
    },
    flush: async () => void (exported.calls += 1),
    trim: async () => void (exported.calls += 1),
    writeZeroes: async () => void (exported.calls += 1),
  };
  return exported;
}

/** A client speaking bytes, in plain and then (after `startTls`) inside TLS on the same socket. */
class Raw {
  socket: net.Socket;
  readonly tcp: net.Socket;
  #buffer = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;
  readonly closed: Promise<void>;

  private constructor(socket: net.Socket) {
    this.socket = socket;
    this.tcp = socket;
    this.#listen(socket);
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.once('close', () => {
      this.#closed = true;
      this.#wake?.();
    });
  }

  #listen(socket: net.Socket): void {
    socket.on('data', (chunk: Buffer) => {
      this.#buffer = Buffer.concat([this.#buffer, chunk]);
      this.#wake?.();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const socket = net.connect(port, '127.0.0.1', () => resolve(new Raw(socket)));
      socket.once('error', reject);
    });
  }

  get isClosed(): boolean {
    return this.#closed;
  }

  async read(n: number): Promise<Buffer> {
    while (this.#buffer.length < n) {
      if (this.#closed) throw new Error(`closed with ${this.#buffer.length} of ${n} bytes`);
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const out = this.#buffer.subarray(0, n);
    this.#buffer = this.#buffer.subarray(n);
    return out;
  }

  write(bytes: Uint8Array): void {
    this.socket.write(bytes);
  }

  async greet(): Promise<void> {
    await this.read(18);
    const flags = Buffer.alloc(4);
    flags.writeUInt32BE(NbdClientFlag.fixedNewstyle | NbdClientFlag.noZeroes);
    this.write(flags);
  }

  option(option: number, data: Uint8Array = Buffer.alloc(0)): Buffer {
    const header = Buffer.alloc(16);
    header.writeBigUInt64BE(nbdOptionMagic, 0);
    header.writeUInt32BE(option, 8);
    header.writeUInt32BE(data.length, 12);
    return Buffer.concat([header, data]);
  }

  async reply(): Promise<{ option: number; type: number; data: Buffer }> {
    const header = await this.read(20);
    expect(header.readBigUInt64BE(0)).toBe(nbdOptionReplyMagic);
    return { option: header.readUInt32BE(8), type: header.readUInt32BE(12), data: await this.read(header.readUInt32BE(16)) };
  }

  /** Replies to one option up to its final one (ACK or an error). */
  async replies(): Promise<number[]> {
    const types: number[] = [];
    for (;;) {
      const { type } = await this.reply();
      types.push(type);
      if (type !== NbdReply.info && type !== NbdReply.server) return types;
    }
  }

  /** STARTTLS and its ACK, then a TLS client handshake on the same socket. */
  async startTls(credentials: TlsCredentials, server: Principal = { kind: 'site', site: 1 }): Promise<void> {
    this.write(this.option(NbdOption.startTls));
    expect((await this.reply()).type).toBe(NbdReply.ack);
    this.tcp.removeAllListeners('data');
    const secure = tls.connect({ socket: this.tcp, ...tlsClientOptions(credentials, server) });
    this.#listen(secure);
    this.socket = secure;
    await new Promise<void>((resolve, reject) => {
      secure.once('secureConnect', () => resolve());
      secure.once('error', reject);
    });
  }

  async go(name: string): Promise<number[]> {
    this.write(this.option(NbdOption.go, goData(name)));
    return this.replies();
  }
}

function goData(name: string): Buffer {
  const nameBytes = Buffer.from(name);
  const out = Buffer.alloc(6 + nameBytes.length);
  out.writeUInt32BE(nameBytes.length, 0);
  nameBytes.copy(out, 4);
  return out;
}

function request(type: number, cookie: number, offset: number, length: number): Buffer {
  return encodeRequestHeader({ type, flags: 0, cookie: BigInt(cookie), offset: BigInt(offset), length });
}

/** Resolves once `ready()` holds, checking after every event-loop turn (real time only bounds it). */
async function until(ready: () => boolean, what: string): Promise<void> {
  const start = Date.now();
  while (!ready()) {
    if (Date.now() - start > waitMsMax) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setImmediate(resolve));
  }
}

/** A few event-loop turns: what the server would do now, it has done. */
async function settle(): Promise<void> {
  for (let turn = 0; turn < 20; turn += 1) await new Promise((resolve) => setImmediate(resolve));
}

/** How long a host may take to connect over TLS while pending connections churn (a bound for a loaded machine). */
const churnHandshakeMsMax = 10_000;

/**
 * An attacker at `localAddress` (Linux routes all of 127/8 to loopback) that holds `count` connections open
 * and reopens each one the moment the server closes it, never sending a byte: with more of them than the
 * server keeps pending, every arrival evicts a pending connection, whose reopening evicts the next, as fast
 * as the server accepts. `stop` closes them all and opens no more.
 */
function churn(port: number, localAddress: string, count: number): { stop: () => Promise<void> } {
  let stopped = false;
  const sockets = new Set<net.Socket>();
  const open = (): void => {
    if (stopped) return;
    const socket = net.connect({ host: '127.0.0.1', port, localAddress });
    sockets.add(socket);
    socket.on('error', () => undefined);
    // It reads (and drops) the greeting, so that it sees the server's close at once.
    socket.resume();
    socket.once('close', () => {
      sockets.delete(socket);
      open();
    });
  };
  for (let i = 0; i < count; i += 1) open();
  return {
    stop: async () => {
      stopped = true;
      const closed = [...sockets].map((socket) => new Promise((resolve) => socket.once('close', resolve)));
      for (const socket of sockets) socket.destroy();
      await Promise.all(closed);
    },
  };
}

let ours: Cluster;
let other: Cluster;
const servers: NbdServer[] = [];
const log: NbdLogEntry[] = [];

async function serve(options: Omit<NbdServerOptions, 'logger'>): Promise<{ server: NbdServer; port: number }> {
  const server = new NbdServer({ ...options, logger: (entry) => log.push(entry) });
  servers.push(server);
  return { server, port: await server.listen(0) };
}

beforeAll(async () => {
  [ours, other] = await Promise.all([cluster('nbd-tls'), cluster('nbd-other')]);
});

afterEach(() => {
  vi.useRealTimers();
});

afterAll(async () => {
  await Promise.all(servers.map((server) => server.close()));
});

describe('NBD STARTTLS', () => {
  it('where TLS is required, refuses every option but STARTTLS and ABORT before TLS, and serves no export in plain', async () => {
    const exported = memoryExport('vol0');
    const { server, port } = await serve({ exports: () => [exported], tls: { credentials: ours.site(1), required: true } });
    const raw = await Raw.connect(port);
    await raw.greet();
    for (const option of [NbdOption.list, NbdOption.info, NbdOption.go, NbdOption.structuredReply, NbdOption.setMetaContext, 99]) {
      const data = option === NbdOption.info || option === NbdOption.go ? goData('vol0') : Buffer.alloc(0);
      raw.write(raw.option(option, data));
      expect(await raw.reply(), `option ${option}`).toEqual({ option, type: NbdReply.errTlsReqd, data: Buffer.alloc(0) });
    }
    raw.write(raw.option(NbdOption.abort));
    expect((await raw.reply()).type).toBe(NbdReply.ack);
    await raw.closed;
    // EXPORT_NAME has no error reply: the connection is closed.
    const old = await Raw.connect(port);
    await old.greet();
    old.write(old.option(NbdOption.exportName, Buffer.from('vol0')));
    await old.closed;
    expect(log.some((entry) => entry.reason === 'exportNameBeforeTls')).toBe(true);
    // The project's client says what is missing.
    const plain = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax).catch((error: unknown) => error);
    expect(plain).toBeInstanceOf(NbdClientError);
    expect((plain as NbdClientError).kind).toBe('tlsRequired');
    expect(exported.calls).toBe(0);
    expect(server.counters()).toMatchObject({ tlsRequiredRefusals: 8, tlsAuthenticated: 0, connectionsAdmitted: 0 });
  });

  it('upgrades the same socket, goes on haggling inside TLS, refuses a second STARTTLS and serves the export', async () => {
    const exported = memoryExport('vol0');
    const { server, port } = await serve({ exports: () => [exported], tls: { credentials: ours.site(1), required: true } });
    const raw = await Raw.connect(port);
    await raw.greet();
    await raw.startTls(ours.host(1));
    raw.write(raw.option(NbdOption.startTls));
    expect((await raw.reply()).type).toBe(NbdReply.errInvalid);
    raw.write(raw.option(NbdOption.list));
    expect(await raw.replies()).toEqual([NbdReply.server, NbdReply.ack]);
    expect((await raw.go('vol0')).at(-1)).toBe(NbdReply.ack);
    raw.write(Buffer.concat([request(NbdCommand.write, 1, 4096, 4), Buffer.from([1, 2, 3, 4])]));
    expect((await raw.read(16)).readUInt32BE(4)).toBe(0);
    expect([...exported.volume.read(4096, 4)]).toEqual([1, 2, 3, 4]);
    raw.write(request(NbdCommand.disc, 2, 0, 0));
    await raw.closed;
    // The project's client, as the process driver uses it, and with the operator's certificate.
    for (const credentials of [ours.host(1), ours.operator]) {
      const client = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax, { credentials, server: { kind: 'site', site: 1 } });
      await client.write(0, new Uint8Array(4096).fill(7));
      expect((await client.read(0, 4096)).every((byte) => byte === 7)).toBe(true);
      await client.close();
    }
    expect(server.counters()).toMatchObject({ tlsAuthenticated: 3, authenticationFailures: 0 });
  });

  it("lets in a host's and the operator's certificate of the cluster, not a site's, another cluster's or none", async () => {
    const exported = memoryExport('vol0');
    const { server, port } = await serve({ exports: () => [exported], tls: { credentials: ours.site(1), required: true } });
    const attempt = (credentials: TlsCredentials) => NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax, { credentials, server: { kind: 'site', site: 1 } }).then(
      async (client) => {
        await client.close();
        return 'served';
      },
      (error: unknown) => (error instanceof NbdClientError ? error.kind : String(error)),
    );
    expect(await attempt(ours.host(1))).toBe('served');
    expect(await attempt(ours.operator)).toBe('served');
    const refusedBefore = server.counters().authenticationFailures;
    // A site's certificate (EKU client too) is not an NBD client's; another cluster's fails its chain. The
    // TLS 1.3 client learns of the refusal when it reads: the GO gets no answer, the connection closes.
    expect(await attempt(ours.site(2))).toMatch(/closed|tlsRefused/);
    expect(await attempt({ ...other.host(1), cluster: 'nbd-tls' })).toMatch(/closed|tlsRefused/);
    // No certificate at all.
    const anonymous = await Raw.connect(port);
    await anonymous.greet();
    anonymous.write(anonymous.option(NbdOption.startTls));
    expect((await anonymous.reply()).type).toBe(NbdReply.ack);
    anonymous.tcp.removeAllListeners('data');
    const secure = tls.connect({ socket: anonymous.tcp, ca: ours.site(1).ca, checkServerIdentity: () => undefined, minVersion: 'TLSv1.3' });
    secure.on('error', () => undefined);
    secure.on('data', () => undefined);
    await new Promise<void>((resolve) => secure.once('close', () => resolve()));
    await until(() => server.counters().authenticationFailures === refusedBefore + 3, 'three refusals counted');
    expect(log.filter((entry) => entry.event === 'authenticationFailed').map((entry) => entry.message).join('\n')).toMatch(/site-2 may not use the NBD port/);
    expect(exported.calls).toBe(0);
  });

  it('closes a connection that sends plain bytes after STARTTLS, before the handshake (STARTTLS injection)', async () => {
    const { server, port } = await serve({ exports: () => [memoryExport('vol0')], tls: { credentials: ours.site(1), required: true } });
    const raw = await Raw.connect(port);
    await raw.greet();
    raw.write(Buffer.concat([raw.option(NbdOption.startTls), raw.option(NbdOption.go, goData('vol0'))]));
    await raw.closed;
    expect(log.some((entry) => entry.reason === 'bytesBeforeTls')).toBe(true);
    expect(server.counters().tlsAuthenticated).toBe(0);
  });

  it('where TLS is optional serves plain and TLS clients; without credentials STARTTLS is unsupported', async () => {
    const exported = memoryExport('vol0');
    const { port } = await serve({ exports: () => [exported], tls: { credentials: ours.site(1), required: false } });
    const plain = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax);
    await plain.write(0, new Uint8Array(512).fill(1));
    await plain.close();
    const secure = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax, { credentials: ours.host(1), server: { kind: 'site', site: 1 } });
    expect((await secure.read(0, 512)).every((byte) => byte === 1)).toBe(true);
    await secure.close();
    const { port: bare } = await serve({ exports: () => [exported] });
    const refused = await NbdClient.connect('127.0.0.1', bare, 'vol0', waitMsMax, { credentials: ours.host(1), server: { kind: 'site', site: 1 } }).catch((error: unknown) => error);
    expect(refused).toMatchObject({ name: 'NbdClientError', kind: 'tlsRefused' });
  });
});

describe('NBD resource limits at their boundaries', () => {
  const limits: Partial<NbdServerLimits> = { idleTimeoutMs: 1000, handshakeTimeoutMs: 5000, frameTimeoutMs: 3000 };

  it('closes a silent connection not yet admitted at the idle deadline, not a millisecond before', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { server, port } = await serve({ exports: () => [memoryExport('vol0')], tls: { credentials: ours.site(1), required: true }, limits });
    const raw = await Raw.connect(port);
    await raw.read(18);
    vi.advanceTimersByTime(999);
    await settle();
    expect(raw.isClosed).toBe(false);
    vi.advanceTimersByTime(1);
    await raw.closed;
    expect(server.counters().timeouts).toEqual({ handshake: 0, idle: 1, frame: 0 });
  });

  it('closes a connection still haggling at the handshake deadline, however often it speaks; an admitted one never idles out', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const { server, port } = await serve({ exports: () => [memoryExport('vol0')], tls: { credentials: ours.site(1), required: false }, limits });
    const talker = await Raw.connect(port);
    await talker.greet();
    for (let elapsed = 0; elapsed < 4900; elapsed += 700) {
      vi.advanceTimersByTime(700);
      talker.write(talker.option(NbdOption.list));
      expect(await talker.replies()).toEqual([NbdReply.server, NbdReply.ack]);
    }
    vi.advanceTimersByTime(4999 - 4900);
    await settle();
    expect(talker.isClosed).toBe(false);
    vi.advanceTimersByTime(1);
    await talker.closed;
    expect(server.counters().timeouts).toMatchObject({ handshake: 1, idle: 0 });
    // A host in transmission stays, silent for longer than both deadlines.
    const host = await Raw.connect(port);
    await host.greet();
    expect((await host.go('vol0')).at(-1)).toBe(NbdReply.ack);
    vi.advanceTimersByTime(60_000);
    await settle();
    expect(host.isClosed).toBe(false);
    host.write(request(NbdCommand.read, 1, 0, 512));
    expect((await host.read(16 + 512)).readUInt32BE(4)).toBe(0);
  });

  it('closes a connection whose WRITE payload stalls at the frame deadline, and gives its budget back', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const exported = memoryExport('vol0', 64 * mib);
    const { server, port } = await serve({ exports: () => [exported], tls: { credentials: ours.site(1), required: false }, limits });
    const raw = await Raw.connect(port);
    await raw.greet();
    expect((await raw.go('vol0')).at(-1)).toBe(NbdReply.ack);
    raw.write(Buffer.concat([request(NbdCommand.write, 1, 0, nbdPayloadBytesMax), Buffer.alloc(64 * 1024)]));
    await until(() => server.counters().budget.heldBytes === nbdPayloadBytesMax, 'the payload reserved');
    vi.advanceTimersByTime(2999);
    await settle();
    expect(raw.isClosed).toBe(false);
    vi.advanceTimersByTime(1);
    await raw.closed;
    await until(() => server.counters().budget.heldBytes === 0, 'the reservation released');
    expect(server.counters().timeouts.frame).toBe(1);
    expect(exported.calls).toBe(0);
  });

  it('evicts the oldest connection not yet admitted past pendingConnectionsMax, never an admitted one, and admits at most connectionsMax', async () => {
    const { server, port } = await serve({
      exports: () => [memoryExport('vol0')],
      tls: { credentials: ours.site(1), required: true },
      limits: { pendingConnectionsMax: 4, connectionsMax: 2, bufferedBytesMax: 2 * mib + nbdPayloadBytesMax },
    });
    const host = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax, { credentials: ours.host(1), server: { kind: 'site', site: 1 } });
    const idle: Raw[] = [];
    for (let i = 0; i < 4; i += 1) idle.push(await Raw.connect(port));
    await until(() => server.counters().connectionsOpen === 5, 'five connections open');
    expect(server.counters().connectionsEvicted).toBe(0);
    idle.push(await Raw.connect(port));
    await idle[0]!.closed;
    await until(() => server.counters().connectionsEvicted === 1, 'one eviction');
    expect(idle.slice(1).every((raw) => !raw.isClosed)).toBe(true);
    // With the pending connections full, a second host still gets in (it evicts one more) and is served.
    const second = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax, { credentials: ours.host(1), server: { kind: 'site', site: 1 } });
    await second.write(0, new Uint8Array(4096));
    expect(server.counters()).toMatchObject({ connectionsEvicted: 2, connectionsAdmitted: 2 });
    // Both slots are taken: a third host is refused after authenticating; the two admitted ones go on.
    const third = await NbdClient.connect('127.0.0.1', port, 'vol0', waitMsMax, { credentials: ours.host(1), server: { kind: 'site', site: 1 } }).catch((error: unknown) => error);
    expect(third).toBeInstanceOf(NbdClientError);
    expect(server.counters().connectionsRefused).toBe(1);
    await host.write(4096, new Uint8Array(4096));
    await Promise.all([host.close(), second.close()]);
  });

  it('chooses the pending connection to evict: its own address\'s oldest at the per-address cap, else the busiest address\'s oldest at the total', () => {
    const limits = { pendingConnectionsMax: 4, pendingPerAddressMax: 2 };
    const c = (remoteAddress: string, id: number) => ({ remoteAddress, id });
    // Room below both caps.
    expect(nbdPendingVictim([], 'a', limits)).toBeUndefined();
    expect(nbdPendingVictim([c('a', 1), c('b', 2), c('c', 3)], 'a', limits)).toBeUndefined();
    // At the per-address cap, the newcomer's own address pays, though the pool has room and others are older.
    expect(nbdPendingVictim([c('b', 1), c('a', 2), c('a', 3)], 'a', limits)).toEqual(c('a', 2));
    // At the total, the address holding the most pays, though another's connection is older.
    expect(nbdPendingVictim([c('host', 1), c('b', 2), c('b', 3), c('c', 4)], 'd', limits)).toEqual(c('b', 2));
    // Ties between addresses: the oldest connection of them.
    expect(nbdPendingVictim([c('c', 1), c('b', 2), c('b', 3), c('c', 4)], 'd', limits)).toEqual(c('c', 1));
    // Both caps reached: the newcomer's own address first.
    expect(nbdPendingVictim([c('b', 1), c('b', 2), c('a', 3), c('a', 4)], 'a', limits)).toEqual(c('a', 3));
  });

  it('lets hosts from 127.0.0.1 finish their handshake while two addresses churn pending connections as fast as they can', async () => {
    const limits = { pendingConnectionsMax: 8, pendingPerAddressMax: 4 };
    const attackerConnections = 8 * limits.pendingConnectionsMax;
    const { server, port } = await serve({ exports: () => [memoryExport('vol0')], tls: { credentials: ours.site(1), required: true }, limits });
    const logFrom = log.length;
    // Each attacker address holds many times the whole pending pool and reopens what the server closes:
    // silent connections arriving as fast as the server accepts them, every one of them pending.
    const attackers = ['127.0.0.2', '127.0.0.3'].map((address) => churn(port, address, attackerConnections));
    await until(() => server.counters().connectionsEvicted >= 100, 'the attackers churning');

    // A host far away: its handshake spans many of the attackers' reopenings (each round trip of a WAN is
    // hundreds of theirs). Evicted oldest first, its connection would be gone after the pool's size of them.
    const far = await Raw.connect(port);
    await far.greet();
    const evictedAtGreeting = server.counters().connectionsEvicted;
    await until(() => server.counters().connectionsEvicted >= evictedAtGreeting + 4 * limits.pendingConnectionsMax, 'the attackers reopening meanwhile');
    expect(far.isClosed).toBe(false);
    await far.startTls(ours.host(1));
    expect((await far.go('vol0')).at(-1)).toBe(NbdReply.ack);

    // A host nearby connects, writes and reads back within the bound, the attack going on.
    const evictedBefore = server.counters().connectionsEvicted;
    const started = performance.now();
    const host = await NbdClient.connect('127.0.0.1', port, 'vol0', churnHandshakeMsMax, { credentials: ours.host(1), server: { kind: 'site', site: 1 } });
    const handshakeMs = performance.now() - started;
    const evictedDuring = server.counters().connectionsEvicted - evictedBefore;
    await host.write(0, new Uint8Array(4096).fill(0x5a));
    expect((await host.read(0, 4096)).every((byte) => byte === 0x5a)).toBe(true);
    await Promise.all(attackers.map((attacker) => attacker.stop()));
    await host.close();
    far.socket.destroy();
    expect(evictedDuring).toBeGreaterThan(0);
    expect(handshakeMs).toBeLessThan(churnHandshakeMsMax);
    // Every connection evicted was an attacker's.
    const evictions = log.slice(logFrom).filter((entry) => entry.event === 'pendingEvicted');
    expect(evictions.filter((entry) => !/(from|oldest of) 127\.0\.0\.[23]\b/.test(entry.message))).toEqual([]);
  });

  it('holds a large write back while a stalled one holds the pool, never a small one, and buffers nothing past the budget', async () => {
    let open = false;
    const waiters: (() => void)[] = [];
    const gate = (): Promise<void> => (open ? Promise.resolve() : new Promise((resolve) => waiters.push(resolve)));
    const exported = memoryExport('vol0', 128 * mib, gate);
    const bufferedBytesMax = 3 * mib + nbdPayloadBytesMax - mib;
    const { server, port } = await serve({ exports: () => [exported], tls: { credentials: ours.site(1), required: false }, limits: { connectionsMax: 3, bufferedBytesMax } });
    const [staller, large, small] = [await Raw.connect(port), await Raw.connect(port), await Raw.connect(port)];
    for (const raw of [staller, large, small]) {
      await raw.greet();
      expect((await raw.go('vol0')).at(-1)).toBe(NbdReply.ack);
    }
    // The staller sends a 32 MiB header and 1 MiB of its payload, then nothing: it holds the whole pool.
    staller.write(Buffer.concat([request(NbdCommand.write, 1, 0, nbdPayloadBytesMax), Buffer.alloc(mib)]));
    await until(() => server.counters().budget.poolBytesUsed === nbdPayloadBytesMax - mib, 'the pool taken');
    // A large write waits, its payload left in the socket; a small one goes through at once.
    large.write(Buffer.concat([request(NbdCommand.write, 2, 64 * mib, 8 * mib), Buffer.alloc(8 * mib, 0x11)]));
    await until(() => server.counters().budget.waiting === 1, 'the large write waiting');
    open = true;
    small.write(Buffer.concat([request(NbdCommand.write, 3, 100 * mib, 64 * 1024), Buffer.alloc(64 * 1024, 0x22)]));
    expect((await small.read(16)).readUInt32BE(4)).toBe(0);
    expect(exported.volume.read(100 * mib, 64 * 1024).every((byte) => byte === 0x22)).toBe(true);
    expect(server.counters().budget.waiting).toBe(1);
    // The staller leaves; the large write is granted and written, never dropped.
    staller.socket.destroy();
    expect((await large.read(16)).readUInt32BE(4)).toBe(0);
    expect(exported.volume.read(64 * mib, 8 * mib).every((byte) => byte === 0x11)).toBe(true);
    for (const wake of waiters) wake();
    expect(server.counters().budget.heldBytesPeak).toBeLessThanOrEqual(bufferedBytesMax);
    await until(() => server.counters().budget.heldBytes === 0, 'every byte given back');
  });
});
