/**
 * A system under test behind the driver protocol (`threesite-driver-v1`, README "Checking another
 * implementation: the driver protocol"): a program in any language, started with `sh -c COMMAND`, that
 * reads one JSON request per line on stdin and writes one JSON answer per line on stdout.
 *
 * The {@link SystemUnderTest} seam is synchronous (the in-process lockstep loop is the hot path), so the
 * I/O runs in a worker thread (`sut-driver-worker.ts`) that owns the driver's process, and the harness's
 * thread blocks on each request with `Atomics.wait` on a shared word, then takes the answer with
 * `receiveMessageOnPort` (the synckit pattern). One driver process serves a whole run: each path or walk
 * begins with a `reset`; a process that broke the protocol is ended and the next path starts another, up to
 * {@link driverLimits}.driverStartsMax. Every way a driver can fail (exit, garbage, a line too long, an
 * answer too late or unasked for) is a {@link DriverProtocolError}, which the lockstep loop reports as a
 * crash divergence.
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort, type Worker } from 'node:worker_threads';
import { hostWriteRange, type HostWriteEvent, type ModelEvent } from '../model/events.ts';
import type { Observation } from '../model/observation.ts';
import type { FencePolicy, ModelParams } from '../model/params.ts';
import { startTypeScriptWorker } from '../model/ts-worker.ts';
import { clusterConfigFor } from './adapter.ts';
import { refusalOfAnswer, type StepOutcome, type SutFactory, type SystemUnderTest } from './sut.ts';

/** The protocol the harness speaks; a driver's `hello` answer must name the same. */
export const driverProtocol = 'threesite-driver-v1';

/** Limits of the harness's side of the driver protocol. */
export const driverLimits = {
  /** Longest answer line, newline excluded (an observation is about 1.5 KiB). */
  answerLineBytesMax: 65_536,
  /** Default deadline of one answer, from the request's write (`hello`'s includes the driver's start). */
  answerTimeoutMs: 30_000,
  /** How much longer than the deadline the harness waits for the worker thread itself (its start included). */
  workerGraceMs: 10_000,
  /** Deadline of the `close` answer, and how long a driver may take to exit after its stdin ends. */
  closeGraceMs: 2_000,
  /** Bytes of the driver's stderr kept for error reports (the most recent). */
  stderrTailBytesMax: 4_096,
  /** Lines of that tail an error message shows. */
  stderrTailLinesMax: 12,
  /** Characters of a request or answer line an error quotes. */
  excerptCharsMax: 240,
  /** Characters of the name a driver gives in its `hello` answer. */
  driverNameCharsMax: 200,
  /** Driver processes one factory starts at most: the first, then one after each protocol failure. */
  driverStartsMax: 4,
};

/** How a driver failed the protocol. */
export type DriverFailure =
  /** The command could not be started. */
  | 'spawn'
  /** The driver's process ended while the harness needed it. */
  | 'exited'
  /** No answer line within the deadline. */
  | 'timeout'
  /** An answer line longer than `answerLineBytesMax`. */
  | 'tooLong'
  /** A line written when no request was waiting for one (more than one answer per request). */
  | 'unsolicited'
  /** A line that is not the JSON answer the request calls for. */
  | 'malformed'
  /** The driver answered `{"ok":false,"error":...}`: it could not carry out a well-formed request. */
  | 'driverError'
  /** The driver failed `driverStartsMax` times; it is not started again. */
  | 'gaveUp';

function excerpt(text: string): string {
  const max = driverLimits.excerptCharsMax;
  return text.length <= max ? text : `${text.slice(0, max)}... (${text.length} characters)`;
}

/**
 * A driver did not follow the protocol, or could not carry out a request. The facts are fields: which
 * failure, the command, the request (truncated), the offending answer line (truncated; null when none
 * came) and the tail of the driver's stderr.
 */
export class DriverProtocolError extends Error {
  constructor(
    readonly failure: DriverFailure,
    readonly command: string,
    /** The request line the harness wrote, truncated to `excerptCharsMax`. */
    readonly request: string,
    /** The answer line that broke the protocol, truncated; null when no line came. */
    readonly line: string | null,
    /** The last `stderrTailBytesMax` bytes the driver wrote on stderr. */
    readonly stderrTail: string,
    readonly detail: string,
  ) {
    const stderrLines = stderrTail.trimEnd().split('\n').slice(-driverLimits.stderrTailLinesMax);
    super(
      `driver ${failure}: ${detail}\n` +
        `  command: ${command}\n  request: ${request}\n  answer: ${line === null ? '(none)' : line}` +
        (stderrTail.trim() ? `\n  stderr (last lines):\n    ${stderrLines.join('\n    ')}` : ''),
    );
    this.name = 'DriverProtocolError';
  }
}

