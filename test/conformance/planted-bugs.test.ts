/**
 * Issue 16: each class of bug the conformance run used to miss, planted (`conformance/planted-bugs.ts`), is
 * caught by the generated paths `npm start` now runs, through the generator made for its class, and missed
 * by the generated paths the run had before (shortest paths to every abstract state, to every transition,
 * pair and guard outcome at the small bounds, in memory): caught by design, not by chance. Fence policy
 * keepWriting and one fault per path at the small bounds keep the planning short; `npm start` plans both
 * policies with two faults.
 */
import { describe, expect, it } from 'vitest';
import { crashingFileSutFactory } from '../../conformance/crash-sut.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { coveragePlan, largerBounds, statePaths, type GeneratedPath } from '../../conformance/paths.ts';
import { changedRecordFirstBlockOnly, failbackIgnoresCutLinks, plantedBugs, tornTailCutsOneEntryTooMany, trimPastRestored } from '../../conformance/planted-bugs.ts';
import type { SutFactory } from '../../conformance/sut.ts';
import { validateParams, type ModelParams } from '../../model/params.ts';

const small = validateParams({ faultsMax: 1, fencePolicy: 'keepWriting' });
const larger = validateParams({ ...small, ...largerBounds });
const smallPlan = coveragePlan(small);
const largerPlan = coveragePlan(larger, true);

/** The generated paths of the conformance run before issue 16. */
const before: GeneratedPath[] = [...statePaths(small), ...smallPlan.transitionPaths, ...smallPlan.pairPaths, ...smallPlan.guardPaths];

/** The first path of a list that the system diverges on, with the divergence, or null. */
function firstCaught(paths: readonly GeneratedPath[], params: ModelParams, makeSut: SutFactory): { path: GeneratedPath; summary: string } | null {
  for (const path of paths) {
    const run = runPath(params, path.events, makeSut);
    if (run.divergence) return { path, summary: run.divergence.summary };
  }
  return null;
}

const withFailure = (paths: readonly GeneratedPath[]): GeneratedPath[] => paths.filter((path) => path.events.some((event) => event.type === 'FAIL_SITE'));

describe('planted bugs of issue 16', () => {
  it('one per class, each a wrapper around a real cluster', () => {
    expect(plantedBugs.map((bug) => bug.issueClass)).toEqual(['journal ranges', 'refusal conditions', 'byte ranges', 'files and crashes']);
  });

  it('journal ranges: a trim past the restored number hides at journals of one entry, and the journal-depth paths catch it', () => {
    expect(firstCaught(before, small, trimPastRestored.makeSut)).toBeNull();
    const caught = firstCaught(largerPlan.depthPaths, larger, trimPastRestored.makeSut);
    expect(caught?.path.strategy).toBe('depth');
    // The journal range at once, or the implementation's own invariant a step later (a pull of entries gone).
    expect(caught?.summary).toMatch(/journal/);
  });

  it('refusal conditions: a failback that forgets the cut links is caught where that condition alone refuses it', () => {
    expect(smallPlan.refusalsAlone).toContain('FAILBACK.allLinksUp');
    expect(firstCaught(before, small, failbackIgnoresCutLinks.makeSut)).toBeNull();
    const caught = firstCaught(smallPlan.refusalPaths, small, failbackIgnoresCutLinks.makeSut);
    expect(caught?.path.target).toBe('FAILBACK.allLinksUp');
    // The model refuses; the implementation goes ahead and fails on the cut link, or accepts.
    expect(caught?.path.events.at(-1)?.type).toBe('FAILBACK');
    expect(caught?.summary).toMatch(/every link must be up|failback/);
  });

  it('byte ranges: a changed-block record that marks only the first block of a range is caught by a write across a block boundary', () => {
    expect(firstCaught(before, small, changedRecordFirstBlockOnly.makeSut)).toBeNull();
    const caught = firstCaught(largerPlan.byteRangePaths, larger, changedRecordFirstBlockOnly.makeSut);
    expect(caught?.path.target).toMatch(/spansBlocks$/);
    expect(caught?.summary).toMatch(/changedBlocks/);
  });

  it('files and crashes: a torn-tail recovery that cuts one entry too many is caught on the file backends, after a crash', () => {
    expect(firstCaught(before, small, tornTailCutsOneEntryTooMany.makeSut)).toBeNull();
    const crashPaths = withFailure([...largerPlan.transitionPaths, ...largerPlan.guardPaths, ...largerPlan.depthPaths]);
    // The faithful cluster passes them on files: the crash layer itself diverges from nothing.
    expect(firstCaught(crashPaths, larger, crashingFileSutFactory(1))).toBeNull();
    const caught = firstCaught(crashPaths, larger, tornTailCutsOneEntryTooMany.makeFileSut(1));
    expect(caught?.path.events.some((event) => event.type === 'RECOVER_SITE')).toBe(true);
    expect(caught?.summary).toMatch(/lastUpdateNumber|journal/);
  });
});
