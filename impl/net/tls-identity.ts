/**
 * Who is at the other end of a connection: the TLS identities of a cluster. Every port of a site requires
 * TLS 1.3 with a certificate of the cluster's own certificate authority (made by `threesite init`,
 * `impl/site/credentials.ts`), and the certificate's subject names the principal: `CN=site-2, O=<cluster>`,
 * `CN=operator, O=<cluster>`, `CN=host-1, O=<cluster>`. A certificate of another cluster fails twice: its
 * chain does not lead to this cluster's authority, and its organisation names another cluster.
 *
 * This file holds only what the wire needs (the options Node's `tls` takes, and the check of an
 * authenticated socket's peer); making and reading the files is the site room's.
 */

import type { ConnectionOptions, PeerCertificate, TLSSocket, TlsOptions } from 'node:tls';

/** A principal of a cluster: one of its three sites, its operator, or a host of a site. */
export type Principal = { kind: 'site'; site: 1 | 2 | 3 } | { kind: 'operator' } | { kind: 'host'; host: number };

/** Hosts a cluster's authority issues certificates for: `host-1` .. `host-64`. */
export const hostsMax = 64;

/** The PEM texts a TLS endpoint needs: the cluster's authority, its own certificate and its private key. */
export interface TlsCredentials {
  /** The cluster's name, which every certificate of it carries as its organisation (`O=`). */
  readonly cluster: string;
  readonly ca: string;
  readonly cert: string;
  readonly key: string;
}

/** Why a connection's peer was not taken for a principal of this cluster. */
export type AuthenticationFailure = 'unauthorized' | 'noCertificate' | 'otherCluster' | 'unknownPrincipal' | 'wrongPrincipal';

/** A peer that did not authenticate as a principal of this cluster; the facts in fields. */
export class AuthenticationError extends Error {
  constructor(
    readonly failure: AuthenticationFailure,
    readonly detail: string,
  ) {
    super(`authentication failed (${failure}): ${detail}`);
    this.name = 'AuthenticationError';
  }
}

/** The certificate subject's common name of a principal: `site-2`, `operator`, `host-1`. */
export function principalName(principal: Principal): string {
  switch (principal.kind) {
    case 'site':
      return `site-${principal.site}`;
    case 'operator':
      return 'operator';
    case 'host':
      return `host-${principal.host}`;
  }
}

/** The principal a common name names, or null when it names none. */
export function principalOf(commonName: string): Principal | null {
  if (commonName === 'operator') return { kind: 'operator' };
  const site = /^site-([123])$/.exec(commonName);
  if (site !== null) return { kind: 'site', site: Number(site[1]) as 1 | 2 | 3 };
  const host = /^host-([1-9][0-9]?)$/.exec(commonName);
  if (host !== null && Number(host[1]) <= hostsMax) return { kind: 'host', host: Number(host[1]) };
  return null;
}

/** Whether two principals are the same. */
export function samePrincipal(a: Principal, b: Principal): boolean {
  return principalName(a) === principalName(b);
}

/** Handshake options every endpoint shares: TLS 1.3 only, the cluster's authority alone trusted. */
function common(credentials: TlsCredentials): { minVersion: 'TLSv1.3'; ca: string; cert: string; key: string } {
  return { minVersion: 'TLSv1.3', ca: credentials.ca, cert: credentials.cert, key: credentials.key };
}

/** A server's options: it asks every client for a certificate and rejects one the cluster did not issue. */
export function tlsServerOptions(credentials: TlsCredentials): TlsOptions {
  return { ...common(credentials), requestCert: true, rejectUnauthorized: true };
}

/**
 * A client's options for dialling `expected`: the server's certificate must chain to the cluster's authority
 * and name `expected` in this cluster (host names are not checked: a site is known by its certificate, not by
 * the address it was reached at, so a site behind a proxy or a changed address is still recognised).
 */
export function tlsClientOptions(credentials: TlsCredentials, expected: Principal): ConnectionOptions {
  return {
    ...common(credentials),
    rejectUnauthorized: true,
    checkServerIdentity: (_host: string, certificate: PeerCertificate): Error | undefined => {
      try {
        checkCertificate(certificate, credentials.cluster, expected);
        return undefined;
      } catch (error) {
        return error as Error;
      }
    },
  };
}

function field(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? undefined : value;
}

/** Checks a certificate's subject: this cluster's, and naming `expected` when given. Returns its principal. */
export function checkCertificate(certificate: PeerCertificate, cluster: string, expected?: Principal): Principal {
  if (certificate === undefined || certificate === null || certificate.subject === undefined) throw new AuthenticationError('noCertificate', 'the peer sent no certificate');
  const organisation = field(certificate.subject.O);
  const commonName = field(certificate.subject.CN);
  if (organisation !== cluster) throw new AuthenticationError('otherCluster', `certificate of cluster ${JSON.stringify(organisation)}, not ${JSON.stringify(cluster)}`);
  const principal = commonName === undefined ? null : principalOf(commonName);
  if (principal === null) throw new AuthenticationError('unknownPrincipal', `certificate names ${JSON.stringify(commonName)}`);
  if (expected !== undefined && !samePrincipal(principal, expected)) {
    throw new AuthenticationError('wrongPrincipal', `certificate names ${principalName(principal)}, expected ${principalName(expected)}`);
  }
  return principal;
}

/**
 * The principal of an authenticated TLS socket of this cluster: the handshake verified the chain (the
 * server's `rejectUnauthorized`), and this checks the subject. {@link AuthenticationError} otherwise.
 */
export function authenticatedPrincipal(socket: TLSSocket, cluster: string, expected?: Principal): Principal {
  if (!socket.authorized) throw new AuthenticationError('unauthorized', String(socket.authorizationError ?? 'no verified certificate'));
  return checkCertificate(socket.getPeerCertificate(), cluster, expected);
}
