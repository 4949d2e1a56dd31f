/**
 * Prints the mutation score of impl/ from StrykerJS's report (reports/mutation/mutation.json, the standard
 * mutation-testing-report schema): per file, for the replication logic, and overall. The score is
 * killed / (killed + survived + no coverage); timeouts (a mutant that made the code loop) are counted apart,
 * as the issue asks, and so are compile and runtime errors.
 */
import { readFileSync } from 'node:fs';
// @ts-expect-error: the configuration is plain JavaScript, without type declarations.
import strykerConfig from '../stryker.config.mjs';

/** The files whose mutants the replication-logic score counts: those the mutation run mutates by default. */
export const replicationLogicFiles: readonly string[] = (strykerConfig as { mutate: string[] }).mutate;

type Status = 'Killed' | 'Survived' | 'NoCoverage' | 'Timeout' | 'CompileError' | 'RuntimeError' | 'Ignored' | 'Pending';

/** A mutant as the report gives it (the fields read here). */
interface ReportMutant {
  id: string;
  mutatorName: string;
  replacement?: string;
  status: Status;
  /** Why, for an Ignored mutant: the ignorer's reason (stryker-plugins/invariant-and-message-ignorer.mjs). */
  statusReason?: string;
  location: { start: { line: number; column: number }; end: { line: number; column: number } };
}

/** A report: per file, its source and its mutants (mutation-testing-report-schema). */
interface Report {
  files: Record<string, { source: string; mutants: ReportMutant[] }>;
}

/**
 * Where a surviving mutant sits: inside an invariant check (`assert(...)`: the mutant weakens a check that
 * fires only on a bug), inside an error's or a log line's message text (what a person reads, not what the
 * system does), or in the replication logic itself: the survivors that are gaps in the checks.
 */
export type SurvivorKind = 'invariant' | 'message' | 'logic';

