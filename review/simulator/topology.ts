/**
 * The topology figure of the simulator: the three sites, the hosts, and the links between them, drawn as SVG
 * from the model's observation at each step. An arrow shows a pair that carries data now (sync copy, async
 * journal copy, a delta resync in progress), in its direction; the standby pair is drawn dotted; a cut link is
 * crossed out; a failed site is red; the primary is marked and its host's writes point at it. Pure, so the
 * browser test can check the figure against the model.
 */
import { observe } from '../../model/observe.ts';
import type { SiteId } from '../../model/observation.ts';
import type { ModelContext } from '../../model/state.ts';
import { pairStateRows } from './pair-states.ts';

/** The figure's size in SVG units (it scales with its box). */
export const topologyWidth = 560;
export const topologyHeight = 300;

const boxWidth = 150;
const boxHeight = 64;
const centre: Record<SiteId, { x: number; y: number }> = {
  1: { x: 100, y: 110 },
  2: { x: 460, y: 110 },
  3: { x: 280, y: 240 },
};

/** What a link carries now, as the figure draws it. */
export type LinkUse = 'sync' | 'async' | 'delta resync' | 'standby' | 'none';

/** One drawn link: the sites it joins, whether it is cut, and the data that flows on it and which way. */
export interface TopologyLink {
  id: '1-2' | '1-3' | '2-3';
  cut: boolean;
  carries: LinkUse;
  /** Direction of the flow (or of the standby pair), null when nothing is drawn on it. */
  from: SiteId | null;
  to: SiteId | null;
}

/** The figure's facts for a model state: links, primary, failed sites. */
export function topologyOf(context: ModelContext): { links: TopologyLink[]; primary: 1 | 2; failed: SiteId[]; accepting: SiteId[] } {
  const seen = observe(context, false);
  const [sync, async, standby] = pairStateRows(context);
  const links: TopologyLink[] = (['1-2', '1-3', '2-3'] as const).map((id) => ({ id, cut: seen.cutLinks.includes(id), carries: 'none', from: null, to: null }));
  const on = (a: SiteId, b: SiteId): TopologyLink => links.find((link) => link.id === `${Math.min(a, b)}-${Math.max(a, b)}`)!;
  if (sync!.carries) Object.assign(on(sync!.from, sync!.to), { carries: 'sync', from: sync!.from, to: sync!.to });
  if (async!.carries) {
    Object.assign(on(async!.from, 3), { carries: seen.asyncPair.state === 'deltaResync' ? 'delta resync' : 'async', from: async!.from, to: 3 });
  }
  if (standby!.pvol === 'HOLD' || standby!.pvol === 'HLDE') {
    const link = on(standby!.from, 3);
    if (link.carries === 'none') Object.assign(link, { carries: 'standby', from: standby!.from, to: 3 });
  }
  const failed = ([1, 2, 3] as const).filter((site) => seen.sites[site].mode === 'failed');
  const accepting = ([1, 2, 3] as const).filter((site) => seen.sites[site].acceptsHostWrites);
  return { links, primary: seen.syncPair.primary, failed, accepting };
}

const colour: Record<LinkUse, string> = { sync: '#2f5d8a', async: '#1d7a46', 'delta resync': '#b7791f', standby: '#7c3aed', none: '#c3cad2' };

/** A point on the border of site `site`'s box, towards `other`. */
function edgePoint(site: SiteId, other: SiteId): { x: number; y: number } {
  const a = centre[site];
  const b = centre[other];
  const dx = b.x - a.x;
  const dy = b.y - a.y;
  const scale = Math.min(Math.abs((boxWidth / 2 + 6) / (dx || 1e-9)), Math.abs((boxHeight / 2 + 6) / (dy || 1e-9)));
  return { x: a.x + dx * scale, y: a.y + dy * scale };
}

