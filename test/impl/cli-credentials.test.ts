/**
 * `threesite init` and `threesite credentials` run in-process (impl/site/cli.ts `main`): where init puts the
 * sites (`--listen`), what that makes of `nbdTls` and of the addresses each site's certificate names, the
 * warning a site gives when its configuration serves plain NBD beyond loopback; and rotation: after
 * `credentials rotate` a site's new credentials refuse the old operator's and hosts' certificates and take
 * the new ones (TLS 1.3 handshakes with the identities the ports use, impl/net/tls-identity.ts).
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata'; // before @peculiar/x509, which requires it (impl/site/credentials.ts)
import * as x509 from '@peculiar/x509';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../impl/site/cli.ts';
import { loadDeploymentConfig, nbdTlsWarning } from '../../impl/site/deployment-config.ts';
import { credentialsLayoutOf, hostCredentials, operatorCredentials, siteCredentials } from '../../impl/site/credentials.ts';
import type { Principal, TlsCredentials } from '../../impl/net/tls-identity.ts';
import { handshake as tlsHandshake } from './tls-handshake.ts';

beforeEach(() => {
  vi.spyOn(console, 'log').mockImplementation(() => undefined);
  vi.spyOn(console, 'error').mockImplementation(() => undefined);
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Runs `threesite init --dir <new dir> ...extra`; the exit status and the configuration file's path. */
async function init(...extra: string[]): Promise<{ status: number; file: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'threesite-init-'));
  const status = await main(['init', '--dir', dir, ...extra]);
  return { status, file: join(dir, 'cluster.json') };
}

/** The subject alternative names of site `site`'s certificate, as `ip:ADDR` and `dns:NAME`. */
function siteNames(file: string, site: 1 | 2 | 3): string[] {
  const layout = credentialsLayoutOf(loadDeploymentConfig(file));
  const certificate = new x509.X509Certificate(readFileSync(join(layout.siteDir(site), 'server-cert.pem'), 'utf8'));
  const names = certificate.getExtension(x509.SubjectAlternativeNameExtension)?.names.toJSON() ?? [];
  return names.map((name) => `${name.type}:${name.value}`);
}

describe('threesite init --listen', () => {
  it('keeps loopback sites on optional NBD TLS', async () => {
    const { status, file } = await init();
    expect(status).toBe(0);
    const written = JSON.parse(readFileSync(file, 'utf8'));
    expect(written.nbdTls).toBe('optional');
    for (const id of ['1', '2', '3']) expect(written.sites[id].host).toBe('127.0.0.1');
  });

  it('requires NBD TLS when the sites listen on another address, and names it in every site certificate', async () => {
    const { status, file } = await init('--listen', '10.1.2.3');
    expect(status).toBe(0);
    const written = JSON.parse(readFileSync(file, 'utf8'));
    expect(written.nbdTls).toBe('required');
    for (const id of [1, 2, 3] as const) {
      expect(written.sites[id].host).toBe('10.1.2.3');
      expect(siteNames(file, id)).toContain('ip:10.1.2.3');
    }
  });

  it('requires NBD TLS when one site listens elsewhere (--listen N=ADDR), naming the address in that site certificate', async () => {
    const { status, file } = await init('--listen', '2=site-2.example.net');
    expect(status).toBe(0);
    const config = loadDeploymentConfig(file);
    expect(config.nbdTls).toBe('required');
    expect([config.sites[1].host, config.sites[2].host, config.sites[3].host]).toEqual(['127.0.0.1', 'site-2.example.net', '127.0.0.1']);
    expect(siteNames(file, 2)).toContain('dns:site-2.example.net');
    expect(siteNames(file, 1)).not.toContain('dns:site-2.example.net');
  });

  it('refuses a wildcard, a malformed address and two addresses for every site', async () => {
    for (const args of [['--listen', '0.0.0.0'], ['--listen', '4=10.0.0.1'], ['--listen', 'a b'], ['--listen', '10.0.0.1', '--listen', '10.0.0.2']]) {
      expect((await init(...args)).status, args.join(' ')).toBe(2);
    }
  });
});

describe('threesite serve on plain NBD beyond loopback', () => {
  it('warns when nbdTls is optional and the site listens on anything but loopback', async () => {
    const { file } = await init('--listen', '1=10.1.2.3');
    const config = loadDeploymentConfig(file);
    expect(nbdTlsWarning(config, 1)).toBeNull(); // init wrote required
    const edited = { ...config, nbdTls: 'optional' as const };
    expect(nbdTlsWarning(edited, 1)).toMatch(/WARNING: nbdTls is "optional" but site 1 listens on 10\.1\.2\.3/);
    expect(nbdTlsWarning(edited, 2)).toBeNull(); // loopback
  });
});

/** What a site with `server`'s credentials saw of a client with `client`'s (its principal, or the error). */
async function handshake(server: TlsCredentials, client: TlsCredentials): Promise<Principal | Error> {
  return (await tlsHandshake(server, client, { kind: 'site', site: 1 })).server;
}

describe('threesite credentials rotate', () => {
  it('issues a new authority and every certificate: a site with the new ones refuses the old operator and hosts and takes the new', async () => {
    const { file } = await init();
    const config = loadDeploymentConfig(file);
    expect(await main(['credentials', 'issue', '--host', '5', '--config', file])).toBe(0);
    const before = { site1: siteCredentials(config, 1), operator: operatorCredentials(config), host1: hostCredentials(config, 1), host5: hostCredentials(config, 5) };
    expect(await handshake(before.site1, before.operator)).toEqual({ kind: 'operator' });

    expect(await main(['credentials', 'rotate', '--config', file])).toBe(0);
    const after = { site1: siteCredentials(config, 1), operator: operatorCredentials(config), host1: hostCredentials(config, 1), host5: hostCredentials(config, 5) };
    expect(after.site1.ca).not.toBe(before.site1.ca);

    // A site serving the new credentials (restarted): the old operator's and hosts' certificates are refused,
    // the new ones let in, host 5's (issued after init) too.
    for (const old of [before.operator, before.host1, before.host5]) expect(await handshake(after.site1, old)).toBeInstanceOf(Error);
    expect(await handshake(after.site1, after.operator)).toEqual({ kind: 'operator' });
    expect(await handshake(after.site1, after.host1)).toEqual({ kind: 'host', host: 1 });
    expect(await handshake(after.site1, after.host5)).toEqual({ kind: 'host', host: 5 });
    // A site still serving the old credentials (not yet restarted) refuses the new operator: why every site restarts.
    expect(await handshake(before.site1, after.operator)).toBeInstanceOf(Error);
    // Sites authenticate each other the same way: a restarted site and one that is not do not link.
    expect(await handshake(after.site1, before.site1)).toBeInstanceOf(Error);
  });
});
