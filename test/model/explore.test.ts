import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { assign } from 'xstate';
import { explore, claimsTaken, untaken } from '../../model/explore.ts';
import { replicationMachine } from '../../model/machine.ts';
import { apply, failoverVerdict } from '../../model/semantics.ts';
import type { ModelContext } from '../../model/state.ts';
import type { ModelEvent } from '../../model/events.ts';

/** A broken variant of an action: the real effect, then `breakIt` on the result. */
// Typed loosely on purpose: a variant replaces the named action whatever its declared event type.
const brokenAction = (breakIt: (before: ModelContext, after: ModelContext, event: ModelEvent) => ModelContext) =>
  assign<ModelContext, ModelEvent, undefined, ModelEvent, never>(({ context, event }) => breakIt(context, apply(context, event), event)) as never;

const small = { writesMax: 2, journalEntriesMax: 1, faultsMax: 1 };

function firstViolation(machine: unknown, params: Record<string, unknown> = small) {
  const result = explore({ machine: machine as typeof replicationMachine, params, stopOnViolation: true });
  expect(result.violations.length, 'the checker must report the broken variant').toBeGreaterThan(0);
  return result.violations;
}

describe('exhaustive bounded exploration', () => {
  it('finds no violation, takes every chart transition and covers all 40 claims at small bounds', () => {
    // One volume: a quarter of the states, the same transitions and claims (see the next test).
    const result = explore({ params: { ...small, volumeCount: 1 } });
    expect(result.complete).toBe(true);
    expect(result.violations).toEqual([]);
    expect(result.states).toBeGreaterThan(1000);
    expect(claimsTaken(result).size).toBe(40);
    // Two faults are needed for a few region moves; the default bounds (next test) take them all.
    expect(untaken(result).length).toBeLessThan(10);
  });

  it('npm run explore -- --json: zero violations, 40 of 40 claims, every chart transition, with one volume', () => {
    // One volume: no guard, action or region move of the chart tells volumes apart, so every transition and
    // claim is taken at a quarter of the default bounds' states. The default bounds (two volumes) are explored
    // by `npm start` on every run, which fails on any violation.
    const output = execFileSync('npx', ['tsx', 'model/explore-cli.ts', '--volumes', '1', '--json'], { encoding: 'utf8', timeout: 480_000 });
    const summary = JSON.parse(output.trim().split('\n').at(-1)!);
    expect(summary.violations).toEqual([]);
    expect(summary.claims).toEqual({ covered: 40, total: 40, missing: [] });
    expect(summary.chart.untaken).toEqual([]);
    expect(summary.complete).toBe(true);
    expect(summary.states).toBeGreaterThan(20_000);
    expect(summary.transitions).toBeGreaterThan(summary.states);
    expect(Object.keys(summary)).toEqual(expect.arrayContaining(['states', 'transitions', 'violations', 'claims', 'params', 'ms']));
    // The exploration's own bound is its 480 s exec timeout (about 35 s on a quiet 2-core machine).
  }, 540_000);
});

