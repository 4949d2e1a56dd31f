/**
 * The review page as one self-contained HTML document: styles, diagrams (inline SVG), evidence tables,
 * the simulator's data island and its bundled script, all inside the file, so it opens from disk with no
 * network. A pure function of the evidence `page.ts` gathers; the order of its sections is the order a
 * reviewer reads: the verdicts, the live chart with its simulator, the 40 claims, P1-P7, the decisions taken
 * where the claims are silent, one diagram per region, and the conformance run's details.
 */
import type { Chart } from './chart.ts';
import type { ClaimEvidence, ClaimResult } from './claim-evidence.ts';
import type { ConformanceReport } from './conformance-report.ts';
import type { Decision } from './decisions.ts';
import type { PolicyExploration } from './exploration.ts';
import { claimParts, claimTextPieces, storageAreas, storageAreaShort } from './claim-text.ts';
import { pageStyle } from './page-style.ts';
import { pairStatusMapping } from './simulator/pair-states.ts';
import { boundsText, exercisesSeveralVolumes, severalVolumeClaims, type PropertyEvidence } from './property-evidence.ts';
import { simulatorDataId, type SimulatorData } from './simulator/defaults.ts';
import { escapeHtml } from './simulator/view.ts';

/** One embedded diagram: its name, the inline SVG (ids prefixed) and its render time. */
export interface PageDiagram {
  name: string;
  svg: string;
  ms: number;
}

/** Everything the page shows. */
export interface PageInput {
  chart: Chart;
  /** The whole chart first, then one per region. */
  diagrams: PageDiagram[];
  timings: { statechartMs: number; statechartWarmMs: number; renderMs: number; exploreMs: number | null; bundleMs: number };
  graphvizVersion: string;
  conformance: ConformanceReport | null;
  conformanceProblem: string | null;
  claims: ClaimEvidence[];
  properties: PropertyEvidence[];
  decisions: { decision: Decision; transitions: string[] }[];
  exploration: PolicyExploration[];
  exploreProblem: string | null;
  simulatorData: SimulatorData;
  simulatorScript: string;
  /** When the page was built (ISO), for the colophon. */
  builtAt: string;
  /** Claim n's words as filed, at index n - 1 (`claim-text-data.ts`). */
  claimTexts: readonly string[];
}

/** How many divergences the page lists in full (all of them are loadable in the simulator). */
export const divergencesListedMax = 50;

const e = escapeHtml;
const count = (n: number): string => n.toLocaleString('en-US');
const ms = (value: number): string => (value >= 1000 ? `${(value / 1000).toFixed(1)} s` : `${value.toFixed(value < 10 ? 1 : 0)} ms`);

/** A script's text made safe inside `<script>`: no `</script` can end it early. */
function scriptText(text: string): string {
  return text.replace(/<\/(script)/gi, '<\\/$1').replace(/<!--/g, '<\\!--');
}

function descriptionOf(chart: Chart, id: string): string {
  const root = chart.rootTransitions.find((variant) => variant.id === id);
  if (root) return `${root.meta.description} [${root.guard}]`;
  for (const region of chart.regions) {
    const move = region.moves.find((candidate) => candidate.id === id);
    if (move) return move.meta.description;
  }
  return id;
}

function chip(chart: Chart, id: string, extra = ''): string {
  const root = chart.rootTransitions.find((variant) => variant.id === id);
  const guard = root ? ` <small>[${e(root.guard)}]</small>` : '';
  return `<button type="button" class="chip${extra}" data-focus-transition="${e(id)}" title="${e(descriptionOf(chart, id))} (click: show on the chart)">${e(id)}${guard}</button>`;
}

/** The key of the simulator trace that shows a shortest path taking transition `id`. */
export function pathTraceKey(id: string): string {
  return `path-${id}`;
}

/** A "show me a path" button for transition `id`, when the page holds a path to it. */
function pathButton(input: PageInput, id: string): string {
  const key = pathTraceKey(id);
  if (!input.simulatorData.traces.some((trace) => trace.key === key)) return '';
  return `<button type="button" class="path" data-load-trace="${e(key)}" data-run-trace="end" data-show-transition="${e(id)}" title="load a shortest path to a state where ${e(id)} is taken, and step it in the simulator">show me a path</button>`;
}

