/**
 * Builds the spec review page, `reports/spec.html`: renders the diagrams (and writes them, with the SCXML and
 * editor exports, beside the page), explores the model for P1-P7 and for the events behind each region move,
 * reads the latest conformance report if there is one, bundles the simulator, and writes one self-contained
 * HTML file. `npm run review` calls it; `npm start` calls it after the conformance run.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { replicationMachine } from '../model/machine.ts';
import type { ModelParams } from '../model/params.ts';
import { runTypeScriptWorker } from '../model/ts-worker.ts';
import { bundleSimulator } from './bundle.ts';
import { claimTexts } from './claim-text-data.ts';
import { transitionPathBounds, type TransitionPaths } from './transition-paths.ts';
import { chartOf } from './chart.ts';
import { claimEvidence } from './claim-evidence.ts';
import { readConformanceReport } from './conformance-report.ts';
import { decisions, decisionTransitions } from './decisions.ts';
import { writeDiagrams } from './diagrams.ts';
import { exploreForReview, readExploreSummary, reviewExploreBounds, type ReviewExploration } from './exploration.ts';
import { pathTraceKey, reviewPageHtml } from './page-html.ts';
import { propertyEvidence } from './property-evidence.ts';
import { graphvizVersion, inlineSvg } from './render.ts';
import { simulatorParams, type SimulatorTrace } from './simulator/defaults.ts';
import { stories } from './simulator/stories.ts';

/** Options of {@link writeReviewPage}; every one has a default. */
export interface ReviewPageOptions {
  /** Where the page and its diagrams go (default `reports`). */
  reportsDir?: string;
  /** The conformance report to read (default `<reportsDir>/conformance.json`); absent is fine. */
  conformanceFile?: string;
  /** An `npm run explore -- --json` summary to show as well (default `<reportsDir>/explore.json`); absent is fine. */
  exploreFile?: string;
  /** Bounds of the page's own exploration, per fence policy; null skips it (no P1-P7 figures, no causes). */
  exploreBounds?: Partial<ModelParams> | null;
  /** Bounds of the "show me a path" search; null skips it (no path buttons). Default {@link transitionPathBounds}. */
  pathBounds?: Partial<ModelParams> | null;
  /** Progress lines (default: none). */
  log?: (line: string) => void;
}

/** What was written, and how long each part took. */
export interface ReviewPageResult {
  file: string;
  ms: number;
  statechartMs: number;
  statechartWarmMs: number;
  renderMs: number;
  exploreMs: number | null;
  bundleMs: number;
  bytes: number;
}

/** The SVG id prefix of the whole chart in the page (the simulator highlights it), and of each region diagram. */
export const chartSvgPrefix = 'chart-';

