import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { loadFixtures, readFixture, saveFixture } from '../../conformance/fixtures.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { runConformance, withoutPrefixes, type RunOptions, type WorkItem } from '../../conformance/run.ts';
import { validateParams } from '../../model/params.ts';
import type { ModelEvent } from '../../model/events.ts';

const small: RunOptions = {
  // One volume: the chart's transitions, guards and claims do not tell volumes apart; a quarter of the states.
  params: { faultsMax: 1, volumeCount: 1 },
  fencePolicies: ['keepWriting', 'refuse'],
  seed: 1,
  walkRuns: 10,
  walkSteps: 30,
  simpleDepth: 2,
  edgePaths: false,
  gates: { states: 1, transitions: 1, transitionPairs: 1, guards: 1, claims: 1 },
  shard: { index: 1, count: 1 },
  faults: false,
  fixturesDir: null,
};

describe('the conformance run', () => {
  it('passes with full coverage of the bounded model and every must-happen check met', async () => {
    const report = await runConformance(small);
    expect(report.divergences).toEqual([]);
    expect(report.gateFailures).toEqual([]);
    expect(report.passed).toBe(true);
    expect(report.paths).toBeGreaterThan(500);
    expect(report.coverage.transitions.missing).toEqual([]);
    expect(report.coverage.claims).toMatchObject({ covered: 40, total: 40 });
    // One fault per path cannot take a site that fails while resyncing, nor site 3 failing while it awaits its
    // judgement (its source lost first) or returning to await it: listed apart, with the reason.
    expect(report.coverage.transitions.unreachable.map((u) => u.item)).toEqual([
      'site2.resyncing -> failed',
      'site3.awaitingJudgement -> failed',
      'site3.failed -> awaitingJudgement',
    ]);
    expect(report.mustHappen.filter((check) => !check.happened)).toEqual([]);
    expect(report.stepsPerSecond).toBeGreaterThan(0);
  });

  it('splits the generated paths into shards that together are the whole', async () => {
    const whole = await runConformance({ ...small, fencePolicies: ['refuse'], walkRuns: 1 });
    const parts = await Promise.all([1, 2].map((index) => runConformance({ ...small, fencePolicies: ['refuse'], walkRuns: 1, shard: { index, count: 2 } })));
    expect(parts[0]!.paths + parts[1]!.paths).toBe(whole.paths);
    expect(parts.every((part) => part.passed)).toBe(true);
  });
});

describe('failure fixtures', () => {
  it('saves a failure with its expected observations and replays it first on the next run', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'fixtures-'));
    try {
      const params = validateParams({ journalEntriesMax: 4 });
      const events: ModelEvent[] = [{ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 5 }, { type: 'PULL_JOURNAL' }];
      const run = runPath(params, events, ClusterSut.create);
      const file = saveFixture(dir, params, events, run, 'a story');
      expect(saveFixture(dir, params, events, run, 'the same story')).toBe(file);
      expect(readdirSync(dir)).toEqual([file]);
      const fixture = readFixture(join(dir, file));
      expect(fixture.expected).toHaveLength(3);
      const results = loadFixtures(dir, ClusterSut.create);
      expect(results).toEqual([{ file, name: 'the same story', events: 2, passed: true, summary: null }]);
      const report = await runConformance({ ...small, fencePolicies: ['refuse'], walkRuns: 1, fixturesDir: dir });
      expect(report.fixtures.map((f) => f.file)).toEqual([file]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('replays every committed fixture of test/fixtures/failures against the implementation', () => {
    const results = loadFixtures('test/fixtures/failures', ClusterSut.create);
    for (const result of results) expect(result.summary, result.file).toBeNull();
  });
});

describe('npm start arguments', () => {
  const start = (...args: string[]) => spawnSync('npx', ['tsx', 'conformance/main.ts', ...args], { encoding: 'utf8', timeout: 60_000 });

  it('prints its usage with --help', () => {
    const out = execFileSync('npx', ['tsx', 'conformance/main.ts', '--help'], { encoding: 'utf8' });
    expect(out).toMatch(/--replay SEED:PATH/);
    expect(out).toMatch(/--shard i\/n/);
  });

  it('refuses malformed arguments with exit status 2 and a reason', () => {
    for (const args of [['--shard', '3/2'], ['--replay', 'nonsense'], ['--gate', 'states=2'], ['--runs', '-1'], ['--fence-policy', 'maybe']]) {
      const result = start(...args);
      expect(result.status, args.join(' ')).toBe(2);
      expect(result.stderr).toMatch(/usage: npm start/);
    }
  });

  it('--sut: a driver command, and processes (the three site processes), replay a fixture', () => {
    const fixture = readdirSync('test/fixtures/failures').find((file) => file.endsWith('.json'))!;
    const replayed = start('--sut', 'npx tsx impl/drivers/driver.ts', '--replay-fixture', join('test/fixtures/failures', fixture));
    expect(replayed.stdout).toMatch(/fixture passes/);
    expect(replayed.status).toBe(0);
    const processes = start('--sut', 'processes', '--replay-fixture', join('test/fixtures/failures', fixture));
    expect(processes.stdout).toMatch(/fixture passes/);
    expect(processes.status).toBe(0);
  });
});

describe('withoutPrefixes (the harness-only mutation run\'s path set)', () => {
  const small = validateParams({ fencePolicy: 'keepWriting' });
  const refuse = validateParams({ fencePolicy: 'refuse' });
  const write = (data: number): ModelEvent => ({ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data });
  const item = (params: typeof small, events: ModelEvent[], larger = false): WorkItem => ({ params, larger, path: { strategy: 'state', target: String(events.length), events } }) as WorkItem;

  it('drops a path that is a prefix of another with the same parameters, and duplicates; keeps the rest in order', () => {
    const a = item(small, [write(1)]);
    const ab = item(small, [write(1), write(2)]);
    const ab2 = item(small, [write(1), write(2)]);
    const ac = item(small, [write(1), write(3)]);
    const other = item(refuse, [write(1)]);
    const larger = item(small, [write(1)], true);
    const empty = item(small, []);
    expect(withoutPrefixes([a, ab, empty, ab2, ac, other, larger])).toEqual([ab, ac, other, larger]);
  });
});
