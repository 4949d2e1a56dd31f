import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { formatEvent, parseEvent, type ModelEvent } from '../../model/events.ts';
import { replicationMachine } from '../../model/machine.ts';
import { chartOf } from '../../review/chart.ts';
import { claimEvidence, replayDivergences } from '../../review/claim-evidence.ts';
import { readConformanceReport, type ConformanceReport } from '../../review/conformance-report.ts';
import { decisions, decisionTransitions } from '../../review/decisions.ts';
import { readExploreSummary } from '../../review/exploration.ts';
import { propertyEvidence } from '../../review/property-evidence.ts';
import { EventRefusedError, SimulatorSession } from '../../review/simulator/session.ts';
import { simulatorParams } from '../../review/simulator/defaults.ts';
import { stories } from '../../review/simulator/stories.ts';
import { observe } from '../../model/observe.ts';
import { hasBinary, MissingSystemPackageError, systemPackages } from '../setup/system-packages.ts';

const chart = chartOf(replicationMachine);
const dir = mkdtempSync(join(tmpdir(), 'evidence-'));
const figure = (total: number, missing: string[] = []) => ({ covered: total - missing.length, total, missing, unreachable: [] });

function report(overrides: Partial<ConformanceReport> = {}): ConformanceReport {
  return {
    seed: 1,
    params: { volumeCount: 2, blocksPerVolume: 2, journalEntriesMax: 4, pullBatchEntriesMax: 2, fencePolicies: ['keepWriting'] },
    paths: 1,
    steps: 1,
    coverage: { states: figure(23), transitions: figure(85), graphEdges: figure(1), transitionPairs: figure(1), guards: figure(1), claims: figure(40) },
    divergences: [],
    faults: { total: 0, caught: 0, list: [] },
    mustHappen: [],
    pathOutcomes: [],
    exploration: { states: 1, transitions: 1, violations: [], complete: true, ms: 1 },
    ms: 1,
    passed: true,
    ...overrides,
  };
}

describe('the simulator session', () => {
  it('steps the machine, records the root variant and region moves, refuses what the model refuses, and steps back', () => {
    const session = new SimulatorSession(simulatorParams);
    expect(() => session.send({ type: 'FAILOVER', force: false })).toThrow(EventRefusedError);
    const step = session.send({ type: 'FAIL_SITE', site: 1 });
    expect(step.variant).toBe('FAIL_SITE#0');
    expect(step.moves).toContain('site1.primary -> failed');
    expect(session.candidates().find((candidate) => candidate.text === 'FAILOVER force=false')?.enabled).toBe(true);
    const refused = session.candidates().find((candidate) => candidate.text === 'RECOVER_SITE site=2')!;
    expect(refused).toMatchObject({ enabled: false, refusal: 'site 2 is up' });
    expect(session.back()).toBe(true);
    expect(session.back()).toBe(false);
    expect(session.context.sites[1].up).toBe(true);
  });
});

