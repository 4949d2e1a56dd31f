/**
 * The evidence for the safety properties P1-P7 and P9 of DESIGN.md: what the exhaustive exploration of the model
 * found for each (per fence policy: held in every state and transition, or the shortest counterexample), and
 * what the conformance run found on the implementation. The implementation is checked through the
 * observation after every step, so a property's conformance evidence is the steps checked and the
 * divergences in the observed fields that witness it (named below), or that name the property (an
 * `InvariantError` of the implementation says "P3: ...").
 */
import type { Counterexample } from '../model/explore.ts';
import { propertyStatements, type PropertyName } from '../model/properties.ts';
import type { ModelParams } from '../model/params.ts';
import type { ConformanceReport } from './conformance-report.ts';
import type { ExploreCliSummary, PolicyExploration } from './exploration.ts';

/** The properties of DESIGN.md, in order. */
export const safetyProperties = ['P1', 'P2', 'P3', 'P4', 'P5', 'P6', 'P7', 'P9'] as const satisfies readonly PropertyName[];

/** The observation fields that witness each property (matched against a divergence's summary). */
export const propertyWitnesses: Readonly<Record<(typeof safetyProperties)[number], RegExp>> = {
  P1: /\bP1\b|ackedOnOneSite|sites\.[12]\.(lastUpdateNumber|volumeDigest|journal)|syncPair/,
  P2: /\bP2\b|sites\.3\.(volumeDigest|restored|received|lastUpdateNumber|journal)/,
  P3: /\bP3\b|lastUpdateNumber|journal\.(first|last)/,
  P4: /\bP4\b|acceptsHostWrites|fenced|role|syncPair\.primary/,
  P5: /\bP5\b|asyncPair|judgement/,
  P6: /\bP6\b|volumeDigest/,
  P7: /\bP7\b|journal|highWater|asyncPair\.state|standbyPair/,
  // A property of the explored graph (recoverability), checked by the explorer alone: only a report naming it.
  P9: /\bP9\b/,
};

/** What one exploration found for one property. */
export interface PropertyExplorationResult {
  /** Where the figures come from: the page's own exploration, or `reports/explore.json`. */
  source: string;
  fencePolicy: string;
  states: number;
  transitions: number;
  complete: boolean;
  violation: Counterexample | null;
  /** The bounds explored, in words ({@link boundsText}): a state count means nothing without them. */
  bounds: string;
}

/** The claims that speak of several volumes in one consistency group (claims 12-14). */
export const severalVolumeClaims = [12, 13, 14] as const;

/**
 * Exploration bounds in words: `1 volume x 1 block, journal 1, pull batch 1, <= 2 writes, <= 2 faults`.
 * Reads a full {@link ModelParams} or the looser params of an `explore.json`; a missing bound is said so.
 */
export function boundsText(params: Partial<ModelParams> | Record<string, unknown>): string {
  const p = params as Record<string, unknown>;
  const n = (key: string): string => (typeof p[key] === 'number' ? String(p[key]) : '?');
  const plural = (key: string, word: string): string => `${n(key)} ${word}${p[key] === 1 ? '' : 's'}`;
  return `${plural('volumeCount', 'volume')} x ${plural('blocksPerVolume', 'block')}, journal ${n('journalEntriesMax')}, pull batch ${n('pullBatchEntriesMax')}, <= ${n('writesMax')} writes, <= ${n('faultsMax')} faults`;
}

/** True when explorations at these bounds can exercise claims 12-14 (more than one volume per site). */
export function exercisesSeveralVolumes(params: Partial<ModelParams> | Record<string, unknown>): boolean {
  const count = (params as Record<string, unknown>).volumeCount;
  return typeof count === 'number' && count > 1;
}

/** One row of the properties table. */
export interface PropertyEvidence {
  property: (typeof safetyProperties)[number];
  statement: string;
  exploration: PropertyExplorationResult[];
  /** Null without a conformance run. */
  conformance: { steps: number; paths: number; divergences: number[] } | null;
}

/** The rows of the properties table. */
export function propertyEvidence(
  runs: readonly PolicyExploration[],
  exploreSummary: ExploreCliSummary | null,
  report: ConformanceReport | null,
): PropertyEvidence[] {
  return safetyProperties.map((property) => {
    const exploration: PropertyExplorationResult[] = runs.map((run) => ({
      source: 'this page',
      fencePolicy: run.params.fencePolicy,
      states: run.states,
      transitions: run.transitions,
      complete: run.complete,
      violation: run.violations.find((violation) => violation.property === property) ?? null,
      bounds: boundsText(run.params),
    }));
    for (const run of exploreSummary?.runs ?? []) {
      exploration.push({
        source: 'reports/explore.json',
        fencePolicy: run.fencePolicy,
        states: run.states,
        transitions: run.transitions,
        complete: run.complete,
        violation: exploreSummary!.violations.find((violation) => violation.property === property && violation.fencePolicy === run.fencePolicy) ?? null,
        bounds: boundsText(exploreSummary!.params),
      });
    }
    const conformance = report
      ? {
          steps: report.steps,
          paths: report.paths,
          divergences: report.divergences.flatMap((divergence, index) => (propertyWitnesses[property].test(divergence.summary) ? [index] : [])),
        }
      : null;
    return { property, statement: propertyStatements[property], exploration, conformance };
  });
}