function linkSvg(link: TopologyLink): string {
  const [a, b] = link.id.split('-').map(Number) as [SiteId, SiteId];
  const from = link.from ?? a;
  const to = link.to ?? b;
  const p = edgePoint(from, to);
  const q = edgePoint(to, from);
  const drawn = link.carries !== 'none';
  const dash = link.carries === 'standby' ? ' stroke-dasharray="3 5"' : drawn ? '' : ' stroke-dasharray="6 6"';
  const marker = drawn ? ` marker-end="url(#topology-arrow-${link.carries.replace(' ', '-')})"` : '';
  const mid = { x: (p.x + q.x) / 2, y: (p.y + q.y) / 2 };
  const labelY = link.id === '1-2' ? mid.y - 10 : mid.y;
  const labelX = link.id === '1-3' ? mid.x - 58 : link.id === '2-3' ? mid.x + 58 : mid.x;
  const label = drawn ? link.carries : link.cut ? '' : 'idle';
  const cut = link.cut
    ? `<g class="cut"><line x1="${mid.x - 9}" y1="${mid.y - 9}" x2="${mid.x + 9}" y2="${mid.y + 9}" stroke="#b42318" stroke-width="3"/><line x1="${mid.x - 9}" y1="${mid.y + 9}" x2="${mid.x + 9}" y2="${mid.y - 9}" stroke="#b42318" stroke-width="3"/><text x="${labelX}" y="${labelY + 24}" text-anchor="middle" fill="#b42318" font-size="12" font-weight="700">link ${link.id} cut</text></g>`
    : '';
  return `<g class="link" data-key="topology-link-${link.id}" data-link="${link.id}" data-carries="${link.carries}" data-cut="${link.cut}" data-from="${link.from ?? ''}" data-to="${link.to ?? ''}">
<line x1="${p.x.toFixed(1)}" y1="${p.y.toFixed(1)}" x2="${q.x.toFixed(1)}" y2="${q.y.toFixed(1)}" stroke="${colour[link.carries]}" stroke-width="${drawn ? 3 : 1.5}"${dash}${marker}/>
${label ? `<text x="${labelX.toFixed(1)}" y="${labelY.toFixed(1)}" text-anchor="middle" font-size="12" fill="${colour[link.carries]}">${label}</text>` : ''}${cut}</g>`;
}

/** The figure as an SVG element for a model state. */
export function topologySvg(context: ModelContext): string {
  const { links, primary, failed, accepting } = topologyOf(context);
  const seen = observe(context, false);
  const markers = (Object.keys(colour) as LinkUse[])
    .filter((use) => use !== 'none')
    .map(
      (use) =>
        `<marker id="topology-arrow-${use.replace(' ', '-')}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="${colour[use]}"/></marker>`,
    )
    .join('');
  const sites = ([1, 2, 3] as const).map((site) => {
    const { x, y } = centre[site];
    const isFailed = failed.includes(site);
    const isPrimary = site === primary;
    const observed = seen.sites[site];
    const role = site === 3 ? `remote, from site ${seen.sites[3].source}` : isPrimary ? 'PRIMARY' : 'secondary';
    const fill = isFailed ? '#fdecea' : isPrimary ? '#e3f4ea' : '#f4f6f8';
    const stroke = isFailed ? '#b42318' : isPrimary ? '#1d7a46' : '#6b7785';
    return `<g class="site" data-key="topology-site-${site}" data-site="${site}" data-primary="${isPrimary}" data-failed="${isFailed}">
<rect x="${x - boxWidth / 2}" y="${y - boxHeight / 2}" width="${boxWidth}" height="${boxHeight}" rx="8" fill="${fill}" stroke="${stroke}" stroke-width="${isPrimary || isFailed ? 3 : 1.5}"/>
<text x="${x}" y="${y - 10}" text-anchor="middle" font-size="15" font-weight="700">site ${site}</text>
<text x="${x}" y="${y + 8}" text-anchor="middle" font-size="12" fill="${stroke}" font-weight="${isPrimary ? 700 : 400}">${isFailed ? 'FAILED' : role}</text>
<text x="${x}" y="${y + 24}" text-anchor="middle" font-size="11" fill="#5b6770">u${observed.lastUpdateNumber}, journal ${Math.max(0, observed.journal.last - observed.journal.first + 1)}/${context.params.journalEntriesMax}</text></g>`;
  });
  const hosts = ([1, 2] as const).map((host) => {
    const { x } = centre[host];
    const writing = accepting.includes(host);
    return `<g class="host" data-key="topology-host-${host}" data-host="${host}" data-writing="${writing}">
<text x="${x}" y="22" text-anchor="middle" font-size="12" fill="${writing ? '#1f2933' : '#9aa3ad'}">host ${host}${writing ? ' writes' : ''}</text>
<line x1="${x}" y1="30" x2="${x}" y2="${centre[host].y - boxHeight / 2 - 4}" stroke="${writing ? '#1f2933' : '#d5dbe1'}" stroke-width="${writing ? 2.5 : 1}"${writing ? ' marker-end="url(#topology-arrow-host)"' : ' stroke-dasharray="3 4"'}/></g>`;
  });
  return `<svg class="topology" data-field="topology" viewBox="0 0 ${topologyWidth} ${topologyHeight}" role="img" aria-label="topology: the three sites and what their links carry now" font-family="system-ui, sans-serif">
<defs>${markers}<marker id="topology-arrow-host" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#1f2933"/></marker></defs>
${links.map((link) => linkSvg(link)).join('\n')}
${hosts.join('\n')}
${sites.join('\n')}
</svg>`;
}