/** The cluster configuration a `reset` request carries: the model's bounds in the implementation's terms. */
export interface DriverConfig {
  volumeCount: number;
  volumeBytes: number;
  blockBytes: number;
  journalEntriesMax: number;
  journalBytesMax: number;
  pullBatchEntriesMax: number;
  fencePolicy: FencePolicy;
}

/** An event on the wire: the model's, except that a host write carries a byte offset and its bytes in base64. */
export type DriverEvent =
  | Exclude<ModelEvent, HostWriteEvent>
  | { type: 'HOST_WRITE'; host: HostWriteEvent['host']; volume: number; offset: number; data: string };

/** A request of the protocol. */
export type DriverRequest =
  | { op: 'hello'; protocol: string }
  | { op: 'reset'; config: DriverConfig }
  | { op: 'apply'; event: DriverEvent }
  | { op: 'observe' }
  | { op: 'close' };

/** The `reset` configuration of a bounded model (the in-process adapter's, flattened). */
export function driverConfigFor(params: ModelParams): DriverConfig {
  const config = clusterConfigFor(params);
  return {
    volumeCount: config.volumeCount,
    volumeBytes: config.volumeBytes,
    blockBytes: config.blockBytes,
    journalEntriesMax: config.journal.entriesMax,
    journalBytesMax: config.journal.bytesMax,
    pullBatchEntriesMax: config.pullBatchEntriesMax,
    fencePolicy: config.fencePolicy,
  };
}

/** A model event as the driver receives it: a host write (a whole block or a byte range) becomes bytes at an offset. */
export function driverEventFor(event: ModelEvent, blockBytes: number): DriverEvent {
  if (event.type !== 'HOST_WRITE') return event;
  const { offset, length } = hostWriteRange(event, blockBytes);
  const data = Buffer.alloc(length, event.data).toString('base64');
  return { type: 'HOST_WRITE', host: event.host, volume: event.volume, offset, data };
}

/** What the worker thread is started with. */
export interface WorkerSetup {
  command: string;
  /** One Int32 the worker sets to 1 (and notifies) after posting each answer. */
  signal: SharedArrayBuffer;
  limits: typeof driverLimits;
}

/** A message to the worker thread. */
export type ToWorker =
  | { kind: 'request'; id: number; line: string; timeoutMs: number }
  | { kind: 'stderr'; id: number }
  | { kind: 'shutdown' };

/** A message from the worker thread: an answer line, a failure of the driver, or the stderr tail. */
export type FromWorker =
  | { id: number; line: string }
  | { id: number; failure: DriverFailure; detail: string; line: string | null; stderrTail: string }
  | { id: number; stderrTail: string };

type Json = Record<string, unknown>;

const observationKeys = ['sites', 'syncPair', 'asyncPair', 'standbyPair', 'cutLinks', 'ackedOnOneSite', 'judgement'] as const;

/** Why a value cannot be an observation at all (its fields are then compared one by one), or null. */
function observationProblem(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'observation is not a JSON object';
  const missing = observationKeys.filter((key) => !(key in value));
  if (missing.length > 0) return `observation lacks ${missing.join(', ')}`;
  const sites = (value as Json).sites;
  if (typeof sites !== 'object' || sites === null) return 'observation.sites is not an object';
  for (const site of ['1', '2', '3']) {
    const one = (sites as Json)[site];
    if (typeof one !== 'object' || one === null || Array.isArray(one)) return `observation.sites.${site} is not an object`;
  }
  return null;
}

/** One driver process and its worker thread; the harness's thread blocks on every request. */
class DriverConnection {
  readonly #worker: Worker;
  readonly #port: MessagePort;
  readonly #signal: Int32Array;
  #nextId = 0;
  /** The failure that ended this driver, or null while it follows the protocol. */
  broken: DriverProtocolError | null = null;
  /** Incremented by every `reset`: a system under test of an earlier one must not be used. */
  generation = 0;

