/**
 * What the simulator shows, as HTML built from the model's own observation (`model/observe.ts`): for each
 * site its role, mode, journal (entries with their update numbers), volumes and volume digest; the three
 * pairs; the enabled events as buttons; and the steps taken. Pure functions of the session, so the browser
 * test can compute the same values with `observe()` and compare. Every field a test reads carries a
 * `data-field`, every site card its observed values as `data-*` attributes.
 */
import { formatEvent } from '../../model/events.ts';
import { observe } from '../../model/observe.ts';
import { journalOf } from '../../model/semantics.ts';
import { blockImageOf, type Entry, type ModelContext } from '../../model/state.ts';
import { claimsTag } from '../chart.ts';
import { transitionDefinitions } from '../../model/traceability.ts';
import { replicationMachine } from '../../model/machine.ts';
import type { CandidateEvent, SimulatorStep } from './session.ts';

/** Escapes text for HTML. */
export function escapeHtml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/'/g, '&#39;');
}

/** A data byte as two hex digits, the way the journal and volumes show it. */
const hex = (data: number): string => data.toString(16).padStart(2, '0');

/** How many leading hex digits of a volume digest the card shows (the full digest is in its title). */
export const digestDigitsShown = 16;

function entryItem(entry: Entry): string {
  return `<li data-u="${entry.u}"><span class="u">u${entry.u}</span> vol ${entry.volume} blk ${entry.block} &larr; ${hex(entry.data)}</li>`;
}

function volumesHtml(context: ModelContext, applied: readonly Entry[]): string {
  const image = blockImageOf(context.params, applied);
  const { volumeCount, blocksPerVolume } = context.params;
  const rows: string[] = [];
  for (let volume = 0; volume < volumeCount; volume++) {
    const blocks = image.slice(volume * blocksPerVolume, (volume + 1) * blocksPerVolume);
    rows.push(
      `<div class="volume"><span>vol ${volume}</span>${blocks.map((data, block) => `<i class="${data === 0 ? 'zero' : ''}" title="volume ${volume} block ${block}">${hex(data)}</i>`).join('')}</div>`,
    );
  }
  return `<div class="volumes" data-field="volumes">${rows.join('')}</div>`;
}

/** One site's card. */
export function siteCard(context: ModelContext, site: 1 | 2 | 3): string {
  const seen = observe(context).sites[site];
  const entries = site === 3 ? context.sites[3].pending : journalOf(context.sites[site]);
  const applied = context.sites[site].applied;
  const held = seen.journal.last - seen.journal.first + 1;
  const range = held <= 0 ? 'empty' : `u${seen.journal.first}..u${seen.journal.last}`;
  const facts: [string, string, string][] = [
    ['last', 'last update number', String(seen.lastUpdateNumber)],
    ['journal-range', 'journal', `${range} (${Math.max(held, 0)}/${context.params.journalEntriesMax})${seen.journal.highWater ? ' <b class="warn">high water</b>' : ''}`],
    ['accepts', 'accepts host writes', seen.acceptsHostWrites ? 'yes' : 'no'],
  ];
  if (site === 3) {
    const remote = observe(context).sites[3];
    facts.push(['source', 'source', `site ${remote.source}`], ['received', 'received / restored', `u${remote.received} / u${remote.restored}`], ['lag', 'lag', String(remote.lag)]);
  } else {
    facts.push(['changed', 'changed blocks', String(seen.changedBlocks)]);
    if (seen.fenced) facts.push(['fenced', 'fenced', 'yes']);
  }
  return `<article class="site mode-${seen.mode}" data-site="${site}" data-mode="${seen.mode}" data-role="${seen.role}" data-journal-first="${seen.journal.first}" data-journal-last="${seen.journal.last}" data-digest="${seen.volumeDigest}">
<header><h3>site ${site}</h3><span class="role" data-key="site${site}-role">${seen.role}</span><span class="mode" data-field="mode" data-key="site${site}-mode">${seen.mode}</span></header>
<dl>${facts.map(([field, label, value]) => `<dt>${label}</dt><dd data-field="${field}" data-key="site${site}-${field}">${value}</dd>`).join('')}</dl>
<div class="label">journal${site === 3 ? ' (received, not yet restored)' : ''}</div>
<ol class="journal" data-field="journal" data-key="site${site}-journal">${entries.map(entryItem).join('') || '<li class="none">empty</li>'}</ol>
<div class="label">volumes</div>${volumesHtml(context, applied).replace('data-field="volumes"', `data-field="volumes" data-key="site${site}-volumes"`)}
<div class="digest" title="SHA-256 of the volumes: ${seen.volumeDigest}">sha256 <code data-field="digest">${seen.volumeDigest.slice(0, digestDigitsShown)}</code>&hellip;</div>
</article>`;
}

