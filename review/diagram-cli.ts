/**
 * `npm run diagram`: draws the statechart from the machine itself. Explores the bounded model to learn which
 * root events move each region (the labels of the region moves), then renders the whole chart and one diagram
 * per region with Graphviz in WebAssembly, and exports SCXML and a module for XState's editor, all under
 * `reports/`. Prints what it wrote and how long each part took. `--no-causes` skips the exploration (the region
 * moves are then labelled with their eventless guards only).
 */
import { parseArgs } from 'node:util';
import { replicationMachine } from '../model/machine.ts';
import { causeBounds, exploreCauses } from './causes.ts';
import { chartOf } from './chart.ts';
import { writeDiagrams } from './diagrams.ts';

const usage = `usage: npm run diagram -- [--out DIR] [--no-causes]
  --out DIR     where to write (default reports)
  --no-causes   do not explore the model for the events that move each region (faster, poorer labels)`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { out: { type: 'string', default: 'reports' }, 'no-causes': { type: 'boolean', default: false }, help: { type: 'boolean', default: false } },
    strict: true,
  });
  if (values.help) {
    console.log(usage);
    return 0;
  }
  const started = performance.now();
  const chart = chartOf(replicationMachine);
  let causes = null;
  if (!values['no-causes']) {
    const { causes: found, result } = exploreCauses(chart.rootTransitions.map((variant) => variant.id), causeBounds);
    causes = found;
    console.log(`explored the model for the events behind each region move: ${result.states} states, ${Math.round(result.ms)} ms`);
  }
  const set = await writeDiagrams(values.out, replicationMachine, chart, causes);
  for (const diagram of set.diagrams) console.log(`  ${diagram.name.padEnd(12)} rendered in ${diagram.ms.toFixed(1)} ms`);
  console.log(
    `whole chart rendered in ${set.statechartMs.toFixed(1)} ms (first render), ${set.statechartWarmMs.toFixed(1)} ms warm; all ${set.diagrams.length} diagrams in ${set.renderMs.toFixed(1)} ms`,
  );
  console.log(`wrote ${set.files.length} files to ${values.out}/ in ${Math.round(performance.now() - started)} ms:`);
  for (const file of set.files) console.log(`  ${file}`);
  return 0;
}

process.exitCode = await main();