/** The bounds of the page's own exploration, in words, or null when it did not explore. */
function explorationBounds(input: PageInput): string | null {
  const params = input.exploration[0]?.params;
  return params ? `${boundsText(params)}; fence policies ${input.exploration.map((run) => run.params.fencePolicy).join(' and ')}` : null;
}

const resultClass: Record<ClaimResult, string> = { passed: 'passed', failed: 'failed', 'not covered': 'not-covered', 'no conformance run': 'no-run' };

function verdicts(input: PageInput): string {
  const { conformance, claims, exploration } = input;
  const conformanceChip = conformance
    ? `<span class="verdict ${conformance.passed ? 'ok' : 'bad'}">conformance ${conformance.passed ? 'passed' : 'FAILED'}</span>`
    : '<span class="verdict none">no conformance run yet</span>';
  const passed = claims.filter((row) => row.result === 'passed').length;
  const claimChip = conformance
    ? `<span class="verdict ${passed === claims.length ? 'ok' : 'bad'}">claims ${passed}/${claims.length} passed</span>`
    : `<span class="verdict none">claims ${claims.filter((row) => row.transitions.length > 0).length}/${claims.length} traced</span>`;
  const violations = exploration.flatMap((run) => run.violations);
  const propertyChip = exploration.length
    ? `<a class="verdict ${violations.length === 0 && exploration.every((run) => run.complete) ? 'ok' : 'bad'}" href="#properties" data-verdict="properties">P1-P7, P9 ${violations.length === 0 ? 'hold' : `${violations.length} violated`} in ${count(exploration.reduce((sum, run) => sum + run.states, 0))} states <small>(bounds: ${e(explorationBounds(input)!)})</small></a>`
    : '<span class="verdict none">P1-P7, P9 not explored</span>';
  return `<div class="verdicts">${conformanceChip}${claimChip}${propertyChip}</div>`;
}

function intro(input: PageInput): string {
  const { chart, conformance } = input;
  const moves = chart.regions.reduce((sum, region) => sum + region.moves.length, 0);
  const states = chart.regions.reduce((sum, region) => sum + region.states.length, 0);
  const figures: [string, string][] = [
    [String(input.claims.length), 'claims, each traced to transitions'],
    [String(chart.regions.length), 'parallel regions (3 sites, 3 pairs)'],
    [String(states), 'states'],
    [`${chart.rootTransitions.length} + ${moves}`, 'event variants + region moves'],
  ];
  if (conformance) {
    figures.push([count(conformance.paths), 'generated paths run on the implementation'], [count(conformance.steps), 'steps compared with the model']);
    if (conformance.faults.total > 0) figures.push([`${conformance.faults.caught}/${conformance.faults.total}`, 'injected faults caught']);
  }
  return `<section id="overview"><div class="intro"><p>This page is the specification of three-site journaled replication (sync copy site 1 &rarr; site 2, async journal copy to site 3, failover with delta resync),
drawn from the statechart in <code>model/machine.ts</code>, with the evidence that the implementation in <code>impl/</code> follows it. Start with the simulator: click events and watch each site's
mode, journal and volumes, and the chart below highlight the current state. Every claim row links to the transitions that implement it; hover any transition on the chart for its claim text.</p></div>
<div class="figures">${figures.map(([value, label]) => `<div class="figure"><b>${e(value)}</b><span>${e(label)}</span></div>`).join('')}</div>
${input.conformanceProblem ? `<p class="violation">The conformance report could not be used: ${e(input.conformanceProblem)}</p>` : ''}
${!conformance && !input.conformanceProblem ? '<p><b>No conformance run yet</b>: run <code>npm start</code> to write <code>reports/conformance.json</code>, then <code>npm run review</code>; the claims show their transitions until then.</p>' : ''}
</section>`;
}

