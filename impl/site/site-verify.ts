/**
 * Online verify at one site process (`threesite verify`; the method and its consistent point are in
 * `core/verify.ts`). A {@link SiteVerify} belongs to a {@link SiteNode} and plays the part its site has:
 *
 * - **At the primary** it runs a verify ({@link SiteVerify.run}): chunk by chunk, in one step of the event
 *   loop each, it hashes its own chunk at its last update number N and sends a verify marker (N) to its
 *   in-sync secondary and to site 3; it compares each answer with its own digests as the answer arrives,
 *   records the secondary's differing blocks in its changed-block record (the next resync copies them), and
 *   keeps the result ({@link verifyResultsKept} of them). At most {@link verifyChunksInFlightMax} chunks wait
 *   for the secondary's answer and {@link verifyMarkersPendingMax} for site 3's (the run waits for room: it
 *   goes at the pace of the slower site, up to its deadline). A site that cannot be asked (the sync pair is
 *   not in sync, the link is down), that answers that it could not hash, or that has not answered at the
 *   deadline leaves those blocks *not verified*: never counted as equal.
 * - **At the secondary** it hashes a marker's chunk as soon as it arrives (the link is ordered: every sync
 *   write up to N came before it, none after), or answers why not (its last update number is not N).
 * - **At site 3** it holds a marker until site 3 has received N, then hashes the chunk at N (its volume and
 *   the journal entries through N) before any restore passes N; a marker site 3 cannot reach (its async pair
 *   is not copying, the bound {@link verifyMarkersPendingMax}) is answered at once with the reason.
 *
 * No clock here: the node gives the time ({@link SiteVerify.onTick}), which the deadline counts in.
 */

import type { AsyncPairState, SyncPairState } from '../../model/observation.ts';
import { InvalidArgumentError, MalformedMessageError, NotAllowedError, SiteFailedError } from '../core/errors.ts';
import { assert } from '../core/invariant.ts';
import type { Message, VerifyDigestsMessage, VerifyMarkerMessage } from '../core/messages.ts';
import type { SiteId, StorageSystem } from '../core/storage-system.ts';
import {
  verifyChunks,
  verifyChunksInFlightMax,
  verifyDeadlineMsMax,
  verifyDigestBytes,
  VerifyMarkers,
  verifyMarkersPendingMax,
  verifyOutcomeOf,
  verifyReasonCharsMax,
  verifyResultsKept,
  VerifyTally,
  type VerifyChunk,
  type VerifyMarker,
  type VerifyResult,
} from '../core/verify.ts';

/** Differing blocks listed per site in a status report (the verify's own answer lists more). */
export const verifyStatusListedMax = 16;

/** What the verify needs of its node. */
export interface VerifyHost {
  readonly site: StorageSystem;
  /** Sends a message to a peer; false when it is not connected (the message is lost). */
  send(peer: SiteId, message: Message): boolean;
  isConnected(peer: SiteId): boolean;
  /** Site 3's async pair. */
  asyncPair(): AsyncPairState;
  log(line: string): void;
}

/** What `threesite status` shows of verify at a site. */
export interface VerifyStatus {
  /** The primary: the last verify it ran (differing blocks listed up to {@link verifyStatusListedMax}), or null. */
  last: VerifyResult | null;
  /** Whether a verify is under way at this site (it is the primary running it). */
  running: boolean;
  /** The secondary and site 3: the last chunk this site hashed for a verify (its verify id and update number), or null. */
  hashed: { verifyId: number; updateNumber: number; chunks: number } | null;
  /** Site 3: verify markers it holds, not reached yet (at most {@link verifyMarkersPendingMax}). */
  markersPending: number;
}

/** A chunk sent to a peer and not answered yet. */
interface Outstanding {
  chunk: VerifyChunk;
  updateNumber: number;
  reference: Uint8Array;
}

