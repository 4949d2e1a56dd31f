/**
 * The deterministic transport: FIFO per direction, global send order across directions, and each fault
 * control (hold, delay, drop, duplicate, reorder, cut, site loss) doing exactly what its fault model says,
 * with a property that an undisturbed transport delivers everything in send order.
 */

import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { InvariantError } from '../../impl/core/invariant.ts';
import { linkName, type Envelope, type LinkSite } from '../../impl/core/link.ts';
import { Transport } from '../../impl/cluster/transport.ts';

type Sent = { id: number };

function recorder(): { transport: Transport<Sent>; log: string[] } {
  const transport = new Transport<Sent>();
  const log: string[] = [];
  transport.setReceiver((envelope) => log.push(`${envelope.from}->${envelope.to}#${envelope.message.id}`));
  return { transport, log };
}

const send = (transport: Transport<Sent>, from: LinkSite, to: LinkSite, id: number): void => transport.send({ from, to, message: { id } });

const pairs: [LinkSite, LinkSite][] = [
  [1, 2],
  [2, 1],
  [1, 3],
  [3, 1],
  [2, 3],
  [3, 2],
];

describe('Transport', () => {
  it('delivers everything in send order when undisturbed (property)', () => {
    fc.assert(
      fc.property(fc.array(fc.constantFrom(...pairs), { maxLength: 60 }), (sends) => {
        const { transport, log } = recorder();
        sends.forEach(([from, to], id) => send(transport, from, to, id));
        expect(transport.deliverAll()).toBe(sends.length);
        expect(log).toEqual(sends.map(([from, to], id) => `${from}->${to}#${id}`));
        expect(transport.pending()).toBe(0);
        expect(transport.delivered).toBe(sends.length);
      }),
    );
  });

  it('queues answers sent during delivery after what is already queued', () => {
    const transport = new Transport<Sent>();
    const log: number[] = [];
    transport.setReceiver((envelope: Envelope<Sent>) => {
      log.push(envelope.message.id);
      if (envelope.message.id < 3) transport.send({ from: envelope.to, to: envelope.from, message: { id: envelope.message.id + 10 } });
    });
    send(transport, 1, 2, 1);
    send(transport, 1, 3, 2);
    transport.deliverAll();
    expect(log).toEqual([1, 2, 11, 12]);
  });

  it('holds a direction until released, and delivers one message at a time', () => {
    const { transport, log } = recorder();
    send(transport, 1, 2, 1);
    send(transport, 1, 2, 2);
    send(transport, 2, 1, 3);
    transport.hold(1, 2);
    expect(transport.isHeld(1, 2)).toBe(true);
    expect(transport.deliverAll()).toBe(1);
    expect(transport.deliverNext(1, 2)).toBe(false);
    transport.release(1, 2);
    expect(transport.deliverNext(1, 2)).toBe(true);
    expect(log).toEqual(['2->1#3', '1->2#1']);
    expect(transport.pending(1, 2)).toBe(1);
  });

  it('delays messages by ticks of the logical clock', () => {
    const { transport, log } = recorder();
    transport.delay(1, 3, 2);
    send(transport, 1, 3, 1);
    expect(transport.deliverAll()).toBe(0);
    transport.tick(1);
    expect(transport.deliverAll()).toBe(0);
    transport.tick(1);
    expect(transport.now).toBe(2);
    expect(transport.deliverAll()).toBe(1);
    transport.delay(1, 3, 0);
    send(transport, 1, 3, 2);
    expect(transport.deliverAll()).toBe(1);
    expect(log).toEqual(['1->3#1', '1->3#2']);
    expect(() => transport.delay(1, 3, -1)).toThrow(InvariantError);
    expect(() => transport.tick(0.5)).toThrow(InvariantError);
  });

  it('drops and duplicates a chosen message', () => {
    const { transport, log } = recorder();
    for (const id of [1, 2, 3]) send(transport, 2, 3, id);
    expect(transport.drop(2, 3, 1)?.message.id).toBe(2);
    expect(transport.drop(2, 3, 9)).toBeNull();
    expect(transport.duplicate(2, 3, 0)).toBe(true);
    expect(transport.duplicate(3, 2, 0)).toBe(false);
    transport.deliverAll();
    expect(log).toEqual(['2->3#1', '2->3#1', '2->3#3']);
    expect(transport.dropped).toBe(1);
  });

  it('reorders a direction by a permutation, and refuses anything else', () => {
    const { transport, log } = recorder();
    for (const id of [1, 2, 3]) send(transport, 1, 2, id);
    send(transport, 2, 1, 4);
    transport.reorder(1, 2, [2, 0, 1]);
    expect(transport.queued(1, 2).map((e) => e.message.id)).toEqual([3, 1, 2]);
    expect(() => transport.reorder(1, 2, [0, 0, 1])).toThrow(InvariantError);
    expect(() => transport.reorder(1, 2, [0, 1])).toThrow(InvariantError);
    transport.deliverAll();
    // Positions keep their send order across directions: 3 takes 1's turn, before 2->1's message.
    expect(log).toEqual(['1->2#3', '1->2#1', '1->2#2', '2->1#4']);
  });

  it('a cut loses what both directions hold and everything sent until restored', () => {
    const { transport, log } = recorder();
    send(transport, 1, 2, 1);
    send(transport, 2, 1, 2);
    send(transport, 1, 3, 3);
    transport.cut(2, 1);
    expect(transport.isCut(1, 2)).toBe(true);
    expect(transport.cutLinks()).toEqual(['1-2']);
    send(transport, 1, 2, 4);
    transport.deliverAll();
    expect(log).toEqual(['1->3#3']);
    expect(transport.dropped).toBe(3);
    transport.restore(1, 2);
    send(transport, 1, 2, 5);
    transport.deliverAll();
    expect(log).toEqual(['1->3#3', '1->2#5']);
    expect(transport.cutLinks()).toEqual([]);
  });

  it('loses every message to or from a failed site', () => {
    const { transport, log } = recorder();
    send(transport, 1, 2, 1);
    send(transport, 3, 2, 2);
    send(transport, 1, 3, 3);
    send(transport, 2, 1, 4);
    expect(transport.dropSite(2)).toBe(3);
    transport.deliverAll();
    expect(log).toEqual(['1->3#3']);
  });

  it('names links smaller site first, refuses a link to itself, and stops a livelock', () => {
    expect(linkName(3, 1)).toBe('1-3');
    const { transport } = recorder();
    expect(() => send(transport, 2, 2, 1)).toThrow(InvariantError);
    const echo = new Transport<Sent>();
    echo.setReceiver((envelope) => echo.send({ from: envelope.to, to: envelope.from, message: envelope.message }));
    send(echo, 1, 2, 1);
    expect(() => echo.deliverAll(100)).toThrow(/no livelock/);
  });

  it('stops a livelock at the bound it was made with, and lets a run within it end', () => {
    const bounded = new Transport<Sent>({ deliveriesPerRunMax: 8 });
    let echoes = 0;
    bounded.setReceiver((envelope) => {
      echoes += 1;
      bounded.send({ from: envelope.to, to: envelope.from, message: envelope.message });
    });
    send(bounded, 1, 2, 1);
    expect(() => bounded.deliverAll()).toThrow(/no livelock.*8 deliveries/);
    expect(echoes).toBe(8);
    const finite = new Transport<Sent>({ deliveriesPerRunMax: 8 });
    finite.setReceiver(() => {});
    for (let i = 0; i < 8; i += 1) send(finite, 1, 2, i);
    expect(finite.deliverAll()).toBe(8);
    expect(() => new Transport<Sent>({ deliveriesPerRunMax: 0 })).toThrow(InvariantError);
  });

  it('needs a receiver before it delivers', () => {
    const transport = new Transport<Sent>();
    send(transport, 1, 2, 1);
    expect(() => transport.deliverAll()).toThrow(InvariantError);
  });
});
