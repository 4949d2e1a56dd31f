/**
 * The safety properties P1-P7 of DESIGN.md, as checks on one model state and on one transition. The
 * explorer runs them on every reachable state and every transition; the conformance harness reuses the
 * state checks on the model side of every step. Each check returns the violations it finds (never throws),
 * so a broken variant of the chart is reported with a shortest counterexample instead of a crash.
 */
import type { ModelEvent } from './events.ts';
import type { AnyStateMachine, AnyStateNode, StateValue } from 'xstate';
import { regionNames, regionStateNames, regionStatesOf } from './regions.ts';
import { check, journalOf } from './semantics.ts';
import {
  blockKeysOf,
  covers,
  entryRange,
  imageOf,
  journalEntries,
  receivedOf,
  type Entry,
  type ModelContext,
} from './state.ts';

/** The name of a property; `MIRROR` is the chart's own consistency (regions agree with the context). */
export type PropertyName = 'P1' | 'P2' | 'P3' | 'P4' | 'P5' | 'P6' | 'P7' | 'P9' | 'MIRROR';

/** One property broken in one state or transition. */
export interface Violation {
  property: PropertyName;
  message: string;
}

/** The short statement of each property, for reports. */
export const propertyStatements: Readonly<Record<PropertyName, string>> = {
  P1: 'acknowledged-write durability: an in-sync pair holds the same entries with the same update numbers; under "refuse" nothing is acknowledged on one site; every write one member holds and the other lacks is in its changed-block record',
  P2: "write-order fidelity: site 3's history is a prefix of its source's",
  P3: 'update numbers are unique and consecutive in every journal and history, and survive failover',
  P4: 'single writer: at most one site accepts host writes',
  P5: 'delta resync only when the source journal covers every missing entry',
  P6: 'no lost data at failback: the failback keeps every write the primary held, at both members; in step and caught up, all three images are equal',
  P7: 'journals within capacity; a copying async pair never lost an entry site 3 needs',
  P9: 'recoverability: from every explored state, recover, resync, judge and copy commands alone reach full protection (every site up, no link cut, the sync pair in step, site 3 copying and caught up, three equal images)',
  MIRROR: "the chart's regions, moved by the events, show each site's role and mode and each pair's state as the context says",
};

const sameEntry = (entry: Entry, other: Entry | undefined): boolean =>
  other !== undefined && entry.u === other.u && entry.volume === other.volume && entry.block === other.block && entry.data === other.data && entry.start === other.start && entry.length === other.length;

const sameEntries = (a: readonly Entry[], b: readonly Entry[]): boolean => a.length === b.length && a.every((entry, i) => sameEntry(entry, b[i]));

/**
 * P1 made whole: the blocks of every write that sync member `site` holds and its peer does not (lacks, or holds
 * another write under that update number) that are missing from `site`'s changed-block record. The resync
 * copies the blocks of both records (claims 29-31), so a block left out here is a difference it never repairs.
 */
export function unrecordedBlocks(context: ModelContext, site: 1 | 2): number[] {
  const member = context.sites[site];
  const peer = context.sites[site === 1 ? 2 : 1];
  const missing = new Set<number>();
  member.applied.forEach((entry, i) => {
    if (sameEntry(entry, peer.applied[i])) return;
    const { offset, length } = entryRange(context.params, entry);
    for (const key of blockKeysOf(context.params, entry.volume, offset, length)) if (!member.changed.includes(key)) missing.add(key);
  });
  return [...missing].sort((a, b) => a - b);
}

const isPrefix = (prefix: readonly Entry[], of: readonly Entry[]): boolean =>
  prefix.length <= of.length && sameEntries(prefix, of.slice(0, prefix.length));

const consecutiveFrom = (entries: readonly Entry[], first: number): boolean => entries.every((entry, i) => entry.u === first + i);

