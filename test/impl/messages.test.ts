/**
 * Messages between sites: the wire encoding round-trips every message; arbitrary bytes and arbitrary JSON
 * are refused with MalformedMessageError and never crash a site nor change its observation; every
 * malformed field is refused by name; a well-formed message out of order or out of context is refused with
 * a typed error and changes nothing.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Cluster, type ClusterConfig } from '../../impl/cluster/cluster.ts';
import { MalformedMessageError, OutOfOrderError, RefusalError, UnexpectedMessageError } from '../../impl/core/errors.ts';
import {
  batchItemsMax,
  decodeMessage,
  encodeMessage,
  messageBytesMax,
  messageKinds,
  epochMax,
  validateMessage,
  type Message,
} from '../../impl/core/messages.ts';
import { verifyChunkBytesMax, verifyChunkDigestBytesMax, verifyDigestBytes, verifyReasonCharsMax } from '../../impl/core/verify.ts';

const config: ClusterConfig = {
  volumeCount: 2,
  volumeBytes: 4 * 4096,
  blockBytes: 4096,
  journal: { entriesMax: 8, bytesMax: 8 * 8192 },
  pullBatchEntriesMax: 4,
  pullIntervalTicks: 1,
  restoreIntervalTicks: 1,
  fencePolicy: 'keepWriting',
  storage: { kind: 'memory' },
};

/** A cluster with some history: writes on both sync members, a pull, so every site has state to lose. */
function busyCluster(): Cluster {
  const cluster = Cluster.create(config);
  cluster.hostWrite(1, 0, 0, new Uint8Array(4096).fill(1));
  cluster.hostWrite(1, 1, 4096, new Uint8Array(4096).fill(2));
  cluster.pullJournal();
  cluster.hostWrite(1, 0, 8192, new Uint8Array(4096).fill(3));
  return cluster;
}

const u = fc.integer({ min: 1, max: 2 ** 40 });
/** An epoch: small, large, and the largest (epochMax). */
const epoch = fc.oneof(fc.integer({ min: 1, max: 2 ** 40 }), fc.constant(epochMax));
const n = fc.nat({ max: 2 ** 40 });
const bytes = fc.uint8Array({ maxLength: 64 });
const entry = fc.record({ updateNumber: u, volume: fc.nat({ max: 3 }), offset: n, data: bytes });
const entries = fc
  .tuple(u, fc.array(fc.record({ volume: fc.nat({ max: 3 }), offset: n, data: bytes }), { maxLength: 5 }))
  .map(([first, list]) => list.map((item, i) => ({ updateNumber: first + i, ...item })));
const block = fc.record({ volume: fc.nat({ max: 3 }), offset: n, data: fc.uint8Array({ minLength: 1, maxLength: 64 }) });
const purpose = fc.constantFrom('failover', 'failback', 'reattach' as const);

