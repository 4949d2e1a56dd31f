/**
 * The implementation's driver: a program that speaks the JSON-lines driver protocol
 * (`threesite-driver-v1`, README "Checking another implementation: the driver protocol") over stdin and
 * stdout, so that the conformance harness checks this implementation the way it checks one written in any
 * language: `npm start -- --sut "npx tsx impl/drivers/driver.ts"`.
 *
 * One request per line in, one answer per line out. The requests are the implementation's own API
 * vocabulary (a host write is a volume, a byte offset and base64 bytes), mapped here to the in-process
 * {@link Cluster}'s calls; nothing of the model or the harness is imported. A refusal answers with the typed
 * error's `code`; a request that is not well formed answers `{"ok":false,"error":...}` and the driver goes on.
 * The driver exits after `close` or when its stdin ends.
 */
import { pathToFileURL } from 'node:url';
import { Cluster, type ClusterConfig } from '../cluster/cluster.ts';
import { MalformedMessageError, RefusalError } from '../core/errors.ts';
import type { SiteId, SyncSiteId } from '../../model/observation.ts';

/** The protocol this driver speaks, as the `hello` request names it. */
export const driverProtocol = 'threesite-driver-v1';

/** The name the driver gives in its `hello` answer. */
export const driverName = 'threesite impl/drivers/driver.ts (in-process Cluster, memory storage)';

/** Limits of the driver. */
export const driverLimits = {
  /** Longest request line, newline excluded: a host write of the largest journal entry (4 MiB) in base64, and room. */
  requestLineBytesMax: 8 * 1024 * 1024,
};

type Json = Record<string, unknown>;

function object(value: unknown, field: string): Json {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new MalformedMessageError(field, 'must be a JSON object');
  return value as Json;
}

function integer(from: Json, field: string, path: string): number {
  const value = from[field];
  if (typeof value !== 'number' || !Number.isSafeInteger(value)) throw new MalformedMessageError(`${path}.${field}`, 'must be an integer');
  return value;
}

function bool(from: Json, field: string, path: string): boolean {
  const value = from[field];
  if (typeof value !== 'boolean') throw new MalformedMessageError(`${path}.${field}`, 'must be true or false');
  return value;
}

const base64Pattern = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

function bytes(from: Json, field: string, path: string): Uint8Array {
  const value = from[field];
  if (typeof value !== 'string' || !base64Pattern.test(value)) throw new MalformedMessageError(`${path}.${field}`, 'must be base64 text');
  return new Uint8Array(Buffer.from(value, 'base64'));
}

function link(from: Json, path: string): [SiteId, SiteId] {
  const value = from.link;
  if (value !== '1-2' && value !== '1-3' && value !== '2-3') throw new MalformedMessageError(`${path}.link`, 'must be "1-2", "1-3" or "2-3"');
  return value.split('-').map(Number) as [SiteId, SiteId];
}

/** The cluster configuration a `reset` request asks for (the harness's model bounds, in the implementation's terms). */
export function clusterConfigOf(value: unknown): ClusterConfig {
  const config = object(value, 'config');
  const fencePolicy = config.fencePolicy;
  if (fencePolicy !== 'refuse' && fencePolicy !== 'keepWriting') throw new MalformedMessageError('config.fencePolicy', 'must be "refuse" or "keepWriting"');
  return {
    volumeCount: integer(config, 'volumeCount', 'config'),
    volumeBytes: integer(config, 'volumeBytes', 'config'),
    blockBytes: integer(config, 'blockBytes', 'config'),
    journal: { entriesMax: integer(config, 'journalEntriesMax', 'config'), bytesMax: integer(config, 'journalBytesMax', 'config') },
    pullBatchEntriesMax: integer(config, 'pullBatchEntriesMax', 'config'),
    // The harness steps pulls and restores itself; the clock is not driven through the protocol.
    pullIntervalTicks: 1,
    restoreIntervalTicks: 1,
    fencePolicy,
    storage: { kind: 'memory' },
  };
}

/**
 * Decodes an `apply` request's event and returns the cluster call that carries it out. Decoding throws
 * {@link MalformedMessageError} before anything is called; range checks (a site 4, a volume too many) are
 * the cluster's, and come back as refusals.
 */
