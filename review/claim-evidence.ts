/**
 * The evidence for each of the 40 claims, as the review page's table shows it: the transitions that
 * implement the claim (from the chart's `meta`, through `model/traceability.ts`), whether the exploration
 * took them, the generated paths of the latest conformance run that target them (a `transition` path's
 * target is a transition id; a `pair` path's target names two root variants), and the verdict:
 *
 * - **failed** when a divergence happened at a step that took one of the claim's transitions (found by
 *   replaying the divergence's events on the model), or a path targeting one of them failed;
 * - **not covered** when the run lists the claim as missing or took none of its transitions;
 * - **passed** otherwise; **no conformance run** when there is no report.
 */
import type { AnyStateMachine } from 'xstate';
import type { Claim } from '../model/claims.ts';
import { parseEvent } from '../model/events.ts';
import type { FencePolicy, ModelParams } from '../model/params.ts';
import { claimTraceability, type TransitionDefinitionInfo } from '../model/traceability.ts';
import type { ConformanceReport, PathOutcome } from './conformance-report.ts';
import { EventRefusedError, SimulatorSession } from './simulator/session.ts';

/** A claim's verdict from the latest conformance run. */
export type ClaimResult = 'passed' | 'failed' | 'not covered' | 'no conformance run';

/** Generated paths of one strategy that exercise a claim. */
export interface PathTally {
  total: number;
  passed: number;
  /** Targets of the failed ones. */
  failedTargets: string[];
}

/** One row of the claims table. */
export interface ClaimEvidence {
  claim: Claim;
  transitions: { id: string; event: string; guard: string | null; description: string; covered: boolean | null; explored: boolean }[];
  /** Paths whose target is one of the claim's transitions. */
  transitionPaths: PathTally & { targets: string[] };
  /** Pair paths one of whose two root variants implements the claim. */
  pairPaths: PathTally;
  /** Indices (into the report's divergences) of the divergences at a step that took one of the claim's transitions. */
  divergences: number[];
  result: ClaimResult;
}

/** What the model did at a divergence's diverging step. */
export interface DivergenceReplay {
  /** The root variant and region moves the model took at the diverging step (none when the model refuses it). */
  taken: string[];
  /** Why the divergence could not be replayed (a malformed event, or the model refusing an earlier step). */
  problem: string | null;
}

/** Replays each divergence's path on the model up to its diverging step. */
export function replayDivergences(report: ConformanceReport): DivergenceReplay[] {
  return report.divergences.map((divergence) => {
    const { fencePolicies: _policies, ...params } = report.params as Partial<ModelParams> & { fencePolicies?: unknown };
    const session = new SimulatorSession({ ...params, fencePolicy: divergence.fencePolicy as FencePolicy });
    const last = Math.min(divergence.step, divergence.path.length - 1);
    for (let i = 0; i <= last; i++) {
      let event;
      try {
        event = parseEvent(divergence.path[i]!);
      } catch (error) {
        return { taken: [], problem: (error as Error).message };
      }
      try {
        const step = session.send(event);
        if (i === last) return { taken: [...(step.variant ? [step.variant] : []), ...step.moves], problem: null };
      } catch (error) {
        if (!(error instanceof EventRefusedError)) throw error;
        // At the diverging step the implementation accepted what the model refuses: no model transition taken.
        if (i === last) return { taken: [], problem: null };
        return { taken: [], problem: `step ${i + 1}: ${error.message}` };
      }
    }
    return { taken: [], problem: 'empty path' };
  });
}

function tally(outcomes: PathOutcome[]): PathTally {
  return {
    total: outcomes.length,
    passed: outcomes.filter((outcome) => outcome.passed).length,
    failedTargets: outcomes.filter((outcome) => !outcome.passed).map((outcome) => `${outcome.fencePolicy}: ${outcome.target}`),
  };
}

/** The evidence rows of every claim. `explored` is the set of transition ids the exploration took. */
export function claimEvidence(machine: AnyStateMachine, report: ConformanceReport | null, explored: ReadonlySet<string>): ClaimEvidence[] {
  const missingTransitions = new Set(report?.coverage.transitions.missing ?? []);
  const missingClaims = new Set((report?.coverage.claims.missing ?? []).map(String));
  const diverged = report ? replayDivergences(report).map((replay) => replay.taken) : [];
  const transitionOutcomes = new Map<string, PathOutcome[]>();
  const pairOutcomes: { ids: string[]; outcome: PathOutcome }[] = [];
  for (const outcome of report?.pathOutcomes ?? []) {
    if (outcome.strategy === 'transition') {
      const list = transitionOutcomes.get(outcome.target) ?? [];
      list.push(outcome);
      transitionOutcomes.set(outcome.target, list);
    } else if (outcome.strategy === 'pair') {
      pairOutcomes.push({ ids: outcome.target.split(' -> '), outcome });
    }
  }
  return claimTraceability(machine).map(({ claim, transitions }) => {
    const ids = new Set(transitions.map((info: TransitionDefinitionInfo) => info.id));
    const rows = transitions.map((info) => ({
      id: info.id,
      event: info.event,
      guard: info.guard,
      description: info.meta?.description ?? '',
      covered: report ? !missingTransitions.has(info.id) : null,
      explored: explored.has(info.id),
    }));
    const targeted = [...ids].flatMap((id) => transitionOutcomes.get(id) ?? []);
    const pairs = pairOutcomes.filter(({ ids: pair }) => pair.some((id) => ids.has(id))).map(({ outcome }) => outcome);
    const divergences = diverged.flatMap((taken, index) => (taken.some((id) => ids.has(id)) ? [index] : []));
    const transitionPaths = { ...tally(targeted), targets: [...new Set(targeted.map((outcome) => outcome.target))] };
    const pairPaths = tally(pairs);
    let result: ClaimResult;
    if (!report) result = 'no conformance run';
    else if (divergences.length > 0 || transitionPaths.failedTargets.length > 0) result = 'failed';
    else if (missingClaims.has(String(claim.number)) || rows.every((row) => row.covered === false)) result = 'not covered';
    else result = 'passed';
    return { claim, transitions: rows, transitionPaths, pairPaths, divergences, result };
  });
}
