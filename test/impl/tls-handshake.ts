/**
 * One TLS 1.3 handshake between two sets of the cluster's credentials, for the credentials tests: a server with
 * `server`'s, a client with `client`'s that expects the server to be `expected`. Resolves to what the server saw
 * of the client (its principal, or the error) and whether the client's side succeeded.
 */
import * as tls from 'node:tls';
import { authenticatedPrincipal, tlsClientOptions, tlsServerOptions, type Principal, type TlsCredentials } from '../../impl/net/tls-identity.ts';

/** How long the server's side may take to see the client before the handshake is called failed. */
export const handshakeWaitMs = 2000;

export async function handshake(server: TlsCredentials, client: TlsCredentials, expected: Principal): Promise<{ server: Principal | Error; client: 'ok' | Error }> {
  let seen: ((value: Principal | Error) => void) | undefined;
  const serverSaw = new Promise<Principal | Error>((resolve) => (seen = resolve));
  const listener = tls.createServer(tlsServerOptions(server), (socket) => {
    try {
      seen!(authenticatedPrincipal(socket, server.cluster));
    } catch (error) {
      seen!(error as Error);
    }
    socket.end();
  });
  listener.on('tlsClientError', (error) => seen!(error));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as { port: number }).port;
  let socket: tls.TLSSocket | undefined;
  try {
    const clientResult = await new Promise<'ok' | Error>((resolve) => {
      socket = tls.connect({ host: '127.0.0.1', port, ...tlsClientOptions(client, expected) }, () => resolve('ok'));
      socket.on('error', (error) => resolve(error));
      socket.on('data', () => undefined);
    });
    const serverResult = await Promise.race([serverSaw, new Promise<Error>((resolve) => setTimeout(() => resolve(new Error('no handshake at the server')), handshakeWaitMs))]);
    return { server: serverResult, client: clientResult };
  } finally {
    socket?.destroy();
    listener.close();
  }
}
