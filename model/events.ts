/**
 * The events of the model. Each is a host write, a background step (pull, restore) or an operator or fault
 * command; each maps one-to-one to a call of the implementation's public API (`model/README.md`).
 */
import type { HostId, SiteId, SyncSiteId } from './observation.ts';

/** A link between two sites, written with the smaller site first. */
export type LinkId = '1-2' | '1-3' | '2-3';

/** Every link, in the order the observation lists cut links. */
export const linkIds: readonly LinkId[] = ['1-2', '1-3', '2-3'];

/** Host write of one block with a data byte (claims 2-6, 10, 21, 25, 32-35). */
export interface HostWriteEvent {
  type: 'HOST_WRITE';
  host: HostId;
  volume: number;
  block: number;
  /** The byte every position of the block is filled with (1..255: 0 is "never written"). */
  data: number;
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
  bounds: { volumeCount: number; blocksPerVolume: number; writesMax: number; faultsMax: number },
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
