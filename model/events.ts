/**
 * The events of the model. Each is a host write, a background step (pull, restore) or an operator or fault
 * command; each maps one-to-one to a call of the implementation's public API (`model/README.md`).
 */
import type { HostId, SiteId, SyncSiteId } from './observation.ts';

/** A link between two sites, written with the smaller site first. */
export type LinkId = '1-2' | '1-3' | '2-3';

/** Every link, in the order the observation lists cut links. */
export const linkIds: readonly LinkId[] = ['1-2', '1-3', '2-3'];

/**
 * Host write of a byte range filled with a data byte (claims 2-6, 10, 21, 25, 32-35). Without `start` and
 * `length` it writes block `block` whole; with them it writes `length` bytes from byte `start` of block
 * `block`, so a write may begin mid-block, span a block boundary and end mid-block (issue 16: what maps a
 * byte range to blocks is part of what the conformance run checks).
 */
export interface HostWriteEvent {
  type: 'HOST_WRITE';
  host: HostId;
  volume: number;
  block: number;
  /** The byte every written position is filled with (1..255: 0 is "never written"). */
  data: number;
  /** Bytes into block `block` where the write starts (absent: 0). */
  start?: number;
  /** Bytes written (absent: one whole block). */
  length?: number;
}

/** The byte range of a host write in its volume: `offset` from the volume's start, `length` bytes. */
export function hostWriteRange(event: Pick<HostWriteEvent, 'block' | 'start' | 'length'>, blockBytes: number): { offset: number; length: number } {
  return { offset: event.block * blockBytes + (event.start ?? 0), length: event.length ?? blockBytes };
}

/** Whether a host write is a byte range (not one whole, aligned block). */
export function isByteRangeWrite(event: Pick<HostWriteEvent, 'start' | 'length'>): boolean {
  return event.start !== undefined || event.length !== undefined;
}

/**
 * The shapes of a byte-range write the byte-granular model tries, per volume, for blocks of `blockBytes`
 * and `blocksPerVolume` blocks: one that spans the boundary of the first two blocks (starting and ending
 * mid-block), one inside the first block that ends mid-block, and one that starts mid-block and runs to the
 * volume's end. Each is named for the byte-range coverage of the conformance run.
 */
export function byteRangeShapes(blockBytes: number, blocksPerVolume: number): { shape: ByteRangeShape; block: number; start: number; length: number }[] {
  const half = Math.max(1, blockBytes >> 1);
  const shapes: { shape: ByteRangeShape; block: number; start: number; length: number }[] = [
    { shape: 'endsMidBlock', block: 0, start: 0, length: blockBytes - half },
    { shape: 'startsMidBlockToEnd', block: blocksPerVolume - 1, start: half, length: blockBytes - half },
  ];
  if (blocksPerVolume > 1) shapes.unshift({ shape: 'spansBlocks', block: 0, start: half, length: blockBytes });
  return shapes;
}

/** The kinds of byte-range write (see {@link byteRangeShapes}); `wholeBlock` is the aligned write. */
export type ByteRangeShape = 'wholeBlock' | 'spansBlocks' | 'endsMidBlock' | 'startsMidBlockToEnd';

/** The shape of a host write, for coverage. */
export function byteRangeShapeOf(event: HostWriteEvent, blockBytes: number): ByteRangeShape | 'other' {
  if (!isByteRangeWrite(event)) return 'wholeBlock';
  const { offset, length } = hostWriteRange(event, blockBytes);
  const end = offset + length;
  if (Math.floor(offset / blockBytes) !== Math.floor((end - 1) / blockBytes)) return 'spansBlocks';
  if (offset % blockBytes === 0 && end % blockBytes !== 0) return 'endsMidBlock';
  if (offset % blockBytes !== 0 && end % blockBytes === 0) return 'startsMidBlockToEnd';
  return 'other';
}

/** Every event of the model, a discriminated union on `type`. */
export type ModelEvent =
  | HostWriteEvent
  | { type: 'PULL_JOURNAL' }
  | { type: 'RESTORE_JOURNAL' }
  | { type: 'FAIL_SITE'; site: SiteId }
  | { type: 'RECOVER_SITE'; site: SiteId }
  | { type: 'CUT_LINK'; link: LinkId }
  | { type: 'RESTORE_LINK'; link: LinkId }
  | { type: 'FENCE_SITE'; site: SiteId }
  | { type: 'FAILOVER'; force: boolean }
  | { type: 'RESYNC_SITE'; site: SyncSiteId }
  | { type: 'DELTA_RESYNC' }
  | { type: 'FULL_COPY' }
  | { type: 'FAILBACK' };

/** The event type names. */
export type ModelEventType = ModelEvent['type'];

/** All event types, in the order the explorer tries them. */
export const modelEventTypes: readonly ModelEventType[] = [
  'HOST_WRITE',
  'PULL_JOURNAL',
  'RESTORE_JOURNAL',
  'FAIL_SITE',
  'RECOVER_SITE',
  'CUT_LINK',
  'RESTORE_LINK',
  'FENCE_SITE',
  'FAILOVER',
  'RESYNC_SITE',
  'DELTA_RESYNC',
  'FULL_COPY',
  'FAILBACK',
];