/** A verify under way at the primary. */
interface Run {
  verifyId: number;
  primary: 1 | 2;
  secondary: 1 | 2;
  volumes: number[];
  startedAtMs: number;
  deadlineAtMs: number;
  blocks: number;
  tallies: Map<1 | 2 | 3, VerifyTally>;
  outstanding: Map<1 | 2 | 3, Map<string, Outstanding>>;
  /** Wakes the run's loop (an answer, a link down, a tick). */
  wake: (() => void) | null;
}

function keyOf(chunk: VerifyChunk): string {
  return `${chunk.volume}:${chunk.offset}`;
}

function reasonOf(text: string): string {
  return text.length <= verifyReasonCharsMax ? text : `${text.slice(0, verifyReasonCharsMax - 3)}...`;
}

/** One site's part of online verify (see the file comment). */
export class SiteVerify {
  readonly #host: VerifyHost;
  readonly #results: VerifyResult[] = [];
  readonly #markers = new VerifyMarkers();
  #run: Run | null = null;
  #nextVerifyId = 1;
  #nowMs = 0;
  #hashed: VerifyStatus['hashed'] = null;

  constructor(host: VerifyHost) {
    this.#host = host;
  }

  /** The verify results this site ran, oldest first (at most {@link verifyResultsKept}). */
  get results(): readonly VerifyResult[] {
    return this.#results;
  }

  /** What the status shows. */
  status(): VerifyStatus {
    const last = this.#results.at(-1) ?? null;
    return {
      last: last === null ? null : { ...last, sites: last.sites.map((s) => ({ ...s, differing: s.differing.slice(0, verifyStatusListedMax) })) as VerifyResult['sites'] },
      running: this.#run !== null,
      hashed: this.#hashed,
      markersPending: this.#markers.size,
    };
  }

