/**
 * The observation of a model state: the abstract view the implementation must show after the same steps
 * (DESIGN.md "Observation"). Volume digests are predicted from the write history alone, byte by byte: every
 * byte a write covered holds the data byte of the last write that covered it, every other byte zero, hashed
 * with SHA-256 in volume order. The model never calls the implementation's code to get them.
 */
import { sha256 } from '@noble/hashes/sha2.js';
import { bytesToHex } from '@noble/hashes/utils.js';
import type { JournalRange, Observation, SiteObservation } from './observation.ts';
import type { ModelParams } from './params.ts';
import {
  acceptsHostWrites,
  imageOf,
  journalEntries,
  lastOf,
  receivedOf,
  secondaryOf,
  type Entry,
  type ModelContext,
  type SyncMemberState,
} from './state.ts';

/** High water: at least 80% of the capacity (Hitachi's PFUL), in integers. */
export function isHighWater(entries: number, entriesMax: number): boolean {
  return entries * 5 >= entriesMax * 4;
}

// Histories are immutable and shared between states until they change, so a digest is computed once per
// history (and per block geometry) and looked up after that.
const digestCache = new WeakMap<readonly Entry[], Map<string, string>>();

/** SHA-256 (hex) of the volumes a history produces, concatenated in volume order. */
export function digestOf(params: ModelParams, applied: readonly Entry[]): string {
  const geometry = `${params.volumeCount}x${params.blocksPerVolume}x${params.blockBytes}`;
  let byGeometry = digestCache.get(applied);
  const cached = byGeometry?.get(geometry);
  if (cached !== undefined) return cached;
  const digest = bytesToHex(sha256(imageOf(params, applied)));
  if (!byGeometry) digestCache.set(applied, (byGeometry = new Map()));
  byGeometry.set(geometry, digest);
  return digest;
}

function syncMemberObservation(context: ModelContext, site: 1 | 2, member: SyncMemberState, digests: boolean): SiteObservation {
  const last = member.applied.length;
  const journal: JournalRange = {
    first: member.journalFirst,
    last,
    highWater: isHighWater(journalEntries(member), context.params.journalEntriesMax),
  };
  return {
    mode: member.mode,
    role: context.primary === site ? 'primary' : 'secondary',
    lastUpdateNumber: last,
    journal,
    acceptsHostWrites: acceptsHostWrites(context, site),
    fenced: member.fenced,
    changedBlocks: member.changed.length,
    volumeDigest: digests ? digestOf(context.params, member.applied) : '',
  };
}

/**
 * The observation of a model state (see `model/README.md` for every field's meaning). `digests: false`
 * leaves every `volumeDigest` empty: the trace validator does so when a log's writes are opaque to the
 * model (not one repeated byte per whole block), where rendering large images would be wasted work.
 */
export function observe(context: ModelContext, digests = true): Observation {
  const remote = context.sites[3];
  const restored = lastOf(context, 3);
  const received = receivedOf(context);
  return {
    sites: {
      1: syncMemberObservation(context, 1, context.sites[1], digests),
      2: syncMemberObservation(context, 2, context.sites[2], digests),
      3: {
        mode: remote.mode,
        role: 'remote',
        lastUpdateNumber: restored,
        journal: {
          first: restored + 1,
          last: received,
          highWater: isHighWater(remote.pending.length, context.params.journalEntriesMax),
        },
        acceptsHostWrites: false,
        fenced: false,
        changedBlocks: 0,
        volumeDigest: digests ? digestOf(context.params, remote.applied) : '',
        received,
        restored,
        source: context.primary,
        lag: lastOf(context, context.primary) - restored,
      },
    },
    syncPair: { state: context.syncPair, primary: context.primary },
    asyncPair: { state: context.asyncPair, source: context.primary },
    standbyPair: { state: context.standbyPair, from: secondaryOf(context) },
    cutLinks: [...context.cut],
    ackedOnOneSite: context.ackedOnOneSite,
    judgement: context.judgement,
  };
}
