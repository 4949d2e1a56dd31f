/**
 * The control port of a site process: how the operator (`operator.ts`, `threesite status|fail|...`) reaches
 * one site's steps (`site-node.ts`). JSON lines over TLS 1.3, one request and one answer per line:
 *
 *     → {"id":1,"op":"status","args":{"digest":false}}
 *     ← {"id":1,"ok":true,"result":{...SiteStatus...}}
 *     → {"id":2,"op":"setRole","args":{"role":"primary","syncPair":"suspended","takeover":false,"epoch":2}}
 *     ← {"id":2,"ok":false,"error":{"code":"NotAllowed","name":"NotAllowedError","message":"..."}}
 *
 * **Who may talk to it** (shared/DESIGN.md section 11; README "Security"). The port requires TLS 1.3 with a
 * client certificate of the cluster's own authority (`net/tls-identity.ts`): the handshake refuses a client
 * without one or with another authority's, and the certificate's subject must name this cluster's operator.
 * The one exception is a sync member asking its peer's {@link controlSiteOps} (`status`) before it takes the
 * primary role ({@link SiteNode.setRole}). A host's certificate, or a site's asking anything else, is answered
 * with one `NotAllowed` line and the connection closed.
 *
 * **No operation is a command of its own.** Every operation is one step of a documented operator command,
 * and the site checks each step against what it sees itself (`site-node.ts`): it refuses to become primary
 * while connected to an unfenced primary of its pair, refuses to be promoted by `recover`, and site 3 takes
 * a source (`attach`) only with the verdict that source sent it. The steps of each command:
 *
 * | `threesite` command | steps, in order (site) |
 * | --- | --- |
 * | `status` | `status` (1, 2, 3) |
 * | `fail --site N` | `fail` (N) |
 * | `recover --site N` | `status` (1, 2, 3), `recover` (N) |
 * | `cut-link` / `restore-link --link A-B` | `cutLink` / `restoreLink` (both ends) |
 * | `fence` | `fence` (1) |
 * | `failover [--force]` | `status` (1, 2, 3), `judge` (3), `recordJudgement` (3, a refused unforced failover), `setRole primary` (2), `setRole secondary` (1, if up), `attach` (3) |
 * | `failback` | `status` (1, 2, 3), `setRole secondary` (2), `judge` (3), `setRole primary` (1), `setRole secondary` (2), `attach` (3); `setRole primary` (2) back if the judge refuses |
 * | `delta-resync` | `status` (1, 2, 3), `deltaResync` (3) |
 * | `full-copy` | `status` (1, 2, 3), `attach` (3, to learn of its source's overflow), `fullCopy` (3) |
 * | `resync --site N` | `status` (1, 2, 3), `resync` (N); for a pair in sync whose primary holds blocks a verify found differing: `setRole` (primary, then secondary; each its own role, pair suspended) first |
 * | `resync --site 3` | as `full-copy` |
 * | `verify [--volume V]` | `status` (1, 2, 3), `verify` (the primary), `requireFullCopy` (3, when its blocks differ) |
 * | (conformance driver: PULL_JOURNAL, RESTORE_JOURNAL) | `status` (1, 2, 3), `pullNow` / `restoreNow` (3): what site 3's timers do |
 * | (a sync member, inside `setRole primary`) | `status` (its peer), asked with the site's own certificate |
 *
 * **Bounded resources.** A connection must finish its handshake within {@link controlHandshakeMsMax} of its
 * arrival (an idle or trickling client is closed); at most {@link controlPendingPerAddressMax} connections
 * from one address and {@link controlPendingMax} in all wait in the handshake, and a new one evicts the
 * oldest of its own address (or, at the total, of the address that holds most), so a client that churns
 * connections evicts only its own; and unauthenticated clients never take the {@link controlSessionsMax}
 * slots that authenticated ones have to themselves. A session idle for
 * {@link controlSessionIdleMs} is closed. Requests are split and answered at a cost linear in their number
 * (no string is re-scanned or re-copied per line, no promise chain grows with the backlog); at most
 * {@link controlBacklogMax} requests wait unanswered per connection, and the port stops reading from it
 * until they are answered (TCP's window then holds the client back). Answers are written one at a time and
 * the next waits until the client reads them.
 *
 * A request is validated field by field before the node sees it; a malformed one is answered with
 * `InvalidArgument` and changes nothing. Lines are at most {@link controlLineBytesMax}; a longer one closes
 * the connection. A refusal comes back as a {@link SiteRefusalError} carrying the site's stable code, so the
 * operator acts on it as on a local one.
 */

