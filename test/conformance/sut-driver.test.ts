/**
 * The driver protocol seam: generated paths and walks through `impl/drivers/driver.ts` behind `DriverSut` give what
 * the in-process system gives; a broken driver (garbage, exit, silence, a line too long, two answers) is a
 * `DriverProtocolError` and a crash divergence within its deadline; a driver that lies about one field of
 * its observation is an observation divergence. One driver process serves each factory (reset per path).
 */
import { PassThrough } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { runPath, type PathRun } from '../../conformance/lockstep.ts';
import { statePaths, type GeneratedPath } from '../../conformance/paths.ts';
import { DriverProtocolError, driverSutFactory, type DriverSutFactory } from '../../conformance/sut-driver.ts';
import { runWalks } from '../../conformance/walks.ts';
import { DriverSession, driverLimits as implDriverLimits, runDriver } from '../../impl/drivers/driver.ts';
import type { ModelEvent } from '../../model/events.ts';
import { validateParams, type FencePolicy, type ModelParams } from '../../model/params.ts';

const driverCommand = 'npx tsx impl/drivers/driver.ts';
const factories: DriverSutFactory[] = [];
const factory = (command: string, options: Parameters<typeof driverSutFactory>[1] = {}): DriverSutFactory => {
  const made = driverSutFactory(command, options);
  factories.push(made);
  return made;
};
afterAll(() => {
  for (const made of factories) made.close();
});

const paramsOf = (fencePolicy: FencePolicy): ModelParams => validateParams({ writesMax: 2, journalEntriesMax: 1, faultsMax: 1, fencePolicy });

/** About ten state paths per fence policy, spread over the list and the longest included. */
function samplePaths(params: ModelParams): GeneratedPath[] {
  const all = statePaths(params);
  const stride = Math.ceil(all.length / 9);
  const longest = all.reduce((a, b) => (b.events.length > a.events.length ? b : a));
  return [...all.filter((_, i) => i % stride === 0), longest];
}

const outcome = (run: PathRun) => ({ steps: run.steps, divergence: run.divergence?.summary ?? null, expected: run.expected });

describe('impl/drivers/driver.ts behind DriverSut agrees with the in-process system', () => {
  const driver = factory(driverCommand);

  for (const fencePolicy of ['keepWriting', 'refuse'] as FencePolicy[]) {
    const params = paramsOf(fencePolicy);
    it(`generated state paths, fence policy ${fencePolicy}`, () => {
      const paths = samplePaths(params);
      expect(paths.length).toBeGreaterThanOrEqual(10);
      for (const path of paths) {
        const inProcess = runPath(params, path.events, ClusterSut.create);
        const throughDriver = runPath(params, path.events, driver);
        expect(outcome(throughDriver), path.target).toEqual(outcome(inProcess));
        expect(throughDriver.divergence, path.target).toBeNull();
      }
      expect(driver.starts).toBe(1);
      expect(driver.driverName).toMatch(/impl\/drivers\/driver\.ts/);
    });

    it(`random walks with refused events, fence policy ${fencePolicy}`, () => {
      const options = { seed: 7, runs: 4, steps: 40 };
      const inProcess = runWalks(params, ClusterSut.create, options);
      const throughDriver = runWalks(params, driver, options);
      expect(throughDriver.failure?.divergence.summary ?? null).toBeNull();
      expect({ runs: throughDriver.runs, steps: throughDriver.steps }).toEqual({ runs: inProcess.runs, steps: inProcess.steps });
      expect(driver.starts).toBe(1);
    });
  }

  it('a refusal comes back with the model’s code', () => {
    const params = paramsOf('keepWriting');
    const sut = driver(params);
    expect(sut.apply({ type: 'HOST_WRITE', host: 2, volume: 0, block: 0, data: 9 })).toMatchObject({ accepted: false, code: 'NotWritable' });
    expect(sut.apply({ type: 'RECOVER_SITE', site: 3 })).toMatchObject({ accepted: false, code: 'SiteUp' });
    expect(sut.apply({ type: 'HOST_WRITE', host: 1, volume: 5, block: 0, data: 9 })).toMatchObject({ accepted: false, code: 'OutOfRange' });
    sut.close();
  });
});

