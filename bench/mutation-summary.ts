/**
 * Prints the mutation score of impl/ from StrykerJS's report (reports/mutation/mutation.json, the standard
 * mutation-testing-report schema): per file, for the replication logic, and overall. The score is
 * killed / (killed + survived + no coverage); timeouts (a mutant that made the code loop) are counted apart,
 * as the issue asks, and so are compile and runtime errors.
 */
import { readFileSync } from 'node:fs';

/** The files whose mutants the replication-logic score counts. */
export const replicationLogicFiles = [
  'impl/storage-system.ts',
  'impl/cluster.ts',
  'impl/journal.ts',
  'impl/judge.ts',
  'impl/changed-blocks.ts',
  'impl/block-copy.ts',
];

type Status = 'Killed' | 'Survived' | 'NoCoverage' | 'Timeout' | 'CompileError' | 'RuntimeError' | 'Ignored' | 'Pending';

/** Counts of one file or a group of files. */
export interface MutantCounts {
  killed: number;
  survived: number;
  noCoverage: number;
  timeout: number;
  errors: number;
  ignored: number;
}

const empty = (): MutantCounts => ({ killed: 0, survived: 0, noCoverage: 0, timeout: 0, errors: 0, ignored: 0 });

function add(counts: MutantCounts, status: Status): void {
  if (status === 'Killed') counts.killed += 1;
  else if (status === 'Survived') counts.survived += 1;
  else if (status === 'NoCoverage') counts.noCoverage += 1;
  else if (status === 'Timeout') counts.timeout += 1;
  else if (status === 'CompileError' || status === 'RuntimeError') counts.errors += 1;
  else counts.ignored += 1;
}

/** killed / (killed + survived + no coverage), as a percentage; timeouts apart. */
export function score(counts: MutantCounts): number {
  const total = counts.killed + counts.survived + counts.noCoverage;
  return total === 0 ? 100 : (100 * counts.killed) / total;
}

/** Reads a Stryker JSON report and counts mutants per file. */
export function summarize(report: { files: Record<string, { mutants: { status: Status }[] }> }): Map<string, MutantCounts> {
  const perFile = new Map<string, MutantCounts>();
  for (const [file, { mutants }] of Object.entries(report.files)) {
    const counts = empty();
    for (const mutant of mutants) add(counts, mutant.status);
    perFile.set(file.replace(/^.*?(impl\/)/, '$1'), counts);
  }
  return perFile;
}

function total(entries: Iterable<MutantCounts>): MutantCounts {
  const sum = empty();
  for (const counts of entries) for (const key of Object.keys(sum) as (keyof MutantCounts)[]) sum[key] += counts[key];
  return sum;
}

function row(name: string, c: MutantCounts): string {
  return `| ${name} | ${c.killed} | ${c.survived} | ${c.noCoverage} | ${c.timeout} | ${c.errors} | ${score(c).toFixed(1)}% |`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2] ?? 'reports/mutation/mutation.json';
  const perFile = summarize(JSON.parse(readFileSync(file, 'utf8')));
  console.log(`\nmutation score of impl/ (${file}); score = killed / (killed + survived + no coverage), timeouts apart\n`);
  console.log('| file | killed | survived | no coverage | timeout | errors | score |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, counts] of [...perFile].sort(([a], [b]) => a.localeCompare(b))) console.log(row(name, counts));
  console.log(row('**replication logic**', total(replicationLogicFiles.flatMap((name) => perFile.get(name) ?? []))));
  console.log(row('**all of impl/**', total(perFile.values())));
}
