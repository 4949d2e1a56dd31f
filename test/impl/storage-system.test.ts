/**
 * One storage system driven directly, without a cluster, message by message: how a source cuts the batches
 * of a pull, a delta resync and a block copy (by the requester's entry and byte room and by the wire's batch
 * limits, never a part of an entry, always progress); host writes in batches at the primary and the
 * secondary (one journal write, one answer, the overflow rule, site 3's progress learned and never lowered);
 * what a failing primary does with its writes in flight; the refusals a source sends when its journal no
 * longer covers site 3; malformed copy and resync messages; when the site makes its journal and volumes
 * durable (flushEachWrite); who must make a host's flush durable before it is answered (both sync members
 * when the pair is in sync, by fence policy otherwise); and when it saves its durable state (exactly when it
 * changes).
 */

import { describe, expect, it } from 'vitest';
import { MalformedMessageError, NotDurableError, OutOfOrderError, SiteFailedError, UnexpectedMessageError } from '../../impl/core/errors.ts';
import { entryBytes, MemoryJournal, type JournalLimits } from '../../impl/core/journal.ts';
import {
  batchBytesMax,
  type CopyBlocksMessage,
  type DeltaResyncEntriesMessage,
  type Message,
  type PullEntriesMessage,
  type SyncWriteBatchMessage,
} from '../../impl/core/messages.ts';
import { flushesWaitingMax, StorageSystem, type SiteConfig, type SiteDurableState, type SiteEnvelope, type SiteId, type SiteNote } from '../../impl/core/storage-system.ts';
import { MemoryVolume } from '../../impl/core/volume.ts';

const blockBytes = 4096;

/** A memory journal that counts its flushes (what flushEachWrite asks for). */
class CountingJournal extends MemoryJournal {
  flushes = 0;
  override flush(): void {
    this.flushes += 1;
    super.flush();
  }
}

/** A memory volume that counts its flushes. */
class CountingVolume extends MemoryVolume {
  flushes = 0;
  override flush(): void {
    this.flushes += 1;
    super.flush();
  }
}

interface SiteOptions {
  saves?: SiteDurableState[];
  journal?: JournalLimits;
  volumeCount?: number;
  flushEachWrite?: boolean;
  fencePolicy?: 'refuse' | 'keepWriting';
}

/** A site over memory: `volumeCount` volumes (1) of `volumeBytes`, a journal of 64 entries and 64 MiB unless given. */
function makeSite(id: SiteId, volumeBytes: number, options: SiteOptions = {}): StorageSystem {
  const { saves = null, journal = { entriesMax: 64, bytesMax: 64 * 1024 * 1024 }, volumeCount = 1, flushEachWrite = false, fencePolicy = 'keepWriting' } = options;
  const config: SiteConfig = { id, volumeCount, volumeBytes, blockBytes, fencePolicy, inFlightWritesMax: 16, flushEachWrite };
  const volumes = Array.from({ length: volumeCount }, () => new CountingVolume(volumeBytes, blockBytes));
  const save = saves === null ? null : (state: SiteDurableState) => saves.push(state);
  return new StorageSystem(config, volumes, new CountingJournal(journal), null, save);
}

const filled = (bytes: number, value: number): Uint8Array => new Uint8Array(bytes).fill(value);

/** Delivers every envelope of `send` addressed to one of `sites`, and what they answer, until none is left; returns the notes. */
function exchange(sites: StorageSystem[], send: readonly SiteEnvelope[]): SiteEnvelope['message']['kind'][] {
  const queue = [...send];
  const kinds: SiteEnvelope['message']['kind'][] = [];
  for (let envelope = queue.shift(); envelope !== undefined; envelope = queue.shift()) {
    const to = sites.find((site) => site.id === envelope.to);
    if (to === undefined) throw new Error(`no site ${envelope.to}`);
    kinds.push(envelope.message.kind);
    queue.push(...to.handle(envelope).send);
  }
  return kinds;
}

/**
 * A primary whose pair is suspended (so each write is acknowledged at once, none in flight) holding
 * `count` writes of `dataBytes` bytes each, at consecutive offsets of its one volume.
 */
function sourceWith(count: number, dataBytes: number, journal?: JournalLimits): StorageSystem {
  const site = makeSite(1, Math.max(1, Math.ceil((count * dataBytes) / blockBytes)) * blockBytes, { journal });
  site.setSyncPair('suspended');
  for (let i = 0; i < count; i += 1) {
    const notes = site.hostWrite(i + 1, 0, i * dataBytes, new Uint8Array(dataBytes).fill(i + 1)).notes;
    expect(notes.filter((note) => note.kind === 'hostWriteAcked')).toEqual([{ kind: 'hostWriteAcked', writeId: i + 1, updateNumber: i + 1, alone: true }]);
  }
  return site;
}

/** The one message a handler sent, of the expected kind. */
function sent<K extends Message['kind']>(site: StorageSystem, message: Message, kind: K): Extract<Message, { kind: K }> {
  const { send } = site.handle({ from: 3, to: site.id, message });
  expect(send).toHaveLength(1);
  expect(send[0]?.message.kind).toBe(kind);
  return send[0]?.message as Extract<Message, { kind: K }>;
}

/** The update numbers a pull with this room receives from `source` (site 3 received and restored nothing). */
function pulled(source: StorageSystem, entriesMax: number, bytesMax: number): number[] {
  const answer: PullEntriesMessage = sent(source, { kind: 'pullRequest', epoch: 1, received: 0, restored: 0, entriesMax, bytesMax }, 'pullEntries');
  return answer.entries.map((entry) => entry.updateNumber);
}

/** The sizes of the batches of a whole delta resync from `source` with this room, and each batch's `final`. */
function deltaBatches(source: StorageSystem, entriesMax: number, bytesMax: number): { sizes: number[]; finals: boolean[] } {
  const sizes: number[] = [];
  const finals: boolean[] = [];
  let batch: DeltaResyncEntriesMessage = sent(source, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax, bytesMax }, 'deltaResyncEntries');
  let received = 0;
  for (;;) {
    sizes.push(batch.entries.length);
    finals.push(batch.final);
    expect(batch.entries.map((entry) => entry.updateNumber)).toEqual(batch.entries.map((_, i) => received + 1 + i));
    received += batch.entries.length;
    const ack = { kind: 'deltaResyncAck', epoch: 1, received, restored: 0, final: batch.final } as const;
    if (batch.final) {
      expect(source.handle({ from: 3, to: 1, message: ack }).notes).toEqual([{ kind: 'deltaResyncDone', sourceLast: source.last }]);
      return { sizes, finals };
    }
    batch = sent(source, ack, 'deltaResyncEntries');
  }
}

describe('a pull carries whole entries within the requester room and the batch limit (claims 8, 9; P7)', () => {
  const dataBytes = 1000;
  const one = entryBytes({ updateNumber: 1, volume: 0, offset: 0, data: new Uint8Array(dataBytes) });

  it('as many entries as fit the byte room exactly, none when not even one fits, at most entriesMax', () => {
    const source = sourceWith(5, dataBytes);
    expect(pulled(source, 64, 3 * one)).toEqual([1, 2, 3]);
    expect(pulled(source, 64, 3 * one - 1)).toEqual([1, 2]);
    expect(pulled(source, 64, one)).toEqual([1]);
    expect(pulled(source, 64, one - 1)).toEqual([]);
    expect(pulled(source, 2, 64 * one)).toEqual([1, 2]);
    expect(pulled(source, 0, 64 * one)).toEqual([]);
    expect(pulled(source, 64, 64 * one)).toEqual([1, 2, 3, 4, 5]);
  });

  it(`at most batchBytesMax (${batchBytesMax} bytes) of entries in one message, whatever the room`, () => {
    // Entries of exactly a quarter of the batch limit: four fill a message exactly, the fifth waits.
    const source = sourceWith(6, batchBytesMax / 4 - (one - dataBytes));
    expect(pulled(source, 64, 64 * batchBytesMax)).toEqual([1, 2, 3, 4]);
  });
});