describe('the stories of the simulator', () => {
  const run = (key: string, upTo?: number) => {
    const story = stories.find((candidate) => candidate.key === `story-${key}`)!;
    const session = new SimulatorSession({ ...story.params, fencePolicy: story.fencePolicy });
    for (const text of story.events.slice(0, upTo)) session.send(parseEvent(text));
    return observe(session.context);
  };

  it('each replays on the model without a refusal and ends where its summary says', () => {
    expect(stories.map((story) => story.key)).toEqual(['story-failover-delta-resync', 'story-reversed-copy', 'story-failback', 'story-overflow-full-copy', 'story-remote-ahead']);
    expect(run('failover-delta-resync', 7).judgement?.verdict).toBe('deltaResync');
    // Claim 20: the delta resync reads u3 into site 3's journal; the story's last step restores it.
    expect(run('failover-delta-resync', 8)).toMatchObject({ asyncPair: { state: 'copying', source: 2 }, sites: { 3: { received: 3, restored: 2 } } });
    expect(run('failover-delta-resync')).toMatchObject({ asyncPair: { state: 'copying', source: 2 }, sites: { 3: { received: 3, restored: 3 } } });
    const reversed = run('reversed-copy');
    expect(reversed.syncPair).toEqual({ state: 'reversed', primary: 2 });
    expect([reversed.sites[1].mode, reversed.sites[2].mode]).toEqual(['syncReversed', 'syncReversed']);
    const failback = run('failback');
    expect(failback.syncPair).toEqual({ state: 'inSync', primary: 1 });
    expect(new Set([failback.sites[1].volumeDigest, failback.sites[2].volumeDigest, failback.sites[3].volumeDigest]).size).toBe(1);
    expect(run('overflow-full-copy', 5)).toMatchObject({ asyncPair: { state: 'suspendedOverflow' }, standbyPair: { state: 'holdError' } });
    expect(run('overflow-full-copy').asyncPair.state).toBe('copying');
    expect(run('remote-ahead', 5)).toMatchObject({ judgement: { verdict: 'remoteAhead', forced: false }, syncPair: { primary: 1 } });
    expect(run('remote-ahead', 6)).toMatchObject({ asyncPair: { state: 'fullCopy' }, syncPair: { primary: 2 } });
  });
});

describe('the claims table evidence', () => {
  it('without a run: every claim has its transitions and says so', () => {
    const rows = claimEvidence(replicationMachine, null, new Set(['HOST_WRITE#0']));
    expect(rows).toHaveLength(40);
    expect(rows.every((row) => row.result === 'no conformance run' && row.transitions.length > 0)).toBe(true);
    expect(rows[1]!.transitions[0]).toMatchObject({ id: 'HOST_WRITE#0', explored: true, covered: null });
  });

  it('with a run: failed where a divergence took the claim, not covered where the run missed it, passed elsewhere', () => {
    const path: ModelEvent[] = [{ type: 'FAIL_SITE', site: 1 }, { type: 'FAILOVER', force: false }];
    const run = report({
      coverage: { ...report().coverage, transitions: figure(85, ['RESYNC_SITE#0']), claims: figure(40, ['32']) },
      divergences: [{ fencePolicy: 'keepWriting', strategy: 'transition', target: 'FAILOVER#2', seed: null, replayPath: null, path: path.map(formatEvent), step: 1, summary: 'x', expected: {}, actual: {} }],
      pathOutcomes: [
        { fencePolicy: 'keepWriting', strategy: 'transition', target: 'HOST_WRITE#0', events: 1, passed: true },
        { fencePolicy: 'keepWriting', strategy: 'pair', target: 'HOST_WRITE#0 -> PULL_JOURNAL#0', events: 2, passed: true },
      ],
    });
    // With an empty history the failover's judge says "no update required": FAILOVER#2, claims 16, 18, 28, 29, 30.
    expect(replayDivergences(run)).toEqual([{ taken: expect.arrayContaining(['FAILOVER#2']), problem: null }]);
    const rows = claimEvidence(replicationMachine, run, new Set());
    const result = (claim: number) => rows[claim - 1]!.result;
    expect(result(28)).toBe('failed');
    expect(result(32)).toBe('not covered');
    expect(result(2)).toBe('passed');
    expect(rows[1]!.transitionPaths).toMatchObject({ total: 1, passed: 1, targets: ['HOST_WRITE#0'] });
    expect(rows[6]!.pairPaths).toMatchObject({ total: 1, passed: 1 });
  });

  it('reports a divergence the model cannot replay instead of guessing', () => {
    const run = report({
      divergences: [{ fencePolicy: 'keepWriting', strategy: 'walk', target: '', seed: 1, replayPath: null, path: ['FAILOVER force=false', 'PULL_JOURNAL'], step: 1, summary: 'x', expected: {}, actual: {} }],
    });
    expect(replayDivergences(run)[0]!.problem).toMatch(/^step 1: the model refuses FAILOVER/);
    // At the diverging step itself, a model refusal means the implementation accepted what the model refuses.
    const atStep = report({ divergences: [{ ...run.divergences[0]!, path: ['FAILOVER force=false'], step: 0 }] });
    expect(replayDivergences(atStep)).toEqual([{ taken: [], problem: null }]);
  });
});