/** A short, stable, human-readable form of an event: `HOST_WRITE host=1 volume=0 block=0 data=1`. */
export function formatEvent(event: ModelEvent): string {
  const args = Object.entries(event)
    .filter(([key]) => key !== 'type')
    .map(([key, value]) => `${key}=${String(value)}`);
  return [event.type, ...args].join(' ');
}

/** Parses {@link formatEvent}'s output back into an event; throws on anything malformed. */
export function parseEvent(text: string): ModelEvent {
  const [type, ...args] = text.trim().split(/\s+/);
  if (!type || !(modelEventTypes as readonly string[]).includes(type)) {
    throw new Error(`unknown event type in ${JSON.stringify(text)}`);
  }
  const event: Record<string, unknown> = { type };
  for (const arg of args) {
    const match = /^([a-z]+)=(.+)$/.exec(arg);
    if (!match) throw new Error(`malformed event argument ${JSON.stringify(arg)} in ${JSON.stringify(text)}`);
    const [, key, raw] = match as unknown as [string, string, string];
    event[key] = raw === 'true' ? true : raw === 'false' ? false : /^\d+$/.test(raw) ? Number(raw) : raw;
  }
  return event as unknown as ModelEvent;
}

/**
 * Every event worth trying in a state of the bounded model: host writes while `writes < writesMax` (the
 * data byte is the write's ordinal, so histories stay distinguishable), faults while `faults < faultsMax`,
 * and every other command. Refused ones are filtered by the caller.
 */
export function candidateEvents(
  bounds: { volumeCount: number; blocksPerVolume: number; blockBytes?: number; byteWrites?: boolean; writesMax: number; faultsMax: number },
  counters: { writes: number; faults: number },
): ModelEvent[] {
  const events: ModelEvent[] = [];
  if (counters.writes < bounds.writesMax) {
    const data = (counters.writes % 255) + 1;
    for (const host of [1, 2] as const) {
      for (let volume = 0; volume < bounds.volumeCount; volume++) {
        for (let block = 0; block < bounds.blocksPerVolume; block++) {
          events.push({ type: 'HOST_WRITE', host, volume, block, data });
        }
        if (bounds.byteWrites && bounds.blockBytes !== undefined) {
          for (const { block, start, length } of byteRangeShapes(bounds.blockBytes, bounds.blocksPerVolume)) {
            events.push({ type: 'HOST_WRITE', host, volume, block, data, start, length });
          }
        }
      }
    }
  }
  events.push({ type: 'PULL_JOURNAL' }, { type: 'RESTORE_JOURNAL' });
  for (const site of [1, 2, 3] as const) {
    if (counters.faults < bounds.faultsMax) events.push({ type: 'FAIL_SITE', site });
    events.push({ type: 'RECOVER_SITE', site });
  }
  for (const link of linkIds) {
    if (counters.faults < bounds.faultsMax) events.push({ type: 'CUT_LINK', link });
    events.push({ type: 'RESTORE_LINK', link });
  }
  events.push(
    { type: 'FENCE_SITE', site: 1 },
    { type: 'FAILOVER', force: false },
    { type: 'FAILOVER', force: true },
    { type: 'RESYNC_SITE', site: 1 },
    { type: 'RESYNC_SITE', site: 2 },
    { type: 'DELTA_RESYNC' },
    { type: 'FULL_COPY' },
    { type: 'FAILBACK' },
  );
  return events;
}

/**
 * Events the explorer and the walks try only to see them refused: a host write to a volume that does not
 * exist, to a block past the volume's end, and a byte range that starts inside the volume and runs past its
 * end; a fence of site 2; and every failure and link cut, which {@link candidateEvents} leaves out once a
 * path has spent its faults (a second failure of a failed site is a refusal, not a fault). Only the
 * refusals they meet are recorded; accepted probes take no step. Each is the only way to reach some refusal
 * conditions (`model/semantics.ts`, `refusalConditions`).
 */
export function refusalProbeEvents(bounds: { volumeCount: number; blocksPerVolume: number; blockBytes: number }, data: number): ModelEvent[] {
  const events: ModelEvent[] = [];
  for (const host of [1, 2] as const) {
    events.push(
      { type: 'HOST_WRITE', host, volume: bounds.volumeCount, block: 0, data },
      { type: 'HOST_WRITE', host, volume: 0, block: bounds.blocksPerVolume, data },
      { type: 'HOST_WRITE', host, volume: 0, block: bounds.blocksPerVolume - 1, data, start: 1, length: bounds.blockBytes },
      { type: 'HOST_WRITE', host, volume: 0, block: 0, data, start: 0, length: 0 },
    );
  }
  events.push({ type: 'FENCE_SITE', site: 2 });
  for (const site of [1, 2, 3] as const) events.push({ type: 'FAIL_SITE', site });
  for (const link of linkIds) events.push({ type: 'CUT_LINK', link });
  return events;
}