describe('a delta resync sends every entry, batch by batch, within the room and the batch limit (claims 19, 20)', () => {
  const dataBytes = 1000;
  const one = entryBytes({ updateNumber: 1, volume: 0, offset: 0, data: new Uint8Array(dataBytes) });

  it('cuts batches by the byte room (at least one entry each) and by entriesMax; the last is final', () => {
    expect(deltaBatches(sourceWith(5, dataBytes), 64, 2 * one)).toEqual({ sizes: [2, 2, 1], finals: [false, false, true] });
    expect(deltaBatches(sourceWith(5, dataBytes), 64, 2 * one - 1)).toEqual({ sizes: [1, 1, 1, 1, 1], finals: [false, false, false, false, true] });
    expect(deltaBatches(sourceWith(5, dataBytes), 64, 1)).toEqual({ sizes: [1, 1, 1, 1, 1], finals: [false, false, false, false, true] });
    expect(deltaBatches(sourceWith(5, dataBytes), 3, 64 * one)).toEqual({ sizes: [3, 2], finals: [false, true] });
    expect(deltaBatches(sourceWith(5, dataBytes), 5, 64 * one)).toEqual({ sizes: [5], finals: [true] });
  });

  it('at most batchBytesMax bytes of entries in one batch', () => {
    const source = sourceWith(6, batchBytesMax / 4 - (one - dataBytes));
    expect(deltaBatches(source, 64, 64 * batchBytesMax)).toEqual({ sizes: [4, 2], finals: [false, true] });
  });

  it('a site 3 that is already current gets one empty final batch', () => {
    const source = sourceWith(2, dataBytes);
    const batch = sent(source, { kind: 'deltaResyncRequest', epoch: 1, received: 2, entriesMax: 8, bytesMax: 64 * one }, 'deltaResyncEntries');
    expect(batch).toEqual({ kind: 'deltaResyncEntries', epoch: 1, entries: [], sourceLast: 2, final: true });
  });
});

describe('the durable state is saved when it changes, and only then', () => {
  it('each command that changes the state saves it once; one that changes nothing saves nothing', () => {
    const saves: SiteDurableState[] = [];
    const site = makeSite(1, 4 * blockBytes, { saves });
    const savedAfter = (run: () => unknown): SiteDurableState | null => {
      const before = saves.length;
      run();
      site.saveIfDirty();
      expect(saves.length - before).toBeLessThanOrEqual(1);
      return saves.length > before ? (saves.at(-1) as SiteDurableState) : null;
    };
    expect(savedAfter(() => site.save())).toMatchObject({ role: 'primary', mode: 'normal', up: true, fenced: false });
    expect(savedAfter(() => undefined)).toBeNull();
    expect(savedAfter(() => site.setRole('primary'))).toBeNull();
    expect(savedAfter(() => site.setRole('secondary'))).toMatchObject({ role: 'secondary' });
    expect(savedAfter(() => site.setRole('primary'))).toMatchObject({ role: 'primary' });
    expect(savedAfter(() => site.setMode('normal'))).toBeNull();
    expect(savedAfter(() => site.setMode('syncReversed'))).toMatchObject({ mode: 'syncReversed' });
    expect(savedAfter(() => site.setSource(1))).toBeNull();
    expect(savedAfter(() => site.setSource(2))).toMatchObject({ source: 2 });
    expect(savedAfter(() => site.setTakeover(null))).toBeNull();
    expect(savedAfter(() => site.setTakeover(7))).toMatchObject({ takeover: 7 });
    expect(savedAfter(() => site.setSyncPair('inSync'))).toBeNull();
    expect(savedAfter(() => site.setSyncPair('suspended'))).toMatchObject({ syncPair: 'suspended' });
    // A host write acknowledged alone is saved at the next save, not by the saves that cannot wait.
    site.hostWrite(1, 0, blockBytes, new Uint8Array(blockBytes).fill(1));
    const before = saves.length;
    site.saveIfDirtyBesidesHostWrites();
    expect(saves.length).toBe(before);
    expect(savedAfter(() => undefined)).toMatchObject({ ackedAlone: 1 });
    expect(saves.at(-1)?.changed[0]?.[0]).toBe(0b10);
    expect(savedAfter(() => site.fence())).toMatchObject({ fenced: true });
    expect(savedAfter(() => site.fail())).toMatchObject({ up: false });
    expect(savedAfter(() => site.recover())).toMatchObject({ up: true });
    // A state change that cannot wait is saved by saveIfDirtyBesidesHostWrites.
    site.setMode('normal');
    site.saveIfDirtyBesidesHostWrites();
    expect(saves.at(-1)).toMatchObject({ mode: 'normal' });
    expect(savedAfter(() => undefined)).toBeNull();
  });
});

/** Throws what `run` throws, or fails the test. */
function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a refusal');
}

describe('host writes in a batch: one journal write, one message, one answer (claims 2-6, 34, 35)', () => {
  const pair = (journal?: JournalLimits) => ({ primary: makeSite(1, 16 * blockBytes, { journal }), secondary: makeSite(2, 16 * blockBytes, { journal }) });
  const writes = (first: number, count: number) =>
    Array.from({ length: count }, (_, i) => ({ writeId: first + i, volume: 0, offset: ((first + i) % 16) * blockBytes, data: filled(blockBytes, first + i) }));
  const batch = (first: number, count: number, restoredKnown: number): SyncWriteBatchMessage => ({
    kind: 'syncWriteBatch', epoch: 1,
    entries: Array.from({ length: count }, (_, i) => ({ updateNumber: first + i, volume: 0, offset: i * blockBytes, data: filled(blockBytes, first + i) })),
    restoredKnown,
  });

  it('the primary sends one syncWriteBatch; the secondary journals it and answers once, for the last; the answer acknowledges each write', () => {
    const { primary, secondary } = pair();
    const out = primary.hostWrites(writes(1, 3));
    expect(out.notes).toEqual([]);
    expect(out.send).toHaveLength(1);
    const message = out.send[0]?.message as SyncWriteBatchMessage;
    expect(message.kind).toBe('syncWriteBatch');
    expect(message.entries.map((entry) => entry.updateNumber)).toEqual([1, 2, 3]);
    expect(primary.inFlightWrites).toBe(3);
    const answer = secondary.handle(out.send[0] as SiteEnvelope);
    expect(answer).toEqual({ send: [{ from: 2, to: 1, message: { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 } }], notes: [] });
    expect(secondary.last).toBe(3);
    expect(secondary.digest()).toBe(primary.digest());
    const acked = primary.handle(answer.send[0] as SiteEnvelope).notes;
    expect(acked).toEqual([1, 2, 3].map((u) => ({ kind: 'hostWriteAcked', writeId: u, updateNumber: u, alone: false })));
    expect(primary.inFlightWrites).toBe(0);
  });

  it('a batch of one write goes as a plain syncWrite', () => {
    expect(pair().primary.hostWrites(writes(1, 1)).send[0]?.message.kind).toBe('syncWrite');
  });

  it('a batch that does not fit the journal is journaled write by write under the overflow rule, at both sites (P7)', () => {
    const { primary, secondary } = pair({ entriesMax: 4, bytesMax: 64 * 1024 * 1024 });
    expect(exchange([primary, secondary], primary.hostWrites(writes(1, 3)).send)).toEqual(['syncWriteBatch', 'syncWriteAck']);
    expect(primary.inFlightWrites).toBe(0);
    expect(primary.journal.last).toBe(3);
    const out = primary.hostWrites(writes(4, 3));
    expect(out.notes).toEqual([{ kind: 'journalOverflow', site: 1, updateNumber: 5 }]);
    expect([primary.journal.first, primary.journal.last]).toEqual([5, 6]);
    const answer = secondary.handle(out.send[0] as SiteEnvelope);
    expect(answer.notes).toEqual([{ kind: 'journalOverflow', site: 2, updateNumber: 5 }]);
    expect(answer.send[0]?.message).toEqual({ kind: 'syncWriteAck', epoch: 1, updateNumber: 6 });
    expect([secondary.journal.first, secondary.journal.last]).toEqual([5, 6]);
    expect(secondary.digest()).toBe(primary.digest());
  });

  it("the secondary learns site 3's restored number from each write and trims by it, and never lowers it", () => {
    const { secondary } = pair();
    secondary.handle({ from: 1, to: 2, message: batch(1, 3, 0) });
    expect([secondary.knownRestored, secondary.journal.first]).toEqual([0, 1]);
    secondary.handle({ from: 1, to: 2, message: batch(4, 2, 2) });
    expect([secondary.knownRestored, secondary.journal.first, secondary.journal.last]).toEqual([2, 3, 5]);
    secondary.handle({ from: 1, to: 2, message: batch(6, 1, 1) });
    expect([secondary.knownRestored, secondary.journal.first]).toEqual([2, 3]);
    const write = (updateNumber: number, restoredKnown: number): Message => ({ kind: 'syncWrite', epoch: 1, updateNumber, volume: 0, offset: 0, data: filled(blockBytes, 1), restoredKnown });
    secondary.handle({ from: 1, to: 2, message: write(7, 1) });
    expect([secondary.knownRestored, secondary.journal.first]).toEqual([2, 3]);
    secondary.handle({ from: 1, to: 2, message: write(8, 4) });
    expect([secondary.knownRestored, secondary.journal.first, secondary.journal.last]).toEqual([4, 5, 8]);
    const error = thrown(() => secondary.handle({ from: 1, to: 2, message: batch(10, 1, 4) }));
    expect(error).toBeInstanceOf(OutOfOrderError);
    expect(error).toMatchObject({ kind: 'syncWriteBatch', expected: 9, got: 10 });
  });

  it('with the pair suspended, a batch is acknowledged at once on the primary alone, each write with its own update number (P1 exposure)', () => {
    const primary = makeSite(1, 16 * blockBytes, { journal: { entriesMax: 2, bytesMax: 64 * 1024 * 1024 } });
    primary.setSyncPair('suspended');
    const out = primary.hostWrites(writes(1, 3));
    expect(out.send).toEqual([]);
    expect(out.notes).toEqual([
      { kind: 'journalOverflow', site: 1, updateNumber: 3 },
      ...[1, 2, 3].map((u) => ({ kind: 'hostWriteAcked', writeId: u, updateNumber: u, alone: true })),
    ]);
    expect(primary.ackedAlone).toBe(3);
    expect([...primary.changed.blocks()]).toEqual([
      [0, 1],
      [0, 2],
      [0, 3],
    ]);
  });
});

