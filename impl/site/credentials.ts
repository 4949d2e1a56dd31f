/**
 * The credentials of a deployment, made by `threesite init`: the cluster's own certificate authority, a
 * certificate and key per site, one for the operator and one per host. Every port of a site requires TLS 1.3
 * with a certificate of this authority (`impl/net/tls-identity.ts` says how a peer is recognised).
 *
 * Layout (file names are those qemu's `tls-creds-x509` and libnbd's `tls-certificates=DIR` read, so a host
 * points its NBD client at its directory as it is):
 *
 *     DIR/tls/ca/ca-cert.pem, ca-key.pem          the authority (its key issues and rotates certificates)
 *     DIR/tls/operator/ca-cert.pem, client-cert.pem, client-key.pem
 *     DIR/tls/host-N/ca-cert.pem, client-cert.pem, client-key.pem      (N = 1, 2, 3 at init; more on request)
 *     <site dir>/tls/ca-cert.pem, server-cert.pem, server-key.pem       (a site's own: server and client)
 *
 * Every private key is written with mode 0600 in a directory of mode 0700, and a key file that others can
 * read is refused when loaded ({@link CredentialsError}), as ssh refuses an unprotected key.
 *
 * Certificates are made with `@peculiar/x509` over Node's WebCrypto: Node's `crypto` makes keys but not
 * certificates; the library is maintained, has no native code, and makes ECDSA P-256 certificates that
 * OpenSSL (Node), GnuTLS (qemu, libnbd, nbdkit) and every other TLS stack accept. `reflect-metadata` is the
 * polyfill of the Reflect metadata API that `@peculiar/x509` requires (its dependency injection, tsyringe,
 * throws at load without it); it is imported first, before the library.
 */

// The Reflect metadata polyfill @peculiar/x509 requires, loaded before it (see the file comment).
import 'reflect-metadata';
import * as x509 from '@peculiar/x509';
import { webcrypto } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isIP } from 'node:net';
import { hostsMax, principalName, type Principal, type TlsCredentials } from '../net/tls-identity.ts';
import type { DeploymentConfig } from './deployment-config.ts';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

/** How long the authority's certificate is valid: ten years. */
export const caValidityDays = 3650;

/** How long a site's, the operator's or a host's certificate is valid: two years (rotate before). */
export const leafValidityDays = 730;

/** Largest PEM file read: 64 KiB (a certificate is about 1 KiB). */
export const pemFileBytesMax = 64 * 1024;

/** Hosts that `threesite init` makes credentials for: one per site. */
export const initHosts: readonly number[] = [1, 2, 3];

const algorithm = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** Why credentials could not be read: the file and what is wrong with it. */
export class CredentialsError extends Error {
  constructor(
    readonly file: string,
    readonly reason: string,
  ) {
    super(`credentials ${file}: ${reason}`);
    this.name = 'CredentialsError';
  }
}

/** The authority of a cluster: its certificate and signing key, in memory while certificates are issued. */
export interface ClusterAuthority {
  readonly cluster: string;
  readonly certificate: x509.X509Certificate;
  readonly privateKey: CryptoKey;
}

/** Where the credentials of a deployment live. */
export interface CredentialsLayout {
  /** The authority's directory: `DIR/tls/ca`. */
  readonly caDir: string;
  /** The operator's directory: `DIR/tls/operator`. */
  readonly operatorDir: string;
  /** Host N's directory: `DIR/tls/host-N`. */
  hostDir(host: number): string;
  /** Site N's directory: `<site dir>/tls`. */
  siteDir(site: 1 | 2 | 3): string;
}

/**
 * The layout of a deployment's credentials: the authority, operator and hosts under `credentialsDir`
 * (`DIR/tls` as `threesite init` makes it), each site's under its own data directory.
 */
export function credentialsLayout(credentialsDir: string, siteDirs: Record<1 | 2 | 3, string>): CredentialsLayout {
  return {
    caDir: path.join(credentialsDir, 'ca'),
    operatorDir: path.join(credentialsDir, 'operator'),
    hostDir: (host) => path.join(credentialsDir, `host-${host}`),
    siteDir: (site) => path.join(siteDirs[site], 'tls'),
  };
}

/** The layout of a deployment's credentials, from its configuration. */
export function credentialsLayoutOf(config: Pick<DeploymentConfig, 'credentialsDir' | 'sites'>): CredentialsLayout {
  return credentialsLayout(config.credentialsDir, { 1: config.sites[1].dir, 2: config.sites[2].dir, 3: config.sites[3].dir });
}