function simulator(input: PageInput): string {
  const chart = input.diagrams[0]!;
  return `<section id="simulator"><h2>The specification, running</h2>
<p class="lead">The same statechart as the specification, bundled into this page and stepped with xstate: the enabled events are buttons; each site shows its mode, its journal (entries with their update numbers),
its volumes and their SHA-256 digest, exactly as <code>observe()</code> of <code>model/observe.ts</code> computes them. A counterexample can be loaded and stepped through.</p>
<div class="sim-toolbar">
<button type="button" id="sim-back">&#8630; back</button><button type="button" id="sim-reset">reset</button>
<form id="sim-params">model bounds:
<label>volumes <input type="number" name="volumeCount" min="1" max="8"></label>
<label>blocks/volume <input type="number" name="blocksPerVolume" min="1" max="64"></label>
<label>journal entries <input type="number" name="journalEntriesMax" min="1" max="64"></label>
<label>pull batch <input type="number" name="pullBatchEntriesMax" min="1" max="64"></label>
<label>fence policy <select name="fencePolicy"><option value="keepWriting">keepWriting</option><option value="refuse">refuse</option></select></label>
<button type="submit">apply (restarts)</button></form>
</div>
<div id="sim-message" hidden></div>
<div id="sim-viewing" hidden></div>
<div class="sim-overview">
<figure class="topology-figure"><figcaption><b>Topology now</b>: an arrow is a pair carrying data, in its direction (blue sync copy, green asynchronous journal copy, amber delta resync); dotted violet: the standby pair (HOLD/HLDE); a red cross: a cut link.</figcaption><div id="sim-topology"></div></figure>
<div class="pair-state-panel"><h4>Pair states, as a storage array shows them (Hitachi TrueCopy / Universal Replicator)</h4><div id="sim-pairs"></div>
<details id="pair-state-mapping"><summary>how the model's states map to these statuses</summary><table class="evidence mapping"><thead><tr><th>model</th><th>status (P-VOL / S-VOL)</th><th>why</th></tr></thead><tbody>${pairStatusMapping
    .map((row) => `<tr><td><code>${e(row.model)}</code></td><td><b>${e(row.status)}</b></td><td>${e(row.why)}</td></tr>`)
    .join('')}</tbody></table>
<p>Fence level: the model's fence policy <code>refuse</code> is TrueCopy's fence level DATA, <code>keepWriting</code> is NEVER (the changed-block record stands for the array's differential bitmap). Journal fill counts entries against the model's journal capacity; "high water" is 80% (PFUL).</p></details></div>
</div>
<p class="legend changed-legend"><span><i class="changed-swatch"></i>changed at the step shown</span> Click any step under "Steps taken" to see the simulation as it was then.</p>
<div class="sim-grid">
<div><div id="sim-sites"></div><div id="sim-events"></div></div>
<div class="side">
<div><h4>Steps taken</h4><div id="sim-log"></div></div>
<div id="sim-stories"><h4>Stories to step through</h4>${input.simulatorData.traces
    .filter((trace) => trace.kind === 'story')
    .map((trace) => `<button type="button" class="story" data-load-trace="${e(trace.key)}" title="${e(trace.summary)}">&#9654; ${e(trace.title.replace(/^story: /, ''))}</button>`)
    .join('')}</div>
