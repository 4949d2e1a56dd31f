/**
 * The worker thread of a driver system under test (`sut-driver.ts`): it owns the driver's process, writes
 * each request line to its stdin and reads exactly one answer line from its stdout, under a deadline, while
 * the harness's thread blocks in `Atomics.wait`. Every answer is posted on the port first, then signalled
 * through the shared word (the synckit pattern), so the harness takes it with `receiveMessageOnPort`.
 *
 * Once the driver broke the protocol (exited, wrote a line too long or one nobody asked for, missed a
 * deadline) the worker kills its process group and answers every later request with that failure.
 */
import { spawn } from 'node:child_process';
import { workerData, type MessagePort } from 'node:worker_threads';
import type { DriverFailure, ToWorker, FromWorker, WorkerSetup } from './sut-driver.ts';

const { command, signal: signalBuffer, port, limits } = workerData as WorkerSetup & { port: MessagePort };
const signal = new Int32Array(signalBuffer);

const child = spawn('sh', ['-c', command], { stdio: ['pipe', 'pipe', 'pipe'], detached: true });
let pending: { id: number; timer: NodeJS.Timeout } | null = null;
let broken: { failure: DriverFailure; detail: string; line: string | null } | null = null;
let closing = false;
let stderrTail = Buffer.alloc(0);
let parts: Buffer[] = [];
let partsBytes = 0;

function post(message: FromWorker): void {
  port.postMessage(message);
  Atomics.store(signal, 0, 1);
  Atomics.notify(signal, 0);
}

function tail(): string {
  return stderrTail.toString('utf8');
}

function kill(): void {
  if (child.pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch (error) {
    // The group is gone already (the driver exited between the check and the kill).
    if ((error as NodeJS.ErrnoException).code !== 'ESRCH') throw error;
  }
}

/** The driver broke the protocol: remember why, end it, and answer the request in flight. */
function fail(failure: DriverFailure, detail: string, line: string | null = null): void {
  if (broken === null) broken = { failure, detail, line };
  kill();
  if (pending !== null) {
    clearTimeout(pending.timer);
    const { id } = pending;
    pending = null;
    post({ id, failure: broken.failure, detail: broken.detail, line: broken.line, stderrTail: tail() });
  }
}

function onLine(line: string): void {
  if (broken !== null) return;
  if (pending === null) {
    fail('unsolicited', 'the driver wrote a line nobody asked for (exactly one answer line per request)', line);
    return;
  }
  clearTimeout(pending.timer);
  const { id } = pending;
  pending = null;
  post({ id, line });
}

child.stdout.on('data', (chunk: Buffer) => {
  let start = 0;
  while (broken === null) {
    const newline = chunk.indexOf(10, start);
    const end = newline === -1 ? chunk.length : newline;
    parts.push(chunk.subarray(start, end));
    partsBytes += end - start;
    if (partsBytes > limits.answerLineBytesMax) {
      const excerpt = Buffer.concat(parts).subarray(0, limits.excerptCharsMax).toString('utf8');
      fail('tooLong', `answer line longer than answerLineBytesMax (${limits.answerLineBytesMax} bytes)`, excerpt);
      return;
    }
    if (newline === -1) return;
    const line = Buffer.concat(parts).toString('utf8').replace(/\r$/, '');
    parts = [];
    partsBytes = 0;
    start = newline + 1;
    onLine(line);
  }
});

child.stderr.on('data', (chunk: Buffer) => {
  const joined = Buffer.concat([stderrTail, chunk]);
  stderrTail = joined.subarray(Math.max(0, joined.length - limits.stderrTailBytesMax));
});

child.on('error', (error) => fail('spawn', `cannot run the driver: ${error.message}`));
// An unread stdin after the driver's end: the 'close' below says how it ended.
child.stdin.on('error', () => {});

child.on('close', (code, signalName) => {
  if (!closing) {
    const how = signalName !== null ? `was killed by ${signalName}` : `exited with code ${code}`;
    const partial = partsBytes > 0 ? Buffer.concat(parts).toString('utf8') : null;
    fail('exited', `the driver ${how}${partial !== null ? ' in the middle of an answer line' : ''}`, partial);
  }
  // A broken driver's worker still answers (with the failure) until the harness shuts it down.
  if (closing) port.close();
});

port.on('message', (message: ToWorker) => {
  switch (message.kind) {
    case 'request': {
      if (broken !== null) {
        post({ id: message.id, failure: broken.failure, detail: broken.detail, line: broken.line, stderrTail: tail() });
        return;
      }
      const timer = setTimeout(() => fail('timeout', `no answer within answerTimeoutMs (${message.timeoutMs} ms)`), message.timeoutMs);
      pending = { id: message.id, timer };
      child.stdin.write(`${message.line}\n`);
      return;
    }
    case 'stderr':
      post({ id: message.id, stderrTail: tail() });
      return;
    case 'shutdown': {
      closing = true;
      child.stdin.end();
      // A driver that does not exit when its stdin ends is ended.
      setTimeout(kill, limits.closeGraceMs).unref();
      if (child.exitCode !== null || child.signalCode !== null) port.close();
      return;
    }
  }
});