describe('reading reports', () => {
  it('reads a conformance report, says nothing when it is absent and names what is wrong when it is malformed', () => {
    expect(readConformanceReport(join(dir, 'absent.json'))).toEqual({ report: null, problem: null });
    writeFileSync(join(dir, 'good.json'), JSON.stringify(report()));
    expect(readConformanceReport(join(dir, 'good.json')).report?.seed).toBe(1);
    writeFileSync(join(dir, 'bad.json'), JSON.stringify({ ...report(), coverage: { states: figure(1) } }));
    expect(readConformanceReport(join(dir, 'bad.json'))).toMatchObject({ report: null, problem: expect.stringContaining('coverage.transitions') });
    writeFileSync(join(dir, 'text.json'), 'not json');
    expect(readConformanceReport(join(dir, 'text.json')).problem).toMatch(/not JSON/);
  });

  it('reads the last line of npm run explore -- --json', () => {
    writeFileSync(join(dir, 'explore.json'), `exploring...\n${JSON.stringify({ states: 5, transitions: 9, violations: [], params: {}, runs: [{ fencePolicy: 'refuse', states: 5, transitions: 9, complete: true, ms: 1 }], complete: true, ms: 1 })}\n`);
    const { summary } = readExploreSummary(join(dir, 'explore.json'));
    expect(summary?.runs[0]?.fencePolicy).toBe('refuse');
    const rows = propertyEvidence([], summary, null);
    expect(rows.map((row) => row.property)).toEqual(['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P9']);
    expect(rows[0]!.exploration).toEqual([{ source: 'reports/explore.json', fencePolicy: 'refuse', states: 5, transitions: 9, complete: true, violation: null, bounds: '? volumes x ? blocks, journal ?, pull batch ?, <= ? writes, <= ? faults' }]);
    expect(rows[0]!.conformance).toBeNull();
  });

  it('relates a divergence to the properties whose observed fields it touches', () => {
    const divergence = { fencePolicy: 'keepWriting' as const, strategy: 's', target: 't', seed: null, replayPath: null, path: ['PULL_JOURNAL'], step: 0, expected: {}, actual: {} };
    const run = report({ divergences: [{ ...divergence, summary: 'sites.2.acceptsHostWrites: expected false, actual true' }, { ...divergence, summary: 'asyncPair.state: expected "deltaResync", actual "fullCopy"' }] });
    const rows = propertyEvidence([], null, run);
    expect(rows.find((row) => row.property === 'P4')!.conformance!.divergences).toEqual([0]);
    expect(rows.find((row) => row.property === 'P5')!.conformance!.divergences).toEqual([1]);
    expect(rows.find((row) => row.property === 'P6')!.conformance!.divergences).toEqual([]);
  });
});

describe('the decisions where the claims are silent', () => {
  it('each links to at least one transition of the chart, with a unique key', () => {
    expect(new Set(decisions.map((decision) => decision.key)).size).toBe(decisions.length);
    for (const decision of decisions) expect(decisionTransitions(chart, decision).length, decision.key).toBeGreaterThan(0);
    expect(decisionTransitions(chart, decisions.find((decision) => decision.key === 'remote-ahead')!)).toEqual(['FAILOVER#0', 'FAILOVER#1']);
  });
});

describe('the system packages the suite needs', () => {
  it('lists chromium for the review page, finds binaries on PATH, and names the package when one is missing', () => {
    expect(systemPackages.map((entry) => entry.package)).toContain('chromium');
    expect(hasBinary('sh')).toBe(true);
    expect(hasBinary('/nonexistent/chromium')).toBe(false);
    const error = new MissingSystemPackageError([{ binary: '/usr/bin/chromium', package: 'chromium', neededBy: 'the review page test' }]);
    expect(error.message).toContain('apt-get install -y chromium');
  });
});
