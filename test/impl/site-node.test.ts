/**
 * Site nodes (impl/site/site-node.ts) and the operator (impl/site/operator.ts) without processes: three nodes over an
 * in-memory network that delivers frames in order and reports connections going up and down at once
 * (`MemoryNetwork`, conformance/memory-deployment.ts, whose deployment stage of `npm start` uses it too),
 * driven through the operator's control-port client. The patent's story end to end (site 1 crashes,
 * failover with delta resync, host 2 writes, site 1 returns, resync, reversed writes, failback), with volume
 * bytes compared; then each local rule and each refusal on its own; then epochs: a primary that missed its
 * demotion is deposed by the new primary's announcement and its old-epoch write is refused.
 */
import { describe, expect, it } from 'vitest';
import { StorageSystem, type SiteDurableState, type SiteId } from '../../impl/core/storage-system.ts';
import { MemoryJournal } from '../../impl/core/journal.ts';
import { MemoryVolume, OutOfRangeError } from '../../impl/core/volume.ts';
import { DeviceError, NotAcknowledgedError, NotDurableError, NotWritableError, RefusalError, StorageFaultError } from '../../impl/core/errors.ts';
import { Operator, SiteOneStillSeenError, SiteUnreachableError, type SiteClient } from '../../impl/site/operator.ts';
import { localClient } from '../../impl/site/site-control.ts';
import { inflowDelayMsMax, PeerPrimaryError, queuedHostWritesMax, SiteNode, type NodeConfig, type NodeLinks } from '../../impl/site/site-node.ts';
import { MemoryNetwork } from '../../conformance/memory-deployment.ts';
import { localDeploymentConfig, validateDeploymentConfig } from '../../impl/site/deployment-config.ts';
import { openSite } from '../../impl/storage/site-open.ts';
import { decodeMessage, encodeMessage, type Message } from '../../impl/core/messages.ts';
import { verifyChunkBytesMax, verifyChunksInFlightMax, verifyDeadlineMsMax, verifyMarkersPendingMax, verifyResultsKept } from '../../impl/core/verify.ts';
import { OperatorTrace, operatorTraceName } from '../../impl/site/operator-trace.ts';
import { SiteTrace } from '../../impl/site/site-trace.ts';
import { traceTime } from '../../impl/cluster/trace.ts';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';

const blockBytes = 512;
const volumeCount = 2;
const volumeBytes = 8 * blockBytes;

interface Deployment {
  net: MemoryNetwork;
  nodes: Record<SiteId, SiteNode>;
  operator: Operator;
  crashed: Set<SiteId>;
  /** Site 3's timers: pull, then restore, until nothing is left to do. */
  catchUp(): Promise<void>;
}

/** The trace configuration of {@link deploy}'s sites. */
function traceConfigOf(fencePolicy: 'refuse' | 'keepWriting', journalEntriesMax: number) {
  return { volumeCount, volumeBytes, blockBytes, journalEntriesMax, journalBytesMax: journalEntriesMax * (blockBytes + 128), pullBatchEntriesMax: 4, fencePolicy };
}

/** Three nodes on a memory network; with `traceDir`, each writes its site trace there (site-trace.ts). */
function deploy(
  fencePolicy: 'refuse' | 'keepWriting' = 'keepWriting',
  journalEntriesMax = 64,
  nodeConfig: Partial<NodeConfig> = {},
  volumeBytesOfSite = volumeBytes,
  traceDir: string | null = null,
  remoteSave: ((state: object) => void) | null = null,
): Deployment {
  const net = new MemoryNetwork();
  const nodes = {} as Record<SiteId, SiteNode>;
  for (const id of [1, 2, 3] as const) {
    const site = openSite(
      { id, volumeCount, volumeBytes: volumeBytesOfSite, blockBytes, fencePolicy, inFlightWritesMax: 16, flushEachWrite: false },
      { entriesMax: journalEntriesMax, bytesMax: journalEntriesMax * (blockBytes + 128) },
      { kind: 'memory' },
    );
    const trace = traceDir === null ? null : SiteTrace.open(traceDir, site, traceConfigOf(fencePolicy, journalEntriesMax));
    nodes[id] = new SiteNode(site, { pullBatchEntriesMax: 4, hostWriteBytesMax: 4 * blockBytes, answerTimeoutMs: 1000, ...nodeConfig }, net.links(id), (line) => net.log.push(`site ${id}: ${line}`), id === 3 && remoteSave !== null ? { saved: null, save: remoteSave } : undefined, trace);
    net.nodes.set(id, nodes[id]);
  }
  const crashed = new Set<SiteId>();
  const client = (id: SiteId): SiteClient => {
    const local = localClient(() => nodes[id]);
    return new Proxy(local, {
      get: (target, prop: keyof SiteClient) => (...args: never[]) => {
        if (crashed.has(id)) return Promise.reject(new SiteUnreachableError(id, 'connection refused'));
        return (target[prop] as (...a: never[]) => Promise<unknown>)(...args);
      },
    });
  };
  const operator = new Operator({ 1: client(1), 2: client(2), 3: client(3) });
  const catchUp = async (): Promise<void> => {
    for (let i = 0; i < 64; i += 1) {
      nodes[3].onPullTimer();
      await settle();
      nodes[3].onRestoreTimer();
      const status = await operator.status();
      if (status.lag === 0) return;
    }
  };
  return { net, nodes, operator, crashed, catchUp };
}

/** Lets queued frames and the promises they resolve run. */
async function settle(): Promise<void> {
  for (let i = 0; i < 10; i += 1) await new Promise((resolve) => setImmediate(resolve));
}

function block(fill: number): Uint8Array {
  return new Uint8Array(blockBytes).fill(fill);
}

/** A crash of a site's process: its peers see the connections close; it does nothing more. */
function crash(d: Deployment, id: SiteId): void {
  d.crashed.add(id);
  d.net.change(() => d.net.online.set(id, false));
}

/** The process restarts over the same storage: it comes back failed until the operator recovers it. */
function restart(d: Deployment, id: SiteId): void {
  d.crashed.delete(id);
  d.net.online.set(id, true);
  d.nodes[id].restartedAfterStop();
}

describe('site nodes and the operator: the story end to end', () => {
  it('crash of site 1, failover with delta resync, host 2 writes, resync of site 1, reversed writes, failback; P1 and P6 on the bytes', async () => {
    const d = deploy();
    const { nodes, operator } = d;
    // Normal writes: acknowledged once site 2 journaled them, with the same update number (claims 2-6).
    for (let i = 0; i < 6; i += 1) {
      const { updateNumber, alone } = await nodes[1].hostWrite(i % 2, (i % 8) * blockBytes, block(i + 1));
      expect(updateNumber).toBe(i + 1);
      expect(alone).toBe(false);
    }
    expect(nodes[2].site.last).toBe(6);
    expect(nodes[2].site.read(1, 1 * blockBytes, blockBytes)).toEqual(block(2));
    // Site 3 pulls 4 and restores them; it lags by 2 when site 1 dies.
    nodes[3].onPullTimer();
    await settle();
    nodes[3].onRestoreTimer();
    expect(nodes[3].site.restored).toBe(4);

    crash(d, 1);
    expect(nodes[2].site.syncPair).toBe('suspended');
    expect(nodes[3].asyncPair).toBe('suspended');
    const judgement = await operator.failover(false);
    expect(judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 4, sourceLast: 6, forced: false });
    expect(await operator.deltaResync()).toBe('copying');
    // Claim 20: 5 and 6 are in site 3's journal; its restore timer writes them into its volumes.
    expect([nodes[3].site.received, nodes[3].site.restored]).toEqual([6, 4]);
    nodes[3].onRestoreTimer();
    expect(nodes[3].site.restored).toBe(6);
    expect(nodes[3].site.digest()).toBe(nodes[2].site.digest());

    // Host 2 writes at site 2, continuing the update numbers (claim 27), on site 2 alone.
    // A write of no byte, or past the end, is the refusal OutOfRange and takes no update number.
    expect(() => nodes[2].hostWrite(0, 0, new Uint8Array(0))).toThrow(expect.objectContaining({ code: 'OutOfRange', reason: 'empty' }));
    expect(() => nodes[2].hostWrite(0, nodes[2].site.config.volumeBytes, block(1))).toThrow(OutOfRangeError);
    const w7 = await nodes[2].hostWrite(0, 0, block(70));
    expect(w7).toEqual({ updateNumber: 7, alone: true });

    // Site 1's process restarts: failed until recovered; then resync and reversed sync (claims 29-35).
    restart(d, 1);
    expect(nodes[1].site.up).toBe(false);
    expect(() => nodes[1].hostWrite(0, 0, block(1))).toThrow(NotWritableError);
    await operator.recover(1);
    expect(nodes[1].site.role).toBe('secondary');
    expect(nodes[1].site.mode).toBe('resyncing');
    await operator.resync(1);
    expect(nodes[1].site.syncPair).toBe('reversed');
    expect(nodes[2].site.syncPair).toBe('reversed');
    expect(nodes[1].site.digest()).toBe(nodes[2].site.digest());
    const w8 = await nodes[2].hostWrite(1, 3 * blockBytes, block(80));
    expect(w8).toEqual({ updateNumber: 8, alone: false });
    expect(nodes[1].site.journal.last).toBe(8); // site 1 journals with site 2's update number (claims 33-35)

    await d.catchUp();
    const back = await operator.failback();
    expect(back.verdict).toBe('noUpdateRequired');
    expect((await operator.status()).primary).toBe(1);
    const w9 = await nodes[1].hostWrite(0, 5 * blockBytes, block(90));
    expect(w9).toEqual({ updateNumber: 9, alone: false });
    await d.catchUp();
    const digests = [1, 2, 3].map((id) => nodes[id as SiteId].site.digest());
    expect(new Set(digests).size).toBe(1);
    const status = await operator.status();
    expect(status.syncPair).toBe('inSync');
    expect(status.asyncPair).toBe('copying');
    expect(status.standbyPair).toBe('hold');
    expect(status.lag).toBe(0);
  });
});

