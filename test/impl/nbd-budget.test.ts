/**
 * The payload budget an NBD server shares among its connections (impl/net/nbd-budget.ts), pure: each
 * connection's guarantee goes first, the pool after; a request that does not fit waits and is granted, in
 * order of arrival, as soon as it fits (a small one is not held behind a large one); the total never exceeds
 * its bound; a closed connection's waiter is dropped and its bytes come back as its requests settle.
 */
import { describe, expect, it } from 'vitest';
import { NbdPayloadBudget } from '../../impl/net/nbd-budget.ts';
import { nbdPayloadBytesMax } from '../../impl/net/nbd-protocol.ts';

const mib = 1024 * 1024;

describe('NBD payload budget', () => {
  it('needs room for one largest request beside every guarantee, and not a byte more', () => {
    const min = NbdPayloadBudget.bytesMin(mib, 4);
    expect(min).toBe(4 * mib + nbdPayloadBytesMax - mib);
    expect(new NbdPayloadBudget(min, mib, 4).poolBytes).toBe(nbdPayloadBytesMax - mib);
    expect(() => new NbdPayloadBudget(min - 1, mib, 4)).toThrow(/fits one request of the largest size/);
  });

  it("takes a connection's guarantee first, then the pool, and never lends past the total", () => {
    const budget = new NbdPayloadBudget(NbdPayloadBudget.bytesMin(mib, 3), mib, 3);
    const [a, b, c] = [budget.open(), budget.open(), budget.open()];
    expect(() => budget.open()).toThrow(/accounts at most accountsMax/);
    // A stalls holding a largest write: its guarantee and all of the pool.
    expect(a.tryReserve(nbdPayloadBytesMax)).toBe(true);
    expect(budget.counters()).toMatchObject({ heldBytes: nbdPayloadBytesMax, poolBytesUsed: budget.poolBytes });
    // B and C still get their guarantees, exactly, and not one byte of pool.
    expect(b.tryReserve(mib)).toBe(true);
    expect(c.tryReserve(mib / 2)).toBe(true);
    expect(c.tryReserve(mib / 2 + 1)).toBe(false);
    expect(c.tryReserve(mib / 2)).toBe(true);
    expect(budget.counters().heldBytes).toBe(budget.bytesMax);
    expect(budget.counters().heldBytesPeak).toBe(budget.bytesMax);
  });

  it('grants waiters in order of arrival as each fits, a small one past a large one, once room frees', () => {
    const budget = new NbdPayloadBudget(NbdPayloadBudget.bytesMin(mib, 3), mib, 3);
    const [a, b, c] = [budget.open(), budget.open(), budget.open()];
    expect(a.tryReserve(nbdPayloadBytesMax)).toBe(true);
    const granted: string[] = [];
    expect(b.tryReserve(2 * mib)).toBe(false);
    b.wait(2 * mib, () => granted.push('b'));
    expect(c.tryReserve(nbdPayloadBytesMax)).toBe(false);
    c.wait(nbdPayloadBytesMax, () => granted.push('c'));
    expect(budget.counters()).toMatchObject({ waiting: 2, waited: 2 });
    // A waiting connection takes nothing else meanwhile (its requests keep their order).
    expect(b.tryReserve(1)).toBe(false);
    a.release(4 * mib);
    expect(granted).toEqual(['b']);
    a.release(nbdPayloadBytesMax - 4 * mib);
    expect(granted).toEqual(['b']); // c needs the whole pool; b holds a MiB of it
    b.release(2 * mib);
    expect(granted).toEqual(['b', 'c']);
    expect(budget.counters()).toMatchObject({ waiting: 0, heldBytes: nbdPayloadBytesMax });
  });

  it("drops a closed connection's waiter and keeps its slot until the bytes it held come back", () => {
    const budget = new NbdPayloadBudget(NbdPayloadBudget.bytesMin(mib, 2), mib, 2);
    const [a, b] = [budget.open(), budget.open()];
    expect(a.tryReserve(nbdPayloadBytesMax)).toBe(true);
    let granted = false;
    b.wait(4 * mib, () => (granted = true));
    b.close();
    a.release(nbdPayloadBytesMax);
    expect(granted).toBe(false);
    expect(budget.accountsOpen).toBe(1);
    expect(a.tryReserve(mib)).toBe(true);
    a.close();
    expect(budget.accountsOpen).toBe(1);
    a.release(mib);
    expect(budget.accountsOpen).toBe(0);
    expect(() => a.release(1)).toThrow(/only bytes held/);
  });
});