describe('flushEachWrite: the journal and the volumes are durable before a write is answered, acknowledged or pulled', () => {
  for (const flushEachWrite of [true, false]) {
    it(`flushEachWrite ${flushEachWrite}`, () => {
      const n = flushEachWrite ? 1 : 0;
      const [primary, secondary, three] = ([1, 2, 3] as const).map((id) => makeSite(id, 16 * blockBytes, { flushEachWrite, volumeCount: 2 })) as [StorageSystem, StorageSystem, StorageSystem];
      const journalFlushes = (site: StorageSystem): number => (site.journal as CountingJournal).flushes;
      const volumeFlushes = (site: StorageSystem): number[] => (site.volumes as CountingVolume[]).map((volume) => volume.flushes);
      // One host write: the journal and the volume written.
      const one = primary.hostWrite(1, 1, 0, filled(blockBytes, 1));
      expect([journalFlushes(primary), volumeFlushes(primary)]).toEqual([n, [0, n]]);
      primary.handle(secondary.handle(one.send[0] as SiteEnvelope).send[0] as SiteEnvelope);
      expect([journalFlushes(secondary), volumeFlushes(secondary)]).toEqual([n, [0, n]]);
      // A batch: one journal flush, and every volume.
      const two = primary.hostWrites([2, 3].map((writeId) => ({ writeId, volume: 0, offset: writeId * blockBytes, data: filled(blockBytes, writeId) })));
      expect([journalFlushes(primary), volumeFlushes(primary)]).toEqual([2 * n, [n, 2 * n]]);
      primary.handle(secondary.handle(two.send[0] as SiteEnvelope).send[0] as SiteEnvelope);
      expect([journalFlushes(secondary), volumeFlushes(secondary)]).toEqual([2 * n, [n, 2 * n]]);
      // Site 3: an empty pull answer flushes nothing; pulled entries are flushed; a restore flushes the volumes.
      three.handle({ from: 1, to: 3, message: { kind: 'pullEntries', epoch: 1, entries: [], servedAt: 0 } });
      expect(journalFlushes(three)).toBe(0);
      const entries = primary.handle({ from: 3, to: 1, message: { kind: 'pullRequest', epoch: 1, received: 0, restored: 0, entriesMax: 8, bytesMax: 1 << 20 } }).send[0];
      three.handle(entries as SiteEnvelope);
      expect([three.received, journalFlushes(three), volumeFlushes(three)]).toEqual([3, n, [0, 0]]);
      expect(three.restore()).toBe(3);
      expect(volumeFlushes(three)).toEqual([n, n]);
      expect(three.digest()).toBe(primary.digest());
    });
  }
});