describe('site nodes: local rules', () => {
  it('R1 under fence policy refuse: writes in flight fail when the link goes down, later ones are refused', async () => {
    const d = deploy('refuse');
    const inFlight = d.nodes[1].hostWrite(0, 0, block(1));
    d.net.change(() => d.net.cut.add('1-2'));
    await expect(inFlight).rejects.toBeInstanceOf(NotWritableError);
    expect(() => d.nodes[1].hostWrite(0, 0, block(2))).toThrow(NotWritableError);
    expect(d.nodes[1].site.changed.count).toBe(1);
  });

  it('R1 under keepWriting: a write with no link is acknowledged alone and recorded; the pair resyncs when the link is back', async () => {
    const d = deploy('keepWriting');
    d.net.change(() => d.net.cut.add('1-2'));
    expect(await d.nodes[1].hostWrite(0, 0, block(1))).toEqual({ updateNumber: 1, alone: true });
    expect((await d.operator.status()).ackedOnOneSite).toBe(1);
    d.net.change(() => d.net.cut.delete('1-2'));
    expect(d.nodes[2].site.mode).toBe('resyncing');
    await d.operator.resync(2);
    expect(d.nodes[2].site.digest()).toBe(d.nodes[1].site.digest());
    expect(await d.nodes[1].hostWrite(0, blockBytes, block(2))).toEqual({ updateNumber: 2, alone: false });
  });

  it('a batch of host writes goes to site 2 as one frame, answered once; writes past the in-flight limit wait their turn', async () => {
    const d = deploy('keepWriting');
    const sent = d.nodes[1].status(false).frames[2]!.sent;
    const writes = Array.from({ length: 20 }, (_, i) => ({ volume: i % volumeCount, offset: (i % 8) * blockBytes, data: block(i + 1) }));
    const results = d.nodes[1].hostWriteBatch(writes);
    // 16 writes in flight at most: one frame for them now; the other 4 wait for its answer.
    expect(d.nodes[1].status(false).frames[2]!.sent).toBe(sent + 1);
    expect(d.nodes[1].site.inFlightWrites).toBe(16);
    const acked = await Promise.all(results);
    expect(acked).toEqual(writes.map((_, i) => ({ updateNumber: i + 1, alone: false })));
    expect(d.nodes[1].status(false).frames[2]!.sent).toBe(sent + 2);
    expect(d.nodes[2].site.journal.last).toBe(20);
    expect(d.nodes[2].site.digest()).toBe(d.nodes[1].site.digest());
    // A write refused at once is refused alone; with the pair suspended the batch is acknowledged alone.
    const refused = d.nodes[1].hostWriteBatch([{ volume: 9, offset: 0, data: block(1) }, { volume: 0, offset: 0, data: block(7) }]);
    await expect(refused[0]).rejects.toBeInstanceOf(RefusalError);
    expect(await refused[1]).toEqual({ updateNumber: 21, alone: false });
    d.net.change(() => d.net.cut.add('1-2'));
    const alone = await Promise.all(d.nodes[1].hostWriteBatch(writes));
    expect(alone.map((r) => r.alone)).toEqual(writes.map(() => true));
    expect(d.nodes[1].site.journal.last).toBe(41);
  });

  it('with the pair suspended, host writes do not rewrite the state file each: it is saved at the tick and before the journal discards an entry', async () => {
    const saves: SiteDurableState[] = [];
    const config = { id: 1 as const, volumeCount, volumeBytes, blockBytes, fencePolicy: 'keepWriting' as const, inFlightWritesMax: 16, flushEachWrite: false };
    const volumes = Array.from({ length: volumeCount }, () => new MemoryVolume(volumeBytes, blockBytes));
    const site = new StorageSystem(config, volumes, new MemoryJournal({ entriesMax: 64, bytesMax: 64 * 1024 }), null, (state) => saves.push(state));
    const links: NodeLinks = { send: () => false, isConnected: () => false, disconnect: () => undefined, setOnline: () => undefined, setCut: () => undefined, queuedBytes: () => 0, askPeer: () => Promise.reject(new Error('no peer')) };
    const node = new SiteNode(site, { pullBatchEntriesMax: 4, hostWriteBytesMax: 4 * blockBytes, answerTimeoutMs: 1000 }, links, () => undefined);
    // The first write finds no link: the pair is suspended (saved at once), the write acknowledged alone.
    expect(await node.hostWrite(0, 0, block(1))).toEqual({ updateNumber: 1, alone: true });
    const afterSuspend = saves.length;
    expect(saves.at(-1)?.syncPair).toBe('suspended');
    for (let i = 1; i < 5; i += 1) expect(await node.hostWrite(0, i * blockBytes, block(i + 1))).toMatchObject({ alone: true });
    await Promise.all(node.hostWriteBatch([0, 1, 2].map((i) => ({ volume: 1, offset: i * blockBytes, data: block(9) }))));
    expect(saves.length).toBe(afterSuspend);
    node.onTick(0);
    expect(saves.length).toBe(afterSuspend + 1);
    expect(saves.at(-1)).toMatchObject({ ackedAlone: 8 });
    expect(saves.at(-1)!.changed.map((bitmap) => bitmap[0])).toEqual([0b11111, 0b111]);
    node.onTick(50);
    expect(saves.length).toBe(afterSuspend + 1);
    // A trim (site 3's progress) that would discard an entry of an unsaved write saves first.
    await node.hostWrite(0, 7 * blockBytes, block(7));
    site.handle({ from: 3, to: 1, message: { kind: 'pullRequest', epoch: 1, received: 9, restored: 9, entriesMax: 0, bytesMax: 0 } });
    expect(saves.length).toBe(afterSuspend + 2);
    expect(saves.at(-1)!.changed[0]![0]).toBe(0b10011111);
    expect(site.journal.first).toBe(10);
  });

  it('an unanswered sync write takes the link down after the answer timeout', async () => {
    const d = deploy('keepWriting');
    d.net.nodes.delete(2); // site 2 stops answering without closing its connection... (its frames go nowhere)
    d.net.nodes.set(2, d.nodes[2]);
    const original = d.nodes[2].onFrame.bind(d.nodes[2]);
    d.nodes[2].onFrame = () => undefined;
    const write = d.nodes[1].hostWrite(0, 0, block(1));
    d.nodes[1].onTick(0);
    d.nodes[1].onTick(1001);
    expect(await write).toEqual({ updateNumber: 1, alone: true });
    expect(d.net.log.some((line) => line.includes('not answered within 1000 ms'))).toBe(true);
    d.nodes[2].onFrame = original;
  });

  it('R2: site 3 is suspended while its source is unreachable and judged when it is back', async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    d.net.change(() => d.net.cut.add('1-3'));
    expect(d.nodes[3].asyncPair).toBe('suspended');
    d.net.change(() => d.net.cut.delete('1-3'));
    await settle();
    expect(d.nodes[3].asyncPair).toBe('copying');
    expect((await d.operator.status()).judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 0, sourceLast: 1, forced: false });
  });

  it('journal overflow at the source: the pull is refused, site 3 is suspended by overflow, a full copy restores it (P7)', async () => {
    const d = deploy('keepWriting', 4);
    for (let i = 0; i < 6; i += 1) await d.nodes[1].hostWrite(0, (i % 8) * blockBytes, block(i + 1));
    d.nodes[3].onPullTimer();
    await settle();
    expect(d.nodes[3].asyncPair).toBe('suspendedOverflow');
    expect((await d.operator.status()).standbyPair).toBe('holdError');
    await d.operator.fullCopy();
    expect(d.nodes[3].asyncPair).toBe('copying');
    expect(d.nodes[3].site.digest()).toBe(d.nodes[1].site.digest());
    expect(d.nodes[3].site.restored).toBe(6);
  });

  it('a malformed frame disconnects the peer and changes nothing', async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    // The site's state, without the link's frame counts (they move with every frame, taken or dropped).
    const state = (node: SiteNode): string => {
      const { frames: _frames, ...rest } = node.status(true);
      return JSON.stringify(rest);
    };
    const before = state(d.nodes[2]);
    d.nodes[2].onFrame(3, new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9]));
    expect(d.net.log.some((line) => line.includes('malformed message from site 3'))).toBe(true);
    expect(state(d.nodes[2])).toBe(before);
    // From the sync peer, the disconnect suspends the pair (R1); the data stay as they were.
    const digest = d.nodes[2].site.digest();
    d.nodes[2].onFrame(1, new Uint8Array(12));
    expect(d.nodes[2].site.syncPair).toBe('resyncing');
    expect(d.nodes[2].site.digest()).toBe(digest);
    expect(d.nodes[2].site.last).toBe(1);
    // A well-formed message the site does not take now is dropped, not acted on.
    const after = state(d.nodes[2]);
    d.nodes[2].onFrame(1, encodeMessage({ kind: 'syncWriteAck', epoch: 1, updateNumber: 9 }));
    expect(d.nodes[2].refused.get('syncWriteAck')).toBe(1);
    expect(state(d.nodes[2])).toBe(after);
  });
});

