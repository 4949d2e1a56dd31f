/**
 * One storage system driven directly, without a cluster: how a source cuts the batches of a pull and of a
 * delta resync (by the requester's entry and byte room and by the wire's batch limit, never a part of an
 * entry, always progress), and when a site saves its durable state (exactly when it changes).
 */

import { describe, expect, it } from 'vitest';
import { entryBytes, MemoryJournal } from '../../impl/journal.ts';
import { batchBytesMax, type DeltaResyncEntriesMessage, type Message, type PullEntriesMessage } from '../../impl/messages.ts';
import { StorageSystem, type SiteConfig, type SiteDurableState, type SiteId } from '../../impl/storage-system.ts';
import { MemoryVolume } from '../../impl/volume.ts';

const blockBytes = 4096;

/** A site over memory: one volume of `volumeBytes`, a journal of `entriesMax` entries and `bytesMax` bytes. */
function makeSite(id: SiteId, volumeBytes: number, saves: SiteDurableState[] | null = null, bytesMax = 64 * 1024 * 1024): StorageSystem {
  const config: SiteConfig = { id, volumeCount: 1, volumeBytes, blockBytes, fencePolicy: 'keepWriting', inFlightWritesMax: 16, flushEachWrite: false };
  const volumes = [new MemoryVolume(volumeBytes, blockBytes)];
  const save = saves === null ? null : (state: SiteDurableState) => saves.push(state);
  return new StorageSystem(config, volumes, new MemoryJournal({ entriesMax: 64, bytesMax }), null, save);
}

/**
 * A primary whose pair is suspended (so each write is acknowledged at once, none in flight) holding
 * `count` writes of `dataBytes` bytes each, at consecutive offsets of its one volume.
 */
function sourceWith(count: number, dataBytes: number): StorageSystem {
  const site = makeSite(1, Math.max(1, Math.ceil((count * dataBytes) / blockBytes)) * blockBytes);
  site.setSyncPair('suspended');
  for (let i = 0; i < count; i += 1) {
    const notes = site.hostWrite(i + 1, 0, i * dataBytes, new Uint8Array(dataBytes).fill(i + 1)).notes;
    expect(notes).toEqual([{ kind: 'hostWriteAcked', writeId: i + 1, updateNumber: i + 1, alone: true }]);
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
  const answer: PullEntriesMessage = sent(source, { kind: 'pullRequest', received: 0, restored: 0, entriesMax, bytesMax }, 'pullEntries');
  return answer.entries.map((entry) => entry.updateNumber);
}

/** The sizes of the batches of a whole delta resync from `source` with this room, and each batch's `final`. */
function deltaBatches(source: StorageSystem, entriesMax: number, bytesMax: number): { sizes: number[]; finals: boolean[] } {
  const sizes: number[] = [];
  const finals: boolean[] = [];
  let batch: DeltaResyncEntriesMessage = sent(source, { kind: 'deltaResyncRequest', received: 0, entriesMax, bytesMax }, 'deltaResyncEntries');
  let restored = 0;
  for (;;) {
    sizes.push(batch.entries.length);
    finals.push(batch.final);
    expect(batch.entries.map((entry) => entry.updateNumber)).toEqual(batch.entries.map((_, i) => restored + 1 + i));
    restored += batch.entries.length;
    const ack = { kind: 'deltaResyncAck', restored, final: batch.final } as const;
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
    const batch = sent(source, { kind: 'deltaResyncRequest', received: 2, entriesMax: 8, bytesMax: 64 * one }, 'deltaResyncEntries');
    expect(batch).toEqual({ kind: 'deltaResyncEntries', entries: [], sourceLast: 2, final: true });
  });
});

describe('the durable state is saved when it changes, and only then', () => {
  it('each command that changes the state saves it once; one that changes nothing saves nothing', () => {
    const saves: SiteDurableState[] = [];
    const site = makeSite(1, 4 * blockBytes, saves);
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