describe("durability on request: a host's flush is durable at both sync members when the pair is in sync (P1)", () => {
  const pair = (fencePolicy: 'refuse' | 'keepWriting' = 'keepWriting') => ({
    primary: makeSite(1, 16 * blockBytes, { fencePolicy }),
    secondary: makeSite(2, 16 * blockBytes, { fencePolicy }),
  });
  /** What a note says, in a form to compare: an outcome, or the error's class and reason. */
  const outcome = (note: SiteNote): unknown =>
    note.kind === 'flushFailed' ? [note.flushId, note.error.name, (note.error as { reason?: string }).reason ?? null] : note.kind === 'flushDone' ? [note.flushId, note.alone] : note;
  const written = (site: StorageSystem): number[] => [site.journal as CountingJournal, ...(site.volumes as CountingVolume[])].map((part) => part.flushes);

  it('the primary asks its secondary, which fsyncs its journal and volumes and answers with the token; only the answer settles the flush', () => {
    const { primary, secondary } = pair();
    exchange([primary, secondary], primary.hostWrite(1, 0, 0, filled(blockBytes, 1)).send);
    const out = primary.requestFlush(10);
    expect(out.notes).toEqual([]);
    expect(out.send).toEqual([{ from: 1, to: 2, message: { kind: 'flushRequest', epoch: 1, token: 1, updateNumber: 1 } }]);
    expect(primary.flushesWaiting).toBe(1);
    expect(written(secondary)).toEqual([0, 0]);
    const answer = secondary.handle(out.send[0] as SiteEnvelope);
    expect(written(secondary)).toEqual([1, 1]);
    expect(secondary.flushesForPeer).toBe(1);
    expect(answer).toEqual({ send: [{ from: 2, to: 1, message: { kind: 'flushAck', epoch: 1, token: 1, updateNumber: 1 } }], notes: [] });
    expect(primary.handle(answer.send[0] as SiteEnvelope).notes.map(outcome)).toEqual([[10, false]]);
    expect(primary.flushesWaiting).toBe(0);
  });

  it('a flush covers the writes acknowledged before it, not a later one still in flight', () => {
    const { primary, secondary } = pair();
    exchange([primary, secondary], primary.hostWrites([1, 2].map((writeId) => ({ writeId, volume: 0, offset: writeId * blockBytes, data: filled(blockBytes, writeId) }))).send);
    const later = primary.hostWrite(3, 0, 0, filled(blockBytes, 3));
    const request = primary.requestFlush(10).send[0]?.message;
    expect(request).toMatchObject({ kind: 'flushRequest', updateNumber: 2 });
    // The secondary takes the later write first (the link is in order) and the request after it.
    secondary.handle(later.send[0] as SiteEnvelope);
    expect(secondary.handle({ from: 1, to: 2, message: request as Message }).send[0]?.message).toMatchObject({ kind: 'flushAck', updateNumber: 2 });
  });

  it('an answer settles its flush and every earlier one; a second answer, or one for a flush never asked, is refused', () => {
    const { primary, secondary } = pair();
    const requests = [11, 12, 13].map((flushId) => primary.requestFlush(flushId).send[0] as SiteEnvelope);
    expect(requests.map((envelope) => (envelope.message as { token: number }).token)).toEqual([1, 2, 3]);
    const second = secondary.handle(requests[1] as SiteEnvelope).send[0] as SiteEnvelope;
    expect(primary.handle(second).notes.map(outcome)).toEqual([
      [11, false],
      [12, false],
    ]);
    expect(primary.flushesWaiting).toBe(1);
    expect(() => primary.handle(second)).toThrow(/no flush 2 waiting/);
    expect(() => primary.handle({ from: 2, to: 1, message: { kind: 'flushAck', epoch: 1, token: 9, updateNumber: 0 } })).toThrow(UnexpectedMessageError);
    // An answer naming another update number than its request asked for is out of order.
    expect(() => primary.handle({ from: 2, to: 1, message: { kind: 'flushAck', epoch: 1, token: 3, updateNumber: 5 } })).toThrow(OutOfOrderError);
    expect(primary.flushesWaiting).toBe(1);
  });

  it('a secondary refuses a request for writes it does not hold (out of order), fsyncing nothing', () => {
    const { secondary } = pair();
    expect(() => secondary.handle({ from: 1, to: 2, message: { kind: 'flushRequest', epoch: 1, token: 1, updateNumber: 1 } })).toThrow(OutOfOrderError);
    expect(written(secondary)).toEqual([0, 0]);
    expect(secondary.flushesForPeer).toBe(0);
  });

  for (const [policy, expected] of [
    ['keepWriting', [[20, true], [21, true]]],
    ['refuse', [[20, 'NotDurableError', 'fencePolicy'], [21, 'NotDurableError', 'fencePolicy']]],
  ] as const) {
    it(`${policy}: flushes waiting when the pair leaves in sync, and a flush with the pair suspended, are decided by fence policy at site 1`, () => {
      const { primary } = pair(policy);
      primary.requestFlush(20);
      expect(primary.setSyncPair('suspended').notes.map(outcome)).toEqual([expected[0]]);
      expect(primary.flushesWaiting).toBe(0);
      expect(primary.requestFlush(21)).toMatchObject({ send: [] });
      expect(primary.requestFlush(21).notes.map(outcome)).toEqual([expected[1]]);
    });
  }

  it('site 2 as primary with its pair suspended keeps writing whatever the policy; a secondary or site 3 answers on its own fsync', () => {
    const two = makeSite(2, 16 * blockBytes, { fencePolicy: 'refuse' });
    two.setRole('primary');
    two.setSyncPair('suspended');
    expect(two.requestFlush(1).notes.map(outcome)).toEqual([[1, true]]);
    expect(makeSite(2, 16 * blockBytes).requestFlush(2)).toEqual({ send: [], notes: [{ kind: 'flushDone', flushId: 2, alone: true }] });
    expect(makeSite(3, 16 * blockBytes).requestFlush(3)).toEqual({ send: [], notes: [{ kind: 'flushDone', flushId: 3, alone: true }] });
  });

  it('a primary that fails, or is deposed by a higher epoch, fails the flushes waiting', () => {
    const failing = pair().primary;
    failing.requestFlush(1);
    expect(failing.fail().notes.map(outcome)).toEqual([[1, 'SiteFailedError', null]]);
    const deposed = pair().primary;
    deposed.requestFlush(2);
    expect(deposed.learnEpoch(2).notes.map(outcome)).toEqual([[2, 'NotDurableError', 'deposed']]);
    expect(deposed.flushesWaiting).toBe(0);
  });

  it(`holds exactly flushesWaitingMax (${flushesWaitingMax}) flushes waiting; one more is refused at once, none dropped`, () => {
    const { primary } = pair();
    for (let flushId = 1; flushId <= flushesWaitingMax; flushId += 1) expect(primary.requestFlush(flushId).send).toHaveLength(1);
    expect(primary.flushesWaiting).toBe(flushesWaitingMax);
    const refused = primary.requestFlush(flushesWaitingMax + 1);
    expect(refused.send).toEqual([]);
    expect(refused.notes.map(outcome)).toEqual([[flushesWaitingMax + 1, 'NotDurableError', 'flushesWaitingMax']]);
    expect(refused.notes[0]).toMatchObject({ error: expect.any(NotDurableError) });
    expect(primary.flushesWaiting).toBe(flushesWaitingMax);
    expect(primary.handle({ from: 2, to: 1, message: { kind: 'flushAck', epoch: 1, token: flushesWaitingMax, updateNumber: 0 } }).notes).toHaveLength(flushesWaitingMax);
  });
});

describe('a failing primary with writes in flight (P1)', () => {
  it('fails each write in flight with SiteFailedError and records its blocks as changed: the secondary may lack them', () => {
    const primary = makeSite(1, 16 * blockBytes);
    primary.hostWrite(7, 0, 2 * blockBytes, filled(blockBytes, 1));
    primary.hostWrite(8, 0, 5 * blockBytes, filled(2 * blockBytes, 2));
    const out = primary.fail();
    expect(out.send).toEqual([]);
    expect(out.notes.map((note) => (note.kind === 'hostWriteFailed' ? [note.writeId, note.error instanceof SiteFailedError, note.error.message] : note))).toEqual([
      [7, true, 'host write: site 1 is failed'],
      [8, true, 'host write: site 1 is failed'],
    ]);
    expect([primary.inFlightWrites, primary.up]).toEqual([0, false]);
    expect([...primary.changed.blocks()]).toEqual([
      [0, 2],
      [0, 5],
      [0, 6],
    ]);
  });
});

