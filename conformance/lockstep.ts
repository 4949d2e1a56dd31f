/**
 * The lockstep loop: model and implementation take the same event; the harness checks that both accept it
 * (or both refuse it, for the same reason) and that their observations agree field by field, after every
 * step. The model side runs the statechart's own pure `transition` function.
 */
import { initialTransition, transition, type SnapshotFrom } from 'xstate';
import { formatEvent, type ModelEvent } from '../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../model/machine.ts';
import type { Observation } from '../model/observation.ts';
import { observe } from '../model/observe.ts';
import type { ModelParams } from '../model/params.ts';
import { checkMirror } from '../model/properties.ts';
import { check, failoverRefusedByJudge } from '../model/semantics.ts';
import type { AsyncSutFactory, AsyncSystemUnderTest, StepOutcome, SystemUnderTest } from './sut.ts';
import { CoverageTracker } from './coverage.ts';
import { diffObservations, formatDifference, type FieldDifference } from './observation-diff.ts';
import { abstractKey } from './paths.ts';

type Snapshot = SnapshotFrom<ReplicationMachine>;

/** What the model expects of one event: accepted, or refused with a code. */
export type ExpectedOutcome = { accepted: true } | { accepted: false; code: string; reason: string };

/** The model's verdict on an event in a state, in the implementation's terms. */
export function expectedOutcome(snapshot: Snapshot, event: ModelEvent): ExpectedOutcome {
  const refusal = check(snapshot.context, event);
  if (refusal) return { accepted: false, code: refusal.code, reason: refusal.reason };
  if (failoverRefusedByJudge(snapshot.context, event)) {
    return { accepted: false, code: 'RemoteAhead', reason: 'site 3 holds updates site 2 lacks (judge, claim 18)' };
  }
  return { accepted: true };
}

/** A step where the implementation did not do what the model says. */
export interface Divergence {
  /** Index (0-based) of the event that diverged. */
  step: number;
  event: string;
  /** The path's events up to and including the diverging one. */
  path: string[];
  /** `chart`: the statechart takes a transition where the model's semantics refuse the event, or none where they accept it. */
  kind: 'outcome' | 'observation' | 'crash' | 'chart';
  expected: Observation | ExpectedOutcome;
  actual: Observation | StepOutcome | { error: string };
  differences: FieldDifference[];
  /** One line per difference, readable in a terminal. */
  summary: string;
}

/** The result of driving one path. */
export interface PathRun {
  steps: number;
  divergence: Divergence | null;
  /** The observations the model expected after each step (for fixtures and reports). */
  expected: Observation[];
}

/** What one call of the system under test gave: its value, or the text of what it threw (a crash). */
export type Attempt<T> = { value: T } | { thrown: string };

