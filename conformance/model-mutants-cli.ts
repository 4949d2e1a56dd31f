/**
 * `npm run model-mutants`: generates every mutant of the chart (conformance/model-mutants.ts), runs the
 * checks against each and prints which check killed it; writes reports/model-mutants.json. Exit status 1
 * when a mutant survives (a gap in our checks).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { defaultParams } from '../model/params.ts';
import { checkMutant, formatMutantResult, generateMutants, mutantExplorerBounds, planChecks } from './model-mutants.ts';

const started = performance.now();
const mutants = generateMutants();
const checks = planChecks({ ...defaultParams, fencePolicy: 'keepWriting' }, mutantExplorerBounds);
const results = mutants.map((mutant) => checkMutant(mutant, checks));
for (const result of results) console.log(formatMutantResult(result));
const count = (killedBy: string | null) => results.filter((result) => result.killedBy === killedBy).length;
const summary = {
  generated: results.length,
  killedByConformance: count('conformance'),
  killedByExplorer: count('explorer'),
  killedByCoverage: count('coverage'),
  survived: count(null),
  byKind: Object.fromEntries(['guard-negated', 'guard-always', 'retarget', 'action-dropped'].map((kind) => [kind, results.filter((r) => r.kind === kind).length])),
  ms: Math.round(performance.now() - started),
};
mkdirSync('reports', { recursive: true });
writeFileSync('reports/model-mutants.json', `${JSON.stringify({ summary, results }, null, 2)}\n`);
console.log(`\n${summary.generated} mutants: ${summary.killedByConformance} killed by the conformance run, ${summary.killedByExplorer} by the explorer, ${summary.killedByCoverage} by the coverage gate, ${summary.survived} survived (${(summary.ms / 1000).toFixed(1)} s); reports/model-mutants.json`);
process.exitCode = summary.survived > 0 ? 1 : 0;