describe('a source whose journal no longer covers site 3 says so instead of serving a gap (P5, P7)', () => {
  const dataBytes = 1000;
  // Six writes into a journal of four entries: the fifth overflowed it, so it holds [5..6].
  const overflowed = (): StorageSystem => sourceWith(6, dataBytes, { entriesMax: 4, bytesMax: 1 << 20 });
  const pull = (source: StorageSystem, received: number): Message =>
    sent(source, { kind: 'pullRequest', epoch: 1, received, restored: 0, entriesMax: 8, bytesMax: 1 << 20 }, source.journal.covers(received) || received >= source.last ? 'pullEntries' : 'pullRefused');

  it('a pull below the journal is refused with its first update number; one it covers is served; one past its last gets nothing', () => {
    const source = overflowed();
    expect([source.journal.first, source.journal.last]).toEqual([5, 6]);
    expect(pull(source, 2)).toEqual({ kind: 'pullRefused', epoch: 1, received: 2, journalFirst: 5 });
    expect(pull(source, 3)).toEqual({ kind: 'pullRefused', epoch: 1, received: 3, journalFirst: 5 });
    expect((pull(source, 4) as PullEntriesMessage).entries.map((entry) => entry.updateNumber)).toEqual([5, 6]);
    expect((pull(source, 6) as PullEntriesMessage).entries).toEqual([]);
    expect((pull(source, 9) as PullEntriesMessage).entries).toEqual([]);
  });

  it('a delta resync is refused when the journal does not cover site 3, or while writes are in flight', () => {
    const source = overflowed();
    const request = (received: number): Message => ({ kind: 'deltaResyncRequest', epoch: 1, received, entriesMax: 8, bytesMax: 1 << 20 });
    expect(sent(source, request(3), 'deltaResyncRefused')).toEqual({ kind: 'deltaResyncRefused', epoch: 1, received: 3, journalFirst: 5, sourceLast: 6 });
    expect(source.busy).toBe(false);
    const inSync = makeSite(1, 4 * blockBytes);
    inSync.hostWrite(1, 0, 0, filled(blockBytes, 1));
    expect(sent(inSync, request(0), 'deltaResyncRefused')).toEqual({ kind: 'deltaResyncRefused', epoch: 1, received: 0, journalFirst: 1, sourceLast: 1 });
    expect(inSync.busy).toBe(false);
  });

  it('site 3 takes a delta refusal as the end of its wait, and a pull refusal only for its own received number', () => {
    const three = makeSite(3, 4 * blockBytes);
    expect(three.busy).toBe(false);
    three.requestDeltaResync(8);
    expect(three.busy).toBe(true);
    const out = three.handle({ from: 1, to: 3, message: { kind: 'deltaResyncRefused', epoch: 1, received: 0, journalFirst: 5, sourceLast: 6 } });
    expect(out).toEqual({ send: [], notes: [{ kind: 'deltaResyncRefused', received: 0, journalFirst: 5 }] });
    expect(three.busy).toBe(false);
    const error = thrown(() => three.handle({ from: 1, to: 3, message: { kind: 'pullRefused', epoch: 1, received: 1, journalFirst: 5 } }));
    expect(error).toMatchObject({ kind: 'pullRefused', expected: 0, got: 1 });
    expect(error).toBeInstanceOf(OutOfOrderError);
    expect(three.handle({ from: 1, to: 3, message: { kind: 'pullRefused', epoch: 1, received: 0, journalFirst: 5 } }).notes).toEqual([
      { kind: 'pullRefused', received: 0, journalFirst: 5 },
    ]);
  });

  it("a delta acknowledgement must name the last update number sent; the source is busy until the final one, then trims through site 3's restored number only", () => {
    const source = sourceWith(4, dataBytes);
    sent(source, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax: 2, bytesMax: 1 << 20 }, 'deltaResyncEntries');
    expect(source.busy).toBe(true);
    const error = thrown(() => source.handle({ from: 3, to: 1, message: { kind: 'deltaResyncAck', epoch: 1, received: 3, restored: 0, final: false } }));
    expect(error).toBeInstanceOf(OutOfOrderError);
    expect(error).toMatchObject({ kind: 'deltaResyncAck', expected: 2, got: 3 });
    const last = sent(source, { kind: 'deltaResyncAck', epoch: 1, received: 2, restored: 0, final: false }, 'deltaResyncEntries');
    expect(last.entries.map((entry) => entry.updateNumber)).toEqual([3, 4]);
    expect(source.handle({ from: 3, to: 1, message: { kind: 'deltaResyncAck', epoch: 1, received: 4, restored: 1, final: true } }).notes).toEqual([{ kind: 'deltaResyncDone', sourceLast: 4 }]);
    expect(source.busy).toBe(false);
    // Site 3 holds 2-4 in its journal, not in its volumes: the source keeps them (claim 20).
    expect([source.knownRestored, source.journal.first, source.journal.last]).toEqual([1, 2, 4]);
  });
});

describe('copies: batches of whole blocks, well-formed requests (claims 29-31)', () => {
  it(`a full copy larger than one message goes in batches of ${batchBytesMax / blockBytes} blocks, each acknowledged; both sides are busy until the last`, () => {
    const volumeBytes = 2 * batchBytesMax + blockBytes;
    const source = makeSite(1, volumeBytes);
    source.setSyncPair('suspended');
    source.hostWrite(1, 0, volumeBytes - blockBytes, filled(blockBytes, 9));
    const three = makeSite(3, volumeBytes);
    const queue = [...three.requestFullCopy().send];
    expect(three.busy).toBe(true);
    const batches: [number, boolean][] = [];
    const notes: unknown[] = [];
    for (let envelope = queue.shift(); envelope !== undefined; envelope = queue.shift()) {
      const message = envelope.message;
      if (message.kind === 'copyBlocks') {
        batches.push([message.blocks.length, message.final]);
        expect(source.busy).toBe(true);
        expect(source.copySending).toBe('fullCopy');
      }
      const out = (envelope.to === 1 ? source : three).handle(envelope);
      queue.push(...out.send);
      notes.push(...out.notes);
    }
    expect(batches).toEqual([
      [2048, false],
      [2048, false],
      [1, true],
    ]);
    expect(notes).toEqual([{ kind: 'fullCopyDone', sourceLast: 1 }]);
    expect([source.busy, source.copySending, three.busy, three.received, three.restored]).toEqual([false, null, false, 1, 1]);
    expect(three.digest()).toBe(source.digest());
  });

  it('a resync request carries one bitmap per volume of the right size; copied blocks are whole blocks', () => {
    const primary = makeSite(1, 16 * blockBytes, { volumeCount: 2 });
    const resync = (changed: Uint8Array[]) => thrown(() => primary.handle({ from: 2, to: 1, message: { kind: 'resyncRequest', epoch: 1, changed } }));
    expect(resync([new Uint8Array(2)])).toMatchObject({ field: 'resyncRequest.changed' });
    expect(resync([new Uint8Array(2), new Uint8Array(3)])).toMatchObject({ field: 'resyncRequest.changed[1]' });
    expect(resync([new Uint8Array(2)])).toBeInstanceOf(MalformedMessageError);
    expect(primary.busy).toBe(false);
    const secondary = makeSite(2, 16 * blockBytes, { volumeCount: 2 });
    secondary.requestResync();
    expect(secondary.busy).toBe(true);
    const copy = (blocks: CopyBlocksMessage['blocks']) =>
      thrown(() => secondary.handle({ from: 1, to: 2, message: { kind: 'copyBlocks', epoch: 1, purpose: 'resync', blocks, final: true, sourceLast: 0, restoredKnown: 0 } }));
    const whole = { volume: 0, offset: 0, data: filled(blockBytes, 1) };
    expect(copy([whole, { volume: 1, offset: 100, data: filled(blockBytes, 1) }])).toMatchObject({ field: 'copyBlocks.blocks[1]' });
    expect(copy([{ volume: 0, offset: blockBytes, data: filled(blockBytes - 1, 1) }])).toMatchObject({ field: 'copyBlocks.blocks[0]' });
    expect(copy([{ volume: 2, offset: 0, data: filled(blockBytes, 1) }])).toMatchObject({ field: 'copyBlocks.blocks[0].volume' });
    expect(secondary.read(0, 0, blockBytes)).toEqual(new Uint8Array(blockBytes));
    expect(secondary.busy).toBe(true);
  });

  it('site 3 keeps the last verdict it received', () => {
    const three = makeSite(3, 4 * blockBytes);
    expect(three.lastVerdict).toBeNull();
    const verdict: Message = { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'deltaResync', remoteReceived: 0, sourceLast: 3 };
    three.handle({ from: 1, to: 3, message: verdict });
    expect(three.lastVerdict).toEqual(verdict);
  });
});

