/**
 * The deterministic parts of the inflow benchmark (bench/inflow.ts, bench/arguments.ts): the command line
 * that chooses it, the arithmetic behind its chosen delay, and the report it makes from a measurement,
 * here a fake one. Nothing is started and nothing is timed: the bench run itself is `npm run bench -- --only
 * inflow`, never part of `npm test`.
 */
import { describe, expect, it } from 'vitest';
import { benchParts, BenchUsageError, parseBenchArguments } from '../../bench/arguments.ts';
import {
  asyncPairNeeds,
  formatInflowBench,
  inflowBenchOf,
  inflowDelayMsDefault,
  inflowJob,
  inflowSetupOf,
  siteThreeEntriesPerSecondMax,
  type InflowMeasurement,
  type InflowSample,
} from '../../bench/inflow.ts';
import type { FioResult } from '../../bench/deployment.ts';
import { inflowDelayMsMax } from '../../impl/site/site-node.ts';
import { tickIntervalMs } from '../../impl/site/site-serve.ts';

describe('npm run bench arguments', () => {
  it('without --only every part runs, inflow last, with the default delay', () => {
    const parsed = parseBenchArguments([]);
    expect(parsed.parts).toEqual(['throughput', 'harness', 'interleavings', 'deployment', 'inflow']);
    expect(parsed).toMatchObject({ only: false, profile: false, cli: undefined, inflowDelayMs: inflowDelayMsDefault });
  });

  it('--only inflow runs that part alone; several --only keep the parts in their running order', () => {
    expect(parseBenchArguments(['--only', 'inflow'])).toMatchObject({ parts: ['inflow'], only: true });
    expect(parseBenchArguments(['--only', 'inflow', '--only', 'deployment']).parts).toEqual(['deployment', 'inflow']);
  });

  it('--inflow-delay-ms is taken from 1 to inflowDelayMsMax and refused beyond, naming the option', () => {
    expect(parseBenchArguments(['--only', 'inflow', '--inflow-delay-ms', '1']).inflowDelayMs).toBe(1);
    expect(parseBenchArguments(['--inflow-delay-ms', String(inflowDelayMsMax)]).inflowDelayMs).toBe(inflowDelayMsMax);
    for (const bad of ['0', String(inflowDelayMsMax + 1), '1.5', '-5', 'abc', '']) {
      const error = (() => {
        try {
          parseBenchArguments([`--inflow-delay-ms=${bad}`]);
        } catch (e) {
          return e;
        }
        return undefined;
      })();
      expect(error, bad).toBeInstanceOf(BenchUsageError);
      expect((error as BenchUsageError).option, bad).toBe('--inflow-delay-ms');
      expect((error as BenchUsageError).value, bad).toBe(bad);
    }
  });

  it('an unknown part or option is a BenchUsageError that says what is taken', () => {
    expect(() => parseBenchArguments(['--only', 'inflw'])).toThrow(new BenchUsageError('--only', 'inflw', `takes ${benchParts.join(', ')}`));
    expect(() => parseBenchArguments(['--inflow'])).toThrow(BenchUsageError);
    expect(() => parseBenchArguments(['inflow'])).toThrow(BenchUsageError);
  });
});

describe('the inflow part: its chosen delay', () => {
  it('paces the load to half of site 3 copy ceiling, on a whole number of the node ticks', () => {
    expect(inflowDelayMsDefault % tickIntervalMs).toBe(0);
    const pacedWritesPerSecond = (inflowJob.iodepth * 1000) / inflowDelayMsDefault;
    expect(pacedWritesPerSecond).toBe(siteThreeEntriesPerSecondMax / 2);
    expect(inflowDelayMsDefault).toBeLessThanOrEqual(inflowDelayMsMax);
  });
});

/** A fio result with the given IOPS; the other figures scale with it. */
function fio(iops: number, p99Us: number): FioResult {
  return { iops, bandwidthMiBps: (iops * 4) / 1024, clatMeanUs: 1e6 / iops, clatP50Us: 1e6 / iops, clatP99Us: p99Us, latMeanUs: 1e6 / iops, ios: iops * 15, fioCpuPercent: 10 };
}

