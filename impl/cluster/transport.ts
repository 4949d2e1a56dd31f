/**
 * A deterministic in-process transport between the three sites, with manual controls and a logical clock.
 *
 * Fault model. Each direction of each link (`1→2`, `2→1`, `1→3`, ...) is a FIFO queue: a message sent is
 * delivered once, intact, after every message sent before it on the same direction, unless the caller
 * injects a fault. The faults are exactly the controls below, and nothing happens by itself:
 * - `hold(from, to)`: the direction delivers nothing until `release` (a stalled link; messages wait).
 * - `delay(from, to, ticks)`: messages sent from now on become deliverable `ticks` ticks after sending.
 * - `drop(from, to, index)`: the message at `index` in the queue is lost.
 * - `duplicate(from, to, index)`: the message at `index` is delivered twice (a retransmission).
 * - `reorder(from, to, order)`: the queue is permuted (messages overtake each other).
 * - `cut(a, b)`: both directions lose every queued message and every message sent until `restore(a, b)`
 *   (a cut link looks, to each side, like a failure of the far site).
 * A seeded fault injector, when a test wants random faults, is test code that calls these controls with a
 * generator the test owns: there are no timers, no randomness and no wall clock here.
 *
 * Delivery hands each message to the receiver given at construction; the receiver's own sends (answers)
 * are queued like any other. `deliverAll` delivers, among the deliverable queue heads, the message sent
 * first (global send order), so that an undisturbed run is one fixed sequence.
 */

import { assert } from '../core/invariant.ts';
import { linkName, type Envelope, type LinkSite } from '../core/link.ts';

/** One queued message with its send order and the tick from which it is deliverable. */
interface Queued<M> {
  readonly envelope: Envelope<M>;
  readonly seq: number;
  readonly deliverableAt: number;
}

/** Largest number of deliveries one `deliverAll` makes before it calls the run a livelock (a bug). */
export const deliveriesPerRunMax = 1_000_000;

/** Largest number of messages queued on one direction of a link (back-pressure is the sites' job; this catches leaks). */
export const queuedMessagesMax = 1_000_000;

const directions: readonly [LinkSite, LinkSite][] = [
  [1, 2],
  [2, 1],
  [1, 3],
  [3, 1],
  [2, 3],
  [3, 2],
];

function linkBit(a: LinkSite, b: LinkSite): number {
  assert(a !== b, 'a link joins two different sites', () => `${a}-${b}`);
  return 1 << (a + b - 3);
}

function directionIndex(from: LinkSite, to: LinkSite): number {
  assert(from !== to, 'a link joins two different sites', () => `${from}->${to}`);
  // 1->2:0 2->1:1 1->3:2 3->1:3 2->3:4 3->2:5
  if (from + to === 3) return from === 1 ? 0 : 1;
  if (from + to === 4) return from === 1 ? 2 : 3;
  return from === 2 ? 4 : 5;
}

