/**
 * The statechart in Graphviz DOT, written from the machine (through `chart.ts`), never drawn by hand.
 *
 * The root is a cluster; each parallel region is a dashed cluster inside it (the statechart convention for
 * orthogonal regions), with its states inside and an initial-state dot. The root's guarded event variants are
 * targetless transitions that change the context, so they are drawn as the root's transition table (the way
 * XState's own visualiser lists a state's events); each region's eventless moves are edges, labelled with the
 * root events that cause them (`causes.ts`), their guards and the claim numbers, and carrying the claims'
 * subjects as tooltips. Every state, edge and table row has a stable SVG id, so the review page's simulator
 * can highlight the current state and the transition just taken.
 */
import type { TransitionMeta } from '../model/machine.ts';
import { claimsTag, transitionTooltip, type Chart, type ChartMove, type ChartRegion, type ChartRootTransition } from './chart.ts';
import type { TransitionCauses } from './causes.ts';

/** How many causes a region move lists on its label in the whole chart before it says "+N more". */
export const causeLinesMax = 3;

/** Margin inside a region's box, in points: wide enough that Graphviz keeps most edge labels inside it. */
export const regionMarginPoints = 30;

/** Options of a DOT rendering. */
export interface DotOptions {
  /** Root events that cause each region move (from `causes.ts`); without them moves are labelled `always`. */
  causes?: TransitionCauses;
}

/** The SVG id of a state node: `state-site1.primary`. */
export function stateSvgId(stateId: string): string {
  return `state-${stateId}`;
}

/** The SVG id of a transition (edge or table row): `tr-HOST_WRITE-0`, `tr-site1.primary--failed`. */
export function transitionSvgId(transitionId: string): string {
  return `tr-${transitionId.replace(' -> ', '--').replace('#', '-').replace(/[^A-Za-z0-9_.-]/g, '_')}`;
}

/** A DOT quoted string (escString: `\n` stays a line break). */
function quoted(text: string): string {
  return `"${text.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n')}"`;
}

/** Text inside an HTML-like label. */
function html(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/\n/g, '&#10;');
}

function attributes(list: Record<string, string | undefined>): string {
  return Object.entries(list)
    .filter(([, value]) => value !== undefined)
    .map(([key, value]) => (key === 'label' && value!.startsWith('<') ? `${key}=${value}` : `${key}=${quoted(value!)}`))
    .join(', ');
}

/** Where a claim-tagged transition links to: the first claim's row of the review page. */
function hrefOf(meta: TransitionMeta): string | undefined {
  return meta.claims.length > 0 ? `#claim-${meta.claims[0]}` : undefined;
}

/** `FAIL_SITE [failSite(site=1)]`: a root variant as it is named on a label. */
function variantLabel(variant: ChartRootTransition): string {
  return `${variant.event} [${variant.guard}]`;
}

function causeVariants(chart: Chart, move: ChartMove, options: DotOptions): ChartRootTransition[] {
  const ids = options.causes?.[move.id] ?? [];
  return ids.map((id) => chart.rootTransitions.find((variant) => variant.id === id)).filter((v): v is ChartRootTransition => v !== undefined);
}

const graphStyle = [
  'fontname="Helvetica"',
  'fontsize=12',
  'bgcolor="white"',
  'compound=true',
  'nodesep=0.35',
  'ranksep=0.45',
  'pad=0.2',
];
const nodeStyle = 'node [shape=box, style="rounded,filled", fillcolor="#f7f7f2", color="#4a5560", fontname="Helvetica", fontsize=12, margin="0.18,0.06"];';
const edgeStyle = 'edge [fontname="Helvetica", fontsize=9, color="#5b6770", fontcolor="#2b3440", arrowsize=0.7];';

/** Colours of the region clusters, one hue per kind: sites blue, pairs green/amber/violet. */
const regionColour: Record<string, string> = {
  site1: '#e8f0fb',
  site2: '#e8f0fb',
  site3: '#e9f5f3',
  syncPair: '#f3f0e6',
  asyncPair: '#f5ebe6',
  standbyPair: '#efe9f5',
};

