import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { replicationMachine } from '../../model/machine.ts';
import { transitionDefinitions } from '../../model/traceability.ts';
import { causesInGraph, exploreCauses } from '../../review/causes.ts';
import { chartOf, type Chart } from '../../review/chart.ts';
import { regionDot, stateSvgId, statechartDot, transitionSvgId } from '../../review/dot.ts';
import { renderSvg } from '../../review/render.ts';
import { explore } from '../../model/explore.ts';

const chart: Chart = chartOf(replicationMachine);
const rootOrder = chart.rootTransitions.map((variant) => variant.id);
// Small bounds: every region move of the default chart but a few is seen in about a second.
const smallBounds = { volumeCount: 1, blocksPerVolume: 1, journalEntriesMax: 1, writesMax: 2, faultsMax: 1 };
const { causes } = exploreCauses(rootOrder, smallBounds);

type Box = { x0: number; y0: number; x1: number; y1: number };

/** The bounding box of the first shape (path or polygon) in the SVG group with this id. */
function boxOf(svg: string, id: string): Box {
  const encoded = id.replace(/-/g, '&#45;');
  const at = svg.indexOf(`<g id="${encoded}"`);
  expect(at, `no <g id="${id}"> in the SVG`).toBeGreaterThanOrEqual(0);
  const shape = /<(?:path|polygon)[^>]*?(?: d| points)="([^"]+)"/.exec(svg.slice(at))!;
  const numbers = shape[1]!.match(/-?\d+(?:\.\d+)?/g)!.map(Number);
  const xs = numbers.filter((_, i) => i % 2 === 0);
  const ys = numbers.filter((_, i) => i % 2 === 1);
  return { x0: Math.min(...xs), y0: Math.min(...ys), x1: Math.max(...xs), y1: Math.max(...ys) };
}

