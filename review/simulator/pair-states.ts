/**
 * The simulator's state in the words storage engineers read off their arrays: Hitachi TrueCopy and Universal
 * Replicator pair statuses (PAIR, COPY, PSUS, PSUE, SSWS; the delta-resync pair's HOLD and HLDE; the journal's
 * PFUL and PFUS), with each pair's direction, journal fill and fence level. A pure function of the model's
 * observation, so the page's table and the browser test compute the same rows.
 *
 * The mapping from the model's modes ({@link pairStatusMapping}) is documented on the page beside the table:
 * the model collapses operator steps that a real array shows as statuses of their own (its RESYNC_SITE,
 * DELTA_RESYNC and FULL_COPY are each one step), so a few statuses stand for "that step is due".
 */
import { observe } from '../../model/observe.ts';
import type { Observation, SiteId } from '../../model/observation.ts';
import type { FencePolicy } from '../../model/params.ts';
import type { ModelContext } from '../../model/state.ts';

/** A Hitachi pair status, or `unknown` for a volume on a failed site (its array cannot be asked). */
export type PairStatus = 'PAIR' | 'COPY' | 'PSUS' | 'PSUE' | 'SSWS' | 'PFUL' | 'PFUS' | 'HOLD' | 'HLDE' | 'SMPL' | 'unknown';

/** One row of the pair-state table. */
export interface PairStateRow {
  /** `sync`, `async` or `standby`: the model's pair. */
  pair: 'sync' | 'async' | 'standby';
  /** The product relation it stands for. */
  product: string;
  /** Where data flows: the P-VOL's site and the S-VOL's site. */
  from: SiteId;
  to: SiteId;
  /** True when this pair carries data now (PAIR or COPY with both ends reachable). */
  carries: boolean;
  pvol: PairStatus;
  svol: PairStatus;
  /** The journal the pair depends on, with its fill, or null for the journal-less sync pair. */
  journal: { name: string; entries: number; entriesMax: number; highWater: boolean } | null;
  /** The restore journal at site 3 (async pair only). */
  restoreJournal: { entries: number; entriesMax: number; highWater: boolean } | null;
  /** TrueCopy fence level for the sync pair, `n/a` for the others. */
  fence: string;
  /** The model's own state, as the page also shows it. */
  modelState: string;
}

/** TrueCopy's fence level for the model's fence policy (DESIGN.md section 7). */
export function fenceLevelOf(policy: FencePolicy): string {
  return policy === 'refuse' ? 'DATA (refuse writes the S-VOL does not get)' : 'NEVER (keep writing, record changed blocks)';
}

/** How each model state reads as a pair status: the table the page prints beside the pair-state table. */
export const pairStatusMapping: readonly { model: string; status: string; why: string }[] = [
  { model: 'syncPair inSync', status: 'PAIR / PAIR', why: 'TrueCopy pair site 1 -> site 2 mirroring every write' },
  { model: 'syncPair reversed', status: 'PAIR / PAIR', why: 'the pair swapped (pairresync -swaps): site 2 P-VOL -> site 1 S-VOL' },
  { model: 'syncPair suspended, primary site 1', status: 'PSUE / PSUE', why: 'suspended by a failure or link cut (an error suspension, not an operator split: PSUS)' },
  { model: 'syncPair suspended, primary site 2', status: 'PSUE / SSWS', why: "after failover (horctakeover): site 2's S-VOL takes host 2's writes" },
  { model: 'syncPair resyncing', status: 'COPY / COPY', why: "the link is back and the stale member waits for RESYNC_SITE, the model's one-step resync (COPY until PAIR)" },
  { model: 'asyncPair copying', status: 'PAIR (PFUL at 80% of the master journal)', why: 'Universal Replicator pair source -> site 3; PFUL is the high-water warning' },
  { model: 'asyncPair suspended', status: 'PSUE', why: 'source or site 3 unreachable, or waiting for the judge after a failover' },
  { model: 'asyncPair suspendedOverflow', status: 'PFUS', why: 'the master journal was full: suspended, never silently dropping entries (P7)' },
  { model: 'asyncPair deltaResync', status: 'COPY', why: 'the delta-resync pair activated: DELTA_RESYNC copies only the missing journal entries' },
  { model: 'asyncPair fullCopy', status: 'PSUE', why: 'the journal no longer covers site 3: FULL_COPY (an initial copy, COPY on the array) is required' },
  { model: 'standbyPair hold', status: 'HOLD', why: "the delta-resync pair site 2 -> site 3: copies nothing, site 2's journal kept for it" },
  { model: 'standbyPair holdError', status: 'HLDE', why: "site 2's journal no longer covers site 3: a failover would need a full copy" },
  { model: 'standbyPair none', status: 'SMPL', why: 'no standby pair while the sync pair is not PAIR' },
  { model: 'a volume on a failed site', status: 'unknown', why: 'its array cannot be asked; the surviving side shows PSUE or SSWS' },
];

function journalOfSite(seen: Observation, site: 1 | 2, entriesMax: number): PairStateRow['journal'] {
  const { journal } = seen.sites[site];
  return { name: `site ${site} master journal (storage area ${site === 1 ? 2 : 4})`, entries: Math.max(0, journal.last - journal.first + 1), entriesMax, highWater: journal.highWater };
}