function regionLines(chart: Chart, region: ChartRegion, options: DotOptions, detailed: boolean, indent: string): string[] {
  const lines: string[] = [];
  lines.push(`${indent}subgraph ${quoted(`cluster_${region.key}`)} {`);
  lines.push(
    `${indent}  graph [${attributes({
      label: `${region.key}`,
      id: `region-${region.key}`,
      tooltip: `parallel region ${region.key}`,
      style: 'dashed,rounded,filled',
      // Room around the states: Graphviz places the labels of upward edges beside the cluster's nodes.
      margin: String(regionMarginPoints),
      fillcolor: regionColour[region.key] ?? '#f4f4f4',
      color: '#6b7785',
      fontsize: '14',
      labeljust: 'l',
    })}];`,
  );
  const initial = `${region.key}.__initial`;
  lines.push(`${indent}  ${quoted(initial)} [shape=point, width=0.12, color="#2b3440", fillcolor="#2b3440", label=""];`);
  for (const state of region.states) {
    lines.push(
      `${indent}  ${quoted(state.id)} [${attributes({
        label: state.key,
        id: stateSvgId(state.id),
        class: `state region-${region.key}`,
        tooltip: `${state.id}: ${state.description}`,
      })}];`,
    );
  }
  lines.push(`${indent}  ${quoted(initial)} -> ${quoted(region.initial)} [arrowsize=0.6];`);
  for (const move of region.moves) {
    const causes = causeVariants(chart, move, options);
    // A move's claims are those of the event variants seen to take it (exploration), not a tag of its own.
    const claims = [...new Set(causes.flatMap((cause) => cause.meta.claims))].sort((a, b) => a - b);
    const claimed = claims.length > 0;
    const tag = claimed ? `claims ${claims.join(',')}` : causes.length > 0 ? 'beyond claims' : '';
    const triggerLines = [...new Set(move.triggers.map((trigger) => `${trigger.event} [${trigger.guard}]`))];
    const shown = detailed || triggerLines.length <= causeLinesMax ? triggerLines : [...triggerLines.slice(0, causeLinesMax - 1), `+${triggerLines.length - causeLinesMax + 1} more`];
    const label = [...shown, ...(tag ? [tag] : [])].join('\n');
    const tooltip = transitionTooltip({ ...move.meta, claims }, [
      ...move.triggers.map((trigger) => `on ${trigger.event} [${trigger.guard}]: ${trigger.description}`),
      ...(causes.length > 0 ? ['taken together with (exploration):', ...causes.map((cause) => `  ${variantLabel(cause)} (${claimsTag(cause.meta)}): ${cause.meta.description}`)] : []),
    ]);
    lines.push(
      `${indent}  ${quoted(move.source)} -> ${quoted(move.target)} [${attributes({
        label,
        id: transitionSvgId(move.id),
        class: `move region-${region.key}${claimed ? ' claimed' : ' beyond'}`,
        tooltip,
        labeltooltip: tooltip,
        href: claimed ? `#claim-${claims[0]}` : undefined,
        color: claimed ? '#2f5d8a' : '#8a8f96',
        style: claimed ? 'solid' : 'dashed',
      })}];`,
    );
  }
  lines.push(`${indent}}`);
  return lines;
}

/** Rows of one column of the root's transition table: longer lists wrap into more columns, so it stays short. */
export const rootTableRowsMax = 10;

/**
 * The root cluster's label: its title above the table of the root's event variants (event, guard, claims; one
 * row per variant, in as many columns as {@link rootTableRowsMax} asks). As the cluster's label it takes no
 * rank in the layout, so the regions below are not stretched by it.
 */
function rootLabel(title: string, variants: readonly ChartRootTransition[], tableTitle: string): string {
  const rows = variants.map((variant) => {
    const id = transitionSvgId(variant.id);
    const tooltip = html(transitionTooltip(variant.meta, [`guard ${variant.guard}; action ${variant.actions.join(', ')}`]));
    const href = html(hrefOf(variant.meta) ?? `#transition-${variant.id}`);
    const cell = (suffix: string, text: string): string =>
      `<TD ID="${id}${suffix}" HREF="${href}" TOOLTIP="${tooltip}" BGCOLOR="white" ALIGN="LEFT">${text}</TD>`;
    const claims = variant.meta.claims.length > 0 ? html(claimsTag(variant.meta)) : '<I>beyond claims</I>';
    return `<TR>${cell('', `<B>${html(variant.event)}</B>`)}${cell('-guard', html(`[${variant.guard}]`))}${cell('-claims', claims)}</TR>`;
  });
  const columnCount = Math.max(1, Math.ceil(rows.length / rootTableRowsMax));
  const perColumn = Math.ceil(rows.length / columnCount);
  const columns: string[] = [];
  for (let i = 0; i < columnCount; i++) {
    const part = rows.slice(i * perColumn, (i + 1) * perColumn).join('');
    columns.push(`<TD VALIGN="TOP"><TABLE BORDER="0" CELLBORDER="1" CELLSPACING="0" CELLPADDING="2" COLOR="#9aa3ad">${part}</TABLE></TD>`);
  }
  const legend = 'solid blue edge: implements the claims named; dashed grey edge: beyond the claims (a product behaviour); hover for claim text';
  return (
    `<<TABLE BORDER="0" CELLBORDER="0" CELLSPACING="4" CELLPADDING="0">` +
    `<TR><TD COLSPAN="${columnCount}" ALIGN="LEFT"><FONT POINT-SIZE="16"><B>${html(title)}</B></FONT></TD></TR>` +
    `<TR><TD COLSPAN="${columnCount}" ALIGN="LEFT"><FONT POINT-SIZE="10">${html(tableTitle)}</FONT></TD></TR>` +
    `<TR>${columns.join('')}</TR>` +
    `<TR><TD COLSPAN="${columnCount}" ALIGN="LEFT"><FONT POINT-SIZE="9" COLOR="#5b6770">${html(legend)}</FONT></TD></TR>` +
    `</TABLE>>`
  );
}