/** Site `site`'s own credentials (server and client of its links, server of its NBD and control ports). */
export function siteCredentials(config: DeploymentConfig, site: 1 | 2 | 3): TlsCredentials {
  return readCredentials(credentialsLayoutOf(config).siteDir(site), 'server', config.cluster);
}

/** The operator's credentials (client of every control port). */
export function operatorCredentials(config: DeploymentConfig): TlsCredentials {
  return readCredentials(credentialsLayoutOf(config).operatorDir, 'client', config.cluster);
}

/** Host `host`'s credentials (client of the sites' NBD ports). */
export function hostCredentials(config: DeploymentConfig, host: number): TlsCredentials {
  return readCredentials(credentialsLayoutOf(config).hostDir(host), 'client', config.cluster);
}

/**
 * The hosts that hold credentials under `credentialsDir` (`host-N` directories, N in 1..{@link hostsMax}) and
 * those `init` makes, ascending: the hosts `threesite credentials rotate` issues anew, so that a host added
 * with `credentials issue --host N` is not left with a certificate of the old authority.
 */
export function hostsWithCredentials(credentialsDir: string): number[] {
  const names = fs.existsSync(credentialsDir) ? fs.readdirSync(credentialsDir) : [];
  const found = names.map((name) => /^host-([1-9]\d*)$/.exec(name)?.[1]).filter((digits): digits is string => digits !== undefined).map(Number);
  return [...new Set([...initHosts, ...found.filter((host) => host <= hostsMax)])].sort((a, b) => a - b);
}

/** Makes every credential of a new deployment from its configuration (see {@link createDeploymentCredentials}). */
export function createCredentialsFor(config: DeploymentConfig, hosts: readonly number[] = initHosts): Promise<ClusterAuthority> {
  return createDeploymentCredentials(credentialsLayoutOf(config), config.cluster, { 1: config.sites[1].host, 2: config.sites[2].host, 3: config.sites[3].host }, hosts);
}

function serial(): string {
  // A positive 16-byte serial number (RFC 5280: unique per issuer, at most 20 bytes).
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

function days(n: number): Date {
  return new Date(Date.now() + n * 86_400_000);
}

/** A distinguished-name value escaped for x509's string form. */
function dn(commonName: string, cluster: string): string {
  const escape = (value: string): string => value.replace(/([,+"\\<>;=])/g, '\\$1');
  return `CN=${escape(commonName)}, O=${escape(cluster)}`;
}

/** Makes a new authority for `cluster`. */
export async function createAuthority(cluster: string): Promise<ClusterAuthority> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const certificate = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: dn('threesite cluster authority', cluster),
    notBefore: days(-1),
    notAfter: days(caValidityDays),
    keys,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cluster, certificate, privateKey: keys.privateKey };
}

/** A certificate and key issued by an authority, as PEM. */
export interface IssuedCredentials {
  readonly cert: string;
  readonly key: string;
}

/**
 * Issues a certificate for `principal`. A site's is both a server's and a client's (it accepts and dials
 * links) and names `hosts` (the addresses hosts and peers reach it at) as subject alternative names, which
 * qemu and libnbd check; the operator's and a host's are a client's.
 */
export async function issue(authority: ClusterAuthority, principal: Principal, hosts: readonly string[] = []): Promise<IssuedCredentials> {
  const keys = (await webcrypto.subtle.generateKey(algorithm, true, ['sign', 'verify'])) as CryptoKeyPair;
  const site = principal.kind === 'site';
  const names = [...new Set(['localhost', '127.0.0.1', ...hosts])].map((value) => ({ type: isIP(value) === 0 ? 'dns' : 'ip', value }) as const);
  const certificate = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: dn(principalName(principal), authority.cluster),
    issuer: authority.certificate.subject,
    notBefore: days(-1),
    notAfter: days(leafValidityDays),
    signingKey: authority.privateKey,
    publicKey: keys.publicKey,
    signingAlgorithm: algorithm,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension(site ? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth] : [x509.ExtendedKeyUsage.clientAuth]),
      ...(site ? [new x509.SubjectAlternativeNameExtension(names)] : []),
      await x509.AuthorityKeyIdentifierExtension.create(authority.certificate),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey), 'PRIVATE KEY');
  return { cert: certificate.toString('pem'), key };
}

