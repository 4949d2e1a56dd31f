/**
 * The control port (impl/site/site-control.ts) on loopback, over a stand-in node that records the steps it
 * is asked for: who is admitted (the operator's certificate of this cluster; a site's for `status` only;
 * nobody else, whatever line they send), and the bounds (handshake time, connections in their handshake,
 * sessions, unanswered requests per connection, a cost linear in the number of requests).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import * as net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createCredentialsFor, hostCredentials, operatorCredentials, siteCredentials } from '../../impl/site/credentials.ts';
import { localDeploymentConfig, validateDeploymentConfig, type DeploymentConfig } from '../../impl/site/deployment-config.ts';
import { tlsClientOptions, type TlsCredentials } from '../../impl/net/tls-identity.ts';
import {
  controlBacklogMax,
  controlLineBytesMax,
  controlPendingMax,
  controlPendingPerAddressMax,
  controlSessionsMax,
  serveControl,
  SiteRefusalError,
  tcpClient,
  type ControlPort,
} from '../../impl/site/site-control.ts';
import type { SiteNode } from '../../impl/site/site-node.ts';

/** How long a test waits for a condition on the port before it fails. */
const waitMsMax = 10_000;

/** A node that answers `status` and records every other step it is asked for (none may reach it unauthorised). */
class StandInNode {
  readonly steps: string[] = [];
  /** While set, `status` waits for it (a request under way). */
  gate: Promise<void> | null = null;
  statusCalls = 0;
  async status(): Promise<object> {
    this.statusCalls += 1;
    if (this.gate !== null) await this.gate;
    return { site: 1, role: 'primary' };
  }
  setRole(role: string): void {
    this.steps.push(`setRole ${role}`);
  }
  fail(): void {
    this.steps.push('fail');
  }
}

let dir: string;
let config: DeploymentConfig;
let other: DeploymentConfig;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'threesite-control-'));
  config = validateDeploymentConfig(localDeploymentConfig({ cluster: 'alpha', dir: join(dir, 'alpha'), basePort: 21000 }), join(dir, 'alpha'));
  other = validateDeploymentConfig(localDeploymentConfig({ cluster: 'beta', dir: join(dir, 'beta'), basePort: 22000 }), join(dir, 'beta'));
  await createCredentialsFor(config);
  await createCredentialsFor(other);
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

async function serve(node: StandInNode, handshakeMsMax?: number, sessionIdleMs?: number): Promise<ControlPort> {
  const log: string[] = [];
  return serveControl({
    node: () => node as unknown as SiteNode,
    host: '127.0.0.1',
    port: 0,
    credentials: siteCredentials(config, 1),
    log: (line) => log.push(line),
    ...(handshakeMsMax === undefined ? {} : { handshakeMsMax }),
    ...(sessionIdleMs === undefined ? {} : { sessionIdleMs }),
  });
}

async function until(what: string, ready: () => boolean): Promise<void> {
  const deadline = Date.now() + waitMsMax;
  while (!ready()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** Everything a connection receives until it closes (or `waitMsMax`: then `gaveUp`), and how it ended. */
function drain(socket: net.Socket): Promise<{ text: string; error: string | null; gaveUp: boolean }> {
  return new Promise((resolve) => {
    let text = '';
    let error: string | null = null;
    let gaveUp = false;
    const timer = setTimeout(() => {
      gaveUp = true;
      socket.destroy();
    }, waitMsMax);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => (text += chunk));
    socket.on('error', (e) => (error = e.message));
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ text, error, gaveUp });
    });
  });
}

const setRoleLine = `${JSON.stringify({ id: 1, op: 'setRole', args: { role: 'primary', syncPair: 'suspended', takeover: true } })}\n`;

/** A TLS connection with `options` that sends `line` once connected; what came back. */
function tlsAttempt(port: number, options: tls.ConnectionOptions, line: string): Promise<{ text: string; error: string | null; gaveUp: boolean }> {
  const socket = tls.connect({ ...options, host: '127.0.0.1', port });
  socket.on('secureConnect', () => socket.write(line));
  return drain(socket);
}