export function commandOf(value: unknown): (cluster: Cluster) => void {
  const event = object(value, 'event');
  const path = 'event';
  switch (event.type) {
    case 'HOST_WRITE': {
      const host = integer(event, 'host', path) as 1 | 2;
      const volume = integer(event, 'volume', path);
      const offset = integer(event, 'offset', path);
      const data = bytes(event, 'data', path);
      return (cluster) => void cluster.hostWrite(host, volume, offset, data);
    }
    case 'PULL_JOURNAL':
      return (cluster) => cluster.pullJournal();
    case 'RESTORE_JOURNAL':
      return (cluster) => cluster.restoreJournal();
    case 'FAIL_SITE': {
      const site = integer(event, 'site', path) as SiteId;
      return (cluster) => cluster.failSite(site);
    }
    case 'RECOVER_SITE': {
      const site = integer(event, 'site', path) as SiteId;
      return (cluster) => cluster.recoverSite(site);
    }
    case 'CUT_LINK': {
      const [a, b] = link(event, path);
      return (cluster) => cluster.cutLink(a, b);
    }
    case 'RESTORE_LINK': {
      const [a, b] = link(event, path);
      return (cluster) => cluster.restoreLink(a, b);
    }
    case 'FENCE_SITE': {
      const site = integer(event, 'site', path) as SiteId;
      return (cluster) => cluster.fenceSite(site);
    }
    case 'FAILOVER': {
      const force = bool(event, 'force', path);
      return (cluster) => cluster.failover({ force });
    }
    case 'RESYNC_SITE': {
      const site = integer(event, 'site', path) as SyncSiteId;
      return (cluster) => cluster.resyncSite(site);
    }
    case 'DELTA_RESYNC':
      return (cluster) => cluster.deltaResync();
    case 'FULL_COPY':
      return (cluster) => cluster.fullCopy();
    case 'FAILBACK':
      return (cluster) => cluster.failback();
    default:
      throw new MalformedMessageError('event.type', `unknown event type ${JSON.stringify(event.type)}`);
  }
}

/** What one request line produced: the answer line (no newline) and whether the driver should end. */
export interface DriverAnswer {
  line: string;
  done: boolean;
}

const failed = (error: unknown): DriverAnswer => ({
  line: JSON.stringify({ ok: false, error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) }),
  done: false,
});

/**
 * One driver's state: the cluster of the current `reset`, or none. The protocol's logic, without I/O:
 * {@link DriverSession.handle} takes a request line and returns the answer line.
 */
export class DriverSession {
  #cluster: Cluster | null = null;

  /** Answers one request line; never throws (a bug of the cluster answers `ok: false` with its error). */
  handle(text: string): DriverAnswer {
    let request: Json;
    try {
      request = object(JSON.parse(text), 'request');
    } catch (error) {
      return failed(error instanceof SyntaxError ? new MalformedMessageError('request', `not JSON: ${error.message}`) : error);
    }
    try {
      return this.#handle(request);
    } catch (error) {
      return failed(error);
    }
  }

  /** Closes the current cluster, if any. */
  close(): void {
    this.#cluster?.close();
    this.#cluster = null;
  }

  #handle(request: Json): DriverAnswer {
    switch (request.op) {
      case 'hello':
        if (request.protocol !== driverProtocol) throw new MalformedMessageError('protocol', `this driver speaks ${driverProtocol}, not ${JSON.stringify(request.protocol)}`);
        return { line: JSON.stringify({ ok: true, protocol: driverProtocol, name: driverName }), done: false };
      case 'reset': {
        const config = clusterConfigOf(request.config);
        this.close();
        this.#cluster = Cluster.create(config);
        return { line: JSON.stringify({ ok: true }), done: false };
      }
      case 'apply': {
        const command = commandOf(request.event);
        const cluster = this.#current();
        try {
          command(cluster);
        } catch (error) {
          if (!(error instanceof RefusalError)) throw error;
          return { line: JSON.stringify({ accepted: false, code: error.code, message: error.message }), done: false };
        }
        return { line: JSON.stringify({ accepted: true }), done: false };
      }
      case 'observe':
        return { line: JSON.stringify({ observation: this.#current().observe() }), done: false };
      case 'close':
        this.close();
        return { line: JSON.stringify({ ok: true }), done: true };
      default:
        throw new MalformedMessageError('op', `unknown op ${JSON.stringify(request.op)} (hello, reset, apply, observe, close)`);
    }
  }

  #current(): Cluster {
    if (this.#cluster === null) throw new MalformedMessageError('op', 'no cluster yet: send reset first');
    return this.#cluster;
  }
}

/** Runs the driver on stdin and stdout until `close` or the end of stdin. */
export function runDriver(input: NodeJS.ReadableStream = process.stdin, output: NodeJS.WritableStream = process.stdout): void {
  const session = new DriverSession();
  let parts: Buffer[] = [];
  let partsBytes = 0;
  /** True while skipping the rest of a line that was too long (answered already). */
  let skipping = false;
  let done = false;
  const answer = (line: string): void => void output.write(`${line}\n`);
  const onLine = (line: Buffer): void => {
    const result = session.handle(line.toString('utf8').replace(/\r$/, ''));
    answer(result.line);
    if (result.done) {
      done = true;
      input.removeListener('data', onData);
      (input as NodeJS.ReadStream).destroy?.();
    }
  };
  const onData = (chunk: Buffer): void => {
    let start = 0;
    while (!done) {
      const newline = chunk.indexOf(10, start);
      const end = newline === -1 ? chunk.length : newline;
      if (!skipping) {
        parts.push(chunk.subarray(start, end));
        partsBytes += end - start;
        if (partsBytes > driverLimits.requestLineBytesMax) {
          answer(JSON.stringify({ ok: false, error: `MalformedMessageError: request line longer than ${driverLimits.requestLineBytesMax} bytes` }));
          parts = [];
          partsBytes = 0;
          skipping = true;
        }
      }
      if (newline === -1) return;
      if (!skipping) onLine(Buffer.concat(parts));
      parts = [];
      partsBytes = 0;
      skipping = false;
      start = newline + 1;
    }
  };
  input.on('data', onData);
  input.on('end', () => session.close());
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) runDriver();
