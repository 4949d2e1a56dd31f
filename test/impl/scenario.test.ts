/**
 * Scenario tests in etcd-io/raft's data-driven style: each `testdata/*.txt` file opens with a `#` line
 * saying its purpose, then commands, each followed by `----` and its expected output, blocks separated by a
 * blank line. One interpreter runs them, with one small handler per command. `REWRITE=1 npx vitest run
 * test/impl/scenario.test.ts` rewrites the expected outputs from what the system does (review the diff!).
 *
 * Every scenario runs twice: with the memory backend, and with the file backend in a temporary directory
 * (where `reopen` closes the cluster and opens it again from its directory). Both must print the same.
 *
 * Commands (sites are `site1..site3`, hosts `host1`, `host2`, volumes `vol0..`, links `1-2`, bytes hex):
 *   config [volumes=N] [volume-bytes=N] [block=N] [journal=N] [journal-bytes=N] [batch=N]
 *          [pull-interval=N] [restore-interval=N] [fence=keepWriting|refuse]
 *   write hostH volV OFFSET LENGTH BYTE        host write of LENGTH bytes of BYTE
 *   writes hostH volV COUNT BYTE               COUNT one-block writes to blocks 0,1,.. (wrapping), BYTE+i
 *   submit hostH volV OFFSET LENGTH BYTE       host write left in flight (prints its handle)
 *   handles                                    state of every submitted write
 *   read siteS volV OFFSET LENGTH              a site's bytes, run-length encoded
 *   hostread hostH volV OFFSET LENGTH
 *   pull | restore | tick N
 *   fail siteS | recover siteS | cut A-B | heal A-B | fence siteS
 *   failover [--force] | resync siteS | delta-resync | full-copy | failback
 *   hold A->B | release A->B | drop A->B | dup A->B | reverse A->B | deliver A->B | run | queued
 *   observe | images | check | rejections | reopen
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Cluster, type ClusterConfig, type HostWriteHandle } from '../../impl/cluster/cluster.ts';
import { RefusalError } from '../../impl/core/errors.ts';
import { digestVolumes, MemoryVolume, OutOfRangeError } from '../../impl/core/volume.ts';
import type { Observation, SiteObservation } from '../../model/observation.ts';

const dataDir = path.join(import.meta.dirname, 'testdata');
const rewrite = process.env.REWRITE === '1';
const tempRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-scenario-'));

afterAll(() => {
  fs.rmSync(tempRoot, { recursive: true, force: true });
});

// -----------------------------------------------------------------------------------------------------------
// The file format

interface Case {
  /** Comment lines before the command, kept when rewriting. */
  comments: string[];
  command: string;
  expected: string;
  /** Line of the command, for error messages. */
  line: number;
}

function parseScenario(text: string): { header: string[]; cases: Case[] } {
  const lines = text.split('\n');
  const header: string[] = [];
  const cases: Case[] = [];
  let i = 0;
  while (i < lines.length && (lines[i] as string).startsWith('#')) header.push(lines[i++] as string);
  let comments: string[] = [];
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '') {
      i += 1;
      continue;
    }
    if (line.startsWith('#')) {
      comments.push(line);
      i += 1;
      continue;
    }
    const command = line.trim();
    const at = i + 1;
    i += 1;
    if (lines[i] !== '----') throw new Error(`line ${at}: "${command}" must be followed by ----`);
    i += 1;
    const output: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== '') output.push(lines[i++] as string);
    cases.push({ comments, command, expected: output.join('\n'), line: at });
    comments = [];
  }
  return { header, cases };
}

function formatScenario(header: string[], cases: Case[], outputs: string[]): string {
  const blocks = cases.map((c, i) => [...c.comments, c.command, '----', outputs[i] as string].join('\n'));
  return `${header.join('\n')}\n\n${blocks.join('\n\n')}\n`;
}

// -----------------------------------------------------------------------------------------------------------
// The interpreter

/** One write the hosts saw acknowledged, in the current primary's lineage (for the P2 check). */
interface Applied {
  volume: number;
  offset: number;
  data: Uint8Array;
}

class Interpreter {
  cluster: Cluster | null = null;
  config: ClusterConfig | null = null;
  /** Acknowledged writes by update number, of the lineage the primary holds. */
  readonly lineage = new Map<number, Applied>();
  readonly handles: { handle: HostWriteHandle; write: Applied; recorded: boolean }[] = [];

  constructor(private readonly storage: 'memory' | 'file') {}

  get c(): Cluster {
    if (this.cluster === null) throw new Error('no cluster: start with "config"');
    return this.cluster;
  }

