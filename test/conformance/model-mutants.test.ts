/**
 * Model mutants: every generated mutant of the chart (a root transition's guard negated or made "always", a
 * region transition retargeted to each other state of its region, an action dropped) must be noticed by the
 * conformance run or the explorer. A mutant no check notices is a gap; equivalent mutants would be listed
 * here with the reason, and the test would fail if a listed one were killed (there are none today).
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { checkMutant, generateMutants, mutantExplorerBounds, planChecks, type MutantChecks, type MutantResult } from '../../conformance/model-mutants.ts';
import { defaultParams } from '../../model/params.ts';

/** Mutants that no check can notice because no observable behaviour changes, with the reason. */
const equivalent: Record<string, string> = {};

describe('model mutants', () => {
  let checks: MutantChecks;
  let results: MutantResult[];
  beforeAll(() => {
    checks = planChecks({ ...defaultParams, fencePolicy: 'keepWriting' }, mutantExplorerBounds);
    results = generateMutants().map((mutant) => checkMutant(mutant, checks));
  }, 240_000);

  it('are generated for every guarded root transition, every region transition and every action', () => {
    const kinds = (kind: string) => results.filter((result) => result.kind === kind).length;
    // 29 guarded root variants, each negated and made "always"; 56 region transitions retargeted to each
    // other state of their region; 15 actions.
    expect(kinds('guard-negated')).toBe(29);
    expect(kinds('guard-always')).toBe(29);
    expect(kinds('retarget')).toBeGreaterThanOrEqual(56);
    expect(kinds('action-dropped')).toBe(15);
    expect(new Set(results.map((result) => result.id)).size).toBe(results.length);
  });

  it('are all killed, each by a check that names what broke', () => {
    const survivors = results.filter((result) => result.killedBy === null && !(result.id in equivalent));
    expect(survivors.map((result) => result.id)).toEqual([]);
    for (const result of results.filter((r) => r.killedBy !== null)) expect(result.detail.length).toBeGreaterThan(10);
    // Guards and actions change behaviour: the lockstep against the implementation sees it.
    expect(results.filter((r) => r.kind !== 'retarget').every((r) => r.killedBy === 'conformance')).toBe(true);
    // A retargeted region transition is caught by MIRROR (the chart's structure, or a region off its state).
    expect(results.filter((r) => r.kind === 'retarget').every((r) => r.killedBy === 'explorer' && r.detail.startsWith('MIRROR'))).toBe(true);
  });

  it('listed as equivalent really survive (the list cannot rot)', () => {
    for (const id of Object.keys(equivalent)) expect(results.find((result) => result.id === id)?.killedBy, id).toBeNull();
  });
});
