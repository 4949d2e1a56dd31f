/**
 * The nemesis run (conformance/nemesis.ts) checked two ways: its parts on their own (the block pattern names
 * its write and a torn block matches none; the checker finds a lost, an older, a zeroed or a torn block;
 * schedules are the same for the same seed), and a tiny run against three real site processes: one schedule
 * that passes, and the same schedule with a planted loss (the block of the last acknowledged write zeroed at
 * the primary) and a planted divergence (a byte of site 3's volume file changed behind its back), which the
 * checks must report: a checker that cannot fail checks nothing.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { nextCommand, runNemesis, type NemesisOptions } from '../../conformance/nemesis.ts';
import { formatSchedule, scheduleOf, scheduleSeedOf } from '../../conformance/nemesis-schedule.ts';
import { blockPattern, checkAcknowledged, identifyBlock, workloadBlockBytes, type IssuedWrite } from '../../conformance/nemesis-workload.ts';
import type { DeploymentStatus } from '../../impl/site/operator.ts';

/** A schedule seed whose one fault (a cut of link 1-3 for about a second) the system is expected to survive. */
const passingScheduleSeed = 2941707601;

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

function options(overrides: Partial<NemesisOptions>): NemesisOptions {
  const dir = mkdtempSync(join(tmpdir(), 'threesite-nemesis-test-'));
  dirs.push(dir);
  return { seed: 1, schedules: 1, faults: 'default', dir, keep: false, plant: null, scheduleSeed: passingScheduleSeed, log: () => undefined, ...overrides };
}

const write = (sequence: number, block: number, outcome: IssuedWrite['outcome']): IssuedWrite => ({ writer: 0, sequence, block, site: 1, outcome });

describe('the nemesis checker on its own', () => {
  const tag = (sequence: number, block: number) => ({ runSeed: 7, schedule: 0, writer: 0, sequence, volume: 0, block });

  it('names the write a block holds; a torn block or zeros name none', () => {
    const a = blockPattern(tag(1, 4));
    expect(identifyBlock(a)).toEqual({ kind: 'write', tag: tag(1, 4) });
    const torn = new Uint8Array(a);
    torn.set(blockPattern(tag(2, 4)).subarray(2048), 2048);
    expect(identifyBlock(torn).kind).toBe('other');
    expect(identifyBlock(new Uint8Array(workloadBlockBytes))).toEqual({ kind: 'zeros' });
  });

  it('accepts the latest acknowledged write or a later one, and reports anything else as lost', () => {
    const writes = [write(1, 0, 'acknowledged'), write(2, 0, 'acknowledged'), write(3, 0, 'failed'), write(4, 1, 'acknowledged'), write(5, 2, 'refused')];
    const image = (blocks: Record<number, Uint8Array>) => (block: number) => blocks[block] ?? new Uint8Array(workloadBlockBytes);
    // Block 0 holds the later write 3 (failed to the host: it may be there), block 1 its write 4.
    expect(checkAcknowledged(image({ 0: blockPattern(tag(3, 0)), 1: blockPattern(tag(4, 1)) }), writes, 7, 0)).toEqual({ checked: 2, lost: [] });
    // Block 0 holds write 1, older than the acknowledged write 2; block 1 is zeros.
    const { checked, lost } = checkAcknowledged(image({ 0: blockPattern(tag(1, 0)) }), writes, 7, 0);
    expect(checked).toBe(2);
    expect(lost).toEqual([
      { block: 0, acknowledged: 2, found: 'write 1 (block 0)' },
      { block: 1, acknowledged: 4, found: 'zeros' },
    ]);
    // Another block's write, or another run's, is not this block's.
    expect(checkAcknowledged(image({ 0: blockPattern(tag(2, 1)), 1: blockPattern({ ...tag(4, 1), runSeed: 8 }) }), writes, 7, 0).lost.map((l) => l.block)).toEqual([0, 1]);
  });

  it('draws the same schedule from the same seed, and the default mix leaves out the faults only --faults all applies', () => {
    const seeds = Array.from({ length: 200 }, (_, i) => scheduleSeedOf(5, i));
    expect(new Set(seeds).size).toBe(200);
    expect(formatSchedule(scheduleOf(3, seeds[3] as number, 'default', 1000, true))).toBe(formatSchedule(scheduleOf(3, seeds[3] as number, 'default', 1000, true)));
    const faults = seeds.flatMap((seed, i) => scheduleOf(i, seed, 'default', 1000, true).faults);
    expect(faults.filter((f) => f.kind === 'corrupt').every((f) => f.site === 3)).toBe(true);
    expect(new Set(faults.map((f) => f.kind))).toEqual(new Set(['kill', 'stop', 'cut', 'corrupt', 'diskFull']));
    // A full disk needs a tmpfs: never drawn when the run is not root.
    expect(seeds.flatMap((seed, i) => scheduleOf(i, seed, 'default', 1000, false).faults).some((f) => f.kind === 'diskFull')).toBe(false);
    const all = seeds.flatMap((seed, i) => scheduleOf(i, seed, 'all', 1000, true).faults);
    expect(all.some((f) => f.kind === 'diskFull')).toBe(true);
    expect(seeds.flatMap((seed, i) => scheduleOf(i, seed, 'all', 1000, false).faults).some((f) => f.kind === 'diskFull')).toBe(false);
  });

  it("the operator's next step: recover a failed site, resync the returning member, bring site 3 up to date, fail back", () => {
    const site = (up: boolean, mode = 'normal', role = 'secondary') => ({ up, mode, role, connected: up ? [1, 2] : [] }) as unknown as DeploymentStatus['sites'][1];
    const base = { sites: { 1: site(true, 'normal', 'primary'), 2: site(true), 3: site(true) }, unreachable: {}, primary: 1, syncPair: 'inSync', asyncPair: 'copying', standbyPair: 'hold', judgement: null, lag: 0, ackedOnOneSite: 0 } as unknown as DeploymentStatus;
    expect(nextCommand(base, 1)).toBeNull();
    expect(nextCommand({ ...base, sites: { ...base.sites, 2: site(false) } }, 1)).toEqual(['recover', '--site', '2']);
    expect(nextCommand({ ...base, sites: { ...base.sites, 2: site(true, 'resyncing') } }, 1)).toEqual(['resync', '--site', '2']);
    expect(nextCommand({ ...base, syncPair: 'resyncing' }, 1)).toEqual(['resync', '--site', '2']);
    expect(nextCommand({ ...base, asyncPair: 'deltaResync' }, 1)).toEqual(['delta-resync']);
    expect(nextCommand({ ...base, asyncPair: 'suspendedOverflow' }, 1)).toEqual(['full-copy']);
    expect(nextCommand({ ...base, primary: 2, syncPair: 'reversed' }, 1)).toEqual(['failback']);
    expect(nextCommand({ ...base, primary: 2, syncPair: 'reversed', lag: 3 }, 1)).toBeNull();
    expect(nextCommand({ ...base, sites: { ...base.sites, 3: null } }, 1)).toBeNull();
  });
});

