import { describe, expect, it } from 'vitest';
import { parseEvent } from '../../model/events.ts';
import { explore } from '../../model/explore.ts';
import { validateParams } from '../../model/params.ts';
import { laidOutTexts, pinTextWidths } from '../../review/page-svg.ts';
import { boundsText, exercisesSeveralVolumes } from '../../review/property-evidence.ts';
import { simulatorParams } from '../../review/simulator/defaults.ts';
import { pairStateRows, pairStateTable } from '../../review/simulator/pair-states.ts';
import { SimulatorSession } from '../../review/simulator/session.ts';
import { stories } from '../../review/simulator/stories.ts';
import { topologyOf, topologySvg } from '../../review/simulator/topology.ts';
import { shortestPathsInGraph } from '../../review/transition-paths.ts';

/** A session at the simulator's defaults after `events`. */
function after(events: readonly string[], params = simulatorParams): SimulatorSession {
  const session = new SimulatorSession(params);
  for (const event of events) session.send(parseEvent(event));
  return session;
}

const statuses = (session: SimulatorSession) => pairStateRows(session.context).map((row) => `${row.pair} ${row.from}->${row.to} ${row.pvol}/${row.svol}`);
const story = (key: string) => stories.find((candidate) => candidate.key === `story-${key}`)!.events;

describe('the pair-state table, in the storage engineer\'s words', () => {
  it('at the start: TrueCopy PAIR site 1 -> 2, Universal Replicator PAIR site 1 -> 3, the delta pair from site 2 in HOLD', () => {
    expect(statuses(after([]))).toEqual(['sync 1->2 PAIR/PAIR', 'async 1->3 PAIR/PAIR', 'standby 2->3 HOLD/HOLD']);
    expect(pairStateRows(after([]).context)[0]!.fence).toMatch(/^NEVER/);
    expect(pairStateRows(new SimulatorSession({ ...simulatorParams, fencePolicy: 'refuse' }).context)[0]!.fence).toMatch(/^DATA/);
  });

  it('after site 1 fails and site 2 takes over: site 2 SSWS, site 1 unknown, the async pair from site 2 in COPY (delta resync), then PAIR', () => {
    const events = story('failover-delta-resync');
    const failedOver = after(events.slice(0, 7));
    expect(statuses(failedOver)).toEqual(['sync 2->1 SSWS/unknown', 'async 2->3 COPY/COPY', 'standby 1->3 unknown/SMPL']);
    expect(statuses(after(events))).toEqual(['sync 2->1 SSWS/unknown', 'async 2->3 PAIR/PAIR', 'standby 1->3 unknown/SMPL']);
    // Site 1 returns and is resynced: the pair swapped, PAIR from site 2 to site 1.
    expect(statuses(after(story('reversed-copy')))[0]).toBe('sync 2->1 PAIR/PAIR');
  });

  it('a journal overflow suspends the async pair as PFUS and the delta pair goes to HLDE; the fill shows on the table', () => {
    const overflow = story('overflow-full-copy');
    const full = after(overflow.slice(0, 4));
    expect(statuses(full)[1]).toBe('async 1->3 PFUL/PAIR');
    expect(pairStateRows(full.context)[1]!.journal).toMatchObject({ entries: 4, entriesMax: 4, highWater: true });
    expect(statuses(after(overflow.slice(0, 5)))).toEqual(['sync 1->2 PAIR/PAIR', 'async 1->3 PFUS/PFUS', 'standby 2->3 HLDE/HLDE']);
    expect(pairStateTable(after(overflow.slice(0, 5)).context)).toContain('data-pvol="PFUS"');
  });

  it('a cut link 1-2 is an error suspension (PSUE), not a split', () => {
    expect(statuses(after(['CUT_LINK link=1-2']))[0]).toBe('sync 1->2 PSUE/PSUE');
  });
});

