/**
 * `npm run nemesis -- [--seed S] [--schedules N] [--faults default|all] [--schedule-seed S] [--keep]
 * [--dir DIR] [--out FILE] [--plant loss|divergence|both]`: the nemesis run (conformance/nemesis.ts). Prints each
 * schedule before it runs and its result after, then the figures and the seed; writes the report
 * (`reports/nemesis.json` by default). Exit status: 0 when every schedule passed, 1 when one failed (its seed
 * is printed: `--schedule-seed` replays it alone), 2 for bad usage.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import { defaultRunDir, runNemesis, schedulesMax, type NemesisReport, type Plant } from './nemesis.ts';
import { faultKinds, nemesisSeedDefault, type FaultMix } from './nemesis-schedule.ts';

/** Schedules of a run when none is asked. */
export const schedulesDefault = 5;

const usage = 'usage: npm run nemesis -- [--seed S] [--schedules N] [--faults default|all] [--schedule-seed S] [--keep] [--dir DIR] [--out FILE] [--plant loss|divergence|both]';

class UsageError extends Error {}

function integer(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isSafeInteger(value) || value < min || value > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(raw)}`);
  return value;
}

/** The figures of a run, as printed at its end. */
export function formatFigures(report: NemesisReport): string {
  const faults = faultKinds.map((kind) => `${kind} ${report.faultsInjected[kind]}`).join(', ');
  const lines = [
    `nemesis seed ${report.seed} (--faults ${report.faults}): ${report.passed}/${report.schedules} schedules passed`,
    `  faults injected: ${faults}`,
    `  writes issued ${report.writesIssued}, acknowledged writes ${report.writesAcknowledged}, blocks checked ${report.blocksChecked}, lost ${report.lost}, differing blocks ${report.differingBlocks}, trace steps validated ${report.traceActions}`,
    `  online verifies ${report.verifies}: ${report.verifyBlocksCompared} blocks compared, ${report.verifyDiffering} differing`,
  ];
  for (const skipped of report.skipped) lines.push(`  not applied: ${skipped}`);
  for (const failure of report.failed) lines.push(`  FAILED schedule ${failure.index} seed ${failure.seed}: ${failure.failures[0]?.split('\n')[0]?.slice(0, 300)}`);
  return lines.join('\n');
}

async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      seed: { type: 'string' },
      schedules: { type: 'string' },
      faults: { type: 'string', default: 'default' },
      'schedule-seed': { type: 'string' },
      keep: { type: 'boolean', default: false },
      dir: { type: 'string' },
      out: { type: 'string', default: path.join('reports', 'nemesis.json') },
      plant: { type: 'string' },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const seed = integer('seed', values.seed, nemesisSeedDefault, 0, 2 ** 32 - 1);
  const scheduleSeed = values['schedule-seed'] === undefined ? null : integer('schedule-seed', values['schedule-seed'], 0, 0, 2 ** 32 - 1);
  const schedules = integer('schedules', values.schedules, scheduleSeed === null ? schedulesDefault : 1, 1, schedulesMax);
  if (values.faults !== 'default' && values.faults !== 'all') throw new UsageError(`--faults is default or all, got ${JSON.stringify(values.faults)}`);
  const plant = (values.plant ?? null) as Plant;
  if (plant !== null && plant !== 'loss' && plant !== 'divergence' && plant !== 'both') throw new UsageError(`--plant is loss, divergence or both, got ${JSON.stringify(values.plant)}`);
  const dir = path.resolve(values.dir ?? defaultRunDir(seed));
  console.log(`nemesis: seed ${scheduleSeed === null ? seed : `${scheduleSeed} (one schedule)`}, ${schedules} schedules, faults ${values.faults}${plant === null ? '' : `, planted ${plant}`}; deployments under ${dir}`);
  const report = await runNemesis({ seed, schedules, faults: values.faults as FaultMix, dir, keep: values.keep, plant, scheduleSeed, log: (line) => console.log(line) });
  fs.mkdirSync(path.dirname(path.resolve(values.out)), { recursive: true });
  fs.writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
  if (report.failed.length === 0) fs.rmSync(dir, { recursive: true, force: true });
  console.log(formatFigures(report));
  console.log(`report: ${values.out}; seed ${scheduleSeed === null ? seed : `${scheduleSeed} (--schedule-seed)`}`);
  return report.failed.length === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError || (error instanceof TypeError && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) {
      console.error(`nemesis: ${(error as Error).message}\n${usage}`);
      process.exitCode = 2;
      return;
    }
    console.error(error);
    process.exitCode = 1;
  },
);
