/**
 * Epochs (fencing tokens) at one storage system, driven message by message: a site refuses a message of a
 * lower epoch with a typed StaleEpochError and applies nothing of it (nothing journaled, written, restored,
 * acknowledged, judged or saved); it adopts a higher one (and saves it); a primary that learns of a higher
 * epoch was deposed: its writes in flight fail, it refuses host writes with NotWritable `deposed` naming the
 * epoch, and it steps down until a controller gives it a role. Epochs survive a reopen of the site directory.
 */

import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import { NotWritableError, StaleEpochError } from '../../impl/core/errors.ts';
import { InvariantError } from '../../impl/core/invariant.ts';
import { MemoryJournal } from '../../impl/core/journal.ts';
import type { Message } from '../../impl/core/messages.ts';
import { epochInitial, StorageSystem, type SiteConfig, type SiteDurableState, type SiteId } from '../../impl/core/storage-system.ts';
import { MemoryVolume } from '../../impl/core/volume.ts';
import { openSite, siteConfigOf } from '../../impl/storage/site-open.ts';
import { StateFileError, writeStateFile } from '../../impl/storage/state-file.ts';

const blockBytes = 4096;
const volumeBytes = 4 * blockBytes;

/** A site over memory, recording each save of its durable state in `saves`. */
function makeSite(id: SiteId, saves: SiteDurableState[] = []): StorageSystem {
  const config: SiteConfig = { id, volumeCount: 1, volumeBytes, blockBytes, fencePolicy: 'keepWriting', inFlightWritesMax: 16, flushEachWrite: false };
  return new StorageSystem(config, [new MemoryVolume(volumeBytes, blockBytes)], new MemoryJournal({ entriesMax: 16, bytesMax: 1 << 20 }), null, (state) => saves.push(state));
}

const filled = (value: number): Uint8Array => new Uint8Array(blockBytes).fill(value);

function thrown(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  throw new Error('expected a refusal');
}

/** What a site shows of itself, to compare before and after a refused message. */
function snapshot(site: StorageSystem): unknown {
  return {
    state: { ...site.durableState(), changed: site.changed.count },
    journal: [site.journal.first, site.journal.last, site.journal.bytes],
    digest: site.digest(),
    inFlight: site.inFlightWrites,
    verdict: site.lastVerdict,
  };
}

/** A stale message is refused by epoch, and the site is exactly as it was, nothing saved. */
function refusedAsStale(site: StorageSystem, from: SiteId, message: Message, saves: SiteDurableState[]): StaleEpochError {
  const before = snapshot(site);
  const saved = saves.length;
  const error = thrown(() => site.handle({ from, to: site.id, message }));
  expect(error).toBeInstanceOf(StaleEpochError);
  expect(error).toMatchObject({ code: 'StaleEpoch', kind: message.kind, from, to: site.id, messageEpoch: message.epoch, epoch: site.epoch });
  site.saveIfDirty();
  expect(saves.length, 'nothing to save').toBe(saved);
  expect(snapshot(site)).toEqual(before);
  return error as StaleEpochError;
}

