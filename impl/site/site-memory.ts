/**
 * The memory bound a site process states at start and keeps: its resident set at start, plus what its
 * bounded buffers may hold at most. Issue 14's attack (128 NBD connections each sending a 32 MiB WRITE header
 * and part of its payload, then stalling) took a site to 4.2 GiB; every buffer below now has a cap, and
 * `test/e2e/nbd-attacks.test.ts` reads the process's peak RSS (VmHWM) under that attack and checks it
 * against the bound the process printed.
 *
 * The terms: the NBD server's buffers ({@link nbdMemoryBytesMax}: the payload budget shared by every
 * connection and each connection's overhead) counted twice, because a host write's bytes exist once as the
 * NBD payload and once more, while the write is under way, encoded into its journal entry and its peer
 * message; the peer links' outgoing queues (two peers, `outgoingBytesMaxDefault` each); and a working
 * allowance for the rest (the journal's tail cache, the control port, an online verify's chunk and digests,
 * under 4 MiB: `core/verify.ts`, garbage the collector has not yet reclaimed).
 */

import { nbdMemoryBytesMax, type NbdServerLimits } from '../net/nbd-server.ts';
import { outgoingBytesMaxDefault } from '../net/transport-tcp.ts';

/** Memory a site may use beyond its counted buffers: the journal's tail cache, control, collector slack. */
export const siteWorkingBytesAllowance = 128 * 1024 * 1024;

/** The terms of a site's memory bound, in bytes. */
export interface SiteMemoryBound {
  readonly rssAtStartBytes: number;
  readonly nbdBytes: number;
  readonly peerQueueBytes: number;
  readonly workingBytes: number;
  /** Their sum: the peak RSS the site keeps within. */
  readonly totalBytes: number;
}

/** The bound of a site whose NBD server has `limits`, having started at `rssAtStartBytes`. */
export function siteMemoryBound(rssAtStartBytes: number, limits: NbdServerLimits): SiteMemoryBound {
  const nbdBytes = 2 * nbdMemoryBytesMax(limits);
  const peerQueueBytes = 2 * outgoingBytesMaxDefault;
  const totalBytes = rssAtStartBytes + nbdBytes + peerQueueBytes + siteWorkingBytesAllowance;
  return { rssAtStartBytes, nbdBytes, peerQueueBytes, workingBytes: siteWorkingBytesAllowance, totalBytes };
}

const mib = (bytes: number): string => `${Math.ceil(bytes / (1024 * 1024))} MiB`;

/** The line a site prints at start: `memory bound: peak RSS at most N bytes (...)`, which tests parse. */
export function formatMemoryBound(bound: SiteMemoryBound): string {
  return (
    `memory bound: peak RSS at most ${bound.totalBytes} bytes (${mib(bound.totalBytes)}: at start ${mib(bound.rssAtStartBytes)}` +
    ` + NBD buffers twice ${mib(bound.nbdBytes)} + peer queues ${mib(bound.peerQueueBytes)} + working ${mib(bound.workingBytes)})`
  );
}
