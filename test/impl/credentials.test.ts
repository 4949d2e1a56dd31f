/**
 * Credentials made at `threesite init` (impl/site/credentials.ts) and the TLS identities they carry
 * (impl/net/tls-identity.ts): every file where a host's NBD client looks for it, every key 0600, and a TLS 1.3
 * handshake that lets in exactly the principal expected, of this cluster only.
 */
import { chmodSync, mkdtempSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  createDeploymentCredentials,
  credentialsLayout,
  CredentialsError,
  readCredentials,
  type CredentialsLayout,
} from '../../impl/site/credentials.ts';
import { AuthenticationError, principalName, principalOf, type Principal } from '../../impl/net/tls-identity.ts';
import { handshake } from './tls-handshake.ts';

async function deployment(cluster: string): Promise<CredentialsLayout> {
  const dir = mkdtempSync(join(tmpdir(), 'threesite-credentials-'));
  const layout = credentialsLayout(join(dir, 'tls'), { 1: join(dir, 'site-1'), 2: join(dir, 'site-2'), 3: join(dir, 'site-3') });
  await createDeploymentCredentials(layout, cluster, { 1: '127.0.0.1', 2: '127.0.0.1', 3: '127.0.0.1' });
  return layout;
}

describe('credentials', () => {
  it('names principals as certificates do, and nothing else', () => {
    expect(principalOf('site-2')).toEqual({ kind: 'site', site: 2 });
    expect(principalOf('operator')).toEqual({ kind: 'operator' });
    expect(principalOf('host-12')).toEqual({ kind: 'host', host: 12 });
    for (const name of ['site-4', 'site-0', 'host-0', 'host-65', 'host-01', 'Operator', '', 'site-1 ']) expect(principalOf(name), name).toBeNull();
    for (const p of [{ kind: 'site', site: 3 }, { kind: 'operator' }, { kind: 'host', host: 7 }] as Principal[]) expect(principalOf(principalName(p))).toEqual(p);
  });

  it('writes every file where qemu and libnbd look for it, every key readable by its owner alone', async () => {
    const layout = await deployment('files');
    const files = [
      join(layout.caDir, 'ca-cert.pem'),
      join(layout.caDir, 'ca-key.pem'),
      ...[1, 2, 3].flatMap((site) => ['ca-cert.pem', 'server-cert.pem', 'server-key.pem'].map((f) => join(layout.siteDir(site as 1 | 2 | 3), f))),
      ...[layout.operatorDir, layout.hostDir(1), layout.hostDir(2), layout.hostDir(3)].flatMap((dir) => ['ca-cert.pem', 'client-cert.pem', 'client-key.pem'].map((f) => join(dir, f))),
    ];
    for (const file of files) expect(statSync(file).mode & 0o777, file).toBe(0o600);
    for (const dir of [layout.caDir, layout.operatorDir, layout.siteDir(1)]) expect(statSync(dir).mode & 0o777, dir).toBe(0o700);
  });

  it('refuses a private key that others can read, naming the file', async () => {
    const layout = await deployment('modes');
    const key = join(layout.hostDir(1), 'client-key.pem');
    chmodSync(key, 0o644);
    expect(() => readCredentials(layout.hostDir(1), 'client', 'modes')).toThrow(CredentialsError);
    expect(() => readCredentials(layout.hostDir(1), 'client', 'modes')).toThrow(/client-key.pem: is readable by others \(mode 644\)/);
    expect(() => readCredentials(join(layout.caDir, 'missing'), 'client', 'modes')).toThrow(/cannot be read/);
  });

  it('lets in the principal expected over TLS 1.3, and refuses another principal and another cluster', async () => {
    const ours = await deployment('ours');
    const theirs = await deployment('theirs');
    const site1 = readCredentials(ours.siteDir(1), 'server', 'ours');
    const site2 = readCredentials(ours.siteDir(2), 'server', 'ours');
    const operator = readCredentials(ours.operatorDir, 'client', 'ours');

    const good = await handshake(site1, site2, { kind: 'site', site: 1 });
    expect(good.client).toBe('ok');
    expect(good.server).toEqual({ kind: 'site', site: 2 });
    expect((await handshake(site1, operator, { kind: 'site', site: 1 })).server).toEqual({ kind: 'operator' });

    // The dialler expected site 3 and reached site 1: the client refuses the server.
    const wrong = await handshake(site1, site2, { kind: 'site', site: 3 });
    expect(wrong.client).toBeInstanceOf(AuthenticationError);
    expect((wrong.client as AuthenticationError).failure).toBe('wrongPrincipal');

    // A valid site certificate of another cluster: its chain does not lead to our authority.
    const outsider = readCredentials(theirs.siteDir(2), 'server', 'theirs');
    const foreign = await handshake(site1, outsider, { kind: 'site', site: 1 });
    expect(foreign.server).toBeInstanceOf(Error);
    expect(foreign.server).not.toHaveProperty('kind');
    expect(foreign.client).not.toBe('ok');

    // Our authority, but read as if the cluster had another name: the subject's organisation is checked too.
    const renamed = await handshake({ ...site1, cluster: 'other-name' }, site2, { kind: 'site', site: 1 });
    expect(renamed.server).toBeInstanceOf(AuthenticationError);
    expect((renamed.server as AuthenticationError).failure).toBe('otherCluster');
  });
});