/** Classifies a mutant by the statement it mutates (see {@link SurvivorKind}). */
export function survivorKind(source: string, mutant: ReportMutant): SurvivorKind {
  const lines = source.split('\n');
  // The statement around the mutant: from the line it starts on back to the line that opens the statement.
  let first = mutant.location.start.line - 1;
  while (first > 0 && !/[;{}]\s*$/.test(lines[first - 1] ?? '') && !/^\s*(\/\/|\*)/.test(lines[first - 1] ?? '')) first -= 1;
  const statement = lines.slice(first, mutant.location.end.line).join('\n');
  if (/\bassert\(/.test(statement)) return 'invariant';
  const isText = mutant.mutatorName === 'StringLiteral' || mutant.mutatorName === 'TemplateLiteral';
  if (isText && /(new \w+Error\(|this\.#log\(|log\()/.test(statement)) return 'message';
  return 'logic';
}

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

/**
 * killed / (killed + survived): the score over the mutants in code the tests execute (Stryker's "mutation
 * score based on covered code"). Beside {@link score} it separates two gaps: code no test runs (no
 * coverage) and code the tests run without noticing the change (survived).
 */
export function coveredCodeScore(counts: MutantCounts): number {
  const total = counts.killed + counts.survived;
  return total === 0 ? 100 : (100 * counts.killed) / total;
}

/**
 * The class member or function a line belongs to: the nearest declaration above it (a member at the class's
 * indentation, or a top-level function), e.g. `#onFlushRequest` or `hostWrite`; `(top level)` when none.
 * Groups the mutants no test reaches by the feature they sit in.
 */
export function enclosingMember(source: string, line: number): string {
  const lines = source.split('\n');
  for (let i = Math.min(line, lines.length) - 1; i >= 0; i -= 1) {
    const text = lines[i] ?? '';
    const member = /^ {2}(?:static\s+|private\s+|readonly\s+|async\s+)*(?:get\s+|set\s+)?(#?[A-Za-z_]\w*)\s*[(<]/.exec(text);
    if (member && !/^ {2}(if|for|while|switch|return)\b/.test(text)) return member[1] as string;
    const fn = /^(?:export\s+)?(?:async\s+)?function\s*\*?\s*(\w+)/.exec(text);
    if (fn) return fn[1] as string;
    if (/^(?:export\s+)?(?:abstract\s+)?class\s/.test(text)) return '(class fields)';
  }
  return '(top level)';
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
  return `| ${name} | ${c.killed} | ${c.survived} | ${c.noCoverage} | ${c.timeout} | ${c.errors} | ${c.ignored} | ${score(c).toFixed(1)}% | ${coveredCodeScore(c).toFixed(1)}% |`;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const file = process.argv[2] ?? 'reports/mutation/mutation.json';
  const perFile = summarize(JSON.parse(readFileSync(file, 'utf8')));
  console.log(`\nmutation score of impl/ (${file}); score = killed / (killed + survived + no coverage), timeouts apart;`);
  console.log('covered code = killed / (killed + survived): the mutants in code the tests execute\n');
  console.log('| file | killed | survived | no coverage | timeout | errors | ignored | score | covered code |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [name, counts] of [...perFile].sort(([a], [b]) => a.localeCompare(b))) console.log(row(name, counts));
  console.log(row('**replication logic**', total(replicationLogicFiles.flatMap((name) => perFile.get(name) ?? []))));
  console.log(row('**all of impl/**', total(perFile.values())));
  const report = JSON.parse(readFileSync(file, 'utf8')) as Report;
  const reasons = new Map<string, number>();
  for (const { mutants } of Object.values(report.files)) {
    for (const mutant of mutants) {
      if (mutant.status === 'Ignored') reasons.set(mutant.statusReason ?? '(no reason)', (reasons.get(mutant.statusReason ?? '(no reason)') ?? 0) + 1);
    }
  }
  if (reasons.size > 0) console.log('\nignored (not scored), by reason:');
  for (const [reason, count] of reasons) console.log(`  ${count}: ${reason}`);
  const survivors: { file: string; mutant: ReportMutant; kind: SurvivorKind; original: string }[] = [];
  for (const [name, { source, mutants }] of Object.entries(report.files)) {
    for (const mutant of mutants) {
      if (mutant.status !== 'Survived' && mutant.status !== 'NoCoverage') continue;
      const line = source.split('\n')[mutant.location.start.line - 1] ?? '';
      survivors.push({ file: name.replace(/^.*?(impl\/)/, '$1'), mutant, kind: survivorKind(source, mutant), original: line.trim() });
    }
  }
  const uncovered = new Map<string, number>();
  for (const { file: name, mutant } of survivors) {
    if (mutant.status !== 'NoCoverage') continue;
    const source = Object.entries(report.files).find(([key]) => key.endsWith(name))?.[1].source ?? '';
    const where = `${name} ${enclosingMember(source, mutant.location.start.line)}`;
    uncovered.set(where, (uncovered.get(where) ?? 0) + 1);
  }
  if (uncovered.size > 0) console.log('\nno-coverage mutants by the member they sit in (code no test executes):');
  for (const [where, count] of [...uncovered].sort((a, b) => b[1] - a[1])) console.log(`  ${String(count).padStart(4)}  ${where}`);
  const byKind = (kind: SurvivorKind) => survivors.filter((survivor) => survivor.kind === kind);
  console.log(`\nsurvivors and no-coverage mutants: ${survivors.length}: ${byKind('logic').length} in the logic, ${byKind('invariant').length} inside invariant checks (assert), ${byKind('message').length} in error-constructor arguments`);
  console.log('\nsurvivors (file:line mutator [status, kind]: original -> replacement):');
  for (const { file: name, mutant, kind, original } of survivors) {
    console.log(`  ${name}:${mutant.location.start.line} ${mutant.mutatorName} [${mutant.status}, ${kind}]: ${original.slice(0, 110)} -> ${(mutant.replacement ?? '').replace(/\s+/g, ' ').slice(0, 80)}`);
  }
}