describe('the checker catches broken variants of the chart, with a shortest counterexample', () => {
  it('P5: a judge that allows a delta resync when the journal does not cover the gap', () => {
    const broken = replicationMachine.provide({
      actions: {
        failover: brokenAction((_before, after) =>
          after.judgement?.verdict === 'fullCopy' ? { ...after, asyncPair: 'deltaResync', judgement: { ...after.judgement, verdict: 'deltaResync' } } : after,
        ),
      },
    });
    // The chart's own region rules disagree too (MIRROR: site 3 shown as needing a full copy); P5 is what
    // the planted judge breaks.
    const violation = firstViolation(broken).find((v) => v.property === 'P5');
    expect(violation, 'P5 reported').toBeDefined();
    // Two writes overflow site 2's one-entry journal; site 1 fails; the failover judges.
    expect(violation!.path).toEqual([
      'HOST_WRITE host=1 volume=0 block=0 data=1',
      'HOST_WRITE host=1 volume=0 block=0 data=2',
      'FAIL_SITE site=1',
      'FAILOVER force=false',
    ]);
  });

  it('P4: a failover that leaves site 1 writable (promotes site 2 while site 1 is up and not fenced)', () => {
    const broken = replicationMachine.provide({
      guards: {
        failoverNoUpdateRequired: ({ context, event }) =>
          event.type === 'FAILOVER' && context.primary === 1 && context.sites[2].up && failoverVerdict(context) === 'noUpdateRequired',
      },
    });
    const [violation] = firstViolation(broken);
    expect(violation!.property).toBe('P4');
    expect(violation!.path).toEqual(['FAILOVER force=false']);
    expect(violation!.inTransition).toBe(true);
  });

  it('P4 on what the chart accepts: a secondary that takes host writes itself while site 1 is primary (the primary field says 1)', () => {
    // The host-2 write is taken at site 2 as the reversed pair would take it, though the pair is not reversed:
    // the primary field stays 1, so a P4 read from that field alone cannot see two writers.
    const broken = replicationMachine.provide({
      guards: {
        hostWriteReversed: ({ context, event }) =>
          event.type === 'HOST_WRITE' && event.host === 2 && context.sites[2].up && (context.primary === 2 || context.syncPair === 'inSync'),
      },
    });
    const [violation] = firstViolation(broken);
    expect(violation!.property).toBe('P4');
    expect(violation!.message).toBe('the chart takes a host write at sites 1 and 2');
    expect(violation!.path).toEqual([]);
  });

  it('P3: update numbers that restart after failover', () => {
    const broken = replicationMachine.provide({
      actions: {
        journalAlone: brokenAction((before, after) => {
          if (before.primary !== 2) return after;
          const applied = after.sites[2].applied;
          const last = applied.at(-1)!;
          return { ...after, sites: { ...after.sites, 2: { ...after.sites[2], applied: [...applied.slice(0, -1), { ...last, u: 1 }] } } };
        }),
      },
    });
    const violations = firstViolation(broken);
    expect(violations.map((v) => v.property)).toContain('P3');
    const p3 = violations.find((v) => v.property === 'P3')!;
    expect(p3.path).toEqual(['HOST_WRITE host=1 volume=0 block=0 data=1', 'FAIL_SITE site=1', 'FAILOVER force=false', 'HOST_WRITE host=2 volume=0 block=0 data=2']);
  });

  it('P2: a restore out of order', () => {
    const broken = replicationMachine.provide({
      actions: {
        restoreJournal: brokenAction((before, after) => ({
          ...after,
          sites: { ...after.sites, 3: { ...after.sites[3], applied: [...before.sites[3].applied, ...[...before.sites[3].pending].reverse()] } },
        })),
      },
    });
    const violations = firstViolation(broken, { ...small, journalEntriesMax: 2 });
    const p2 = violations.find((v) => v.property === 'P2');
    expect(p2, JSON.stringify(violations)).toBeDefined();
    expect(p2!.path).toHaveLength(5);
    expect(p2!.path.at(-1)).toBe('RESTORE_JOURNAL');
  });

  it('P1 made whole: a write acknowledged on one site that spans two blocks, with only its first block in the changed-block record', () => {
    // The exposure count still moves (the P1 of the count alone passes); the resync would never copy the
    // second block, so the members would differ there for good.
    const broken = replicationMachine.provide({
      actions: {
        journalAlone: brokenAction((before, after) => {
          const site = after.primary;
          const added = after.sites[site].changed.filter((key) => !before.sites[site].changed.includes(key));
          const kept = [...before.sites[site].changed, ...added.slice(0, 1)].sort((a, b) => a - b);
          return { ...after, sites: { ...after.sites, [site]: { ...after.sites[site], changed: kept } } };
        }),
      },
    });
    const violation = firstViolation(broken, { ...small, volumeCount: 1, blocksPerVolume: 2, blockBytes: 4, byteWrites: true }).find((v) => v.property === 'P1');
    expect(violation, 'P1 reported').toBeDefined();
    expect(violation!.message).toBe('site 1 holds writes its peer lacks in blocks 1, not in its changed-block record');
    expect(violation!.path).toHaveLength(2);
    expect(violation!.path[1]).toMatch(/^HOST_WRITE host=1 volume=0 block=0 data=1 start=\d+ length=\d+$/);
  });

  it('P6 made whole: a failback that cuts the last write from all three sites alike (their images stay equal)', () => {
    const cut = (context: ModelContext): ModelContext => {
      const last = context.sites[2].applied.length;
      if (last === 0) return context;
      const member = (site: 1 | 2) => {
        const m = context.sites[site];
        const applied = m.applied.filter((entry) => entry.u < last);
        return { ...m, applied, journalFirst: Math.min(m.journalFirst, applied.length + 1), knownRestored: Math.min(m.knownRestored, applied.length), changed: [] };
      };
      const remote = context.sites[3];
      return {
        ...context,
        sites: {
          1: member(1),
          2: member(2),
          3: { ...remote, applied: remote.applied.filter((entry) => entry.u < last), pending: remote.pending.filter((entry) => entry.u < last) },
        },
      };
    };
    const broken = replicationMachine.provide({ actions: { failback: brokenAction((_before, after) => cut(after)) } });
    const violation = firstViolation(broken).find((v) => v.property === 'P6');
    expect(violation, 'P6 reported').toBeDefined();
    expect(violation!.message).toMatch(/^failback lost writes at site 1: site 2 held \d+ before it/);
    expect(violation!.path.at(-1)).toBe('FAILBACK');
    expect(violation!.inTransition).toBe(true);
  });

  it('P9: a chart that never accepts a full copy strands site 3 once its source journal overflowed', () => {
    // The regions' full-copy moves are refused too, so the chart stays consistent (no MIRROR): only P9 sees it.
    const standbyCovers = replicationMachine.implementations.guards.standbyCovers as (args: { event: ModelEvent }, params: unknown) => boolean;
    const broken = replicationMachine.provide({
      guards: {
        fullCopyAccepted: () => false,
        fullCopyCompletes: () => false,
        standbyCovers: ((args: { event: ModelEvent }, params: unknown) => args.event.type !== 'FULL_COPY' && standbyCovers(args, params)) as never,
      },
    });
    // P9 needs the whole graph: one volume keeps it to a few thousand states.
    const violations = firstViolation(broken, { ...small, volumeCount: 1 });
    expect(violations.map((violation) => violation.property)).toEqual(['P9']);
    // The shortest way to a state no recovery command brings back: two writes overflow the one-entry journal.
    expect(violations[0]!.path).toEqual(['HOST_WRITE host=1 volume=0 block=0 data=1', 'HOST_WRITE host=1 volume=0 block=0 data=2']);
    expect(violations[0]!.message).toBe('no sequence of recover, resync, judge and copy commands reaches full protection from this state');
  });

  it('P7: a journal overflow that drops entries without suspending the async pair', () => {
    const broken = replicationMachine.provide({
      actions: {
        journalAndReplicate: brokenAction((before, after) =>
          after.asyncPair === 'suspendedOverflow' && before.asyncPair === 'copying' ? { ...after, asyncPair: 'copying' } : after,
        ),
      },
    });
    const violation = firstViolation(broken).find((v) => v.property === 'P7');
    expect(violation, 'P7 reported').toBeDefined();
    expect(violation!.path).toEqual(['HOST_WRITE host=1 volume=0 block=0 data=1', 'HOST_WRITE host=1 volume=0 block=0 data=2']);
  });

  it('P1: a failback that loses site 2\'s last write at site 1', () => {
    const broken = replicationMachine.provide({
      actions: {
        failback: brokenAction((_before, after) => ({
          ...after,
          sites: { ...after.sites, 1: { ...after.sites[1], applied: after.sites[1].applied.slice(0, -1) } },
        })),
      },
    });
    const violations = firstViolation(broken);
    const p1 = violations.find((v) => v.property === 'P1');
    expect(p1, JSON.stringify(violations)).toBeDefined();
    expect(p1!.path.at(-1)).toBe('FAILBACK');
  });

  it('MIRROR: a region rule that disagrees with the semantics (an overflow the async pair does not see)', () => {
    const broken = replicationMachine.provide({ guards: { sourceJournalOverflows: () => false } });
    const [violation] = firstViolation(broken);
    expect(violation!.property).toBe('MIRROR');
    expect(violation!.message).toMatch(/region (site3|asyncPair) shows "(copyingFromSite1|copying)", the context says (needsFullCopy|suspendedOverflow)/);
    expect(violation!.path.at(-1)).toMatch(/^HOST_WRITE/);
  });

  it('MIRROR: a region that moves on an event the semantics refuse', () => {
    // Host 2 may not write while site 1 is primary; this rule moves the async pair on such a write anyway.
    const broken = replicationMachine.provide({
      guards: { sourceJournalOverflows: ({ context, event }) => event.type === 'HOST_WRITE' && event.host === 2 && context.primary === 1 },
    });
    const [violation] = firstViolation(broken);
    expect(violation!.property).toBe('MIRROR');
    expect(violation!.message).toContain('no variant of the system region takes');
    expect(violation!.path).toHaveLength(1);
  });
});