function sample(atMs: number, last: number, restored: number, entries: number, extra: Partial<InflowSample> = {}): InflowSample {
  return { atMs, lastUpdateNumber: last, restored, journalEntries: entries, highWater: entries >= 205, sourceOverflow: false, asyncPair: 'copying', ...extra };
}

/** Off: the journal fills, overflows at the third sample, site 3 stops; the full copy repairs it. */
const off: InflowMeasurement = {
  delayMs: null,
  fio: fio(450, 250_000),
  samples: [
    sample(0, 100, 90, 10),
    sample(100, 300, 100, 210),
    sample(200, 600, 110, 1, { sourceOverflow: true, asyncPair: 'suspendedOverflow' }),
    sample(300, 900, 110, 300 - 10, { sourceOverflow: true, asyncPair: 'suspendedOverflow', highWater: true }),
  ],
  missedSamples: 1,
  writesTaken: 1000,
  inflow: null,
  afterLoad: { asyncPair: 'suspendedOverflow', standbyPair: 'holdError', lag: 890, catchUpMs: null, sitesEqual: false, sitesOneAndTwoEqual: true },
  repair: { ms: 5000, sitesEqual: true, error: null },
};

/** On: paced at high water, site 3 keeps copying and catches up. */
const on: InflowMeasurement = {
  delayMs: 400,
  fio: fio(75, 1_100_000),
  // The third sample is past high water by its bytes, not its entries: the site's flag is what counts.
  samples: [sample(0, 100, 90, 10), sample(100, 220, 100, 206), sample(200, 240, 120, 150, { highWater: true }), sample(300, 250, 150, 100)],
  missedSamples: 0,
  writesTaken: 260,
  inflow: { delayMs: 400, delayedWrites: 130, delayMsTotal: 19_500.4 },
  afterLoad: { asyncPair: 'copying', standbyPair: 'hold', lag: 0, catchUpMs: 2000, sitesEqual: true, sitesOneAndTwoEqual: true },
  repair: null,
};

