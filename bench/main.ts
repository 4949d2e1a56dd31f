/**
 * `npm run bench`: host write throughput at site 1 in normal mode (synchronous copy to site 2, both
 * journals, in memory, 4 KiB writes; site 3 pulls and restores every `pullEveryWrites` writes, so journals
 * are trimmed and never fill), beside its floor measured in the same run: the same bytes copied the same
 * number of times with plain `Buffer.copy` (one copy into each journal and each volume of the three sites).
 * Then a soak: many writes with the resident set size sampled at intervals, to show memory stays flat
 * (bounded by the volumes and the journal limits). Then the conformance harness: lockstep steps per second
 * and the time to full transition coverage beside the model alone (`bench/harness.ts`). Then the interleavings
 * fast-check's scheduler explores per second (conformance/interleavings.ts), with P1-P7 checked on the
 * implementation's bytes after every step, with memory and with file storage. Then the
 * deployment: fio against site 1 of three site processes beside `nbdkit memory` (`bench/deployment.ts`).
 * Then journal inflow control off and on under the same load, site 3 made slower than the host
 * (`bench/inflow.ts`). Writes `reports/bench.json`.
 *
 *     npm run bench                                   every part
 *     npm run bench -- --only deployment [--profile]  one part (repeat --only for more): throughput, harness,
 *                                                     interleavings, deployment, inflow; --profile runs the
 *                                                     sites under --cpu-prof
 *     npm run bench -- --only deployment --cli F      the sites run another build of `threesite` (a candidate)
 *     npm run bench -- --only inflow [--inflow-delay-ms N]  inflow control off, then on with delay N ms (default 400)
 *
 * The arguments are parsed in `bench/arguments.ts`.
 * With `--only`, the parts run replace their keys in an existing `reports/bench.json` and keep the others.
 *
 * A script, not a test: figures depend on the machine. Limits are named here; no timers drive the system.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Cluster, type ClusterConfig } from '../impl/cluster/cluster.ts';
import { benchDeployment, DeploymentBenchError, formatDeploymentBench } from './deployment.ts';
import { exploreInterleavings } from '../conformance/interleavings.ts';
import { benchHarness } from './harness.ts';
import { benchInflow, formatInflowBench } from './inflow.ts';
import { BenchUsageError, parseBenchArguments, type BenchArguments, type BenchPart } from './arguments.ts';

/** Bytes of one host write. */
const writeBytes = 4096;
/** Volumes of the consistency group, and their size: the working set the writes cycle through. */
const volumeCount = 4;
const volumeBytes = 16 * 1024 * 1024;
/** Each journal's capacity (entries and bytes). */
const journalEntriesMax = 8192;
const journalBytesMax = journalEntriesMax * (writeBytes + 64);
/** Site 3 pulls and restores after this many writes (the pull batch is the same), so journals never fill. */
const pullEveryWrites = 512;
/** Writes of the warm-up and of each timed round; rounds alternate system and floor. */
const warmupWrites = 50_000;
const roundWrites = 200_000;
const rounds = 5;
/** The soak: writes in total (or until `soakSecondsMax`), sampling RSS every `soakSampleWrites`. */
const soakWrites = 1_000_000;
const soakSecondsMax = 40;
const soakSampleWrites = 50_000;
/** Copies of each write's bytes on the write path: site 1, 2, 3 journals and volumes. */
const copiesPerWrite = 6;

const config: ClusterConfig = {
  volumeCount,
  volumeBytes,
  blockBytes: writeBytes,
  journal: { entriesMax: journalEntriesMax, bytesMax: journalBytesMax },
  pullBatchEntriesMax: pullEveryWrites,
  pullIntervalTicks: 1,
  restoreIntervalTicks: 1,
  fencePolicy: 'keepWriting',
  storage: { kind: 'memory' },
};

const blocksPerVolume = volumeBytes / writeBytes;
const payloads = Array.from({ length: 16 }, (_, i) => new Uint8Array(writeBytes).fill(i + 1));