  /**
   * Runs a verify of `volumes` (null: every volume) at this site, the primary, and resolves with its result
   * once every chunk is answered or `deadlineMs` has passed. Refused when this site is failed
   * ({@link SiteFailedError}), not the primary or already verifying ({@link NotAllowedError}), or with
   * volumes or a deadline out of range ({@link InvalidArgumentError}).
   */
  async run(volumes: readonly number[] | null, deadlineMs: number, startedAtMs: number): Promise<VerifyResult> {
    const site = this.#host.site;
    if (site.id === 3) throw new NotAllowedError('verify', 'site 3 is not a sync member: the primary runs a verify');
    if (!site.up) throw new SiteFailedError(site.id, 'verify');
    if (site.role !== 'primary') throw new NotAllowedError('verify', `site ${site.id} is not the primary`);
    if (this.#run !== null) throw new NotAllowedError('verify', `verify ${this.#run.verifyId} is under way`);
    if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > verifyDeadlineMsMax) throw new InvalidArgumentError('verify', 'deadlineMs', deadlineMs);
    if (!Number.isSafeInteger(startedAtMs) || startedAtMs < 0) throw new InvalidArgumentError('verify', 'startedAtMs', startedAtMs);
    const all = Array.from({ length: site.config.volumeCount }, (_, i) => i);
    const chosen = volumes === null ? all : [...new Set(volumes)].sort((a, b) => a - b);
    if (chosen.length === 0 || chosen.some((v) => !all.includes(v))) throw new InvalidArgumentError('verify', 'volumes', volumes);
    const primary = site.id as 1 | 2;
    const secondary = primary === 1 ? 2 : 1;
    const run: Run = {
      verifyId: this.#nextVerifyId,
      primary,
      secondary,
      volumes: chosen,
      startedAtMs,
      deadlineAtMs: this.#nowMs + deadlineMs,
      blocks: 0,
      tallies: new Map([
        [secondary, new VerifyTally(secondary)],
        [3, new VerifyTally(3)],
      ]),
      outstanding: new Map([
        [secondary, new Map()],
        [3, new Map()],
      ]),
      wake: null,
    };
    this.#nextVerifyId += 1;
    this.#run = run;
    this.#host.log(`verify ${run.verifyId}: volumes ${chosen.join(', ')}, deadline ${deadlineMs} ms`);
    try {
      for (const chunk of verifyChunks(chosen, site.config.volumeBytes)) {
        while (this.#windowFull(run) && !this.#pastDeadline(run)) await this.#sleep(run);
        const stopped = this.#stopped();
        if (stopped !== null || this.#pastDeadline(run)) {
          this.#notVerifiedAll(run, chunk, stopped ?? `the verify's deadline passed before this chunk`);
          continue;
        }
        this.#step(run, chunk);
      }
      while (this.#outstandingCount(run) > 0 && !this.#pastDeadline(run)) await this.#sleep(run);
      for (const [peer, outstanding] of run.outstanding) {
        for (const item of outstanding.values()) this.#tally(run, peer).notVerified(this.#blocksOf(item.chunk), `site ${peer} did not answer within the verify's deadline`);
        outstanding.clear();
      }
    } finally {
      this.#run = null;
    }
    const sites = [this.#tally(run, secondary).result, this.#tally(run, 3).result] as VerifyResult['sites'];
    const result: VerifyResult = { verifyId: run.verifyId, primary, startedAtMs, volumes: chosen, blocks: run.blocks, sites, outcome: verifyOutcomeOf(sites) };
    this.#results.push(result);
    if (this.#results.length > verifyResultsKept) this.#results.shift();
    const line = sites.map((s) => `site ${s.site} ${s.blocksCompared} compared, ${s.blocksDiffering} differing, ${s.blocksNotVerified} not verified`).join('; ');
    this.#host.log(`verify ${run.verifyId}: ${result.outcome}: ${run.blocks} blocks; ${line}`);
    return result;
  }

  /** A verify message from a peer (after the node checked its epoch). Throws {@link MalformedMessageError} for a range that is not in the volumes. */
  onMessage(peer: SiteId, message: VerifyMarkerMessage | VerifyDigestsMessage): void {
    const chunk: VerifyChunk = { volume: message.volume, offset: message.offset, length: message.length };
    this.#checkChunk(message.kind, chunk);
    if (message.kind === 'verifyDigests') {
      this.#onDigests(peer, chunk, message);
      return;
    }
    const site = this.#host.site;
    const marker: VerifyMarker = { verifyId: message.verifyId, chunk, updateNumber: message.updateNumber };
    if (site.id !== 3) {
      this.#answer(peer, marker, this.#hashAsSecondary(peer, marker));
      return;
    }
    const refusal =
      peer !== site.source
        ? `site ${peer} is not site 3's source (site ${site.source})`
        : this.#host.asyncPair() !== 'copying'
          ? `site 3's async pair is ${this.#host.asyncPair()}, not copying`
          : site.restored > marker.updateNumber
            ? `site 3 restored through u=${site.restored}, past u=${marker.updateNumber}`
            : this.#markers.add(marker);
    if (refusal !== null) {
      this.#answer(peer, marker, refusal);
      return;
    }
    this.hashReached();
  }

  /**
   * Site 3: hashes every marker whose update number it has received (before a restore can pass it), and
   * answers every marker it can no longer reach. The node calls it after each message and before each restore.
   */
  hashReached(): void {
    const site = this.#host.site;
    if (site.id !== 3 || this.#markers.size === 0) return;
    const pair = this.#host.asyncPair();
    if (!site.up || pair !== 'copying') {
      for (const marker of this.#markers.takeAll()) this.#answer(site.source, marker, `site 3's async pair is ${site.up ? pair : 'failed'}, not copying`);
      return;
    }
    for (const marker of this.#markers.takeReached(site.received)) {
      const answer = site.restored > marker.updateNumber ? `site 3 restored through u=${site.restored}, past u=${marker.updateNumber}` : site.chunkDigestsAt(marker.chunk, marker.updateNumber);
      this.#answer(site.source, marker, answer);
    }
  }

  /** A peer's link went down: what it was asked is not verified; site 3 drops the markers of its source (its answers would be lost). */
  onPeerDown(peer: SiteId): void {
    const site = this.#host.site;
    if (site.id === 3 && peer === site.source) this.#markers.takeAll();
    const run = this.#run;
    if (run === null || (peer !== 3 && peer !== run.secondary)) return;
    const outstanding = run.outstanding.get(peer) as Map<string, Outstanding>;
    for (const item of outstanding.values()) this.#tally(run, peer).notVerified(this.#blocksOf(item.chunk), `the link to site ${peer} went down`);
    outstanding.clear();
    run.wake?.();
  }

  /** The time (the node's clock): the deadline counts in it; a waiting run looks again. */
  onTick(nowMs: number): void {
    this.#nowMs = nowMs;
    this.#run?.wake?.();
  }

  /** The site failed or closes: site 3's markers are dropped; a run stops at its next step (its remaining blocks not verified). */
  stop(): void {
    this.#markers.takeAll();
    this.#run?.wake?.();
  }

  // -------------------------------------------------------------------------------------------------------

  /** One chunk at the primary, in one synchronous step: its digests at N, and a marker (N) to each other site. */
  #step(run: Run, chunk: VerifyChunk): void {
    const site = this.#host.site;
    const updateNumber = site.last;
    const reference = site.chunkDigests(chunk);
    const blocks = reference.length / verifyDigestBytes;
    run.blocks += blocks;
    for (const peer of [run.secondary, 3] as const) {
      const why = this.#cannotAsk(run, peer);
      if (why !== null) {
        this.#tally(run, peer).notVerified(blocks, why);
        continue;
      }
      const marker: VerifyMarkerMessage = { kind: 'verifyMarker', epoch: site.epoch, verifyId: run.verifyId, ...chunk, updateNumber };
      if (!this.#host.send(peer, marker)) {
        this.#tally(run, peer).notVerified(blocks, `site ${peer} is not connected`);
        continue;
      }
      (run.outstanding.get(peer) as Map<string, Outstanding>).set(keyOf(chunk), { chunk, updateNumber, reference });
    }
  }

  /** Why the primary cannot ask `peer` for a chunk now, or null. */
  #cannotAsk(run: Run, peer: 1 | 2 | 3): string | null {
    const site = this.#host.site;
    if (peer !== 3) {
      const pair: SyncPairState = site.syncPair;
      if (pair !== 'inSync' && pair !== 'reversed') return `the sync pair is ${pair}: site ${peer} is not in sync`;
    }
    if (!this.#host.isConnected(peer)) return `site ${peer} is not connected to site ${run.primary}`;
    return null;
  }

  /** The primary takes a peer's digests of a chunk: compared now, the secondary's differing blocks recorded for the resync. */
  #onDigests(peer: SiteId, chunk: VerifyChunk, message: VerifyDigestsMessage): void {
    const run = this.#run;
    const outstanding = run === null || run.verifyId !== message.verifyId ? undefined : run.outstanding.get(peer);
    const item = outstanding?.get(keyOf(chunk));
    if (run === null || outstanding === undefined || item === undefined || item.updateNumber !== message.updateNumber || item.chunk.length !== chunk.length) {
      this.#host.log(`verify: dropped digests of verify ${message.verifyId} from site ${peer} (v${chunk.volume}@${chunk.offset} u=${message.updateNumber}): not asked for now`);
      return;
    }
    outstanding.delete(keyOf(chunk));
    const tally = this.#tally(run, peer);
    if (message.reason !== '') {
      tally.notVerified(this.#blocksOf(chunk), `site ${peer}: ${message.reason}`);
    } else if (message.digests.length !== item.reference.length) {
      tally.notVerified(this.#blocksOf(chunk), `site ${peer} sent ${message.digests.length / verifyDigestBytes} digests for ${item.reference.length / verifyDigestBytes} blocks`);
    } else {
      const found = tally.compared(chunk, message.updateNumber, item.reference, message.digests, this.#host.site.config.blockBytes);
      if (found.length > 0) {
        this.#host.log(`verify ${run.verifyId}: site ${peer} differs in ${found.length} blocks of volume ${chunk.volume} at u=${message.updateNumber}, first at byte ${found[0]?.offset}`);
        if (peer === run.secondary) {
          this.#host.site.markDiffering(
            chunk.volume,
            found.map((block) => block.offset),
          );
        }
      }
    }
    run.wake?.();
  }

  /** The secondary's digests of a marker's chunk, or why it cannot give them. */
  #hashAsSecondary(peer: SiteId, marker: VerifyMarker): Uint8Array | string {
    const site = this.#host.site;
    if (site.role !== 'secondary' || peer === 3) return `site ${site.id} is not site ${peer}'s sync secondary`;
    const pair = site.syncPair;
    if (pair !== 'inSync' && pair !== 'reversed') return `site ${site.id}'s sync pair is ${pair}`;
    if (site.last !== marker.updateNumber) return `site ${site.id} is at u=${site.last}, not u=${marker.updateNumber}`;
    return site.chunkDigests(marker.chunk);
  }

  /** Sends the answer to a marker: its digests, or why not. */
  #answer(to: SiteId, marker: VerifyMarker, answer: Uint8Array | string): void {
    const site = this.#host.site;
    const hashed = answer instanceof Uint8Array;
    if (hashed) {
      const same = this.#hashed?.verifyId === marker.verifyId;
      this.#hashed = { verifyId: marker.verifyId, updateNumber: marker.updateNumber, chunks: same ? (this.#hashed?.chunks ?? 0) + 1 : 1 };
    }
    this.#host.send(to, {
      kind: 'verifyDigests',
      epoch: site.epoch,
      verifyId: marker.verifyId,
      ...marker.chunk,
      updateNumber: marker.updateNumber,
      digests: hashed ? answer : new Uint8Array(0),
      reason: hashed ? '' : reasonOf(answer),
    });
  }

  #checkChunk(kind: string, chunk: VerifyChunk): void {
    const config = this.#host.site.config;
    if (chunk.volume >= config.volumeCount) throw new MalformedMessageError(`${kind}.volume`, `no volume ${chunk.volume} in a group of ${config.volumeCount}`);
    if (chunk.offset + chunk.length > config.volumeBytes) throw new MalformedMessageError(`${kind}.offset`, `${chunk.offset}+${chunk.length} is past the volume's ${config.volumeBytes} bytes`);
    if (chunk.offset % config.blockBytes !== 0 || chunk.length % config.blockBytes !== 0) throw new MalformedMessageError(`${kind}.offset`, `not whole blocks of ${config.blockBytes} bytes`);
  }

  #windowFull(run: Run): boolean {
    return (run.outstanding.get(run.secondary) as Map<string, Outstanding>).size >= verifyChunksInFlightMax || (run.outstanding.get(3) as Map<string, Outstanding>).size >= verifyMarkersPendingMax;
  }