describe('a site refuses a message of a lower epoch and applies nothing of it', () => {
  it('a secondary refuses a sync write and a batch of an old epoch: nothing journaled or written, no answer', () => {
    const saves: SiteDurableState[] = [];
    const secondary = makeSite(2, saves);
    secondary.setEpoch(2);
    secondary.saveIfDirty();
    refusedAsStale(secondary, 1, { kind: 'syncWrite', epoch: 1, updateNumber: 1, volume: 0, offset: 0, data: filled(7), restoredKnown: 0 }, saves);
    refusedAsStale(secondary, 1, { kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 1, volume: 0, offset: 0, data: filled(7) }], restoredKnown: 0 }, saves);
    expect(secondary.journal.last).toBe(0);
    // The same write of the current epoch is taken (the refusal was the epoch's, not the write's).
    const answer = secondary.handle({ from: 1, to: 2, message: { kind: 'syncWrite', epoch: 2, updateNumber: 1, volume: 0, offset: 0, data: filled(7), restoredKnown: 0 } });
    expect(answer.send.map((envelope) => envelope.message)).toEqual([{ kind: 'syncWriteAck', epoch: 2, updateNumber: 1 }]);
  });

  it('site 3 refuses pulled entries, a delta batch and a verdict of an old epoch: nothing journaled, restored or recorded', () => {
    const saves: SiteDurableState[] = [];
    const three = makeSite(3, saves);
    three.setEpoch(5);
    three.saveIfDirty();
    const entries = [{ updateNumber: 1, volume: 0, offset: 0, data: filled(9) }];
    refusedAsStale(three, 1, { kind: 'pullEntries', epoch: 4, entries, servedAt: 0 }, saves);
    refusedAsStale(three, 1, { kind: 'deltaResyncEntries', epoch: 4, entries, sourceLast: 1, final: true }, saves);
    refusedAsStale(three, 1, { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'noUpdateRequired', remoteReceived: 0, sourceLast: 0 }, saves);
    refusedAsStale(three, 1, { kind: 'copyBlocks', epoch: 4, purpose: 'fullCopy', blocks: [], final: true, sourceLast: 9, restoredKnown: 0 }, saves);
    expect([three.received, three.restored, three.lastVerdict]).toEqual([0, 0, null]);
  });

  it('a source refuses a pull and a judge request of an old epoch: serves nothing, trims nothing, judges nothing', () => {
    const saves: SiteDurableState[] = [];
    const source = makeSite(1, saves);
    source.setSyncPair('suspended');
    source.hostWrite(1, 0, 0, filled(1));
    source.setEpoch(3);
    source.saveIfDirty();
    refusedAsStale(source, 3, { kind: 'pullRequest', epoch: 2, received: 0, restored: 0, entriesMax: 4, bytesMax: 1 << 20 }, saves);
    refusedAsStale(source, 3, { kind: 'judgeRequest', epoch: 2, purpose: 'reattach', received: 0 }, saves);
    refusedAsStale(source, 3, { kind: 'epochNotice', epoch: 2 }, saves);
    // The answer a controller sends the stale sender: this site's epoch.
    expect(source.epochNotice(3).send).toEqual([{ from: 1, to: 3, message: { kind: 'epochNotice', epoch: 3 } }]);
  });

  it('a primary refuses an acknowledgement of an old epoch: the write stays in flight, not acknowledged', () => {
    const primary = makeSite(1);
    const out = primary.hostWrite(1, 0, 0, filled(1));
    expect(out.send).toHaveLength(1);
    primary.setEpoch(2);
    refusedAsStale(primary, 2, { kind: 'syncWriteAck', epoch: 1, updateNumber: 1 }, []);
    expect(primary.inFlightWrites).toBe(1);
  });
});

describe('a site adopts a higher epoch', () => {
  it('a secondary and site 3 take a higher epoch from any message, save it, and send it from then on', () => {
    const saves: SiteDurableState[] = [];
    const secondary = makeSite(2, saves);
    expect(secondary.epoch).toBe(epochInitial);
    const answer = secondary.handle({ from: 1, to: 2, message: { kind: 'syncWrite', epoch: 4, updateNumber: 1, volume: 0, offset: 0, data: filled(3), restoredKnown: 0 } });
    expect(secondary.epoch).toBe(4);
    expect(answer.send[0]?.message).toEqual({ kind: 'syncWriteAck', epoch: 4, updateNumber: 1 });
    secondary.saveIfDirty();
    expect(saves.at(-1)?.epoch).toBe(4);
    expect(secondary.role).toBe('secondary');
    const three = makeSite(3);
    three.handle({ from: 2, to: 3, message: { kind: 'epochNotice', epoch: 6 } });
    expect(three.epoch).toBe(6);
    expect(three.requestPull(4).send[0]?.message).toMatchObject({ kind: 'pullRequest', epoch: 6 });
    // Never back: an equal or lower one changes nothing.
    expect(three.learnEpoch(5).notes).toEqual([]);
    expect(three.epoch).toBe(6);
  });

  it('a failed site learns nothing; a controller never lowers an epoch (an invariant)', () => {
    const site = makeSite(2);
    site.fail();
    expect(site.learnEpoch(9)).toEqual({ send: [], notes: [] });
    expect(site.epoch).toBe(epochInitial);
    site.setEpoch(3);
    expect(() => site.setEpoch(2)).toThrow(InvariantError);
  });
});