describe('who the control port admits', () => {
  it('carries out the operator\'s steps, and refuses everyone else\'s setRole without the node seeing it', async () => {
    const node = new StandInNode();
    const port = await serve(node);
    const p = port.address.port;
    try {
      // The operator: its steps reach the node.
      const operator = tcpClient(1, '127.0.0.1', p, operatorCredentials(config));
      await operator.setRole('primary', 'suspended', true, 2);
      expect(node.steps).toEqual(['setRole primary']);
      node.steps.length = 0;

      // Plain TCP, the JSON line as it was sent before issue 14: the TLS server takes it for a bad handshake.
      const plain = net.connect(p, '127.0.0.1', () => plain.write(setRoleLine));
      expect((await drain(plain)).text).toBe('');

      // TLS without a client certificate: the handshake is refused.
      const noCert = await tlsAttempt(p, { ca: operatorCredentials(config).ca, minVersion: 'TLSv1.3', checkServerIdentity: () => undefined }, setRoleLine);
      expect(noCert.text).toBe('');

      // A host's certificate of this cluster: authenticated, but not the operator.
      const host = await tlsAttempt(p, tlsClientOptions(hostCredentials(config, 1), { kind: 'site', site: 1 }), setRoleLine);
      expect(host.text).toContain('"code":"NotAllowed"');
      expect(host.text).toContain('host-1 is not the operator');

      // Another cluster's operator: its chain does not lead to this cluster's authority.
      const foreign: TlsCredentials = { ...operatorCredentials(other), ca: `${operatorCredentials(other).ca}${operatorCredentials(config).ca}` };
      const stranger = await tlsAttempt(p, { ...tlsClientOptions(foreign, { kind: 'site', site: 1 }), checkServerIdentity: () => undefined }, setRoleLine);
      expect(stranger.text).toBe('');

      // A site of this cluster (site 2 asking its peer): status only.
      const site2 = tcpClient(1, '127.0.0.1', p, siteCredentials(config, 2));
      await expect(site2.status(false)).resolves.toMatchObject({ role: 'primary' });
      const refused = await site2.setRole('primary', 'suspended', true, 2).catch((error: unknown) => error);
      expect(refused).toBeInstanceOf(SiteRefusalError);
      expect(refused).toMatchObject({ code: 'NotAllowed' });
      expect((refused as Error).message).toContain('site-2 may ask only status');

      expect(node.steps).toEqual([]);
      expect(port.counters.handshakeFailures).toBeGreaterThanOrEqual(3);
      expect(port.counters.refused).toBe(1);
    } finally {
      await port.close();
    }
  });

  it('the operator refuses a server that is not the site it dials', async () => {
    const node = new StandInNode();
    const port = await serve(node);
    try {
      const wrongSite = tcpClient(2, '127.0.0.1', port.address.port, operatorCredentials(config));
      await expect(wrongSite.status(false)).rejects.toThrow(/site-1, expected site-2/);
      expect(node.statusCalls).toBe(0);
    } finally {
      await port.close();
    }
  });
});

