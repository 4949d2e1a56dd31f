/**
 * Reads `reports/conformance.json`, the report of the latest conformance run (`npm start`), as far as the
 * review page needs it. The page must build with no run yet, and must not show a half-read report as
 * evidence, so the file is checked field by field: absent gives `null` with no problem, malformed gives
 * `null` with the problem named (the page says so).
 */
import { existsSync, readFileSync } from 'node:fs';
import type { ReportedDivergence } from '../conformance/run.ts';

/** Covered out of total, as the conformance coverage reports each dimension. */
export interface CoverageFigure {
  covered: number;
  total: number;
  missing: string[];
  unreachable: ({ item: string; reason: string } | string)[];
}

/** One divergence between the model and the implementation, as conformance/run.ts writes it. */
export type { ReportedDivergence };

/** One generated path's outcome. */
export interface PathOutcome {
  fencePolicy: 'refuse' | 'keepWriting';
  /** `transition` (target: a transition id), `pair` (target: `EVENT#i -> EVENT#j`), `state`, `simple`, ... */
  strategy: string;
  target: string;
  events: number;
  passed: boolean;
}

/** The conformance report as the page reads it. */
export interface ConformanceReport {
  seed: number;
  params: Record<string, unknown>;
  paths: number;
  steps: number;
  walks?: { runs: number; steps: number };
  coverage: Record<'states' | 'transitions' | 'graphEdges' | 'transitionPairs' | 'guards' | 'claims', CoverageFigure>;
  divergences: ReportedDivergence[];
  faults: { total: number; caught: number; list: { name: string; description: string; caught: boolean; strategy: string | null; summary: string | null }[] };
  mustHappen: { name: string; transitions: string[]; happened: boolean }[];
  pathOutcomes: PathOutcome[];
  exploration: { states: number; transitions: number; violations: unknown[]; complete: boolean; ms: number };
  ms: number;
  passed: boolean;
}

/** The result of reading the report file. */
export interface ConformanceRead {
  report: ConformanceReport | null;
  /** Why a present file was not used. */
  problem: string | null;
}

const coverageKeys = ['states', 'transitions', 'graphEdges', 'transitionPairs', 'guards', 'claims'] as const;

function shapeProblem(value: Record<string, unknown>): string | null {
  for (const key of ['seed', 'paths', 'steps', 'ms'] as const) if (typeof value[key] !== 'number') return `${key} is not a number`;
  if (typeof value.passed !== 'boolean') return 'passed is not a boolean';
  for (const key of ['divergences', 'mustHappen', 'pathOutcomes'] as const) if (!Array.isArray(value[key])) return `${key} is not a list`;
  const coverage = value.coverage as Record<string, CoverageFigure> | undefined;
  if (!coverage || typeof coverage !== 'object') return 'coverage is missing';
  for (const key of coverageKeys) {
    const figure = coverage[key];
    if (!figure || typeof figure.covered !== 'number' || typeof figure.total !== 'number' || !Array.isArray(figure.missing)) {
      return `coverage.${key} is not { covered, total, missing }`;
    }
  }
  for (const divergence of value.divergences as ReportedDivergence[]) {
    if (!Array.isArray(divergence.path) || typeof divergence.step !== 'number' || typeof divergence.summary !== 'string') {
      return 'a divergence lacks path, step or summary';
    }
  }
  const faults = value.faults as ConformanceReport['faults'] | undefined;
  if (!faults || typeof faults.total !== 'number' || !Array.isArray(faults.list)) return 'faults is not { total, caught, list }';
  const exploration = value.exploration as ConformanceReport['exploration'] | undefined;
  if (!exploration || typeof exploration.states !== 'number') return 'exploration is missing';
  return null;
}

/** Reads and checks the report at `file`. */
export function readConformanceReport(file: string): ConformanceRead {
  if (!existsSync(file)) return { report: null, problem: null };
  let value: unknown;
  try {
    value = JSON.parse(readFileSync(file, 'utf8'));
  } catch (error) {
    return { report: null, problem: `${file} is not JSON: ${(error as Error).message}` };
  }
  if (!value || typeof value !== 'object') return { report: null, problem: `${file} is not an object` };
  const problem = shapeProblem(value as Record<string, unknown>);
  if (problem) return { report: null, problem: `${file}: ${problem}` };
  return { report: value as ConformanceReport, problem: null };
}