describe('messages out of context in the middle of a session are refused, and the session goes on', () => {
  const unexpected = (site: StorageSystem, from: SiteId, message: Message): void => {
    const error = thrown(() => site.handle({ from, to: site.id, message }));
    expect(error, `${message.kind} from ${from} to ${site.id}`).toBeInstanceOf(UnexpectedMessageError);
  };

  it('during a delta resync: an acknowledgement not from site 3; at site 3, entries or a refusal not from its source', () => {
    const source = sourceWith(4, 1000);
    sent(source, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax: 2, bytesMax: 1 << 20 }, 'deltaResyncEntries');
    unexpected(source, 2, { kind: 'deltaResyncAck', epoch: 1, received: 2, restored: 0, final: false });
    expect(sent(source, { kind: 'deltaResyncAck', epoch: 1, received: 2, restored: 0, final: false }, 'deltaResyncEntries').entries).toHaveLength(2);
    const three = makeSite(3, 4 * blockBytes);
    three.requestDeltaResync(8);
    unexpected(three, 2, { kind: 'deltaResyncRefused', epoch: 1, received: 0, journalFirst: 1, sourceLast: 1 });
    unexpected(three, 2, { kind: 'deltaResyncEntries', epoch: 1, entries: [], sourceLast: 0, final: true });
    expect(three.busy).toBe(true);
    expect(three.handle({ from: 1, to: 3, message: { kind: 'deltaResyncEntries', epoch: 1, entries: [], sourceLast: 0, final: true } }).send[0]?.message).toEqual({
      kind: 'deltaResyncAck', epoch: 1,
      received: 0,
      restored: 0,
      final: true,
    });
    expect(three.busy).toBe(false);
  });

  it('during a full copy: a second request, a resync request, an acknowledgement of another purpose, from another site, or final too early', () => {
    const volumeBytes = batchBytesMax + blockBytes;
    const source = makeSite(1, volumeBytes);
    const three = makeSite(3, volumeBytes);
    const first = source.handle(three.requestFullCopy().send[0] as SiteEnvelope).send[0] as SiteEnvelope;
    expect((first.message as CopyBlocksMessage).final).toBe(false);
    unexpected(source, 3, { kind: 'fullCopyRequest', epoch: 1 });
    unexpected(source, 2, { kind: 'resyncRequest', epoch: 1, changed: [new Uint8Array(Math.ceil(volumeBytes / blockBytes / 8))] });
    unexpected(source, 3, { kind: 'copyAck', epoch: 1, purpose: 'resync', final: false });
    unexpected(source, 2, { kind: 'copyAck', epoch: 1, purpose: 'fullCopy', final: false });
    const early = thrown(() => source.handle({ from: 3, to: 1, message: { kind: 'copyAck', epoch: 1, purpose: 'fullCopy', final: true } }));
    expect(early).toBeInstanceOf(OutOfOrderError);
    expect(early).toMatchObject({ expected: 0, got: 1 });
    // Site 3 takes the copy only from its source and for the purpose it asked.
    unexpected(three, 2, first.message);
    unexpected(three, 1, { ...(first.message as CopyBlocksMessage), purpose: 'resync' });
    const ack = three.handle(first).send[0] as SiteEnvelope;
    const last = source.handle(ack).send[0] as SiteEnvelope;
    expect((last.message as CopyBlocksMessage).final).toBe(true);
    expect(source.handle(three.handle(last).send[0] as SiteEnvelope).notes).toEqual([{ kind: 'fullCopyDone', sourceLast: 0 }]);
    expect(three.digest()).toBe(source.digest());
  });
});