  run(command: string): string {
    this.recordAcknowledged();
    const [name, ...args] = command.split(/\s+/) as [string, ...string[]];
    const handler = handlers[name];
    if (handler === undefined) throw new Error(`unknown command "${name}"`);
    try {
      return handler(this, args);
    } catch (error) {
      if (error instanceof RefusalError) return `refused ${error.code}: ${error.message}`;
      if (error instanceof OutOfRangeError) return `refused OutOfRange: ${error.message}`;
      throw error;
    }
  }

  makeConfig(options: Record<string, string>): ClusterConfig {
    const n = (key: string, fallback: number): number => (options[key] === undefined ? fallback : Number(options[key]));
    const blockBytes = n('block', 4096);
    const entriesMax = n('journal', 16);
    return {
      volumeCount: n('volumes', 2),
      volumeBytes: n('volume-bytes', 4 * blockBytes),
      blockBytes,
      journal: { entriesMax, bytesMax: n('journal-bytes', entriesMax * (blockBytes + 4096)) },
      pullBatchEntriesMax: n('batch', 4),
      pullIntervalTicks: n('pull-interval', 1),
      restoreIntervalTicks: n('restore-interval', 1),
      fencePolicy: (options.fence ?? 'keepWriting') as ClusterConfig['fencePolicy'],
      storage: this.storage === 'memory' ? { kind: 'memory' } : { kind: 'file', dir: fs.mkdtempSync(path.join(tempRoot, 'cluster-')) },
    };
  }

  /** Submitted writes acknowledged since the last command join the lineage. */
  recordAcknowledged(): void {
    for (const entry of this.handles) {
      if (entry.recorded || entry.handle.state !== 'acknowledged') continue;
      this.lineage.set(entry.handle.updateNumber as number, entry.write);
      entry.recorded = true;
    }
  }

  /** The image the primary's lineage has after updates 1..k (P2's reference), as a digest. */
  lineageDigest(k: number): string {
    const config = this.config as ClusterConfig;
    const volumes = Array.from({ length: config.volumeCount }, () => new MemoryVolume(config.volumeBytes, config.blockBytes));
    for (let u = 1; u <= k; u += 1) {
      const write = this.lineage.get(u);
      if (write === undefined) return `(update ${u} unknown)`;
      (volumes[write.volume] as MemoryVolume).write(write.offset, write.data);
    }
    return digestVolumes(volumes);
  }

  close(): void {
    this.cluster?.close();
  }
}

type Handler = (it: Interpreter, args: string[]) => string;

function site(arg: string | undefined): 1 | 2 | 3 {
  const match = /^site([123])$/.exec(arg ?? '');
  if (!match) throw new Error(`expected site1..site3, got "${arg}"`);
  return Number(match[1]) as 1 | 2 | 3;
}

function host(arg: string | undefined): 1 | 2 {
  const match = /^host([12])$/.exec(arg ?? '');
  if (!match) throw new Error(`expected host1 or host2, got "${arg}"`);
  return Number(match[1]) as 1 | 2;
}

function volume(arg: string | undefined): number {
  const match = /^vol(\d+)$/.exec(arg ?? '');
  if (!match) throw new Error(`expected volN, got "${arg}"`);
  return Number(match[1]);
}

function int(arg: string | undefined): number {
  if (arg === undefined || !/^\d+$/.test(arg)) throw new Error(`expected a number, got "${arg}"`);
  return Number(arg);
}

function byte(arg: string | undefined): number {
  if (arg === undefined || !/^[0-9a-f]{1,2}$/.test(arg)) throw new Error(`expected a hex byte, got "${arg}"`);
  return parseInt(arg, 16);
}

function link(arg: string | undefined): [1 | 2 | 3, 1 | 2 | 3] {
  const match = /^([123])-([123])$/.exec(arg ?? '');
  if (!match) throw new Error(`expected a link like 1-2, got "${arg}"`);
  return [Number(match[1]) as 1 | 2 | 3, Number(match[2]) as 1 | 2 | 3];
}

function direction(arg: string | undefined): [1 | 2 | 3, 1 | 2 | 3] {
  const match = /^([123])->([123])$/.exec(arg ?? '');
  if (!match) throw new Error(`expected a direction like 1->2, got "${arg}"`);
  return [Number(match[1]) as 1 | 2 | 3, Number(match[2]) as 1 | 2 | 3];
}