import type * as net from 'node:net';
import * as tls from 'node:tls';
import type { AsyncPairState, Judgement, SyncPairState, SyncSiteId } from '../../model/observation.ts';
import { InvalidArgumentError, NotAllowedError, RefusalError, type RefusalCodeName } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import { epochMax, messageVolumesMax, type JudgePurpose } from '../core/messages.ts';
import { verifyDeadlineMsMax } from '../core/verify.ts';
import { AuthenticationError, authenticatedPrincipal, principalName, tlsClientOptions, tlsServerOptions, type Principal, type TlsCredentials } from '../net/tls-identity.ts';
import { SiteUnreachableError, type SiteClient } from './operator.ts';
import type { SiteNode } from './site-node.ts';
import type { SiteId } from '../core/storage-system.ts';

/** Longest request or answer line: 1 MiB (a status is a few hundred bytes). */
export const controlLineBytesMax = 1 << 20;

/** How long the operator waits for a site's answer: long enough for a full copy of test-sized volumes. */
export const controlAnswerTimeoutMsDefault = 120_000;
assert(verifyDeadlineMsMax < controlAnswerTimeoutMsDefault, 'the operator waits for a verify up to its deadline', () => `${verifyDeadlineMsMax} >= ${controlAnswerTimeoutMsDefault}`);

/**
 * Authenticated control connections a site serves at once. The operator opens one per request and closes
 * it at the answer; a site's peer one per promotion.
 */
export const controlSessionsMax = 16;

/** Connections in their TLS handshake at once; one more evicts the oldest of the address that holds most. */
export const controlPendingMax = 16;

/**
 * Connections in their handshake from one address at once; one more evicts that address's oldest. An
 * address that opens connections as fast as they are closed only ever evicts its own, never the operator's
 * handshake from another address.
 */
export const controlPendingPerAddressMax = 4;

/** From a connection's arrival to the end of its handshake (authentication), at most: 5 s. */
export const controlHandshakeMsMax = 5_000;

/** An authenticated connection with no request under way for this long is closed: 60 s. */
export const controlSessionIdleMs = 60_000;

/**
 * Requests one connection may have waiting for their answer, besides the one being answered; at the bound
 * the port stops reading it.
 */
export const controlBacklogMax = 64;

/** The operations a site of the cluster (not the operator) may ask of its peer: its status, read-only, without a digest. */
export const controlSiteOps: readonly string[] = ['status'];

/** A refusal the site gave, carried back over the control port with its code and message. */
export class SiteRefusalError extends RefusalError {
  readonly code: RefusalCodeName;
  constructor(
    readonly site: SiteId,
    code: RefusalCodeName,
    readonly remoteName: string,
    message: string,
  ) {
    super(`site ${site}: ${message}`);
    this.code = code;
    this.name = remoteName;
  }
}

type Args = Record<string, unknown>;

const syncPairs: readonly string[] = ['inSync', 'reversed', 'suspended', 'resyncing'];
const asyncPairs: readonly string[] = ['copying', 'suspended', 'suspendedOverflow', 'deltaResync', 'fullCopy'];
const purposes: readonly string[] = ['failover', 'failback', 'reattach'];
const verdicts: readonly string[] = ['noUpdateRequired', 'deltaResync', 'fullCopy', 'remoteAhead'];

function field<T>(args: Args, name: string, ok: (value: unknown) => boolean): T {
  const value = args[name];
  if (!ok(value)) throw new InvalidArgumentError('control', name, value);
  return value as T;
}

const isSync = (value: unknown): boolean => value === 1 || value === 2;
const isSite = (value: unknown): boolean => value === 1 || value === 2 || value === 3;
const isBool = (value: unknown): boolean => typeof value === 'boolean';
const inList = (list: readonly string[]) => (value: unknown) => typeof value === 'string' && list.includes(value);
const isCount = (value: unknown): boolean => typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
/** An epoch a step carries (the cluster's, raised at each promotion): an integer in [1, epochMax]. */
const isEpoch = (value: unknown): boolean => typeof value === 'number' && Number.isSafeInteger(value) && value >= 1 && value <= epochMax;

function judgementOf(value: unknown): Judgement | null {
  if (value === null) return null;
  if (typeof value !== 'object' || value === undefined) throw new InvalidArgumentError('control', 'judgement', value);
  const j = value as Args;
  return {
    verdict: field(j, 'verdict', inList(verdicts)),
    remoteReceived: field(j, 'remoteReceived', isCount),
    sourceLast: field(j, 'sourceLast', isCount),
    forced: field(j, 'forced', isBool),
  };
}

