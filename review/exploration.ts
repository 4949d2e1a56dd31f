/**
 * The exploration evidence of the review page: the bounded model explored exhaustively once per fence policy
 * (in parallel worker threads), with P1-P7 checked on every state and transition, and, from the same search,
 * the root events that cause each region move (for the diagrams' labels). A `reports/explore.json` written
 * from `npm run explore -- --json` (possibly at larger bounds) is read as well when present.
 */
import { existsSync, readFileSync } from 'node:fs';
import type { Counterexample } from '../model/explore.ts';
import type { FencePolicy, ModelParams } from '../model/params.ts';
import { validateParams } from '../model/params.ts';
import { runTypeScriptWorker } from '../model/ts-worker.ts';
import { causeBounds, type TransitionCauses } from './causes.ts';

/** The bounds the review page explores at by default: those at which every chart transition is taken. */
export const reviewExploreBounds: Partial<ModelParams> = causeBounds;

/** The fence policies explored, in the order the page lists them. */
export const reviewFencePolicies: readonly FencePolicy[] = ['keepWriting', 'refuse'];

/** What one exploration of one fence policy found. */
export interface PolicyExploration {
  params: ModelParams;
  states: number;
  transitions: number;
  complete: boolean;
  depth: number;
  ms: number;
  violations: Counterexample[];
  /** Chart transition ids taken. */
  taken: string[];
  /** Causes of region moves, when asked for. */
  causes: TransitionCauses | null;
}

/** The explorations of all fence policies, and the wall time they took together. */
export interface ReviewExploration {
  runs: PolicyExploration[];
  /** The causes of region moves (from the first policy explored with causes). */
  causes: TransitionCauses | null;
  ms: number;
}

/**
 * Explores every fence policy at `bounds` in parallel workers; the first policy also records the causes of
 * region moves.
 */
export async function exploreForReview(rootOrder: readonly string[], bounds: Partial<ModelParams> = reviewExploreBounds): Promise<ReviewExploration> {
  const started = performance.now();
  const runs = await Promise.all(
    reviewFencePolicies.map((fencePolicy, i) =>
      runTypeScriptWorker<PolicyExploration>(new URL('./explore-worker.ts', import.meta.url), {
        params: validateParams({ ...bounds, fencePolicy }),
        withCauses: i === 0,
        rootOrder: [...rootOrder],
      }),
    ),
  );
  return { runs, causes: runs[0]?.causes ?? null, ms: performance.now() - started };
}

/** The summary `npm run explore -- --json` prints, as far as the page reads it. */
export interface ExploreCliSummary {
  states: number;
  transitions: number;
  violations: (Counterexample & { fencePolicy: FencePolicy })[];
  params: Record<string, unknown>;
  runs: { fencePolicy: FencePolicy; states: number; transitions: number; complete: boolean; ms: number }[];
  complete: boolean;
  ms: number;
}

/** Reads `file` when it exists and has the shape of an explore summary; null otherwise (with the reason). */
export function readExploreSummary(file: string): { summary: ExploreCliSummary | null; problem: string | null } {
  if (!existsSync(file)) return { summary: null, problem: null };
  try {
    const text = readFileSync(file, 'utf8').trim();
    // `npm run explore -- --json` prints progress lines before its JSON line: take the last line.
    const value = JSON.parse(text.slice(text.lastIndexOf('\n') + 1)) as Partial<ExploreCliSummary>;
    if (typeof value.states !== 'number' || !Array.isArray(value.violations) || !Array.isArray(value.runs)) {
      return { summary: null, problem: `${file} is not the output of npm run explore -- --json` };
    }
    return { summary: value as ExploreCliSummary, problem: null };
  } catch (error) {
    return { summary: null, problem: `${file} could not be read: ${(error as Error).message}` };
  }
}