describe('the operator: refusals', () => {
  it('failover is refused while site 1 is up and not fenced (P4), allowed once it is fenced', async () => {
    const d = deploy();
    await expect(d.operator.failover(false)).rejects.toMatchObject({ code: 'NotAllowed' });
    await d.operator.fence(1);
    expect(() => d.nodes[1].hostWrite(0, 0, block(1))).toThrow(NotWritableError);
    await d.operator.failover(false);
    expect((await d.operator.status()).primary).toBe(2);
    expect(d.nodes[1].site.role).toBe('secondary');
  });

  it('failover with link 2-3 cut: site 3 is told its new source, pulls no more from a fenced site 1, and is judged when the link returns', async () => {
    const d = deploy();
    for (const fill of [1, 2, 3]) await d.nodes[1].hostWrite(0, 0, block(fill));
    await d.operator.setLinkCut(2, 3, true);
    await d.operator.fence(1);
    // Site 3 cannot be asked: the failover goes ahead, as with site 3 down (DESIGN.md: a cut looks like a failure).
    expect(await d.operator.failover(false)).toBeNull();
    let status = await d.operator.status();
    expect([status.primary, status.asyncPair, status.judgement]).toEqual([2, 'suspended', null]);
    expect(d.nodes[3].site.source).toBe(2);
    // Its link to the fenced site 1 is up, but site 1 is its source no more: a pull is refused, nothing arrives.
    await expect(d.operator.pullJournal()).rejects.toMatchObject({ code: 'NotAllowed' });
    d.nodes[3].onPullTimer();
    await settle();
    expect(d.nodes[3].site.received).toBe(0);
    // Unjudged and cut off, it refuses an attach that skips the judge, and one while its source can ask it.
    await expect(d.operator.clients[3].attach(2, 'copying', null, status.epoch)).rejects.toMatchObject({ code: 'NotAllowed' });
    await d.nodes[2].hostWrite(0, 0, block(4));
    await d.operator.setLinkCut(2, 3, false);
    await settle();
    await expect(d.operator.clients[3].attach(2, 'suspended', null, status.epoch)).rejects.toMatchObject({ code: 'NotAllowed' });
    // Judged on reattach against site 2's journal (claims 18, 28), then it catches up on every update.
    status = await d.operator.status();
    expect(status.judgement).toEqual({ verdict: 'deltaResync', remoteReceived: 0, sourceLast: 4, forced: false });
    expect(status.asyncPair).toBe('copying');
    await d.catchUp();
    expect(d.nodes[3].site.read(0, 0, blockBytes)).toEqual(block(4));
  });

  it('failover is refused when site 3 holds updates site 2 lacks, unless forced (then a full copy)', async () => {
    const d = deploy('keepWriting');
    d.net.change(() => d.net.cut.add('1-2'));
    await d.nodes[1].hostWrite(0, 0, block(1)); // on site 1 alone
    await d.catchUp(); // site 3 pulls it from site 1
    crash(d, 1);
    d.net.change(() => d.net.cut.delete('1-2'));
    await expect(d.operator.failover(false)).rejects.toMatchObject({ code: 'RemoteAhead' });
    expect((await d.operator.status()).judgement).toMatchObject({ verdict: 'remoteAhead', forced: false });
    const judgement = await d.operator.failover(true);
    expect(judgement).toMatchObject({ verdict: 'remoteAhead', forced: true });
    expect(d.nodes[3].asyncPair).toBe('fullCopy');
    await d.operator.fullCopy();
    expect(d.nodes[3].site.digest()).toBe(d.nodes[2].site.digest());
  });

  it('failback is refused unless the pair is reversed, and a refused step is a typed refusal', async () => {
    const d = deploy();
    const error = await d.operator.failback().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RefusalError);
    expect(error).toMatchObject({ code: 'NotAllowed' });
  });
});

describe('site nodes: the operator steps pulls and restores, and reports what a driver waits for', () => {
  it('PULL_JOURNAL and RESTORE_JOURNAL on command, refused as in one process', async () => {
    const d = deploy();
    await expect(d.operator.restoreJournal()).rejects.toMatchObject({ code: 'NotAllowed', message: expect.stringMatching(/journal is empty/) });
    await d.nodes[1].hostWrite(0, 0, block(1));
    await d.operator.pullJournal();
    expect(d.nodes[3].site.received).toBe(1);
    expect(d.nodes[3].site.restored).toBe(0);
    await d.operator.restoreJournal();
    expect(d.nodes[3].site.restored).toBe(1);
    d.net.change(() => d.net.cut.add('1-3'));
    await expect(d.operator.pullJournal()).rejects.toMatchObject({ code: 'NotAllowed' });
    await d.operator.fail(3);
    await expect(d.operator.restoreJournal()).rejects.toMatchObject({ code: 'SiteFailed' });
    // A failed site 3 has no pair to resync: the pair's state is refused first, as the model does.
    await expect(d.operator.deltaResync()).rejects.toMatchObject({ code: 'NotAllowed' });
    await expect(d.operator.fullCopy()).rejects.toMatchObject({ code: 'NotAllowed' });
  });

  it('both ends of a quiet link count the same frames; no site is busy', async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    await d.operator.pullJournal();
    const status = await d.operator.status();
    for (const [a, b] of [
      [1, 2],
      [1, 3],
      [2, 3],
    ] as [SiteId, SiteId][]) {
      const ab = status.sites[a]!.frames[b]!;
      const ba = status.sites[b]!.frames[a]!;
      expect({ sent: ab.sent, received: ab.received }).toEqual({ sent: ba.received, received: ba.sent });
    }
    expect(status.sites[1]!.frames[2]!.sent).toBe(1); // the sync write
    expect(status.sites[3]!.frames[1]!.sent).toBe(1); // the pull
    expect([1, 2, 3].map((id) => status.sites[id as SiteId]!.busy)).toEqual([null, null, null]);
  });

  it("a node made in a process older than the answer timeout keeps its first step's answer", async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    const pull = d.nodes[3].pullNow();
    // The first tick comes after the request was sent, with a clock far past the timeout (1000 ms).
    d.nodes[3].onTick(3_600_000);
    await pull;
    expect(d.nodes[3].site.received).toBe(1);
  });
});

describe('a step of many answers: its answer timeout counts from the last answer', () => {
  it('a delta resync of many batches, each answered within the timeout, ends copying though it takes longer than one', async () => {
    const d = deploy('keepWriting', 64);
    const { nodes, net, operator } = d;
    let now = 0;
    for (const id of [1, 2, 3] as const) nodes[id].onTick(now);
    for (let i = 0; i < 20; i += 1) await nodes[1].hostWrite(0, (i % 8) * blockBytes, block(i + 1));
    crash(d, 1);
    expect((await operator.failover(false))?.verdict).toBe('deltaResync');
    // 20 entries in batches of 4 (pullBatchEntriesMax): five answers from site 2, one at a time, each 800 ms
    // after the last (the answer timeout is 1000 ms): 4 s in all.
    net.held.add('2>3');
    net.held.add('3>2');
    const resync = operator.deltaResync();
    let outcome = null as string | null;
    resync.then(
      (value) => (outcome = value),
      (error: RefusalError) => (outcome = error.code),
    );
    const deliver = (direction: '2>3' | '3>2'): void => {
      // Only this direction moves: the answer it causes waits for the next call.
      net.held.add('2>3');
      net.held.add('3>2');
      net.held.delete(direction);
      net.deliverAll();
      net.held.add(direction);
    };
    await settle();
    let batches = 0;
    while (outcome === null && batches < 10) {
      // Site 3's request (or its acknowledgement of a batch), then 800 ms later site 2's next batch.
      deliver('3>2');
      await settle();
      now += 800;
      for (const id of [2, 3] as const) nodes[id].onTick(now);
      deliver('2>3');
      batches += 1;
      await settle();
    }
    net.held.clear();
    net.deliverAll();
    await settle();
    expect(batches).toBe(5);
    expect(outcome).toBe('copying');
    expect([nodes[3].site.received, nodes[3].site.restored]).toEqual([20, 0]);
  });
});

