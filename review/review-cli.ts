/**
 * `npm run review`: writes the spec review page, `reports/spec.html` (one self-contained file: diagrams,
 * the 40 claims with their evidence, P1-P7, the decisions, a simulator), with the diagrams beside it. Reads
 * `reports/conformance.json` when a conformance run left one. Prints where it wrote and what took how long.
 */
import { parseArgs } from 'node:util';
import { writeReviewPage } from './page.ts';

const usage = `usage: npm run review -- [--out DIR] [--no-explore] [--no-paths]
  --out DIR       where to write (default reports); reads DIR/conformance.json if present
  --no-explore    skip the page's own exploration of the model (no P1-P7 figures, plainer region labels)
  --no-paths      skip the search for a shortest path to every transition (no "show me a path" buttons)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { out: { type: 'string', default: 'reports' }, 'no-explore': { type: 'boolean', default: false }, 'no-paths': { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const result = await writeReviewPage({
    reportsDir: values.out,
    ...(values['no-explore'] ? { exploreBounds: null } : {}),
    ...(values['no-paths'] ? { pathBounds: null } : {}),
    log: (line) => console.log(line),
  });
  console.log(`wrote ${result.file} (${Math.round(result.bytes / 1024)} KiB) in ${(result.ms / 1000).toFixed(1)} s`);
  console.log(
    `  whole chart rendered in ${result.statechartMs.toFixed(1)} ms (${result.statechartWarmMs.toFixed(1)} ms warm), all diagrams in ${result.renderMs.toFixed(1)} ms; simulator bundled in ${result.bundleMs.toFixed(0)} ms${
      result.exploreMs !== null ? `; exploration ${(result.exploreMs / 1000).toFixed(1)} s` : ''
    }`,
  );
  return 0;
}

process.exitCode = await main();
