/**
 * The stories a reviewer steps through first: short event sequences that show the behaviour the claims
 * describe (failover with delta resync, the reversed synchronous copy) and the decisions taken where they are
 * silent (overflow and full copy, a refused promotion, failback). They are written at the simulator's default
 * bounds; a test replays each on the model and checks where it ends, so a story cannot drift from the model.
 */
import type { SimulatorTrace } from './defaults.ts';
import { simulatorParams } from './defaults.ts';

const write = (host: 1 | 2, volume: number, block: number, data: number): string => `HOST_WRITE host=${host} volume=${volume} block=${block} data=${data}`;

/** Host 1 writes, site 3 copies part of it, site 1 fails: failover, and site 3 catches up from site 2's journal through its own. */
const failoverWithDeltaResync = [
  write(1, 0, 0, 1),
  write(1, 1, 1, 2),
  'PULL_JOURNAL',
  'RESTORE_JOURNAL',
  write(1, 0, 1, 3),
  'FAIL_SITE site=1',
  'FAILOVER force=false',
  'DELTA_RESYNC',
  'RESTORE_JOURNAL',
];

/** ...then site 1 returns, is resynced from site 2 and follows it: the reversed synchronous copy. */
const reversedCopy = [...failoverWithDeltaResync, write(2, 1, 0, 4), 'RECOVER_SITE site=1', 'RESYNC_SITE site=1', write(2, 0, 0, 5), 'PULL_JOURNAL', 'RESTORE_JOURNAL'];

function story(key: string, title: string, summary: string, events: string[]): SimulatorTrace {
  return { key: `story-${key}`, title: `story: ${title}`, kind: 'story', fencePolicy: 'keepWriting', params: simulatorParams, events, step: null, summary };
}

/** The stories, in the order the page lists them. */
export const stories: readonly SimulatorTrace[] = [
  story(
    'failover-delta-resync',
    'failover with delta resync (claims 16-20, 28)',
    "Site 1 fails after site 3 restored u1-u2 of u1-u3. Site 3 sends site 2 its number; site 2's journal holds u3, so the judge says delta resync: site 3 reads just u3 from site 2's journal into its own journal, then restores it (claim 20).",
    failoverWithDeltaResync,
  ),
  story(
    'reversed-copy',
    'site 1 returns: reversed synchronous copy (claims 29-35)',
    "After the failover, host 2 writes at site 2. Site 1 returns, is resynced from site 2, and then journals host 2's writes with site 2's update numbers; site 3 pulls from site 2.",
    reversedCopy,
  ),
  story(
    'failback',
    'failback to site 1 (beyond the claims: UR 3DC, SRDF/Star)',
    "From the reversed copy, a planned failback: site 1 primary again, site 3 judged against site 1's journal, which holds site 2's update numbers (claim 31), and caught up by a delta resync and a restore: all three sites hold the same image (P6).",
    [...reversedCopy, write(2, 1, 1, 6), 'FAILBACK', 'DELTA_RESYNC', 'RESTORE_JOURNAL'],
  ),
  story(
    'overflow-full-copy',
    'journal overflow, then a full copy (P7)',
    "Five host writes with no pull overflow site 1's four-entry journal: the async pair is suspended (never silently), the standby pair goes to hold-error, and only a full copy brings site 3 back.",
    [write(1, 0, 0, 1), write(1, 0, 1, 2), write(1, 1, 0, 3), write(1, 1, 1, 4), write(1, 0, 0, 5), 'FULL_COPY'],
  ),
  story(
    'remote-ahead',
    'promotion refused: site 3 is ahead of site 2',
    'The link 1-2 is cut, site 1 keeps writing alone (fence policy keep-writing) and site 3 pulls that write. Site 1 fails: promoting site 2 would lose it, so FAILOVER is refused; forced, site 3 needs a full copy.',
    ['CUT_LINK link=1-2', write(1, 0, 0, 1), 'PULL_JOURNAL', 'FAIL_SITE site=1', 'FAILOVER force=false', 'FAILOVER force=true', 'FULL_COPY'],
  ),
];