/** Writes `reports/spec.html` and the diagrams it embeds. */
export async function writeReviewPage(options: ReviewPageOptions = {}): Promise<ReviewPageResult> {
  const started = performance.now();
  const reportsDir = options.reportsDir ?? 'reports';
  const log = options.log ?? ((): void => {});
  mkdirSync(reportsDir, { recursive: true });
  const chart = chartOf(replicationMachine);
  const bounds = options.exploreBounds === undefined ? reviewExploreBounds : options.exploreBounds;

  log(bounds ? 'exploring the model (both fence policies in parallel) and bundling the simulator...' : 'bundling the simulator...');
  const pathBounds = options.pathBounds === undefined ? transitionPathBounds : options.pathBounds;
  const [exploration, bundle, paths] = await Promise.all([
    bounds ? exploreForReview(chart.rootTransitions.map((variant) => variant.id), bounds) : Promise.resolve<ReviewExploration | null>(null),
    bundleSimulator(),
    pathBounds
      ? runTypeScriptWorker<TransitionPaths>(new URL('./path-worker.ts', import.meta.url), { params: pathBounds })
      : Promise.resolve<TransitionPaths | null>(null),
  ]);
  const { report, problem: conformanceProblem } = readConformanceReport(options.conformanceFile ?? join(reportsDir, 'conformance.json'));
  const { summary: exploreSummary, problem: exploreProblem } = readExploreSummary(options.exploreFile ?? join(reportsDir, 'explore.json'));

  log('rendering the diagrams...');
  const set = await writeDiagrams(reportsDir, replicationMachine, chart, exploration?.causes ?? null);
  // writeDiagrams pinned each text to the width Graphviz laid out (no clipped cell in any browser font), and the
  // page embeds exactly the files it wrote.
  const diagrams = set.diagrams.map((diagram, i) => ({ name: diagram.name, svg: inlineSvg(diagram.svg, i === 0 ? chartSvgPrefix : `${diagram.name}-`), ms: diagram.ms }));

  log('gathering the evidence...');
  const runs = exploration?.runs ?? [];
  const explored = new Set(runs.flatMap((run) => run.taken));
  const traces: SimulatorTrace[] = [...stories];
  for (const [i, divergence] of (report?.divergences ?? []).entries()) {
    const { fencePolicies: _policies, ...params } = report!.params as Partial<ModelParams> & { fencePolicies?: unknown };
    traces.push({
      key: `divergence-${i}`,
      title: `divergence ${i + 1}: ${divergence.fencePolicy}, ${divergence.strategy} ${divergence.target}`,
      kind: 'divergence',
      fencePolicy: divergence.fencePolicy,
      params,
      events: divergence.path,
      step: divergence.step,
      summary: divergence.summary,
    });
  }
  for (const run of runs) {
    for (const violation of run.violations) {
      traces.push({
        key: `counterexample-page-${run.params.fencePolicy}-${violation.property}`,
        title: `${violation.property} counterexample (${run.params.fencePolicy})`,
        kind: 'counterexample',
        fencePolicy: run.params.fencePolicy,
        params: run.params,
        events: violation.path,
        step: violation.path.length - 1,
        summary: violation.message,
      });
    }
  }
  for (const [id, events] of Object.entries(paths?.paths ?? {})) {
    traces.push({
      key: pathTraceKey(id),
      title: `path to ${id} (${events.length} events)`,
      kind: 'path',
      fencePolicy: paths!.params.fencePolicy,
      params: paths!.params,
      events,
      step: null,
      summary: `a shortest path from the start to a state where ${id} is taken (its last event takes it), found by exploring ${paths!.states.toLocaleString('en-US')} states at the bounds of the page's exploration`,
    });
  }
  const html = reviewPageHtml({
    claimTexts,
    chart,
    diagrams,
    timings: { statechartMs: set.statechartMs, statechartWarmMs: set.statechartWarmMs, renderMs: set.renderMs, exploreMs: exploration?.ms ?? null, bundleMs: bundle.ms },
    graphvizVersion: await graphvizVersion(),
    conformance: report,
    conformanceProblem,
    claims: claimEvidence(replicationMachine, report, explored),
    properties: propertyEvidence(runs, exploreSummary, report),
    decisions: decisions.map((decision) => ({ decision, transitions: decisionTransitions(chart, decision) })),
    exploration: runs,
    exploreProblem,
    simulatorData: { params: simulatorParams, traces, diagramPrefixes: diagrams.map((diagram, i) => (i === 0 ? chartSvgPrefix : `${diagram.name}-`)) },
    simulatorScript: bundle.code,
    builtAt: new Date().toISOString(),
  });
  const file = join(reportsDir, 'spec.html');
  writeFileSync(file, html);
  return {
    file,
    ms: performance.now() - started,
    statechartMs: set.statechartMs,
    statechartWarmMs: set.statechartWarmMs,
    renderMs: set.renderMs,
    exploreMs: exploration?.ms ?? null,
    bundleMs: bundle.ms,
    bytes: Buffer.byteLength(html),
  };
}
