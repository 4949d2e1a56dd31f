/**
 * The minimal NBD client (impl/net/nbd-client.ts) against this repository's NBD server on loopback: the
 * handshake gives the export's size and read-only flag; writes and reads round-trip; the server's errors come
 * back as the spec's errno (EPERM on a read-only export, ENOSPC past the end) on a connection that stays
 * usable; an export the server does not have is `unknownExport`; a server that stops answering is a timeout.
 */
import * as net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { NbdClient, NbdClientError, NbdReplyError } from '../../impl/net/nbd-client.ts';
import { NbdServer } from '../../impl/net/nbd-server.ts';
import { type NbdExport } from '../../impl/net/nbd-protocol.ts';

const sizeBytes = 4096;

function memoryExport(name: string, readOnly: boolean): NbdExport {
  const bytes = new Uint8Array(sizeBytes);
  return {
    name,
    description: `${name} in memory`,
    sizeBytes,
    blockBytes: 512,
    readOnly: () => readOnly,
    read: (offset, length) => bytes.slice(offset, offset + length),
    write: async (offset, data) => void bytes.set(data, offset),
    flush: async () => undefined,
    trim: async (offset, length) => void bytes.fill(0, offset, offset + length),
    writeZeroes: async (offset, length) => void bytes.fill(0, offset, offset + length),
  };
}

const server = new NbdServer({ exports: () => [memoryExport('vol0', false), memoryExport('ro', true)], logger: () => undefined });
let port = 0;
beforeAll(async () => {
  port = await server.listen(0, '127.0.0.1');
});
afterAll(async () => {
  await server.close();
});

describe('the NBD client', () => {
  it('opens an export with NBD_OPT_GO, writes, reads back and flushes', async () => {
    const client = await NbdClient.connect('127.0.0.1', port, 'vol0');
    expect(client.sizeBytes).toBe(sizeBytes);
    expect(client.readOnly).toBe(false);
    await client.write(512, new Uint8Array(512).fill(7));
    await client.write(1024, new Uint8Array(16).fill(9), { fua: true });
    expect(await client.read(512, 512)).toEqual(new Uint8Array(512).fill(7));
    expect(Array.from(await client.read(1020, 24))).toEqual([7, 7, 7, 7, ...new Array(16).fill(9), 0, 0, 0, 0]);
    await client.flush();
    await client.close();
    expect(client.closed).toBe(true);
  });

  it('gets EPERM from a read-only export and ENOSPC past the end, and goes on', async () => {
    const readOnly = await NbdClient.connect('127.0.0.1', port, 'ro');
    expect(readOnly.readOnly).toBe(true);
    await expect(readOnly.write(0, new Uint8Array(512))).rejects.toMatchObject({ name: 'NbdReplyError', errnoName: 'EPERM' });
    expect(await readOnly.read(0, 4)).toEqual(new Uint8Array(4));
    await readOnly.close();
    const client = await NbdClient.connect('127.0.0.1', port, 'vol0');
    const error = await client.write(sizeBytes - 256, new Uint8Array(512)).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NbdReplyError);
    expect(error).toMatchObject({ command: 'write', errnoName: 'ENOSPC' });
    await client.write(0, new Uint8Array(4).fill(1));
    await client.close();
  });

  it('an unknown export is unknownExport', async () => {
    const error = await NbdClient.connect('127.0.0.1', port, 'vol9').catch((e: unknown) => e);
    expect(error).toBeInstanceOf(NbdClientError);
    expect(error).toMatchObject({ kind: 'unknownExport' });
  });

  it('a server that never answers is a timeout, not a hang', async () => {
    const silent = net.createServer(() => undefined);
    const silentPort = await new Promise<number>((resolve) => silent.listen(0, '127.0.0.1', () => resolve((silent.address() as net.AddressInfo).port)));
    const error = await NbdClient.connect('127.0.0.1', silentPort, 'vol0', 200).catch((e: unknown) => e);
    expect(error).toMatchObject({ name: 'NbdClientError', kind: 'timeout' });
    silent.close();
  });
});