describe('the topology figure', () => {
  it('draws the links that carry data now, their direction, cut links and the primary, and follows a failover', () => {
    const start = topologyOf(after([]).context);
    expect(start.links.map((link) => `${link.id} ${link.carries} ${link.from}->${link.to} cut=${link.cut}`)).toEqual([
      '1-2 sync 1->2 cut=false',
      '1-3 async 1->3 cut=false',
      '2-3 standby 2->3 cut=false',
    ]);
    expect(start).toMatchObject({ primary: 1, failed: [], accepting: [1] });
    const failedOver = topologyOf(after(story('failover-delta-resync').slice(0, 7)).context);
    expect(failedOver.links.map((link) => `${link.id} ${link.carries}`)).toEqual(['1-2 none', '1-3 none', '2-3 delta resync']);
    expect(failedOver).toMatchObject({ primary: 2, failed: [1], accepting: [2] });
    const cut = topologyOf(after(['CUT_LINK link=1-3']).context);
    expect(cut.links[1]).toMatchObject({ id: '1-3', cut: true, carries: 'none' });
    const svg = topologySvg(after(['CUT_LINK link=1-3']).context);
    expect(svg).toContain('data-link="1-3" data-carries="none" data-cut="true"');
    expect(svg).toContain('link 1-3 cut');
  });
});

describe('show me a path', () => {
  it('gives, for every transition taken by an exploration, a shortest path whose last event takes it', () => {
    const bounds = { volumeCount: 1, blocksPerVolume: 1, journalEntriesMax: 1, pullBatchEntriesMax: 1, writesMax: 1, faultsMax: 1 };
    const result = explore({ params: bounds, keepGraph: true });
    const paths = shortestPathsInGraph(result.graph!);
    expect(Object.keys(paths).sort()).toEqual([...result.taken].sort());
    for (const [id, events] of Object.entries(paths)) {
      const session = after(events.slice(0, -1), validateParams(bounds));
      const last = session.send(parseEvent(events.at(-1)!));
      expect([last.variant, ...last.moves], `${id} by ${events.join(', ')}`).toContain(id);
      // Shortest: no proper prefix of the path takes it.
      const shorter = new SimulatorSession(validateParams(bounds));
      for (const event of events.slice(0, -1)) {
        const step = shorter.send(parseEvent(event));
        expect([step.variant, ...step.moves], `${id} taken before the end of its path`).not.toContain(id);
      }
    }
    expect(paths['HOST_WRITE#0']).toEqual(['HOST_WRITE host=1 volume=0 block=0 data=1']);
  });
});

describe('diagram texts pinned to their laid-out width', () => {
  const json = JSON.stringify({
    _ldraw_: [{ op: 'T', pt: [10, 20], align: 'l', width: 55.5, text: 'title' }],
    objects: [{ _ldraw_: [{ op: 'F', size: 12 }, { op: 'T', pt: [41.38, 109.22], align: 'l', width: 104.21, text: 'HOST_WRITING' }] }],
    edges: [{ _ldraw_: [{ op: 'T', pt: [102.23, 58.2], align: 'c', width: 17.5, text: 'x y' }] }],
  });

  it('reads every text of the layout, in SVG coordinates', () => {
    expect(laidOutTexts(json)).toEqual([
      { x: 10, y: -20, width: 55.5, text: 'title' },
      { x: 41.38, y: -109.22, width: 104.21, text: 'HOST_WRITING' },
      { x: 102.23, y: -58.2, width: 17.5, text: 'x y' },
    ]);
  });

  it('pins each text to its width, and counts a text with no twin in the layout', () => {
    const svg = '<text text-anchor="start" x="41.38" y="-109.22" font-size="14.00">HOST_WRITING</text><text x="1" y="2">stray</text>';
    const pinned = pinTextWidths(svg, laidOutTexts(json));
    expect(pinned.svg).toContain('x="41.38" y="-109.22" textLength="104.21" lengthAdjust="spacingAndGlyphs" font-size="14.00">HOST_WRITING');
    expect(pinned).toMatchObject({ pinned: 1, unmatched: 1 });
  });
});

describe('bounds in words', () => {
  it('says every bound, and whether several volumes were explored (claims 12-14)', () => {
    const params = validateParams({ volumeCount: 1, blocksPerVolume: 1, journalEntriesMax: 1, pullBatchEntriesMax: 1, writesMax: 2, faultsMax: 2 });
    expect(boundsText(params)).toBe('1 volume x 1 block, journal 1, pull batch 1, <= 2 writes, <= 2 faults');
    expect(exercisesSeveralVolumes(params)).toBe(false);
    expect(exercisesSeveralVolumes({ ...params, volumeCount: 2 })).toBe(true);
    expect(boundsText({ volumeCount: 2 })).toBe('2 volumes x ? blocks, journal ?, pull batch ?, <= ? writes, <= ? faults');
  });
});