/** The three rows (sync, async, standby pair) for a model state. */
export function pairStateRows(context: ModelContext): PairStateRow[] {
  const seen = observe(context, false);
  const up = (site: SiteId): boolean => seen.sites[site].mode !== 'failed';
  const entriesMax = context.params.journalEntriesMax;
  const primary = seen.syncPair.primary;
  const secondary: 1 | 2 = primary === 1 ? 2 : 1;
  const onSite = (site: SiteId, status: PairStatus): PairStatus => (up(site) ? status : 'unknown');

  const sync = seen.syncPair.state;
  let pvol: PairStatus;
  let svol: PairStatus;
  if (sync === 'inSync' || sync === 'reversed') [pvol, svol] = ['PAIR', 'PAIR'];
  else if (sync === 'resyncing') [pvol, svol] = ['COPY', 'COPY'];
  else if (primary === 2) [pvol, svol] = ['SSWS', 'PSUE'];
  else [pvol, svol] = ['PSUE', 'PSUE'];
  const syncRow: PairStateRow = {
    pair: 'sync',
    product: 'TrueCopy (synchronous)',
    from: primary,
    to: secondary,
    carries: (sync === 'inSync' || sync === 'reversed') && !seen.cutLinks.includes('1-2') && up(1) && up(2),
    pvol: onSite(primary, pvol),
    svol: onSite(secondary, svol),
    journal: null,
    restoreJournal: null,
    fence: fenceLevelOf(context.params.fencePolicy),
    modelState: `syncPair ${sync}`,
  };

  const async = seen.asyncPair.state;
  const master = journalOfSite(seen, primary, entriesMax);
  const restore = seen.sites[3].journal;
  const restoreEntries = Math.max(0, restore.last - restore.first + 1);
  const asyncStatus: PairStatus =
    async === 'copying' ? (master!.highWater ? 'PFUL' : 'PAIR') : async === 'deltaResync' ? 'COPY' : async === 'suspendedOverflow' ? 'PFUS' : 'PSUE';
  const asyncRow: PairStateRow = {
    pair: 'async',
    product: 'Universal Replicator (asynchronous journal copy)',
    from: primary,
    to: 3,
    carries: (async === 'copying' || async === 'deltaResync') && up(primary) && up(3) && !seen.cutLinks.includes(`${primary}-3`),
    pvol: onSite(primary, asyncStatus),
    svol: onSite(3, asyncStatus === 'PFUL' ? 'PAIR' : asyncStatus),
    journal: master,
    restoreJournal: { entries: restoreEntries, entriesMax, highWater: restore.highWater },
    fence: 'n/a (asynchronous)',
    modelState: `asyncPair ${async}`,
  };

  const standby = seen.standbyPair.state;
  const standbyStatus: PairStatus = standby === 'hold' ? 'HOLD' : standby === 'holdError' ? 'HLDE' : 'SMPL';
  const standbyRow: PairStateRow = {
    pair: 'standby',
    product: 'Universal Replicator delta-resync pair (standby)',
    from: seen.standbyPair.from,
    to: 3,
    carries: false,
    pvol: onSite(seen.standbyPair.from, standbyStatus),
    svol: onSite(3, standbyStatus),
    journal: journalOfSite(seen, seen.standbyPair.from, entriesMax),
    restoreJournal: null,
    fence: 'n/a (copies nothing until a failover)',
    modelState: `standbyPair ${standby}`,
  };
  return [syncRow, asyncRow, standbyRow];
}

const escapeText = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');

function fill(journal: { entries: number; entriesMax: number; highWater: boolean } | null, tag: string): string {
  if (!journal) return '&ndash;';
  const percent = Math.round((journal.entries / journal.entriesMax) * 100);
  return `${tag}${journal.entries}/${journal.entriesMax} (${percent}%)${journal.highWater ? ' <b class="warn">high water</b>' : ''}`;
}

/**
 * The pair-state table's HTML for a model state. Every cell carries `data-key` (`pair-sync-pvol`, ...) so the
 * simulator can mark what changed since the step before.
 */
export function pairStateTable(context: ModelContext): string {
  const rows = pairStateRows(context).map((row) => {
    const cell = (key: string, html: string, cls = ''): string => `<td data-key="pair-${row.pair}-${key}"${cls ? ` class="${cls}"` : ''}>${html}</td>`;
    const status = (value: PairStatus): string => `<span class="status status-${value.toLowerCase()}">${value}</span>`;
    const journal =
      row.pair === 'async'
        ? `${fill(row.journal, 'master ')}<br>${fill(row.restoreJournal, 'restore (site 3) ')}`
        : row.journal
          ? fill(row.journal, 'kept ')
          : '&ndash;';
    return `<tr data-pair="${row.pair}" data-pvol="${row.pvol}" data-svol="${row.svol}" data-from="${row.from}" data-to="${row.to}" data-carries="${row.carries}">
<th scope="row">${escapeText(row.product)}</th>${cell('direction', `site ${row.from} &rarr; site ${row.to}${row.carries ? '' : ' <small>(idle)</small>'}`)}${cell('pvol', status(row.pvol))}${cell('svol', status(row.svol))}${cell('journal', journal)}${cell('fence', escapeText(row.fence))}${cell('model', `<code>${escapeText(row.modelState)}</code>`)}</tr>`;
  });
  return `<table class="evidence pair-states" data-field="pair-states"><thead><tr><th>pair</th><th>direction (P-VOL &rarr; S-VOL)</th><th>P-VOL</th><th>S-VOL</th><th>journal fill</th><th>fence level</th><th>model state</th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}
