/**
 * The lockstep checks after every step that the chart's regions show what the context says (MIRROR): a
 * region rule that disagrees with the semantics is a `chart` divergence of the conformance run, even where
 * the implementation and the context agree.
 */
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { runPath } from '../../conformance/lockstep.ts';
import type { ModelEvent } from '../../model/events.ts';
import { replicationMachine } from '../../model/machine.ts';
import { defaultParams, validateParams } from '../../model/params.ts';

const params = validateParams(defaultParams);
const overflow: ModelEvent[] = [
  { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 },
  { type: 'HOST_WRITE', host: 1, volume: 1, block: 0, data: 2 },
];

describe('the lockstep and the chart', () => {
  it('passes the specification along a journal overflow', () => {
    expect(runPath(params, overflow, ClusterSut.create).divergence).toBeNull();
  });

  it('stops at the step where a region disagrees with the context (an overflow the async pair does not see)', () => {
    const broken = replicationMachine.provide({ guards: { sourceJournalOverflows: () => false } });
    const run = runPath(params, overflow, ClusterSut.create, null, broken);
    expect(run.divergence?.kind).toBe('chart');
    expect(run.steps).toBe(2);
    expect(run.divergence?.summary).toMatch(/the chart disagrees with its semantics: region (site3|asyncPair) shows/);
  });
});
