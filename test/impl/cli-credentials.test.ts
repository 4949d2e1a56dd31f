/**
 * `threesite init` and `threesite credentials` run in-process (impl/site/cli.ts `main`): where init puts the
 * sites (`--listen`), what that makes of `nbdTls` and of the addresses each site's certificate names, and the
 * warning a site gives when its configuration serves plain NBD beyond loopback.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import 'reflect-metadata'; // before @peculiar/x509, which requires it (impl/site/credentials.ts)
import * as x509 from '@peculiar/x509';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { main } from '../../impl/site/cli.ts';
import { loadDeploymentConfig, nbdTlsWarning } from '../../impl/site/deployment-config.ts';
import { credentialsLayoutOf } from '../../impl/site/credentials.ts';

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