/**
 * Runs `count` host writes cycling over every block of every volume; site 3 pulls and restores on schedule
 * (or, with `withRemote` false, site 3 is failed and only the synchronous path runs).
 */
function systemWrites(cluster: Cluster, start: number, count: number, withRemote = true): void {
  for (let i = start; i < start + count; i += 1) {
    const block = i % (volumeCount * blocksPerVolume);
    cluster.hostWrite(1, block % volumeCount, Math.floor(block / volumeCount) * writeBytes, payloads[i & 15] as Uint8Array);
    if (withRemote && (i + 1) % pullEveryWrites === 0) {
      cluster.pullJournal();
      cluster.restoreJournal();
    }
  }
}

/** The floor: the same bytes copied `copiesPerWrite` times with Buffer.copy into preallocated memory of the same size. */
function floorWrites(targets: Buffer[], start: number, count: number, copies = copiesPerWrite): void {
  const span = volumeCount * volumeBytes;
  for (let i = start; i < start + count; i += 1) {
    const source = Buffer.from((payloads[i & 15] as Uint8Array).buffer);
    const at = (i * writeBytes) % span;
    for (let c = 0; c < copies; c += 1) source.copy(targets[c] as Buffer, at);
  }
}

/** The synchronous path alone (site 3 failed: journals of sites 1 and 2 trimmed by overflow), beside 4 copies. */
function syncOnly(targets: Buffer[]): { system: number; floor: number } {
  const cluster = Cluster.create(config);
  cluster.failSite(3);
  systemWrites(cluster, 0, warmupWrites, false);
  let system = 0;
  let floor = 0;
  for (let round = 0; round < rounds; round += 1) {
    let t0 = performance.now();
    systemWrites(cluster, warmupWrites + round * roundWrites, roundWrites, false);
    system = Math.max(system, rate(roundWrites, performance.now() - t0));
    t0 = performance.now();
    floorWrites(targets, round * roundWrites, roundWrites, 4);
    floor = Math.max(floor, rate(roundWrites, performance.now() - t0));
  }
  cluster.close();
  return { system, floor };
}

function rate(count: number, ms: number): number {
  return Math.round((count / ms) * 1000);
}

function rssMiB(): number {
  return Math.round((process.memoryUsage().rss / (1024 * 1024)) * 10) / 10;
}

