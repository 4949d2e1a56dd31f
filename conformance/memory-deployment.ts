/**
 * The conformance run's in-process deployment: three real site nodes (`impl/site/site-node.ts`) on an
 * in-memory network, driven by the real operator (`impl/site/operator.ts`) through its in-process control
 * client (`localClient`), host writes through the sites' NBD exports (`siteExports`, the calls the NBD server
 * makes: writes gathered per turn into the node's batches, each with FUA, so the node's flush runs too), the
 * observation built from the operator's status (`observationOf`). Each event is carried out as the processes'
 * driver carries it out (`impl/drivers/driver-processes.ts`: `deploymentCommandOf`, `refusalAnswerOf`), and
 * the deployment is settled after each (`settleDeployment`) before it is observed.
 *
 * Why: the in-process `Cluster` behind `npm start`'s other stages never runs the site processes' protocol
 * code (the node's batches, host flushes and flush acknowledgements, epochs at connect, the source's
 * refusals of a pull); `--sut processes` runs it in child processes, which a mutation run cannot see and
 * which take seconds a path. This deployment runs it in the harness's own thread, in milliseconds a path,
 * behind the asynchronous lockstep loop (`runPathAsync`).
 */
import type { SiteId } from '../impl/core/storage-system.ts';
import { boundsOf, conformanceDeploymentJson, deploymentCommandOf, observationOf, refusalAnswerOf, settleDeployment, type Bounds } from '../impl/drivers/driver-processes.ts';
import { NbdClientError, NbdReplyError } from '../impl/net/nbd-client.ts';
import { checkRequest, NbdCommand, NbdCommandFlag, NbdError, type NbdExport } from '../impl/net/nbd-protocol.ts';
import { validateDeploymentConfig, type DeploymentConfig } from '../impl/site/deployment-config.ts';
import { Operator, type DeploymentStatus } from '../impl/site/operator.ts';
import { localClient } from '../impl/site/site-control.ts';
import { SiteNode, type NodeLinks } from '../impl/site/site-node.ts';
import { nodeConfigOf, siteExports } from '../impl/site/site-serve.ts';
import { openSite, siteConfigOf } from '../impl/storage/site-open.ts';
import type { ModelEvent } from '../model/events.ts';
import type { Observation } from '../model/observation.ts';
import type { ModelParams } from '../model/params.ts';
import { driverConfigFor, driverEventFor } from './sut-driver.ts';
import { refusalOfAnswer, type AsyncSystemUnderTest, type StepOutcome } from './sut.ts';

/**
 * Three site nodes' links in one thread: a frame queue per direction, delivered in order at the next
 * microtask, and connections that follow who is online and what is cut, reported to both ends
 * (`onPeerUp`, `onPeerDown`). Tests hold directions or a control port to stage a slow or silent peer.
 *
 * A connection that goes down is reported to both ends at once. One that comes up is reported at once too,
 * unless `upLater`: then at the next microtask, to both ends together, as a real network reports it once its
 * handshake is done (`impl/net/transport-tcp.ts`), never inside the call that made it possible: a site
 * that recovers goes online first and takes its role after (`SiteNode.recover`), and sees its peers come up
 * in that role. Until an end is told, the connection is not up at that end (`isConnected`, `send`).
 *
 * What a node throws while the network delivers a frame or a notice at a microtask goes to `crashed` when
 * one is given (as a site process would die of it, and its driver report the exit), else it is thrown.
 */
export class MemoryNetwork {
  /** The nodes on the network, by site (a site not added yet is not connected). */
  readonly nodes = new Map<SiteId, SiteNode>();
  /** Whether each site is on the network (a failed site takes itself off). */
  readonly online = new Map<SiteId, boolean>([
    [1, true],
    [2, true],
    [3, true],
  ]);
  /** Links cut (`"1-2"`). */
  readonly cut = new Set<string>();
  /** Directions (`"1>2"`) whose frames wait undelivered: a slow or stalled receiver, its link filling up. */
  readonly held = new Set<string>();
  /** Sites whose control port does not answer their peer (the peer link may still be up). */
  readonly unaskable = new Set<SiteId>();
  /** Frames sent and not yet delivered, in order. */
  readonly queue: { from: SiteId; to: SiteId; payload: Uint8Array }[] = [];
  /** What the nodes logged and the links did, one line each. */
  readonly log: string[] = [];
  #pumping = false;
  /** With `upLater`: the ends (`"1>2"`: site 1's end of its link to 2) told their connection is up. */
  readonly #toldUp = new Set<string>();
  #upNoticesDue = false;