/** Checks P1-P7 and the region mirror on one state. */
export function checkState(context: ModelContext, value?: StateValue): Violation[] {
  const violations: Violation[] = [];
  const fail = (property: PropertyName, message: string): void => {
    violations.push({ property, message });
  };
  const { sites, params } = context;
  const inSync = context.syncPair === 'inSync' || context.syncPair === 'reversed';
  const source = sites[context.primary];
  const remote = sites[3];
  const received = receivedOf(context);

  // P1
  if (inSync && !sameEntries(sites[1].applied, sites[2].applied)) {
    fail('P1', `sync pair is ${context.syncPair} but sites 1 and 2 hold different entries`);
  }
  if (inSync && context.ackedOnOneSite !== 0) {
    fail('P1', `sync pair is ${context.syncPair} but ${context.ackedOnOneSite} writes are acknowledged on one site`);
  }
  for (const site of [1, 2] as const) {
    const unrecorded = unrecordedBlocks(context, site);
    if (unrecorded.length > 0) fail('P1', `site ${site} holds writes its peer lacks in blocks ${unrecorded.join(', ')}, not in its changed-block record`);
  }

  // P2
  const judgedSinceFailover = context.takeover === null;
  if (context.asyncPair !== 'fullCopy' && context.asyncPair !== 'suspendedOverflow' && judgedSinceFailover) {
    if (!isPrefix([...remote.applied, ...remote.pending], source.applied)) {
      fail('P2', `site 3's history (restored ${remote.applied.length}, received ${received}) is not a prefix of site ${context.primary}'s`);
    }
  }

  // P3
  for (const site of [1, 2, 3] as const) {
    if (!consecutiveFrom(sites[site].applied, 1)) fail('P3', `site ${site} applied update numbers out of sequence`);
  }
  if (!consecutiveFrom(remote.pending, remote.applied.length + 1)) fail('P3', "site 3's journal is not consecutive after its restored number");
  for (const site of [1, 2] as const) {
    const member = sites[site];
    if (member.journalFirst < 1 || member.journalFirst > member.applied.length + 1) {
      fail('P3', `site ${site} journal starts at ${member.journalFirst}, outside 1..${member.applied.length + 1}`);
    }
  }

  // P4, on what the semantics would accept (a host write probed at each site), not on the primary field alone;
  // the explorer also asks the chart itself (explore.ts, `chartWriters`).
  const writers = writersOf(context);
  if (writers.length > 1) fail('P4', `sites ${writers.join(' and ')} both accept host writes`);

  // P5
  if (context.asyncPair === 'deltaResync' && !covers(source, received)) {
    fail('P5', `async pair awaits a delta resync but site ${context.primary}'s journal does not cover site 3's ${received}`);
  }

  // P6
  const caughtUp = remote.up && sites[1].up && sites[2].up && remote.pending.length === 0 && remote.applied.length === source.applied.length;
  if (inSync && context.asyncPair === 'copying' && caughtUp) {
    const images = ([1, 2, 3] as const).map((site) => imageOf(params, sites[site].applied).join(','));
    if (new Set(images).size !== 1) fail('P6', 'in step and caught up, but the three images differ');
  }

  // P7
  for (const site of [1, 2] as const) {
    const held = journalEntries(sites[site]);
    if (held > params.journalEntriesMax) fail('P7', `site ${site} journal holds ${held} > ${params.journalEntriesMax} entries`);
  }
  if (remote.pending.length > params.journalEntriesMax) {
    fail('P7', `site 3 journal holds ${remote.pending.length} > ${params.journalEntriesMax} entries`);
  }
  if (context.asyncPair === 'copying' && !covers(source, received)) {
    fail('P7', `async pair copying but site ${context.primary}'s journal lost entries after site 3's ${received}`);
  }

  if (value !== undefined) violations.push(...checkMirror(context, value));
  return violations;
}

/**
 * P9's commands: those that recover, resync, judge (a judge runs when site 3 reaches its source again) and copy.
 * No failover, failback, fence, host write or new fault: recovery must not need a decision that costs data.
 */
export const recoveryEventTypes: ReadonlySet<ModelEvent['type']> = new Set<ModelEvent['type']>([
  'RECOVER_SITE',
  'RESTORE_LINK',
  'RESYNC_SITE',
  'DELTA_RESYNC',
  'FULL_COPY',
  'PULL_JOURNAL',
  'RESTORE_JOURNAL',
]);

/** Full protection, P9's goal: every site up, no link cut, the pair in step, site 3 copying and caught up, equal images. */
export function fullyProtected(context: ModelContext): boolean {
  const { sites } = context;
  if (!sites[1].up || !sites[2].up || !sites[3].up || context.cut.length > 0) return false;
  if (context.syncPair !== 'inSync' && context.syncPair !== 'reversed') return false;
  if (context.asyncPair !== 'copying' || sites[3].pending.length > 0 || sites[3].applied.length !== sites[context.primary].applied.length) return false;
  const images = ([1, 2, 3] as const).map((site) => imageOf(context.params, sites[site].applied).join(','));
  return new Set(images).size === 1;
}

/** A host write at `host` that any bounds allow (volume 0, block 0): P4's probe of what a site accepts. */
export function hostWriteProbe(host: 1 | 2): ModelEvent {
  return { type: 'HOST_WRITE', host, volume: 0, block: 0, data: 1 };
}

/** The sites whose host write the semantics accept now (P4: at most one). */
export function writersOf(context: ModelContext): (1 | 2)[] {
  return ([1, 2] as const).filter((host) => check(context, hostWriteProbe(host)) === null);
}