/** Run-length encoding of bytes: `ab*4096` or `00*2048 ab*2048`. */
function runs(bytes: Uint8Array): string {
  const out: string[] = [];
  let i = 0;
  while (i < bytes.length) {
    let j = i;
    while (j < bytes.length && bytes[j] === bytes[i]) j += 1;
    out.push(`${(bytes[i] as number).toString(16).padStart(2, '0')}*${j - i}`);
    i = j;
  }
  return out.length === 0 ? '(empty)' : out.join(' ');
}

function short(digest: string): string {
  return digest.slice(0, 8);
}

function journalText(journal: { first: number; last: number; highWater: boolean }): string {
  const range = journal.first > journal.last ? 'empty' : `${journal.first}..${journal.last}`;
  return journal.highWater ? `${range}(high)` : range;
}

function memberLine(id: 1 | 2, s: SiteObservation): string {
  return (
    `site${id} ${s.mode} ${s.role} last=${s.lastUpdateNumber} journal=${journalText(s.journal)} ` +
    `writable=${s.acceptsHostWrites ? 'yes' : 'no'}${s.fenced ? ' fenced' : ''} changed=${s.changedBlocks} image=${short(s.volumeDigest)}`
  );
}

function observationText(o: Observation): string {
  const r = o.sites[3];
  const j = o.judgement;
  return [
    memberLine(1, o.sites[1]),
    memberLine(2, o.sites[2]),
    `site3 ${r.mode} remote received=${r.received} restored=${r.restored} journal=${journalText(r.journal)} source=${r.source} lag=${r.lag} image=${short(r.volumeDigest)}`,
    `sync=${o.syncPair.state}(primary ${o.syncPair.primary}) async=${o.asyncPair.state}(source ${o.asyncPair.source}) ` +
      `standby=${o.standbyPair.state}(from ${o.standbyPair.from}) cut=${o.cutLinks.length ? o.cutLinks.join(',') : 'none'} acked-on-one-site=${o.ackedOnOneSite}`,
    j === null ? 'judgement none' : `judgement ${j.verdict} remote-received=${j.remoteReceived} source-last=${j.sourceLast}${j.forced ? ' forced' : ''}`,
  ].join('\n');
}

/** Writes the acknowledged write into the lineage (P2's reference history). */
function record(it: Interpreter, updateNumber: number, vol: number, offset: number, data: Uint8Array): void {
  it.lineage.set(updateNumber, { volume: vol, offset, data });
}