/** Every kind of message, well formed. */
const messageArbitrary: fc.Arbitrary<Message> = fc.oneof(
  fc.record({ kind: fc.constant('epochNotice' as const), epoch }),
  fc.record({ kind: fc.constant('syncWrite' as const), epoch, updateNumber: u, volume: fc.nat({ max: 3 }), offset: n, data: bytes, restoredKnown: n }),
  fc.record({ kind: fc.constant('syncWriteAck' as const), epoch, updateNumber: u }),
  fc.record({ kind: fc.constant('syncWriteBatch' as const), epoch, entries, restoredKnown: n }).filter((m) => m.entries.length > 0),
  fc.record({ kind: fc.constant('flushRequest' as const), epoch, token: u, updateNumber: n }),
  fc.record({ kind: fc.constant('flushAck' as const), epoch, token: u, updateNumber: n }),
  fc
    .record({ kind: fc.constant('pullRequest' as const), epoch, received: n, restored: n, entriesMax: fc.nat({ max: batchItemsMax }), bytesMax: n })
    .map((m) => ({ ...m, restored: Math.min(m.restored, m.received) })),
  fc.record({ kind: fc.constant('pullEntries' as const), epoch, entries, servedAt: fc.integer({ min: 0, max: 2 ** 43 }).map((quarters) => quarters / 4) }),
  fc.record({ kind: fc.constant('judgeRequest' as const), epoch, purpose, received: n }),
  fc.record({
    kind: fc.constant('verdict' as const), epoch,
    purpose,
    verdict: fc.constantFrom('noUpdateRequired', 'deltaResync', 'fullCopy', 'remoteAhead' as const),
    remoteReceived: n,
    sourceLast: n,
  }),
  fc.record({ kind: fc.constant('deltaResyncRequest' as const), epoch, received: n, entriesMax: fc.integer({ min: 1, max: batchItemsMax }), bytesMax: u }),
  fc
    .record({ kind: fc.constant('deltaResyncEntries' as const), epoch, entries, final: fc.boolean(), extra: fc.nat({ max: 10 }) })
    .map(({ extra, ...m }) => {
      const last = m.entries[m.entries.length - 1]?.updateNumber ?? extra;
      return { ...m, sourceLast: m.final ? last : last + extra };
    }),
  fc
    .record({ kind: fc.constant('deltaResyncAck' as const), epoch, received: n, restored: n, final: fc.boolean() })
    .map((m) => ({ ...m, restored: Math.min(m.restored, m.received) })),
  fc.record({ kind: fc.constant('deltaResyncRefused' as const), epoch, received: n, journalFirst: u, sourceLast: n }),
  fc.record({ kind: fc.constant('pullRefused' as const), epoch, received: n, journalFirst: u }),
  fc.record({ kind: fc.constant('fullCopyRequest' as const), epoch }),
  fc.record({ kind: fc.constant('resyncRequest' as const), epoch, changed: fc.array(bytes, { maxLength: 4 }) }),
  fc.record({
    kind: fc.constant('copyBlocks' as const), epoch,
    purpose: fc.constantFrom('fullCopy', 'resync' as const),
    blocks: fc.array(block, { maxLength: 4 }),
    final: fc.boolean(),
    sourceLast: n,
    restoredKnown: n,
  }),
  fc.record({ kind: fc.constant('copyAck' as const), epoch, purpose: fc.constantFrom('fullCopy', 'resync' as const), final: fc.boolean() }),
  fc.record({ kind: fc.constant('verifyMarker' as const), epoch, verifyId: u, volume: fc.nat({ max: 3 }), offset: n, length: fc.integer({ min: 1, max: verifyChunkBytesMax }), updateNumber: n }),
  fc.record({
    kind: fc.constant('verifyDigests' as const), epoch,
    verifyId: u,
    volume: fc.nat({ max: 3 }),
    offset: n,
    length: fc.integer({ min: 1, max: verifyChunkBytesMax }),
    updateNumber: n,
    answer: fc.oneof(
      fc.integer({ min: 1, max: 8 }).chain((k) => fc.uint8Array({ minLength: k * verifyDigestBytes, maxLength: k * verifyDigestBytes })).map((digests) => ({ digests, reason: '' })),
      fc.string({ minLength: 1, maxLength: verifyReasonCharsMax }).map((reason) => ({ digests: new Uint8Array(0), reason })),
    ),
  }).map(({ answer, ...m }) => ({ ...m, ...answer })),
);

/** Byte arrays compared by content (decoded arrays are views into the input). */
function plain(value: unknown): unknown {
  if (value instanceof Uint8Array) return { bytes: [...value] };
  if (Array.isArray(value)) return value.map(plain);
  if (typeof value === 'object' && value !== null) return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v)]));
  return value;
}

/** Wraps any header text into the wire format, with an optional payload. */
function frame(header: string, payload = new Uint8Array()): Uint8Array {
  const text = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + text.length + payload.length);
  const view = new DataView(out.buffer);
  view.setUint32(0, 0x314d5354, true);
  view.setUint32(4, text.length, true);
  out.set(text, 8);
  out.set(payload, 8 + text.length);
  return out;
}