<div id="sim-trace"><h4>Load a trace</h4>
<div class="trace-row"><select id="trace-select" aria-label="trace"></select><button type="button" id="trace-load">load</button></div>
<div class="trace-row"><button type="button" id="trace-next">step &#9654;</button><button type="button" id="trace-run">run to the divergence</button></div>
<div class="trace-row"><label>or a conformance.json from disk: <input type="file" id="trace-file" accept=".json,application/json"></label></div>
<details><summary>or paste events, one per line</summary><textarea id="trace-paste" placeholder="HOST_WRITE host=1 volume=0 block=0 data=1&#10;FAIL_SITE site=1&#10;FAILOVER force=false"></textarea><button type="button" id="trace-paste-load">load pasted</button></details>
<div id="trace-steps"></div></div>
</div></div>
<div class="chart-bar"><h3 id="statechart">The whole statechart</h3><button type="button" id="chart-zoom">fit to width</button>
<span class="legend"><span><i style="background:var(--hi)"></i>current state</span><span><i style="background:var(--taken)"></i>last step</span><span><i style="background:#2f5d8a"></i>implements claims</span><span><i style="background:#8a8f96"></i>beyond the claims</span></span>
<span class="legend">rendered by Graphviz ${e(input.graphvizVersion)} (WebAssembly) in ${ms(input.timings.statechartMs)} (${ms(input.timings.statechartWarmMs)} warm)</span></div>
<div id="chart-view" class="natural">${chart.svg}</div>
</section>`;
}

function pathsCell(row: ClaimEvidence, conformance: ConformanceReport | null): string {
  if (!conformance) return '<span class="badge no-run">no conformance run yet</span>';
  const { transitionPaths: t, pairPaths: p } = row;
  const parts: string[] = [];
  parts.push(
    t.total
      ? `<b>${t.passed}/${t.total}</b> transition paths passed`
      : 'no transition-targeted path',
  );
  parts.push(p.total ? `<b>${count(p.passed)}/${count(p.total)}</b> pair paths passed` : 'no pair path');
  const failed = [...t.failedTargets, ...p.failedTargets];
  const details = t.targets.length
    ? `<details><summary>targets</summary><div>${t.targets.map(e).join('<br>')}${failed.length ? `<br><b class="violation">failed:</b><br>${failed.map(e).join('<br>')}` : ''}</div></details>`
    : '';
  const divergences = row.divergences.length
    ? `<div class="violation">diverged at a step taking its transitions: ${row.divergences.map((index) => `<a href="#divergence-${index}">#${index + 1}</a>`).join(', ')}</div>`
    : '';
  return `<div class="paths">${parts.join('<br>')}${details}${divergences}</div>`;
}

/** A claim's words with every storage area, storage system and host device named as this project builds it. */
function claimTextHtml(text: string): string {
  return claimTextPieces(text)
    .map((piece) => {
      if ('area' in piece) return `<span class="area" data-area="${piece.area.number}" title="${e(piece.area.here)}">${e(piece.text)} <b>[${e(storageAreaShort(piece.area))}]</b></span>`;
      if ('part' in piece) return `<span class="part">${e(piece.text)} <b>[${e(piece.part)}]</b></span>`;
      return e(piece.text);
    })
    .join('');
}

function storageAreaTable(): string {
  const rows = storageAreas
    .map((area) => `<tr data-area-row="${area.number}"><td class="num">${area.number}</td><td>${e(area.words)}</td><td><b>${e(storageAreaShort(area))}</b></td><td>${e(area.here)}</td><td>${area.claims.map((n) => `<a href="#claim-${n}">${n}</a>`).join(', ')}</td></tr>`)
    .join('');
  const parts = claimParts.map((part) => `<li><i>${e(part.words)}</i>: ${e(part.here)}</li>`).join('');
  return `<div class="areas"><table class="evidence storage-areas"><thead><tr><th>#</th><th>the claims say</th><th>here</th><th>what it holds</th><th>claims that use it</th></tr></thead><tbody>${rows}</tbody></table>
<ul class="plain parts">${parts}</ul></div>`;
}

function claimsSection(input: PageInput): string {
  const rows = input.claims.map((row) => {
    const chips = row.transitions
      .map((transition) => {
        const mark = transition.covered === null ? '' : transition.covered ? ' <span class="tick" title="covered by the conformance run">&#10003;</span>' : ' <span class="cross" title="not covered by the conformance run">&#10007;</span>';
        const button = chip(input.chart, transition.id, transition.covered === false ? ' uncovered' : '').replace('</button>', `${mark}</button>`);
        return `<li>${button} ${pathButton(input, transition.id)} <span class="desc">${e(transition.description)}</span></li>`;
      })
      .join('');
    const explored = row.transitions.some((transition) => transition.explored)
      ? `<div class="ok" style="font-size:12px">taken by the exploration (${row.transitions.filter((transition) => transition.explored).length}/${row.transitions.length})</div>`
      : '';
    const text = input.claimTexts[row.claim.number - 1];
    const volumes = (severalVolumeClaims as readonly number[]).includes(row.claim.number) && !input.exploration.some((run) => exercisesSeveralVolumes(run.params))
      ? '<div class="warn bounds-note">the page explored one volume per site: this claim was not exercised by that exploration</div>'
      : '';
    return `<tr id="claim-${row.claim.number}" data-claim="${row.claim.number}" data-result="${e(row.result)}">