describe('a tiny nemesis against three site processes', () => {
  it('passes a schedule the system survives: every acknowledged write on the primary, three equal images, the traces validated', async () => {
    const report = await runNemesis(options({}));
    const result = report.results[0]!;
    // Every check passes, the traces' validation among them (a pull, a restore or a recovery recorded at
    // another instant than the one it took place at fails it: docs/nemesis.md).
    expect(result.failures, result.failures.join('\n')).toEqual([]);
    expect(result.traceValid).toBe(true);
    expect(result.writesAcknowledged).toBeGreaterThan(0);
    expect(result.blocksChecked).toBeGreaterThan(0);
    expect(report.lost).toBe(0);
    expect(report.differingBlocks).toBe(0);
    // Online verify ran under load and at the end, compared blocks of the three sites, and found them equal.
    expect(result.verifies.map((v) => v.when)).toEqual(['under load', 'final']);
    expect(result.verifies.at(-1)).toMatchObject({ outcome: 'equal', blocksDiffering: 0, blocksNotVerified: 0 });
    expect(result.verifyBlocksCompared).toBeGreaterThan(0);
    expect(report.verifyDiffering).toBe(0);
    expect(report.passed).toBe(1);
    expect(report.faultsInjected.cut).toBe(1);
  }, 240_000);

  it('reports a planted lost write and a planted divergence, and fails the schedule', async () => {
    const report = await runNemesis(options({ plant: 'both' }));
    const result = report.results[0]!;
    expect(report.passed).toBe(0);
    expect(result.lostCount).toBe(1);
    expect(result.lost[0]?.found).toBe('zeros');
    expect(result.failures.some((failure) => failure.includes('1 acknowledged writes not on the primary'))).toBe(true);
    expect(result.differingBlocks).toBe(1);
    expect(result.differing[0]).toEqual({ volume: 1, block: 3, sites: '3 vs 1,2' });
    // The sites' own online verify finds the same block (byte 12,345 is in the block at offset 12,288), at site 3 only.
    expect(result.verifies.at(-1)).toMatchObject({ when: 'final', outcome: 'differ', blocksDiffering: 1, detail: 'site 3 volume 1 offset 12288' });
    expect(result.failures.some((failure) => failure.startsWith('online verify (final'))).toBe(true);
    expect(report.failed.map((f) => f.seed)).toEqual([passingScheduleSeed]);
  }, 240_000);
});