/**
 * The whole statechart: the root cluster, titled with the transition table of its events, around its six
 * regions. The storage systems sit on the first row and the pairs on the second (their initial states share
 * a rank), so the chart stays about as wide as a wide screen.
 */
export function statechartDot(chart: Chart, options: DotOptions = {}): string {
  const lines = ['digraph statechart {', `  graph [${graphStyle.join(', ')}, newrank=true];`, `  ${nodeStyle}`, `  ${edgeStyle}`];
  lines.push('  subgraph "cluster_root" {');
  const label = rootLabel(
    `${chart.id}: a parallel state, every region below is active at once`,
    chart.rootTransitions,
    'events: the guarded transitions of the root; each changes the context, and the regions follow it through eventless moves',
  );
  lines.push(`    graph [${attributes({ label, id: 'region-root', style: 'rounded', color: '#2b3440', penwidth: '1.5', labeljust: 'l' })}];`);
  for (const region of chart.regions) lines.push(...regionLines(chart, region, options, false, '    '));
  // Layout only: the storage systems' initial states on one rank, the pairs' on a lower one.
  const sites = chart.regions.filter((region) => region.key.startsWith('site'));
  const pairs = chart.regions.filter((region) => !region.key.startsWith('site'));
  const sameRank = (regions: ChartRegion[]): string => `    { rank=same; ${regions.map((region) => quoted(`${region.key}.__initial`)).join('; ')}; }`;
  lines.push(sameRank(sites), sameRank(pairs));
  for (let i = 0; i < Math.min(sites.length, pairs.length); i++) {
    const above = sites[i]!;
    const lowest = above.states[above.states.length - 1]!;
    lines.push(`    ${quoted(lowest.id)} -> ${quoted(`${pairs[i]!.key}.__initial`)} [style=invis, weight=10];`);
  }
  lines.push('  }');
  lines.push('}');
  return `${lines.join('\n')}\n`;
}

/**
 * One region alone (a storage system or a pair), every move labelled with all its causes, under the
 * transition table of the root events that move it: the readable view of one storage system.
 */
export function regionDot(chart: Chart, regionKey: string, options: DotOptions = {}): string {
  const region = chart.regions.find((candidate) => candidate.key === regionKey);
  if (!region) throw new RangeError(`no region ${regionKey}; regions: ${chart.regions.map((r) => r.key).join(', ')}`);
  const causing = new Set(region.moves.flatMap((move) => options.causes?.[move.id] ?? []));
  const variants = chart.rootTransitions.filter((variant) => causing.has(variant.id));
  const lines = ['digraph region {', `  graph [${graphStyle.join(', ')}];`, `  ${nodeStyle}`, `  ${edgeStyle}`];
  lines.push('  subgraph "cluster_root" {');
  const label = rootLabel(`${chart.id}: region ${region.key}`, variants, `the root events that move ${region.key}`);
  lines.push(`    graph [${attributes({ label, id: 'region-root', style: 'rounded', color: '#2b3440', labeljust: 'l' })}];`);
  lines.push(...regionLines(chart, region, options, true, '    '));
  lines.push('  }');
  lines.push('}');
  return `${lines.join('\n')}\n`;
}
