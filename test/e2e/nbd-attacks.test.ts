/**
 * Issue 14's attacks on a site's NBD port, against real site processes, each with what must happen:
 * - 500 connections that connect and say nothing (where TLS is required) do not keep a real host out: the
 *   connections not yet authenticated evict one another, never take an admitted slot, and a real client
 *   (qemu-io, nbdinfo over TLS) is served within a generous bound; with the default idle deadline they are
 *   all gone after it.
 * - 128 connections (where plain NBD is allowed, so anyone reaches transmission) each send a 32 MiB WRITE
 *   header and 31 MiB of its payload, then stall: the site reads only what its payload budget holds, its
 *   peak RSS (VmHWM) stays within the bound it printed at start, the stalled writes are disconnected at the
 *   frame deadline, and a real client is served meanwhile.
 * A host certificate of another cluster is refused in `nbd-tls.test.ts`.
 */
import * as net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRequestHeader, NbdClientFlag, NbdCommand, NbdOption, nbdOptionMagic, nbdPayloadBytesMax } from '../../impl/net/nbd-protocol.ts';
import { Deployment, run } from './deployment.ts';

/** How long a real client may take to be served while the site is under attack (a bound, not a claim). */
const servedWithinMs = 90_000;

/**
 * The idle deadline of the deployment under 500 idle connections: long, so that only the eviction of
 * connections not yet admitted can let the real host in before it (within half of it), and the deadline then
 * ends the rest.
 */
const idleTimeoutMs = 20_000;

let deployment: Deployment | null = null;

afterEach(async () => {
  await deployment?.stop();
  deployment = null;
});

/** A connection of the attacker's, with what it received and when it was closed. */
interface Attacker {
  readonly socket: net.Socket;
  readonly closed: Promise<void>;
  received: number;
}

/** Opens `count` TCP connections to `port`; resolves once all are connected. */
async function connections(port: number, count: number): Promise<Attacker[]> {
  return Promise.all(
    Array.from({ length: count }, () =>
      new Promise<Attacker>((resolve, reject) => {
        const socket = net.connect(port, '127.0.0.1');
        const attacker: Attacker = { socket, closed: new Promise((done) => socket.once('close', () => done())), received: 0 };
        socket.on('data', (chunk: Buffer) => (attacker.received += chunk.length));
        socket.once('connect', () => resolve(attacker));
        socket.once('error', reject);
      }).then((attacker) => {
        attacker.socket.on('error', () => undefined);
        return attacker;
      }),
    ),
  );
}

/** Bytes of a plain client's handshake up to `NBD_OPT_GO` of `vol0` (fixed newstyle, no zeroes). */
function plainGo(): Buffer {
  const flags = Buffer.alloc(4);
  flags.writeUInt32BE(NbdClientFlag.fixedNewstyle | NbdClientFlag.noZeroes);
  const name = Buffer.from('vol0');
  const option = Buffer.alloc(16 + 4 + name.length + 2);
  option.writeBigUInt64BE(nbdOptionMagic, 0);
  option.writeUInt32BE(NbdOption.go, 8);
  option.writeUInt32BE(4 + name.length + 2, 12);
  option.writeUInt32BE(name.length, 16);
  name.copy(option, 20);
  return Buffer.concat([flags, option]);
}

function writeHeader(cookie: number, offset: number, length: number): Buffer {
  return encodeRequestHeader({ type: NbdCommand.write, flags: 0, cookie: BigInt(cookie), offset: BigInt(offset), length });
}

/**
 * qemu-io over TLS with host 1's credentials writes and reads back 64 KiB at `offset` of site 1's vol1; retried
 * until served or the bound. `writes`: the writes qemu-io reported done over every attempt (each one host
 * write, one update number: 64 KiB is far below a journal entry's largest).
 */
async function servedWithTls(d: Deployment, offset: number, boundMs = servedWithinMs): Promise<{ attempts: number; ms: number; writes: number }> {
  const start = Date.now();
  let attempts = 0;
  let writes = 0;
  let last = '';
  const wrote = (stdout: string): number => stdout.split('\n').filter((line) => line.startsWith('wrote 65536/65536 bytes')).length;
  while (Date.now() - start < boundMs) {
    attempts += 1;
    try {
      const { stdout } = await run('qemu-io', [...d.qemuTlsObject(), '--image-opts', d.qemuImage(1, 1), '-c', `write -P 0x5c ${offset} 64k`, '-c', `read -P 0x5c ${offset} 64k`], { timeout: 30_000 });
      writes += wrote(stdout);
      if (stdout.includes('read 65536/65536 bytes') && !stdout.includes('Pattern verification failed')) return { attempts, ms: Date.now() - start, writes };
      last = stdout;
    } catch (error) {
      writes += wrote(String((error as { stdout?: string }).stdout ?? ''));
      last = String((error as { stderr?: string }).stderr ?? error);
    }
    await new Promise((done) => setTimeout(done, 500));
  }
  throw new Error(`no real client served within ${boundMs} ms (${attempts} attempts); last: ${last}\n${d.logText()}`);
}

