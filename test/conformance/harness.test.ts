import { describe, expect, it } from 'vitest';
import { refusalCodeOf } from '../../conformance/sut.ts';
import { diffObservations } from '../../conformance/observation-diff.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan, statePaths, simplePaths } from '../../conformance/paths.ts';
import { CoverageTracker } from '../../conformance/coverage.ts';
import { runWalks, decodeChoice } from '../../conformance/walks.ts';
import { validateParams } from '../../model/params.ts';
import { observe } from '../../model/observe.ts';
import { initialContext } from '../../model/state.ts';
import { initialTransition } from 'xstate';
import { replicationMachine } from '../../model/machine.ts';
import type { ModelEvent } from '../../model/events.ts';
import { ModelSut } from './model-sut.ts';
import { ClusterSut, clusterConfigFor, deliveriesPerRunFor } from '../../conformance/adapter.ts';
import { largerBounds } from '../../conformance/paths.ts';
import { Cluster } from '../../impl/cluster/cluster.ts';

// One volume: the chart's transitions, pairs and guards do not tell volumes apart; a quarter of the states.
const params = validateParams({ writesMax: 2, journalEntriesMax: 1, faultsMax: 1, volumeCount: 1 });
const write = (data: number): ModelEvent => ({ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data });

describe('observation diff', () => {
  it('names every differing field by its path, and nothing when equal', () => {
    const a = observe(initialContext(params));
    expect(diffObservations(a, structuredClone(a))).toEqual([]);
    const b = structuredClone(a);
    b.sites[3].received = 7;
    b.asyncPair.state = 'fullCopy';
    expect(diffObservations(a, b).map((d) => d.path).sort()).toEqual(['asyncPair.state', 'sites.3.received']);
  });
});

describe('refusal codes', () => {
  it('reads a typed error by its code or its class name', () => {
    class NotWritableError extends Error {
      override name = 'NotWritableError';
    }
    expect(refusalCodeOf(new NotWritableError('x')).code).toBe('NotWritable');
    expect(refusalCodeOf(Object.assign(new Error('y'), { code: 'SiteFailed' })).code).toBe('SiteFailed');
    expect(refusalCodeOf(new TypeError('z')).code).toBe('Other');
  });
});

