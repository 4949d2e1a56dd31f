/**
 * The command line of `npm run bench` (bench/main.ts), parsed apart from the run so that a test can check
 * it without starting any part: which parts run, whether the sites run under `--cpu-prof`, which
 * `threesite` build they run, and the inflow part's delay per write.
 *
 *     npm run bench                                      every part, in the order of {@link benchParts}
 *     npm run bench -- --only deployment --only inflow   those parts (repeat --only for more)
 *     npm run bench -- --only inflow --inflow-delay-ms 100
 */

import { parseArgs } from 'node:util';
import { inflowDelayMsMax } from '../impl/site/site-node.ts';
import { inflowDelayMsDefault } from './inflow.ts';

/** The parts of the benchmark, in the order they run. */
export const benchParts = ['throughput', 'harness', 'interleavings', 'deployment', 'inflow'] as const;

/** One part of the benchmark (its key in `reports/bench.json`). */
export type BenchPart = (typeof benchParts)[number];

/** What the command line asks for. */
export interface BenchArguments {
  /** The parts to run, in the order of {@link benchParts}. */
  readonly parts: readonly BenchPart[];
  /** True when `--only` chose the parts: the others keep their last figures in `reports/bench.json`. */
  readonly only: boolean;
  readonly profile: boolean;
  /** The `threesite` command the deployment part's sites run, or undefined: `bin/threesite.js`. */
  readonly cli: string | undefined;
  /** The inflow part's `inflowControl.delayMs` for its run with inflow control on ({@link inflowDelayMsDefault} unless given). */
  readonly inflowDelayMs: number;
}

/** A command line `npm run bench` cannot run: the option, the value given and why. */
export class BenchUsageError extends Error {
  constructor(
    readonly option: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(`bench: ${option} ${reason}; got ${JSON.stringify(value)}`);
    this.name = 'BenchUsageError';
  }
}

/** Parses the arguments after `npm run bench --`; a bad one is a {@link BenchUsageError}. */
export function parseBenchArguments(argv: readonly string[]): BenchArguments {
  let values: { only?: string[]; profile?: boolean; cli?: string; 'inflow-delay-ms'?: string };
  try {
    ({ values } = parseArgs({
      args: [...argv],
      options: { only: { type: 'string', multiple: true }, profile: { type: 'boolean', default: false }, cli: { type: 'string' }, 'inflow-delay-ms': { type: 'string' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (error) {
    throw new BenchUsageError('arguments', argv.join(' '), (error as Error).message);
  }
  const only = values.only ?? [];
  for (const part of only) {
    if (!(benchParts as readonly string[]).includes(part)) throw new BenchUsageError('--only', part, `takes ${benchParts.join(', ')}`);
  }
  const given = values['inflow-delay-ms'];
  let inflowDelayMs = inflowDelayMsDefault;
  if (given !== undefined) {
    inflowDelayMs = Number(given);
    if (!/^\d+$/.test(given) || inflowDelayMs < 1 || inflowDelayMs > inflowDelayMsMax) throw new BenchUsageError('--inflow-delay-ms', given, `is an integer in [1, ${inflowDelayMsMax}]`);
  }
  return {
    parts: only.length === 0 ? [...benchParts] : benchParts.filter((part) => only.includes(part)),
    only: only.length > 0,
    profile: values.profile ?? false,
    cli: values.cli,
    inflowDelayMs,
  };
}