describe('message encoding', () => {
  it('round-trips every well-formed message', () => {
    fc.assert(
      fc.property(messageArbitrary, (message) => {
        expect(plain(decodeMessage(encodeMessage(message)))).toEqual(plain(message));
      }),
      { numRuns: 500 },
    );
  });

  it('covers every message kind', () => {
    const seen = new Set<string>();
    fc.assert(fc.property(messageArbitrary, (message) => void seen.add(message.kind)), { numRuns: 2000 });
    expect([...seen].sort()).toEqual([...messageKinds].sort());
  });

  it('refuses arbitrary bytes with MalformedMessageError only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 256 }), (input) => {
        expect(() => decodeMessage(input)).toThrow(MalformedMessageError);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses arbitrary JSON headers with MalformedMessageError only', () => {
    fc.assert(
      fc.property(fc.jsonValue(), fc.uint8Array({ maxLength: 16 }), (value, payload) => {
        expect(() => decodeMessage(frame(JSON.stringify(value) ?? 'null', payload))).toThrow(MalformedMessageError);
        expect(() => validateMessage(value)).toThrow(MalformedMessageError);
      }),
      { numRuns: 1000 },
    );
  });

  it('refuses a damaged encoding: truncated, extended, bad magic, bad header length, byte references that lie', () => {
    const good = encodeMessage({ kind: 'syncWrite', epoch: 1, updateNumber: 1, volume: 0, offset: 0, data: new Uint8Array([1, 2, 3]), restoredKnown: 0 });
    const cases: [string, Uint8Array][] = [
      ['truncated payload', good.subarray(0, good.length - 1)],
      ['extra payload', new Uint8Array([...good, 9])],
      ['bad magic', new Uint8Array([0, ...good.subarray(1)])],
      ['short prefix', good.subarray(0, 5)],
      ['header length past the end', (() => {
        const copy = good.slice();
        new DataView(copy.buffer).setUint32(4, 1 << 20, true);
        return copy;
      })()],
      ['invalid UTF-8', frame('\u0000').map((b, i) => (i === 8 ? 0xff : b))],
      ['not JSON', frame('{"kind":')],
      ['reference with a gap', frame('{"kind":"syncWrite","updateNumber":1,"volume":0,"offset":0,"data":{"$bytes":[1,2]},"restoredKnown":0}', new Uint8Array(3))],
      ['reference past the payload', frame('{"kind":"syncWrite","updateNumber":1,"volume":0,"offset":0,"data":{"$bytes":[0,9]},"restoredKnown":0}', new Uint8Array(3))],
      ['reference with extra keys', frame('{"kind":"syncWrite","updateNumber":1,"volume":0,"offset":0,"data":{"$bytes":[0,3],"x":1},"restoredKnown":0}', new Uint8Array(3))],
      ['reference not a pair', frame('{"kind":"syncWrite","updateNumber":1,"volume":0,"offset":0,"data":{"$bytes":[0]},"restoredKnown":0}', new Uint8Array(3))],
    ];
    for (const [name, input] of cases) expect(() => decodeMessage(input), name).toThrow(MalformedMessageError);
  });

  it('the binary layout of the hot messages: any byte changed, cut or added is refused as malformed or decodes to a valid message', () => {
    const hot = fc.oneof(
      fc.record({ kind: fc.constant('syncWrite' as const), epoch, updateNumber: u, volume: fc.nat({ max: 3 }), offset: n, data: bytes, restoredKnown: n }),
      fc.record({ kind: fc.constant('syncWriteAck' as const), epoch, updateNumber: u }),
      fc.record({ kind: fc.constant('syncWriteBatch' as const), epoch, entries, restoredKnown: n }).filter((m) => m.entries.length > 0),
      fc.record({ kind: fc.constant('pullEntries' as const), epoch, entries, servedAt: fc.integer({ min: 0, max: 2 ** 43 }).map((quarters) => quarters / 4) }),
      fc.record({ kind: fc.constant('flushRequest' as const), epoch, token: u, updateNumber: n }),
      fc.record({ kind: fc.constant('flushAck' as const), epoch, token: u, updateNumber: n }),
    );
    fc.assert(
      fc.property(hot, fc.nat(), fc.integer({ min: 1, max: 255 }), fc.constantFrom('flip', 'cut', 'add'), (message, position, mask, how) => {
        const good = encodeMessage(message as Message);
        expect(new DataView(good.buffer).getUint32(0, true)).toBe(0x32425354);
        const at = position % good.length;
        const damaged =
          how === 'flip' ? good.map((b, i) => (i === at ? b ^ mask : b)) : how === 'cut' ? good.subarray(0, at) : new Uint8Array([...good, mask]);
        let decoded: Message | null = null;
        try {
          decoded = decodeMessage(damaged);
        } catch (error) {
          expect(error).toBeInstanceOf(MalformedMessageError);
          return;
        }
        expect(how).toBe('flip');
        expect(plain(validateMessage(decoded))).toEqual(plain(decoded));
      }),
      { numRuns: 2000 },
    );
    const batch = encodeMessage({ kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 1, volume: 0, offset: 0, data: new Uint8Array(3) }], restoredKnown: 0 });
    const huge = batch.slice();
    new DataView(huge.buffer).setUint32(24, batchItemsMax + 1, true);
    expect(() => decodeMessage(huge)).toThrow(/items exceed/);
    const empty = batch.slice(0, 28);
    new DataView(empty.buffer).setUint32(24, 0, true);
    expect(() => decodeMessage(empty)).toThrow(/at least one write/);
    const unsafe = batch.slice();
    new DataView(unsafe.buffer).setUint32(20, 0xffffffff, true);
    expect(() => decodeMessage(unsafe)).toThrow(/safe integer/);
  });

  it('the flush pair: 32 bytes each (magic, kind 5 or 6, epoch, token, update number); a token of 0, an unsafe number, a cut or a longer frame are malformed', () => {
    for (const [kind, code] of [['flushRequest', 5], ['flushAck', 6]] as const) {
      const good = encodeMessage({ kind, epoch: 3, token: 7, updateNumber: 2 ** 40 });
      expect(good.length).toBe(32);
      const view = new DataView(good.buffer);
      expect([view.getUint32(0, true), view.getUint32(4, true), view.getUint32(8, true), view.getUint32(16, true), view.getUint32(24, true), view.getUint32(28, true)]).toEqual([
        0x32425354,
        code,
        3,
        7,
        0,
        2 ** 8,
      ]);
      expect(decodeMessage(good)).toEqual({ kind, epoch: 3, token: 7, updateNumber: 2 ** 40 });
      const zeroToken = good.slice();
      new DataView(zeroToken.buffer).setUint32(16, 0, true);
      expect(() => decodeMessage(zeroToken), kind).toThrow(new RegExp(`${kind}\\.token: must be >= 1`));
      const unsafe = good.slice();
      new DataView(unsafe.buffer).setUint32(28, 0x00200000, true);
      expect(() => decodeMessage(unsafe), kind).toThrow(new RegExp(`${kind}\\.updateNumber: must be a safe integer`));
      expect(() => decodeMessage(good.subarray(0, 31)), kind).toThrow(/data length mismatch/);
      expect(() => decodeMessage(new Uint8Array([...good, 0])), kind).toThrow(/data length mismatch/);
      // The JSON layout of the same message is read too, and checked the same way.
      expect(() => validateMessage({ kind, epoch: 3, token: 0, updateNumber: 1 })).toThrow(new RegExp(`${kind}\\.token`));
    }
    const unknown = encodeMessage({ kind: 'flushAck', epoch: 1, token: 1, updateNumber: 1 }).slice();
    new DataView(unknown.buffer).setUint32(4, 7, true);
    expect(() => decodeMessage(unknown)).toThrow(/binary kind code 7/);
  });

  it('refuses an oversize message before reading it', () => {
    expect(() => decodeMessage(new Uint8Array(messageBytesMax + 1))).toThrow(/exceed messageBytesMax/);
    const huge: Message = {
      kind: 'pullEntries', epoch: 1,
      entries: Array.from({ length: 5 }, (_, i) => ({ updateNumber: i + 1, volume: 0, offset: 0, data: new Uint8Array(4 * 1024 * 1024) })),
      servedAt: 0,
    };
    expect(() => encodeMessage(huge)).toThrow(MalformedMessageError);
  });
});

