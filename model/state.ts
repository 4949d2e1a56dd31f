/**
 * The abstract state of the model (the statechart's context) and the pure queries over it.
 *
 * The state is as small as the observation needs: per site its up flag, mode, fence, the history of
 * entries applied to its volumes (from which the image and the last update number derive), where its
 * journal starts, what it knows of site 3's progress and its changed-block record; for the whole system the
 * primary, the pair states, the cut links, the exposure count and the last judgement.
 */
import type {
  AsyncPairState,
  Judgement,
  JudgeVerdict,
  SiteMode,
  StandbyPairState,
  SyncPairState,
  SyncSiteId,
} from './observation.ts';
import type { LinkId } from './events.ts';
import type { ModelParams } from './params.ts';

/**
 * One journal entry or applied write: update number, volume, where it starts (block, and `start` bytes into
 * it), its length in bytes (absent: one whole block) and its data byte.
 * @see claims 4, 6, 10, 11, 15, 17 (the update information carries the update number)
 */
export interface Entry {
  readonly u: number;
  readonly volume: number;
  readonly block: number;
  readonly data: number;
  readonly start?: number;
  readonly length?: number;
}

/** A sync member (site 1 or 2). */
export interface SyncMemberState {
  readonly up: boolean;
  readonly mode: SiteMode;
  readonly fenced: boolean;
  /** Entries applied to the volumes, in order; `applied[i].u === i + 1` (P3). */
  readonly applied: readonly Entry[];
  /** First update number held in the journal; the journal is `applied[journalFirst - 1 ..]`. */
  readonly journalFirst: number;
  /** Site 3's restored number as this site knows it (trimming bound). */
  readonly knownRestored: number;
  /** Changed-block record: sorted block keys (`volume * blocksPerVolume + block`). */
  readonly changed: readonly number[];
}

/** Site 3, the asynchronous remote. */
export interface RemoteState {
  readonly up: boolean;
  readonly mode: SiteMode;
  /** Entries restored into the volumes, in order (`applied.length` is the restored number). */
  readonly applied: readonly Entry[];
  /** The journal: entries received and not yet restored, consecutive after `applied`. */
  readonly pending: readonly Entry[];
}

/** The statechart's context: the whole abstract state. */
export interface ModelContext {
  readonly params: ModelParams;
  readonly sites: { readonly 1: SyncMemberState; readonly 2: SyncMemberState; readonly 3: RemoteState };
  readonly primary: SyncSiteId;
  readonly syncPair: SyncPairState;
  readonly asyncPair: AsyncPairState;
  readonly standbyPair: StandbyPairState;
  /** Cut links, sorted. */
  readonly cut: readonly LinkId[];
  readonly ackedOnOneSite: number;
  readonly judgement: Judgement | null;
  /** Site 2's last update number at failover, until site 3 has been judged against site 2. */
  readonly takeover: number | null;
  /** Host writes accepted so far (bounded by `writesMax`). */
  readonly writes: number;
  /** Failures and link cuts so far (bounded by `faultsMax`). */
  readonly faults: number;
}

/** The state at start: every site up and empty, site 1 primary, all pairs established. */
export function initialContext(params: ModelParams): ModelContext {
  const member: SyncMemberState = {
    up: true,
    mode: 'normal',
    fenced: false,
    applied: [],
    journalFirst: 1,
    knownRestored: 0,
    changed: [],
  };
  return {
    params,
    sites: { 1: member, 2: member, 3: { up: true, mode: 'normal', applied: [], pending: [] } },
    primary: 1,
    syncPair: 'inSync',
    asyncPair: 'copying',
    standbyPair: 'hold',
    cut: [],
    ackedOnOneSite: 0,
    judgement: null,
    takeover: null,
    writes: 0,
    faults: 0,
  };
}

/** The sync member that is not the primary. */
export function secondaryOf(context: ModelContext): SyncSiteId {
  return context.primary === 1 ? 2 : 1;
}

/** The link between two different sites. */
export function linkBetween(a: 1 | 2 | 3, b: 1 | 2 | 3): LinkId {
  return (a < b ? `${a}-${b}` : `${b}-${a}`) as LinkId;
}

/** Both sites up and the link between them not cut. */
export function reachable(context: ModelContext, a: 1 | 2 | 3, b: 1 | 2 | 3): boolean {
  return context.sites[a].up && context.sites[b].up && !context.cut.includes(linkBetween(a, b));
}

/** Last update number applied at a site (site 3: its restored number). */
export function lastOf(context: ModelContext, site: 1 | 2 | 3): number {
  return context.sites[site].applied.length;
}

/** Site 3's received number: restored plus what waits in its journal. */
export function receivedOf(context: ModelContext): number {
  const remote = context.sites[3];
  return remote.applied.length + remote.pending.length;
}

/** Entries held in a sync member's journal. */
export function journalEntries(member: SyncMemberState): number {
  return member.applied.length - member.journalFirst + 1;
}