describe('a site on its own: roles, room, restarts, refusals and sessions', () => {
  it('a new site is primary at site 1, secondary at site 2, remote at site 3, in normal mode and not busy', () => {
    expect(([1, 2, 3] as const).map((id) => [makeSite(id, blockBytes).role, makeSite(id, blockBytes).mode, makeSite(id, blockBytes).busy])).toEqual([
      ['primary', 'normal', false],
      ['secondary', 'normal', false],
      ['remote', 'normal', false],
    ]);
  });

  it("site 3 asks for as many entries and bytes as its journal has room for, and at least one entry per delta batch", () => {
    const three = makeSite(3, 16 * blockBytes, { journal: { entriesMax: 8, bytesMax: 10 * (blockBytes + 36) } });
    const entries = [1, 2, 3].map((u) => ({ updateNumber: u, volume: 0, offset: u * blockBytes, data: filled(blockBytes, u) }));
    three.handle({ from: 1, to: 3, message: { kind: 'pullEntries', epoch: 1, entries, servedAt: 0 } });
    expect(three.requestPull(100).send[0]?.message).toEqual({ kind: 'pullRequest', epoch: 1, received: 3, restored: 0, entriesMax: 5, bytesMax: 7 * (blockBytes + 36) });
    expect(three.requestPull(2).send[0]?.message).toMatchObject({ entriesMax: 2 });
    expect(three.requestDeltaResync(6).send[0]?.message).toEqual({ kind: 'deltaResyncRequest', epoch: 1, received: 3, entriesMax: 6, bytesMax: 10 * (blockBytes + 36) });
    expect(three.requestDeltaResync(0).send[0]?.message).toMatchObject({ entriesMax: 1 });
    expect(three.requestDeltaResync(100).send[0]?.message).toMatchObject({ entriesMax: 8 });
  });

  it('pulled entries must continue the journal, lie in the volumes and fit the journal exactly (P2, P7)', () => {
    const room = 2 * (blockBytes + 36);
    const three = makeSite(3, 4 * blockBytes, { journal: { entriesMax: 8, bytesMax: room } });
    const entry = (u: number, offset = 0) => ({ updateNumber: u, volume: 0, offset, data: filled(blockBytes, u) });
    const pull = (entries: ReturnType<typeof entry>[]) => thrown(() => three.handle({ from: 1, to: 3, message: { kind: 'pullEntries', epoch: 1, entries, servedAt: 0 } }));
    expect(pull([entry(5)])).toMatchObject({ kind: 'pullEntries', expected: 1, got: 5 });
    expect(pull([entry(1), entry(2, 4 * blockBytes)])).toMatchObject({ field: 'pullEntries.entries[1].offset' });
    expect(pull([entry(1), entry(2), entry(3)])).toBeInstanceOf(UnexpectedMessageError);
    expect(three.received).toBe(0);
    three.handle({ from: 1, to: 3, message: { kind: 'pullEntries', epoch: 1, entries: [entry(1), entry(2)], servedAt: 0 } });
    expect([three.received, three.journal.bytes]).toEqual([2, room]);
  });

  it("delta batches go into site 3's journal after what it holds and wait there for its restore (claim 20)", () => {
    const three = makeSite(3, 8 * blockBytes, { journal: { entriesMax: 8, bytesMax: 1 << 20 } });
    const entry = (u: number) => ({ updateNumber: u, volume: 0, offset: u * blockBytes, data: filled(blockBytes, u) });
    three.handle({ from: 1, to: 3, message: { kind: 'pullEntries', epoch: 1, entries: [entry(1), entry(2), entry(3)], servedAt: 0 } });
    three.requestDeltaResync(8);
    const ack = three.handle({ from: 1, to: 3, message: { kind: 'deltaResyncEntries', epoch: 1, entries: [entry(4), entry(5)], sourceLast: 7, final: false } });
    expect(ack.send[0]?.message).toEqual({ kind: 'deltaResyncAck', epoch: 1, received: 5, restored: 0, final: false });
    expect([three.received, three.restored, three.busy]).toEqual([5, 0, true]);
    three.handle({ from: 1, to: 3, message: { kind: 'deltaResyncEntries', epoch: 1, entries: [entry(6), entry(7)], sourceLast: 7, final: true } });
    expect([three.received, three.restored, three.busy, three.journal.entries]).toEqual([7, 0, false, 7]);
    expect(three.read(0, 7 * blockBytes, 4)).toEqual(filled(4, 0));
    expect(three.restore()).toBe(7);
    expect([three.received, three.restored]).toEqual([7, 7]);
    expect(three.read(0, 7 * blockBytes, 4)).toEqual(filled(4, 7));
  });

  it("site 3 restores what its journal holds first when the missing entries would not fit after it, by count or by bytes (P7)", () => {
    const entry = (u: number) => ({ updateNumber: u, volume: 0, offset: u * blockBytes, data: filled(blockBytes, u) });
    /** Site 3 holds `held` entries unrestored, then gets the rest through `sourceLast` in batches of `perBatch`. */
    const resynced = (journal: JournalLimits, held: number, sourceLast: number, perBatch = sourceLast): [number, number] => {
      const three = makeSite(3, 8 * blockBytes, { journal });
      const pulled = Array.from({ length: held }, (_, i) => entry(i + 1));
      three.handle({ from: 1, to: 3, message: { kind: 'pullEntries', epoch: 1, entries: pulled, servedAt: 0 } });
      three.requestDeltaResync(8);
      for (let next = held + 1; next <= sourceLast; next += perBatch) {
        const last = Math.min(sourceLast, next + perBatch - 1);
        const entries = Array.from({ length: last - next + 1 }, (_, i) => entry(next + i));
        three.handle({ from: 1, to: 3, message: { kind: 'deltaResyncEntries', epoch: 1, entries, sourceLast, final: last === sourceLast } });
      }
      return [three.received, three.restored];
    };
    const roomy = 1 << 20;
    // Two held and two missing fill a journal of 4 exactly; three held and two missing would not fit.
    expect(resynced({ entriesMax: 4, bytesMax: roomy }, 2, 4)).toEqual([4, 0]);
    expect(resynced({ entriesMax: 4, bytesMax: roomy }, 3, 5)).toEqual([5, 3]);
    // In batches of one, the decision is taken before the first: 3 would fit after 1 and 2, but 3 and 4 would not.
    expect(resynced({ entriesMax: 3, bytesMax: roomy }, 2, 4, 1)).toEqual([4, 2]);
    // Bytes for four entries, count for eight: the same by bytes.
    const four = 4 * entryBytes(entry(1));
    expect(resynced({ entriesMax: 8, bytesMax: four }, 2, 4)).toEqual([4, 0]);
    expect(resynced({ entriesMax: 8, bytesMax: four }, 3, 5)).toEqual([5, 3]);
  });

  it('a whole delta resync in small batches leaves site 3 equal to the source after its restore (claims 19, 20)', () => {
    const source = sourceWith(7, blockBytes);
    const three = makeSite(3, source.config.volumeBytes, { journal: { entriesMax: 8, bytesMax: 1 << 20 } });
    const kinds = exchange([source, three], three.requestDeltaResync(2).send);
    expect(kinds).toEqual(['deltaResyncRequest', ...Array.from({ length: 4 }, () => ['deltaResyncEntries', 'deltaResyncAck']).flat()]);
    expect([three.received, three.restored, three.busy, source.busy]).toEqual([7, 0, false, false]);
    three.restore();
    expect(three.digest()).toBe(source.digest());
  });

  it('a site 3 journal smaller than the missing entries restores before each batch that would not fit, and never overflows', () => {
    const source = sourceWith(7, blockBytes);
    const three = makeSite(3, source.config.volumeBytes, { journal: { entriesMax: 2, bytesMax: 1 << 20 } });
    exchange([source, three], three.requestDeltaResync(2).send);
    expect([three.received, three.restored, three.journal.entries]).toEqual([7, 6, 1]);
    three.restore();
    expect(three.digest()).toBe(source.digest());
  });

  it('a resync of the secondary copies the union of both records, then clears them, the fence and the count acknowledged alone (claims 29-31)', () => {
    const saves: SiteDurableState[] = [];
    const primary = makeSite(1, 16 * blockBytes);
    const secondary = makeSite(2, 16 * blockBytes, { saves });
    primary.setSyncPair('suspended');
    secondary.setSyncPair('suspended');
    primary.hostWrite(1, 0, 3 * blockBytes, filled(blockBytes, 3));
    primary.handle({ from: 3, to: 1, message: { kind: 'pullRequest', epoch: 1, received: 0, restored: 1, entriesMax: 0, bytesMax: 0 } });
    expect([primary.ackedAlone, primary.knownRestored]).toEqual([1, 1]);
    // The secondary wrote block 7 that the primary never had (its own record): the union copies it back.
    secondary.journal.append({ updateNumber: 1, volume: 0, offset: 7 * blockBytes, data: filled(blockBytes, 7) });
    secondary.volumes[0]?.write(7 * blockBytes, filled(blockBytes, 7));
    expect(secondary.markJournalChanged()).toBe(1);
    secondary.fence();
    secondary.saveIfDirty();
    const before = saves.length;
    const kinds = exchange([primary, secondary], secondary.requestResync().send);
    expect(kinds).toEqual(['resyncRequest', 'copyBlocks', 'copyAck']);
    expect([secondary.busy, primary.busy, primary.copySending]).toEqual([false, false, null]);
    expect([secondary.changed.count, primary.changed.count, primary.ackedAlone, secondary.fenced, secondary.knownRestored, secondary.last]).toEqual([0, 0, 0, false, 1, 1]);
    expect(secondary.digest()).toBe(primary.digest());
    secondary.saveIfDirty();
    expect(saves.length).toBe(before + 1);
    expect(saves.at(-1)).toMatchObject({ fenced: false, ackedAlone: 0, knownRestored: 1 });
  });

  it('a failure ends every session: a failed and recovered site 3 waits for nothing', () => {
    const three = makeSite(3, blockBytes);
    three.requestFullCopy();
    expect(three.busy).toBe(true);
    expect(three.fail()).toEqual({ send: [], notes: [] });
    three.recover();
    expect(three.busy).toBe(false);
    const secondary = makeSite(2, blockBytes);
    secondary.requestResync();
    secondary.fail();
    secondary.recover();
    expect(secondary.busy).toBe(false);
  });

  it('commands of site 3 run only at site 3 (an invariant, naming the command)', () => {
    const one = makeSite(1, blockBytes);
    for (const [name, run] of [
      ['requestPull', () => one.requestPull(1)],
      ['restore', () => one.restore()],
      ['requestJudge', () => one.requestJudge(1, 'reattach')],
      ['requestDeltaResync', () => one.requestDeltaResync(1)],
      ['requestFullCopy', () => one.requestFullCopy()],
    ] as const) {
      expect(run, name).toThrow(new RegExp(`${name} runs at site 3`));
    }
  });

  it('an acknowledgement names a write in flight; the refusal says which one was expected', () => {
    const primary = makeSite(1, 4 * blockBytes);
    expect(thrown(() => primary.handle({ from: 2, to: 1, message: { kind: 'syncWriteAck', epoch: 1, updateNumber: 1 } }))).toMatchObject({ expected: 0, got: 1 });
    primary.hostWrite(1, 0, 0, filled(blockBytes, 1));
    primary.hostWrite(2, 0, 0, filled(blockBytes, 2));
    expect(thrown(() => primary.handle({ from: 2, to: 1, message: { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 } }))).toMatchObject({ expected: 1, got: 3 });
    expect(primary.handle({ from: 2, to: 1, message: { kind: 'syncWriteAck', epoch: 1, updateNumber: 1 } }).notes).toHaveLength(1);
    expect(thrown(() => primary.handle({ from: 2, to: 1, message: { kind: 'syncWriteAck', epoch: 1, updateNumber: 1 } }))).toMatchObject({ expected: 2, got: 1 });
    expect(primary.inFlightWrites).toBe(1);
  });

  it('when the pair breaks with writes in flight: site 1 under fence policy refuse fails them; site 2 as primary, or keepWriting, acknowledges them alone', () => {
    const refuse = makeSite(1, 4 * blockBytes, { fencePolicy: 'refuse' });
    refuse.hostWrite(1, 0, 0, filled(blockBytes, 1));
    const failed = refuse.setSyncPair('suspended').notes;
    expect(failed.map((note) => (note.kind === 'hostWriteFailed' ? [note.writeId, note.error.code, (note.error as { reason?: string }).reason] : note))).toEqual([
      [1, 'NotWritable', 'fencePolicy'],
    ]);
    const two = makeSite(2, 4 * blockBytes, { fencePolicy: 'refuse' });
    two.setRole('primary');
    two.hostWrite(5, 0, 0, filled(blockBytes, 1));
    expect(two.setSyncPair('suspended').notes).toEqual([{ kind: 'hostWriteAcked', writeId: 5, updateNumber: 1, alone: true }]);
    expect([two.ackedAlone, two.changed.count]).toEqual([1, 1]);
    // A pair that stays in sync (in sync to reversed) decides nothing about its writes in flight.
    const reversing = makeSite(1, 4 * blockBytes);
    reversing.hostWrite(1, 0, 0, filled(blockBytes, 1));
    expect(reversing.setSyncPair('reversed')).toEqual({ send: [], notes: [] });
    expect(reversing.inFlightWrites).toBe(1);
  });

  it('after a crash, every block in the journal goes to the changed-block record, and that is saved with what cannot wait', () => {
    const saves: SiteDurableState[] = [];
    const primary = makeSite(1, 16 * blockBytes, { saves });
    primary.setSyncPair('suspended');
    for (const block of [2, 3, 3, 9]) primary.hostWrite(block, 0, block * blockBytes, filled(blockBytes, block));
    primary.handle({ from: 3, to: 1, message: { kind: 'pullRequest', epoch: 1, received: 0, restored: 1, entriesMax: 0, bytesMax: 0 } });
    expect(primary.journal.first).toBe(2);
    primary.changed.clear();
    saves.length = 0;
    expect(primary.markJournalChanged()).toBe(2);
    expect([...primary.changed.blocks()]).toEqual([
      [0, 3],
      [0, 9],
    ]);
    expect(primary.markJournalChanged()).toBe(0);
    primary.saveIfDirtyBesidesHostWrites();
    expect(saves).toHaveLength(1);
  });

  it("site 3's progress is learned, never lowered, and the journal saved before it discards an unsaved write's entry", () => {
    const saves: SiteDurableState[] = [];
    const primary = makeSite(1, 16 * blockBytes, { saves });
    primary.setSyncPair('suspended');
    primary.saveIfDirty();
    for (let i = 1; i <= 4; i += 1) primary.hostWrite(i, 0, i * blockBytes, filled(blockBytes, i));
    const pull = (restored: number): void => void primary.handle({ from: 3, to: 1, message: { kind: 'pullRequest', epoch: 1, received: 4, restored, entriesMax: 0, bytesMax: 0 } });
    const count = saves.length;
    pull(0);
    expect([primary.knownRestored, primary.journal.first, saves.length]).toEqual([0, 1, count]);
    // Trimming through the journal's first discards that entry: saved first.
    pull(1);
    expect([primary.knownRestored, primary.journal.first, saves.length]).toEqual([1, 2, count + 1]);
    primary.hostWrite(5, 0, 5 * blockBytes, filled(blockBytes, 5));
    pull(2);
    expect([primary.knownRestored, primary.journal.first, saves.length]).toEqual([2, 3, count + 2]);
    pull(1);
    expect([primary.knownRestored, primary.journal.first, saves.length]).toEqual([2, 3, count + 2]);
    // A change that is not a host write's waits for the next save, even when a trim discards entries.
    primary.setMode('syncReversed');
    pull(3);
    expect([primary.journal.first, saves.length]).toEqual([4, count + 2]);
  });

  it('the site flushes its journal and every volume on demand', () => {
    const site = makeSite(1, blockBytes, { volumeCount: 2 });
    site.flush();
    expect([(site.journal as CountingJournal).flushes, (site.volumes as CountingVolume[]).map((volume) => volume.flushes)]).toEqual([1, [1, 1]]);
  });
});

