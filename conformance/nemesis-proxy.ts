/**
 * A TCP proxy for one peer link of a deployment, owned by the nemesis: the dialling site's configuration
 * names the proxy's port as its peer's address, and the proxy carries the bytes to the peer's real port. It
 * reads nothing it carries, so TLS on the link passes through unchanged (the certificates name the host,
 * which is the same loopback address).
 *
 * A cut resets every connection (both sockets destroyed) and resets each new one at once, so the sites see
 * what a broken network shows them: a connection that ends and dials that fail, with no operator command.
 */

import * as net from 'node:net';

/** Connections one proxy carries at most at a time (a link has one; redials overlap briefly). */
export const proxyConnectionsMax = 16;

/** A proxy of one link. */
export class LinkProxy {
  readonly #sockets = new Set<net.Socket>();
  #server: net.Server | null = null;
  #cut = false;
  /** Connections reset by cuts, for the figures. */
  resets = 0;

  private constructor(
    readonly port: number,
    readonly targetPort: number,
  ) {}

  /** Starts a proxy on `listenPort` (127.0.0.1) towards `targetPort` (127.0.0.1). */
  static async start(listenPort: number, targetPort: number): Promise<LinkProxy> {
    const proxy = new LinkProxy(listenPort, targetPort);
    const server = net.createServer((inbound) => proxy.#accept(inbound));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listenPort, '127.0.0.1', () => resolve());
    });
    proxy.#server = server;
    return proxy;
  }

  #accept(inbound: net.Socket): void {
    if (this.#cut || this.#sockets.size >= proxyConnectionsMax) {
      inbound.on('error', () => undefined);
      inbound.resetAndDestroy();
      return;
    }
    const outbound = net.connect({ host: '127.0.0.1', port: this.targetPort });
    for (const socket of [inbound, outbound]) {
      this.#sockets.add(socket);
      socket.setNoDelay(true);
      // A reset or a refused target ends both halves; the sites see a lost connection.
      socket.on('error', () => undefined);
      socket.on('close', () => {
        this.#sockets.delete(socket);
        inbound.destroy();
        outbound.destroy();
      });
    }
    inbound.pipe(outbound);
    outbound.pipe(inbound);
  }

  /** Whether the link is cut now. */
  get isCut(): boolean {
    return this.#cut;
  }

  /** Breaks the link: every connection reset, new ones reset until {@link restore}. */
  cut(): void {
    this.#cut = true;
    for (const socket of [...this.#sockets]) {
      this.resets += 1;
      if (!socket.destroyed) socket.resetAndDestroy();
    }
  }

  /** Carries connections again (the dialling site redials on its own backoff). */
  restore(): void {
    this.#cut = false;
  }

  /** Closes the listener and every connection. */
  async close(): Promise<void> {
    for (const socket of [...this.#sockets]) socket.destroy();
    const server = this.#server;
    if (server !== null) await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
