/**
 * The nemesis's host workload: writers over NBD (impl/net/nbd-client.ts) that record every write they issue
 * and whether it was acknowledged, and the block pattern that lets a later read say exactly which write a
 * block holds.
 *
 * Each write fills one whole block with a pattern made from (run seed, schedule, writer, sequence number,
 * volume, offset): a 32-byte header naming them, then bytes drawn from them, so a block read back names its
 * write and a torn block (half of one write, half of another, or of zeros) matches none. Each writer owns the
 * blocks `b` with `b % writers === writer`, and writes them one at a time, so the writes of one block are
 * ordered by their sequence numbers: after the run a block must hold its latest acknowledged write or a later
 * one (a write issued after it, acknowledged or not: NBD lets a write the host was not told about be there
 * or not), never an earlier one, zeros or a mix.
 */

import { NbdClient, NbdClientError, NbdReplyError } from '../impl/net/nbd-client.ts';
import { Rng } from './nemesis-schedule.ts';

/** Bytes of a block: the deployment's blockBytes. */
export const workloadBlockBytes = 4096;

/** Blocks of volume 0 the workload writes (the first ones): small enough that blocks are written many times. */
export const workloadBlocks = 256;

/** Writers at once (each its own NBD connection: the queue depth the sites see). */
export const workloadWriters = 4;

/** Writes one schedule issues at most, over all writers. */
export const workloadWritesMax = 20_000;

/** How long a writer waits after a refused or failed write before it tries again (no busy loop). */
export const writerRetryMs = 25;

/** Deadline of each NBD request of the workload, in milliseconds: a stopped site must not hang a writer. */
export const writerRequestTimeoutMs = 5_000;

const magic = 0x4e454d53; // "NEMS"

/** The header a block starts with. */
export interface BlockTag {
  runSeed: number;
  schedule: number;
  writer: number;
  sequence: number;
  volume: number;
  block: number;
}

/** The whole block a write puts at its place. */
export function blockPattern(tag: BlockTag): Uint8Array {
  const data = new Uint8Array(workloadBlockBytes);
  const view = new DataView(data.buffer);
  view.setUint32(0, magic);
  view.setUint32(4, tag.runSeed >>> 0);
  view.setUint32(8, tag.schedule);
  view.setUint32(12, tag.writer);
  view.setUint32(16, tag.sequence);
  view.setUint32(20, tag.volume);
  view.setUint32(24, tag.block);
  view.setUint32(28, 0);
  const rng = new Rng((tag.runSeed ^ Math.imul(tag.sequence + 1, 2654435761) ^ Math.imul(tag.block + 1, 40503) ^ tag.schedule) >>> 0);
  for (let at = 32; at < data.length; at += 4) view.setUint32(at, Math.floor(rng.next() * 4294967296));
  return data;
}

/** What a block read back holds: zeros, a write (whole), or something else (torn, foreign). */
export type BlockContent = { kind: 'zeros' } | { kind: 'write'; tag: BlockTag } | { kind: 'other'; why: string };

/** Names the write a block holds, checking every byte against the pattern its header names. */
export function identifyBlock(data: Uint8Array): BlockContent {
  if (data.every((byte) => byte === 0)) return { kind: 'zeros' };
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  if (data.length !== workloadBlockBytes || view.getUint32(0) !== magic) return { kind: 'other', why: 'no nemesis header' };
  const tag: BlockTag = {
    runSeed: view.getUint32(4),
    schedule: view.getUint32(8),
    writer: view.getUint32(12),
    sequence: view.getUint32(16),
    volume: view.getUint32(20),
    block: view.getUint32(24),
  };
  const expected = blockPattern(tag);
  for (let i = 0; i < data.length; i += 1) {
    if (data[i] !== expected[i]) return { kind: 'other', why: `torn: byte ${i} differs from write ${tag.sequence}'s pattern` };
  }
  return { kind: 'write', tag };
}

/** How a write ended. */
export type WriteOutcome = 'acknowledged' | 'refused' | 'failed' | 'inFlight';

/** One write the workload issued. */
export interface IssuedWrite {
  writer: number;
  sequence: number;
  block: number;
  /** The site it was sent to. */
  site: 1 | 2;
  outcome: WriteOutcome;
  /** The NBD error's name or the connection failure, when not acknowledged. */
  error?: string;
}

/** Where the writers send their writes now: the primary's NBD port, or null while there is none. */
export type TargetOf = () => { site: 1 | 2; port: number } | null;

/**
 * The writers of one schedule. {@link start} runs them until {@link stop}; every write they issue is in
 * {@link writes}, in issue order per writer.
 */
export class Workload {
  readonly writes: IssuedWrite[] = [];
  #running = false;
  #loops: Promise<void>[] = [];
  readonly #clients: (NbdClient | null)[] = [];
  #sequence = 0;
  #held = false;
  #inFlight = 0;
  #idle: (() => void)[] = [];

  constructor(
    readonly runSeed: number,
    readonly schedule: number,
    readonly target: TargetOf,
    readonly writesMax = workloadWritesMax,
  ) {}