describe("the operator's trace: a recovery takes effect when the site is told", () => {
  it('is recorded at the instant before the site came up (it restores at once), its view without site 3\'s numbers', async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    await d.nodes[1].hostWrite(0, blockBytes, block(2));
    await d.operator.pullJournal();
    await d.operator.fail(3);
    expect([d.nodes[3].site.received, d.nodes[3].site.restored]).toEqual([2, 0]);
    // Site 3 restores as soon as it is up (its restore timer), long before the sites have settled.
    let upAt = 0;
    const three = d.operator.clients[3];
    const clients = {
      1: d.operator.clients[1],
      2: d.operator.clients[2],
      3: {
        ...three,
        status: (digest: boolean) => three.status(digest),
        recover: async (primary: 1 | 2, epoch: number) => {
          await three.recover(primary, epoch);
          upAt = traceTime();
          d.nodes[3].onRestoreTimer();
        },
      } as SiteClient,
    };
    const operator = new Operator(clients, traceTime);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-operator-trace-'));
    try {
      const config = { volumeCount, volumeBytes, blockBytes, journalEntriesMax: 64, journalBytesMax: 64 * (blockBytes + 128), pullBatchEntriesMax: 4, fencePolicy: 'keepWriting' as const };
      const trace = OperatorTrace.open(dir, config);
      await trace.run({ type: 'RECOVER_SITE', site: 3 }, () => operator.recover(3), () => operator.status(), () => operator.takeCommittedAt());
      trace.close();
      expect(d.nodes[3].site.restored).toBe(2);
      const lines = fs.readFileSync(path.join(dir, operatorTraceName), 'utf8').trim().split('\n');
      const record = JSON.parse(lines.at(-1)!) as { time: number; action: { type: string }; view: { sites: Record<string, Record<string, unknown>> } };
      expect(record.action.type).toBe('RECOVER_SITE');
      // Before site 3 came up (and so before its restore, which its own log records).
      expect(record.time).toBeLessThan(upAt);
      expect(record.view.sites['3']).toMatchObject({ mode: 'normal' });
      expect(record.view.sites['3']).not.toHaveProperty('restored');
      expect(record.view.sites['3']).not.toHaveProperty('received');
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("site 3's trace: a pull is recorded at the instant its source read its journal", () => {
  it('drops an answer that comes after the pull was given up and a restore recorded: it would stand after the restore', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-site-trace-'));
    try {
      const d = deploy('keepWriting', 64, {}, volumeBytes, dir);
      const { nodes, net } = d;
      for (const id of [1, 2, 3] as const) nodes[id].onTick(0);
      await nodes[1].hostWrite(0, 0, block(1));
      await nodes[1].hostWrite(0, blockBytes, block(2));
      nodes[3].onPullTimer();
      await settle();
      expect([nodes[3].site.received, nodes[3].site.restored]).toEqual([2, 0]);
      await nodes[1].hostWrite(0, 2 * blockBytes, block(3));
      // Site 1 serves the next pull (entries 3), but its answer is held past site 3's answer timeout.
      net.held.add('1>3');
      nodes[3].onPullTimer();
      await settle();
      nodes[3].onTick(1500);
      // The pull given up, site 3 restores what it holds: a record later than the source's read.
      nodes[3].onRestoreTimer();
      expect(nodes[3].site.restored).toBe(2);
      net.held.delete('1>3');
      net.deliverAll();
      await settle();
      expect(nodes[3].site.received).toBe(2);
      expect(net.log.some((line) => line.includes('dropped a late pullEntries from site 1'))).toBe(true);
      // The next pull reads entry 3 again, at an instant after the restore.
      nodes[3].onPullTimer();
      await settle();
      expect(nodes[3].site.received).toBe(3);
      for (const id of [1, 2, 3] as const) nodes[id].close();
      const log = fs.readdirSync(dir).find((name) => name.startsWith('site-3-'))!;
      const actions = fs
        .readFileSync(path.join(dir, log), 'utf8')
        .trim()
        .split('\n')
        .slice(1)
        .map((line) => JSON.parse(line) as { time: number; action?: { type: string } })
        .filter((record) => record.action !== undefined)
        .map((record) => record.action!.type);
      expect(actions).toEqual(['PULL_JOURNAL', 'RESTORE_JOURNAL', 'PULL_JOURNAL']);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("the operator's trace: refusals", () => {
  it('records a refusal with its code, and no record for an answer that did not come (NotAcknowledged: the outcome is unknown)', async () => {
    const d = deploy();
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-operator-trace-'));
    try {
      const config = { volumeCount, volumeBytes, blockBytes, journalEntriesMax: 64, journalBytesMax: 64 * (blockBytes + 128), pullBatchEntriesMax: 4, fencePolicy: 'keepWriting' as const };
      const trace = OperatorTrace.open(dir, config);
      const lost = new NotAcknowledgedError('resyncSite', 'no answer within 1000 ms');
      await expect(trace.run({ type: 'RESYNC_SITE', site: 2 }, () => Promise.reject(lost), () => d.operator.status())).rejects.toBe(lost);
      await expect(trace.run({ type: 'RESYNC_SITE', site: 2 }, () => d.operator.resync(2), () => d.operator.status())).rejects.toMatchObject({ code: 'NotAllowed' });
      trace.close();
      const records = fs.readFileSync(path.join(dir, operatorTraceName), 'utf8').trim().split('\n').slice(1).map((line) => JSON.parse(line) as { outcome: { accepted: boolean; code?: string } });
      expect(records.map((record) => record.outcome)).toEqual([{ accepted: false, code: 'NotAllowed', message: expect.any(String) }]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('site nodes: a source journal overflow (P7) suspends the async pair at once', () => {
  it('the operator sees it at once, site 3 at its next pull; pulls and restores are refused; a full copy ends it', async () => {
    const d = deploy('keepWriting', 1);
    await d.nodes[1].hostWrite(0, 0, block(1));
    await d.operator.pullJournal();
    // The second write overflows site 1's journal [1]; it still covers site 3 (received 1), yet the model
    // suspends the pair: site 3's own view is behind until it asks.
    await d.nodes[1].hostWrite(0, blockBytes, block(2));
    expect(d.nodes[1].site.journal.first).toBe(2);
    expect(d.nodes[3].asyncPair).toBe('copying');
    const status = await d.operator.status();
    expect(status.sites[1]!.sourceOverflow).toBe(true);
    expect(status.asyncPair).toBe('suspendedOverflow');
    await expect(d.operator.pullJournal()).rejects.toMatchObject({ code: 'NotAllowed', message: expect.stringMatching(/suspendedOverflow/) });
    await expect(d.operator.restoreJournal()).rejects.toMatchObject({ code: 'NotAllowed', message: expect.stringMatching(/suspendedOverflow/) });
    await expect(d.operator.deltaResync()).rejects.toMatchObject({ code: 'NotAllowed' });
    // Site 3's own timer pulls: the source refuses though its journal covers site 3.
    d.nodes[3].onPullTimer();
    await settle();
    expect(d.nodes[3].asyncPair).toBe('suspendedOverflow');
    expect(d.nodes[3].site.received).toBe(1);
    await d.operator.fullCopy();
    await settle();
    expect(d.nodes[3].asyncPair).toBe('copying');
    expect(d.nodes[3].site.digest()).toBe(d.nodes[1].site.digest());
    expect((await d.operator.status()).sites[1]!.sourceOverflow).toBe(false);
  });

  it('overflow while site 3 is unreachable: the reattach is refused for overflow, no judgement; a full copy told to site 3 first', async () => {
    const d = deploy('keepWriting', 1);
    await d.nodes[1].hostWrite(0, 0, block(1));
    d.net.change(() => d.net.cut.add('1-3'));
    expect(d.nodes[3].asyncPair).toBe('suspended');
    await d.nodes[1].hostWrite(0, blockBytes, block(2));
    expect((await d.operator.status()).asyncPair).toBe('suspendedOverflow');
    d.net.change(() => d.net.cut.delete('1-3'));
    await settle();
    expect(d.nodes[3].asyncPair).toBe('suspendedOverflow');
    expect((await d.operator.status()).judgement).toBeNull();
    expect(d.nodes[3].status(false).busy).toBeNull();
    await d.operator.fullCopy();
    await settle();
    expect(d.nodes[3].site.digest()).toBe(d.nodes[1].site.digest());
  });

  it('a full copy when site 3 has yet to learn of the overflow: the operator tells it first', async () => {
    const d = deploy('keepWriting', 1);
    await d.nodes[1].hostWrite(0, 0, block(1));
    await d.nodes[1].hostWrite(0, blockBytes, block(2));
    expect(d.nodes[3].asyncPair).toBe('copying');
    await d.operator.fullCopy();
    await settle();
    expect(d.nodes[3].asyncPair).toBe('copying');
    expect(d.nodes[3].site.restored).toBe(2);
  });
});

describe('the operator: steps in the model’s order', () => {
  it('failover of a fenced site 1 it still reaches: the pair is resyncing at once (R1)', async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    await d.operator.fence(1);
    await d.operator.failover(false);
    expect(d.nodes[2].site.syncPair).toBe('resyncing');
    expect(d.nodes[1].site.syncPair).toBe('resyncing');
    expect(d.nodes[1].site.mode).toBe('resyncing');
    expect((await d.operator.status()).syncPair).toBe('resyncing');
  });

  it('failback with the pair not reversed and a site failed is refused for the pair first', async () => {
    const d = deploy();
    await d.operator.fail(3);
    await expect(d.operator.failback()).rejects.toMatchObject({ code: 'NotAllowed' });
  });
});

describe('device faults: a site detaches (DRBD on-io-error detach), nothing is acknowledged that is not stored', () => {
  /** Makes the `nth` call of `method` on `target` (counting from 1) throw the device error, as a full or broken disk does. */
  function failAt<T extends object>(target: T, method: keyof T & string, nth: number, fault: DeviceError): void {
    const original = (target[method] as (...args: unknown[]) => unknown).bind(target);
    let calls = 0;
    (target as Record<string, unknown>)[method] = (...args: unknown[]) => {
      calls += 1;
      if (calls === nth) throw fault;
      return original(...args);
    };
  }
  const enospc = (device: 'volume' | 'journal' | 'state'): DeviceError =>
    new DeviceError(device, `${device}-file`, 'write', 'ENOSPC', Object.assign(new Error('no space left on device'), { code: 'ENOSPC' }));

  it('a full journal device at the primary fails the host write with ENOSPC, unacknowledged and never sent; the site fails and says why', async () => {
    const d = deploy();
    const { nodes, operator } = d;
    await nodes[1].hostWrite(0, 0, block(1));
    failAt(nodes[1].site.journal, 'appendAll', 1, enospc('journal'));
    failAt(nodes[1].site.journal, 'append', 1, enospc('journal'));
    const refused = await nodes[1].hostWrite(0, blockBytes, block(2)).then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(StorageFaultError);
    expect(refused).toMatchObject({ code: 'SiteFailed', site: 1, fault: { errno: 'ENOSPC', device: 'journal' } });
    await settle();
    // Never sent: site 2 holds only the first write, and no update number was spent on the second.
    expect(nodes[2].site.last).toBe(1);
    const status = nodes[1].status(false);
    expect(status).toMatchObject({ up: false, fault: { device: 'journal', errno: 'ENOSPC' }, acceptsHostWrites: false });
    // The process stays up and answers; a later write is refused at once; recover waits for a restart.
    expect(() => nodes[1].hostWrite(0, 0, block(3))).toThrow(NotWritableError);
    await expect(operator.recover(1)).rejects.toMatchObject({ code: 'NotAllowed' });
    // Its peers follow the rules for a failed site 1: the link is down, the pair suspended at site 2.
    expect(nodes[2].status(false).connected).not.toContain(1);
  });

  it('an I/O error at the secondary\'s volume detaches the secondary; the primary suspends the pair by R1 and the write is not acknowledged as in sync', async () => {
    const d = deploy('refuse');
    const { nodes } = d;
    await nodes[1].hostWrite(0, 0, block(1));
    failAt(nodes[2].site.volumes[0]!, 'write', 1, new DeviceError('volume', 'volume-0.img', 'write', 'EIO', new Error('input/output error')));
    const second = await nodes[1].hostWrite(0, blockBytes, block(2)).then(
      (result) => result,
      (error: unknown) => error,
    );
    await settle();
    expect(nodes[2].status(false)).toMatchObject({ up: false, fault: { device: 'volume', errno: 'EIO' } });
    // Under fence policy refuse, a write that reached one site only is never acknowledged.
    expect(second).toBeInstanceOf(RefusalError);
    expect(nodes[1].status(false).syncPair).toBe('suspended');
    expect(nodes[1].status(false).fault).toBeNull();
  });
  it('a detaching primary records its own FAIL_SITE; a detaching secondary does not (its primary acknowledges in sync what was on its way: the harness records it from the primary\'s log)', async () => {
    const traceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-detach-trace-'));
    try {
      const d = deploy('keepWriting', 64, {}, volumeBytes, traceDir);
      const { nodes } = d;
      await nodes[1].hostWrite(0, 0, block(1));
      failAt(nodes[2].site.volumes[0]!, 'write', 1, new DeviceError('volume', 'volume-0.img', 'write', 'EIO', new Error('input/output error')));
      await nodes[1].hostWrite(0, blockBytes, block(2)).catch(() => undefined);
      await settle();
      expect(nodes[2].status(false)).toMatchObject({ up: false, fault: { errno: 'EIO' } });
      failAt(nodes[1].site.journal, 'appendAll', 1, enospc('journal'));
      failAt(nodes[1].site.journal, 'append', 1, enospc('journal'));
      await nodes[1].hostWrite(0, 2 * blockBytes, block(3)).catch(() => undefined);
      await settle();
      expect(nodes[1].status(false)).toMatchObject({ up: false, fault: { errno: 'ENOSPC' } });
      for (const node of Object.values(nodes)) node.close();
      const failures = (site: number) =>
        fs
          .readdirSync(traceDir)
          .filter((name) => name.startsWith(`site-${site}-`))
          .flatMap((name) => fs.readFileSync(path.join(traceDir, name), 'utf8').split('\n'))
          .filter((line) => line.includes('"FAIL_SITE"'));
      expect(failures(2)).toEqual([]);
      expect(failures(1)).toHaveLength(1);
      expect(JSON.parse(failures(1)[0] as string)).toMatchObject({ action: { type: 'FAIL_SITE', site: 1 }, view: { sites: { 1: { mode: 'failed' } } } });
    } finally {
      fs.rmSync(traceDir, { recursive: true, force: true });
    }
  });

  it('a full journal device at site 3 detaches it during a pull: it fails, says why, and its trace records FAIL_SITE at that instant', async () => {
    const traceDir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-detach-trace-'));
    try {
      // Its remote state file is on the same full device: saving it fails too (as it did in the nemesis, where
      // the link's down notice, which saves it, once aborted the detach and left site 3 up).
      let full = false;
      const d = deploy('keepWriting', 64, {}, volumeBytes, traceDir, () => {
        if (full) throw enospc('state');
      });
      const { nodes } = d;
      await nodes[1].hostWrite(0, 0, block(1));
      await d.catchUp();
      await nodes[1].hostWrite(0, blockBytes, block(2));
      full = true;
      failAt(nodes[3].site.journal, 'appendAll', 1, enospc('journal'));
      failAt(nodes[3].site.journal, 'append', 1, enospc('journal'));
      nodes[3].onPullTimer();
      await settle();
      expect(nodes[3].status(false)).toMatchObject({ up: false, fault: { device: 'journal', errno: 'ENOSPC' } });
      // Off the network on both links: its peers see site 3 gone.
      expect(nodes[1].status(false).connected).not.toContain(3);
      expect(nodes[2].status(false).connected).not.toContain(3);
      for (const node of Object.values(nodes)) node.close();
      const log = fs.readdirSync(traceDir).find((name) => name.startsWith('site-3-')) as string;
      const actions = fs.readFileSync(path.join(traceDir, log), 'utf8')
        .split('\n')
        .filter((line) => line.includes('"action"'))
        .map((line) => (JSON.parse(line) as { action: { type: string; site?: number }; view: { sites: Record<string, { mode: string }> } }));
      const failed = actions.filter((a) => a.action.type === 'FAIL_SITE');
      expect(failed).toHaveLength(1);
      expect(failed[0]).toMatchObject({ action: { type: 'FAIL_SITE', site: 3 }, view: { sites: { 3: { mode: 'failed' } } } });
      // The pull that met the full device is not recorded: only the first one, before it.
      expect(actions.filter((a) => a.action.type === 'PULL_JOURNAL')).toHaveLength(1);
    } finally {
      fs.rmSync(traceDir, { recursive: true, force: true });
    }
  });
});

describe('back-pressure: a full link to the secondary holds host writes, it never breaks the pair', () => {
  it('writes wait while the link holds more than its high-water mark, then go in order once it drains, every one in sync', async () => {
    const d = deploy('keepWriting', 64, { peerQueueBytesHigh: 2 * blockBytes });
    const { nodes, net } = d;
    net.held.add('1>2'); // site 2 reads nothing for now: the link from site 1 fills
    const writes = Array.from({ length: 8 }, (_, k) => nodes[1].hostWrite(0, (k % 8) * blockBytes, block(0x40 + k)));
    await settle();
    const held = nodes[1].status(false);
    // Two writes went (a frame is a block plus its header: two fill the 2-block mark); the other six wait.
    expect(held.inFlightWrites).toBe(2);
    expect(held.queuedWrites).toBe(6);
    expect(held.syncPair).toBe('inSync');
    expect(net.log.filter((line) => line.includes('disconnects'))).toEqual([]);
    // The receiver catches up: the answers drain the queue, and every write is acknowledged in sync, in order.
    net.held.delete('1>2');
    net.deliverAll();
    const results = await Promise.all(writes);
    expect(results.map((r) => r.updateNumber)).toEqual([1, 2, 3, 4, 5, 6, 7, 8]);
    expect(results.every((r) => !r.alone)).toBe(true);
    expect(nodes[1].status(false)).toMatchObject({ syncPair: 'inSync', ackedAlone: 0, queuedWrites: 0 });
    expect(nodes[2].site.last).toBe(8);
    expect(nodes[2].site.read(0, 7 * blockBytes, blockBytes)).toEqual(block(0x47));
  });

  it('a link that stays full past the answer timeout is rule R1 (no answer), not the size of a queue', async () => {
    const d = deploy('keepWriting', 64, { peerQueueBytesHigh: 2 * blockBytes });
    const { nodes, net } = d;
    net.held.add('1>2');
    const writes = Array.from({ length: 4 }, (_, k) => nodes[1].hostWrite(0, k * blockBytes, block(k + 1)));
    await settle();
    nodes[1].onTick(0);
    nodes[1].onTick(500);
    expect(nodes[1].status(false).syncPair).toBe('inSync');
    nodes[1].onTick(1501); // answerTimeoutMs 1000: the first writes were never answered
    const results = await Promise.all(writes);
    // R1 suspended the pair (the link came back at once, so it is already resyncing), and said why.
    expect(nodes[1].status(false).syncPair).not.toBe('inSync');
    expect(net.log.some((line) => line.includes('was not answered within 1000 ms'))).toBe(true);
    // keepWriting: acknowledged on site 1 alone and recorded as such (P1's exposure, never hidden).
    expect(results.every((r) => r.alone)).toBe(true);
    expect(nodes[1].status(false).ackedAlone).toBe(4);
  });
});

describe('journal inflow control (UR inflow control, SRDF/A write pacing)', () => {
  /** Site 1 with a journal of 10 entries (high water at 8) whose entries site 3 has not pulled. */
  async function pastHighWater(inflow: Partial<NodeConfig>): Promise<Deployment> {
    const d = deploy('keepWriting', 10, inflow);
    d.nodes[1].onTick(0);
    for (let k = 0; k < 8; k += 1) await d.nodes[1].hostWrite(0, k * blockBytes, block(k + 1));
    expect(d.nodes[1].status(false).journal.highWater).toBe(true);
    return d;
  }

  it('past the journal high-water mark with site 3 reachable, each host write waits its delay, and no longer; the delays are counted', async () => {
    const d = await pastHighWater({ inflowControl: { delayMs: 100 } });
    const { nodes } = d;
    let done = false;
    const paced = nodes[1].hostWrite(0, 0, block(0x99)).then((result) => {
      done = true;
      return result;
    });
    await settle();
    expect(done).toBe(false);
    expect(nodes[1].status(false).queuedWrites).toBe(1);
    nodes[1].onTick(50);
    await settle();
    expect(done).toBe(false);
    nodes[1].onTick(100);
    expect(await paced).toEqual({ updateNumber: 9, alone: false });
    expect(nodes[1].status(false).inflow).toEqual({ delayMs: 100, delayedWrites: 1, delayMsTotal: 100 });
  });

  it('does not delay when site 3 is unreachable (there is no one to keep up with), nor when it is off', async () => {
    const cut = await pastHighWater({ inflowControl: { delayMs: 100 } });
    cut.net.change(() => cut.net.cut.add('1-3'));
    expect(await cut.nodes[1].hostWrite(0, 0, block(0x99))).toEqual({ updateNumber: 9, alone: false });
    expect(cut.nodes[1].status(false).inflow).toMatchObject({ delayedWrites: 0 });
    const off = await pastHighWater({});
    expect(await off.nodes[1].hostWrite(0, 0, block(0x99))).toEqual({ updateNumber: 9, alone: false });
    expect(off.nodes[1].status(false).inflow).toBeNull();
  });
});

describe('site nodes: epochs', () => {
  it('a primary cut off by a partition learns at the heal the promotion its peers announce, is deposed, and its old-epoch write is refused', async () => {
    const d = deploy('refuse');
    const { nodes, operator, net } = d;
    expect(await nodes[1].hostWrite(0, 0, block(1))).toEqual({ updateNumber: 1, alone: false });
    // Site 1 takes a write and sends it; the frame is still on its way (held here) when a partition cuts site 1
    // off from sites 2 and 3 and from the operator. Under fence policy refuse the write is never acknowledged.
    const inFlight = nodes[1].hostWrite(0, blockBytes, block(2)).then(
      () => null,
      (error: unknown) => error,
    );
    const held = net.queue.splice(0);
    expect(held.map((frame) => frame.from)).toEqual([1]);
    d.crashed.add(1);
    net.change(() => {
      net.cut.add('1-2');
      net.cut.add('1-3');
    });
    expect(await inFlight).toMatchObject({ code: 'NotWritable' });
    // Sites 2 and 3 both see site 1 down: the operator fails over to site 2 (epoch 2).
    await operator.failover(false);
    await settle();
    // The partition heals: each end of a link that comes up tells the other its epoch. Site 1 learns it was deposed.
    net.change(() => {
      net.cut.delete('1-2');
      net.cut.delete('1-3');
    });
    await settle();
    expect(nodes[1].site.deposedBy).toBe(2);
    expect(() => nodes[1].hostWrite(0, 0, block(3))).toThrow(/deposed: epoch 2/);
    expect(nodes[1].acceptsHostWrites()).toBe(false);
    expect(nodes[1].status(false)).toMatchObject({ epoch: 2, deposedBy: 2, role: 'secondary' });
    // The old-epoch sync write arrives at last: refused by epoch, nothing journaled, counted, answered.
    const last = nodes[2].site.last;
    net.queue.push(...held);
    net.deliverAll();
    expect(nodes[2].site.last).toBe(last);
    // Two refused: site 1's own epoch notice at the heal (epoch 1), and the held sync write.
    expect(nodes[2].status(false).staleEpochRefused).toBe(2);
    expect(net.log.join('\n')).toMatch(/site 2: site 2 refuses syncWrite from site 1: its epoch 1 is lower than 2: nothing of it applied; answered with epoch 2/);
    // An operator step with an epoch lower than a site's is refused (the operator's view was stale).
    await expect(operator.clients[2].setRole('primary', 'suspended', false, 1)).rejects.toMatchObject({ code: 'NotAllowed' });
    await expect(operator.clients[3].attach(2, 'copying', null, 1)).rejects.toMatchObject({ code: 'NotAllowed' });
    // The operator's ordinary steps bring site 1 back: fail, recover (with the epoch), resync.
    d.crashed.delete(1);
    await operator.fail(1);
    await operator.recover(1);
    expect(nodes[1].site.deposedBy).toBeNull();
    await operator.resync(1);
    expect(nodes[1].site.digest()).toBe(nodes[2].site.digest());
    expect([1, 2, 3].map((id) => nodes[id as SiteId].site.epoch)).toEqual([2, 2, 2]);
  });
});

describe('each step checked by the site against what it sees (issue 14)', () => {
  it('site 2 refuses the primary role while connected to an unfenced primary site 1, in sync or not, and changes nothing', async () => {
    const d = deploy();
    await d.nodes[1].hostWrite(0, 0, block(1));
    const direct = localClient(() => d.nodes[2]);
    const error = await direct.setRole('primary', 'suspended', true, 2).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(PeerPrimaryError);
    expect(error).toMatchObject({ code: 'NotAllowed', site: 2, peer: 1, syncPair: 'inSync', reason: 'peerIsPrimary' });
    expect((error as Error).message).toContain('site 1, in sync with it, says it is an unfenced primary');
    expect(d.nodes[2].site.role).toBe('secondary');
    expect(d.nodes[2].site.syncPair).toBe('inSync');
    expect(d.nodes[2].site.takeover).toBeNull();
    // Out of sync (the link was cut and is back: resyncing), site 1 still takes host writes: refused too.
    d.net.change(() => d.net.cut.add('1-2'));
    await d.nodes[1].hostWrite(0, 0, block(2));
    d.net.change(() => d.net.cut.delete('1-2'));
    await expect(direct.setRole('primary', 'suspended', false, 2)).rejects.toMatchObject({ reason: 'peerIsPrimary', syncPair: 'resyncing' });
    // A peer it cannot ask is not taken for a failed one.
    d.net.unaskable.add(1);
    await expect(direct.setRole('primary', 'suspended', false, 2)).rejects.toMatchObject({ reason: 'peerNotAsked' });
    expect(d.nodes[2].site.role).toBe('secondary');
  });

  it('a fenced site 1, or one site 2 no longer reaches, lets site 2 take the primary role', async () => {
    const d = deploy();
    await d.operator.fence(1);
    await localClient(() => d.nodes[2]).setRole('primary', 'suspended', false, 2);
    expect(d.nodes[2].site.role).toBe('primary');
    const e = deploy();
    crash(e, 1);
    await localClient(() => e.nodes[2]).setRole('primary', 'suspended', true, 2);
    expect(e.nodes[2].site.role).toBe('primary');
  });

  it('no step declares a pair in sync that is not: only a resync does (P6)', async () => {
    const d = deploy();
    d.net.change(() => d.net.cut.add('1-2'));
    await d.nodes[1].hostWrite(0, 0, block(9)); // on site 1 alone
    d.net.change(() => d.net.cut.delete('1-2'));
    expect(d.nodes[2].site.syncPair).toBe('resyncing');
    const two = localClient(() => d.nodes[2]);
    for (const pair of ['inSync', 'reversed', 'resyncing'] as const) {
      await expect(two.setRole('secondary', pair, false, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
    }
    expect(d.nodes[2].site.syncPair).toBe('resyncing');
    await d.operator.resync(2);
    expect(d.nodes[2].site.syncPair).toBe('inSync');
    // In sync, a step may hand the pair over (what failback does) or suspend it.
    await two.setRole('secondary', 'reversed', false, 2);
    expect(d.nodes[2].site.syncPair).toBe('reversed');
  });

  it('recovery does not promote: a sync member that was secondary refuses to come back as primary', async () => {
    const d = deploy();
    await d.operator.fail(2);
    await expect(localClient(() => d.nodes[2]).recover(2, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
    expect(d.nodes[2].site.up).toBe(false);
    await localClient(() => d.nodes[2]).recover(1, 2);
    expect(d.nodes[2].site.role).toBe('secondary');
  });

  it('site 3 takes a source and records a judgement only with the verdict that source sent it', async () => {
    const d = deploy();
    const three = localClient(() => d.nodes[3]);
    const made = { verdict: 'noUpdateRequired' as const, remoteReceived: 0, sourceLast: 0, forced: false };
    // No verdict received: an attach to site 2 is refused (it would skip the judge, claim 18).
    await expect(three.attach(2, 'copying', made, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
    await expect(three.recordJudgement(made)).rejects.toMatchObject({ code: 'NotAllowed' });
    await d.operator.fence(1);
    const judged = await three.judge(2, 'failover');
    // A verdict other than the one received, or an async pair the verdict does not make: refused.
    await expect(three.attach(2, 'copying', { ...judged, remoteReceived: judged.remoteReceived + 1, forced: false }, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
    await expect(three.attach(1, 'copying', { ...judged, forced: false }, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
    await expect(three.attach(2, 'fullCopy', { ...judged, forced: false }, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
    expect(d.nodes[3].site.source).toBe(1);
    await three.attach(2, 'copying', { ...judged, forced: false }, 2);
    expect(d.nodes[3].site.source).toBe(2);
    // Used once: the same verdict does not attach again.
    await expect(three.attach(2, 'copying', { ...judged, forced: false }, 2)).rejects.toMatchObject({ code: 'NotAllowed' });
  });
});

describe('who decides that site 1 is down (issue 14)', () => {
  /** Site 1's control port does not answer the operator, though site 1 still runs and is connected. */
  function silence(d: Deployment, id: SiteId): void {
    d.crashed.add(id);
  }

  it('failover is refused while site 1 does not answer but sites 2 and 3 still see it; the refusal names them', async () => {
    const d = deploy();
    silence(d, 1);
    const error = await d.operator.failover(false).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(SiteOneStillSeenError);
    expect(error).toMatchObject({ code: 'NotAllowed', seenBy: [2, 3], notAsked: [] });
    expect((error as Error).message).toContain('site 2 and site 3 still see site 1');
    expect(d.nodes[2].site.role).toBe('secondary');
    expect(d.nodes[1].acceptsHostWrites()).toBe(true);
    // One witness still sees it: refused, naming that one.
    d.net.change(() => d.net.cut.add('1-2'));
    await expect(d.operator.failover(false)).rejects.toMatchObject({ seenBy: [3], notAsked: [] });
  });

  it('failover is refused while site 1 and site 3 do not answer (site 3 cannot tell), unless forced', async () => {
    const d = deploy();
    crash(d, 1);
    silence(d, 3);
    await expect(d.operator.failover(false)).rejects.toMatchObject({ seenBy: [], notAsked: [3] });
    expect(d.nodes[2].site.role).toBe('secondary');
    await d.operator.failover(true);
    expect(d.nodes[2].site.role).toBe('primary');
  });

  it('forced, the operator is still refused by site 2 while site 2 is connected to site 1, an unfenced primary', async () => {
    const d = deploy();
    silence(d, 1);
    await expect(d.operator.failover(true)).rejects.toMatchObject({ code: 'NotAllowed', reason: 'peerIsPrimary' });
    expect(d.nodes[2].site.role).toBe('secondary');
  });

  it('failover goes ahead when sites 2 and 3 both see site 1 down, or site 1 answers that it is failed', async () => {
    const d = deploy();
    crash(d, 1);
    await d.operator.failover(false);
    expect((await d.operator.status()).primary).toBe(2);
    const e = deploy();
    await e.operator.fail(1);
    await e.operator.fail(3);
    await e.operator.failover(false);
    expect((await e.operator.status()).primary).toBe(2);
  });
});

describe('the limits of host writes that wait at a node', () => {
  it('inflowControl.delayMs is taken from 1 to inflowDelayMsMax and refused beyond, naming the field', () => {
    const base = localDeploymentConfig({ cluster: 'limits', dir: '/tmp/limits', basePort: 20000 });
    const validate = (inflowControl: unknown) => validateDeploymentConfig({ ...base, inflowControl }, '/tmp/limits');
    expect(validate({ delayMs: 1 }).inflowControl).toEqual({ delayMs: 1 });
    expect(validate({ delayMs: inflowDelayMsMax }).inflowControl).toEqual({ delayMs: inflowDelayMsMax });
    expect(validate(undefined).inflowControl).toBeNull();
    for (const bad of [{ delayMs: 0 }, { delayMs: inflowDelayMsMax + 1 }, { delayMs: 1.5 }, {}, 20, [20]]) {
      expect(() => validate(bad), JSON.stringify(bad)).toThrow(/inflowControl/);
    }
  });

  it('holds exactly queuedHostWritesMax waiting writes; one more is refused at once (inFlightWritesMax), none dropped', async () => {
    const d = deploy('keepWriting', 64);
    const { nodes, net } = d;
    net.held.add('1>2'); // no answer comes back: the 16 writes in flight stay, the rest wait
    const writes = Array.from({ length: 16 + queuedHostWritesMax + 1 }, (_, k) =>
      nodes[1].hostWrite(0, (k % 8) * blockBytes, block(k % 251)).then(
        () => 'acknowledged',
        (error: unknown) => (error as RefusalError).code,
      ),
    );
    await settle();
    expect(nodes[1].status(false)).toMatchObject({ inFlightWrites: 16, queuedWrites: queuedHostWritesMax });
    expect(await writes.at(-1)).toBe('NotWritable');
    net.held.delete('1>2');
    net.deliverAll();
    const outcomes = await Promise.all(writes.slice(0, -1));
    expect(outcomes.filter((outcome) => outcome !== 'acknowledged')).toEqual([]);
  }, 120_000);
});

describe('durability on request: a host flush is answered after both sync members fsynced (issue 15)', () => {
  /** Whether a promise has settled yet (after the frames and promise reactions due now have run). */
  async function settled(promise: Promise<unknown>): Promise<boolean> {
    let done = false;
    void promise.then(
      () => (done = true),
      () => (done = true),
    );
    await settle();
    return done;
  }

  it("a FLUSH at the primary waits for site 2's fsync and answer; site 2's count of flushes made durable moves with it", async () => {
    const d = deploy('keepWriting');
    const { nodes, net } = d;
    await nodes[1].hostWrite(0, 0, block(1));
    net.held.add('1>2'); // site 2 has not read the request yet
    const flush = nodes[1].flush();
    expect(await settled(flush)).toBe(false);
    expect(nodes[1].status(false).flushes).toEqual({ host: 0, forPeer: 0, waiting: 1 });
    expect(nodes[2].status(false).flushes.forPeer).toBe(0);
    net.held.delete('1>2');
    net.deliverAll();
    expect(await flush).toEqual({ alone: false });
    expect(nodes[2].status(false).flushes.forPeer).toBe(1);
    expect(nodes[1].status(false).flushes).toEqual({ host: 1, forPeer: 0, waiting: 0 });
    // A flush at a site that is not the primary is its own fsync alone.
    expect(await nodes[3].flush()).toEqual({ alone: true });
  });

  for (const policy of ['keepWriting', 'refuse'] as const) {
    it(`${policy}: a flush site 2 never answers is bounded by the answer timeout, which suspends the pair (R1); then it is decided by fence policy`, async () => {
      const d = deploy(policy);
      const { nodes, net } = d;
      await nodes[1].hostWrite(0, 0, block(1));
      net.held.add('1>2');
      nodes[1].onTick(0);
      const flush = nodes[1].flush().then(
        (result) => result,
        (error: unknown) => error,
      );
      nodes[1].onTick(900);
      expect(await settled(flush)).toBe(false);
      expect(nodes[1].status(false).syncPair).toBe('inSync');
      nodes[1].onTick(1001); // answerTimeoutMs 1000
      const outcome = await flush;
      expect(net.log.some((line) => line.includes('a flush was not answered within 1000 ms'))).toBe(true);
      expect(nodes[1].status(false).syncPair).not.toBe('inSync');
      if (policy === 'keepWriting') expect(outcome).toEqual({ alone: true });
      else expect(outcome).toMatchObject({ name: 'NotDurableError', reason: 'fencePolicy' });
      expect(nodes[1].status(false).flushes.waiting).toBe(0);
      net.held.delete('1>2');
    });
  }

  it('with no link to site 2 a flush suspends the pair first (R1): durable at site 1 alone under keepWriting, refused under refuse', async () => {
    for (const policy of ['keepWriting', 'refuse'] as const) {
      const d = deploy(policy);
      d.net.online.set(2, false); // site 2 gone without its peers being told yet
      const outcome = await d.nodes[1].flush().then(
        (result) => result,
        (error: unknown) => error,
      );
      if (policy === 'keepWriting') expect(outcome).toEqual({ alone: true });
      else expect(outcome).toBeInstanceOf(NotDurableError);
    }
  });

  it("a device error at site 1's own fsync fails the flush with it, even when site 1 alone was to answer; never resolved as durable", async () => {
    const d = deploy('keepWriting');
    const { nodes, net } = d;
    net.change(() => net.cut.add('1-2'));
    const journal = nodes[1].site.journal;
    journal.flush = () => {
      throw new DeviceError('journal', 'journal/segment-1', 'flush', 'EIO', new Error('input/output error'));
    };
    await expect(nodes[1].flush()).rejects.toMatchObject({ name: 'StorageFaultError', fault: { errno: 'EIO' } });
    expect(nodes[1].status(false)).toMatchObject({ up: false, fault: { operation: 'flush' } });
    await expect(nodes[1].flush()).rejects.toBeInstanceOf(StorageFaultError);
  });
});

describe('online verify (site-verify.ts): each chunk compared at one update number at every site', () => {
  /** Blocks of both volumes. */
  const allBlocks = (volumeCount * volumeBytes) / blockBytes;

  it("site 3, lagging, hashes the chunk at the marker's update number: the entries it pulled after it change nothing", async () => {
    const d = deploy();
    const { nodes, operator } = d;
    for (let i = 0; i < 3; i += 1) await nodes[1].hostWrite(0, i * blockBytes, block(i + 1));
    await d.catchUp();
    await nodes[1].hostWrite(0, 0, block(40));
    nodes[3].onPullTimer();
    await settle();
    await nodes[1].hostWrite(1, blockBytes, block(50));
    const verifying = operator.verify({ deadlineMs: 10_000 });
    await settle();
    // Both chunks (a volume each) at u=5; site 2 answered at once, site 3 has received only 4.
    expect(nodes[3].status(false).verify.markersPending).toBe(2);
    // Writes after the verify's point overwrite the verified blocks; site 3 pulls them with u=4 and u=5.
    await nodes[1].hostWrite(0, 0, block(60));
    await nodes[1].hostWrite(1, blockBytes, block(70));
    nodes[3].onPullTimer();
    await settle();
    expect([nodes[3].site.received, nodes[3].site.restored]).toEqual([7, 3]);
    const { result } = await verifying;
    expect(result.outcome).toBe('equal');
    expect(result.sites[0]).toMatchObject({ site: 2, updateNumbers: { first: 5, last: 5 }, blocksCompared: allBlocks, blocksDiffering: 0, blocksNotVerified: 0 });
    expect(result.sites[1]).toMatchObject({ site: 3, updateNumbers: { first: 5, last: 5 }, blocksCompared: allBlocks, blocksDiffering: 0, blocksNotVerified: 0 });
    expect(nodes[3].status(false).verify).toMatchObject({ hashed: { verifyId: 1, updateNumber: 5, chunks: 2 }, markersPending: 0 });
    expect(nodes[1].status(false).verify.last?.outcome).toBe('equal');
  });

  it('a byte changed behind the backs of site 2 and site 3 is found by volume and offset; resync repairs site 2, a full copy site 3; a new verify finds none', async () => {
    const d = deploy();
    const { nodes, operator } = d;
    for (let i = 0; i < 6; i += 1) await nodes[1].hostWrite(i % 2, i * blockBytes, block(i + 1));
    await d.catchUp();
    nodes[2].site.volumes[1]!.write(3 * blockBytes + 7, new Uint8Array([0xee]));
    nodes[3].site.volumes[0]!.write(volumeBytes - 1, new Uint8Array([0xee]));
    const found = await operator.verify();
    expect(found.result.outcome).toBe('differ');
    expect(found.result.sites[0]).toMatchObject({ site: 2, blocksCompared: allBlocks, blocksDiffering: 1, differing: [{ volume: 1, offset: 3 * blockBytes }] });
    expect(found.result.sites[1]).toMatchObject({ site: 3, blocksCompared: allBlocks, blocksDiffering: 1, differing: [{ volume: 0, offset: volumeBytes - blockBytes }] });
    // The repairs it started: site 2's block in site 1's changed-block record, site 3 needing a full copy.
    expect(found.site3NeedsFullCopy).toBe(true);
    expect(nodes[1].site.changed.count).toBe(1);
    expect(nodes[3].asyncPair).toBe('fullCopy');
    expect(nodes[1].site.syncPair).toBe('inSync');

    await operator.resync(2);
    expect([nodes[1].site.syncPair, nodes[2].site.syncPair, nodes[1].site.changed.count]).toEqual(['inSync', 'inSync', 0]);
    // Site 3 waits for its full copy: its blocks are not verified, and the verify does not say equal.
    const between = await operator.verify();
    expect(between.result.outcome).toBe('notVerified');
    expect(between.result.sites[0]).toMatchObject({ blocksDiffering: 0, blocksNotVerified: 0 });
    expect(between.result.sites[1]).toMatchObject({ blocksCompared: 0, blocksNotVerified: allBlocks, notVerifiedReason: "site 3: site 3's async pair is fullCopy, not copying" });

    await operator.resync(3);
    expect(nodes[3].asyncPair).toBe('copying');
    const again = await operator.verify();
    expect(again.result.outcome).toBe('equal');
    expect(again.site3NeedsFullCopy).toBe(false);
    expect(new Set([1, 2, 3].map((id) => nodes[id as SiteId].site.digest())).size).toBe(1);
    expect(nodes[1].verifyResults.map((r) => r.outcome)).toEqual(['differ', 'notVerified', 'equal']);
  });

  it('blocks a site cannot hash are not verified, never equal: site 3 failed, the sync pair suspended, no answer by the deadline', async () => {
    const d = deploy();
    const { nodes, operator } = d;
    await nodes[1].hostWrite(0, 0, block(1));
    await operator.fail(3);
    const failed = (await operator.verify()).result;
    expect(failed.outcome).toBe('notVerified');
    expect(failed.sites[0]).toMatchObject({ blocksCompared: allBlocks, blocksNotVerified: 0 });
    expect(failed.sites[1]).toMatchObject({ blocksCompared: 0, blocksNotVerified: allBlocks, notVerifiedReason: 'site 3 is not connected to site 1' });

    await operator.setLinkCut(1, 2, true);
    const suspended = (await operator.verify()).result;
    expect(suspended.sites[0]).toMatchObject({ blocksCompared: 0, blocksNotVerified: allBlocks, notVerifiedReason: 'the sync pair is suspended: site 2 is not in sync' });
    await operator.setLinkCut(1, 2, false);
    await operator.resync(2);

    // Site 2's answers never arrive: at the deadline (the node's clock) its blocks are not verified.
    nodes[1].onTick(1000);
    d.net.held.add('2>1');
    const verifying = operator.verify({ deadlineMs: 100 });
    await settle();
    nodes[1].onTick(1050);
    await settle();
    expect(nodes[1].status(false).verify.running).toBe(true);
    nodes[1].onTick(1101);
    const late = (await verifying).result;
    expect(late.outcome).toBe('notVerified');
    expect(late.sites[0]).toMatchObject({ blocksCompared: 0, blocksNotVerified: allBlocks, notVerifiedReason: "site 2 did not answer within the verify's deadline" });
  });

  it(`the primary waits for its secondary's answers with verifyChunksInFlightMax (${verifyChunksInFlightMax}) chunks unanswered, then goes on`, async () => {
    const d = deploy('keepWriting', 64, {}, 3 * verifyChunkBytesMax);
    d.net.held.add('2>1');
    const verifying = d.operator.verify();
    await settle();
    const answersHeld = d.net.queue.filter((frame) => frame.from === 2 && frame.to === 1).map((frame) => decodeMessage(frame.payload).kind);
    expect(answersHeld).toEqual(Array.from({ length: verifyChunksInFlightMax }, () => 'verifyDigests'));
    d.net.held.delete('2>1');
    d.net.deliverAll();
    const { result } = await verifying;
    expect(result.outcome).toBe('equal');
    expect(result.blocks).toBe((2 * 3 * verifyChunkBytesMax) / blockBytes);
    expect(result.sites.map((site) => site.blocksCompared)).toEqual([result.blocks, result.blocks]);
  });

  it(`site 3 holds verifyMarkersPendingMax (${verifyMarkersPendingMax}) markers it has not reached; one more is answered at once, not verified, naming the bound`, async () => {
    const d = deploy();
    d.net.held.add('3>1');
    const marker = (updateNumber: number): Uint8Array => encodeMessage({ kind: 'verifyMarker', epoch: 1, verifyId: 9, volume: 0, offset: 0, length: volumeBytes, updateNumber });
    for (let i = 1; i <= verifyMarkersPendingMax + 1; i += 1) d.nodes[3].onFrame(1, marker(100 + i));
    expect(d.nodes[3].status(false).verify.markersPending).toBe(verifyMarkersPendingMax);
    const answers = d.net.queue.filter((frame) => frame.from === 3 && frame.to === 1).map((frame) => decodeMessage(frame.payload) as Extract<Message, { kind: 'verifyDigests' }>);
    expect(answers.map((a) => [a.updateNumber, a.digests.length, a.reason])).toEqual([[100 + verifyMarkersPendingMax + 1, 0, expect.stringMatching(/verifyMarkersPendingMax/)]]);
    // A marker for a range outside the volumes is malformed: the peer is disconnected.
    d.nodes[3].onFrame(1, encodeMessage({ kind: 'verifyMarker', epoch: 1, verifyId: 9, volume: 0, offset: volumeBytes, length: blockBytes, updateNumber: 200 }));
    expect(d.net.log.join('\n')).toMatch(/site 3 disconnects 1: malformed message from site 1: malformed message: verifyMarker.offset/);
  });

  it(`is refused where it cannot run, with its arguments checked at their bounds; the primary keeps its last verifyResultsKept (${verifyResultsKept}) results`, async () => {
    const d = deploy();
    const { nodes, operator } = d;
    const one = operator.clients[1];
    await expect(operator.clients[2].verify(null, 1000, 0)).rejects.toThrow(/verify not allowed: site 2 is not the primary/);
    await expect(operator.clients[3].verify(null, 1000, 0)).rejects.toThrow(/site 3 is not a sync member/);
    await expect(one.verify([volumeCount], 1000, 0)).rejects.toThrow(/verify: invalid volumes \[2\]/);
    await expect(one.verify([], 1000, 0)).rejects.toThrow(/invalid volumes/);
    await expect(one.verify('0' as never, 1000, 0)).rejects.toThrow(/verify: invalid volumes "0"/);
    await expect(one.verify(null, 0, 0)).rejects.toThrow(/invalid deadlineMs 0/);
    await expect(one.verify(null, verifyDeadlineMsMax + 1, 0)).rejects.toThrow(/invalid deadlineMs/);
    expect((await one.verify([1, 1], verifyDeadlineMsMax, 0)).volumes).toEqual([1]);
    await expect(operator.clients[3].requireFullCopy(0)).rejects.toThrow(/invalid verifyId 0/);
    await expect(operator.clients[1].requireFullCopy(1)).rejects.toThrow(/only site 3 does this/);
    const running = one.verify(null, 1000, 0);
    await expect(one.verify(null, 1000, 0)).rejects.toThrow(/verify 2 is under way/);
    await running;
    for (let i = 0; i < verifyResultsKept; i += 1) await one.verify(null, 1000, 0);
    expect(nodes[1].verifyResults.map((result) => result.verifyId)).toEqual(Array.from({ length: verifyResultsKept }, (_, i) => i + 3));
    await operator.fail(1);
    await expect(one.verify(null, 1000, 0)).rejects.toThrow(/verify: site 1 is failed/);
  });
});
