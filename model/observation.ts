/**
 * The observation: the contract between the model and the implementation.
 *
 * After every step the conformance harness compares the model's observation with the one the
 * implementation reports. This file holds only types (and no code), so that `impl/` can import it without
 * importing anything else of the model. The meaning of every field is fixed in `model/README.md`.
 */

/** The three storage systems: 1 and 2 are the sync members, 3 the asynchronous remote. */
export type SiteId = 1 | 2 | 3;

/** A sync member: the sites that can be primary. */
export type SyncSiteId = 1 | 2;

/** A host: host 1 is served by site 1, host 2 by site 2 after a failover. */
export type HostId = 1 | 2;

/** The mode of a storage system (DESIGN.md "Modes"). */
export type SiteMode = 'normal' | 'failed' | 'resyncing' | 'syncReversed';

/** The role of a storage system in the configuration. */
export type SiteRole = 'primary' | 'secondary' | 'remote';

/** State of the synchronous pair between sites 1 and 2. */
export type SyncPairState = 'inSync' | 'reversed' | 'suspended' | 'resyncing';

/** State of the asynchronous pair from the source to site 3. */
export type AsyncPairState = 'copying' | 'suspended' | 'suspendedOverflow' | 'deltaResync' | 'fullCopy';

/** State of the standby pair from the sync secondary to site 3 (Hitachi HOLD / HLDE). */
export type StandbyPairState = 'none' | 'hold' | 'holdError';

/** The judge's verdicts (claims 18, 19, 20, 28). */
export type JudgeVerdict = 'noUpdateRequired' | 'deltaResync' | 'fullCopy' | 'remoteAhead';

/**
 * The update-number range held in a journal: `[first..last]`, empty when `first === last + 1`.
 * @see claims 4, 6, 10, 11, 15
 */
export interface JournalRange {
  first: number;
  last: number;
  /** True when the journal holds at least 80% of its capacity (Hitachi's PFUL). */
  highWater: boolean;
}

/** What one storage system shows. */
export interface SiteObservation {
  mode: SiteMode;
  role: SiteRole;
  /** The update number of the last write applied to this site's volumes (site 3: its restored number). */
  lastUpdateNumber: number;
  journal: JournalRange;
  acceptsHostWrites: boolean;
  /** True once the operator fenced this site (one-way). */
  fenced: boolean;
  /** Number of blocks in this site's changed-block record (the differential resync's input). */
  changedBlocks: number;
  /** SHA-256 (hex) of the site's volumes' bytes, concatenated in volume order. */
  volumeDigest: string;
}

/** What the remote site shows beyond a {@link SiteObservation}. */
export interface RemoteObservation extends SiteObservation {
  /** Last update number pulled into site 3's journal. */
  received: number;
  /** Last update number restored into site 3's volumes. */
  restored: number;
  /** The site it pulls from (always the sync primary). */
  source: SyncSiteId;
  /** The source's last update number minus `restored`. */
  lag: number;
}

/** The last judgement made when site 3 was (re)attached to a source. */
export interface Judgement {
  verdict: JudgeVerdict;
  /** Site 3's received update number that was sent to the judge (claim 18). */
  remoteReceived: number;
  /** The judging source's last update number. */
  sourceLast: number;
  /** True when a failover went ahead over a `remoteAhead` verdict. */
  forced: boolean;
}

/** The abstract state of the whole system (DESIGN.md "Observation"). */
export interface Observation {
  sites: { 1: SiteObservation; 2: SiteObservation; 3: RemoteObservation };
  syncPair: { state: SyncPairState; primary: SyncSiteId };
  asyncPair: { state: AsyncPairState; source: SyncSiteId };
  standbyPair: { state: StandbyPairState; from: SyncSiteId };
  /** Cut links, each written `"a-b"` with `a < b`, sorted. */
  cutLinks: string[];
  /** Writes acknowledged to a host while held by one sync member only (the P1 exposure window). */
  ackedOnOneSite: number;
  judgement: Judgement | null;
}