/** Decodes the character references Graphviz writes into SVG text and attributes. */
function decode(text: string): string {
  return text
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCodePoint(Number(code)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The tooltip (xlink:title) of the link Graphviz wraps around the element with this id. */
function tooltipOf(svg: string, id: string): string {
  const at = svg.indexOf(`id="a_${id.replace(/-/g, '&#45;')}"`);
  expect(at, `no tooltip link for ${id}`).toBeGreaterThanOrEqual(0);
  return decode(/xlink:title="([^"]*)"/.exec(svg.slice(at))![1]!);
}

const inside = (inner: Box, outer: Box): boolean =>
  inner.x0 >= outer.x0 && inner.y0 >= outer.y0 && inner.x1 <= outer.x1 && inner.y1 <= outer.y1;

describe('the chart as the review tools read it', () => {
  it('has the six regions, 27 states and every transition definition of the machine', () => {
    expect(chart.regions.map((region) => region.key)).toEqual(['site1', 'site2', 'site3', 'syncPair', 'asyncPair', 'standbyPair']);
    expect(chart.regions.flatMap((region) => region.states)).toHaveLength(27);
    const ids = [...chart.rootTransitions.map((variant) => variant.id), ...chart.regions.flatMap((region) => region.moves.map((move) => move.id))];
    expect(ids.sort()).toEqual(transitionDefinitions(replicationMachine).map((info) => info.id).sort());
  });

  it('learns which root events move each region from the explored model', () => {
    expect(causes['site1.primary -> failed']).toEqual(['FAIL_SITE#0']);
    expect(causes['asyncPair.deltaResync -> copying']).toContain('DELTA_RESYNC#0');
    expect(causes['syncPair.resyncing -> reversed']).toEqual(['RESYNC_SITE#0']);
    // Only moves of the chart are reported, each with root variants of the chart.
    const moveIds = new Set(chart.regions.flatMap((region) => region.moves.map((move) => move.id)));
    for (const [move, variants] of Object.entries(causes)) {
      expect(moveIds.has(move), move).toBe(true);
      for (const variant of variants) expect(rootOrder, move).toContain(variant);
    }
  });

  it('reads causes from any explored graph, in root order', () => {
    const { graph } = explore({ params: { volumeCount: 1, writesMax: 1, faultsMax: 1 }, keepGraph: true });
    const found = causesInGraph(graph!, rootOrder);
    for (const variants of Object.values(found)) {
      expect([...variants].sort((a, b) => rootOrder.indexOf(a) - rootOrder.indexOf(b))).toEqual(variants);
    }
  });
});

describe('the statechart diagram (DOT laid out by Graphviz in WebAssembly)', () => {
  it('draws every state inside its region and every region inside the root', async () => {
    const { svg, ms } = await renderSvg(statechartDot(chart, { causes }), 'statechart');
    console.log(`whole chart rendered in ${ms.toFixed(1)} ms`);
    const root = boxOf(svg, 'region-root');
    for (const region of chart.regions) {
      const box = boxOf(svg, `region-${region.key}`);
      expect(inside(box, root), region.key).toBe(true);
      for (const state of region.states) expect(inside(boxOf(svg, stateSvgId(state.id)), box), state.id).toBe(true);
    }
    // Regions are drawn as dashed regions (parallel), the root as a solid box.
    expect(statechartDot(chart)).toMatch(/subgraph "cluster_site1" \{\n\s+graph \[label="site1", [^\]]*style="dashed,rounded,filled"/);
  });

  it('labels each move with its events and named conditions and the claims of the variants that take it, with the claim text as tooltip', async () => {
    const { svg } = await renderSvg(statechartDot(chart, { causes }), 'statechart');
    const id = transitionSvgId('site1.primary -> failed');
    const edge = decode(svg.slice(svg.indexOf(`<g id="${id.replace(/-/g, '&#45;')}"`)).split('</g>\n</g>')[0]!);
    expect(edge).toContain('>FAIL_SITE [siteFails(site=1)]<');
    // The move's claims are learnt: those of FAIL_SITE#0, the variant seen to take it.
    expect(edge).toContain('>claims 18,28,29<');
    expect(tooltipOf(svg, id)).toContain('claim 29: When site 1 fails, site 2 stops taking site 1 data');
    expect(tooltipOf(svg, id)).toContain('FAIL_SITE [failSite(site=1)] (claims 18,28,29)');
    // Site 2's promotion is a move on FAILOVER itself, its claims those of the failover variants.
    const promotion = decode(svg.slice(svg.indexOf(`<g id="${transitionSvgId('site2.secondary -> primary').replace(/-/g, '&#45;')}"`)).split('</g>\n</g>')[0]!);
    expect(promotion).toContain('>FAILOVER [failoverPromotesSite2]<');
    expect(promotion).toMatch(/>claims [\d,]*\b19\b[\d,]*</);
    // Every root variant is a row of the root's table: event, guard and claims, with the claim text as tooltip.
    for (const variant of chart.rootTransitions) {
      const tooltip = tooltipOf(svg, transitionSvgId(variant.id));
      expect(tooltip, variant.id).toContain(variant.meta.description);
      for (const claim of variant.meta.claims) expect(tooltip, variant.id).toContain(`claim ${claim}: `);
      expect(tooltipOf(svg, `${transitionSvgId(variant.id)}-guard`), variant.id).toContain(`guard ${variant.guard}`);
    }
  });

  it('draws one readable diagram per region, with the root events that move it', async () => {
    for (const region of chart.regions) {
      const { svg } = await renderSvg(regionDot(chart, region.key, { causes }), region.key);
      for (const state of region.states) expect(svg, state.id).toContain(`id="${stateSvgId(state.id).replace(/-/g, '&#45;')}"`);
      for (const move of region.moves) expect(svg, move.id).toContain(`id="${transitionSvgId(move.id).replace(/-/g, '&#45;')}"`);
      expect(svg).toContain(`region ${region.key}`);
    }
    expect(() => regionDot(chart, 'site4')).toThrow(RangeError);
  });

  it('npm run diagram writes the DOT, the SVGs, the SCXML and the editor module', () => {
    const out = mkdtempSync(join(tmpdir(), 'diagram-'));
    const printed = execFileSync(process.execPath, ['--import', 'tsx', 'review/diagram-cli.ts', '--no-causes', '--out', out], { encoding: 'utf8' });
    expect(printed).toMatch(/whole chart rendered in [\d.]+ ms/);
    for (const name of ['statechart.dot', 'statechart.svg', 'site1.svg', 'site2.svg', 'site3.svg', 'statechart.scxml', 'statechart.stately.js']) {
      expect(existsSync(join(out, name)), name).toBe(true);
    }
    expect(readFileSync(join(out, 'statechart.svg'), 'utf8')).toContain('<svg');
  });
});