/** Host write throughput of the in-process cluster, the soak and the sync path alone: its report keys. */
function benchThroughput(): Record<string, unknown> {
  const cluster = Cluster.create(config);
  const targets = Array.from({ length: copiesPerWrite }, () => Buffer.alloc(volumeCount * volumeBytes));
  let written = 0;
  systemWrites(cluster, written, warmupWrites);
  written += warmupWrites;
  floorWrites(targets, 0, warmupWrites);

  const systemRates: number[] = [];
  const floorRates: number[] = [];
  for (let round = 0; round < rounds; round += 1) {
    let t0 = performance.now();
    systemWrites(cluster, written, roundWrites);
    systemRates.push(rate(roundWrites, performance.now() - t0));
    written += roundWrites;
    t0 = performance.now();
    floorWrites(targets, round * roundWrites, roundWrites);
    floorRates.push(rate(roundWrites, performance.now() - t0));
  }
  const best = (list: number[]): number => Math.max(...list);
  const system = best(systemRates);
  const floor = best(floorRates);
  const o = cluster.observe();
  const consistent = o.sites[1].volumeDigest === o.sites[2].volumeDigest && o.syncPair.state === 'inSync';

  // The soak: RSS sampled every soakSampleWrites writes; it must stay flat once volumes are fully written.
  const samples: { writes: number; rssMiB: number }[] = [{ writes: 0, rssMiB: rssMiB() }];
  const soakStart = performance.now();
  let soaked = 0;
  while (soaked < soakWrites && performance.now() - soakStart < soakSecondsMax * 1000) {
    systemWrites(cluster, written, soakSampleWrites);
    written += soakSampleWrites;
    soaked += soakSampleWrites;
    samples.push({ writes: soaked, rssMiB: rssMiB() });
  }
  const soakSeconds = (performance.now() - soakStart) / 1000;
  const settled = samples.slice(Math.floor(samples.length / 2)).map((s) => s.rssMiB);
  const drift = Math.max(...settled) - Math.min(...settled);
  const end = cluster.observe();
  const endConsistent = end.sites[1].volumeDigest === end.sites[2].volumeDigest;
  const peakRssMiB = Math.round((process.resourceUsage().maxRSS / 1024) * 10) / 10;
  cluster.close();
  // Last, so that the peak RSS and the soak above saw one cluster only.
  const sync = syncOnly(targets);
  const boundMiB = Math.round(((3 * volumeCount * volumeBytes + 3 * journalBytesMax + copiesPerWrite * volumeCount * volumeBytes) / (1024 * 1024)) * 10) / 10;

  const lines = [
    `host write throughput, ${writeBytes}-byte writes, memory backend, sync to site 2, pull+restore every ${pullEveryWrites} writes`,
    '',
    '| path | writes/s (best round) | rounds |',
    '| --- | ---: | --- |',
    `| cluster.hostWrite | ${system.toLocaleString('en')} | ${systemRates.join(', ')} |`,
    `| floor: ${copiesPerWrite} x Buffer.copy | ${floor.toLocaleString('en')} | ${floorRates.join(', ')} |`,
    `| ratio | ${(system / floor).toFixed(3)} | aim >= 0.3 |`,
    `| sync path only (site 3 failed) | ${sync.system.toLocaleString('en')} | |`,
    `| floor: 4 x Buffer.copy | ${sync.floor.toLocaleString('en')} | |`,
    `| ratio, sync path only | ${(sync.system / sync.floor).toFixed(3)} | |`,
    '',
    `sync pair ${o.syncPair.state}, sites 1 and 2 equal: ${consistent && endConsistent}; site 3 lag ${end.sites[3].lag} after the soak`,
    `peak RSS ${peakRssMiB} MiB (bound: volumes + journals + floor buffers = ${boundMiB} MiB)`,
    `soak: ${soaked.toLocaleString('en')} writes in ${soakSeconds.toFixed(1)} s (${rate(soaked, soakSeconds * 1000).toLocaleString('en')}/s), ` +
      `RSS second half ${Math.min(...settled)}..${Math.max(...settled)} MiB (drift ${drift.toFixed(1)} MiB)`,
    `RSS samples (writes: MiB): ${samples.map((s) => `${s.writes}:${s.rssMiB}`).join(' ')}`,
  ];
  console.log(lines.join('\n'));

  const report = {
    writeBytes,
    volumeCount,
    volumeBytes,
    journal: config.journal,
    pullEveryWrites,
    copiesPerWrite,
    rounds: { system: systemRates, floor: floorRates },
    writesPerSecond: { system, floor },
    ratio: Math.round((system / floor) * 1000) / 1000,
    syncPathOnly: { ...sync, ratio: Math.round((sync.system / sync.floor) * 1000) / 1000 },
    consistent: consistent && endConsistent,
    peakRssMiB,
    memoryBoundMiB: boundMiB,
    soak: { writes: soaked, seconds: Math.round(soakSeconds * 10) / 10, samples, driftMiB: Math.round(drift * 10) / 10 },
    node: process.version,
  };
  return report;
}

/** The conformance harness, beside the model alone, in the same run: its report key. */
function harnessPart(): Record<string, unknown> {
  const harness = benchHarness();
  console.log(
    [
      '',
      `conformance harness (bounds: ${harness.params.volumeCount} volumes, ${harness.params.writesMax} writes, ${harness.params.faultsMax} fault, journal ${harness.params.journalEntriesMax})`,
      '',
      '| measure | figure |',
      '| --- | ---: |',
      `| model alone, xstate getAdjacencyMap: us per transition | ${harness.model.microsecondsPerTransition} |`,
      `| model alone, our explorer (P1-P7 checked): us per transition | ${harness.explorer.microsecondsPerTransition} |`,
      `| lockstep model + implementation: steps/s | ${harness.lockstep.stepsPerSecond.toLocaleString('en')} |`,
      `| lockstep: us per step | ${harness.lockstep.microsecondsPerStep} |`,
      `| lockstep / getAdjacencyMap transition | ${harness.lockstepToModelRatio} (aim <= 3) |`,
      `| lockstep / explorer transition | ${harness.lockstepToExplorerRatio} |`,
      `| time to full transition coverage (${harness.coverage.reachable} transitions, planning included) | ${(harness.coverage.msToFullTransitionCoverage / 1000).toFixed(1)} s |`,
    ].join('\n'),
  );
  return { harness };
}