/**
 * A sync member's journal covers site 3's received number `r`: every entry after `r` up to the member's last
 * update number is in the journal (what makes a delta resync possible: claims 19, 20; P5).
 */
export function covers(member: SyncMemberState, received: number): boolean {
  return received <= member.applied.length && member.journalFirst <= received + 1;
}

/**
 * The judge (claims 18, 19, 20, 28): site 3 sends its received number, the source decides with its journal.
 * `takeover` is the source's last update number at a failover, when site 3 has not been judged since.
 */
export function judge(context: ModelContext, source: SyncSiteId): JudgeVerdict {
  const received = receivedOf(context);
  const member = context.sites[source];
  if (received > member.applied.length) return 'remoteAhead';
  if (context.takeover !== null && received > context.takeover) return 'remoteAhead';
  if (received === member.applied.length) return 'noUpdateRequired';
  if (covers(member, received)) return 'deltaResync';
  return 'fullCopy';
}

/** The block key of a block: its index across the consistency group. */
export function blockKey(params: ModelParams, volume: number, block: number): number {
  return volume * params.blocksPerVolume + block;
}

/** The byte range an entry covers in its volume: offset from the volume's start, and length. */
export function entryRange(params: ModelParams, entry: Pick<Entry, 'block' | 'start' | 'length'>): { offset: number; length: number } {
  return { offset: entry.block * params.blockBytes + (entry.start ?? 0), length: entry.length ?? params.blockBytes };
}

/** The block keys a byte range of a volume touches, in order (a range that ends mid-block touches that block). */
export function blockKeysOf(params: ModelParams, volume: number, offset: number, length: number): number[] {
  const first = Math.floor(offset / params.blockBytes);
  const last = Math.floor((offset + length - 1) / params.blockBytes);
  const keys: number[] = [];
  for (let block = first; block <= last; block++) keys.push(blockKey(params, volume, block));
  return keys;
}

/**
 * A site's image block by block, for display: the data byte of the last write that touched each block (0 =
 * never written), in block-key order. A byte-range write may leave a block partly older data: the digest
 * is computed from {@link imageOf}, byte by byte.
 */
export function blockImageOf(params: ModelParams, applied: readonly Entry[]): number[] {
  const image = new Array<number>(params.volumeCount * params.blocksPerVolume).fill(0);
  for (const entry of applied) {
    const { offset, length } = entryRange(params, entry);
    for (const key of blockKeysOf(params, entry.volume, offset, length)) image[key] = entry.data;
  }
  return image;
}

/**
 * A site's image, byte by byte: the volumes concatenated in volume order, each byte the data byte of the
 * last write that covered it (0 = never written).
 */
export function imageOf(params: ModelParams, applied: readonly Entry[]): Uint8Array {
  const volumeBytes = params.blocksPerVolume * params.blockBytes;
  const image = new Uint8Array(params.volumeCount * volumeBytes);
  for (const entry of applied) {
    const { offset, length } = entryRange(params, entry);
    const at = entry.volume * volumeBytes + offset;
    image.fill(entry.data, at, at + length);
  }
  return image;
}

/** Whether a site accepts host writes now (P4 depends on this being true for at most one site). */
export function acceptsHostWrites(context: ModelContext, site: SyncSiteId): boolean {
  const member = context.sites[site];
  if (!member.up || member.fenced || context.primary !== site) return false;
  const alone = context.syncPair === 'suspended' || context.syncPair === 'resyncing';
  return !(site === 1 && alone && context.params.fencePolicy === 'refuse');
}

/**
 * A compact, canonical key of a context, for the explorer's visited set. Parameters are left out (constant
 * within one exploration). Two contexts with the same key are the same abstract state.
 */
export function contextKey(context: ModelContext): string {
  const entries = (list: readonly Entry[]): string =>
    list.map((e) => `${e.volume}.${e.block}.${e.data}${e.start !== undefined || e.length !== undefined ? `+${e.start ?? 0}:${e.length ?? ''}` : ''}`).join(',');
  const member = (m: SyncMemberState): string =>
    `${m.up ? 'U' : 'D'}${m.mode[0]}${m.fenced ? 'F' : ''}[${entries(m.applied)}]${m.journalFirst}k${m.knownRestored}c${m.changed.join(',')}`;
  const remote = context.sites[3];
  return [
    member(context.sites[1]),
    member(context.sites[2]),
    `${remote.up ? 'U' : 'D'}${remote.mode[0]}[${entries(remote.applied)}|${entries(remote.pending)}]`,
    context.primary,
    context.syncPair,
    context.asyncPair,
    context.standbyPair,
    context.cut.join(','),
    context.ackedOnOneSite,
    context.judgement
      ? `${context.judgement.verdict}${context.judgement.remoteReceived}.${context.judgement.sourceLast}${context.judgement.forced ? 'F' : ''}`
      : '-',
    context.takeover ?? '-',
    context.writes,
    context.faults,
  ].join('|');
}