/**
 * MIRROR: each region shows what the context says (`regionStatesOf`). The regions move on the events with
 * rules of their own (`model/regions.ts`), so a rule that disagrees with `semantics.ts` shows here.
 */
export function checkMirror(context: ModelContext, value: StateValue): Violation[] {
  const regions = value as Record<string, unknown>;
  const expected = regionStatesOf(context);
  return regionNames
    .filter((region) => regions[region] !== expected[region])
    .map((region) => ({
      property: 'MIRROR' as const,
      message: `region ${region} shows ${JSON.stringify(regions[region])}, the context says ${expected[region]}`,
    }));
}

/** Checks the properties that speak of a step: what an accepted event may do. */
export function checkTransition(before: ModelContext, event: ModelEvent, after: ModelContext): Violation[] {
  const violations: Violation[] = [];
  const fail = (property: PropertyName, message: string): void => {
    violations.push({ property, message });
  };
  const inSyncBefore = before.syncPair === 'inSync' || before.syncPair === 'reversed';

  if (event.type === 'HOST_WRITE' && after.writes > before.writes) {
    const site = event.host;
    const u = after.sites[site].applied.length;
    if (u !== before.sites[site].applied.length + 1) fail('P3', `host write at site ${site} got update number ${u}, not last + 1`);
    if (!inSyncBefore && site === 1 && before.params.fencePolicy === 'refuse') {
      fail('P1', 'host 1 write acknowledged on site 1 alone under fence policy "refuse"');
    }
    if (!inSyncBefore && after.ackedOnOneSite !== before.ackedOnOneSite + 1) {
      fail('P1', 'a write acknowledged on one site is not counted in the exposure');
    }
  }
  if (event.type === 'FAILOVER' && after.primary === 2 && before.primary === 1) {
    if (after.sites[2].applied.length !== before.sites[2].applied.length) fail('P3', 'failover changed site 2 update numbers');
    if (before.sites[1].up && !before.sites[1].fenced) fail('P4', 'failover while site 1 was up and not fenced');
  }
  if (event.type === 'FAILBACK' && before.primary === 2 && after.primary === 1) {
    // P6 made whole: equal images are not enough (a failback that cut the same writes from all three sites
    // leaves them equal); every write site 2 held when the failback began is still held by both members.
    const held = before.sites[2].applied;
    for (const site of [1, 2] as const) {
      if (!isPrefix(held, after.sites[site].applied)) {
        fail('P6', `failback lost writes at site ${site}: site 2 held ${held.length} before it, site ${site} holds ${after.sites[site].applied.length} after, or others`);
      }
    }
  }
  if (event.type === 'PULL_JOURNAL') {
    const source = before.sites[before.primary];
    const fromJournal = journalOf(source);
    const pulled = after.sites[3].pending.slice(before.sites[3].pending.length);
    if (pulled.length > 0 && !isPrefix(pulled, fromJournal.filter((e) => e.u > receivedOf(before)))) {
      fail('P5', "site 3 pulled entries that were not in the source's journal");
    }
  }
  if (event.type === 'DELTA_RESYNC' && after.asyncPair === 'copying') {
    if (!covers(before.sites[before.primary], receivedOf(before))) {
      fail('P5', "delta resync done although the source's journal did not cover site 3");
    }
  }
  if (event.type === 'RESTORE_JOURNAL') {
    const restored = after.sites[3].applied.slice(before.sites[3].applied.length);
    if (!sameEntries(restored, before.sites[3].pending)) fail('P2', 'site 3 restored something other than its journal, in order');
  }
  return violations;
}

/**
 * MIRROR, checked on the chart's structure: every region the context speaks of is there, with exactly the
 * states `regionStatesOf` can name, and no region moves without an event (an eventless move would make the
 * chart a picture of the context again, not a rule that can disagree with it).
 */
export function checkChartStructure(machine: AnyStateMachine): Violation[] {
  const violations: Violation[] = [];
  const fail = (message: string): void => {
    violations.push({ property: 'MIRROR', message });
  };
  for (const name of regionNames) {
    const region = machine.root.states[name] as AnyStateNode | undefined;
    if (!region) {
      fail(`the chart has no region ${name}`);
      continue;
    }
    const states = Object.keys(region.states).sort();
    const expected = [...regionStateNames[name]].sort();
    if (states.join(',') !== expected.join(',')) fail(`region ${name} has states ${states.join(', ')}; the context names ${expected.join(', ')}`);
    for (const state of Object.values(region.states) as AnyStateNode[]) {
      if ((state.always ?? []).length > 0) fail(`region ${name}: ${state.key} moves without an event`);
    }
  }
  return violations;
}
