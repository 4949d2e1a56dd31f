/**
 * The pieces of issue 16 one by one: byte-range host writes in the model (images, digests and the
 * changed-block record predicted from bytes) and through the adapter, the refusal conditions (the first that
 * fails is the refusal `check` gives), the larger bounds' cheaper model, the walks' byte ranges and the crash
 * layer of the file backends. The whole run is `run.test.ts`; the planted bugs, `planted-bugs.test.ts`.
 */
import fc from 'fast-check';
import { initialTransition, transition } from 'xstate';
import { describe, expect, it } from 'vitest';
import { ClusterSut } from '../../conformance/adapter.ts';
import { CrashingFileSut, crashLimits } from '../../conformance/crash-sut.ts';
import { runPath } from '../../conformance/lockstep.ts';
import { largerBounds, largerBoundsKey, largerBoundsStatesMax } from '../../conformance/paths.ts';
import { byteRangeOf } from '../../conformance/walks.ts';
import { byteRangeShapeOf, byteRangeShapes, candidateEvents, refusalProbeEvents, type ModelEvent } from '../../model/events.ts';
import { explore } from '../../model/explore.ts';
import { replicationMachine } from '../../model/machine.ts';
import { observe } from '../../model/observe.ts';
import { validateParams } from '../../model/params.ts';
import { check, failedConditions, refusalConditionIds, refusalConditions } from '../../model/semantics.ts';
import { blockKeysOf, imageOf } from '../../model/state.ts';

const bytes = validateParams({ volumeCount: 1, blocksPerVolume: 2, blockBytes: 512, byteWrites: true });

describe('byte-range host writes', () => {
  it('the explorer tries a write across the block boundary, one that ends mid-block and one that starts mid-block', () => {
    const shapes = byteRangeShapes(bytes.blockBytes, bytes.blocksPerVolume);
    expect(shapes.map((shape) => shape.shape)).toEqual(['spansBlocks', 'endsMidBlock', 'startsMidBlockToEnd']);
    for (const shape of shapes) expect(byteRangeShapeOf({ type: 'HOST_WRITE', host: 1, volume: 0, data: 1, ...shape }, bytes.blockBytes)).toBe(shape.shape);
    expect(byteRangeShapes(512, 1).map((shape) => shape.shape)).toEqual(['endsMidBlock', 'startsMidBlockToEnd']);
    expect(candidateEvents({ ...bytes, byteWrites: false }, { writes: 0, faults: 0 }).filter((event) => event.type === 'HOST_WRITE')).toHaveLength(4);
    expect(candidateEvents(bytes, { writes: 0, faults: 0 }).filter((event) => event.type === 'HOST_WRITE')).toHaveLength(10);
  });

  it('the model predicts images, digests and the changed-block record byte by byte, and the implementation agrees', () => {
    const events: ModelEvent[] = [
      { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 7 },
      { type: 'FAIL_SITE', site: 2 },
      { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, start: 256, length: 512, data: 9 },
    ];
    let [snapshot] = initialTransition(replicationMachine, bytes);
    for (const event of events) [snapshot] = transition(replicationMachine, snapshot, event);
    const image = imageOf(bytes, snapshot.context.sites[1].applied);
    expect([image[0], image[255], image[256], image[767], image[768], image[1023]]).toEqual([7, 7, 9, 9, 0, 0]);
    expect(blockKeysOf(bytes, 0, 256, 512)).toEqual([0, 1]);
    expect(blockKeysOf(bytes, 0, 0, 512)).toEqual([0]);
    expect(observe(snapshot.context).sites[1].changedBlocks).toBe(2);
    expect(runPath(bytes, events, ClusterSut.create).divergence).toBeNull();
  });

  it('walks draw ranges that start and end anywhere inside the volume', () => {
    fc.assert(
      fc.property(fc.nat({ max: 65_535 }), (range) => {
        const { block, start, length } = byteRangeOf(bytes, range);
        const offset = block * bytes.blockBytes + start;
        return start >= 0 && start < bytes.blockBytes && length >= 1 && offset + length <= bytes.blocksPerVolume * bytes.blockBytes;
      }),
      { seed: 16, numRuns: 500 },
    );
  });
});

