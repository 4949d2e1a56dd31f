/**
 * The seam between the harness and a system under test: one call per model event, an observation, and the
 * mapping of a typed refusal to the model's refusal codes. The in-process cluster (`adapter.ts`) is the
 * first system behind it; later ones are site processes and external drivers.
 */
import type { ModelEvent } from '../model/events.ts';
import type { Observation } from '../model/observation.ts';
import type { ModelParams } from '../model/params.ts';
import type { RefusalCode } from '../model/semantics.ts';

/** What the implementation did with one event. */
export type StepOutcome = { accepted: true } | { accepted: false; code: RefusalCode | 'RemoteAhead' | 'Other'; message: string };

/** A system the harness can drive: one call per model event, and an observation. */
export interface SystemUnderTest {
  /** Performs the event; a refusal is returned, not thrown. Anything else thrown is a crash. */
  apply(event: ModelEvent): StepOutcome;
  observe(): Observation;
  close(): void;
}

/** Builds a fresh system under test for one path or walk. */
export type SutFactory = (params: ModelParams) => SystemUnderTest;

/**
 * A system whose steps take time in the harness's own thread (site nodes exchanging frames on an in-memory
 * network, `memory-deployment.ts`): the same seam as {@link SystemUnderTest}, each call a promise. The
 * lockstep loop awaits each one (`runPathAsync`); nothing runs in another thread or process, so a mutation
 * run sees every line it reaches.
 */
export interface AsyncSystemUnderTest {
  /** Performs the event; a refusal resolves, not rejects. Any rejection is a crash. */
  apply(event: ModelEvent): Promise<StepOutcome>;
  observe(): Promise<Observation>;
  close(): Promise<void>;
}

/** Builds a fresh asynchronous system under test for one path. */
export type AsyncSutFactory = (params: ModelParams) => Promise<AsyncSystemUnderTest>;

const refusalCodes: readonly string[] = ['NotWritable', 'OutOfRange', 'SiteFailed', 'SiteUp', 'LinkState', 'NotAllowed', 'RemoteAhead'];

/** Maps a typed error of the implementation to a refusal code: its `code`, or its class name without `Error`. */
export function refusalCodeOf(error: unknown): StepOutcome & { accepted: false } {
  const message = error instanceof Error ? error.message : String(error);
  const named = error instanceof Error ? error.name.replace(/Error$/, '') : '';
  const code = typeof (error as { code?: unknown })?.code === 'string' ? (error as { code: string }).code : named;
  const normal = [code, named].find((candidate) => refusalCodes.includes(candidate));
  return { accepted: false, code: (normal ?? 'Other') as RefusalCode | 'RemoteAhead' | 'Other', message };
}

/**
 * A refusal a system answered with a code and a message (a driver's answer, a deployment's): the model's
 * code, or `Other` for a code of the implementation's own, whose name the message then keeps.
 */
export function refusalOfAnswer(code: string, message: string): StepOutcome & { accepted: false } {
  const outcome = refusalCodeOf(Object.assign(new Error(message), { code }));
  return outcome.code === 'Other' ? { ...outcome, message: `${code}: ${message}` } : outcome;
}

/** Whether an error is one of the implementation's typed refusals (anything else is a crash). */
export function isRefusal(error: unknown): boolean {
  return refusalCodeOf(error).code !== 'Other';
}