describe('the epoch every message carries', () => {
  const binary: Message[] = [
    { kind: 'syncWrite', epoch: 1, updateNumber: 3, volume: 1, offset: 4096, data: new Uint8Array(4), restoredKnown: 1 },
    { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 },
    { kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 5, volume: 0, offset: 0, data: new Uint8Array(2) }], restoredKnown: 1 },
    { kind: 'pullEntries', epoch: 1, entries: [{ updateNumber: 5, volume: 0, offset: 0, data: new Uint8Array(2) }], servedAt: 0 },
    { kind: 'flushRequest', epoch: 1, token: 1, updateNumber: 0 },
    { kind: 'flushAck', epoch: 1, token: 2, updateNumber: 9 },
  ];
  const json: Message[] = [
    { kind: 'epochNotice', epoch: 1 },
    { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'deltaResync', remoteReceived: 4, sourceLast: 6 },
  ];

  it('round-trips at its bounds, 1 and epochMax, in the binary and the JSON layouts', () => {
    for (const message of [...binary, ...json]) {
      for (const epoch of [1, 2, epochMax]) {
        const decoded = decodeMessage(encodeMessage({ ...message, epoch }));
        expect(decoded.kind).toBe(message.kind);
        expect(decoded.epoch).toBe(epoch);
      }
    }
  });

  it('refuses an epoch below 1 or above epochMax, or missing, by its field, in both layouts', () => {
    for (const message of [...binary, ...json]) {
      for (const epoch of [0, -1, epochMax + 1, 1.5, '2']) {
        expect(() => validateMessage({ ...message, epoch }), `${message.kind} epoch ${epoch}`).toThrow(new RegExp(`${message.kind}\\.epoch`));
      }
      const { epoch: _dropped, ...missing } = message;
      expect(() => validateMessage(missing), `${message.kind} without an epoch`).toThrow(/epoch: missing/);
    }
    // The binary layout: the u64 at offset 8 is the epoch; 0 and past 2^53 are refused.
    for (const message of binary) {
      const zero = encodeMessage(message).slice();
      new DataView(zero.buffer).setUint32(8, 0, true);
      expect(() => decodeMessage(zero), message.kind).toThrow(/epoch/);
      const unsafe = encodeMessage(message).slice();
      new DataView(unsafe.buffer).setUint32(12, 0x00200000, true);
      expect(() => decodeMessage(unsafe), message.kind).toThrow(/epoch: must be a safe integer/);
    }
  });

  it('refuses the layout before epochs (magic TSB1) as malformed', () => {
    const old = encodeMessage(binary[1] as Message).slice();
    new DataView(old.buffer).setUint32(0, 0x31425354, true);
    expect(() => decodeMessage(old)).toThrow(/magic/);
  });
});

