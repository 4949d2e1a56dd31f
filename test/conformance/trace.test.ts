/**
 * Trace validation: the implementation's own ndjson trace (impl/cluster/trace.ts), written while a real cluster runs
 * generated paths and a failover story, is accepted by the validator; a log with one altered step is
 * rejected at exactly that step; malformed logs are refused with a typed error naming the line.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster } from '../../impl/cluster/cluster.ts';
import { fileTraceSink, TracedCluster } from '../../impl/cluster/trace.ts';
import { ClusterSut, clusterConfigFor } from '../../conformance/adapter.ts';
import { statePaths } from '../../conformance/paths.ts';
import { TraceFormatError, validateTrace } from '../../conformance/trace-validate.ts';
import { parseEvent, type ModelEvent } from '../../model/events.ts';
import { defaultParams, type ModelParams } from '../../model/params.ts';

const dir = mkdtempSync(join(tmpdir(), 'threesite-trace-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const params: ModelParams = { ...defaultParams, journalEntriesMax: 4, pullBatchEntriesMax: 2 };

/** Runs events on a fresh cluster with its trace on, and returns the log's path. */
function traceOf(name: string, events: readonly ModelEvent[], runParams: ModelParams = params): string {
  const file = join(dir, `${name}.ndjson`);
  const { sink, close } = fileTraceSink(file);
  const sut = ClusterSut.create(runParams, sink);
  for (const event of events) sut.apply(event);
  sut.close();
  close();
  return file;
}

/** The failover story of DESIGN.md sections 1-6, with a refused command in the middle. */
const story = [
  'HOST_WRITE host=1 volume=0 block=0 data=1',
  'HOST_WRITE host=1 volume=1 block=0 data=2',
  'PULL_JOURNAL',
  'RESTORE_JOURNAL',
  'HOST_WRITE host=1 volume=0 block=0 data=3',
  'FAIL_SITE site=1',
  'HOST_WRITE host=1 volume=0 block=0 data=4',
  'FAILOVER force=false',
  'DELTA_RESYNC',
  'HOST_WRITE host=2 volume=1 block=0 data=5',
  'RECOVER_SITE site=1',
  'RESYNC_SITE site=1',
  'HOST_WRITE host=2 volume=0 block=0 data=6',
  'PULL_JOURNAL',
  'RESTORE_JOURNAL',
  'FAILBACK',
  'HOST_WRITE host=1 volume=1 block=0 data=7',
].map(parseEvent);

function lines(file: string): string[] {
  return readFileSync(file, 'utf8').trimEnd().split('\n');
}

/** Writes a copy of a log with one line changed; returns the copy's path. */
function altered(file: string, name: string, change: (records: string[]) => void): string {
  const records = lines(file);
  change(records);
  const out = join(dir, `${name}.ndjson`);
  writeFileSync(out, `${records.join('\n')}\n`);
  return out;
}

function indexOfLine(file: string, predicate: (record: Record<string, unknown>) => boolean, from = 1): number {
  const records = lines(file);
  for (let i = from; i < records.length; i += 1) if (predicate(JSON.parse(records[i] as string))) return i;
  throw new Error('no such line');
}