/** What a broken driver's first use throws. */
function failureOf(made: DriverSutFactory): DriverProtocolError {
  const sut = made(paramsOf('keepWriting'));
  try {
    sut.observe();
  } catch (error) {
    expect(error).toBeInstanceOf(DriverProtocolError);
    return error as DriverProtocolError;
  }
  throw new Error('the broken driver answered observe');
}

const writeThenPull: ModelEvent[] = [{ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 }, { type: 'PULL_JOURNAL' }];

// Small drivers in plain JavaScript: `node -e`, single-quoted for sh.
const answerEach = (answer: string): string =>
  `node -e 'require("readline").createInterface({ input: process.stdin }).on("line", (line) => { ${answer} })'`;
const helloOk = `const r = JSON.parse(line); if (r.op === "hello") { console.log(JSON.stringify({ ok: true, protocol: "threesite-driver-v1", name: "broken" })); return; }`;

describe('a broken driver is a DriverProtocolError and a crash divergence, never a hang', () => {
  // The deadline cases wait out 400 ms; every other broken driver answers at once, so it gets a deadline that a
  // loaded CI machine starting `node -e` cannot miss (a 400 ms deadline there turned 'tooLong' into 'timeout').
  const quick = { answerTimeoutMs: 400, driverStartsMax: 2 };
  const roomy = { answerTimeoutMs: 20_000, driverStartsMax: 2 };

  it('garbage instead of an answer', () => {
    const error = failureOf(factory(answerEach('console.log("garbage")'), roomy));
    expect(error).toMatchObject({ failure: 'malformed', line: 'garbage' });
    expect(error.request).toContain('"op":"hello"');
    expect(error.message).toMatch(/not JSON/);
  });

  it('an exit, with its stderr in the report', () => {
    const error = failureOf(factory(`node -e 'console.error("boom: the driver fell over"); process.exit(3)'`, roomy));
    expect(error.failure).toBe('exited');
    expect(error.detail).toMatch(/exited with code 3/);
    expect(error.stderrTail).toContain('boom: the driver fell over');
    expect(error.message).toContain('boom: the driver fell over');
  });

  it('silence: the answer deadline', () => {
    const started = performance.now();
    const error = failureOf(factory(`node -e 'process.stdin.resume()'`, quick));
    expect(error.failure).toBe('timeout');
    expect(error.detail).toMatch(/answerTimeoutMs \(400 ms\)/);
    expect(performance.now() - started).toBeLessThan(10_000);
  });

  it('an answer line longer than the limit', () => {
    const error = failureOf(factory(answerEach('process.stdout.write("x".repeat(70000))'), roomy));
    expect(error.failure).toBe('tooLong');
    expect(error.line?.length).toBeLessThan(1_000);
  });

  it('two answers to one request', () => {
    // Both lines in one write (atomic on a pipe below PIPE_BUF): two console.log calls may reach the harness
    // after its next request, where the second is that request's answer, not an unsolicited one.
    const error = failureOf(factory(answerEach(`${helloOk} process.stdout.write(JSON.stringify({ ok: true }) + "\\n" + JSON.stringify({ ok: true }) + "\\n");`), roomy));
    expect(error.failure).toBe('unsolicited');
  });

  it('an answer of the wrong shape, and an error answer', () => {
    const wrong = failureOf(factory(answerEach(`${helloOk} console.log(JSON.stringify(r.op === "reset" ? { ok: true } : { observation: 3 }))`), roomy));
    expect(wrong).toMatchObject({ failure: 'malformed' });
    expect(wrong.detail).toMatch(/observation is not a JSON object/);
    const refused = failureOf(factory(answerEach(`${helloOk} console.log(JSON.stringify({ ok: false, error: "no such thing" }))`), roomy));
    expect(refused).toMatchObject({ failure: 'driverError' });
    expect(refused.detail).toMatch(/could not carry out reset: no such thing/);
  });

  it('a driver that exits at its first apply; the next path starts it again', () => {
    const made = factory(answerEach(`${helloOk} if (r.op === "apply") process.exit(1); console.log(JSON.stringify({ ok: true }))`), roomy);
    const sut = made(paramsOf('keepWriting'));
    let thrown: unknown = null;
    try {
      sut.apply(writeThenPull[0]!);
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(DriverProtocolError);
    expect(thrown).toMatchObject({ failure: 'exited', detail: expect.stringMatching(/exited with code 1/) });
    expect(thrown).toMatchObject({ request: expect.stringContaining('"type":"HOST_WRITE"') });
    made(paramsOf('keepWriting'));
    expect(made.starts).toBe(2);
  });

  it('walks against a silent driver end quickly: the factory stops restarting it', () => {
    const started = performance.now();
    const silent = factory(`node -e 'process.stdin.resume()'`, quick);
    const result = runWalks(paramsOf('keepWriting'), silent, { seed: 1, runs: 20, steps: 10 });
    expect(result.failure?.divergence.kind).toBe('crash');
    expect(result.failure?.divergence.summary).toMatch(/DriverProtocolError: driver (timeout|gaveUp)/);
    expect(silent.starts).toBe(2);
    expect(performance.now() - started).toBeLessThan(15_000);
  });
});

describe('a driver that lies about one field', () => {
  it('is caught as an observation divergence', () => {
    // impl/drivers/driver.ts's answers, with site 1's last update number raised by one once it wrote anything.
    const lie = answerEach(
      'const a = JSON.parse(line); const s = a.observation && a.observation.sites["1"]; if (s && s.lastUpdateNumber > 0) s.lastUpdateNumber += 1; console.log(JSON.stringify(a))',
    );
    const run = runPath(paramsOf('keepWriting'), writeThenPull, factory(`${driverCommand} | ${lie}`));
    expect(run.divergence?.kind).toBe('observation');
    expect(run.divergence?.step).toBe(0);
    expect(run.divergence?.differences).toEqual([{ path: 'sites.1.lastUpdateNumber', expected: 1, actual: 2 }]);
  });
});

describe('impl/drivers/driver.ts on its own', () => {
  it('answers malformed requests with ok: false and goes on', () => {
    const session = new DriverSession();
    const answer = (request: unknown) => JSON.parse(session.handle(typeof request === 'string' ? request : JSON.stringify(request)).line);
    expect(answer('not json')).toMatchObject({ ok: false, error: expect.stringMatching(/not JSON/) });
    expect(answer({ op: 'observe' })).toMatchObject({ ok: false, error: expect.stringMatching(/send reset first/) });
    expect(answer({ op: 'fly' })).toMatchObject({ ok: false, error: expect.stringMatching(/unknown op/) });
    expect(answer({ op: 'hello', protocol: 'v0' })).toMatchObject({ ok: false });
    expect(answer({ op: 'reset', config: { volumeCount: 1, fencePolicy: 'refuse' } })).toMatchObject({ ok: false, error: expect.stringMatching(/config.volumeBytes/) });
    const config = { volumeCount: 1, volumeBytes: 1024, blockBytes: 512, journalEntriesMax: 2, journalBytesMax: 8192, pullBatchEntriesMax: 1, fencePolicy: 'refuse' };
    expect(answer({ op: 'reset', config })).toEqual({ ok: true });
    expect(answer({ op: 'apply', event: { type: 'HOST_WRITE', host: 1, volume: 0, offset: 0, data: 'not base64!' } })).toMatchObject({ ok: false });
    expect(answer({ op: 'apply', event: { type: 'CUT_LINK', link: '3-1' } })).toMatchObject({ ok: false });
    expect(answer({ op: 'apply', event: { type: 'FAIL_SITE', site: 4 } })).toMatchObject({ accepted: false, code: 'InvalidArgument' });
    expect(answer({ op: 'apply', event: { type: 'HOST_WRITE', host: 1, volume: 0, offset: 512, data: Buffer.alloc(512, 7).toString('base64') } })).toEqual({ accepted: true });
    expect(answer({ op: 'observe' }).observation.sites['1'].lastUpdateNumber).toBe(1);
    expect(session.handle(JSON.stringify({ op: 'close' })).done).toBe(true);
  });

  it('answers a request line longer than its limit and reads the next one', async () => {
    const input = new PassThrough();
    const output = new PassThrough();
    runDriver(input, output);
    const lines: string[] = [];
    output.on('data', (chunk: Buffer) => lines.push(...chunk.toString('utf8').split('\n').filter(Boolean)));
    input.write(Buffer.alloc(implDriverLimits.requestLineBytesMax + 1, 0x61));
    input.write('\n{"op":"hello","protocol":"threesite-driver-v1"}\n');
    await new Promise((resolve) => setImmediate(resolve));
    expect(lines.map((line) => JSON.parse(line).ok)).toEqual([false, true]);
    expect(lines[0]).toMatch(/longer than/);
    input.end();
  });
});