function writePrivate(file: string, text: string): void {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
  fs.chmodSync(path.dirname(file), 0o700);
  const temporary = `${file}.tmp`;
  fs.writeFileSync(temporary, text, { mode: 0o600 });
  fs.chmodSync(temporary, 0o600);
  fs.renameSync(temporary, file);
}

function certFileOf(kind: 'server' | 'client'): { cert: string; key: string } {
  return { cert: `${kind}-cert.pem`, key: `${kind}-key.pem` };
}

/** Writes an endpoint's directory: the authority's certificate, its own certificate and key (0600). */
export function writeCredentials(dir: string, kind: 'server' | 'client', authority: ClusterAuthority, issued: IssuedCredentials): void {
  const names = certFileOf(kind);
  writePrivate(path.join(dir, 'ca-cert.pem'), authority.certificate.toString('pem'));
  writePrivate(path.join(dir, names.cert), issued.cert);
  writePrivate(path.join(dir, names.key), issued.key);
}

/** Saves the authority (its key 0600) so that `threesite credentials` can issue and rotate later. */
export async function writeAuthority(dir: string, authority: ClusterAuthority): Promise<void> {
  writePrivate(path.join(dir, 'ca-cert.pem'), authority.certificate.toString('pem'));
  const key = x509.PemConverter.encode(await webcrypto.subtle.exportKey('pkcs8', authority.privateKey), 'PRIVATE KEY');
  writePrivate(path.join(dir, 'ca-key.pem'), key);
}

function readPem(file: string, secret: boolean): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (error) {
    throw new CredentialsError(file, `cannot be read: ${(error as Error).message} (made by threesite init)`);
  }
  if (!stat.isFile()) throw new CredentialsError(file, 'is not a file');
  if (stat.size > pemFileBytesMax) throw new CredentialsError(file, `is ${stat.size} bytes, at most ${pemFileBytesMax}`);
  if (secret && (stat.mode & 0o077) !== 0) {
    throw new CredentialsError(file, `is readable by others (mode ${(stat.mode & 0o777).toString(8)}): a private key must be 0600 (chmod 600 ${file})`);
  }
  const text = fs.readFileSync(file, 'utf8');
  if (!text.includes('-----BEGIN ')) throw new CredentialsError(file, 'is not PEM');
  return text;
}

/** Loads the authority of a deployment. */
export async function readAuthority(dir: string, cluster: string): Promise<ClusterAuthority> {
  const certificate = new x509.X509Certificate(readPem(path.join(dir, 'ca-cert.pem'), false));
  const keyPem = readPem(path.join(dir, 'ca-key.pem'), true);
  const privateKey = await webcrypto.subtle.importKey('pkcs8', x509.PemConverter.decodeFirst(keyPem), algorithm, false, ['sign']);
  return { cluster, certificate, privateKey: privateKey as CryptoKey };
}

/** Loads an endpoint's credentials from its directory (a site's `server`, the operator's or a host's `client`). */
export function readCredentials(dir: string, kind: 'server' | 'client', cluster: string): TlsCredentials {
  const names = certFileOf(kind);
  return {
    cluster,
    ca: readPem(path.join(dir, 'ca-cert.pem'), false),
    cert: readPem(path.join(dir, names.cert), false),
    key: readPem(path.join(dir, names.key), true),
  };
}

/**
 * Makes every credential of a new deployment: the authority, the three sites' (naming the address each
 * listens on), the operator's and one host's per site. Overwrites what was there (a new authority: every
 * site must be restarted with its new credentials).
 */
export async function createDeploymentCredentials(
  layout: CredentialsLayout,
  cluster: string,
  siteHosts: Record<1 | 2 | 3, string>,
  hosts: readonly number[] = initHosts,
): Promise<ClusterAuthority> {
  const authority = await createAuthority(cluster);
  await writeAuthority(layout.caDir, authority);
  for (const site of [1, 2, 3] as const) {
    writeCredentials(layout.siteDir(site), 'server', authority, await issue(authority, { kind: 'site', site }, [siteHosts[site]]));
  }
  writeCredentials(layout.operatorDir, 'client', authority, await issue(authority, { kind: 'operator' }));
  for (const host of hosts) writeCredentials(layout.hostDir(host), 'client', authority, await issue(authority, { kind: 'host', host }));
  return authority;
}