describe('the inflow part: its report from a fake measurement', () => {
  const setup = inflowSetupOf(400, 10);
  const bench = inflowBenchOf(setup, off, on, 120);

  it('sums up each run: IOPS and latency, delays, high-water samples, overflow, pairs, lag, equality, repair', () => {
    expect(bench.off).toEqual({
      inflowControl: null,
      host: { iops: 450, clatMeanUs: 1e6 / 450, clatP50Us: 1e6 / 450, clatP99Us: 250_000, ios: 450 * 15, writesTaken: 1000 },
      inflow: { delayedWrites: 0, delayMsTotal: 0, meanDelayMs: 0, delayedShare: 0 },
      journal: { entriesMax: 256, samples: 4, missedSamples: 1, pastHighWaterSamples: 2, pastHighWaterShare: 0.5, entriesMaxSampled: 290 },
      asyncPair: { seen: ['copying', 'suspendedOverflow'], afterLoad: 'suspendedOverflow', overflowed: true, needs: 'fullCopy' },
      standbyPair: { afterLoad: 'holdError' },
      siteThreeLag: { max: 790, mean: (10 + 200 + 490 + 790) / 4, afterLoad: 890 },
      catchUpMs: null,
      sitesEqualAfterLoad: false,
      sitesOneAndTwoEqualAfterLoad: true,
      repair: { ms: 5000, sitesEqual: true, error: null },
    });
    expect(bench.on).toMatchObject({
      inflowControl: { delayMs: 400 },
      inflow: { delayedWrites: 130, delayMsTotal: 19_500, meanDelayMs: 150, delayedShare: 0.5 },
      journal: { pastHighWaterSamples: 2, pastHighWaterShare: 0.5, entriesMaxSampled: 206 },
      asyncPair: { seen: ['copying'], afterLoad: 'copying', overflowed: false, needs: 'nothing' },
      siteThreeLag: { max: 120, afterLoad: 0 },
      catchUpMs: 2000,
      sitesEqualAfterLoad: true,
      repair: null,
    });
  });

  it('gives the on/off ratios of the same part and says the story holds', () => {
    expect(bench.ratios).toEqual({ iops: Math.round((75 / 450) * 1000) / 1000, maxLag: Math.round((120 / 790) * 1000) / 1000 });
    expect(bench.story).toMatchObject({ offOverflowed: true, onKeptCopying: true, onPaced: true, asExpected: true });
    expect(bench.story.summary).toMatch(/^as expected/);
    expect(bench.setup).toMatchObject({ delayMs: 400, restoreIntervalMs: 10, siteThreeEntriesPerSecondMax: 80, job: inflowJob });
    // The journal's own rule (80% of its 256 entries, 204.8) says where its high-water mark is.
    expect(bench.setup.journal).toEqual({ entriesMax: 256, bytesMax: 64 * 1024 * 1024, highWaterEntries: 205 });
    // What reports/bench.json stores under `inflow` reads back the same.
    expect(JSON.parse(JSON.stringify(bench))).toEqual(bench);
  });

  it('says what it measured when the story does not hold (on overflowed too; off never did)', () => {
    const onOverflowed: InflowMeasurement = { ...on, afterLoad: { ...on.afterLoad, asyncPair: 'suspendedOverflow' } };
    const story = inflowBenchOf(setup, off, onOverflowed, 120).story;
    expect(story).toMatchObject({ offOverflowed: true, onKeptCopying: false, asExpected: false });
    expect(story.summary).toMatch(/^NOT the expected story/);
    expect(story.summary).toContain('on: host 75 IOPS, 130 writes delayed');
    const offCopying: InflowMeasurement = { ...off, samples: on.samples, afterLoad: on.afterLoad, repair: null };
    expect(inflowBenchOf(setup, offCopying, on, 120).story).toMatchObject({ offOverflowed: false, asExpected: false });
  });

  it('counts an overflow that site 1 reported in a sample, or that the pair shows only after the load', () => {
    const inSamplesOnly: InflowMeasurement = { ...off, afterLoad: { ...off.afterLoad, asyncPair: 'suspended' } };
    expect(inflowBenchOf(setup, inSamplesOnly, on, 120).off.asyncPair).toMatchObject({ overflowed: true, needs: 'resume' });
    const afterLastSample: InflowMeasurement = { ...off, samples: on.samples };
    expect(inflowBenchOf(setup, afterLastSample, on, 120).off.asyncPair).toMatchObject({ overflowed: true, needs: 'fullCopy' });
    expect(bench.on.asyncPair.overflowed).toBe(false);
  });

  it('maps the async pair after the load to what it needs', () => {
    expect(['copying', 'suspended', 'deltaResync', 'suspendedOverflow', 'fullCopy', null].map((s) => asyncPairNeeds(s as never))).toEqual([
      'nothing',
      'resume',
      'deltaResync',
      'fullCopy',
      'fullCopy',
      'unknown',
    ]);
  });

  it('prints one markdown row per measure with off and on side by side, and the ratios', () => {
    const text = formatInflowBench(bench);
    expect(text).toContain('| host IOPS | 450 | 75 |');
    expect(text).toContain('| writes inflow control delayed (share) | 0 (0) | 130 (0.5) |');
    expect(text).toContain('| samples past high water (every 100 ms; missed) | 2/4 = 0.5 (1) | 2/4 = 0.5 (0) |');
    expect(text).toContain('| journal overflowed | yes | no |');
    expect(text).toContain('| async pair seen / after the load | copying, suspendedOverflow / suspendedOverflow | copying / copying |');
    expect(text).toContain('| repair | full copy + catch-up 5,000 ms, then equal: true | none needed |');
    expect(text).toContain(`on/off: IOPS ${bench.ratios.iops.toFixed(3)}, site 3 max lag ${bench.ratios.maxLag.toFixed(3)}`);
    const failed = inflowBenchOf(setup, { ...off, repair: { ms: null, sitesEqual: null, error: 'fullCopy: a | b' } }, on, 120);
    expect(formatInflowBench(failed)).toContain('| repair | full copy did not finish: fullCopy: a \\| b | none needed |');
  });
});