describe('attacks on the NBD port of a site process', () => {
  it('500 idle connections do not keep a real host out, and the idle deadline ends them', async () => {
    const d = await Deployment.create({ nbdTls: 'required', nbdIdleTimeoutMs: idleTimeoutMs, nbdHandshakeTimeoutMs: 2 * idleTimeoutMs });
    deployment = d;
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);
    const idle = await connections(d.nbdPort(1), 500);
    const served = await servedWithTls(d, 0, idleTimeoutMs / 2);
    console.log(`500 idle connections: qemu-io over TLS served after ${served.attempts} attempt(s), ${served.ms} ms`);
    const info = await run('nbdinfo', [d.nbdsUri(1)], { timeout: 30_000 });
    expect(info.stdout).toContain('export-size');
    // Every idle connection is gone once the idle deadline has passed (evicted or timed out), none served.
    await Promise.all(idle.map((attacker) => attacker.closed));
    expect(d.logs.get(1)?.some((line) => line.includes(`timeout: nothing received for ${idleTimeoutMs} ms`))).toBe(true);
    expect(d.peakRssBytes(1)).toBeLessThanOrEqual(d.memoryBoundBytes(1));
  }, 180_000);

  it('128 connections stalled in 32 MiB writes keep the site within its memory bound, and a real host is served', async () => {
    // A frame deadline of 10 s (the default is 30 s; only its length differs): the real host, refused while the
    // 128 attackers hold every slot, is served once the first stalled writes are disconnected.
    const d = await Deployment.create({ nbdTls: 'optional', nbdFrameTimeoutMs: 10_000 });
    deployment = d;
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);
    const bound = d.memoryBoundBytes(1);
    const before = (await d.status()).sites[1]?.lastUpdateNumber;
    expect(before).toBeTypeOf('number');
    // Every attacker is in transmission (the greeting, NBD_INFO_EXPORT and the ACK received: 18 + 32 + 20
    // bytes) before any sends its write: all 128 slots are theirs when the real host comes. They connect 32
    // at a time, each saying GO at once (more silent ones than pendingConnectionsMax would evict one another).
    const attackers: Attacker[] = [];
    for (let batch = 0; batch < 4; batch += 1) {
      const some = await connections(d.nbdPort(1), 32);
      for (const attacker of some) attacker.socket.write(plainGo());
      attackers.push(...some);
    }
    await d.waitFor('128 attackers in transmission', () => attackers.every((attacker) => attacker.received >= 70));
    // 31 MiB of each 32 MiB payload: 3.9 GiB offered (the site went to 4.2 GiB). One buffer, written
    // to every socket (no copy on this side).
    const partial = Buffer.alloc(31 * 1024 * 1024, 0xee);
    for (const [i, attacker] of attackers.entries()) {
      attacker.socket.write(writeHeader(i, 0, nbdPayloadBytesMax));
      attacker.socket.write(partial);
    }
    const served = await servedWithTls(d, 1024 * 1024);
    console.log(`128 stalled 32 MiB writes: qemu-io over TLS served after ${served.attempts} attempt(s), ${served.ms} ms`);
    const peak = d.peakRssBytes(1);
    console.log(`site 1 peak RSS ${(peak / 2 ** 20).toFixed(0)} MiB, printed bound ${(bound / 2 ** 20).toFixed(0)} MiB`);
    expect(peak).toBeLessThanOrEqual(bound);
    expect(d.logs.get(1)?.some((line) => line.includes('timeout: a WRITE payload of'))).toBe(true);
    // Nothing the attackers sent was written: once they are gone (a write whose payload never arrived can no
    // longer complete), site 1 holds the real client's writes and not one update more, and so does site 2.
    for (const attacker of attackers) attacker.socket.destroy();
    await Promise.all(attackers.map((attacker) => attacker.closed));
    expect(served.writes).toBeGreaterThanOrEqual(1);
    const status = await d.waitFor('site 2 holding what site 1 holds', (s) => s.sites[2]?.lastUpdateNumber === s.sites[1]?.lastUpdateNumber);
    expect(status.sites[1]?.lastUpdateNumber).toBe((before as number) + served.writes);
  }, 240_000);
});
