/**
 * Proof that the harness catches bugs: every variant of the fault catalogue is hunted with the generated
 * paths of `npm start` (the small bounds' coverage and state paths, then the larger bounds' journal-depth,
 * refusal and byte-range paths) and must be caught by one of them, with the strategy and counterexample
 * length reported. Random walks are the hunt's last resort, not needed by any fault of the catalogue: a
 * fault that only a walk catches fails this test, because `npm start`'s planned paths should see it.
 * The larger bounds' plan is made for fence policy keepWriting only (about 14 s); no fault of the catalogue
 * depends on the fence policy.
 */
import { describe, expect, it } from 'vitest';
import { faultCatalogue } from '../../conformance/faults.ts';
import { coveragePlan, largerBounds, statePaths } from '../../conformance/paths.ts';
import { defaultParams, validateParams } from '../../model/params.ts';

const paramsList = (['keepWriting', 'refuse'] as const).map((fencePolicy) => validateParams({ faultsMax: 1, fencePolicy }));
const work = paramsList.flatMap((params) => {
  const plan = coveragePlan(params);
  return [...plan.transitionPaths, ...plan.guardPaths, ...plan.pairPaths, ...statePaths(params)].map((path) => ({ params, path }));
});
const larger = validateParams({ ...defaultParams, fencePolicy: 'keepWriting', ...largerBounds });
const largerPlan = coveragePlan(larger, true);
work.push(...[...largerPlan.depthPaths, ...largerPlan.refusalPaths, ...largerPlan.byteRangePaths].map((path) => ({ params: larger, path })));
const catalogue = faultCatalogue();

describe('the fault catalogue', () => {
  it('has at least 12 realistic faults with distinct names and descriptions', () => {
    expect(catalogue.length).toBeGreaterThanOrEqual(12);
    expect(new Set(catalogue.map((fault) => fault.name)).size).toBe(catalogue.length);
    for (const fault of catalogue) expect(fault.description.length, fault.name).toBeGreaterThan(40);
  });

  it.each(catalogue.map((fault) => ({ name: fault.name, fault })))('catches "$name"', ({ fault }) => {
    const result = fault.hunt(paramsList, work, 1);
    expect(result.caught, `${fault.name} was not caught`).toBe(true);
    expect(result.strategy).toMatch(/^generated path/);
    expect(result.counterexampleLength).toBeGreaterThan(0);
    expect(result.counterexampleLength).toBeLessThanOrEqual(12);
    expect(result.summary).toBeTruthy();
  });
});