describe('the control port\'s bounds', () => {
  it(`keeps at most ${controlPendingPerAddressMax} handshakes per address and ${controlPendingMax} in all; churn evicts only its own`, async () => {
    const node = new StandInNode();
    const port = await serve(node);
    const idle: net.Socket[] = [];
    const from = async (address: string): Promise<net.Socket> => {
      const socket = net.connect({ port: port.address.port, host: '127.0.0.1', localAddress: address });
      socket.on('error', () => undefined);
      idle.push(socket);
      await new Promise((resolve) => socket.once('connect', resolve));
      return socket;
    };
    try {
      const first = await from('127.0.0.2');
      for (let i = 1; i < controlPendingPerAddressMax; i += 1) await from('127.0.0.2');
      await until('a full share', () => port.pendingFrom('127.0.0.2') === controlPendingPerAddressMax);
      expect(port.counters.evicted).toBe(0);
      // One more from the same address: its own oldest goes.
      const closed = new Promise((resolve) => first.once('close', resolve));
      await from('127.0.0.2');
      await closed;
      await until('the share kept', () => port.counters.evicted === 1 && port.pendingFrom('127.0.0.2') === controlPendingPerAddressMax);
      // Four addresses fill the total; a fifth address evicts from one that holds most.
      for (const address of ['127.0.0.3', '127.0.0.4', '127.0.0.5']) for (let i = 0; i < controlPendingPerAddressMax; i += 1) await from(address);
      await until('the total', () => port.pendingCount() === controlPendingMax);
      await from('127.0.0.6');
      await until('one evicted for the fifth address', () => port.counters.evicted === 2 && port.pendingFrom('127.0.0.6') === 1);
      expect(port.pendingCount()).toBe(controlPendingMax);
      // Churn from one address: it evicts its own, never another address's handshake.
      for (let i = 0; i < 3 * controlPendingPerAddressMax; i += 1) await from('127.0.0.3');
      await until('the churn evicted', () => port.counters.evicted === 2 + 3 * controlPendingPerAddressMax);
      expect(port.pendingFrom('127.0.0.6')).toBe(1);
      expect(port.pendingFrom('127.0.0.3')).toBe(controlPendingPerAddressMax);
      // The operator, from its own address, is served.
      const operator = tcpClient(1, '127.0.0.1', port.address.port, operatorCredentials(config));
      await expect(operator.status(false)).resolves.toMatchObject({ site: 1 });
      expect(port.pendingCount()).toBeLessThanOrEqual(controlPendingMax);
    } finally {
      for (const socket of idle) socket.destroy();
      await port.close();
    }
  });

  it('closes a connection that has not authenticated within the handshake bound', async () => {
    const node = new StandInNode();
    const port = await serve(node, 200);
    try {
      const idle = net.connect(port.address.port, '127.0.0.1');
      // The port closes it, long before this test would give up.
      expect((await drain(idle)).gaveUp).toBe(false);
      expect(port.counters.handshakeTimeouts + port.counters.handshakeFailures).toBeGreaterThanOrEqual(1);
      expect(port.pendingCount()).toBe(0);
    } finally {
      await port.close();
    }
  });

  it(`serves ${controlSessionsMax} authenticated sessions at once and turns the next away`, async () => {
    const node = new StandInNode();
    const port = await serve(node);
    const options = { ...tlsClientOptions(operatorCredentials(config), { kind: 'site', site: 1 }), host: '127.0.0.1', port: port.address.port };
    const open: tls.TLSSocket[] = [];
    try {
      for (let i = 0; i < controlSessionsMax; i += 1) {
        const socket = tls.connect(options);
        socket.on('error', () => undefined);
        open.push(socket);
      }
      await until(`${controlSessionsMax} sessions`, () => port.sessionCount() === controlSessionsMax);
      const extra = await tlsAttempt(port.address.port, options, `${JSON.stringify({ id: 1, op: 'status' })}\n`);
      expect(extra.text).toContain(`${controlSessionsMax} control sessions are open`);
      expect(port.sessionCount()).toBe(controlSessionsMax);
      open.pop()?.destroy();
      await until('a free session', () => port.sessionCount() === controlSessionsMax - 1);
      await expect(tcpClient(1, '127.0.0.1', port.address.port, operatorCredentials(config)).status(false)).resolves.toMatchObject({ site: 1 });
    } finally {
      for (const socket of open) socket.destroy();
      await port.close();
    }
  });

  it(`stops reading a connection at ${controlBacklogMax} waiting requests, and answers them all in order`, async () => {
    for (const count of [controlBacklogMax, controlBacklogMax + 1]) {
      const node = new StandInNode();
      let open!: () => void;
      node.gate = new Promise<void>((resolve) => (open = resolve));
      const port = await serve(node);
      try {
        const socket = tls.connect({ ...tlsClientOptions(operatorCredentials(config), { kind: 'site', site: 1 }), host: '127.0.0.1', port: port.address.port });
        const lines = Array.from({ length: count }, (_, i) => JSON.stringify({ id: i, op: 'status' })).join('\n');
        socket.on('secureConnect', () => socket.write(`${lines}\n`));
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (chunk: string) => (text += chunk));
        await until('the first request under way', () => node.statusCalls === 1);
        // One write, one TLS record, one read at the port: the whole backlog arrived at once.
        expect(port.counters.backlogPauses).toBe(count > controlBacklogMax ? 1 : 0);
        open();
        await until(`${count} answers`, () => text.split('\n').length > count);
        const ids = text.trim().split('\n').map((line) => (JSON.parse(line) as { id: number }).id);
        expect(ids).toEqual(Array.from({ length: count }, (_, i) => i));
        socket.destroy();
      } finally {
        await port.close();
      }
    }
  });

  it('answers empty lines at a cost linear in their number', async () => {
    const node = new StandInNode();
    const port = await serve(node);
    const options = { ...tlsClientOptions(operatorCredentials(config), { kind: 'site', site: 1 }), host: '127.0.0.1', port: port.address.port };
    /** CPU time of this process (server and client alike) to send `lines` empty lines and read every answer. */
    const cost = async (lines: number): Promise<number> => {
      const before = process.cpuUsage();
      await new Promise<void>((resolve, reject) => {
        const socket = tls.connect(options);
        let answers = 0;
        socket.on('secureConnect', () => socket.write('\n'.repeat(lines)));
        socket.on('data', (chunk: Buffer) => {
          for (let at = chunk.indexOf(10); at >= 0; at = chunk.indexOf(10, at + 1)) answers += 1;
          if (answers === lines) {
            socket.destroy();
            resolve();
          }
        });
        socket.on('error', reject);
      });
      const used = process.cpuUsage(before);
      return used.user + used.system;
    };
    try {
      await cost(1_000);
      const small = await cost(1_000);
      const large = await cost(8_000);
      // Eight times the lines: about eight times the cost when linear, sixty-four when quadratic.
      expect(large / small).toBeLessThan(24);
      expect(port.counters.answered).toBe(10_000);
    } finally {
      await port.close();
    }
  });

  it(`answers a request line of ${controlLineBytesMax} bytes and closes the connection at one byte more`, async () => {
    const node = new StandInNode();
    const port = await serve(node);
    const options = { ...tlsClientOptions(operatorCredentials(config), { kind: 'site', site: 1 }), host: '127.0.0.1', port: port.address.port };
    /** A status request padded to `bytes` bytes (its newline not counted), sent in pieces. */
    const send = (bytes: number): Promise<{ text: string; gaveUp: boolean }> => {
      const head = JSON.stringify({ id: 7, op: 'status', args: { digest: false }, pad: '' });
      const line = `${head.slice(0, -2)}${'x'.repeat(bytes - head.length)}"}`;
      expect(Buffer.byteLength(line)).toBe(bytes);
      const socket = tls.connect(options);
      socket.on('secureConnect', () => {
        for (let at = 0; at < line.length; at += 64 * 1024) socket.write(line.slice(at, at + 64 * 1024));
        socket.write('\n', () => socket.end());
      });
      return drain(socket);
    };
    try {
      const fits = await send(controlLineBytesMax);
      expect(fits.text).toContain('"id":7,"ok":true');
      const over = await send(controlLineBytesMax + 1);
      expect(over.gaveUp).toBe(false);
      expect(over.text).toBe('');
      expect(node.statusCalls).toBe(1);
    } finally {
      await port.close();
    }
  });

  it('closes an authenticated session left idle, never one with a request under way', async () => {
    const node = new StandInNode();
    let open!: () => void;
    node.gate = new Promise<void>((resolve) => (open = resolve));
    const port = await serve(node, undefined, 200);
    try {
      const socket = tls.connect({ ...tlsClientOptions(operatorCredentials(config), { kind: 'site', site: 1 }), host: '127.0.0.1', port: port.address.port });
      socket.on('secureConnect', () => socket.write(`${JSON.stringify({ id: 1, op: 'status' })}\n`));
      const ended = drain(socket);
      await until('the request under way', () => node.statusCalls === 1);
      // Several idle periods pass while the request waits: the session stays.
      await new Promise((resolve) => setTimeout(resolve, 1_000));
      expect(port.sessionCount()).toBe(1);
      open();
      const { text, gaveUp } = await ended;
      expect(text).toContain('"id":1,"ok":true');
      expect(gaveUp).toBe(false);
      await until('the session closed at the port', () => port.sessionCount() === 0);
    } finally {
      await port.close();
    }
  });
});