  /**
   * `upLater`: report a connection coming up at the next microtask, not at once (see the class comment).
   * `crashed`: takes what a node throws at a microtask's delivery (null: it is thrown there).
   */
  constructor(
    readonly upLater = false,
    private readonly crashed: ((error: unknown) => void) | null = null,
  ) {}

  /** Runs a microtask's deliveries; what a node throws goes to `crashed` when there is one. */
  #atMicrotask(deliver: () => void): void {
    queueMicrotask(() => {
      if (this.crashed === null) return deliver();
      try {
        deliver();
      } catch (error) {
        this.crashed(error);
      }
    });
  }

  /** Whether sites `a` and `b` are connected: both on the network, the link not cut. */
  connected(a: SiteId, b: SiteId): boolean {
    return a !== b && this.online.get(a) === true && this.online.get(b) === true && !this.cut.has(linkKey(a, b)) && this.nodes.has(a) && this.nodes.has(b);
  }

  /** Whether the connection to `peer` is up at `self`'s end: connected, and (with `upLater`) reported there. */
  upAt(self: SiteId, peer: SiteId): boolean {
    return this.connected(self, peer) && (!this.upLater || this.#toldUp.has(`${self}>${peer}`));
  }

  /** Site `self`'s links, for its node. */
  links(self: SiteId): NodeLinks {
    return {
      send: (peer, payload) => {
        if (!this.upAt(self, peer)) return false;
        this.queue.push({ from: self, to: peer, payload });
        this.#schedule();
        return true;
      },
      isConnected: (peer) => this.upAt(self, peer),
      disconnect: (peer, reason) => {
        this.log.push(`site ${self} disconnects ${peer}: ${reason}`);
        this.change(() => this.cut.add(linkKey(self, peer)));
        // A disconnected peer reconnects at once (a real dialer retries).
        this.change(() => this.cut.delete(linkKey(self, peer)));
      },
      setOnline: (online) => this.change(() => this.online.set(self, online)),
      setCut: (peer, cut) => this.change(() => (cut ? this.cut.add(linkKey(self, peer)) : this.cut.delete(linkKey(self, peer)))),
      queuedBytes: (peer) => this.queue.reduce((sum, frame) => (frame.from === self && frame.to === peer ? sum + frame.payload.length : sum), 0),
      // The peer's control port, as a site process asks it: its own status, or no answer while it is unreachable.
      askPeer: async (peer) => {
        const node = this.nodes.get(peer);
        if (node === undefined || this.unaskable.has(peer)) throw new Error(`site ${peer}'s control port does not answer`);
        const status = node.status(false);
        return { up: status.up, role: status.role, fenced: status.fenced };
      },
    };
  }

  /** Applies a change and tells each node about the connections it made or broke. */
  change(action: () => void): void {
    const before = sitePairs.map(([a, b]) => this.connected(a, b));
    action();
    sitePairs.forEach(([a, b], i) => {
      const now = this.connected(a, b);
      if (now === before[i]) return;
      // Frames on a broken connection are lost.
      if (!now) for (let j = this.queue.length - 1; j >= 0; j -= 1) if (linkKey(this.queue[j]!.from, this.queue[j]!.to) === linkKey(a, b)) this.queue.splice(j, 1);
      if (now && this.upLater) {
        this.#reportUpLater();
        return;
      }
      for (const [self, peer] of [
        [a, b],
        [b, a],
      ] as [SiteId, SiteId][]) {
        const node = this.nodes.get(self);
        if (node === undefined) continue;
        if (now) node.onPeerUp(peer);
        else if (!this.upLater || this.#toldUp.delete(`${self}>${peer}`)) node.onPeerDown(peer, 'connection closed');
      }
    });
  }

  /** At the next microtask, tells both ends of every connection that came up and is still up. */
  #reportUpLater(): void {
    if (this.#upNoticesDue) return;
    this.#upNoticesDue = true;
    this.#atMicrotask(() => {
      this.#upNoticesDue = false;
      for (const [a, b] of sitePairs) {
        if (!this.connected(a, b) || this.#toldUp.has(`${a}>${b}`)) continue;
        // Both ends first, then the notices: neither end sends before the other can count what it receives.
        this.#toldUp.add(`${a}>${b}`).add(`${b}>${a}`);
        this.nodes.get(a)?.onPeerUp(b);
        this.nodes.get(b)?.onPeerUp(a);
      }
    });
  }

  #schedule(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    this.#atMicrotask(() => {
      this.#pumping = false;
      this.deliverAll();
    });
  }

  /** Delivers every queued frame whose direction is not held (and drops those of a broken connection). */
  deliverAll(): void {
    let k = 0;
    while (k < this.queue.length) {
      const frame = this.queue[k]!;
      if (this.held.has(`${frame.from}>${frame.to}`)) {
        k += 1;
        continue;
      }
      this.queue.splice(k, 1);
      if (!this.connected(frame.from, frame.to)) continue;
      this.nodes.get(frame.to)!.onFrame(frame.from, frame.payload);
    }
  }
}