describe('refusal conditions', () => {
  it('check refuses with the first condition that fails, and accepts when none does, in 2,000 explored states', () => {
    const params = validateParams({ faultsMax: 1, writesMax: 1 });
    const result = explore({ params, keepGraph: true, refusals: true });
    for (const context of result.graph!.contexts.slice(0, 2000)) {
      for (const event of [...candidateEvents(params, context), ...refusalProbeEvents(params, 1)]) {
        const failed = failedConditions(context, event);
        const refusal = check(context, event);
        if (failed.length === 0) expect(refusal).toBeNull();
        else expect(refusal?.code).toBe(refusalConditions[event.type].find((item) => item.id === failed[0])!.code);
      }
    }
    expect(new Set(refusalConditionIds).size).toBe(refusalConditionIds.length);
    for (const id of result.refusalsAlone) expect(refusalConditionIds).toContain(id);
  });
});

describe('the larger bounds', () => {
  it('are journals of 3, pulls of 2, at least 4 writes and byte ranges, within the model limits', () => {
    const params = validateParams(largerBounds);
    expect(params.journalEntriesMax).toBeGreaterThanOrEqual(3);
    expect(params.pullBatchEntriesMax).toBe(2);
    expect(params.writesMax).toBeGreaterThanOrEqual(4);
    expect(params.byteWrites).toBe(true);
  });

  it('stop the cheaper model at its state limit and say it is incomplete', () => {
    const result = explore({ params: validateParams(largerBounds), stateKey: largerBoundsKey, statesMax: 200 });
    expect(result.states).toBe(200);
    expect(result.complete).toBe(false);
    expect(largerBoundsStatesMax).toBeGreaterThan(20_000);
  });
});

describe('the crash layer of the file backends', () => {
  it('tears the journal at a crash, reopens the site from its files, and the faithful cluster follows the model', () => {
    const params = validateParams({ journalEntriesMax: 3 });
    const suts: CrashingFileSut[] = [];
    const events: ModelEvent[] = [
      { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 },
      { type: 'HOST_WRITE', host: 1, volume: 1, block: 0, data: 2 },
      { type: 'FAIL_SITE', site: 1 },
      { type: 'RECOVER_SITE', site: 1 },
      { type: 'FAIL_SITE', site: 3 },
      { type: 'RECOVER_SITE', site: 3 },
    ];
    const run = runPath(params, events, (p) => {
      const sut = CrashingFileSut.create(p, 7);
      suts.push(sut);
      return sut;
    });
    expect(run.divergence).toBeNull();
    // Site 3's journal never held an entry: its directory has no segment to tear.
    const { crashes, tornTails, corruptTails, recoveries } = suts[0]!.counts;
    expect([crashes, tornTails + corruptTails, recoveries]).toEqual([2, 1, 2]);
    // Over seeds, the tail is sometimes cut short and sometimes whole with a byte flipped: both recover to
    // the model's history (the flipped entry is found by its checksums and discarded like a torn one).
    for (let seed = 1; seed <= 12; seed += 1) {
      const run = runPath(params, events, (p) => {
        const sut = CrashingFileSut.create(p, seed);
        suts.push(sut);
        return sut;
      });
      expect(run.divergence, `seed ${seed}`).toBeNull();
    }
    const kinds = suts.slice(1).reduce((sum, sut) => ({ torn: sum.torn + sut.counts.tornTails, corrupt: sum.corrupt + sut.counts.corruptTails }), { torn: 0, corrupt: 0 });
    expect(kinds.torn).toBeGreaterThan(0);
    expect(kinds.corrupt).toBeGreaterThan(0);
    expect(crashLimits.crashImageBytesMax).toBeGreaterThan(params.volumeCount * params.blocksPerVolume * params.blockBytes);
  });
});