describe('message validation, field by field', () => {
  const samples: Message[] = [
    { kind: 'syncWrite', epoch: 1, updateNumber: 3, volume: 1, offset: 4096, data: new Uint8Array(4), restoredKnown: 1 },
    { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 },
    { kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 5, volume: 0, offset: 0, data: new Uint8Array(2) }], restoredKnown: 1 },
    { kind: 'flushRequest', epoch: 1, token: 4, updateNumber: 3 },
    { kind: 'flushAck', epoch: 1, token: 4, updateNumber: 3 },
    { kind: 'pullRequest', epoch: 1, received: 4, restored: 2, entriesMax: 4, bytesMax: 1000 },
    { kind: 'pullEntries', epoch: 1, entries: [{ updateNumber: 5, volume: 0, offset: 0, data: new Uint8Array(2) }], servedAt: 1764672000123.25 },
    { kind: 'judgeRequest', epoch: 1, purpose: 'failover', received: 4 },
    { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'deltaResync', remoteReceived: 4, sourceLast: 6 },
    { kind: 'deltaResyncRequest', epoch: 1, received: 4, entriesMax: 2, bytesMax: 1000 },
    { kind: 'deltaResyncEntries', epoch: 1, entries: [{ updateNumber: 5, volume: 0, offset: 0, data: new Uint8Array(2) }], sourceLast: 5, final: true },
    { kind: 'deltaResyncAck', epoch: 1, received: 5, restored: 2, final: false },
    { kind: 'deltaResyncRefused', epoch: 1, received: 1, journalFirst: 4, sourceLast: 6 },
    { kind: 'pullRefused', epoch: 1, received: 1, journalFirst: 4 },
    { kind: 'fullCopyRequest', epoch: 1 },
    { kind: 'resyncRequest', epoch: 1, changed: [new Uint8Array(1)] },
    { kind: 'copyBlocks', epoch: 1, purpose: 'resync', blocks: [{ volume: 0, offset: 0, data: new Uint8Array(8) }], final: true, sourceLast: 3, restoredKnown: 1 },
    { kind: 'copyAck', epoch: 1, purpose: 'fullCopy', final: true },
    { kind: 'epochNotice', epoch: 7 },
    { kind: 'verifyMarker', epoch: 1, verifyId: 2, volume: 1, offset: 4096, length: 8192, updateNumber: 9 },
    { kind: 'verifyDigests', epoch: 1, verifyId: 2, volume: 1, offset: 4096, length: 8192, updateNumber: 9, digests: new Uint8Array(2 * verifyDigestBytes), reason: '' },
  ];

  it('refuses a verify range that is empty or longer than a chunk, digests that are not whole, too many or with a reason, and a reason too long', () => {
    const marker = { kind: 'verifyMarker', epoch: 1, verifyId: 1, volume: 0, offset: 0, length: 4096, updateNumber: 3 };
    expect(() => validateMessage({ ...marker, length: 0 })).toThrow(/verifyMarker.length: must be >= 1/);
    expect(() => validateMessage({ ...marker, length: verifyChunkBytesMax + 1 })).toThrow(/verifyMarker.length: must be <=/);
    expect(() => validateMessage({ ...marker, verifyId: 0 })).toThrow(/verifyMarker.verifyId/);
    expect(plain(validateMessage({ ...marker, length: verifyChunkBytesMax }))).toEqual(plain({ ...marker, length: verifyChunkBytesMax }));
    const digests = { ...marker, kind: 'verifyDigests', digests: new Uint8Array(verifyDigestBytes), reason: '' };
    expect(() => validateMessage({ ...digests, digests: new Uint8Array(verifyDigestBytes + 1) })).toThrow(/not whole 16-byte digests/);
    expect(() => validateMessage({ ...digests, digests: new Uint8Array(verifyChunkDigestBytesMax + verifyDigestBytes) })).toThrow(/verifyDigests.digests: .* exceed/);
    expect(plain(validateMessage({ ...digests, digests: new Uint8Array(verifyChunkDigestBytesMax) }))).toEqual(plain({ ...digests, digests: new Uint8Array(verifyChunkDigestBytesMax) }));
    expect(() => validateMessage({ ...digests, reason: 'both' })).toThrow(/either digests or a reason/);
    expect(() => validateMessage({ ...digests, digests: new Uint8Array(0) })).toThrow(/either digests or a reason/);
    expect(() => validateMessage({ ...digests, digests: new Uint8Array(0), reason: 'x'.repeat(verifyReasonCharsMax + 1) })).toThrow(/verifyDigests.reason: 201 characters exceed 200/);
    expect(plain(validateMessage({ ...digests, digests: new Uint8Array(0), reason: 'x'.repeat(verifyReasonCharsMax) }))).toEqual(plain({ ...digests, digests: new Uint8Array(0), reason: 'x'.repeat(verifyReasonCharsMax) }));
    // On the wire too: a frame whose digests are cut short is malformed.
    const wire = encodeMessage({ kind: 'verifyDigests', epoch: 1, verifyId: 1, volume: 0, offset: 0, length: 4096, updateNumber: 3, digests: new Uint8Array(verifyDigestBytes), reason: '' });
    expect(() => decodeMessage(wire.subarray(0, wire.length - 1))).toThrow(MalformedMessageError);
  });

  it('accepts every sample', () => {
    for (const sample of samples) expect(plain(validateMessage(sample))).toEqual(plain(sample));
  });

  it('refuses each field of each kind when missing, of the wrong type, negative or fractional, and unknown fields', () => {
    const bad: unknown[] = [undefined, -1, 1.5, 'x', null, true, {}, [], Number.MAX_SAFE_INTEGER + 2];
    for (const sample of samples) {
      expect(() => validateMessage({ ...sample, surplus: 1 }), `${sample.kind} surplus`).toThrow(/surplus: unknown field/);
      for (const field of Object.keys(sample).filter((key) => key !== 'kind')) {
        const original = (sample as unknown as Record<string, unknown>)[field];
        for (const value of bad) {
          // Skip the values that are valid for this field: an empty list, a boolean for a boolean.
          if (Array.isArray(original) && Array.isArray(value)) continue;
          if (typeof original === 'boolean' && typeof value === 'boolean') continue;
          // A time (pullEntries.servedAt) has sub-millisecond fractions.
          if (field === 'servedAt' && value === 1.5) continue;
          const mutated: Record<string, unknown> = { ...sample, [field]: value };
          if (value === undefined) delete mutated[field];
          let error: unknown = null;
          try {
            validateMessage(mutated);
          } catch (caught) {
            error = caught;
          }
          if (error === null) {
            expect.fail(`${sample.kind}.${field} = ${JSON.stringify(value)} was accepted`);
          }
          expect(error, `${sample.kind}.${field}`).toBeInstanceOf(MalformedMessageError);
          expect((error as MalformedMessageError).field, `${sample.kind}.${field}`).toContain(field);
        }
      }
    }
  });

  it('refuses an unknown kind, a non-object, a gap in a batch, restored beyond received, a final batch short of sourceLast', () => {
    expect(() => validateMessage({ kind: 'launchMissiles' })).toThrow(/kind/);
    expect(() => validateMessage('syncWrite')).toThrow(MalformedMessageError);
    const gap = { kind: 'pullEntries', epoch: 1, entries: [1, 3].map((updateNumber) => ({ updateNumber, volume: 0, offset: 0, data: new Uint8Array(1) })), servedAt: 0 };
    expect(() => validateMessage(gap)).toThrow(/without a gap/);
    expect(() => validateMessage({ kind: 'pullRequest', epoch: 1, received: 1, restored: 2, entriesMax: 1, bytesMax: 1 })).toThrow(/P2/);
    expect(() => validateMessage({ kind: 'deltaResyncAck', epoch: 1, received: 1, restored: 2, final: false })).toThrow(/deltaResyncAck.restored.*P2/);
    const short = { kind: 'deltaResyncEntries', epoch: 1, entries: [{ updateNumber: 5, volume: 0, offset: 0, data: new Uint8Array(1) }], sourceLast: 6, final: true };
    expect(() => validateMessage(short)).toThrow(/final/);
    expect(() => validateMessage({ kind: 'pullEntries', epoch: 1, entries: Array.from({ length: batchItemsMax + 1 }, () => ({})), servedAt: 0 })).toThrow(/exceed/);
    expect(() => validateMessage({ kind: 'pullEntries', epoch: 1, entries: [], servedAt: -1 })).toThrow(/servedAt/);
    expect(() => validateMessage({ kind: 'pullEntries', epoch: 1, entries: [], servedAt: Number.POSITIVE_INFINITY })).toThrow(/servedAt/);
  });
});