  /** Starts the writers. */
  start(): void {
    this.#running = true;
    const rng = new Rng((this.runSeed ^ Math.imul(this.schedule + 1, 97)) >>> 0);
    for (let writer = 0; writer < workloadWriters; writer += 1) {
      this.#clients.push(null);
      this.#loops.push(this.#loop(writer, new Rng(Math.floor(rng.next() * 4294967296))));
    }
  }

  /** Stops the writers after their request under way; resolves when every writer is idle and closed. */
  async stop(): Promise<void> {
    this.#running = false;
    await Promise.all(this.#loops);
    for (const client of this.#clients) await client?.close().catch(() => undefined);
  }

  /**
   * Holds the writers (no new write is issued) and resolves once none is in flight: the host quiet while
   * the operator runs a command, so that what the command records is what the sites hold (the traces' views
   * are exact only then: impl/site/operator-trace.ts). Each write in flight ends within its request timeout.
   */
  async hold(): Promise<void> {
    this.#held = true;
    if (this.#inFlight === 0) return;
    await new Promise<void>((resolve) => this.#idle.push(resolve));
  }

  /** Lets the writers go on after {@link hold}. */
  release(): void {
    this.#held = false;
  }

  /** Acknowledged writes so far. */
  get acknowledged(): number {
    return this.writes.filter((write) => write.outcome === 'acknowledged').length;
  }

  async #loop(writer: number, rng: Rng): Promise<void> {
    const blocks = Array.from({ length: Math.ceil((workloadBlocks - writer) / workloadWriters) }, (_, i) => writer + i * workloadWriters);
    let connectedTo: 1 | 2 | null = null;
    while (this.#running && this.writes.length < this.writesMax) {
      const target = this.target();
      let client = this.#clients[writer] ?? null;
      if (target === null || this.#held) {
        await pause(writerRetryMs);
        continue;
      }
      if (client === null || client.closed || connectedTo !== target.site) {
        await client?.close().catch(() => undefined);
        this.#clients[writer] = null;
        try {
          client = await NbdClient.connect('127.0.0.1', target.port, 'vol0', writerRequestTimeoutMs);
        } catch {
          await pause(writerRetryMs);
          continue;
        }
        this.#clients[writer] = client;
        connectedTo = target.site;
        if (client.readOnly) {
          // Not (or no longer) the primary: its writes are refused with EPERM. Ask again shortly.
          await pause(writerRetryMs);
          await client.close().catch(() => undefined);
          this.#clients[writer] = null;
          continue;
        }
      }
      // A hold may have begun while this writer connected: no write starts under it.
      if (this.#held) continue;
      const block = rng.pick(blocks);
      this.#sequence += 1;
      const write: IssuedWrite = { writer, sequence: this.#sequence, block, site: target.site, outcome: 'inFlight' };
      this.writes.push(write);
      this.#inFlight += 1;
      try {
        await client.write(block * workloadBlockBytes, blockPattern({ runSeed: this.runSeed, schedule: this.schedule, writer, sequence: write.sequence, volume: 0, block }));
        write.outcome = 'acknowledged';
      } catch (error) {
        if (error instanceof NbdReplyError) {
          write.outcome = 'refused';
          write.error = error.errnoName;
        } else if (error instanceof NbdClientError) {
          write.outcome = 'failed';
          write.error = error.kind;
        } else {
          throw error;
        }
        await client.close().catch(() => undefined);
        this.#clients[writer] = null;
        await pause(writerRetryMs);
      } finally {
        this.#inFlight -= 1;
        if (this.#inFlight === 0) for (const resolve of this.#idle.splice(0)) resolve();
      }
    }
  }
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** What the check of one block found wrong. */
export interface LostWrite {
  block: number;
  /** The latest acknowledged write of the block. */
  acknowledged: number;
  /** What the primary holds there. */
  found: string;
}

/**
 * Checks the image of volume 0's workload blocks read from the primary against the writes: each block holds
 * its latest acknowledged write or a later one. Returns the blocks that do not, and how many blocks carried
 * an acknowledged write (the writes checked).
 */
export function checkAcknowledged(read: (block: number) => Uint8Array, writes: readonly IssuedWrite[], runSeed: number, schedule: number): { checked: number; lost: LostWrite[] } {
  const byBlock = new Map<number, IssuedWrite[]>();
  for (const write of writes) {
    const list = byBlock.get(write.block) ?? [];
    list.push(write);
    byBlock.set(write.block, list);
  }
  const lost: LostWrite[] = [];
  let checked = 0;
  for (const [block, list] of byBlock) {
    const acked = list.filter((write) => write.outcome === 'acknowledged');
    const latest = acked.length === 0 ? null : (acked[acked.length - 1] as IssuedWrite);
    const content = identifyBlock(read(block));
    if (latest === null) continue;
    checked += 1;
    if (content.kind === 'write' && content.tag.runSeed === runSeed >>> 0 && content.tag.schedule === schedule && content.tag.block === block && content.tag.sequence >= latest.sequence) {
      // A later write must be one this block's writer issued.
      if (content.tag.sequence === latest.sequence || list.some((write) => write.sequence === content.tag.sequence)) continue;
    }
    const found = content.kind === 'zeros' ? 'zeros' : content.kind === 'other' ? content.why : `write ${content.tag.sequence} (block ${content.tag.block})`;
    lost.push({ block, acknowledged: latest.sequence, found });
  }
  return { checked, lost };
}
