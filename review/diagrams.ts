/**
 * Writes every diagram and export of the statechart into the reports folder: the whole chart
 * (`statechart.dot`, `statechart.svg`), one diagram per region (`site1.svg`, ..., `asyncPair.svg`, each with
 * its `.dot`), the SCXML (`statechart.scxml`) and the module for XState's editor (`statechart.stately.js`).
 * `npm run diagram` and the review page both call it, so the page embeds exactly the files on disk.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AnyStateMachine } from 'xstate';
import type { TransitionCauses } from './causes.ts';
import type { Chart } from './chart.ts';
import { regionDot, statechartDot } from './dot.ts';
import { renderFittedSvg } from './page-svg.ts';
import { renderSvg } from './render.ts';
import { statechartScxml } from './scxml.ts';
import { statelyModule } from './stately.ts';

/** One rendered diagram. */
export interface Diagram {
  /** `statechart` or a region key. */
  name: string;
  dot: string;
  svg: string;
  /** Graphviz layout and SVG output time. */
  ms: number;
}

/** What was written, and how long rendering took. */
export interface DiagramSet {
  /** The whole chart first, then one per region in chart order. */
  diagrams: Diagram[];
  /** Paths written. */
  files: string[];
  /** Time to render the whole chart, the first render of the process (WebAssembly still warming up). */
  statechartMs: number;
  /** Time to render the whole chart again, warm: what every later render costs. */
  statechartWarmMs: number;
  /** Time to render every diagram, the whole chart included. */
  renderMs: number;
}

/** Renders and writes every diagram and export of `chart` (of `machine`) into `reportsDir`. */
export async function writeDiagrams(reportsDir: string, machine: AnyStateMachine, chart: Chart, causes: TransitionCauses | null): Promise<DiagramSet> {
  mkdirSync(reportsDir, { recursive: true });
  const options = causes ? { causes } : {};
  const sources = [
    { name: 'statechart', dot: statechartDot(chart, options) },
    ...chart.regions.map((region) => ({ name: region.key, dot: regionDot(chart, region.key, options) })),
  ];
  const diagrams: Diagram[] = [];
  for (const source of sources) {
    // renderSvg refuses Graphviz's warnings and times the layout; the SVG written is the same layout with each
    // text pinned to the width Graphviz gave it (review/page-svg.ts), so no browser font clips a label.
    const { ms } = await renderSvg(source.dot, source.name);
    const { svg } = await renderFittedSvg(source.dot, source.name);
    diagrams.push({ ...source, svg, ms });
  }
  const files: string[] = [];
  const write = (name: string, text: string): void => {
    const file = join(reportsDir, name);
    writeFileSync(file, text);
    files.push(file);
  };
  for (const diagram of diagrams) {
    write(`${diagram.name}.dot`, diagram.dot);
    write(`${diagram.name}.svg`, diagram.svg);
  }
  const warm = await renderSvg(sources[0]!.dot, 'statechart');
  write('statechart.scxml', statechartScxml(chart));
  write('statechart.stately.js', statelyModule(machine));
  return {
    diagrams,
    files,
    statechartMs: diagrams[0]!.ms,
    statechartWarmMs: warm.ms,
    renderMs: diagrams.reduce((sum, diagram) => sum + diagram.ms, 0),
  };
}
