/**
 * Random walks with fast-check: long sequences of events, run on model and implementation in lockstep.
 *
 * A walk is a sequence of *choices* (small records of integers). Each choice is decoded against the model's
 * current state into an event: usually one the model accepts, with generated arguments (which host, volume,
 * block and data byte; which site fails; which link is cut), sometimes one it refuses (the implementation
 * must refuse it the same way). Because the choices are plain integers, fast-check shrinks a failing walk to
 * a short one, and `seed` + `path` replay it exactly.
 */
import fc from 'fast-check';
import type { SnapshotFrom } from 'xstate';
import { candidateEvents, formatEvent, isByteRangeWrite, refusalProbeEvents, type ModelEvent } from '../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../model/machine.ts';
import type { ModelParams } from '../model/params.ts';
import type { SystemUnderTest } from './sut.ts';
import type { CoverageTracker } from './coverage.ts';
import { Lockstep, type Divergence } from './lockstep.ts';

type Snapshot = SnapshotFrom<ReplicationMachine>;

/** Limits of random walks. */
export const walkLimits = {
  /** Events in one walk. */
  walkStepsMax: 200,
  /** Walks in one run. */
  walkRunsMax: 100_000,
};

/** One choice of a walk. */
export interface Choice {
  /** Which candidate to take (modulo the number of candidates). */
  pick: number;
  /** 0..9: 0 takes a refused event, anything else an accepted one. */
  kind: number;
  /** Data byte of a host write. */
  data: number;
}

/** The arbitrary of a walk of at most `steps` choices. */
export function walkArbitrary(steps: number): fc.Arbitrary<Choice[]> {
  if (steps < 1 || steps > walkLimits.walkStepsMax) throw new RangeError(`walk length ${steps} outside 1..${walkLimits.walkStepsMax}`);
  const choice = fc.record({ pick: fc.nat({ max: 1_000 }), kind: fc.integer({ min: 0, max: 9 }), data: fc.integer({ min: 1, max: 255 }) });
  // size 'max': lengths spread up to `steps` (fast-check's default size keeps arrays near 10 items).
  return fc.array(choice, { minLength: 1, maxLength: steps, size: 'max' });
}

/**
 * A byte range inside a volume drawn from `range`: it starts at any byte and ends at any later byte up to
 * the volume's end, so it may begin and end mid-block and span blocks.
 */
export function byteRangeOf(params: ModelParams, range: number): { block: number; start: number; length: number } {
  const volumeBytes = params.blocksPerVolume * params.blockBytes;
  const offset = range % volumeBytes;
  const length = 1 + (Math.floor(range / volumeBytes) % (volumeBytes - offset));
  return { block: Math.floor(offset / params.blockBytes), start: offset % params.blockBytes, length };
}

/**
 * Every event worth trying, unbounded by the exploration's write and fault counters, and the refusal
 * probes not among them. With byte writes the byte-range candidates take a range drawn from the choice
 * (from its pick and data byte, so that a walk's random choices are the same with and without byte writes)
 * instead of the explorer's fixed shapes.
 */
function candidates(params: ModelParams, snapshot: Snapshot, choice: Choice): ModelEvent[] {
  const events = candidateEvents({ ...params, writesMax: Number.MAX_SAFE_INTEGER, faultsMax: Number.MAX_SAFE_INTEGER }, { writes: 0, faults: 0 });
  const drawn = byteRangeOf(params, choice.pick * 256 + choice.data);
  const tried = new Set(events.map(formatEvent));
  // Writes outside a volume only from the primary's host: from the other host, two conditions refuse at
  // once, and which one a system names first is its own business (an NBD export checks read-only first).
  const probes = refusalProbeEvents(params, choice.data).filter(
    (event) => !tried.has(formatEvent(event)) && (event.type !== 'HOST_WRITE' || event.host === snapshot.context.primary),
  );
  return [
    ...events.map((event) =>
      event.type !== 'HOST_WRITE' ? event : isByteRangeWrite(event) ? { ...event, ...drawn, data: choice.data } : { ...event, data: choice.data },
    ),
    ...probes,
  ];
}

/** Decodes one choice into an event, given the model's state. */
export function decodeChoice(params: ModelParams, snapshot: Snapshot, choice: Choice): ModelEvent {
  const all = candidates(params, snapshot, choice);
  const accepted = all.filter((event) => replicationMachine.getTransitionData(snapshot, event).length > 0);
  const refused = all.filter((event) => !accepted.includes(event));
  const pool = choice.kind === 0 || accepted.length === 0 ? refused : accepted;
  return pool[choice.pick % pool.length]!;
}

/** The result of one walk. */
export interface WalkRun {
  events: ModelEvent[];
  divergence: Divergence | null;
}

/** Runs one walk in lockstep; stops at the first divergence. */
export function runWalk(
  params: ModelParams,
  choices: readonly Choice[],
  makeSut: (params: ModelParams) => SystemUnderTest,
  coverage: CoverageTracker | null = null,
): WalkRun {
  const sut = makeSut(params);
  const events: ModelEvent[] = [];
  try {
    const lockstep = new Lockstep(params, sut, coverage);
    const initial = lockstep.start();
    if (initial) return { events, divergence: initial };
    for (const choice of choices) {
      const event = decodeChoice(params, lockstep.model, choice);
      events.push(event);
      const divergence = lockstep.step(event);
      if (divergence) return { events, divergence };
    }
    return { events, divergence: null };
  } finally {
    sut.close();
  }
}

/** What a batch of walks found. */
export interface WalksResult {
  runs: number;
  steps: number;
  /** The shrunk failing walk, if any. */
  failure: null | {
    seed: number;
    /** fast-check's replay path: `--replay SEED:PATH`. */
    path: string;
    shrinks: number;
    events: string[];
    divergence: Divergence;
  };
}

/** Options of a batch of walks. */
export interface WalksOptions {
  seed: number;
  runs: number;
  steps: number;
  /** Replay one counterexample: fast-check's path from a previous failure. */
  path?: string;
  coverage?: CoverageTracker | null;
}

/** Runs `runs` random walks (fast-check property); shrinks and reports the first failure. */
export function runWalks(params: ModelParams, makeSut: (params: ModelParams) => SystemUnderTest, options: WalksOptions): WalksResult {
  if (options.runs < 1 || options.runs > walkLimits.walkRunsMax) throw new RangeError(`walk runs ${options.runs} outside 1..${walkLimits.walkRunsMax}`);
  let steps = 0;
  let runs = 0;
  let shrinking = false;
  const property = fc.property(walkArbitrary(options.steps), (choices) => {
    const run = runWalk(params, choices, makeSut, shrinking ? null : (options.coverage ?? null));
    if (!shrinking) {
      runs++;
      steps += run.events.length;
    }
    if (run.divergence) shrinking = true;
    return run.divergence === null;
  });
  const details = fc.check(property, {
    seed: options.seed,
    numRuns: options.path ? 1 : options.runs,
    ...(options.path ? { path: options.path } : {}),
  });
  if (!details.failed || !details.counterexample) return { runs, steps, failure: null };
  const [choices] = details.counterexample;
  const replay = runWalk(params, choices, makeSut);
  if (!replay.divergence) {
    throw new Error(`walk seed ${details.seed} path ${details.counterexamplePath}: failed in fast-check but passed on replay (nondeterminism)`);
  }
  return {
    runs,
    steps,
    failure: {
      seed: details.seed,
      path: details.counterexamplePath ?? '',
      shrinks: details.numShrinks,
      events: replay.events.map(formatEvent),
      divergence: replay.divergence,
    },
  };
}
