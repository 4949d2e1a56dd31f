/**
 * The control port of a site process: how the operator (`operator.ts`, `threesite status|fail|...`) reaches
 * one site's steps (`site-node.ts`). JSON lines over TCP on loopback, one request and one answer per line:
 *
 *     → {"id":1,"op":"status","args":{"digest":false}}
 *     ← {"id":1,"ok":true,"result":{...SiteStatus...}}
 *     → {"id":2,"op":"setRole","args":{"role":"primary","syncPair":"suspended","takeover":false,"epoch":2}}
 *     ← {"id":2,"ok":false,"error":{"code":"NotAllowed","name":"NotAllowedError","message":"..."}}
 *
 * A request is validated field by field before the node sees it; a malformed one is answered with
 * `InvalidArgument` and changes nothing. Lines are at most {@link controlLineBytesMax}; a longer one closes
 * the connection. A refusal comes back as a {@link SiteRefusalError} carrying the site's stable code, so the
 * operator acts on it as on a local one.
 */

import * as net from 'node:net';
import type { AsyncPairState, Judgement, SyncPairState, SyncSiteId } from '../../model/observation.ts';
import { InvalidArgumentError, RefusalError, type RefusalCodeName } from '../core/errors.ts';
import { epochMax, type JudgePurpose } from '../core/messages.ts';
import { SiteUnreachableError, type SiteClient } from './operator.ts';
import type { SiteNode } from './site-node.ts';
import type { SiteId } from '../core/storage-system.ts';

/** Longest request or answer line: 1 MiB (a status is a few hundred bytes). */
export const controlLineBytesMax = 1 << 20;

/** How long the operator waits for a site's answer: long enough for a full copy of test-sized volumes. */
export const controlAnswerTimeoutMsDefault = 120_000;

/** Control connections a site serves at once. */
export const controlConnectionsMax = 16;

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
  };
}

/**
 * Serves a node's control port. Requests on one connection are carried out one at a time, in order.
 * Returns the server (close it to stop).
 */
export async function serveControl(node: () => SiteNode, host: string, port: number, log: (line: string) => void): Promise<net.Server> {
  const server = net.createServer((socket) => {
    let buffered = '';
    let chain = Promise.resolve();
    socket.setEncoding('utf8');
    socket.on('error', () => undefined);
    socket.on('data', (chunk: string) => {
      buffered += chunk;
      if (buffered.length > controlLineBytesMax && !buffered.includes('\n')) {
        log(`control: a request line longer than ${controlLineBytesMax} bytes; connection closed`);
        socket.destroy();
        return;
      }
      let newline = buffered.indexOf('\n');
      while (newline >= 0) {
        const line = buffered.slice(0, newline);
        buffered = buffered.slice(newline + 1);
        chain = chain.then(() => answer(node(), line)).then((text) => {
          if (!socket.destroyed) socket.write(`${text}\n`);
        });
        newline = buffered.indexOf('\n');
      }
    });
  });
  server.maxConnections = controlConnectionsMax;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return server;
}

async function answer(node: SiteNode, line: string): Promise<string> {
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
    const result = await dispatchControl(node, r.op, args as Args);
    return JSON.stringify({ id, ok: true, result: result ?? null });
  } catch (error) {
    if (!(error instanceof RefusalError)) throw error;
    return JSON.stringify({ id, ok: false, error: { code: error.code, name: error.name, message: error.message } });
  }
}

/** A client for a site's control port: one short connection per request (the operator is a command). */
export function tcpClient(site: SiteId, host: string, port: number, timeoutMs = controlAnswerTimeoutMsDefault): SiteClient {
  const call = (op: string, args: Args = {}): Promise<never> =>
    new Promise((resolve, reject) => {
      const socket = net.connect({ host, port });
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
      socket.on('connect', () => socket.write(`${JSON.stringify({ id: 1, op, args })}\n`));
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