const sitePairs: readonly [SiteId, SiteId][] = [
  [1, 2],
  [1, 3],
  [2, 3],
];

/** The name of the link between two sites, smaller site first (`"1-2"`). */
export function linkKey(a: SiteId, b: SiteId): string {
  return a < b ? `${a}-${b}` : `${b}-${a}`;
}

/** Limits of the in-process deployment. */
export const memoryDeploymentLimits = {
  /**
   * Status polls one settle takes at most. A step of a conformance path settles within a few (each poll lets
   * the frames queued before it be delivered); one that does not settle (a message loop) is a crash
   * divergence at that step, not a hang.
   */
  settlePollsMax: 200,
  /**
   * Turns of the event loop one step's command may take (a step takes one or two: nothing in the deployment
   * waits for time). One that never ends (an answer a node never sends, as after a node threw) is then a
   * crash divergence at that step, not a hang: a process deployment's answer timeouts end it the same way.
   */
  stepTurnsMax: 1_000,
  /**
   * Milliseconds each step adds to the nodes' clock (their ticks, as a process gives them): far below the
   * answer timeout, so that in a path of any length the timeouts of lost answers never fire (the network
   * loses no frame of a connection that stays up).
   */
  tickMs: 1,
};

/** The deployment configuration of an in-process deployment: a process deployment's, with addresses never dialled. */
export function memoryDeploymentConfig(bounds: Bounds): DeploymentConfig {
  // Ports and directories are not used (no socket is opened, storage is memory); they must only be valid.
  const endpoint = (id: SiteId) => ({ host: '127.0.0.1', peerPort: id * 10 + 1, nbdPort: id * 10 + 2, controlPort: id * 10 + 3, dir: `site-${id}` });
  return validateDeploymentConfig(conformanceDeploymentJson(bounds, 'conformance-memory', endpoint), '/nonexistent');
}