describe('a site receiving untrusted input', () => {
  it('never crashes and never changes its observation on arbitrary bytes', () => {
    const cluster = busyCluster();
    const before = cluster.observe();
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 3 as const), fc.constantFrom(1, 2, 3 as const), fc.uint8Array({ maxLength: 200 }), (from, to, input) => {
        fc.pre(from !== to);
        expect(() => cluster.deliverBytes(from, to, input)).toThrow(RefusalError);
        expect(cluster.observe()).toEqual(before);
      }),
      { numRuns: 300 },
    );
  });

  it('never crashes and never changes its observation on arbitrary JSON', () => {
    const cluster = busyCluster();
    const before = cluster.observe();
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 3 as const), fc.jsonValue(), (to, value) => {
        const from = to === 1 ? 2 : 1;
        expect(() => cluster.deliverBytes(from, to, frame(JSON.stringify(value) ?? 'null'))).toThrow(RefusalError);
        expect(cluster.observe()).toEqual(before);
      }),
      { numRuns: 300 },
    );
  });

  it('refuses well-formed messages that are out of context, changing nothing', () => {
    const cluster = busyCluster();
    const before = cluster.observe();
    const wire = (message: Message): Uint8Array => encodeMessage(message);
    const cases: [string, 1 | 2 | 3, 1 | 2 | 3, Message][] = [
      ['any well-formed message to its sender', 3, 3, { kind: 'fullCopyRequest', epoch: 1 }],
      ['sync write from site 3', 3, 2, { kind: 'syncWrite', epoch: 1, updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096), restoredKnown: 0 }],
      ['sync write to the primary', 2, 1, { kind: 'syncWrite', epoch: 1, updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096), restoredKnown: 0 }],
      ['acknowledgement of nothing in flight', 2, 1, { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 }],
      ['pull served by the secondary', 3, 2, { kind: 'pullRequest', epoch: 1, received: 0, restored: 0, entriesMax: 1, bytesMax: 100000 }],
      ['pull entries from the secondary', 2, 3, { kind: 'pullEntries', epoch: 1, entries: [], servedAt: 0 }],
      ['copy blocks with no copy under way', 1, 3, { kind: 'copyBlocks', epoch: 1, purpose: 'fullCopy', blocks: [], final: true, sourceLast: 9, restoredKnown: 0 }],
      ['resync blocks with no resync under way', 1, 2, { kind: 'copyBlocks', epoch: 1, purpose: 'resync', blocks: [], final: true, sourceLast: 9, restoredKnown: 0 }],
      ['copy acknowledgement with no copy', 3, 1, { kind: 'copyAck', epoch: 1, purpose: 'fullCopy', final: true }],
      ['delta entries not asked for', 1, 3, { kind: 'deltaResyncEntries', epoch: 1, entries: [], sourceLast: 3, final: true }],
      ['delta acknowledgement with no delta resync', 3, 1, { kind: 'deltaResyncAck', epoch: 1, received: 3, restored: 3, final: true }],
      ['resync request from the primary', 1, 2, { kind: 'resyncRequest', epoch: 1, changed: [new Uint8Array(1), new Uint8Array(1)] }],
      ['judge request from a sync member', 1, 2, { kind: 'judgeRequest', epoch: 1, purpose: 'reattach', received: 0 }],
      ['verdict to a sync member', 3, 1, { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'fullCopy', remoteReceived: 0, sourceLast: 0 }],
      // One row per condition of each handler's guard: the wrong receiver, the wrong sender, the wrong role.
      ['sync write to site 3', 1, 3, { kind: 'syncWrite', epoch: 1, updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096), restoredKnown: 0 }],
      ['sync write batch to site 3', 1, 3, { kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096) }], restoredKnown: 0 }],
      ['sync write batch from site 3', 3, 2, { kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096) }], restoredKnown: 0 }],
      ['sync write batch to the primary', 2, 1, { kind: 'syncWriteBatch', epoch: 1, entries: [{ updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096) }], restoredKnown: 0 }],
      ['acknowledgement to site 3', 1, 3, { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 }],
      ['acknowledgement from site 3', 3, 1, { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 }],
      ['acknowledgement to the secondary', 1, 2, { kind: 'syncWriteAck', epoch: 1, updateNumber: 3 }],
      ['pull request to site 3', 1, 3, { kind: 'pullRequest', epoch: 1, received: 0, restored: 0, entriesMax: 1, bytesMax: 100000 }],
      ['pull request from a sync member', 2, 1, { kind: 'pullRequest', epoch: 1, received: 0, restored: 0, entriesMax: 1, bytesMax: 100000 }],
      ['pull entries to a sync member', 1, 2, { kind: 'pullEntries', epoch: 1, entries: [], servedAt: 0 }],
      ['judge request to site 3', 1, 3, { kind: 'judgeRequest', epoch: 1, purpose: 'reattach', received: 0 }],
      ['verdict between sync members', 1, 2, { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'fullCopy', remoteReceived: 0, sourceLast: 0 }],
      ['delta resync request to site 3', 1, 3, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax: 1, bytesMax: 100000 }],
      ['delta resync request from a sync member', 2, 1, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax: 1, bytesMax: 100000 }],
      ['delta resync request to the secondary', 3, 2, { kind: 'deltaResyncRequest', epoch: 1, received: 0, entriesMax: 1, bytesMax: 100000 }],
      ['full copy request from a sync member', 2, 1, { kind: 'fullCopyRequest', epoch: 1 }],
      ['full copy request to the secondary', 3, 2, { kind: 'fullCopyRequest', epoch: 1 }],
      ['resync request from site 3', 3, 1, { kind: 'resyncRequest', epoch: 1, changed: [new Uint8Array(1), new Uint8Array(1)] }],
      ['resync request to the secondary', 1, 2, { kind: 'resyncRequest', epoch: 1, changed: [new Uint8Array(1), new Uint8Array(1)] }],
      ['delta entries from a sync member that is not the source', 2, 3, { kind: 'deltaResyncEntries', epoch: 1, entries: [], sourceLast: 3, final: true }],
      ['delta refusal with no delta resync', 1, 3, { kind: 'deltaResyncRefused', epoch: 1, received: 0, journalFirst: 1, sourceLast: 3 }],
      ['pull refusal from a sync member that is not the source', 2, 3, { kind: 'pullRefused', epoch: 1, received: 2, journalFirst: 1 }],
      ['verdict from site 3 to itself', 3, 3, { kind: 'verdict', epoch: 1, purpose: 'reattach', verdict: 'fullCopy', remoteReceived: 0, sourceLast: 0 }],
      ['judge request from site 3 to itself', 3, 3, { kind: 'judgeRequest', epoch: 1, purpose: 'reattach', received: 0 }],
      ['pull refusal to a sync member, naming its last', 1, 2, { kind: 'pullRefused', epoch: 1, received: 3, journalFirst: 1 }],
      ['flush request from site 3', 3, 2, { kind: 'flushRequest', epoch: 1, token: 1, updateNumber: 1 }],
      ['flush request to the primary', 2, 1, { kind: 'flushRequest', epoch: 1, token: 1, updateNumber: 1 }],
      ['flush request to site 3', 1, 3, { kind: 'flushRequest', epoch: 1, token: 1, updateNumber: 1 }],
      ['flush answer with no flush waiting', 2, 1, { kind: 'flushAck', epoch: 1, token: 1, updateNumber: 3 }],
      ['flush answer from site 3', 3, 1, { kind: 'flushAck', epoch: 1, token: 1, updateNumber: 3 }],
      ['flush answer to the secondary', 1, 2, { kind: 'flushAck', epoch: 1, token: 1, updateNumber: 3 }],
      // Online verify is the site processes' (site-node.ts): the in-process storage system takes none of it.
      ['verify marker in one process', 1, 2, { kind: 'verifyMarker', epoch: 1, verifyId: 1, volume: 0, offset: 0, length: 4096, updateNumber: 3 }],
      ['verify digests in one process', 2, 1, { kind: 'verifyDigests', epoch: 1, verifyId: 1, volume: 0, offset: 0, length: 4096, updateNumber: 3, digests: new Uint8Array(verifyDigestBytes), reason: '' }],
    ];
    for (const [name, from, to, message] of cases) {
      // Refused by the guard that names what is out of context: the site changes nothing and says why.
      if (from === to) {
        expect(() => cluster.site(to).handle({ from, to, message }), name).toThrow(UnexpectedMessageError);
        continue;
      }
      expect(() => cluster.deliverBytes(from, to, wire(message)), name).toThrow(name === 'acknowledgement of nothing in flight' ? OutOfOrderError : UnexpectedMessageError);
      expect(cluster.observe(), name).toEqual(before);
    }
    // A failed site handles nothing, in context or not.
    cluster.failSite(2);
    const failed = cluster.observe();
    const write: Message = { kind: 'syncWrite', epoch: 1, updateNumber: 4, volume: 0, offset: 0, data: new Uint8Array(4096), restoredKnown: 0 };
    expect(() => cluster.site(2).handle({ from: 1, to: 2, message: write })).toThrow(/the site is failed/);
    expect(cluster.observe()).toEqual(failed);
  });

  it('a flush request for writes the secondary lacks is out of order; one it holds is fsynced and answered with its token, changing no observation', () => {
    const cluster = busyCluster();
    const before = cluster.observe();
    expect(before.sites[2].lastUpdateNumber).toBe(3);
    const request = (updateNumber: number): Uint8Array => encodeMessage({ kind: 'flushRequest', epoch: 1, token: 5, updateNumber });
    expect(() => cluster.deliverBytes(1, 2, request(4))).toThrow(OutOfOrderError);
    expect(cluster.site(2).flushesForPeer).toBe(0);
    const out = cluster.site(2).receive(1, request(3));
    expect(out.send.map((envelope) => envelope.message)).toEqual([{ kind: 'flushAck', epoch: 1, token: 5, updateNumber: 3 }]);
    expect(cluster.site(2).flushesForPeer).toBe(1);
    expect(cluster.observe()).toEqual(before);
  });

  it('refuses a sync write whose update number is not last+1, or outside the volumes, changing nothing', () => {
    const cluster = busyCluster();
    const before = cluster.observe();
    const write = (updateNumber: number, volume = 0, offset = 0): Uint8Array =>
      encodeMessage({ kind: 'syncWrite', epoch: 1, updateNumber, volume, offset, data: new Uint8Array(4096).fill(7), restoredKnown: 0 });
    expect(() => cluster.deliverBytes(1, 2, write(3))).toThrow(OutOfOrderError);
    expect(() => cluster.deliverBytes(1, 2, write(5))).toThrow(OutOfOrderError);
    expect(() => cluster.deliverBytes(1, 2, write(4, 2))).toThrow(/no volume 2/);
    expect(() => cluster.deliverBytes(1, 2, write(4, 0, 16384))).toThrow(/past the volume/);
    expect(cluster.observe()).toEqual(before);
  });

  it('refuses pulled entries that do not continue site 3 journal, or do not fit it, changing nothing', () => {
    const cluster = busyCluster();
    const before = cluster.observe();
    expect(before.sites[3].received).toBe(2);
    const entriesFrom = (first: number, count: number): Uint8Array =>
      encodeMessage({
        kind: 'pullEntries', epoch: 1,
        entries: Array.from({ length: count }, (_, i) => ({ updateNumber: first + i, volume: 0, offset: 0, data: new Uint8Array(4096) })),
        servedAt: 0,
      });
    expect(() => cluster.deliverBytes(1, 3, entriesFrom(2, 1))).toThrow(OutOfOrderError);
    expect(() => cluster.deliverBytes(1, 3, entriesFrom(4, 1))).toThrow(OutOfOrderError);
    expect(() => cluster.deliverBytes(1, 3, entriesFrom(3, 7))).toThrow(/do not fit/);
    expect(cluster.observe()).toEqual(before);
  });
});