const handlers: Record<string, Handler> = {
  config(it, args) {
    const options = Object.fromEntries(args.map((arg) => arg.split('=') as [string, string]));
    it.config = it.makeConfig(options);
    it.cluster = Cluster.create(it.config);
    return 'ok';
  },

  write(it, args) {
    const [h, v, offset, length, b] = [host(args[0]), volume(args[1]), int(args[2]), int(args[3]), byte(args[4])];
    const data = new Uint8Array(length).fill(b);
    const { updateNumber } = it.c.hostWrite(h, v, offset, data);
    record(it, updateNumber, v, offset, data);
    return `ok u=${updateNumber}`;
  },

  writes(it, args) {
    const [h, v, countArg, b] = [host(args[0]), volume(args[1]), int(args[2]), byte(args[3])];
    const { blockBytes, volumeBytes } = it.config as ClusterConfig;
    const numbers: number[] = [];
    for (let i = 0; i < countArg; i += 1) {
      const offset = (i * blockBytes) % volumeBytes;
      const data = new Uint8Array(blockBytes).fill((b + i) % 256);
      try {
        const { updateNumber } = it.c.hostWrite(h, v, offset, data);
        record(it, updateNumber, v, offset, data);
        numbers.push(updateNumber);
      } catch (error) {
        if (!(error instanceof RefusalError)) throw error;
        const done = numbers.length ? `ok u=${numbers[0]}..${numbers[numbers.length - 1]}, then ` : '';
        return `${done}refused ${error.code}: ${error.message}`;
      }
    }
    return `ok u=${numbers[0]}..${numbers[numbers.length - 1]}`;
  },

  submit(it, args) {
    const [h, v, offset, length, b] = [host(args[0]), volume(args[1]), int(args[2]), int(args[3]), byte(args[4])];
    const data = new Uint8Array(length).fill(b);
    const handle = it.c.submitHostWrite(h, v, offset, data);
    it.handles.push({ handle, write: { volume: v, offset, data }, recorded: false });
    return `write #${it.handles.length} ${handle.state}`;
  },

  handles(it) {
    if (it.handles.length === 0) return 'none';
    return it.handles
      .map(({ handle }, i) => {
        const detail =
          handle.state === 'acknowledged'
            ? ` u=${handle.updateNumber}${handle.alone ? ' (on one site)' : ''}`
            : handle.state === 'failed'
              ? ` ${handle.error?.code}`
              : '';
        return `write #${i + 1} ${handle.state}${detail}`;
      })
      .join('\n');
  },

  read(it, args) {
    return runs(it.c.readVolume(site(args[0]), volume(args[1]), int(args[2]), int(args[3])));
  },

  hostread(it, args) {
    return runs(it.c.hostRead(host(args[0]), volume(args[1]), int(args[2]), int(args[3])));
  },

  pull(it) {
    it.c.pullJournal();
    const r = it.c.observe().sites[3];
    return `ok received=${r.received} restored=${r.restored}`;
  },

  restore(it) {
    it.c.restoreJournal();
    return `ok restored=${it.c.observe().sites[3].restored}`;
  },

  tick(it, args) {
    it.c.advanceClock(int(args[0]));
    const r = it.c.observe().sites[3];
    return `ok now=${it.c.transport.now} received=${r.received} restored=${r.restored}`;
  },

  fail(it, args) {
    it.c.failSite(site(args[0]));
    return 'ok';
  },

  recover(it, args) {
    it.c.recoverSite(site(args[0]));
    return 'ok';
  },

  cut(it, args) {
    it.c.cutLink(...link(args[0]));
    return 'ok';
  },

  heal(it, args) {
    it.c.restoreLink(...link(args[0]));
    return 'ok';
  },

  fence(it, args) {
    it.c.fenceSite(site(args[0]));
    return 'ok';
  },

  failover(it, args) {
    const takeover = it.c.observe().sites[2].lastUpdateNumber;
    it.c.failover({ force: args.includes('--force') });
    // Site 2's lineage continues from its last update number (claim 27): later numbers of site 1 are gone.
    for (const u of [...it.lineage.keys()]) if (u > takeover) it.lineage.delete(u);
    const o = it.c.observe();
    return `ok async=${o.asyncPair.state}${o.judgement ? ` verdict=${o.judgement.verdict}` : ''}`;
  },

  resync(it, args) {
    it.c.resyncSite(site(args[0]) as 1 | 2);
    return `ok sync=${it.c.observe().syncPair.state}`;
  },

  'delta-resync'(it) {
    it.c.deltaResync();
    const o = it.c.observe();
    return `ok async=${o.asyncPair.state} received=${o.sites[3].received} restored=${o.sites[3].restored}`;
  },

  'full-copy'(it) {
    it.c.fullCopy();
    const o = it.c.observe();
    return `ok async=${o.asyncPair.state} restored=${o.sites[3].restored}`;
  },

  failback(it) {
    it.c.failback();
    const o = it.c.observe();
    return `ok async=${o.asyncPair.state}${o.judgement ? ` verdict=${o.judgement.verdict}` : ''}`;
  },

  hold(it, args) {
    it.c.transport.hold(...direction(args[0]));
    return 'ok';
  },

  release(it, args) {
    it.c.transport.release(...direction(args[0]));
    return 'ok';
  },

  drop(it, args) {
    const dropped = it.c.transport.drop(...direction(args[0]));
    return dropped === null ? 'nothing queued' : `dropped ${dropped.message.kind}`;
  },

  dup(it, args) {
    return it.c.transport.duplicate(...direction(args[0])) ? 'duplicated' : 'nothing queued';
  },

  reverse(it, args) {
    const [from, to] = direction(args[0]);
    const count = it.c.transport.pending(from, to);
    it.c.transport.reorder(from, to, Array.from({ length: count }, (_, i) => count - 1 - i));
    return `reversed ${count}`;
  },

  deliver(it, args) {
    const delivered = it.c.transport.deliverNext(...direction(args[0]));
    return delivered ? 'delivered' : 'nothing deliverable';
  },

  run(it) {
    return `delivered ${it.c.runUntilIdle()}`;
  },

  queued(it) {
    const lines: string[] = [];
    for (const [from, to] of [[1, 2], [2, 1], [1, 3], [3, 1], [2, 3], [3, 2]] as const) {
      const kinds = it.c.transport.queued(from, to).map((e) => e.message.kind);
      if (kinds.length) lines.push(`${from}->${to}: ${kinds.join(', ')}`);
    }
    return lines.length ? lines.join('\n') : 'none';
  },

  observe(it) {
    return observationText(it.c.observe());
  },

  images(it) {
    const o = it.c.observe();
    const digests = [o.sites[1].volumeDigest, o.sites[2].volumeDigest, o.sites[3].volumeDigest];
    const groups: string[] = [];
    const seen = new Set<number>();
    for (let i = 0; i < 3; i += 1) {
      if (seen.has(i)) continue;
      const same = [i];
      for (let j = i + 1; j < 3; j += 1) if (digests[j] === digests[i]) same.push(j);
      for (const j of same) seen.add(j);
      groups.push(same.map((j) => `site${j + 1}`).join('='));
    }
    return `${digests.map((d, i) => `site${i + 1}=${short(d)}`).join(' ')}\n${groups.length === 1 ? 'all equal' : groups.join(' | ')}`;
  },

  /** The safety properties, checked on real data; prints `ok` or each violation. */
  check(it) {
    const o = it.c.observe();
    const config = it.config as ClusterConfig;
    const problems: string[] = [];
    const inSync = o.syncPair.state === 'inSync' || o.syncPair.state === 'reversed';
    if (inSync && (o.sites[1].volumeDigest !== o.sites[2].volumeDigest || o.sites[1].lastUpdateNumber !== o.sites[2].lastUpdateNumber)) {
      problems.push('P1: the sync pair is in sync but sites 1 and 2 differ');
    }
    const r = o.sites[3];
    const primary = o.sites[o.syncPair.primary];
    if (primary.volumeDigest !== it.lineageDigest(primary.lastUpdateNumber)) problems.push("P1: the primary's image is not its acknowledged writes");
    if (o.asyncPair.state !== 'fullCopy' && r.volumeDigest !== it.lineageDigest(r.restored)) {
      problems.push(`P2: site 3 is not the primary's image after updates 1..${r.restored}`);
    }
    if (r.restored > r.received) problems.push('P2: site 3 restored beyond what it received');
    for (const id of [1, 2] as const) {
      const s = o.sites[id];
      if (s.journal.last !== s.lastUpdateNumber) problems.push(`P3: site ${id}'s journal does not end at its last update number`);
      if (s.journal.last - s.journal.first + 1 > config.journal.entriesMax) problems.push(`P7: site ${id}'s journal is over capacity`);
    }
    if (r.received - r.restored > config.journal.entriesMax) problems.push("P7: site 3's journal is over capacity");
    if (o.sites[1].acceptsHostWrites && o.sites[2].acceptsHostWrites) problems.push('P4: two sites accept host writes');
    return problems.length ? problems.join('\n') : 'ok';
  },

  rejections(it) {
    const list = it.c.rejections;
    return list.length === 0 ? 'none' : list.map((r) => `${r.from}->${r.to} ${r.kind}: ${r.error.code}`).join('\n');
  },

  reopen(it) {
    if (it.config?.storage.kind !== 'file') return 'ok';
    it.c.close();
    it.cluster = Cluster.open(it.config);
    return 'ok';
  },
};