<td class="num">${row.claim.number}</td>
<td class="subject">${e(row.claim.subject)}${row.claim.dependsOn ? `<small>depends on claim ${row.claim.dependsOn}</small>` : '<small>independent claim</small>'}${volumes}</td>
<td class="claim-text" data-field="claim-text">${text ? claimTextHtml(text) : '<span class="violation">no text for this claim</span>'}${row.claim.interval ? `<div class="interval" data-field="interval"><b>What stands for the interval:</b> ${e(row.claim.interval)}</div>` : ''}</td>
<td><ul class="transitions">${chips}</ul>${explored}</td>
<td>${pathsCell(row, input.conformance)}</td>
<td><span class="badge ${resultClass[row.result]}">${e(row.result)}</span></td></tr>`;
  });
  return `<section id="claims"><h2>The 40 claims</h2>
<p class="lead">Each claim in its own words as filed (<code>shared/seed/claims.txt</code>), with every storage area named as the site's volumes or journal it is here, beside our one-line paraphrase;
its transitions in the statechart (from each transition's <code>meta.claims</code>; click one to see it on the chart, or <b>show me a path</b> to step a shortest path to it in the simulator), the generated paths of the latest conformance run that exercise it
(each path is a JUnit case of <code>reports/conformance.junit.xml</code>), and its result: <b>passed</b> when its transitions were covered and no divergence happened at a step taking them,
<b>failed</b> when one did, <b>not covered</b> when the run never took them.</p>
<h3 id="storage-areas">The claims' storage areas, named</h3>${storageAreaTable()}
<table class="evidence fixed claims-table"><colgroup><col style="width:2.6em"><col style="width:14%"><col style="width:31%"><col><col style="width:13em"><col style="width:8.5em"></colgroup>
<thead><tr><th>#</th><th>Paraphrase</th><th>The claim's words</th><th>Transitions that implement it</th><th>Generated paths that exercise it</th><th>Latest run</th></tr></thead>
<tbody>${rows.join('\n')}</tbody></table></section>`;
}

function counterexampleHtml(row: PropertyEvidence, run: PropertyEvidence['exploration'][number]): string {
  const violation = run.violation!;
  const key = `counterexample-${run.source === 'this page' ? 'page' : 'file'}-${run.fencePolicy}-${row.property}`;
  return `<div class="violation"><b>VIOLATED</b> (${e(run.fencePolicy)}, ${e(run.source)}): ${e(violation.message)}
<ol>${violation.path.map((event) => `<li>${e(event)}</li>`).join('')}</ol>${run.source === 'this page' ? `<button type="button" data-load-trace="${e(key)}">load in the simulator</button>` : ''}</div>`;
}

function propertiesSection(input: PageInput): string {
  const rows = input.properties.map((row) => {
    const exploration = row.exploration.length
      ? row.exploration
          .map((run) =>
            run.violation
              ? counterexampleHtml(row, run)
              : `<div class="ok">holds (${e(run.fencePolicy)}, ${e(run.source)}): ${count(run.states)} states, ${count(run.transitions)} transitions${run.complete ? '' : ' <b class="violation">(incomplete)</b>'} <span class="bounds" data-bounds>at ${e(run.bounds)}</span></div>`,
          )
          .join('')
      : '<span class="badge no-run">not explored</span>';
    const conformance = row.conformance
      ? row.conformance.divergences.length
        ? `<div class="violation">${row.conformance.divergences.length} divergence(s) in the fields that witness it: ${row.conformance.divergences.map((i) => `<a href="#divergence-${i}">#${i + 1}</a>`).join(', ')}</div>`
        : `<div class="ok">no divergence in the fields that witness it, over ${count(row.conformance.steps)} steps of ${count(row.conformance.paths)} paths</div>`
      : '<span class="badge no-run">no conformance run yet</span>';
    return `<tr id="property-${row.property}" data-property="${row.property}"><td class="num">${row.property}</td><td class="subject">${e(row.statement)}</td><td>${exploration}</td><td>${conformance}</td></tr>`;
  });
  const bounds = explorationBounds(input);
  const severalVolumes = input.exploration.some((run) => exercisesSeveralVolumes(run.params));
  return `<section id="properties"><h2>Safety properties P1-P7 and P9</h2>
<p class="lead">Checked on the model by exhaustive exploration of every reachable state and transition${bounds ? ` (this page explored at <b data-bounds>${e(bounds)}</b>${input.timings.exploreMs !== null ? `, in ${ms(input.timings.exploreMs)}` : ''})` : ''},
and on the implementation at every step of the conformance run through the observation.${input.exploreProblem ? ` <b class="violation">${e(input.exploreProblem)}</b>` : ''}</p>
${bounds && !severalVolumes ? `<p class="warn bounds-note" id="several-volumes-note"><b>Not exercised here: claims ${severalVolumeClaims.join(', ')}</b> (several volumes in one consistency group, one journal and one update-number sequence across them).
These bounds have one volume per site, so "holds" above says nothing about them. <code>npm run explore</code> (default bounds: 2 volumes) and the conformance run (<code>npm start</code>: two volumes at the small bounds) do exercise them;
this page does not explore 2 volumes itself, because that exploration was not shown to fit the page's build time.</p>` : ''}
<table class="evidence"><thead><tr><th>#</th><th>Property</th><th>Exploration of the model</th><th>Conformance of the implementation</th></tr></thead><tbody>${rows.join('\n')}</tbody></table></section>`;
}

