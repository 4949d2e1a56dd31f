/**
 * The review page's stylesheet, inlined into the page (no network at view time). Also the marks the
 * simulator puts on the diagrams: `active` on a current state, `taken` on the last step's transitions,
 * `focus` on a transition chosen in the claims table.
 */
export const pageStyle = `
:root { --ink: #1f2933; --muted: #5b6770; --line: #d5dbe1; --paper: #ffffff; --wash: #f4f6f8; --blue: #2f5d8a;
  --ok: #1d7a46; --okbg: #e3f4ea; --bad: #b42318; --badbg: #fdecea; --warn: #8a5a00; --warnbg: #fff4d6; --hi: #ffd966; --hiline: #b7791f; --taken: #d9480f; }
* { box-sizing: border-box; }
html { scroll-padding-top: 8px; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: var(--ink); background: var(--wash); }
a { color: var(--blue); }
code, .mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; font-size: 12px; }
header.top { background: var(--ink); color: #fff; padding: 10px 24px; display: flex; flex-wrap: wrap; gap: 8px 24px; align-items: center; }
header.top h1 { font-size: 18px; margin: 0; font-weight: 600; }
header.top nav a { color: #cfe0f3; margin-right: 14px; text-decoration: none; font-size: 13px; }
header.top nav a:hover { text-decoration: underline; }
.verdicts { display: flex; gap: 8px; flex-wrap: wrap; margin-left: auto; }
.verdict { border-radius: 999px; padding: 3px 12px; font-size: 13px; font-weight: 600; background: #33414f; color: #fff; }
.verdict.ok { background: var(--ok); color: #fff; } .verdict.bad { background: var(--bad); color: #fff; } .verdict.none { background: #6b7785; color: #fff; }
main { padding: 16px 24px 48px; }
section { background: var(--paper); border: 1px solid var(--line); border-radius: 8px; padding: 16px 20px; margin: 0 0 20px; }
section > h2 { margin: 0 0 4px; font-size: 20px; }
section > p.lead { margin: 0 0 12px; color: var(--muted); max-width: 110ch; }
.intro { display: flex; gap: 24px; flex-wrap: wrap; align-items: baseline; }
.intro p { margin: 0; max-width: 120ch; }
.figures { display: flex; gap: 12px; flex-wrap: wrap; margin: 10px 0 0; }
.figure { background: var(--wash); border: 1px solid var(--line); border-radius: 6px; padding: 6px 12px; }
.figure b { font-size: 18px; display: block; }
.figure span { color: var(--muted); font-size: 12px; }
/* Simulator */
.sim-toolbar { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; margin: 0 0 12px; }
.sim-toolbar form { display: flex; flex-wrap: wrap; gap: 6px 10px; align-items: center; font-size: 13px; color: var(--muted); }
.sim-toolbar input { width: 3.6em; } .sim-toolbar select, .sim-toolbar input { font: inherit; padding: 2px 4px; }
button { font: inherit; cursor: pointer; border: 1px solid #b9c3cd; background: #fff; border-radius: 6px; padding: 4px 10px; }
button:hover:not(:disabled) { background: #eef4fb; border-color: var(--blue); }
button:disabled { opacity: .45; cursor: default; }
.sim-grid { display: grid; grid-template-columns: minmax(0, 3fr) minmax(300px, 1.15fr); gap: 16px; align-items: start; }
#sim-sites { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)) minmax(0, 1.2fr); gap: 12px; }
@media (max-width: 1300px) { #sim-sites { grid-template-columns: repeat(2, minmax(0, 1fr)); } .sim-grid { grid-template-columns: 1fr; } }
article.site, article.pairs { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; background: #fbfcfd; border-top: 4px solid #8da2b8; }
article.site.mode-failed { border-top-color: var(--bad); background: #fff8f7; }
article.site.mode-resyncing { border-top-color: #d69e2e; }
article.site.mode-syncReversed { border-top-color: #7c3aed; }
article.site.mode-normal { border-top-color: var(--ok); }
article header { display: flex; align-items: baseline; gap: 8px; flex-wrap: wrap; margin-bottom: 4px; }
article h3 { margin: 0; font-size: 16px; }
article .role { color: var(--muted); font-size: 12px; }
article .mode { margin-left: auto; font-weight: 700; font-size: 12px; padding: 1px 8px; border-radius: 999px; background: var(--okbg); color: var(--ok); }
.mode-failed .mode { background: var(--badbg); color: var(--bad); } .mode-resyncing .mode { background: var(--warnbg); color: var(--warn); }
.mode-syncReversed .mode { background: #efe7fd; color: #5b21b6; }
article dl { display: grid; grid-template-columns: max-content 1fr; gap: 1px 10px; margin: 4px 0; font-size: 12.5px; }
article dt { color: var(--muted); } article dd { margin: 0; min-width: 0; }
article.pairs dd b { font-weight: 700; } article.pairs dd small { color: var(--muted); }
.warn { color: var(--warn); }
.label { color: var(--muted); font-size: 11px; text-transform: uppercase; letter-spacing: .04em; margin-top: 6px; }
ol.journal { list-style: none; padding: 0; margin: 2px 0; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; max-height: 9.5em; overflow: auto; }
ol.journal li { padding: 1px 4px; border-left: 3px solid #8da2b8; margin: 1px 0; background: #f1f4f7; }
ol.journal li.none { border-left-color: transparent; background: none; color: var(--muted); }
ol.journal .u { font-weight: 700; color: var(--blue); }
.volumes { display: flex; flex-direction: column; gap: 2px; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 12px; }
.volume span { color: var(--muted); display: inline-block; width: 3.6em; }
.volume i { font-style: normal; display: inline-block; min-width: 2.4em; text-align: center; margin-right: 2px; background: #dbeafe; border-radius: 3px; }
.volume i.zero { background: #eef0f2; color: #9aa3ad; }
.digest { margin-top: 6px; font-size: 12px; color: var(--muted); }
#sim-events .group { display: flex; flex-wrap: wrap; gap: 6px; align-items: center; margin: 8px 0; }
#sim-events .group .label { width: 9.5em; margin: 0; }
button.event { font-size: 12.5px; padding: 3px 9px; background: #f3f8fd; border-color: #9dbbd8; }
button.event small { color: var(--muted); font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11px; }
details.refused { margin-top: 6px; font-size: 12.5px; color: var(--muted); }
details.refused ul { margin: 4px 0; padding-left: 18px; max-height: 12em; overflow: auto; }
#sim-message { background: var(--warnbg); color: var(--warn); border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
.side h4 { margin: 0 0 6px; font-size: 14px; }
.side > div { border: 1px solid var(--line); border-radius: 8px; padding: 10px 12px; margin-bottom: 12px; background: #fbfcfd; }
#sim-log ol { margin: 0; padding-left: 0; list-style: none; max-height: 22em; overflow: auto; font-size: 12px; }
#sim-log li { padding: 3px 0; border-bottom: 1px dotted var(--line); position: relative; padding-left: 2.2em; }
#sim-log li .n { position: absolute; left: 0; top: 3px; color: var(--muted); }
#sim-log .variant { color: var(--blue); } #sim-log .moves { color: var(--muted); font-size: 11.5px; }
#trace-steps ol { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; padding-left: 2.6em; max-height: 14em; overflow: auto; }
#trace-steps li.done { color: var(--muted); } #trace-steps li.next { font-weight: 700; background: var(--warnbg); }
#trace-steps li.diverged { color: var(--bad); } #trace-steps li.diverged::after { content: "  \\2190 diverged here"; font-weight: 700; }
#trace-steps .summary { white-space: pre-wrap; font-size: 12px; }
button.story { display: block; width: 100%; text-align: left; margin: 0 0 5px; font-size: 12.5px; background: #f3f8fd; border-color: #9dbbd8; }
#trace-paste { width: 100%; height: 5em; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; }
.trace-row { display: flex; gap: 6px; flex-wrap: wrap; align-items: center; margin: 4px 0; }
.trace-row select { min-width: 0; flex: 1; font: inherit; }
/* Diagrams */
.chart-bar { display: flex; gap: 12px; align-items: center; margin: 14px 0 6px; flex-wrap: wrap; }
.chart-bar h3 { margin: 0; font-size: 16px; }
.legend { font-size: 12px; color: var(--muted); display: flex; gap: 14px; flex-wrap: wrap; }
.legend i { display: inline-block; width: 14px; height: 10px; border-radius: 3px; vertical-align: middle; margin-right: 4px; }
#chart-view { border: 1px solid var(--line); border-radius: 8px; overflow: auto; background: #fff; max-height: 92vh; }
#chart-view svg { display: block; width: 100%; height: auto; }
#chart-view.natural svg { width: auto; max-width: none; }
.region-tabs > input { display: none; }
.region-tabs > label { display: inline-block; padding: 5px 14px; border: 1px solid var(--line); border-bottom: none; border-radius: 6px 6px 0 0; margin-right: 4px; cursor: pointer; background: var(--wash); }
.region-tabs > input:checked + label { background: #fff; font-weight: 700; }
.region-tabs > figure { display: none; margin: 0; border: 1px solid var(--line); padding: 8px; overflow: auto; }
.region-tabs > figure svg { max-width: 100%; height: auto; }
${['site1', 'site2', 'site3', 'syncPair', 'asyncPair', 'standbyPair'].map((region) => `#tab-${region}:checked ~ #figure-${region}`).join(', ')} { display: block; }
svg .node.active path, svg .node.active polygon, svg .node.active ellipse { fill: var(--hi); stroke: var(--hiline); stroke-width: 3px; }
svg .edge.taken path { stroke: var(--taken); stroke-width: 3px; }
svg .edge.taken polygon { fill: var(--taken); stroke: var(--taken); }
svg .edge.taken text { fill: var(--taken); font-weight: 700; }
svg g.taken > a > polygon:first-of-type { fill: var(--hi); }
svg .focus path, svg .focus polygon { stroke: #7c3aed; stroke-width: 4px; }
svg g.focus > a > polygon:first-of-type { fill: #e9ddff; }
/* Topology, pair states, what changed */
.sim-overview { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.6fr); gap: 16px; align-items: start; margin: 0 0 12px; }
@media (max-width: 1300px) { .sim-overview { grid-template-columns: minmax(0, 1fr); } }
.topology-figure { margin: 0; border: 1px solid var(--line); border-radius: 8px; padding: 8px; background: #fff; }
.topology-figure figcaption { font-size: 12px; color: var(--muted); }
svg.topology { display: block; width: 100%; max-width: 620px; height: auto; }
.pair-state-panel h4 { margin: 0 0 6px; font-size: 14px; }
table.pair-states th[scope="row"] { font-weight: 600; background: none; position: static; border-bottom: 1px solid var(--line); }
.status { font-family: ui-monospace, Menlo, Consolas, monospace; font-weight: 700; padding: 0 5px; border-radius: 4px; background: #eef0f2; }
.status-pair { background: var(--okbg); color: var(--ok); } .status-copy, .status-pful, .status-hold { background: var(--warnbg); color: var(--warn); }
.status-psue, .status-pfus, .status-hlde, .status-ssws, .status-unknown { background: var(--badbg); color: var(--bad); }
table.mapping { font-size: 12px; margin: 6px 0; }
#sim-sites .changed, #sim-pairs .changed { background: #fff1b8; box-shadow: 0 0 0 2px #f0b429 inset; border-radius: 3px; }
svg.topology .changed rect, svg.topology .changed line { filter: drop-shadow(0 0 4px #f0b429); }
.changed-swatch { display: inline-block; width: 14px; height: 10px; background: #fff1b8; box-shadow: 0 0 0 2px #f0b429 inset; margin-right: 4px; vertical-align: middle; }
#sim-viewing { background: #e9ddff; color: #4c1d95; border-radius: 6px; padding: 6px 10px; margin: 8px 0; }
#sim-log li.viewing { background: #e9ddff; }
#sim-log button.step { border: none; background: none; padding: 0; text-align: left; color: var(--ink); text-decoration: underline dotted; }
button.path { font-size: 11.5px; padding: 0 6px; background: #f3ecff; border-color: #c4b5fd; }
/* Claims, with their words */
.areas { display: grid; grid-template-columns: minmax(0, 3fr) minmax(0, 1fr); gap: 16px; margin: 0 0 14px; }
@media (max-width: 1300px) { .areas { grid-template-columns: minmax(0, 1fr); } }
.parts { font-size: 12.5px; }
td.claim-text { font-size: 12.5px; line-height: 1.5; }
td.claim-text .area b { color: #7c3aed; font-weight: 600; font-size: 11.5px; white-space: nowrap; }
td.claim-text .part b { color: var(--blue); font-weight: 600; font-size: 11.5px; white-space: nowrap; }
table.claims-table td { overflow-wrap: anywhere; }
table.claims-table .chip { max-width: 100%; text-align: left; }
.bounds { color: var(--muted); font-size: 12px; }
.bounds-note { font-size: 12.5px; }
td.claim-text .interval { margin-top: 6px; padding: 4px 6px; background: var(--wash); border-left: 3px solid var(--blue); }
.verdict small { font-weight: 400; opacity: .9; }
a.verdict { text-decoration: none; }
table.evidence .badge { white-space: normal; }
/* Tables */
table.evidence { border-collapse: collapse; width: 100%; font-size: 13px; }
table.evidence.fixed { table-layout: fixed; }
ul.transitions { list-style: none; margin: 0; padding: 0; }
ul.transitions li { margin: 0 0 3px; }
ul.transitions .desc { color: var(--muted); font-size: 12.5px; }
table.evidence th { text-align: left; background: var(--wash); position: sticky; top: 0; z-index: 1; border-bottom: 2px solid var(--line); padding: 6px 8px; }
table.evidence td { border-bottom: 1px solid var(--line); padding: 6px 8px; vertical-align: top; }
table.evidence tr:target td { background: #fffbe6; }
td.num { font-weight: 700; font-size: 15px; width: 2.5em; }
td.subject { max-width: 34ch; }
td.subject small { display: block; color: var(--muted); }
.chip { display: inline-block; margin: 1px 3px 3px 0; padding: 1px 7px; border-radius: 5px; font-size: 12px; background: #eef4fb; border: 1px solid #c5d7ea; }
.chip small { color: var(--muted); }
.chip.uncovered { background: var(--badbg); border-color: #f3b5ae; }
.chip .tick { color: var(--ok); font-weight: 700; } .chip .cross { color: var(--bad); font-weight: 700; }
.badge { display: inline-block; border-radius: 999px; padding: 2px 10px; font-weight: 700; font-size: 12px; white-space: nowrap; }
.badge.passed { background: var(--okbg); color: var(--ok); } .badge.failed { background: var(--badbg); color: var(--bad); }
.badge.not-covered { background: var(--warnbg); color: var(--warn); } .badge.no-run { background: #eef0f2; color: var(--muted); }
.paths { font-size: 12.5px; } .paths details summary { cursor: pointer; color: var(--blue); }
.paths details div { max-height: 10em; overflow: auto; font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; }
.violation { color: var(--bad); } .violation ol { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 11.5px; margin: 4px 0; }
.ok { color: var(--ok); }
ul.plain { margin: 4px 0; padding-left: 18px; }
pre.divergence { background: #fbfcfd; border: 1px solid var(--line); border-radius: 6px; padding: 8px; font-size: 12px; white-space: pre-wrap; max-height: 14em; overflow: auto; }
footer { color: var(--muted); font-size: 12px; padding: 0 24px 24px; }
`;
