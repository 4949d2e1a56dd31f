/**
 * The deployment checked by real, independent block-device clients (Debian's fio, qemu-io, qemu-img,
 * nbdinfo, nbdcopy): three site processes on loopback, NBD over TLS required (`nbdTls: required`: every
 * client starts TLS with its host's credentials made by init, fio's nbd engine as an unprivileged host user,
 * deployment.ts's `runAsHost`); fio writes to site 1 over NBD and site 1's process
 * is killed with SIGKILL while fio runs; host 2 takes over at site 2 and every block fio was told was
 * written must be there; site 3 catches up by delta resync and holds site 2's image at the same update
 * number; site 1 restarts, is resynced, fails back, and the three images are equal. The three processes and
 * the operator write their traces, and the merged logs replay on the model (conformance/trace-validate.ts);
 * a copy with one step altered is rejected at that step.
 */
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { formatValidation, validateTrace } from '../../conformance/trace-validate.ts';
import { Deployment, run } from './deployment.ts';
import { completedWrites, reportedBadOffsets, verifyBlock } from './fio-verify.ts';

/** fio's job: 4 KiB random writes over the first 16 MiB of volume 0, queue depth 16, fixed seed. */
const fioJob = (uri: string): string[] => [
  '--name=failover',
  '--ioengine=nbd',
  `--uri=${uri}`,
  '--rw=randwrite',
  '--bs=4k',
  '--size=16M',
  '--iodepth=16',
  '--verify=crc32c',
  '--randrepeat=1',
  '--randseed=20261202',
];

/** Writes fio must have completed before site 1 is killed (so the kill lands in the middle of the job). */
const writesBeforeKill = 600;

/**
 * Update numbers at site 2 that are not fio's completed writes when it is polled: qemu-io's first write (one
 * or more NBD requests) and fio's queue depth of writes site 2 journaled and site 1 has not yet acknowledged.
 */
const updatesBesideFio = 64;


let deployment: Deployment | null = null;

afterAll(async () => {
  await deployment?.stop();
});