/** Interleavings explored per storage kind (fixed seed: the same schedules every run). */
const interleavingRuns = { memory: 300, file: 60 } as const;
const interleavingSeed = 20261202;

/** fast-check's scheduler over the implementation: interleavings per second, per storage kind. */
async function interleavingsPart(): Promise<Record<string, unknown>> {
  const rows: Record<string, unknown> = {};
  const lines = ['', 'interleavings (fast-check scheduler: 2 writers, 6 link deliverers, site 3, a crash and the failover story)', '', '| storage | runs | interleavings/s | property checks/s | deliveries/s | checks per run |', '| --- | ---: | ---: | ---: | ---: | ---: |'];
  for (const storage of ['memory', 'file'] as const) {
    const totals = await exploreInterleavings({ runs: interleavingRuns[storage], seed: interleavingSeed, storage });
    const perSecond = (n: number): number => Math.round((n * 1000) / totals.ms);
    rows[storage] = { ...totals, interleavingsPerSecond: perSecond(totals.runs), checksPerSecond: perSecond(totals.checks), deliveriesPerSecond: perSecond(totals.deliveries) };
    lines.push(`| ${storage} | ${totals.runs} | ${perSecond(totals.runs)} | ${perSecond(totals.checks).toLocaleString('en')} | ${perSecond(totals.deliveries).toLocaleString('en')} | ${(totals.checks / totals.runs).toFixed(1)} |`);
  }
  console.log(lines.join('\n'));
  return { interleavings: { seed: interleavingSeed, ...rows } };
}

/** The deployment against nbdkit: its report key. */
async function deploymentPart(profile: boolean, cli: string | undefined): Promise<Record<string, unknown>> {
  const deployment = await benchDeployment({ profile, progress: (line) => process.stderr.write(`${line}\n`), ...(cli === undefined ? {} : { cli }) });
  console.log(`\n${formatDeploymentBench(deployment)}`);
  return { deployment };
}

/** Journal inflow control off and on (issue 15): its report key. */
async function inflowPart(delayMs: number): Promise<Record<string, unknown>> {
  const inflow = await benchInflow({ delayMs, progress: (line) => process.stderr.write(`${line}\n`) });
  console.log(`\n${formatInflowBench(inflow)}`);
  return { inflow };
}

async function main(): Promise<number> {
  let values: BenchArguments;
  try {
    values = parseBenchArguments(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof BenchUsageError)) throw error;
    console.error(error.message);
    return 2;
  }
  const file = path.join('reports', 'bench.json');
  // One part alone keeps the other parts' last figures.
  let report: Record<string, unknown> = {};
  if (values.only && fs.existsSync(file)) report = JSON.parse(fs.readFileSync(file, 'utf8')) as Record<string, unknown>;
  const write = (): void => {
    fs.mkdirSync('reports', { recursive: true });
    fs.writeFileSync(file, `${JSON.stringify(report, null, 2)}\n`);
  };
  const run: Record<BenchPart, () => Promise<Record<string, unknown>> | Record<string, unknown>> = {
    throughput: benchThroughput,
    harness: harnessPart,
    interleavings: interleavingsPart,
    deployment: () => deploymentPart(values.profile, values.cli),
    inflow: () => inflowPart(values.inflowDelayMs),
  };
  for (const part of values.parts) {
    try {
      Object.assign(report, await run[part]());
    } catch (error) {
      if (!(error instanceof DeploymentBenchError)) throw error;
      console.error(error.message);
      write();
      return 1;
    }
  }
  write();
  return 0;
}

process.exitCode = await main();