/** Carries out one validated request on a node; returns the result (undefined for none). */
export async function dispatchControl(node: SiteNode, op: string, args: Args): Promise<unknown> {
  switch (op) {
    case 'status':
      return node.status(args.digest === true);
    case 'fail':
      return node.fail();
    case 'recover':
      return node.recover(field<SyncSiteId>(args, 'primary', isSync), field<number>(args, 'epoch', isEpoch));
    case 'fence':
      return node.fence();
    case 'cutLink':
      return node.cutLink(field<SiteId>(args, 'peer', isSite));
    case 'restoreLink':
      return node.restoreLink(field<SiteId>(args, 'peer', isSite));
    case 'setRole':
      return node.setRole(
        field<'primary' | 'secondary'>(args, 'role', inList(['primary', 'secondary'])),
        field<SyncPairState>(args, 'syncPair', inList(syncPairs)),
        field<boolean>(args, 'takeover', isBool),
        field<number>(args, 'epoch', isEpoch),
      );
    case 'judge':
      return node.judge(field<SyncSiteId>(args, 'to', isSync), field<JudgePurpose>(args, 'purpose', inList(purposes)));
    case 'attach':
      return node.attach(
        field<SyncSiteId>(args, 'source', isSync),
        field<AsyncPairState>(args, 'asyncPair', inList(asyncPairs)),
        judgementOf(args.judgement),
        field<number>(args, 'epoch', isEpoch),
      );
    case 'recordJudgement': {
      const judgement = judgementOf(args.judgement);
      if (judgement === null) throw new InvalidArgumentError('recordJudgement', 'judgement', null);
      return node.recordJudgement(judgement);
    }
    case 'pullNow':
      return node.pullNow();
    case 'restoreNow':
      return node.restoreNow();
    case 'deltaResync':
      return node.deltaResync();
    case 'fullCopy':
      return node.fullCopy();
    case 'resync':
      return node.resync();
    case 'verify': {
      const volumes = args.volumes;
      if (volumes !== null && !(Array.isArray(volumes) && volumes.length <= messageVolumesMax && volumes.every(isCount))) throw new InvalidArgumentError('verify', 'volumes', volumes);
      return node.verify(volumes as number[] | null, field<number>(args, 'deadlineMs', isCount), field<number>(args, 'startedAtMs', isCount));
    }
    case 'requireFullCopy':
      return node.requireFullCopy(field<number>(args, 'verifyId', isCount));
    default:
      throw new InvalidArgumentError('control', 'op', op);
  }
}

/** A client for a node in the same process (tests): the same validation and errors as over the port. */
export function localClient(node: () => SiteNode): SiteClient {
  const call = async (op: string, args: Args = {}): Promise<never> => (await dispatchControl(node(), op, args)) as never;
  return clientOver(call);
}

function clientOver(call: (op: string, args?: Args) => Promise<never>): SiteClient {
  return {
    status: (digest) => call('status', { digest }),
    fail: () => call('fail'),
    recover: (primary, epoch) => call('recover', { primary, epoch }),
    fence: () => call('fence'),
    cutLink: (peer) => call('cutLink', { peer }),
    restoreLink: (peer) => call('restoreLink', { peer }),
    setRole: (role, syncPair, takeover, epoch) => call('setRole', { role, syncPair, takeover, epoch }),
    judge: (to, purpose) => call('judge', { to, purpose }),
    attach: (source, asyncPair, judgement, epoch) => call('attach', { source, asyncPair, judgement, epoch }),
    recordJudgement: (judgement) => call('recordJudgement', { judgement }),
    pullNow: () => call('pullNow'),
    restoreNow: () => call('restoreNow'),
    deltaResync: () => call('deltaResync'),
    fullCopy: () => call('fullCopy'),
    resync: () => call('resync'),
    verify: (volumes, deadlineMs, startedAtMs) => call('verify', { volumes, deadlineMs, startedAtMs }),
    requireFullCopy: (verifyId) => call('requireFullCopy', { verifyId }),
  };
}