describe('the implementation trace', () => {
  it('of the failover story validates, every step and every detail', async () => {
    const file = traceOf('story', story);
    const validation = await validateTrace([file]);
    expect(validation.violation).toBeNull();
    expect(validation.actions).toBe(story.length);
    // Journal appends at both sync members for every write, pulls and restores at site 3.
    expect(validation.details).toBeGreaterThan(story.length);
    expect(validation.digestsSkipped).toBe(false);
    // The story is the one intended: every command but the write at the failed site 1 is accepted.
    const refused = lines(file)
      .map((text) => JSON.parse(text) as { action?: { type: string }; outcome?: { accepted: boolean } })
      .filter((record) => record.outcome?.accepted === false)
      .map((record) => record.action?.type);
    expect(refused).toEqual(['HOST_WRITE']);
  });

  it('of every shortest path to an abstract state validates, for both fence policies', async () => {
    let validated = 0;
    for (const fencePolicy of ['keepWriting', 'refuse'] as const) {
      const runParams = { ...defaultParams, volumeCount: 1, fencePolicy };
      const paths = statePaths(runParams);
      // A deterministic spread of the paths keeps the file fast; every path still validates.
      for (const [index, path] of paths.entries()) {
        if (index % 3 !== 0) continue;
        const validation = await validateTrace([traceOf(`path-${fencePolicy}-${index}`, path.events, runParams)]);
        expect(validation.violation, `${path.strategy} ${path.target}`).toBeNull();
        validated += 1;
      }
    }
    expect(validated).toBeGreaterThan(10);
  });

  it('is rejected at the altered step, whatever was altered', async () => {
    const file = traceOf('story-base', story);
    const actionLines = lines(file)
      .map((text, line) => ({ line, record: JSON.parse(text) as Record<string, unknown> }))
      .filter(({ record }) => 'action' in record);
    // The fifth action is the third host write (u=3 at sites 1 and 2).
    const fifth = actionLines[4] as { line: number; record: Record<string, unknown> };

    // 1. An update number in a journal append after the fifth action.
    const appendLine = indexOfLine(file, (r) => r.kind === 'journalAppend', fifth.line + 1);
    const badAppend = altered(file, 'bad-append', (records) => {
      const record = JSON.parse(records[appendLine] as string);
      record.updateNumber += 1;
      records[appendLine] = JSON.stringify(record);
    });
    let v = (await validateTrace([badAppend])).violation;
    expect(v?.kind).toBe('detail');
    expect(v?.line).toBe(appendLine + 1);
    expect(v?.step).toBe(4);

    // 2. An outcome flipped: the write at the failed site 1 said accepted.
    const refusedWrite = actionLines[6] as { line: number; record: Record<string, unknown> };
    expect(refusedWrite.record.outcome).toMatchObject({ accepted: false });
    const flipped = altered(file, 'flipped', (records) => {
      const record = JSON.parse(records[refusedWrite.line] as string);
      record.outcome = { accepted: true };
      records[refusedWrite.line] = JSON.stringify(record);
    });
    v = (await validateTrace([flipped])).violation;
    expect(v).toMatchObject({ kind: 'outcome', step: 6, line: refusedWrite.line + 1 });

    // 3. A field of the view: site 2's last update number after the fifth action.
    const badView = altered(file, 'bad-view', (records) => {
      const record = JSON.parse(records[fifth.line] as string);
      record.view.sites['2'].lastUpdateNumber = 2;
      records[fifth.line] = JSON.stringify(record);
    });
    v = (await validateTrace([badView])).violation;
    expect(v).toMatchObject({ kind: 'view', step: 4, line: fifth.line + 1 });
    expect(v?.summary).toContain('sites.2.lastUpdateNumber');

    // 4. An action line dropped (the FAILOVER): the next action is not what the model allows then.
    const failover = actionLines[7] as { line: number; record: Record<string, unknown> };
    expect(failover.record.action).toMatchObject({ type: 'FAILOVER' });
    const dropped = altered(file, 'dropped', (records) => {
      records.splice(failover.line, 1);
    });
    v = (await validateTrace([dropped])).violation;
    expect(v?.step).toBe(7);
    expect(v?.line).toBe(failover.line + 1);

    // 5. Two actions swapped (the pull and the restore after the first two writes), seq and time kept in order.
    const pull = actionLines[2] as { line: number; record: Record<string, unknown> };
    const restore = actionLines[3] as { line: number; record: Record<string, unknown> };
    const swapped = altered(file, 'swapped', (records) => {
      const a = JSON.parse(records[pull.line] as string);
      const b = JSON.parse(records[restore.line] as string);
      [a.action, b.action] = [b.action, a.action];
      records[pull.line] = JSON.stringify(a);
      records[restore.line] = JSON.stringify(b);
    });
    v = (await validateTrace([swapped])).violation;
    expect(v?.step).toBe(2);
    expect(v?.line).toBe(pull.line + 1);
  });

  it('merges one log per site by time: each site logs its own actions, its view and its journal', async () => {
    const file = traceOf('story-split', story);
    const [header, ...records] = lines(file).map((text) => JSON.parse(text) as Record<string, unknown>);
    // Who performs an action: the host's site writes, site 3 pulls and resyncs, site 2 promotes, site 1 fails back;
    // faults and fences are logged by the site they concern.
    const actorOf = (action: Record<string, unknown>): 1 | 2 | 3 => {
      switch (action.type) {
        case 'HOST_WRITE':
          return action.host as 1 | 2;
        case 'FAILOVER':
          return 2;
        case 'FAILBACK':
          return 1;
        case 'FAIL_SITE':
        case 'RECOVER_SITE':
        case 'FENCE_SITE':
        case 'RESYNC_SITE':
          return action.site as 1 | 2 | 3;
        default:
          return 3;
      }
    };
    const perSite: Record<1 | 2 | 3, string[]> = { 1: [], 2: [], 3: [] };
    for (const site of [1, 2, 3] as const) perSite[site].push(JSON.stringify({ ...header, writer: `site-${site}` }));
    for (const record of records) {
      if ('action' in record) {
        const site = actorOf(record.action as Record<string, unknown>);
        const view = { sites: { [site]: (record.view as { sites: Record<string, unknown> }).sites[site] } };
        perSite[site].push(JSON.stringify({ ...record, view }));
      } else {
        perSite[record.site as 1 | 2 | 3].push(JSON.stringify(record));
      }
    }
    const files = ([1, 2, 3] as const).map((site) => {
      const out = join(dir, `split-site-${site}.ndjson`);
      writeFileSync(out, `${perSite[site].join('\n')}\n`);
      return out;
    });
    const validation = await validateTrace(files);
    expect(validation.violation).toBeNull();
    expect(validation.writers).toEqual(['site-1', 'site-2', 'site-3']);
    expect(validation.actions).toBe(story.length);

    // Site 2 journaling a write under the wrong update number is caught in site 2's log.
    const badSite2 = altered(files[1] as string, 'split-site-2-bad', (texts) => {
      const at = texts.findIndex((text) => text.includes('"journalAppend"') && text.includes('"updateNumber":3'));
      texts[at] = (texts[at] as string).replace('"updateNumber":3', '"updateNumber":4');
    });
    const violation = (await validateTrace([files[0] as string, badSite2, files[2] as string])).violation;
    expect(violation).toMatchObject({ kind: 'detail', file: badSite2 });
    expect(violation?.summary).toContain('site=2 u=3');
  });

  it('refuses malformed logs with a typed error naming the file and line', async () => {
    const file = traceOf('story-format', story.slice(0, 3));
    const notJson = altered(file, 'not-json', (records) => {
      records[2] = '{"seq": 2, ';
    });
    await expect(validateTrace([notJson])).rejects.toMatchObject({ name: 'TraceFormatError', line: 3 });
    const noHeader = altered(file, 'no-header', (records) => {
      records.shift();
    });
    await expect(validateTrace([noHeader])).rejects.toBeInstanceOf(TraceFormatError);
    const badVersion = altered(file, 'bad-version', (records) => {
      records[0] = (records[0] as string).replace('"version":1', '"version":9');
    });
    await expect(validateTrace([badVersion])).rejects.toThrow(/version 9/);
    const backInTime = altered(file, 'back-in-time', (records) => {
      const record = JSON.parse(records[2] as string);
      record.time = 0;
      records[2] = JSON.stringify(record);
    });
    await expect(validateTrace([backInTime])).rejects.toThrow(/goes back/);
    await expect(validateTrace([join(dir, 'missing.ndjson')])).rejects.toThrow(/cannot read/);
  });

  it('takes writes the model cannot represent as opaque: update numbers are still checked, digests not', async () => {
    const file = join(dir, 'opaque.ndjson');
    const { sink, close } = fileTraceSink(file);
    const traced = new TracedCluster(Cluster.create(clusterConfigFor(params)), sink);
    const data = new Uint8Array(params.blockBytes).map((_, i) => i % 251);
    traced.hostWrite(1, 0, 0, data);
    traced.hostWrite(1, 1, 0, data.subarray(0, 100));
    expect(() => traced.hostWrite(1, 0, params.blockBytes - 10, data.subarray(0, 20))).toThrow(/OutOfRange|outside|past/i);
    traced.pullJournal();
    traced.restoreJournal();
    close();
    const validation = await validateTrace([file]);
    expect(validation.violation).toBeNull();
    expect(validation.digestsSkipped).toBe(true);
    const broken = altered(file, 'opaque-broken', (records) => {
      const at = records.findIndex((text) => text.includes('"journalAppend"') && text.includes('"updateNumber":2'));
      records[at] = (records[at] as string).replace('"updateNumber":2', '"updateNumber":3');
    });
    expect((await validateTrace([broken])).violation?.kind).toBe('detail');
  });

  it('npm start -- --validate-trace: exit 0 with PASS, 1 with the failing step, 2 for an unusable log', () => {
    const good = traceOf('cli-good', story.slice(0, 5));
    const out = execFileSync('npx', ['tsx', 'conformance/main.ts', '--validate-trace', good], { encoding: 'utf8' });
    expect(out).toContain('PASS');
    expect(out).toContain('5 steps');
    const bad = altered(good, 'cli-bad', (records) => {
      const at = records.findIndex((text) => text.includes('"PULL_JOURNAL"'));
      records[at] = (records[at] as string).replace('"PULL_JOURNAL"', '"RESTORE_JOURNAL"');
    });
    const failing = spawnSync('npx', ['tsx', 'conformance/main.ts', '--validate-trace', bad], { encoding: 'utf8' });
    expect(failing.status).toBe(1);
    expect(failing.stdout).toMatch(/FAIL at step 2 .*RESTORE_JOURNAL/);
    const unusable = spawnSync('npx', ['tsx', 'conformance/main.ts', '--validate-trace', join(dir, 'missing.ndjson')], { encoding: 'utf8' });
    expect(unusable.status).toBe(2);
    expect(unusable.stderr).toContain('unusable trace');
  });
});

