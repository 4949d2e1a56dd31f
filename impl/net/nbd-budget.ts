/**
 * The bytes of host payloads an NBD server holds at once, across all its connections: WRITE payloads from
 * their header until the backend has settled the write, READ data from the request until the reply has
 * left for the kernel. Without a cap shared by every connection, 128 connections each sending a 32 MiB
 * WRITE header and part of its payload, then stalling, took a site to 4.2 GiB (issue 14).
 *
 * Shape: a total of {@link NbdPayloadBudget.bytesMax} bytes, of which every admitted connection is
 * guaranteed {@link NbdPayloadBudget.guaranteedBytes} of its own (so a host's small writes, a 4 KiB fio job
 * at queue depth 16 or a qemu-io write of 1 MiB, always go ahead, whatever other connections hold) and the
 * rest is a pool shared first come, first served. A request that does not fit waits (the server stops
 * reading that socket: TCP back-pressure reaches the client); it is never dropped. When bytes are released,
 * the waiters are granted in order of arrival, each one that fits (a small waiter does not queue behind a
 * large one that cannot fit yet). Pure: no sockets, no timers.
 */

import { assert } from '../core/invariant.ts';
import { nbdPayloadBytesMax } from './nbd-protocol.ts';

/**
 * Default of the cap on host payload bytes held across all connections of a server (a site's
 * `nbdBufferedBytesMax`): 256 MiB, of which 128 MiB are the 128 connections' guarantees and 128 MiB the pool.
 */
export const nbdBufferedBytesMaxDefault = 256 * 1024 * 1024;

/**
 * Bytes each admitted connection may always hold whatever the others hold: 1 MiB, so that a host whose
 * requests are small (fio's 4 KiB at queue depth 16: 64 KiB; qemu-io's 1 MiB write) is never held up by
 * connections that stall with large writes.
 */
export const nbdConnectionBytesGuaranteed = 1024 * 1024;

/** A connection's share of the budget: what it holds now, and its one waiting request. */
export class NbdBudgetAccount {
  /** Bytes this connection holds now. */
  heldBytes = 0;
  /** The request waiting for room, if any (a connection waits for one request at a time). */
  waiting: { readonly bytes: number; readonly grant: () => void } | undefined;
  closed = false;

  constructor(readonly budget: NbdPayloadBudget) {}

  /** Takes `bytes` now if they fit (the account's guarantee first, then the pool); whether it did. */
  tryReserve(bytes: number): boolean {
    return this.budget.tryReserve(this, bytes);
  }

  /** Waits for room for `bytes`; `grant` is called once they are reserved. One waiter per account. */
  wait(bytes: number, grant: () => void): void {
    this.budget.wait(this, bytes, grant);
  }

  /** Gives back `bytes` it held. */
  release(bytes: number): void {
    this.budget.release(this, bytes);
  }

  /** The connection is gone: its waiter is dropped (bytes still held are released as their requests settle). */
  close(): void {
    this.budget.close(this);
  }
}

/** What a budget holds now (a snapshot). */
export interface NbdBudgetCounters {
  /** Bytes held by every connection together. */
  heldBytes: number;
  /** The most ever held at once. */
  heldBytesPeak: number;
  /** Bytes of the shared pool in use. */
  poolBytesUsed: number;
  /** Requests waiting for room now. */
  waiting: number;
  /** Requests that had to wait, since the start. */
  waited: number;
}

/** The budget shared by the connections of one server. See the file's header. */
export class NbdPayloadBudget {
  /** Bytes of the pool: what is left of the total once every connection's guarantee is set aside. */
  readonly poolBytes: number;
  readonly #accounts = new Set<NbdBudgetAccount>();
  readonly #waiters: NbdBudgetAccount[] = [];
  #poolUsed = 0;
  #held = 0;
  #heldPeak = 0;
  #waited = 0;

  constructor(
    /** The most bytes held at once across all connections. */
    readonly bytesMax: number,
    /** Bytes each connection may always hold. */
    readonly guaranteedBytes: number,
    /** The most accounts open at once (the server's admitted connections). */
    readonly accountsMax: number,
  ) {
    assert(Number.isSafeInteger(bytesMax) && Number.isSafeInteger(guaranteedBytes) && guaranteedBytes >= 0, 'budget sizes are integers', () => `${bytesMax} ${guaranteedBytes}`);
    this.poolBytes = bytesMax - accountsMax * guaranteedBytes;
    // One request of the largest size must fit in an idle budget, or a host could wait forever.
    assert(this.poolBytes + guaranteedBytes >= nbdPayloadBytesMax, 'the budget fits one request of the largest size', () => `pool ${this.poolBytes} + guarantee ${guaranteedBytes} < ${nbdPayloadBytesMax}`);
  }