function decisionsSection(input: PageInput): string {
  const rows = input.decisions.map(
    ({ decision, transitions }) => `<tr id="decision-${e(decision.key)}"><td class="subject"><b>${e(decision.title)}</b><br>${e(decision.text)}</td><td>${e(decision.source)}</td><td>${e(decision.follows)}</td><td>${transitions.map((id) => `${chip(input.chart, id)}${pathButton(input, id)}`).join(' ')}</td></tr>`,
  );
  return `<section id="decisions"><h2>Decisions where the claims are silent</h2>
<p class="lead">What this project decided where the claim set says nothing, following the products storage engineers know (from <code>shared/DESIGN.md</code> and the <b>Decision</b> paragraphs of <code>model/README.md</code>), each linked to the transitions that carry it out.</p>
<table class="evidence"><thead><tr><th>Decision</th><th>Written in</th><th>Follows</th><th>Transitions</th></tr></thead><tbody>${rows.join('\n')}</tbody></table></section>`;
}

function regionsSection(input: PageInput): string {
  const regions = input.diagrams.slice(1);
  const tabs = regions
    .map((diagram, i) => `<input type="radio" name="region-tab" id="tab-${e(diagram.name)}"${i === 0 ? ' checked' : ''}><label for="tab-${e(diagram.name)}">${e(diagram.name)}</label>`)
    .join('');
  const figures = regions.map((diagram) => `<figure id="figure-${e(diagram.name)}">${diagram.svg}<figcaption class="legend">reports/${e(diagram.name)}.svg, rendered in ${ms(diagram.ms)}</figcaption></figure>`).join('');
  return `<section id="regions"><h2>One diagram per storage system and per pair</h2>
<p class="lead">Each region alone, every move labelled with all the root events that cause it (found by exploring the model), their guards and claims, under the table of those events. The simulator highlights these too.
Files: <a href="statechart.svg">statechart.svg</a>, <a href="statechart.dot">statechart.dot</a>, <a href="statechart.scxml">statechart.scxml</a> (W3C SCXML), <a href="statechart.stately.js">statechart.stately.js</a> (for XState's editor).</p>
<div class="region-tabs">${tabs}${figures}</div></section>`;
}