/** The pairs' card: sync, async and standby pair, cut links, the exposure count and the last judgement. */
export function pairsCard(context: ModelContext): string {
  const seen = observe(context);
  const judgement = seen.judgement
    ? `<b>${seen.judgement.verdict}</b> <small>site 3 had u${seen.judgement.remoteReceived}, source u${seen.judgement.sourceLast}${seen.judgement.forced ? ', forced' : ''}</small>`
    : 'none yet';
  const rows: [string, string, string][] = [
    ['sync-pair', 'sync pair', `<b>${seen.syncPair.state}</b> <small>primary site ${seen.syncPair.primary}</small>`],
    ['async-pair', 'async pair', `<b>${seen.asyncPair.state}</b> <small>source site ${seen.asyncPair.source}</small>`],
    ['standby-pair', 'standby pair', `<b>${seen.standbyPair.state}</b> <small>from site ${seen.standbyPair.from}</small>`],
    ['cut-links', 'cut links', seen.cutLinks.length > 0 ? seen.cutLinks.join(', ') : 'none'],
    ['acked-on-one-site', 'acked on one site', String(seen.ackedOnOneSite)],
    ['judgement', 'last judgement', judgement],
  ];
  return `<article class="pairs" data-sync-pair="${seen.syncPair.state}" data-async-pair="${seen.asyncPair.state}" data-standby-pair="${seen.standbyPair.state}">
<header><h3>pairs</h3><span class="role">fence policy ${context.params.fencePolicy}</span></header>
<dl>${rows.map(([field, label, value]) => `<dt>${label}</dt><dd data-field="${field}" data-key="pairs-${field}">${value}</dd>`).join('')}</dl>
</article>`;
}

const groups: [string, RegExp][] = [
  ['host writes', /^HOST_WRITE/],
  ['background', /^(PULL_JOURNAL|RESTORE_JOURNAL)/],
  ['faults and returns', /^(FAIL_SITE|RECOVER_SITE|CUT_LINK|RESTORE_LINK)/],
  ['operator', /^(FENCE_SITE|FAILOVER|RESYNC_SITE|DELTA_RESYNC|FULL_COPY|FAILBACK)/],
];

function eventButton(candidate: CandidateEvent): string {
  const [name, ...args] = candidate.text.split(' ');
  return `<button type="button" class="event" data-event="${escapeHtml(candidate.text)}"><b>${escapeHtml(name!)}</b>${args.length ? ` <small>${escapeHtml(args.join(' '))}</small>` : ''}</button>`;
}

/** The enabled events as buttons, by group; the refused ones listed with the model's reason. */
export function eventsPanel(candidates: readonly CandidateEvent[]): string {
  const enabled = candidates.filter((candidate) => candidate.enabled);
  const refused = candidates.filter((candidate) => !candidate.enabled);
  const grouped = groups
    .map(([title, pattern]) => {
      const list = enabled.filter((candidate) => pattern.test(candidate.text));
      return list.length ? `<div class="group"><span class="label">${title}</span>${list.map(eventButton).join('')}</div>` : '';
    })
    .join('');
  return `${grouped || '<p>no event is enabled</p>'}
<details class="refused"><summary>${refused.length} events refused now, and why</summary><ul>${refused
    .map((candidate) => `<li><code>${escapeHtml(candidate.text)}</code>: ${escapeHtml(candidate.refusal ?? '')}</li>`)
    .join('')}</ul></details>`;
}

const definitionsById = new Map(transitionDefinitions(replicationMachine).map((info) => [info.id, info]));

/**
 * The steps taken, newest first, each with the root variant, its claims and the region moves; each is a
 * button that shows the simulation at that step (`data-step`, an index into the history; 0 is the start).
 * `viewing` is the step shown now.
 */
export function stepLog(history: readonly SimulatorStep[], viewing: number = history.length - 1): string {
  const items = history.slice(1).map((step, i) => {
    const info = step.variant ? definitionsById.get(step.variant) : undefined;
    const tag = info?.meta ? claimsTag(info.meta) : '';
    const index = i + 1;
    return `<li data-step="${index}"${index === viewing ? ' class="viewing" aria-current="step"' : ''}><button type="button" class="step" data-step="${index}" title="show the simulation after this step"><code>${escapeHtml(step.event ? formatEvent(step.event) : '')}</code></button> <span class="variant">${escapeHtml(step.variant ?? '')} [${escapeHtml(info?.guard ?? '')}] ${escapeHtml(tag)}</span>${
      step.moves.length ? `<br><span class="moves">${step.moves.map(escapeHtml).join(' &middot; ')}</span>` : ''
    }<span class="n">${index}</span></li>`;
  });
  const start = `<li data-step="0"${viewing === 0 ? ' class="viewing" aria-current="step"' : ''}><button type="button" class="step" data-step="0">the start</button><span class="n">0</span></li>`;
  return items.length ? `<ol>${items.reverse().join('')}${start}</ol>` : '<p class="none">no step yet: click an event</p>';
}