  #outstandingCount(run: Run): number {
    let n = 0;
    for (const outstanding of run.outstanding.values()) n += outstanding.size;
    return n;
  }

  #pastDeadline(run: Run): boolean {
    return this.#nowMs > run.deadlineAtMs;
  }

  /** Why the primary can no longer go on (it failed or stepped down), or null. */
  #stopped(): string | null {
    const site = this.#host.site;
    if (!site.up) return `site ${site.id} failed during the verify`;
    if (site.role !== 'primary' || site.deposedBy !== null) return `site ${site.id} is no longer the primary`;
    return null;
  }

  #notVerifiedAll(run: Run, chunk: VerifyChunk, reason: string): void {
    const blocks = this.#blocksOf(chunk);
    for (const peer of [run.secondary, 3] as const) this.#tally(run, peer).notVerified(blocks, reason);
  }

  #blocksOf(chunk: VerifyChunk): number {
    return chunk.length / this.#host.site.config.blockBytes;
  }

  #tally(run: Run, peer: SiteId): VerifyTally {
    const tally = run.tallies.get(peer);
    assert(tally !== undefined, 'a verify tallies its two other sites', () => `site ${peer}`);
    return tally;
  }

  /** Waits until something happens that the run looks at: an answer, a link down, a tick. */
  #sleep(run: Run): Promise<void> {
    return new Promise((resolve) => {
      run.wake = () => {
        run.wake = null;
        resolve();
      };
    });
  }
}
