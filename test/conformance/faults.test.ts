/**
 * Proof that the harness catches bugs: every variant of the fault catalogue is hunted with the generated
 * paths (and walks) at small bounds and must be caught, with the strategy and counterexample length
 * reported.
 */
import { describe, expect, it } from 'vitest';
import { faultCatalogue } from '../../conformance/faults.ts';
import { coveragePlan, statePaths } from '../../conformance/paths.ts';
import { validateParams } from '../../model/params.ts';

const paramsList = (['keepWriting', 'refuse'] as const).map((fencePolicy) => validateParams({ faultsMax: 1, fencePolicy }));
const work = paramsList.flatMap((params) => {
  const plan = coveragePlan(params);
  return [...plan.transitionPaths, ...plan.guardPaths, ...plan.pairPaths, ...statePaths(params)].map((path) => ({ params, path }));
});
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
    expect(result.strategy).toMatch(/generated path|random walk/);
    expect(result.counterexampleLength).toBeGreaterThan(0);
    expect(result.counterexampleLength).toBeLessThanOrEqual(12);
    expect(result.summary).toBeTruthy();
  });
});