describe('three site processes, real NBD clients, kill -9 of site 1', () => {
  it('loses no acknowledged write through failover, delta resync, resync and failback', async () => {
    // Site 3 pulls rarely while the 1-3 link is cut below, so it lags and the failover must resync it.
    // An answer timeout of 10 s (default 2 s): a loaded CI machine once left site 3's delta resync unanswered for
    // 2 s (NotAcknowledged). Site 1 dies by kill -9 here, which its peers see at once as a closed link (rule R1),
    // so the longer timeout changes nothing else this case checks.
    const d = await Deployment.create({ pullIntervalMs: 10, restoreIntervalMs: 10, traceDir: 'trace', nbdTls: 'required', answerTimeoutMs: 10_000 });
    // Host 1 writes at site 1, host 2 at site 2 after the failover: qemu with a TLS object of the host's
    // credentials, libnbd with an nbds:// URI.
    const qemu1 = (site: 1 | 2 | 3, volume: number): string[] => [...d.qemuTlsObject(1), '--image-opts', d.qemuImage(site, volume)];
    const qemu2 = (site: 1 | 2 | 3, volume: number): string[] => [...d.qemuTlsObject(2), '--image-opts', d.qemuImage(site, volume)];
    const fioUri = (site: 1 | 2 | 3): string => `nbds://127.0.0.1:${d.nbdPort(site)}/vol0`;
    deployment = d;
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);

    // Real clients see the exports and round-trip data.
    const list = await run('nbdinfo', ['--list', `nbds://127.0.0.1:${d.nbdPort(1)}?tls-certificates=${d.hostDir(1)}`]);
    expect(list.stdout).toContain('vol0');
    expect(list.stdout).toContain('vol1');
    const qemu = await run('qemu-io', [...qemu1(1, 1), '-c', 'write -P 0xab 0 1M', '-c', 'read -P 0xab 0 1M']);
    expect(qemu.stdout).toContain('wrote 1048576/1048576 bytes');
    expect(qemu.stdout).toContain('read 1048576/1048576 bytes');
    expect(qemu.stdout).not.toContain('Pattern verification failed');
    // Site 2 takes no host writes while it is the secondary: EPERM, never silence.
    const refused = await run('qemu-io', [...qemu2(2, 1), '-c', 'write -P 0x11 0 4k']).catch((error: { stdout: string; stderr: string }) => error);
    expect(`${refused.stdout}${refused.stderr}`).toMatch(/Permission denied|Operation not permitted/);

    // Site 3 stops pulling from site 1: the standby journal at site 2 must cover what site 3 lacks (P5).
    await d.threesite('cut-link', '--link', '1-3');

    // fio against site 1; kill -9 of site 1 once site 2 holds writesBeforeKill + updatesBesideFio updates
    // (polled over its control port, fast enough to land mid-job). No rate cap: under one, fio's NBD engine
    // polls the dead connection forever after the kill instead of ending its job.
    const fio = d.runAsHost('fio', [...fioJob(fioUri(1)), '--do_verify=0', '--write_lat_log=failover', '--log_offset=1', '--verify_state_save=0'], 1).catch(
      (error: { stdout: string }) => error,
    );
    await d.waitForUpdateNumber(2, (last) => last >= writesBeforeKill + updatesBesideFio);
    await d.kill(1);
    const fioOut = (await fio).stdout;
    expect(fioOut).toMatch(/err=\s*-?\d+/);
    const completed = completedWrites(join(d.hostHome(1), 'failover_clat.1.log'));
    expect(completed.length).toBeGreaterThanOrEqual(writesBeforeKill);
    expect(completed.length).toBeLessThan(4096); // the kill fell in the middle of the job

    // Failover: site 2 judges site 3's number with its journal; a delta resync and site 3's restore bring it up to date.
    const before = await d.waitFor('site 2 suspended after the kill', (s) => s.sites[2]?.syncPair === 'suspended');
    expect(before.sites[1]).toBeNull();
    const failover = await d.threesite('failover');
    expect(failover).toContain('judge: deltaResync');
    expect(await d.threesite('delta-resync')).toContain('async pair copying');
    // Claim 20: the missing entries are now in site 3's journal; its restore timer writes them into its volumes.
    await d.waitFor('site 3 restored what the delta resync read', (s) => s.sites[3]?.remote?.restored === s.sites[2]?.lastUpdateNumber);
    const resynced = await d.status(true);
    const two = resynced.sites[2]!;
    const three = resynced.sites[3]!;
    expect(three.remote?.restored).toBe(two.lastUpdateNumber);
    expect(three.volumeDigest).toBe(two.volumeDigest);
    expect(two.lastUpdateNumber).toBeGreaterThanOrEqual(completed.length + 1); // + qemu-io's write

    // Every block fio was told was written is on site 2 (read over NBD by nbdcopy, checked with fio's header).
    const image = join(d.dir, 'site2-vol0.img');
    await run('nbdcopy', [d.nbdsUri(2, 0, 2), image]);
    const bytes = readFileSync(image);
    const bad = completed.map((write) => ({ write, why: verifyBlock(bytes, write) })).filter((result) => result.why !== null);
    expect(bad.slice(0, 5)).toEqual([]);
    // fio's own verification against site 2: anything it reports was never acknowledged to fio.
    const verify = await d.runAsHost('fio', [...fioJob(fioUri(2)), '--verify_only', '--verify_state_load=0'], 2).catch((error: { stdout: string }) => error);
    const acknowledged = new Set(completed.map((write) => write.offset));
    const reported = reportedBadOffsets(verify.stdout);
    expect(reported.filter((offset) => acknowledged.has(offset))).toEqual([]);
    // Site 3's image equals site 2's, as a real client compares them.
    const compare = await run('qemu-img', ['compare', ...d.qemuTlsObject(2), '--image-opts', d.qemuImage(2, 0), d.qemuImage(3, 0)]);
    expect(compare.stdout).toContain('Images are identical');

    // Host 2 writes at site 2 (claim 29), continuing the update numbers (claim 27).
    await run('qemu-io', [...qemu2(2, 1), '-c', 'write -P 0xcd 1M 64k']);
    const afterHost2 = await d.status();
    expect(afterHost2.sites[2]?.lastUpdateNumber).toBe(two.lastUpdateNumber + 1);

    // Site 1 restarts: it recovers its files and comes back failed, refusing host 1 writes (P4).
    d.start(1);
    await d.waitFor('site 1 answering, failed', (s) => s.sites[1] !== null && s.sites[1].up === false);
    const early = await run('qemu-io', [...qemu1(1, 1), '-c', 'write -P 0x22 0 4k']).catch((error: { stdout: string; stderr: string }) => error);
    expect(`${early.stdout}${early.stderr}`).toMatch(/Permission denied|Operation not permitted|Input\/output error/);
    await d.threesite('restore-link', '--link', '1-3');
    await d.threesite('recover', '--site', '1');
    await d.waitFor('site 1 resyncing as secondary', (s) => s.sites[1]?.mode === 'resyncing' && s.sites[1].role === 'secondary');
    await d.threesite('resync', '--site', '1');
    const reversed = await d.waitFor('sync pair reversed', (s) => s.syncPair === 'reversed');
    expect(reversed.sites[1]?.mode).toBe('syncReversed');
    // A reversed write: site 1 journals it with site 2's update number (claims 32-35).
    await run('qemu-io', [...qemu2(2, 1), '-c', 'write -P 0xef 2M 64k']);
    const afterReversed = await d.status();
    expect(afterReversed.sites[1]?.lastUpdateNumber).toBe(afterReversed.sites[2]?.lastUpdateNumber);

    // Failback once site 3 has caught up; then all three images are equal (P6).
    await d.waitFor('site 3 caught up', (s) => s.lag === 0 && Deployment.allConnected(s));
    expect(await d.threesite('failback')).toContain('failed back');
    await run('qemu-io', [...qemu1(1, 1), '-c', 'write -P 0x5a 3M 64k']);
    await d.waitFor('site 3 caught up after failback', (s) => s.lag === 0 && s.primary === 1 && s.syncPair === 'inSync');
    const final = await d.status(true);
    const digests = ([1, 2, 3] as const).map((site) => final.sites[site]?.volumeDigest);
    expect(new Set(digests).size).toBe(1);
    for (const volume of [0, 1]) {
      for (const other of [2, 3] as const) {
        const same = await run('qemu-img', ['compare', ...d.qemuTlsObject(1), '--image-opts', d.qemuImage(1, volume), d.qemuImage(other, volume)]);
        expect(same.stdout).toContain('Images are identical');
      }
    }
    expect(existsSync(join(d.dir, 'site-1', 'journal'))).toBe(true);

    // The processes' and the operator's traces, merged by time, replay on the model step by step.
    await d.terminate();
    const files = d.traceFiles();
    expect(files.map((file) => basename(file).replace(/-\d+-\d+\.ndjson$/, ''))).toEqual(['operator.ndjson', 'site-1', 'site-1', 'site-2', 'site-3']);
    const validation = await validateTrace(files);
    expect(validation.violation, formatValidation(validation)).toBeNull();
    // The same as a user runs it, on the directory.
    const cli = await run(process.execPath, ['--import', 'tsx', 'conformance/main.ts', '--validate-trace', join(d.dir, 'trace')]);
    expect(cli.stdout).toContain('PASS: the model allows every step');
    console.log(cli.stdout);
    // Every write fio was told was written is a step, and so are the writes site 2 held when site 1 died.
    const writes = completed.length + 4; // + qemu-io's four writes that were accepted
    expect(validation.actions).toBeGreaterThan(writes);
    expect(validation.committedUnacknowledged).toBeGreaterThanOrEqual(0);
    expect(validation.committedUnacknowledged).toBeLessThanOrEqual(16); // fio's queue depth

    // One step altered, in a copy: site 1's log says its 100th acknowledged write was refused.
    const altered = join(d.dir, 'trace-altered');
    cpSync(join(d.dir, 'trace'), altered, { recursive: true });
    const firstSite1 = join(altered, basename(files[1] as string));
    const lines = readFileSync(firstSite1, 'utf8').split('\n');
    const writeLines = lines.flatMap((line, i) => (line.includes('"type":"HOST_WRITE"') && line.includes('"accepted":true') ? [i] : []));
    const target = writeLines[99] as number;
    lines[target] = (lines[target] as string).replace('"outcome":{"accepted":true}', '"outcome":{"accepted":false,"code":"NotWritable","message":"altered"}');
    writeFileSync(firstSite1, lines.join('\n'));
    const rejected = await validateTrace(files.map((file) => join(altered, basename(file))));
    expect(rejected.violation?.file).toBe(firstSite1);
    expect(rejected.violation?.line).toBe(target + 1);
    expect(rejected.violation?.kind).toBe('outcome');
  }, 300_000);

  it('under fence policy refuse, a stall of site 2 then a kill of site 1 loses no acknowledged write either', async () => {
    // Site 2 stops answering (SIGSTOP) while fio writes: a site 1 that acknowledged before site 2's answer
    // would pile writes into its sockets' buffers, and the kill would lose them. Site 2 resumes after the kill.
    await deployment?.stop();
    const d = await Deployment.create({ fencePolicy: 'refuse', traceDir: 'trace', nbdTls: 'required' });
    deployment = d;
    for (const site of [1, 2, 3] as const) d.start(site);
    await d.waitFor('the three sites connected', Deployment.allConnected);
    const fio = d.runAsHost('fio', [...fioJob(`nbds://127.0.0.1:${d.nbdPort(1)}/vol0`), '--do_verify=0', '--write_lat_log=stall', '--log_offset=1', '--verify_state_save=0'], 1).catch(
      (error: { stdout: string }) => error,
    );
    await d.waitForUpdateNumber(2, (last) => last >= writesBeforeKill + updatesBesideFio);
    const two = d.processes.get(2)!;
    two.kill('SIGSTOP');
    // Shorter than the answer timeout (2 s), so site 1 does not suspend the pair meanwhile.
    await new Promise((done) => setTimeout(done, 1200));
    await d.kill(1);
    two.kill('SIGCONT');
    await fio;
    const completed = completedWrites(join(d.hostHome(1), 'stall_clat.1.log'));
    expect(completed.length).toBeGreaterThanOrEqual(writesBeforeKill);
    await d.waitFor('site 2 suspended after the kill', (s) => s.sites[2]?.syncPair === 'suspended');
    await d.threesite('failover');
    const image = join(d.dir, 'site2-vol0.img');
    await run('nbdcopy', [d.nbdsUri(2, 0, 2), image]);
    const bytes = readFileSync(image);
    const lost = completed.filter((write) => verifyBlock(bytes, write) !== null);
    expect(lost.length).toBe(0);
    // The traces replay on the model: the writes site 2 read from its socket after site 1 died (never
    // acknowledged) are taken as written when site 1 failed.
    await d.terminate();
    const validation = await validateTrace(d.traceFiles());
    expect(validation.violation, formatValidation(validation)).toBeNull();
    console.log(formatValidation(validation));
  }, 120_000);
});
