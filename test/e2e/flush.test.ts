/**
 * Durability on request between real site processes (issue 15): an NBD FLUSH, or a WRITE with FUA, at the
 * primary is answered only after site 2 has fsynced its journal and volumes and said so (its status counts
 * the flushes it made durable for its primary). When site 2 stops answering (SIGSTOP), the FLUSH is not
 * answered while the pair is in sync: the answer timeout suspends the pair (rule R1), and then the fence
 * policy answers it: keepWriting with success (durable at site 1 alone), refuse with EIO.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { NbdClient, NbdReplyError } from '../../impl/net/nbd-client.ts';
import { Deployment } from './deployment.ts';

let deployment: Deployment | undefined;
let nbd: NbdClient | undefined;
afterEach(async () => {
  for (const child of deployment?.processes.values() ?? []) child.kill('SIGCONT');
  await nbd?.close().catch(() => undefined);
  await deployment?.stop();
  deployment = undefined;
  nbd = undefined;
});

/** Three site processes connected, and an NBD client of host 1 at site 1's first volume. */
async function started(fencePolicy: 'keepWriting' | 'refuse'): Promise<{ d: Deployment; client: NbdClient }> {
  const d = await Deployment.create({ volumeBytes: 4 * 1024 * 1024, volumeCount: 1, fencePolicy });
  deployment = d;
  for (const site of [1, 2, 3] as const) d.start(site);
  await d.waitFor('the three sites connected', Deployment.allConnected);
  // The client waits longer than the answer timeout (2 s) for its flush.
  nbd = await NbdClient.connect('127.0.0.1', d.nbdPort(1), 'vol0', 30_000);
  return { d, client: nbd };
}

const block = (fill: number): Uint8Array => new Uint8Array(4096).fill(fill);

describe('NBD FLUSH and FUA are durable at both sync members', () => {
  it("a FLUSH and a FUA write each move site 2's count of flushes made durable; with site 2 stopped the FLUSH waits for R1, then keepWriting answers it", async () => {
    const { d, client } = await started('keepWriting');
    const one = d.controlClient(1);
    const two = d.controlClient(2);
    await client.write(0, block(1));
    expect((await two.status(false)).flushes.forPeer).toBe(0);
    await client.flush();
    // The answer came after site 2's: its count had moved before the host heard of the flush.
    expect((await two.status(false)).flushes.forPeer).toBe(1);
    expect((await one.status(false)).flushes).toMatchObject({ host: 1, waiting: 0 });
    await client.write(4096, block(2), { fua: true });
    expect((await two.status(false)).flushes.forPeer).toBe(2);
    expect((await one.status(false)).syncPair).toBe('inSync');

    // Site 2 stops: the request waits in its socket. The FLUSH is answered only once the answer timeout has
    // suspended the pair at site 1, and then on site 1's own fsync (keepWriting).
    await client.write(8192, block(3));
    d.processes.get(2)!.kill('SIGSTOP');
    await client.flush();
    const after = await one.status(false);
    expect(after.syncPair).not.toBe('inSync');
    expect(after.flushes).toMatchObject({ host: 3, waiting: 0 });
    expect(d.logs.get(1)?.some((line) => line.includes('a flush was not answered within 2000 ms'))).toBe(true);
  }, 120_000);

  it('under fence policy refuse, the FLUSH site 2 never answers gets EIO once R1 has suspended the pair', async () => {
    const { d, client } = await started('refuse');
    await client.write(0, block(1));
    d.processes.get(2)!.kill('SIGSTOP');
    const refused = await client.flush().then(
      () => null,
      (error: unknown) => error,
    );
    expect(refused).toBeInstanceOf(NbdReplyError);
    expect((refused as NbdReplyError).errnoName).toBe('EIO');
    const after = await d.controlClient(1).status(false);
    expect(after.syncPair).not.toBe('inSync');
    expect(after.flushes).toMatchObject({ host: 0, waiting: 0 });
  }, 120_000);
});
