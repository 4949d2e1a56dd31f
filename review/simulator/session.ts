/**
 * A simulation of the specification: the statechart of `model/machine.ts` stepped with xstate's own pure
 * `transition`, one event at a time, keeping every snapshot so a reviewer can step back and a trace can be
 * replayed. It runs in the review page (bundled by esbuild) and in Node (the page builder replays
 * counterexamples with it to find which transitions failed), so both see the same machine.
 */
import { initialTransition, transition, type AnyTransitionDefinition, type SnapshotFrom } from 'xstate';
import { candidateEvents, formatEvent, type ModelEvent } from '../../model/events.ts';
import { replicationMachine, type ReplicationMachine } from '../../model/machine.ts';
import { validateParams, type ModelParams } from '../../model/params.ts';
import { check } from '../../model/semantics.ts';
import type { ModelContext } from '../../model/state.ts';
import { systemRegion, transitionDefinitions } from '../../model/traceability.ts';

/** A snapshot of the machine. */
export type Snapshot = SnapshotFrom<ReplicationMachine>;

/** One step taken: the event, the snapshot after it, the root variant and the region moves it took. */
export interface SimulatorStep {
  /** Null for the initial state. */
  event: ModelEvent | null;
  snapshot: Snapshot;
  /** The root transition variant taken (`EVENT#i`), null for the initial state. */
  variant: string | null;
  /** Region moves (`region.from -> to`) the step made. */
  moves: string[];
}

/** An event the simulator offers in the current state, enabled or refused with the model's reason. */
export interface CandidateEvent {
  event: ModelEvent;
  /** `formatEvent(event)`: also the button's `data-event`. */
  text: string;
  enabled: boolean;
  /** Why the model refuses it (from `check`), when it is not enabled. */
  refusal: string | null;
}

/** Thrown when an event is sent that the model does not accept in the current state. */
export class EventRefusedError extends Error {
  constructor(
    readonly event: string,
    readonly reason: string,
  ) {
    super(`the model refuses ${event}: ${reason}`);
    this.name = 'EventRefusedError';
  }
}

/** Host writes and faults the simulator offers without end (the model's bounds limit explorations, not a simulation). */
const unbounded = Number.MAX_SAFE_INTEGER;

/** The most steps one session keeps (each snapshot is small, but a limit keeps a runaway trace in check). */
export const sessionStepsMax = 10_000;

const rootIds = new Map<AnyTransitionDefinition, string>();
for (const info of transitionDefinitions(replicationMachine)) if (info.definition) rootIds.set(info.definition, info.id);

/** The state of every region, `{ site1: 'primary', ... }`. */
export function regionValues(snapshot: Snapshot): Record<string, string> {
  const { [systemRegion]: _system, ...regions } = snapshot.value as unknown as Record<string, string>;
  return regions;
}

/** A simulation: a history of steps from the initial state of the model with `params`. */
export class SimulatorSession {
  readonly params: ModelParams;
  private readonly steps: SimulatorStep[];

  constructor(params: Partial<ModelParams>) {
    this.params = validateParams(params);
    const [initial] = initialTransition(replicationMachine, this.params);
    this.steps = [{ event: null, snapshot: initial, variant: null, moves: [] }];
  }

  /** Every step so far, the initial state first. */
  get history(): readonly SimulatorStep[] {
    return this.steps;
  }

  /** The latest step. */
  get current(): SimulatorStep {
    return this.steps[this.steps.length - 1]!;
  }

  /** The context (abstract state) now. */
  get context(): ModelContext {
    return this.current.snapshot.context;
  }

  /** Every event worth offering at step `at` (default: now), enabled or refused. */
  candidates(at: number = this.steps.length - 1): CandidateEvent[] {
    const step = this.steps[at];
    if (!step) throw new RangeError(`no step ${at}: the session holds steps 0..${this.steps.length - 1}`);
    const { snapshot } = step;
    const context = snapshot.context;
    const bounds = { volumeCount: this.params.volumeCount, blocksPerVolume: this.params.blocksPerVolume, writesMax: unbounded, faultsMax: unbounded };
    return candidateEvents(bounds, context).map((event) => {
      const enabled = replicationMachine.getTransitionData(snapshot, event).length > 0;
      const refusal = enabled ? null : (check(context, event)?.reason ?? 'no transition of the chart is enabled');
      return { event, text: formatEvent(event), enabled, refusal };
    });
  }

  /** Takes `event`; throws {@link EventRefusedError} when the model does not accept it. */
  send(event: ModelEvent): SimulatorStep {
    if (this.steps.length >= sessionStepsMax) throw new EventRefusedError(formatEvent(event), `the session holds ${sessionStepsMax} steps`);
    const before = this.current.snapshot;
    const enabled = replicationMachine.getTransitionData(before, event);
    if (enabled.length === 0) {
      throw new EventRefusedError(formatEvent(event), check(before.context, event)?.reason ?? 'no transition of the chart is enabled');
    }
    const variant = enabled.map((definition) => rootIds.get(definition)).find((id) => id !== undefined) ?? null;
    const [after] = transition(replicationMachine, before, event);
    const from = regionValues(before);
    const to = regionValues(after);
    const moves = Object.keys(to)
      .filter((region) => from[region] !== to[region])
      .map((region) => `${region}.${from[region]} -> ${to[region]}`);
    const step: SimulatorStep = { event, snapshot: after, variant, moves };
    this.steps.push(step);
    return step;
  }

  /**
   * Keeps the first `length` steps and drops the later ones (a reviewer went back to an earlier step and
   * takes another event from there); `length` is at least 1, the initial state.
   */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 1 || length > this.steps.length) {
      throw new RangeError(`cannot keep ${length} steps of ${this.steps.length}`);
    }
    this.steps.length = length;
  }

  /** Undoes the latest step (never the initial state); returns false when there is nothing to undo. */
  back(): boolean {
    if (this.steps.length <= 1) return false;
    this.steps.pop();
    return true;
  }
}