/** A FIFO with a head index: O(1) amortized push and shift without `Array.shift`'s copying. */
class Queue<T> {
  #items: T[] = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  peek(): T | undefined {
    return this.#items[this.#head];
  }

  shift(): T | undefined {
    if (this.#head >= this.#items.length) return undefined;
    const item = this.#items[this.#head] as T;
    (this.#items as (T | undefined)[])[this.#head] = undefined;
    this.#head += 1;
    if (this.#head === this.#items.length) {
      this.#items = [];
      this.#head = 0;
    } else if (this.#head > 1024 && this.#head * 2 > this.#items.length) {
      this.#items = this.#items.slice(this.#head);
      this.#head = 0;
    }
    return item;
  }

  toArray(): T[] {
    return this.#items.slice(this.#head);
  }

  replace(items: T[]): void {
    this.#items = items;
    this.#head = 0;
  }
}

/**
 * The deterministic transport. `M` is the message type; the receiver is called once per delivered message
 * and may send answers with {@link Transport.send}.
 */
export class Transport<M> {
  readonly #queues: Queue<Queued<M>>[] = directions.map(() => new Queue<Queued<M>>());
  readonly #held: boolean[] = directions.map(() => false);
  readonly #delayTicks: number[] = directions.map(() => 0);
  /** Cut links as bits: 1-2 is bit 0, 1-3 bit 1, 2-3 bit 2 (checked on every send: no string keys). */
  #cutMask = 0;
  #receiver: ((envelope: Envelope<M>) => void) | null = null;
  #seq = 0;
  #now = 0;
  #delivered = 0;
  #dropped = 0;
  readonly #deliveriesPerRunMax: number;

  /**
   * `deliveriesPerRunMax` bounds each {@link deliverAll} (default {@link deliveriesPerRunMax}): a caller that
   * knows how many messages a run can need (the conformance harness, from the model's bounds) sets it lower,
   * so that a livelock is an error at once instead of a million deliveries later.
   */
  constructor(options: { deliveriesPerRunMax?: number } = {}) {
    this.#deliveriesPerRunMax = options.deliveriesPerRunMax ?? deliveriesPerRunMax;
    assert(Number.isSafeInteger(this.#deliveriesPerRunMax) && this.#deliveriesPerRunMax >= 1, 'a run may deliver at least one message', () => `${this.#deliveriesPerRunMax}`);
  }

  /** The logical clock: ticks since the transport was made. Only {@link tick} moves it. */
  get now(): number {
    return this.#now;
  }

  /** Messages delivered so far. */
  get delivered(): number {
    return this.#delivered;
  }

  /** Messages lost so far (dropped by a control, sent on or queued on a cut link). */
  get dropped(): number {
    return this.#dropped;
  }

  /** Sets the receiver that delivery calls. */
  setReceiver(receiver: (envelope: Envelope<M>) => void): void {
    this.#receiver = receiver;
  }

  /** Queues a message; a message sent on a cut link is lost. */
  send(envelope: Envelope<M>): void {
    const index = directionIndex(envelope.from, envelope.to);
    if ((this.#cutMask & linkBit(envelope.from, envelope.to)) !== 0) {
      this.#dropped += 1;
      return;
    }
    const queue = this.#queues[index] as Queue<Queued<M>>;
    assert(queue.length < queuedMessagesMax, 'transport queues are bounded', () => `${envelope.from}->${envelope.to} holds ${queue.length}`);
    this.#seq += 1;
    queue.push({ envelope, seq: this.#seq, deliverableAt: this.#now + (this.#delayTicks[index] as number) });
  }

  /** Messages queued on one direction, or on all of them. */
  pending(from?: LinkSite, to?: LinkSite): number {
    if (from !== undefined && to !== undefined) return (this.#queues[directionIndex(from, to)] as Queue<Queued<M>>).length;
    return this.#queues.reduce((sum, queue) => sum + queue.length, 0);
  }

  /** The envelopes queued on one direction, in delivery order (a copy, for tests to inspect). */
  queued(from: LinkSite, to: LinkSite): Envelope<M>[] {
    return (this.#queues[directionIndex(from, to)] as Queue<Queued<M>>).toArray().map((item) => item.envelope);
  }

  /** Delivers the head of one direction if it is deliverable; returns whether it delivered. */
  deliverNext(from: LinkSite, to: LinkSite): boolean {
    const index = directionIndex(from, to);
    if (!this.#deliverable(index)) return false;
    this.#deliver(index);
    return true;
  }

  /**
   * Delivers until no message is deliverable (held, delayed and cut directions wait), earliest sent first.
   * Returns the number delivered. More than `deliveriesMax` deliveries (by default the bound the transport was
   * made with) is a livelock: an {@link InvariantError}.
   */
  deliverAll(deliveriesMax = this.#deliveriesPerRunMax): number {
    let count = 0;
    for (;;) {
      let best = -1;
      let bestSeq = Infinity;
      for (let i = 0; i < 6; i += 1) {
        if (!this.#deliverable(i)) continue;
        const head = (this.#queues[i] as Queue<Queued<M>>).peek() as Queued<M>;
        if (head.seq < bestSeq) {
          bestSeq = head.seq;
          best = i;
        }
      }
      if (best < 0) return count;
      assert(count < deliveriesMax, 'transport runs end (no livelock)', () => `${count} deliveries`);
      this.#deliver(best);
      count += 1;
    }
  }

  /** Stops delivery on one direction until {@link release}. */
  hold(from: LinkSite, to: LinkSite): void {
    this.#held[directionIndex(from, to)] = true;
  }

  /** Resumes delivery on one direction. */
  release(from: LinkSite, to: LinkSite): void {
    this.#held[directionIndex(from, to)] = false;
  }

  /** Whether a direction is held. */
  isHeld(from: LinkSite, to: LinkSite): boolean {
    return this.#held[directionIndex(from, to)] as boolean;
  }

  /** Messages sent on a direction from now on are deliverable `ticks` ticks after sending (0 restores). */
  delay(from: LinkSite, to: LinkSite, ticks: number): void {
    assert(Number.isSafeInteger(ticks) && ticks >= 0, 'delays are whole ticks', () => `${ticks}`);
    this.#delayTicks[directionIndex(from, to)] = ticks;
  }

  /** Loses the message at `index` (0 = next) of a direction; returns it, or null when there is none. */
  drop(from: LinkSite, to: LinkSite, index = 0): Envelope<M> | null {
    const queue = this.#queues[directionIndex(from, to)] as Queue<Queued<M>>;
    const items = queue.toArray();
    const [removed] = items.splice(index, 1);
    if (removed === undefined) return null;
    queue.replace(items);
    this.#dropped += 1;
    return removed.envelope;
  }

  /** Queues a second copy of the message at `index` right after it (a duplicate delivery). */
  duplicate(from: LinkSite, to: LinkSite, index = 0): boolean {
    const queue = this.#queues[directionIndex(from, to)] as Queue<Queued<M>>;
    const items = queue.toArray();
    const item = items[index];
    if (item === undefined) return false;
    items.splice(index + 1, 0, item);
    queue.replace(items);
    return true;
  }

  /**
   * Permutes a direction's queue: `order[i]` is the current index of the message that goes to position `i`.
   * `order` must be a permutation of the queue's indexes. Messages keep their send order for `deliverAll`'s
   * choice between directions; within the direction, the new order holds.
   */
  reorder(from: LinkSite, to: LinkSite, order: readonly number[]): void {
    const queue = this.#queues[directionIndex(from, to)] as Queue<Queued<M>>;
    const items = queue.toArray();
    const sorted = [...order].sort((a, b) => a - b);
    assert(
      sorted.length === items.length && sorted.every((value, i) => value === i),
      'a reorder is a permutation of the queue',
      () => `order ${JSON.stringify(order)} for ${items.length} messages`,
    );
    const seqs = items.map((item) => item.seq).sort((a, b) => a - b);
    queue.replace(order.map((at, i) => ({ ...(items[at] as Queued<M>), seq: seqs[i] as number })));
  }

  /** Cuts a link: both directions lose what they hold and everything sent until {@link restore}. */
  cut(a: LinkSite, b: LinkSite): void {
    this.#cutMask |= linkBit(a, b);
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const queue = this.#queues[directionIndex(from, to)] as Queue<Queued<M>>;
      this.#dropped += queue.length;
      queue.replace([]);
    }
  }

  /** Restores a cut link. */
  restore(a: LinkSite, b: LinkSite): void {
    this.#cutMask &= ~linkBit(a, b);
  }

  /** Whether a link is cut. */
  isCut(a: LinkSite, b: LinkSite): boolean {
    return (this.#cutMask & linkBit(a, b)) !== 0;
  }

  /** The cut links, `"a-b"` with `a < b`, sorted. */
  cutLinks(): string[] {
    return (['1-2', '1-3', '2-3'] as const).filter((_, bit) => (this.#cutMask >> bit) & 1);
  }

  /** Loses every message queued to or from a site (it failed: what it had not yet received is gone). */
  dropSite(site: LinkSite): number {
    let lost = 0;
    for (const [i, [from, to]] of directions.entries()) {
      if (from !== site && to !== site) continue;
      const queue = this.#queues[i] as Queue<Queued<M>>;
      lost += queue.length;
      queue.replace([]);
    }
    this.#dropped += lost;
    return lost;
  }

  /** Moves the logical clock forward. */
  tick(ticks = 1): void {
    assert(Number.isSafeInteger(ticks) && ticks >= 0, 'ticks are whole', () => `${ticks}`);
    this.#now += ticks;
  }

  #deliverable(index: number): boolean {
    if (this.#held[index]) return false;
    const head = (this.#queues[index] as Queue<Queued<M>>).peek();
    return head !== undefined && head.deliverableAt <= this.#now;
  }

  #deliver(index: number): void {
    const item = (this.#queues[index] as Queue<Queued<M>>).shift() as Queued<M>;
    assert(this.#receiver !== null, 'a transport has a receiver before it delivers', 'no receiver');
    this.#delivered += 1;
    this.#receiver(item.envelope);
  }
}