describe('a primary that learns of a higher epoch was deposed', () => {
  it('its writes in flight fail as deposed (not acknowledged), it steps down and refuses host writes naming the epoch', () => {
    const saves: SiteDurableState[] = [];
    const primary = makeSite(1, saves);
    const first = primary.hostWrites([
      { writeId: 1, volume: 0, offset: 0, data: filled(1) },
      { writeId: 2, volume: 0, offset: blockBytes, data: filled(2) },
    ]);
    expect(first.notes).toEqual([]);
    expect(primary.inFlightWrites).toBe(2);
    // Site 2 was promoted with epoch 2 while this site did not hear of it; its notice arrives.
    const out = primary.handle({ from: 2, to: 1, message: { kind: 'epochNotice', epoch: 2 } });
    expect(out.send).toEqual([]);
    expect(out.notes.map((note) => note.kind)).toEqual(['hostWriteFailed', 'hostWriteFailed']);
    for (const note of out.notes) {
      const error = (note as Extract<typeof note, { kind: 'hostWriteFailed' }>).error;
      expect(error).toBeInstanceOf(NotWritableError);
      expect(error).toMatchObject({ code: 'NotWritable', reason: 'deposed', epoch: 2, site: 1 });
      expect(error.message).toMatch(/deposed: epoch 2/);
    }
    expect(primary.inFlightWrites).toBe(0);
    expect(primary.ackedAlone).toBe(0);
    // Its peer never took these writes: they are in its changed-block record for the resync.
    expect(primary.changed.count).toBe(2);
    expect([primary.role, primary.syncPair, primary.epoch, primary.deposedBy]).toEqual(['secondary', 'suspended', 2, 2]);
    expect(primary.writeRefusal()).toBe('deposed');
    const refusal = primary.notWritable('deposed');
    expect(refusal).toMatchObject({ code: 'NotWritable', reason: 'deposed', epoch: 2, host: 1 });
    primary.saveIfDirty();
    expect(saves.at(-1)).toMatchObject({ epoch: 2, role: 'secondary', syncPair: 'suspended' });
    // A late acknowledgement of the old epoch acknowledges nothing.
    expect(thrown(() => primary.handle({ from: 2, to: 1, message: { kind: 'syncWriteAck', epoch: 1, updateNumber: 2 } }))).toBeInstanceOf(StaleEpochError);
    // The operator gives it a role again: deposed no more (a secondary: not writable, for that reason).
    primary.setRole('secondary');
    expect([primary.deposedBy, primary.writeRefusal()]).toEqual([null, 'notPrimary']);
  });

  it('with its pair suspended (writing alone), it stops at the first higher epoch it hears of', () => {
    const primary = makeSite(1);
    primary.setSyncPair('suspended');
    expect(primary.hostWrite(1, 0, 0, filled(1)).notes).toMatchObject([{ kind: 'hostWriteAcked', alone: true }]);
    // The notice of a higher epoch comes with a message this site then refuses for its own reasons: the epoch is learnt anyway.
    const learned = primary.learnEpoch(3);
    expect(learned.notes).toEqual([]);
    expect(primary.writeRefusal()).toBe('deposed');
    expect(primary.notWritable(primary.writeRefusal() ?? 'failed').epoch).toBe(3);
  });

  it('a secondary or site 3 that learns of a higher epoch is not deposed', () => {
    for (const id of [2, 3] as const) {
      const site = makeSite(id);
      site.learnEpoch(2);
      expect(site.deposedBy).toBeNull();
      expect(site.role).toBe(id === 2 ? 'secondary' : 'remote');
    }
  });
});

describe('epochs in the site state file', () => {
  const config = siteConfigOf(2, { volumeCount: 1, volumeBytes, blockBytes, fencePolicy: 'keepWriting', inFlightWritesMax: 16 }, false);
  const limits = { entriesMax: 16, bytesMax: 1 << 20 };

  it('survive a reopen; a file from before epochs reads as the initial epoch; a bad one is refused at the boundary', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'threesite-epochs-'));
    try {
      const site = openSite(config, limits, { kind: 'file', dir, reopen: false });
      site.learnEpoch(7);
      site.close();
      const again = openSite(config, limits, { kind: 'file', dir, reopen: true });
      expect(again.epoch).toBe(7);
      again.close();
      const file = path.join(dir, 'state.json');
      const stored = JSON.parse(fs.readFileSync(file, 'utf8')) as { format: string; value: Record<string, unknown> };
      const rewrite = (epoch: unknown): void => {
        const value = { ...stored.value, epoch };
        if (epoch === undefined) delete value.epoch;
        // Written as the site writes it (checksummed), so only the epoch is in question.
        writeStateFile(file, stored.format, value);
      };
      rewrite(undefined);
      const old = openSite(config, limits, { kind: 'file', dir, reopen: true });
      expect(old.epoch).toBe(epochInitial);
      old.close();
      for (const bad of [0, -1, 1.5, '3', Number.MAX_SAFE_INTEGER + 1, null]) {
        rewrite(bad);
        expect(() => openSite(config, limits, { kind: 'file', dir, reopen: true }), `epoch ${String(bad)}`).toThrow(StateFileError);
      }
      rewrite(Number.MAX_SAFE_INTEGER);
      const largest = openSite(config, limits, { kind: 'file', dir, reopen: true });
      expect(largest.epoch).toBe(Number.MAX_SAFE_INTEGER);
      largest.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