describe('sessions and batches at their edges', () => {
  it('a delta resync ends at the source last it started with, even when the source journals more meanwhile', () => {
    // Two writes of two blocks fill the first batch's byte room; the later one-block writes would fit three to a batch.
    const source = makeSite(1, 16 * blockBytes);
    source.setSyncPair('suspended');
    for (const [i, blocks] of [2, 2, 1, 1].entries()) source.hostWrite(i + 1, 0, 4 * i * blockBytes, filled(blocks * blockBytes, i + 1));
    const big = entryBytes({ updateNumber: 1, volume: 0, offset: 0, data: new Uint8Array(2 * blockBytes) });
    const first = sent(source, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax: 8, bytesMax: 2 * big }, 'deltaResyncEntries');
    expect([first.entries.length, first.sourceLast]).toEqual([2, 4]);
    source.hostWrite(9, 0, 0, filled(blockBytes, 9));
    expect(source.last).toBe(5);
    const last = sent(source, { kind: 'deltaResyncAck', epoch: 1, received: 2, restored: 0, final: false }, 'deltaResyncEntries');
    expect(last.entries.map((entry) => entry.updateNumber)).toEqual([3, 4]);
    expect([last.final, last.sourceLast]).toEqual([true, 4]);
  });

  it('a single sync write that overflows the secondary journal says so; a sync write names its field when it misses the volumes', () => {
    const secondary = makeSite(2, 4 * blockBytes, { journal: { entriesMax: 2, bytesMax: 1 << 20 } });
    const write = (updateNumber: number, volume = 0, offset = 0): Message => ({ kind: 'syncWrite', epoch: 1, updateNumber, volume, offset, data: filled(blockBytes, updateNumber), restoredKnown: 0 });
    secondary.handle({ from: 1, to: 2, message: write(1) });
    secondary.handle({ from: 1, to: 2, message: write(2) });
    expect(secondary.handle({ from: 1, to: 2, message: write(3) }).notes).toEqual([{ kind: 'journalOverflow', site: 2, updateNumber: 3 }]);
    expect(thrown(() => secondary.handle({ from: 1, to: 2, message: write(4, 1) }))).toMatchObject({ field: 'syncWrite.volume' });
    const batch: Message = {
      kind: 'syncWriteBatch', epoch: 1,
      entries: [4, 5].map((u, i) => ({ updateNumber: u, volume: 0, offset: i * 4 * blockBytes, data: filled(blockBytes, u) })),
      restoredKnown: 0,
    };
    expect(thrown(() => secondary.handle({ from: 1, to: 2, message: batch }))).toMatchObject({ field: 'syncWriteBatch.entries[1].offset' });
  });

  it('a batch of host writes that passes the journal by bytes overflows it write by write (P7)', () => {
    const one = entryBytes({ updateNumber: 1, volume: 0, offset: 0, data: new Uint8Array(blockBytes) });
    const primary = makeSite(1, 16 * blockBytes, { journal: { entriesMax: 64, bytesMax: 3 * one } });
    primary.setSyncPair('suspended');
    const writes = (first: number, count: number) =>
      Array.from({ length: count }, (_, i) => ({ writeId: first + i, volume: 0, offset: (first + i) * blockBytes, data: filled(blockBytes, first + i) }));
    expect(primary.hostWrites(writes(1, 3)).notes.filter((note) => note.kind === 'journalOverflow')).toEqual([]);
    expect([primary.journal.first, primary.journal.last, primary.journal.bytes]).toEqual([1, 3, 3 * one]);
    expect(primary.hostWrites(writes(4, 2)).notes.filter((note) => note.kind === 'journalOverflow')).toEqual([{ kind: 'journalOverflow', site: 1, updateNumber: 4 }]);
    expect([primary.journal.first, primary.journal.last]).toEqual([4, 5]);
  });

  it('resync blocks come only from the peer the secondary asked', () => {
    const secondary = makeSite(2, 4 * blockBytes);
    secondary.requestResync();
    const copy: Message = { kind: 'copyBlocks', epoch: 1, purpose: 'resync', blocks: [], final: true, sourceLast: 0, restoredKnown: 0 };
    expect(thrown(() => secondary.handle({ from: 3, to: 2, message: copy }))).toBeInstanceOf(UnexpectedMessageError);
    expect(secondary.busy).toBe(true);
    expect(secondary.handle({ from: 1, to: 2, message: copy }).send[0]?.message).toEqual({ kind: 'copyAck', epoch: 1, purpose: 'resync', final: true });
    expect(secondary.busy).toBe(false);
  });
});