  constructor(
    readonly command: string,
    private readonly answerTimeoutMs: number,
  ) {
    const { port1, port2 } = new MessageChannel();
    const signal = new SharedArrayBuffer(Int32Array.BYTES_PER_ELEMENT);
    const setup: WorkerSetup = { command, signal, limits: driverLimits };
    this.#worker = startTypeScriptWorker(new URL('./sut-driver-worker.ts', import.meta.url), {
      workerData: { ...setup, port: port2 },
      transferList: [port2],
    });
    // Neither the worker nor the port keeps the harness alive; answers are taken with receiveMessageOnPort.
    this.#worker.unref();
    port1.unref();
    this.#worker.on('error', (error) => {
      this.broken ??= this.#error('exited', '(none)', null, '', `the driver's worker thread failed: ${error.message}`);
    });
    this.#port = port1;
    this.#signal = new Int32Array(signal);
  }

  /** Sends a request and returns its answer object; throws {@link DriverProtocolError}. */
  call(request: DriverRequest, timeoutMs = this.answerTimeoutMs): Json {
    if (this.broken) throw this.broken;
    const line = JSON.stringify(request);
    const quoted = excerpt(line);
    const answer = this.#roundTrip({ kind: 'request', id: this.#nextId++, line, timeoutMs }, timeoutMs);
    if (answer === null) {
      void this.#worker.terminate();
      throw this.#break(this.#error('timeout', quoted, null, '', `the worker thread gave no answer within ${timeoutMs + driverLimits.workerGraceMs} ms`));
    }
    if ('failure' in answer) throw this.#break(this.#error(answer.failure, quoted, answer.line === null ? null : excerpt(answer.line), answer.stderrTail, answer.detail));
    if (!('line' in answer)) throw new Error(`driver worker answered a request with ${JSON.stringify(answer)}`);
    let value: unknown;
    try {
      value = JSON.parse(answer.line);
    } catch (error) {
      throw this.malformed(request, answer.line, `the answer is not JSON (${(error as Error).message})`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value)) throw this.malformed(request, answer.line, 'the answer is not a JSON object');
    const object = value as Json;
    if (object.ok === false) {
      const detail = typeof object.error === 'string' ? `the driver could not carry out ${request.op}: ${object.error}` : 'ok is false without an error text';
      // The driver is alive and in step: the next reset may go on with it.
      throw this.#error('driverError', quoted, excerpt(answer.line), this.#stderrTail(), detail);
    }
    return object;
  }

  /** A well-formed line that is not the answer `request` calls for: the driver is ended. */
  malformed(request: DriverRequest, line: string, detail: string): DriverProtocolError {
    const error = this.#error('malformed', excerpt(JSON.stringify(request)), excerpt(line), this.#stderrTail(), detail);
    return this.#break(error);
  }

  /** Sends `close` (unless broken) and ends the worker and the driver; returns the failure of `close`, if any. */
  shutdown(): DriverProtocolError | null {
    let failure: DriverProtocolError | null = null;
    if (this.broken === null) {
      try {
        const answer = this.call({ op: 'close' }, driverLimits.closeGraceMs);
        if (answer.ok !== true) failure = this.malformed({ op: 'close' }, JSON.stringify(answer), 'close must answer {"ok":true}');
      } catch (error) {
        if (!(error instanceof DriverProtocolError)) throw error;
        failure = error;
      }
    }
    this.#port.postMessage({ kind: 'shutdown' } satisfies ToWorker);
    this.broken ??= this.#error('exited', '(none)', null, '', 'the driver was closed');
    return failure;
  }

  #break(error: DriverProtocolError): DriverProtocolError {
    this.broken ??= error;
    return error;
  }

  #error(failure: DriverFailure, request: string, line: string | null, stderrTail: string, detail: string): DriverProtocolError {
    return new DriverProtocolError(failure, this.command, request, line, stderrTail, detail);
  }

  #stderrTail(): string {
    const answer = this.#roundTrip({ kind: 'stderr', id: this.#nextId++ }, 0);
    return answer !== null && 'stderrTail' in answer ? answer.stderrTail : '';
  }

  /** Posts a message to the worker and blocks until its answer or the deadline (plus the worker's grace). */
  #roundTrip(message: Exclude<ToWorker, { kind: 'shutdown' }>, timeoutMs: number): FromWorker | null {
    Atomics.store(this.#signal, 0, 0);
    this.#port.postMessage(message);
    const deadline = performance.now() + timeoutMs + driverLimits.workerGraceMs;
    for (;;) {
      // The worker posts before it signals, so a signalled answer is always on the port.
      const received = receiveMessageOnPort(this.#port);
      if (received !== undefined) {
        const answer = received.message as FromWorker;
        if (answer.id === message.id) return answer;
        continue;
      }
      const left = deadline - performance.now();
      if (left <= 0) return null;
      Atomics.wait(this.#signal, 0, 0, left);
      Atomics.store(this.#signal, 0, 0);
    }
  }
}

/** A driver as a system under test: one `reset` at its creation, then `apply` and `observe` requests. */
export class DriverSut implements SystemUnderTest {
  readonly #generation: number;

  /** Built by {@link driverSutFactory}: `connection` is the driver, or the failure that left none. */
  constructor(
    private readonly connection: DriverConnection | DriverProtocolError,
    private readonly blockBytes: number,
  ) {
    this.#generation = connection instanceof DriverConnection ? connection.generation : -1;
  }

  apply(event: ModelEvent): StepOutcome {
    const request: DriverRequest = { op: 'apply', event: driverEventFor(event, this.blockBytes) };
    const connection = this.#connection();
    const answer = connection.call(request);
    if (answer.accepted === true) return { accepted: true };
    if (answer.accepted !== false || typeof answer.code !== 'string' || typeof answer.message !== 'string') {
      throw connection.malformed(request, JSON.stringify(answer), 'apply must answer {"accepted":true} or {"accepted":false,"code":...,"message":...}');
    }
    return refusalOfAnswer(answer.code, answer.message);
  }

  observe(): Observation {
    const request: DriverRequest = { op: 'observe' };
    const connection = this.#connection();
    const answer = connection.call(request);
    const problem = observationProblem(answer.observation);
    if (problem !== null) throw connection.malformed(request, JSON.stringify(answer), `observe must answer {"observation":{...}}: ${problem}`);
    return answer.observation as Observation;
  }

  /** Nothing to end: the driver's process serves the next path, which resets it. */
  close(): void {}

  #connection(): DriverConnection {
    if (!(this.connection instanceof DriverConnection)) throw this.connection;
    if (this.connection.generation !== this.#generation) throw new Error('DriverSut used after a later reset of its driver');
    return this.connection;
  }
}

/** Options of a driver factory (defaults from {@link driverLimits}). */
export interface DriverOptions {
  answerTimeoutMs: number;
  driverStartsMax: number;
}

/** A {@link SutFactory} of one driver command, with its process's lifetime. */
export interface DriverSutFactory extends SutFactory {
  readonly command: string;
  /** The name the driver gave in its `hello` answer (null until one answered). */
  readonly driverName: string | null;
  /** Driver processes started so far. */
  readonly starts: number;
  /** Ends the driver (`close`, then its stdin); returns the failure of `close`, if any. */
  close(): DriverProtocolError | null;
}

/**
 * The systems under test behind driver `command` (run with `sh -c`): one process, reset for each path or
 * walk, restarted after a protocol failure up to `driverStartsMax` times. A failure to start or reset
 * never throws here: the system under test it returns throws it at its first use, so the lockstep loop
 * reports a crash divergence.
 */
export function driverSutFactory(command: string, options: Partial<DriverOptions> = {}): DriverSutFactory {
  const answerTimeoutMs = options.answerTimeoutMs ?? driverLimits.answerTimeoutMs;
  const driverStartsMax = options.driverStartsMax ?? driverLimits.driverStartsMax;
  let connection: DriverConnection | null = null;
  let lastFailure: DriverProtocolError | null = null;
  let starts = 0;
  let driverName: string | null = null;

  const connect = (): DriverConnection => {
    if (connection !== null && connection.broken === null) return connection;
    if (connection !== null) {
      lastFailure = connection.broken;
      connection.shutdown();
      connection = null;
    }
    if (starts >= driverStartsMax) {
      const last = lastFailure ? `; the last: ${lastFailure.failure}: ${lastFailure.detail}` : '';
      throw new DriverProtocolError('gaveUp', command, '(none)', null, lastFailure?.stderrTail ?? '', `the driver failed ${starts} times (driverStartsMax) and is not started again${last}`);
    }
    starts += 1;
    const fresh = new DriverConnection(command, answerTimeoutMs);
    connection = fresh;
    const hello: DriverRequest = { op: 'hello', protocol: driverProtocol };
    const answer = fresh.call(hello);
    if (answer.ok !== true || answer.protocol !== driverProtocol || typeof answer.name !== 'string') {
      throw fresh.malformed(hello, JSON.stringify(answer), `hello must answer {"ok":true,"protocol":"${driverProtocol}","name":"..."}`);
    }
    driverName = answer.name.slice(0, driverLimits.driverNameCharsMax);
    return fresh;
  };

  const factory = (params: ModelParams): SystemUnderTest => {
    try {
      const driver = connect();
      const reset: DriverRequest = { op: 'reset', config: driverConfigFor(params) };
      driver.generation += 1;
      const answer = driver.call(reset);
      if (answer.ok !== true) throw driver.malformed(reset, JSON.stringify(answer), 'reset must answer {"ok":true}');
      return new DriverSut(driver, params.blockBytes);
    } catch (error) {
      if (!(error instanceof DriverProtocolError)) throw error;
      return new DriverSut(error, params.blockBytes);
    }
  };
  return Object.defineProperties(factory, {
    command: { value: command },
    driverName: { get: () => driverName },
    starts: { get: () => starts },
    close: {
      value: (): DriverProtocolError | null => {
        const open = connection;
        connection = null;
        return open === null ? null : open.shutdown();
      },
    },
  }) as DriverSutFactory;
}