/** What a control port has done, for its tests and its log. */
export interface ControlPortCounters {
  /** Connections closed because their handshake did not end within {@link controlHandshakeMsMax}. */
  handshakeTimeouts: number;
  /** Connections closed in their handshake to make room for a newer one ({@link controlPendingMax}). */
  evicted: number;
  /** Handshakes that failed (no certificate, another authority's, not TLS 1.3, not TLS at all). */
  handshakeFailures: number;
  /** Authenticated connections turned away: not the operator nor a site of the cluster, or no free session. */
  refused: number;
  /** Requests answered, on every connection. */
  answered: number;
  /** Times a connection was paused at {@link controlBacklogMax} unanswered requests. */
  backlogPauses: number;
}

/** A serving control port. */
export interface ControlPort {
  readonly server: tls.Server;
  /** The address it listens on (the port, when 0 was asked). */
  readonly address: net.AddressInfo;
  readonly counters: Readonly<ControlPortCounters>;
  /** Connections in their handshake now (at most {@link controlPendingMax}). */
  pendingCount(): number;
  /** Connections in their handshake from `address` now (at most {@link controlPendingPerAddressMax}). */
  pendingFrom(address: string): number;
  /** Authenticated connections now (at most {@link controlSessionsMax}). */
  sessionCount(): number;
  /** Stops listening and closes every connection. */
  close(): Promise<void>;
}

/** What {@link serveControl} needs. */
export interface ControlPortOptions {
  node: () => SiteNode;
  host: string;
  port: number;
  /** The site's own credentials (`siteCredentials`): its certificate serves the port. */
  credentials: TlsCredentials;
  log: (line: string) => void;
  /** The handshake's bound (default {@link controlHandshakeMsMax}; tests shorten it to watch it act). */
  handshakeMsMax?: number;
  /** An idle session's bound (default {@link controlSessionIdleMs}; tests shorten it). */
  sessionIdleMs?: number;
}

/**
 * Serves a node's control port over TLS 1.3 (see the file comment for who is admitted and the bounds).
 * Requests on one connection are carried out one at a time, in order.
 */
export async function serveControl(options: ControlPortOptions): Promise<ControlPort> {
  const { node, credentials, log } = options;
  const counters: ControlPortCounters = { handshakeTimeouts: 0, evicted: 0, handshakeFailures: 0, refused: 0, answered: 0, backlogPauses: 0 };
  /** Raw sockets in their handshake, by remote address, each oldest first (a Set keeps insertion order). */
  const pending = new Map<string, Set<net.Socket>>();
  let pendingTotal = 0;
  const unpend = (raw: net.Socket, address: string): boolean => {
    const mine = pending.get(address);
    if (mine === undefined || !mine.delete(raw)) return false;
    if (mine.size === 0) pending.delete(address);
    pendingTotal -= 1;
    return true;
  };
  const evictOldest = (address: string): void => {
    const oldest = pending.get(address)?.values().next().value as net.Socket;
    unpend(oldest, address);
    counters.evicted += 1;
    oldest.destroy();
  };
  const sessions = new Set<tls.TLSSocket>();
  const handshakeMsMax = options.handshakeMsMax ?? controlHandshakeMsMax;
  const server = tls.createServer({ ...tlsServerOptions(credentials), handshakeTimeout: handshakeMsMax });

  server.on('connection', (raw: net.Socket) => {
    raw.on('error', () => undefined);
    const address = raw.remoteAddress ?? '';
    if ((pending.get(address)?.size ?? 0) >= controlPendingPerAddressMax) evictOldest(address);
    else if (pendingTotal >= controlPendingMax) {
      let most = address;
      for (const [other, sockets] of pending) if (sockets.size > (pending.get(most)?.size ?? 0)) most = other;
      evictOldest(most);
    }
    let mine = pending.get(address);
    if (mine === undefined) {
      mine = new Set();
      pending.set(address, mine);
    }
    mine.add(raw);
    pendingTotal += 1;
    // An absolute bound: a client trickling a byte at a time does not restart it (the TLS handshakeTimeout does).
    const timer = setTimeout(() => {
      if (!unpend(raw, address)) return;
      counters.handshakeTimeouts += 1;
      raw.destroy();
    }, handshakeMsMax);
    timer.unref();
    raw.once('close', () => {
      clearTimeout(timer);
      unpend(raw, address);
    });
    assert(pendingTotal <= controlPendingMax, 'control connections in their handshake are bounded', () => `${pendingTotal}`);
    assert(mine.size <= controlPendingPerAddressMax, 'one address holds a bounded share of the handshakes', () => `${mine?.size}`);
  });
  server.on('tlsClientError', () => {
    counters.handshakeFailures += 1;
  });
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const raw = (socket as unknown as { _parent: net.Socket | null })._parent;
    if (raw !== null) unpend(raw, raw.remoteAddress ?? '');
    socket.on('error', () => undefined);
    let principal: Principal;
    try {
      principal = authenticatedPrincipal(socket, credentials.cluster);
      if (principal.kind === 'host') throw new AuthenticationError('wrongPrincipal', `${principalName(principal)} is not the operator`);
    } catch (error) {
      if (!(error instanceof AuthenticationError)) throw error;
      counters.refused += 1;
      log(`control: refused a connection from ${socket.remoteAddress}: ${error.message}`);
      refuseAndClose(socket, error.message);
      return;
    }
    if (sessions.size >= controlSessionsMax) {
      counters.refused += 1;
      log(`control: ${principalName(principal)} turned away: ${controlSessionsMax} sessions open`);
      refuseAndClose(socket, `${controlSessionsMax} control sessions are open; try again`);
      return;
    }
    sessions.add(socket);
    socket.once('close', () => sessions.delete(socket));
    serveSession(socket, principal, node, counters, options.sessionIdleMs ?? controlSessionIdleMs);
  });

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => resolve());
  });
  return {
    server,
    address: server.address() as net.AddressInfo,
    counters,
    pendingCount: () => pendingTotal,
    pendingFrom: (address) => pending.get(address)?.size ?? 0,
    sessionCount: () => sessions.size,
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const sockets of pending.values()) for (const raw of sockets) raw.destroy();
      for (const socket of sessions) socket.destroy();
      await closed;
    },
  };
}