  /** The smallest total that fits one largest request beside every connection's guarantee. */
  static bytesMin(guaranteedBytes: number, accountsMax: number): number {
    return accountsMax * guaranteedBytes + Math.max(0, nbdPayloadBytesMax - guaranteedBytes);
  }

  /** Accounts open now (a closed connection's stays open while its requests still hold bytes). */
  get accountsOpen(): number {
    return this.#accounts.size;
  }

  /** A new connection's account; at most {@link accountsMax} open at once. */
  open(): NbdBudgetAccount {
    assert(this.#accounts.size < this.accountsMax, 'budget accounts at most accountsMax', () => `${this.#accounts.size} open`);
    const account = new NbdBudgetAccount(this);
    this.#accounts.add(account);
    return account;
  }

  counters(): NbdBudgetCounters {
    return { heldBytes: this.#held, heldBytesPeak: this.#heldPeak, poolBytesUsed: this.#poolUsed, waiting: this.#waiters.length, waited: this.#waited };
  }

  /** Pool bytes an account holding `held` uses: whatever exceeds its guarantee. */
  #poolShare(held: number): number {
    return Math.max(0, held - this.guaranteedBytes);
  }

  #fits(account: NbdBudgetAccount, bytes: number): boolean {
    const more = this.#poolShare(account.heldBytes + bytes) - this.#poolShare(account.heldBytes);
    return this.#poolUsed + more <= this.poolBytes;
  }

  tryReserve(account: NbdBudgetAccount, bytes: number): boolean {
    assert(Number.isSafeInteger(bytes) && bytes >= 0 && bytes <= nbdPayloadBytesMax, 'a reservation is one request at most', () => `${bytes}`);
    assert(!account.closed, 'a closed account reserves nothing', () => `${bytes}`);
    if (account.waiting !== undefined || !this.#fits(account, bytes)) return false;
    this.#take(account, bytes);
    return true;
  }

  wait(account: NbdBudgetAccount, bytes: number, grant: () => void): void {
    assert(account.waiting === undefined, 'one waiting request per connection', () => `${account.waiting?.bytes}`);
    assert(!account.closed, 'a closed account does not wait', () => `${bytes}`);
    account.waiting = { bytes, grant };
    this.#waiters.push(account);
    this.#waited += 1;
    this.#grantWaiters();
  }

  release(account: NbdBudgetAccount, bytes: number): void {
    assert(bytes >= 0 && bytes <= account.heldBytes, 'a release gives back only bytes held', () => `${bytes} of ${account.heldBytes}`);
    const before = this.#poolShare(account.heldBytes);
    account.heldBytes -= bytes;
    this.#poolUsed -= before - this.#poolShare(account.heldBytes);
    this.#held -= bytes;
    assert(this.#poolUsed >= 0 && this.#held >= 0, 'budget counts stay non-negative', () => `${this.#poolUsed} ${this.#held}`);
    if (account.closed && account.heldBytes === 0) this.#accounts.delete(account);
    this.#grantWaiters();
  }

  close(account: NbdBudgetAccount): void {
    account.closed = true;
    if (account.waiting !== undefined) {
      account.waiting = undefined;
      this.#waiters.splice(this.#waiters.indexOf(account), 1);
    }
    // The account's slot stays taken while its requests still hold bytes: the bound counts them.
    if (account.heldBytes === 0) this.#accounts.delete(account);
    this.#grantWaiters();
  }

  #take(account: NbdBudgetAccount, bytes: number): void {
    this.#poolUsed += this.#poolShare(account.heldBytes + bytes) - this.#poolShare(account.heldBytes);
    account.heldBytes += bytes;
    this.#held += bytes;
    this.#heldPeak = Math.max(this.#heldPeak, this.#held);
    assert(this.#poolUsed <= this.poolBytes, 'the pool never lends more than it has', () => `${this.#poolUsed} > ${this.poolBytes}`);
    assert(this.#held <= this.bytesMax, 'the budget never holds more than its total', () => `${this.#held} > ${this.bytesMax}`);
  }

  #grantWaiters(): void {
    for (let i = 0; i < this.#waiters.length; ) {
      const account = this.#waiters[i] as NbdBudgetAccount;
      const waiting = account.waiting;
      assert(waiting !== undefined, 'a queued account waits', 'no waiting request');
      if (!this.#fits(account, waiting.bytes)) {
        i += 1;
        continue;
      }
      this.#waiters.splice(i, 1);
      account.waiting = undefined;
      this.#take(account, waiting.bytes);
      waiting.grant();
    }
  }
}