// -----------------------------------------------------------------------------------------------------------
// The tests

const files = fs.readdirSync(dataDir).filter((name) => name.endsWith('.txt')).sort();

function runScenario(file: string, storage: 'memory' | 'file'): { header: string[]; cases: Case[]; outputs: string[] } {
  const { header, cases } = parseScenario(fs.readFileSync(path.join(dataDir, file), 'utf8'));
  if (!header[0]?.startsWith('# ')) throw new Error(`${file} must open with a "# purpose" line`);
  const interpreter = new Interpreter(storage);
  try {
    const outputs = cases.map((c) => {
      try {
        return interpreter.run(c.command);
      } catch (error) {
        throw new Error(`${file}:${c.line} "${c.command}": ${error instanceof Error ? error.stack : String(error)}`);
      }
    });
    return { header, cases, outputs };
  } finally {
    interpreter.close();
  }
}

describe('scenarios', () => {
  it('there are scenarios', () => {
    expect(files.length).toBeGreaterThan(0);
  });

  for (const file of files) {
    it(`${file} (memory)`, () => {
      const { header, cases, outputs } = runScenario(file, 'memory');
      if (rewrite) {
        fs.writeFileSync(path.join(dataDir, file), formatScenario(header, cases, outputs));
        return;
      }
      for (const [i, c] of cases.entries()) {
        expect(`${c.command}\n${outputs[i]}`, `${file}:${c.line}`).toBe(`${c.command}\n${c.expected}`);
      }
    });

    it(`${file} (file backend)`, () => {
      const { cases, outputs } = runScenario(file, 'file');
      const expected = rewrite ? runScenario(file, 'memory').outputs : cases.map((c) => c.expected);
      for (const [i, c] of cases.entries()) {
        expect(`${c.command}\n${outputs[i]}`, `${file}:${c.line}`).toBe(`${c.command}\n${expected[i]}`);
      }
    });
  }
});