describe('the lockstep loop', () => {
  it('passes a faithful system along a story with refusals', () => {
    const events: ModelEvent[] = [write(1), { type: 'FAILBACK' }, { type: 'FAIL_SITE', site: 1 }, { type: 'FAILOVER', force: false }, { type: 'DELTA_RESYNC' }];
    const run = runPath(params, events, (p) => new ModelSut(p));
    expect(run.divergence).toBeNull();
    expect(run.expected).toHaveLength(events.length + 1);
  });

  it('catches a wrong field, naming it and the step', () => {
    const run = runPath(params, [write(1), { type: 'PULL_JOURNAL' }], (p) =>
      new ModelSut(p, (o, c) => (c.sites[3].pending.length > 0 ? { ...o, sites: { ...o.sites, 3: { ...o.sites[3], received: 0 } } } : o)),
    );
    expect(run.divergence?.kind).toBe('observation');
    expect(run.divergence?.step).toBe(1);
    expect(run.divergence?.differences.map((d) => d.path)).toEqual(['sites.3.received']);
  });

  it('catches an accepted command the model refuses', () => {
    class Accepting extends ModelSut {
      override apply(event: ModelEvent) {
        return event.type === 'FAILBACK' ? { accepted: true as const } : super.apply(event);
      }
    }
    const run = runPath(params, [{ type: 'FAILBACK' }], (p) => new Accepting(p));
    expect(run.divergence?.kind).toBe('outcome');
    expect(run.divergence?.summary).toMatch(/model refuses \(NotAllowed/);
  });

  it('reports a crash of the system as a divergence, not an exception', () => {
    class Crashing extends ModelSut {
      override apply(): never {
        throw new RangeError('boom');
      }
    }
    const run = runPath(params, [write(1)], (p) => new Crashing(p));
    expect(run.divergence?.kind).toBe('crash');
    expect(run.divergence?.summary).toContain('RangeError: boom');
  });
});

describe('path generation', () => {
  it('gives a shortest path to every abstract state, and simple paths up to a depth', () => {
    const paths = statePaths(params);
    expect(paths.length).toBeGreaterThan(100);
    for (const path of paths.slice(0, 50)) expect(runPath(params, path.events, (p) => new ModelSut(p)).divergence).toBeNull();
    const simple = simplePaths(params, 3);
    expect(simple.length).toBeGreaterThan(10);
    expect(Math.max(...simple.map((p) => p.events.length))).toBe(3);
    expect(() => simplePaths(params, 0)).toThrow(RangeError);
  });

  it('gives paths that take every reachable transition and allowed pair, and they do take them', () => {
    const plan = coveragePlan(params);
    expect(plan.violations).toEqual([]);
    const coverage = new CoverageTracker();
    for (const path of [...plan.transitionPaths, ...plan.pairPaths]) {
      expect(runPath(params, path.events, (p) => new ModelSut(p), coverage).divergence).toBeNull();
    }
    expect([...new Set(plan.reachableDefinitions)].filter((id) => !coverage.transitions.has(id))).toEqual([]);
    expect(plan.allowedPairs.filter((pair) => !coverage.pairs.has(pair))).toEqual([]);
  });
});

describe('random walks', () => {
  it('decode choices into enabled events mostly, refused ones when asked', () => {
    const [initial] = initialTransition(replicationMachine, params);
    const accepted = decodeChoice(params, initial, { pick: 0, kind: 5, data: 9 });
    expect(replicationMachine.getTransitionData(initial, accepted).length).toBeGreaterThan(0);
    const refused = decodeChoice(params, initial, { pick: 3, kind: 0, data: 9 });
    expect(replicationMachine.getTransitionData(initial, refused)).toEqual([]);
  });

  it('pass on a faithful system, and shrink a failure to a short walk that replays from seed and path', () => {
    expect(runWalks(params, (p) => new ModelSut(p), { seed: 1, runs: 20, steps: 30 }).failure).toBeNull();
    // A system whose site 3 never shows a restore.
    const broken = (p: typeof params) => new ModelSut(p, (o) => ({ ...o, sites: { ...o.sites, 3: { ...o.sites[3], restored: 0 } } }));
    const result = runWalks(params, broken, { seed: 1, runs: 200, steps: 40 });
    expect(result.failure).not.toBeNull();
    // Shrunk to a handful of events (fast-check shrinks the choices, not the events: 6 here, a write, a
    // detour through site 3's failure, a pull and the restore; a delta resync no longer restores, claim 20).
    expect(result.failure!.events.length).toBeLessThanOrEqual(6);
    expect(result.failure!.divergence.differences.map((d) => d.path)).toEqual(['sites.3.restored']);
    const replay = runWalks(params, broken, { seed: result.failure!.seed, path: result.failure!.path, runs: 1, steps: 40 });
    expect(replay.failure?.events).toEqual(result.failure!.events);
  });
});

describe('a message loop in the implementation', () => {
  // Planted: every message is sent again on delivery instead of being handled (a loop between two sites).
  // The harness's delivery bound (deliveriesPerRunFor) turns the loop into a crash divergence at the first
  // write; with the transport's default bound of a million the same path takes tens of seconds to say so.
  const looping = (bound: number | null) => (p: typeof params): ClusterSut => {
    const config = clusterConfigFor(p);
    const cluster = Cluster.create(bound === null ? config : { ...config, deliveriesPerRunMax: bound });
    cluster.transport.setReceiver((envelope) => cluster.transport.send(envelope));
    return new ClusterSut(cluster, p.blockBytes);
  };

  it('is a crash divergence at the step that starts it, within the bound the model sets', () => {
    const run = runPath(params, [write(1)], looping(null));
    expect(run.divergence?.kind).toBe('crash');
    expect(run.divergence?.step).toBe(0);
    expect(run.divergence?.summary).toMatch(new RegExp(`no livelock.*${deliveriesPerRunFor(params)} deliveries`));
  });

  it('sets a bound far above what the generated paths need and far below the transport default', () => {
    expect(deliveriesPerRunFor(params)).toBeGreaterThanOrEqual(5 * 5);
    expect(deliveriesPerRunFor(validateParams({ ...params, ...largerBounds }))).toBeLessThan(1_000);
    expect(clusterConfigFor(params).deliveriesPerRunMax).toBe(deliveriesPerRunFor(params));
  });
});
