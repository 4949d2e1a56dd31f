/**
 * Proof that the harness catches bugs: a catalogue of realistic faults, each a small variant of the
 * implementation (a subclass or a wrapper, in `conformance/fault-variants.ts`, never a switch inside
 * `impl/`). Each fault is hunted with the generated paths first, then with random walks; the report gives
 * which strategy caught it and the length of the (shrunk) counterexample.
 */
import type { ModelParams } from '../model/params.ts';
import type { SutFactory } from './sut.ts';
import { faultVariants } from './fault-variants.ts';
import { runPath } from './lockstep.ts';
import type { GeneratedPath } from './paths.ts';
import { runWalks } from './walks.ts';

/** How a fault was hunted, and what caught it. */
export interface FaultResult {
  name: string;
  description: string;
  caught: boolean;
  /** `generated path (transition)`, `random walk`, ... or null when not caught. */
  strategy: string | null;
  /** The path or walk target that caught it. */
  target: string | null;
  /** Events in the counterexample (shrunk for walks). */
  counterexampleLength: number | null;
  /** The first divergence, one paragraph. */
  summary: string | null;
  /** Paths tried before it was caught. */
  pathsTried: number;
}

/** A fault of the catalogue. */
export interface Fault {
  name: string;
  description: string;
  makeSut: SutFactory;
  hunt(paramsList: ModelParams[], work: { params: ModelParams; path: GeneratedPath }[], seed: number): FaultResult;
}

/** Walks tried per fence policy when no generated path caught a fault. */
export const faultWalkRuns = 300;

/**
 * Bounds of the last hunting stage: journals that hold several entries and pulls of several, so that faults
 * that need two entries in flight (a restore out of order) can show; the run's default bounds cannot.
 */
export const faultHuntLargerBounds: Partial<ModelParams> = { journalEntriesMax: 3, pullBatchEntriesMax: 2, blocksPerVolume: 2 };

/** The strategies in the order a fault is hunted: shortest, most targeted first. */
const strategyOrder: GeneratedPath['strategy'][] = ['transition', 'guard', 'pair', 'state', 'simple', 'edge', 'refusal', 'depth', 'byteRange'];

function hunt(this: Omit<Fault, 'hunt'>, paramsList: ModelParams[], work: { params: ModelParams; path: GeneratedPath }[], seed: number): FaultResult {
  const ordered = strategyOrder.flatMap((strategy) => work.filter((item) => item.path.strategy === strategy));
  let tried = 0;
  for (const { params, path } of ordered) {
    tried++;
    const run = runPath(params, path.events, this.makeSut);
    if (run.divergence) {
      return {
        name: this.name,
        description: this.description,
        caught: true,
        strategy: `generated path (${path.strategy})`,
        target: path.target,
        counterexampleLength: run.divergence.step + 1,
        summary: run.divergence.summary,
        pathsTried: tried,
      };
    }
  }
  const stages = [
    { label: 'random walk', list: paramsList },
    { label: 'random walk (larger bounds)', list: paramsList.map((params) => ({ ...params, ...faultHuntLargerBounds })) },
  ];
  for (const { label, list } of stages) {
    for (const [i, params] of list.entries()) {
      const walks = runWalks(params, this.makeSut, { seed: seed + 1000 + i, runs: faultWalkRuns, steps: 60 });
      if (walks.failure) {
        return {
          name: this.name,
          description: this.description,
          caught: true,
          strategy: label,
          target: `seed ${walks.failure.seed} path ${walks.failure.path}`,
          counterexampleLength: walks.failure.events.length,
          summary: walks.failure.divergence.summary,
          pathsTried: tried,
        };
      }
    }
  }
  return { name: this.name, description: this.description, caught: false, strategy: null, target: null, counterexampleLength: null, summary: null, pathsTried: tried };
}

/** Every fault of the catalogue, ready to hunt. */
export function faultCatalogue(): Fault[] {
  return faultVariants.map((variant) => ({ ...variant, hunt }));
}