describe('site logs: a crash mid-write', () => {
  // Handcrafted logs of three site processes and an operator (conformance/TRACE.md "Site processes"): two
  // blocks of 512 bytes per volume, views left empty (only the steps and the journals are at stake here).
  const config = { volumeCount: 2, volumeBytes: 1024, blockBytes: 512, journalEntriesMax: 8, journalBytesMax: 1 << 20, pullBatchEntriesMax: 4, fencePolicy: 'keepWriting' };
  let clock = 1_000;
  const header = (writer: string): string => JSON.stringify({ trace: 'threesite', version: 1, writer, config });
  const record = (seq: number, body: object): string => JSON.stringify({ seq, time: (clock += 1), ...body });
  const append = (seq: number, site: number, u: number, fill: number): string =>
    record(seq, { kind: 'journalAppend', site, updateNumber: u, volume: 0, offset: 0, length: 512, fill });
  const write = (seq: number, fill: number): string =>
    record(seq, { action: { type: 'HOST_WRITE', host: 1, volume: 0, offset: 0, length: 512, fill }, outcome: { accepted: true }, view: {} });
  const failSite1 = (seq: number): string => record(seq, { action: { type: 'FAIL_SITE', site: 1 }, outcome: { accepted: true }, view: { sites: { 1: { mode: 'failed' } } } });

  /** One log per key, named by the key; a key `site-1#2` is site 1's second log (a restarted process). */
  function logs(name: string, files: Record<string, string[]>): string[] {
    return Object.entries(files).map(([key, body]) => {
      const writer = key.split('#')[0] as string;
      const file = join(dir, `${name}-${key.replace('#', '-')}.ndjson`);
      writeFileSync(file, `${[header(writer), ...body].join('\n')}\n`);
      return file;
    });
  }

  it('takes the writes the secondary journaled and no acknowledgement names as written when the primary fails', async () => {
    // Site 1 acknowledged u=1; u=2 and u=3 reached site 2, u=4 only site 1; then site 1 died.
    const site1 = [append(1, 1, 1, 7), write(2, 7), append(3, 1, 2, 8), append(4, 1, 3, 9), append(5, 1, 4, 10)];
    const site2 = [append(1, 2, 1, 7), append(2, 2, 2, 8), append(3, 2, 3, 9)];
    const operator = [failSite1(1)];
    const files = logs('unacknowledged', { 'site-1': site1, 'site-2': site2, operator });
    // u=4 at site 1 is no step of the model's; nothing discards it, so it is reported at the end.
    const open = await validateTrace(files);
    expect(open.committedUnacknowledged).toBe(2);
    expect(open.violation?.summary).toMatch(/site 1, the log says journalAppend site=1 u=4/);
    // Site 1's resync, after its failure, replaces its journal (journalReset): u=4 is discarded and the logs replay.
    site1.push(record(6, { kind: 'journalReset', site: 1, last: 3 }));
    const reset = await validateTrace(logs('reset', { 'site-1': site1, 'site-2': site2, operator }));
    expect(reset.violation).toBeNull();
    expect(reset.committedUnacknowledged).toBe(2);
    expect(reset.discardedUncommitted).toBe(1);
  });

  it('takes the writes a primary journaled alone as written when it comes back primary, and numbers on after them', async () => {
    // As above, then site 1 is recovered as primary (no failover): it keeps u=4 (no number is handed out
    // twice), resyncs site 2 (whose journal is then empty at 4) and goes on with u=5.
    const site1 = [append(1, 1, 1, 7), write(2, 7), append(3, 1, 2, 8), append(4, 1, 3, 9), append(5, 1, 4, 10)];
    const site2 = [append(1, 2, 1, 7), append(2, 2, 2, 8), append(3, 2, 3, 9)];
    const operator = [failSite1(1)];
    // Site 3 (which pulled nothing) is judged when its link to site 1 comes up, against a journal ending at 4.
    const judgement = { verdict: 'deltaResync', remoteReceived: 0, sourceLast: 4, forced: false };
    operator.push(record(2, { action: { type: 'RECOVER_SITE', site: 1 }, outcome: { accepted: true }, view: { sites: { 1: { mode: 'normal', role: 'primary', lastUpdateNumber: 4 } }, judgement } }));
    site2.push(record(4, { kind: 'journalReset', site: 2, last: 4 }));
    const restarted = [record(1, { action: { type: 'RESYNC_SITE', site: 2 }, outcome: { accepted: true }, view: {} }), append(2, 1, 5, 11)];
    site2.push(append(5, 2, 5, 11));
    restarted.push(write(3, 11));
    const kept = await validateTrace(logs('kept', { 'site-1': site1, 'site-2': site2, operator, 'site-1#2': restarted }));
    expect(kept.violation).toBeNull();
    expect(kept.committedUnacknowledged).toBe(2);
    expect(kept.keptUncommitted).toBe(1);
    // Had site 1 handed out u=4 again to its next write, the model (which kept u=4) would not allow it.
    const reused = [record(1, { action: { type: 'RESYNC_SITE', site: 2 }, outcome: { accepted: true }, view: {} }), append(2, 1, 4, 11)];
    const again = await validateTrace(logs('reused', { 'site-1': site1.slice(0, 5), 'site-2': [...site2.slice(0, 3), record(4, { kind: 'journalReset', site: 2, last: 3 })], operator, 'site-1#2': reused }));
    expect(again.violation).not.toBeNull();
  });

  it('refuses a secondary entry no failure explains, and a reset that drops an entry a step put there', async () => {
    // No FAIL_SITE: site 2's u=2 is an entry no step made.
    const orphan = await validateTrace(logs('orphan', { 'site-1': [append(1, 1, 1, 7), write(2, 7)], 'site-2': [append(1, 2, 1, 7), append(2, 2, 2, 8)] }));
    expect(orphan.violation?.summary).toMatch(/site 2, the log says journalAppend site=2 u=2/);
    // Site 2 resets its journal before it logged u=1, which the acknowledged write put there.
    const early = await validateTrace(
      logs('early-reset', { 'site-1': [append(1, 1, 1, 7), write(2, 7)], 'site-2': [record(1, { kind: 'journalReset', site: 2, last: 0 }), append(2, 2, 1, 7)] }),
    );
    expect(early.violation).not.toBeNull();
  });
});