function conformanceSection(input: PageInput): string {
  const report = input.conformance;
  if (!report) {
    return `<section id="conformance"><h2>Conformance run</h2><p>No conformance run yet${input.conformanceProblem ? ` (${e(input.conformanceProblem)})` : ''}. <code>npm start</code> runs it and writes <code>reports/conformance.json</code>; <code>npm run review</code> then rebuilds this page.</p></section>`;
  }
  const coverage = Object.entries(report.coverage)
    .map(([dimension, figure]) => `<tr><td>${e(dimension)}</td><td>${count(figure.covered)} / ${count(figure.total)}</td><td>${figure.missing.length ? count(figure.missing.length) : '&ndash;'}</td><td>${figure.unreachable.length ? count(figure.unreachable.length) : '&ndash;'}</td></tr>`)
    .join('');
  const mustHappen = report.mustHappen.map((check) => `<li class="${check.happened ? 'ok' : 'violation'}">${check.happened ? '&#10003;' : '&#10007;'} ${e(check.name)}</li>`).join('');
  const faults = report.faults.list.map((fault) => `<li class="${fault.caught ? 'ok' : 'violation'}">${fault.caught ? '&#10003; caught' : '&#10007; missed'}: <b>${e(fault.name)}</b> ${e(fault.description)}</li>`).join('');
  const divergences = report.divergences
    .slice(0, divergencesListedMax)
    .map(
      (divergence, i) => `<div id="divergence-${i}"><b>#${i + 1}</b> ${e(divergence.fencePolicy)}, ${e(divergence.strategy)} ${e(divergence.target)}, step ${divergence.step + 1} of ${divergence.path.length}
<button type="button" data-load-trace="divergence-${i}">load in the simulator</button><pre class="divergence">${e(divergence.summary)}</pre></div>`,
    )
    .join('');
  return `<section id="conformance"><h2>Conformance run</h2>
<p class="lead">${report.passed ? '<b class="ok">Passed.</b>' : '<b class="violation">Failed.</b>'} Seed ${report.seed}; ${count(report.paths)} generated paths and ${count(report.steps)} steps${report.walks ? `, ${count(report.walks.runs)} random walks of ${count(report.walks.steps)} steps` : ''}, in ${ms(report.ms)}; the model explored ${count(report.exploration.states)} states for the plan.</p>
<table class="evidence" style="max-width:760px"><thead><tr><th>coverage</th><th>covered / total</th><th>missing</th><th>unreachable at the bounds</th></tr></thead><tbody>${coverage}</tbody></table>
<h3>Must happen</h3><ul class="plain">${mustHappen || '<li>none recorded</li>'}</ul>
<h3>Fault catalogue: ${report.faults.total ? `${report.faults.caught} of ${report.faults.total} caught` : 'not run'}</h3>${faults ? `<ul class="plain">${faults}</ul>` : ''}
<h3>Divergences: ${report.divergences.length}</h3>${divergences || '<p class="ok">none: the implementation followed the model at every step.</p>'}
${report.divergences.length > divergencesListedMax ? `<p>${report.divergences.length - divergencesListedMax} more are in the simulator's trace list.</p>` : ''}</section>`;
}

/** The whole page. */
export function reviewPageHtml(input: PageInput): string {
  const data = JSON.stringify(input.simulatorData).replace(/</g, '\\u003c');
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Three-site replication: specification review</title>
<style>${pageStyle}</style></head>
<body>
<header class="top"><h1>Three-site replication: specification review</h1>
<nav><a href="#simulator">simulator &amp; chart</a><a href="#claims">claims</a><a href="#properties">P1-P7, P9</a><a href="#decisions">decisions</a><a href="#regions">per-region diagrams</a><a href="#conformance">conformance run</a></nav>
${verdicts(input)}</header>
<main>
${intro(input)}
${simulator(input)}
${claimsSection(input)}
${propertiesSection(input)}
${decisionsSection(input)}
${regionsSection(input)}
${conformanceSection(input)}
</main>
<footer>Built ${e(input.builtAt)} by <code>npm run review</code> from <code>model/machine.ts</code>${input.conformance ? ' and <code>reports/conformance.json</code>' : ''}.
Rendering: whole chart ${ms(input.timings.statechartMs)} (${ms(input.timings.statechartWarmMs)} warm), all ${input.diagrams.length} diagrams ${ms(input.timings.renderMs)}; simulator bundled in ${ms(input.timings.bundleMs)}${input.timings.exploreMs !== null ? `; exploration ${ms(input.timings.exploreMs)}` : ''}.</footer>
<script type="application/json" id="${simulatorDataId}">${data}</script>
<script>${scriptText(input.simulatorScript)}</script>
</body></html>
`;
}