function thrownText(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** Calls the system under test, catching what it throws. */
function attempt<T>(call: () => T): Attempt<T> {
  try {
    return { value: call() };
  } catch (error) {
    return { thrown: thrownText(error) };
  }
}

/** Calls an asynchronous system under test, catching what it throws or rejects with. */
async function attemptAsync<T>(call: () => Promise<T>): Promise<Attempt<T>> {
  try {
    return { value: await call() };
  } catch (error) {
    return { thrown: thrownText(error) };
  }
}

/** An event the model has judged, waiting for the system under test's answer. */
export interface PendingStep {
  /** 0-based index of the event in the path. */
  index: number;
  event: ModelEvent;
  expected: ExpectedOutcome;
}

/**
 * The lockstep loop's model side and its comparisons, apart from the calls of the system under test `S`:
 * {@link Lockstep} makes those calls synchronously, {@link AsyncLockstep} awaits them. Per event: {@link expect}
 * (the model's verdict), {@link settle} (the implementation's outcome against it; the model then takes the
 * step), {@link compare} (the observations after it).
 */
export class LockstepBase<S> {
  private snapshot: Snapshot;
  private readonly events: string[] = [];
  readonly expected: Observation[] = [];

  /** `machine`: the chart that is the expectation (default the specification; model-mutant tests pass mutants). */
  constructor(
    readonly params: ModelParams,
    readonly sut: S,
    private readonly coverage: CoverageTracker | null = null,
    private readonly machine: ReplicationMachine = replicationMachine,
  ) {
    [this.snapshot] = initialTransition(machine, params);
    coverage?.startPath(this.snapshot);
  }

  /** The model's current snapshot. */
  get model(): Snapshot {
    return this.snapshot;
  }

  /** Takes the next event of the path: records it and says what the model expects of it. */
  expect(event: ModelEvent): PendingStep {
    const index = this.events.length;
    this.events.push(formatEvent(event));
    return { index, event, expected: expectedOutcome(this.snapshot, event) };
  }

  /**
   * The implementation's outcome of a pending step against the model's: a divergence (a crash, another
   * outcome, a chart that disagrees with its semantics), or null once the model has taken the step too.
   */
  settle(step: PendingStep, outcome: Attempt<StepOutcome>): Divergence | null {
    const { index, event, expected } = step;
    if ('thrown' in outcome) return this.divergence(index, 'crash', expected, { error: outcome.thrown }, [], `crash: ${outcome.thrown}`);
    const actual = outcome.value;
    if (expected.accepted !== actual.accepted || (!expected.accepted && !actual.accepted && expected.code !== actual.code)) {
      const summary = expected.accepted
        ? `model accepts, implementation refused with ${(actual as { code: string }).code}: ${(actual as { message: string }).message}`
        : actual.accepted
          ? `model refuses (${expected.code}: ${expected.reason}), implementation accepted`
          : `model refuses with ${expected.code} (${expected.reason}), implementation with ${actual.code}: ${actual.message}`;
      return this.divergence(index, 'outcome', expected, actual, [], summary);
    }
    // The chart must agree with its own semantics: an accepted event takes a root transition, a refused one
    // none (a promotion the judge refuses takes the variant that records the judgement).
    const chartTakes = this.machine.getTransitionData(this.snapshot, event).length > 0;
    const chartShould = expected.accepted || expected.code === 'RemoteAhead';
    if (chartTakes !== chartShould) {
      const summary = chartShould
        ? `the model accepts ${formatEvent(event)} but no transition of the chart is enabled for it`
        : `the model refuses ${formatEvent(event)} (${(expected as { code: string }).code}) but the chart takes a transition for it`;
      return this.divergence(index, 'chart', expected, actual, [], summary);
    }
    const before = this.snapshot;
    [this.snapshot] = transition(this.machine, this.snapshot, event);
    this.coverage?.recordStep(before, event, this.snapshot, abstractKey(before), abstractKey(this.snapshot));
    // The regions move by rules of their own (model/regions.ts): after every step they must show what the
    // context says, or the chart disagrees with its semantics.
    const mirror = checkMirror(this.snapshot.context, this.snapshot.value);
    if (mirror.length > 0) {
      return this.divergence(index, 'chart', expected, actual, [], `after ${formatEvent(event)} the chart disagrees with its semantics: ${mirror.map((v) => v.message).join('; ')}`);
    }
    return null;
  }

  /** Compares the implementation's observation with the model's, after `step` (null: the initial state). */
  compare(step: PendingStep | null, observation: Attempt<Observation>): Divergence | null {
    const index = step?.index ?? -1;
    const expected = observe(this.snapshot.context);
    this.expected.push(expected);
    if ('thrown' in observation) return this.divergence(index, 'crash', expected, { error: observation.thrown }, [], `observe() crashed: ${observation.thrown}`);
    const differences = diffObservations(expected, observation.value);
    if (differences.length === 0) return null;
    const label = step ? formatEvent(step.event) : 'initial state';
    return this.divergence(index, 'observation', expected, observation.value, differences, `after ${label}:\n  ${differences.map(formatDifference).join('\n  ')}`);
  }

  private divergence(
    step: number,
    kind: Divergence['kind'],
    expected: Divergence['expected'],
    actual: Divergence['actual'],
    differences: FieldDifference[],
    summary: string,
  ): Divergence {
    return { step, event: this.events[step] ?? '(initial)', path: [...this.events], kind, expected, actual, differences, summary };
  }
}

/** Drives model and implementation side by side, one event at a time. */
export class Lockstep extends LockstepBase<SystemUnderTest> {
  /** Compares the initial observations; returns a divergence or null. */
  start(): Divergence | null {
    return this.compare(null, attempt(() => this.sut.observe()));
  }

  /** Takes one event on both sides; returns a divergence or null. */
  step(event: ModelEvent): Divergence | null {
    const step = this.expect(event);
    return this.settle(step, attempt(() => this.sut.apply(event))) ?? this.compare(step, attempt(() => this.sut.observe()));
  }
}

/** {@link Lockstep} over a system whose calls are promises: the same comparisons, each call awaited. */
export class AsyncLockstep extends LockstepBase<AsyncSystemUnderTest> {
  /** Compares the initial observations; resolves with a divergence or null. */
  async start(): Promise<Divergence | null> {
    return this.compare(null, await attemptAsync(() => this.sut.observe()));
  }

  /** Takes one event on both sides; resolves with a divergence or null. */
  async step(event: ModelEvent): Promise<Divergence | null> {
    const step = this.expect(event);
    return this.settle(step, await attemptAsync(() => this.sut.apply(event))) ?? this.compare(step, await attemptAsync(() => this.sut.observe()));
  }
}

/** Drives one whole path; stops at the first divergence. */
export function runPath(
  params: ModelParams,
  events: readonly ModelEvent[],
  makeSut: (params: ModelParams) => SystemUnderTest,
  coverage: CoverageTracker | null = null,
  machine: ReplicationMachine = replicationMachine,
): PathRun {
  const sut = makeSut(params);
  try {
    const lockstep = new Lockstep(params, sut, coverage, machine);
    let divergence = lockstep.start();
    let steps = 0;
    for (const event of events) {
      if (divergence) break;
      steps += 1;
      divergence = lockstep.step(event);
    }
    return { steps, divergence, expected: lockstep.expected };
  } finally {
    sut.close();
  }
}

/** {@link runPath} on an asynchronous system under test (`AsyncSystemUnderTest`), each call awaited. */
export async function runPathAsync(
  params: ModelParams,
  events: readonly ModelEvent[],
  makeSut: AsyncSutFactory,
  coverage: CoverageTracker | null = null,
  machine: ReplicationMachine = replicationMachine,
): Promise<PathRun> {
  const sut = await makeSut(params);
  try {
    const lockstep = new AsyncLockstep(params, sut, coverage, machine);
    let divergence = await lockstep.start();
    let steps = 0;
    for (const event of events) {
      if (divergence) break;
      steps += 1;
      divergence = await lockstep.step(event);
    }
    return { steps, divergence, expected: lockstep.expected };
  } finally {
    await sut.close();
  }
}