function refuseAndClose(socket: tls.TLSSocket, message: string): void {
  socket.end(`${JSON.stringify({ id: null, ok: false, error: { code: 'NotAllowed', name: 'NotAllowedError', message } })}\n`);
  setTimeout(() => socket.destroy(), 1000).unref();
}

/**
 * One authenticated connection: its lines are split as they arrive (each byte looked at once), queued up to
 * {@link controlBacklogMax}, and answered one at a time by a single loop.
 */
function serveSession(socket: tls.TLSSocket, principal: Principal, node: () => SiteNode, counters: ControlPortCounters, idleMs: number): void {
  const isOperator = principal.kind === 'operator';
  const queue: string[] = [];
  /** The start of a line not yet ended, in pieces (bytes at most {@link controlLineBytesMax}). */
  let partial: Buffer[] = [];
  let partialBytes = 0;
  /** What arrived past the backlog's bound, split when the queue has room again. */
  let held: Buffer | null = null;
  let answering = false;

  const idle = (): void => {
    if (queue.length === 0 && !answering) socket.destroy();
  };
  // 'timeout' fires after each idle period (setTimeout's own callback would be called once only).
  socket.on('timeout', idle);
  socket.setTimeout(idleMs);

  /** Splits `chunk` into lines onto the queue; returns what is left when the queue is full. */
  const split = (chunk: Buffer): Buffer | null => {
    let start = 0;
    while (start < chunk.length) {
      if (queue.length >= controlBacklogMax) return chunk.subarray(start);
      const newline = chunk.indexOf(10, start);
      if (newline < 0) {
        partial.push(chunk.subarray(start));
        partialBytes += chunk.length - start;
        if (partialBytes > controlLineBytesMax) {
          socket.destroy();
          return null;
        }
        return null;
      }
      let line: Buffer = chunk.subarray(start, newline);
      if (partial.length > 0) {
        if (partialBytes + line.length > controlLineBytesMax) {
          socket.destroy();
          return null;
        }
        line = Buffer.concat([...partial, line]);
        partial = [];
        partialBytes = 0;
      } else if (line.length > controlLineBytesMax) {
        socket.destroy();
        return null;
      }
      queue.push(line.toString('utf8'));
      start = newline + 1;
    }
    return null;
  };

  const pump = async (): Promise<void> => {
    if (answering) return;
    answering = true;
    try {
      while (queue.length > 0 && !socket.destroyed) {
        const line = queue.shift() as string;
        const text = await answer(node(), line, isOperator, principal);
        counters.answered += 1;
        if (socket.destroyed) return;
        if (!socket.write(`${text}\n`)) await writable(socket);
        if (held !== null && queue.length < controlBacklogMax) {
          const rest = held;
          held = split(rest);
          if (held === null && !socket.destroyed) socket.resume();
        }
      }
    } finally {
      answering = false;
    }
  };

  socket.on('data', (chunk: Buffer) => {
    // A chunk already read when the connection was paused is held behind the rest.
    if (held !== null) {
      held = Buffer.concat([held, chunk]);
      return;
    }
    held = split(chunk);
    if (held !== null) {
      counters.backlogPauses += 1;
      socket.pause();
    }
    assert(queue.length <= controlBacklogMax, 'unanswered control requests are bounded', () => `${queue.length}`);
    void pump();
  });
}

