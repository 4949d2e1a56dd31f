/**
 * The judge: when site 3 is (re)attached to a source, it sends its received update number and the source
 * decides with its journal what site 3 needs (claims 18, 19, 20, 28; model/README.md "Covering and judging").
 * A pure function: the sites call it with the numbers they hold.
 */

import type { AsyncPairState } from '../../model/observation.ts';
import type { Verdict } from './messages.ts';

/** What the source knows when it judges. */
export interface JudgeInput {
  /** Site 3's received update number, as site 3 sent it (claim 18). */
  received: number;
  /** The source's last update number. */
  sourceLast: number;
  /** The first update number in the source's journal (`sourceLast + 1` when it is empty). */
  journalFirst: number;
  /**
   * The takeover point (site 2's last update number at failover), while site 3 has not been judged against
   * site 2 since; null otherwise.
   */
  takeover: number | null;
}

/**
 * Whether a journal `[first..last]` holds every entry after `received` up to `last` (what makes a delta
 * resync possible, P5): `received <= last && first <= received + 1`.
 * @see claims 19, 20
 */
export function journalCovers(journalFirst: number, last: number, received: number): boolean {
  return received <= last && journalFirst <= received + 1;
}

/**
 * The verdict: `remoteAhead` when site 3 holds updates the source lacks (beyond the source's last or the
 * takeover point), `noUpdateRequired` when it holds exactly the source's last (claim 28), `deltaResync`
 * when the source journal covers it (claims 19, 20), otherwise `fullCopy`.
 * @see claims 18, 19, 20, 28
 */
export function judge(input: JudgeInput): Verdict {
  const { received, sourceLast, journalFirst, takeover } = input;
  if (received > sourceLast) return 'remoteAhead';
  if (takeover !== null && received > takeover) return 'remoteAhead';
  if (received === sourceLast) return 'noUpdateRequired';
  if (journalCovers(journalFirst, sourceLast, received)) return 'deltaResync';
  return 'fullCopy';
}

/**
 * The async pair's state after site 3 is attached to a source with a verdict: copying when no update is
 * required, delta resync or full copy as judged; a forced failover over `remoteAhead` needs a full copy.
 * @see claims 19, 20, 28
 */
export function asyncPairAfter(verdict: Verdict): AsyncPairState {
  return verdict === 'noUpdateRequired' ? 'copying' : verdict === 'deltaResync' ? 'deltaResync' : 'fullCopy';
}