/** Lets the microtasks and immediates queued so far run (frames, answers, the promises they resolve). */
function turn(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** Three site nodes on a {@link MemoryNetwork}, the operator over their in-process control clients, their NBD exports. */
export class MemoryDeployment {
  /** Connections are reported up after the call that made them (as over TCP); a node's throw there is a crash. */
  readonly net = new MemoryNetwork(true, (error) => {
    this.#crash ??= error;
  });
  /** What a node threw while the network delivered to it, or null: the deployment is then broken. */
  #crash: unknown = null;
  readonly nodes: Record<SiteId, SiteNode>;
  readonly exports: Record<SiteId, NbdExport[]>;
  readonly operator: Operator;
  /** Each host connection (`"<site>/<volume>"`) and whether its export was read-only at its handshake. */
  readonly #readOnlyAtHandshake = new Map<string, boolean>();
  #clockMs = 0;

  /** A new deployment (each site's storage in memory, as a site process opens its directory anew). */
  constructor(readonly config: DeploymentConfig) {
    const nodes = {} as Record<SiteId, SiteNode>;
    const exports = {} as Record<SiteId, NbdExport[]>;
    for (const id of [1, 2, 3] as const) {
      const site = openSite(siteConfigOf(id, config, config.flushEachWrite), config.journal, { kind: 'memory' });
      const node = new SiteNode(site, nodeConfigOf(config), this.net.links(id), (line) => this.net.log.push(`site ${id}: ${line}`));
      nodes[id] = node;
      exports[id] = siteExports(node, config);
      // On the network: its connections come up (and are reported) as each peer joins, as a process's do.
      this.net.change(() => this.net.nodes.set(id, node));
    }
    this.nodes = nodes;
    this.exports = exports;
    this.operator = new Operator({ 1: localClient(() => nodes[1]), 2: localClient(() => nodes[2]), 3: localClient(() => nodes[3]) });
  }

  /**
   * A host's NBD write with FUA of `data` at byte `offset` of export `vol<volume>` of site `host`, as the
   * site's NBD server takes it: an export the site does not have fails the connection (`unknownExport`),
   * the request is checked against the flags of the host's connection (read-only at its handshake, past the
   * end), the export writes and flushes. Rejects with the {@link NbdReplyError} the host would read.
   *
   * Each host is connected to every export of its site from the start ({@link connectHosts}) and keeps a
   * connection while the export was writable at its handshake; it opens one whose handshake found the export
   * read-only again before it writes (nothing can be written on it). So a kept connection's flag may be stale
   * (the site was fenced, failed or demoted since): its write then reaches the site node, which must refuse
   * it itself (`NotWritable`, EPERM), as the flag would have.
   */
  async hostWrite(host: SiteId, volume: number, offset: number, data: Uint8Array): Promise<void> {
    const exported = this.exports[host].find((candidate) => candidate.name === `vol${volume}`);
    if (exported === undefined) throw new NbdClientError('unknownExport', `site ${host} has no export vol${volume}`);
    const connection = `${host}/${volume}`;
    let readOnly = this.#readOnlyAtHandshake.get(connection);
    if (readOnly !== false) {
      readOnly = exported.readOnly();
      this.#readOnlyAtHandshake.set(connection, readOnly);
    }
    const request = { type: NbdCommand.write, flags: NbdCommandFlag.fua, cookie: 0n, offset: BigInt(offset), length: data.length };
    const errno = checkRequest(request, { sizeBytes: exported.sizeBytes, readOnly });
    if (errno !== 0) throw new NbdReplyError('write', errno);
    try {
      await exported.write(offset, data, true);
    } catch (error) {
      if (error instanceof NbdError) throw new NbdReplyError('write', error.errno);
      throw error;
    }
  }

  /** Connects host 1 to every export of site 1, and host 2 to those of site 2 (hosts that mount their volumes at start). */
  connectHosts(): void {
    for (const host of [1, 2] as const) for (const exported of this.exports[host]) this.#readOnlyAtHandshake.set(`${host}/${exported.name.slice('vol'.length)}`, exported.readOnly());
  }

  /**
   * Gives each node the time (a tick, as a process does) and waits until the deployment is quiescent and
   * its status the same twice in a row; resolves with that status. Throws after
   * {@link memoryDeploymentLimits}.settlePollsMax polls.
   */
  settle(): Promise<DeploymentStatus> {
    this.#clockMs += memoryDeploymentLimits.tickMs;
    for (const node of Object.values(this.nodes)) node.onTick(this.#clockMs);
    let polls = 0;
    return settleDeployment(() => this.operator.status(true), {
      check: (reason, last) => {
        this.throwIfCrashed();
        polls += 1;
        if (polls > memoryDeploymentLimits.settlePollsMax) {
          throw new Error(`the in-process deployment did not settle within ${memoryDeploymentLimits.settlePollsMax} polls: ${reason ?? 'its status kept changing'}; last status ${last}`);
        }
      },
      pause: () => turn(),
    });
  }

  /**
   * Resolves as `work` does, turn by turn of the event loop: what a node threw meanwhile, or work still
   * going after {@link memoryDeploymentLimits}.stepTurnsMax turns, rejects instead (not a hang).
   */
  async untilDone<T>(work: Promise<T>): Promise<T> {
    let finished = false;
    const tracked = work.finally(() => {
      finished = true;
    });
    // Awaited below once finished; handled here meanwhile, for the case that this gives up first.
    tracked.catch(() => undefined);
    for (let turns = 0; !finished; turns += 1) {
      this.throwIfCrashed();
      if (turns >= memoryDeploymentLimits.stepTurnsMax) throw new Error(`a step did not end within ${memoryDeploymentLimits.stepTurnsMax} turns of the event loop`);
      await turn();
    }
    return tracked;
  }

  /** Throws what a node threw while the network delivered to it (a site process would have died of it). */
  throwIfCrashed(): void {
    if (this.#crash !== null) throw new Error(`a site node threw while the network delivered to it: ${this.#crash instanceof Error ? `${this.#crash.name}: ${this.#crash.message}` : String(this.#crash)}`, { cause: this.#crash });
  }

  /**
   * Takes the nodes off the network, dropping what it still holds (nothing, after a settle; a path that
   * diverged may leave frames and notices due), and closes them (their pending writes and steps fail).
   */
  close(): void {
    this.net.queue.length = 0;
    this.net.nodes.clear();
    for (const node of Object.values(this.nodes)) node.close();
  }
}

/**
 * The in-process deployment as an asynchronous system under test: a fresh {@link MemoryDeployment} per path,
 * configured from the model's bounds as the processes' driver configures its processes at a reset
 * (`driverConfigFor`, `boundsOf`). Each event goes through `deploymentCommandOf` (host writes through
 * {@link MemoryDeployment.hostWrite}), the deployment then settles, and the observation is taken from the
 * status it settled on.
 */
export class MemoryDeploymentSut implements AsyncSystemUnderTest {
  /** The status the last step settled on (the next observation is taken from it). */
  #settled: DeploymentStatus | null = null;

  constructor(
    readonly deployment: MemoryDeployment,
    private readonly blockBytes: number,
  ) {}

  /** A fresh deployment with the model's bounds, settled (its three sites connected). */
  static async create(params: ModelParams): Promise<MemoryDeploymentSut> {
    const sut = new MemoryDeploymentSut(new MemoryDeployment(memoryDeploymentConfig(boundsOf(driverConfigFor(params)))), params.blockBytes);
    sut.#settled = await sut.deployment.settle();
    sut.deployment.connectHosts();
    return sut;
  }

  async apply(event: ModelEvent): Promise<StepOutcome> {
    const deployment = this.deployment;
    this.#settled = null;
    const command = deploymentCommandOf(deployment.operator, driverEventFor(event, this.blockBytes), (host, volume, offset, data) => deployment.hostWrite(host, volume, offset, data));
    let outcome: StepOutcome = { accepted: true };
    try {
      await deployment.untilDone(command.run());
    } catch (error) {
      deployment.throwIfCrashed();
      const refusal = refusalAnswerOf(error);
      if (refusal === null) throw error;
      outcome = refusalOfAnswer(refusal.code, refusal.message);
    }
    this.#settled = await deployment.settle();
    return outcome;
  }

  async observe(): Promise<Observation> {
    this.#settled ??= await this.deployment.settle();
    return observationOf(this.#settled);
  }

  async close(): Promise<void> {
    this.deployment.close();
  }
}