/** Resolves when `socket` has written what it holds, or closed. */
function writable(socket: tls.TLSSocket): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      socket.off('drain', done);
      socket.off('close', done);
      resolve();
    };
    socket.on('drain', done);
    socket.on('close', done);
  });
}

async function answer(node: SiteNode, line: string, isOperator: boolean, principal: Principal): Promise<string> {
  let id: unknown = null;
  try {
    let request: unknown;
    try {
      request = JSON.parse(line);
    } catch {
      throw new InvalidArgumentError('control', 'line', 'not JSON');
    }
    if (typeof request !== 'object' || request === null) throw new InvalidArgumentError('control', 'request', request);
    const r = request as Args;
    id = r.id ?? null;
    const args = r.args === undefined ? {} : r.args;
    if (typeof r.op !== 'string' || typeof args !== 'object' || args === null) throw new InvalidArgumentError('control', 'request', 'needs op and args');
    if (!isOperator && !controlSiteOps.includes(r.op)) throw new NotAllowedError(r.op, `${principalName(principal)} may ask only ${controlSiteOps.join(', ')}; the operator's steps need the operator's certificate`);
    // A site asks its peer's role, never a digest of its volumes (which reads every byte).
    const result = await dispatchControl(node, r.op, isOperator ? (args as Args) : { digest: false });
    return JSON.stringify({ id, ok: true, result: result ?? null });
  } catch (error) {
    if (!(error instanceof RefusalError)) throw error;
    return JSON.stringify({ id, ok: false, error: { code: error.code, name: error.name, message: error.message } });
  }
}

/**
 * A client for site `site`'s control port: one short TLS connection per request (the operator is a command).
 * `credentials`: the operator's (`operatorCredentials`), or a site's own when it asks its peer's status, or
 * a function that gives them at the first request (credentials made after the client). The server must
 * present site `site`'s certificate of the same cluster.
 */
export function tcpClient(site: SiteId, host: string, port: number, credentials: TlsCredentials | (() => TlsCredentials), timeoutMs = controlAnswerTimeoutMsDefault): SiteClient {
  let options: tls.ConnectionOptions | null = null;
  const optionsOf = (): tls.ConnectionOptions => (options ??= tlsClientOptions(typeof credentials === 'function' ? credentials() : credentials, { kind: 'site', site }));
  const call = (op: string, args: Args = {}): Promise<never> =>
    new Promise((resolve, reject) => {
      const socket = tls.connect({ ...optionsOf(), host, port });
      let buffered = '';
      let settled = false;
      const settle = (action: () => void): void => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.destroy();
        action();
      };
      const timer = setTimeout(() => settle(() => reject(new SiteUnreachableError(site, `no answer to ${op} within ${timeoutMs} ms`))), timeoutMs);
      socket.setEncoding('utf8');
      socket.on('secureConnect', () => socket.write(`${JSON.stringify({ id: 1, op, args })}\n`));
      socket.on('error', (error) => settle(() => reject(new SiteUnreachableError(site, error.message))));
      socket.on('close', () => settle(() => reject(new SiteUnreachableError(site, `connection closed before the answer to ${op}`))));
      socket.on('data', (chunk: string) => {
        buffered += chunk;
        if (buffered.length > controlLineBytesMax) {
          settle(() => reject(new SiteUnreachableError(site, `an answer longer than ${controlLineBytesMax} bytes`)));
          return;
        }
        const newline = buffered.indexOf('\n');
        if (newline < 0) return;
        let reply: { ok: boolean; result?: unknown; error?: { code: RefusalCodeName; name: string; message: string } };
        try {
          reply = JSON.parse(buffered.slice(0, newline));
        } catch {
          settle(() => reject(new SiteUnreachableError(site, 'an answer that is not JSON')));
          return;
        }
        if (reply.ok) settle(() => resolve(reply.result as never));
        else {
          const e = reply.error ?? { code: 'InvalidArgument' as const, name: 'Error', message: 'no error given' };
          settle(() => reject(new SiteRefusalError(site, e.code, e.name, e.message)));
        }
      });
    });
  return clientOver(call);
}
