/**
 * Hosts over TLS against real site processes (`nbdTls: required`), with Debian's real clients and the host
 * credentials `threesite init` made (`tls/host-1`): nbdinfo and nbdcopy through libnbd's `nbds://` URI with
 * `tls-certificates`, qemu-io and qemu-img with a `tls-creds-x509` object (qemu checks the site's certificate
 * against the address it dialled), fio's nbd engine through the same URI. A plain client sees no export, and
 * a host certificate of another cluster is refused; the site logs both.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createDeploymentCredentials, credentialsLayout } from '../../impl/site/credentials.ts';
import { Deployment, run } from './deployment.ts';

/** Output and exit code of a client, without throwing on a nonzero exit. */
async function client(file: string, args: string[]): Promise<{ code: number; out: string }> {
  try {
    const { stdout, stderr } = await run(file, args, { timeout: 60_000, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, out: stdout + stderr };
  } catch (error) {
    const failed = error as { code?: number | string; stdout?: string; stderr?: string };
    return { code: typeof failed.code === 'number' ? failed.code : -1, out: `${failed.stdout ?? ''}${failed.stderr ?? String(error)}` };
  }
}

let d: Deployment;

beforeAll(async () => {
  d = await Deployment.create({ nbdTls: 'required' });
  for (const site of [1, 2, 3] as const) d.start(site);
  await d.waitFor('the three sites connected', Deployment.allConnected);
}, 60_000);

afterAll(async () => {
  await d?.stop();
});

describe('NBD over TLS on site processes, with real clients', () => {
  it('serves nbdinfo, qemu-io, qemu-img, nbdcopy and fio over TLS with a host certificate', async () => {
    const info = await client('nbdinfo', [d.nbdsUri(1)]);
    expect(info.code, info.out).toBe(0);
    expect(info.out).toContain('with TLS');
    expect(info.out).toContain('export-size: 16777216');
    const listed = await client('nbdinfo', ['--list', d.nbdsUri(1).replace('/vol0', '')]);
    expect(listed.code, listed.out).toBe(0);
    expect(listed.out).toContain('vol1');

    const qemu = await client('qemu-io', [...d.qemuTlsObject(), '--image-opts', d.qemuImage(1, 0), '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M']);
    expect(qemu.code, qemu.out).toBe(0);
    expect(qemu.out).toContain('wrote 1048576/1048576 bytes');
    expect(qemu.out).not.toContain('Pattern verification failed');
    // Replicated synchronously: site 2's export holds the same bytes, as qemu-img compares them over TLS.
    const compare = await client('qemu-img', ['compare', ...d.qemuTlsObject(), '--image-opts', d.qemuImage(1, 0), d.qemuImage(2, 0)]);
    expect(compare.code, compare.out).toBe(0);
    expect(compare.out).toContain('Images are identical');

    const image = join(d.dir, 'vol0.img');
    const copy = await client('nbdcopy', [d.nbdsUri(2), image]);
    expect(copy.code, copy.out).toBe(0);
    const bytes = readFileSync(image);
    expect(bytes.length).toBe(16 * 1024 * 1024);
    expect(bytes.subarray(0, 1024 * 1024).every((byte) => byte === 0xab)).toBe(true);

    // fio's nbd engine: an nbds:// URI, the certificates from the host user's libnbd home (see hostHome).
    const fio = await d.runAsHost('fio', [
      '--name=tls',
      '--ioengine=nbd',
      `--uri=nbds://127.0.0.1:${d.nbdPort(1)}/vol1`,
      '--rw=randwrite',
      '--bs=4k',
      '--size=2M',
      '--iodepth=16',
      '--verify=crc32c',
      '--do_verify=1',
      '--randseed=14',
      '--verify_state_save=0',
    ]);
    expect(fio.stdout).toMatch(/err= 0/);
    expect(fio.stdout).toMatch(/issued rwts: total=512,512/);
  }, 120_000);

  it('serves no export to a plain client, and refuses a host certificate of another cluster', async () => {
    const plainInfo = await client('nbdinfo', [`nbd://127.0.0.1:${d.nbdPort(1)}/vol0`]);
    expect(plainInfo.code).not.toBe(0);
    expect(plainInfo.out).toMatch(/without TLS/);
    const plainQemu = await client('qemu-io', ['-f', 'raw', d.nbdUri(1, 1), '-c', 'read 0 4k']);
    expect(plainQemu.code).not.toBe(0);
    expect(plainQemu.out).toMatch(/TLS|not supported|refused/i);

    // Another cluster, made by the same tool, with its host credentials in the place libnbd reads them.
    const dir = mkdtempSync(join(tmpdir(), 'threesite-other-'));
    const layout = credentialsLayout(join(dir, 'tls'), { 1: join(dir, 'site-1'), 2: join(dir, 'site-2'), 3: join(dir, 'site-3') });
    await createDeploymentCredentials(layout, 'e2e', { 1: '127.0.0.1', 2: '127.0.0.1', 3: '127.0.0.1' }, [1]);
    const outsider = await client('nbdinfo', [`nbds://127.0.0.1:${d.nbdPort(1)}/vol0?tls-certificates=${layout.hostDir(1)}`]);
    expect(outsider.code).not.toBe(0);
    const outsiderQemu = await client('qemu-io', ['--object', `tls-creds-x509,id=tls0,endpoint=client,dir=${layout.hostDir(1)}`, '--image-opts', d.qemuImage(1, 0), '-c', 'read 0 4k']);
    expect(outsiderQemu.code).not.toBe(0);
    await d.waitFor('the refusals logged', () => (d.logs.get(1) ?? []).filter((line) => line.includes('authenticationFailed')).length >= 1);
    // The real host is still served.
    const info = await client('nbdinfo', [d.nbdsUri(1)]);
    expect(info.code, info.out).toBe(0);
  }, 120_000);
});
