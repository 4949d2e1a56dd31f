/**
 * `threesite`: the command of a deployment of site processes.
 *
 *     threesite init --dir DIR [--base-port P] [--volume-bytes N] [--fence-policy P]   write DIR/cluster.json and DIR/tls
 *                    [--listen ADDR | --listen N=ADDR ...]          where the sites listen (default loopback; nbdTls is
 *                                                  required as soon as one site listens elsewhere, and each site's
 *                                                  certificate names its address)
 *     threesite credentials issue --host N|--operator|--site N --config FILE             a new certificate (rotation)
 *     threesite credentials rotate --config FILE                                         a new authority and every certificate
 *     threesite serve --site N [--rebuild] --config FILE                                 run one site (--rebuild: a damaged
 *                                                  state file or journal is moved aside, or the directory is empty (a replaced
 *                                                  disk); the site starts failed, to be resynced)
 *                                                  (SIGTERM, SIGINT: close and exit; SIGHUP: close, read FILE again and serve anew)
 *     threesite status [--json] [--digest] --config FILE                                 every site's state
 *     threesite fail|recover --site N --config FILE
 *     threesite cut-link|restore-link --link A-B --config FILE                          a link between two sites
 *     threesite fence --config FILE                                                      site 1 takes no more writes
 *     threesite failover [--force] --config FILE                                         host 2 takes over at site 2
 *     threesite delta-resync|full-copy --config FILE                                     site 3 catches up
 *     threesite resync --site N --config FILE                                            the returning member resyncs
 *                                                  (or repairs what a verify found: site 2 or 1 from the primary, site 3 by a full copy)
 *     threesite verify [--volume V] [--deadline-ms MS] [--json] --config FILE            online verify of the three sites
 *     threesite failback --config FILE                                                   back to site 1 as primary
 *
 * Exit status: 0 done, 1 refused by the system (the refusal's code and message on stderr), 2 bad usage or
 * configuration (or credentials missing), 3 a site needed for the command is unreachable, 4 a site's storage or
 * credentials are damaged or unreadable (the file is named; the site does not start from it); `verify` only:
 * {@link verifyDifferExit} blocks differ, {@link verifyNotVerifiedExit} some blocks could not be compared. Every command
 * but init, credentials and serve reaches the sites' control ports with the operator's certificate
 * (`DIR/tls/operator`); `site-control.ts` lists the steps of each.
 */

import * as fs from 'node:fs';
import * as path from 'node:path';
import { isIP } from 'node:net';
import { parseArgs } from 'node:util';
import type { SiteId, SyncSiteId } from '../../model/observation.ts';
import { loadDeploymentConfig, localDeploymentConfig, validateDeploymentConfig, type DeploymentConfig } from './deployment-config.ts';
import { ConfigError, DeviceError, RefusalError } from '../core/errors.ts';
import { StateFileError } from '../storage/state-file.ts';
import { CorruptJournalError } from '../storage/journal-file.ts';
import { Operator, SiteUnreachableError, type DeploymentStatus } from './operator.ts';
import { verifyDeadlineMsDefault, verifyDeadlineMsMax, type VerifyResult } from '../core/verify.ts';
import { OperatorTrace } from './operator-trace.ts';
import { tcpClient } from './site-control.ts';
import { serveSite } from './site-serve.ts';
import { createCredentialsFor, CredentialsError, credentialsLayoutOf, hostsWithCredentials, issue, operatorCredentials, readAuthority, writeCredentials } from './credentials.ts';
import { hostsMax } from '../net/tls-identity.ts';
import { traceConfigOf, traceTime, type TraceAction } from '../cluster/trace.ts';

const usage = `usage: threesite COMMAND [options]
  init --dir DIR [--base-port P] [--volume-bytes N] [--volumes N] [--fence-policy refuse|keepWriting]
       [--listen ADDR | --listen N=ADDR ...]   (every site's address, or site N's; default 127.0.0.1)
  credentials issue (--host N | --operator | --site N) --config FILE
  credentials rotate --config FILE
  serve --site N [--rebuild] --config FILE
  status [--json] [--digest] --config FILE
  fail --site N | recover --site N | fence | failover [--force] | delta-resync | full-copy
  cut-link --link A-B | restore-link --link A-B
  resync --site N | failback                          (each with --config FILE)
  verify [--volume V] [--deadline-ms MS] [--json]`;

/** `threesite verify`'s exit status when blocks differ between sites (they are listed on stdout). */
export const verifyDifferExit = 5;

/** `threesite verify`'s exit status when no block differs but some could not be compared (a site not in sync, not copying, not answering). */
export const verifyNotVerifiedExit = 6;

class UsageError extends Error {}

/** Longest host name `init --listen` takes (RFC 1035's limit on a domain name's text form). */
export const hostNameCharsMax = 253;

const hostNamePattern = /^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$/;

/**
 * The sites' addresses of `init --listen ADDR` (every site) and `--listen N=ADDR` (site N, winning over the
 * former). An address is where a site's ports listen and also where its peers, the operator and its hosts
 * reach it, so a wildcard (0.0.0.0, ::) is refused: it names no site.
 */
function listenAddressesOf(values: readonly string[]): Partial<Record<SiteId, string>> {
  const every: string[] = [];
  const perSite: Partial<Record<SiteId, string>> = {};
  for (const value of values) {
    const match = /^([123])=(.*)$/.exec(value);
    const address = match === null ? value : match[2]!;
    if (isIP(address) === 0 && (address.length > hostNameCharsMax || !hostNamePattern.test(address))) {
      throw new UsageError(`--listen takes ADDR or N=ADDR (N a site 1, 2, 3; ADDR an IP address or host name), got ${JSON.stringify(value)}`);
    }
    if (address === '0.0.0.0' || address === '::') throw new UsageError(`--listen ${value}: a wildcard names no site; give the address peers, the operator and hosts reach the site at`);
    if (match === null) every.push(address);
    else perSite[Number(match[1]) as SiteId] = address;
  }
  if (every.length > 1) throw new UsageError(`--listen ADDR (every site) given ${every.length} times: give one, or --listen N=ADDR per site`);
  const all = every[0];
  return all === undefined ? perSite : { 1: perSite[1] ?? all, 2: perSite[2] ?? all, 3: perSite[3] ?? all };
}

function siteOf(raw: string | undefined, allowed: readonly number[]): SiteId {
  const site = Number(raw);
  if (!allowed.includes(site)) throw new UsageError(`--site must be one of ${allowed.join(', ')}, got ${JSON.stringify(raw)}`);
  return site as SiteId;
}

function operatorFor(config: DeploymentConfig): Operator {
  // Every control port requires the operator's certificate (site-control.ts).
  const credentials = operatorCredentials(config);
  const client = (id: SiteId) => tcpClient(id, config.sites[id].host, config.sites[id].controlPort, credentials);
  return new Operator({ 1: client(1), 2: client(2), 3: client(3) }, traceTime);
}

/** What `init` prints about the credentials it made: how hosts use them, and how to rotate them. */
function credentialsHelp(config: DeploymentConfig): string {
  const layout = credentialsLayoutOf(config);
  const site1 = config.sites[1];
  const host1 = layout.hostDir(1);
  return [
    `credentials (TLS 1.3, the cluster's own authority in ${layout.caDir}; every private key 0600):`,
    `  sites: <site dir>/tls; operator: ${layout.operatorDir}; hosts: ${layout.hostDir(1).replace(/1$/, '{1,2,3}')}`,
    `  each site's certificate names localhost, 127.0.0.1 and its address (${[1, 2, 3].map((id) => config.sites[id as SiteId].host).join(', ')})`,
    `  NBD TLS is ${config.nbdTls}. A host uses its directory as it is, for example:`,
    `    nbdinfo 'nbds://${site1.host}:${site1.nbdPort}/vol0?tls-certificates=${host1}'`,
    `    qemu-img info --object tls-creds-x509,id=tls0,endpoint=client,dir=${host1} --image-opts driver=nbd,host=${site1.host},port=${site1.nbdPort},export=vol0,tls-creds=tls0`,
    `  more hosts: threesite credentials issue --host N --config ${path.join(path.dirname(layout.caDir), '..', 'cluster.json')}`,
    '  rotate: threesite credentials issue --site N|--operator|--host N (same authority), or credentials rotate (a new',
    '  authority and every certificate; then restart the three sites, which come back failed, recover each and',
    '  resync the secondary: docs/security/nbd.md "Rotation"); keep tls/ca/ca-key.pem offline between rotations.',
  ].join('\n');
}

/** The status as a person reads it: one line per site, then the pairs. */
export function formatStatus(status: DeploymentStatus): string {
  const lines: string[] = [];
  for (const id of [1, 2, 3] as const) {
    const s = status.sites[id];
    if (s === null) {
      lines.push(`site ${id}  unreachable (${status.unreachable[id] ?? 'no answer'})`);
      continue;
    }
    const journal = `journal [${s.journal.first}..${s.journal.last}] ${s.journal.entries}/${s.journal.entriesMax} entries${s.journal.highWater ? ' HIGH-WATER' : ''}`;
    const head = `site ${id}  ${s.up ? 'up    ' : 'FAILED'} ${s.role.padEnd(9)} ${s.mode.padEnd(12)} u=${s.lastUpdateNumber}  ${journal}`;
    const tail =
      s.remote !== null
        ? `  received ${s.remote.received} restored ${s.remote.restored} source ${s.remote.source}`
        : `  ${s.acceptsHostWrites ? 'accepts writes' : 'no writes'}${s.fenced ? ', fenced' : ''}, changed blocks ${s.changedBlocks}, sync pair ${s.syncPair}`;
    lines.push(head + tail + (s.volumeDigest ? `  sha256 ${s.volumeDigest.slice(0, 16)}` : ''));
    if (s.fault !== null) lines.push(`site ${id}  STORAGE FAULT ${s.fault.errno} (${s.fault.device} ${s.fault.operation}): detached until its process is restarted over repaired storage`);
  }
  lines.push(`sync pair ${status.syncPair} (primary site ${status.primary}), async pair ${status.asyncPair ?? 'unknown'}, standby pair ${status.standbyPair}, lag ${status.lag ?? 'unknown'}`);
  if (status.ackedOnOneSite > 0) lines.push(`writes acknowledged on one site only: ${status.ackedOnOneSite}`);
  if (status.judgement !== null) {
    const j = status.judgement;
    lines.push(`last judgement: ${j.verdict} (site 3 held ${j.remoteReceived}, source at ${j.sourceLast})${j.forced ? ', forced' : ''}`);
  }
  // The last verify the primary ran (a site that was primary before keeps its own; the current one's is shown).
  const last = status.sites[status.primary]?.verify?.last ?? null;
  if (last !== null) lines.push(...formatVerify(last, 'last verify', false));
  return lines.join('\n');
}

/**
 * A verify's result as a person reads it: one line for the verify (headed `title`), one per site compared
 * with the primary (at which update numbers, blocks compared, differing, not verified), then (`listAll`)
 * every differing block listed, one per line, by site, volume and byte offset.
 */
export function formatVerify(result: VerifyResult, title: string, listAll: boolean): string[] {
  const when = result.startedAtMs > 0 ? new Date(result.startedAtMs).toISOString() : 'at an unknown time';
  const lines = [`${title} ${result.verifyId} ${when}: ${result.outcome}, site ${result.primary} (primary) hashed ${result.blocks} blocks of volume ${result.volumes.join(', ')}`];
  for (const site of result.sites) {
    const at = site.updateNumbers === null ? 'no update number' : site.updateNumbers.first === site.updateNumbers.last ? `u=${site.updateNumbers.first}` : `u=${site.updateNumbers.first}..${site.updateNumbers.last}`;
    const notVerified = site.blocksNotVerified > 0 ? `, ${site.blocksNotVerified} NOT VERIFIED (${site.notVerifiedReason})` : '';
    lines.push(`  site ${site.site}  ${at}  ${site.blocksCompared} blocks compared, ${site.blocksDiffering} differing${notVerified}`);
    if (!listAll) continue;
    for (const block of site.differing) lines.push(`  site ${site.site}  DIFFERS  volume ${block.volume} offset ${block.offset}`);
    if (site.differing.length < site.blocksDiffering) lines.push(`  site ${site.site}  ... and ${site.blocksDiffering - site.differing.length} more differing blocks`);
  }
  return lines;
}

async function run(argv: string[]): Promise<number> {
  if (argv[0] === '--help' || argv[0] === '-h') argv = ['help', ...argv.slice(1)];
  const [command, ...rest] = argv;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: command === 'credentials',
    options: {
      config: { type: 'string' },
      operator: { type: 'boolean', default: false },
      host: { type: 'string' },
      site: { type: 'string' },
      rebuild: { type: 'boolean', default: false },
      link: { type: 'string' },
      json: { type: 'boolean', default: false },
      digest: { type: 'boolean', default: false },
      force: { type: 'boolean', default: false },
      volume: { type: 'string', multiple: true },
      'deadline-ms': { type: 'string' },
      dir: { type: 'string' },
      'base-port': { type: 'string', default: '7100' },
      'volume-bytes': { type: 'string' },
      volumes: { type: 'string' },
      'fence-policy': { type: 'string' },
      listen: { type: 'string', multiple: true },
      help: { type: 'boolean', default: false },
    },
    strict: true,
  });
  if (command === undefined || values.help || command === 'help') {
    console.log(usage);
    return command === undefined ? 2 : 0;
  }
  if (command === 'init') {
    if (values.dir === undefined) throw new UsageError('init needs --dir DIR');
    const basePort = Number(values['base-port']);
    if (!Number.isInteger(basePort) || basePort < 1024 || basePort > 65535 - 9) throw new UsageError(`--base-port must be in [1024, 65526], got ${values['base-port']}`);
    const policy = values['fence-policy'];
    if (policy !== undefined && policy !== 'refuse' && policy !== 'keepWriting') throw new UsageError(`--fence-policy is refuse or keepWriting, got ${policy}`);
    const dir = path.resolve(values.dir);
    fs.mkdirSync(dir, { recursive: true });
    const config = localDeploymentConfig({
      cluster: path.basename(dir),
      dir,
      basePort,
      ...(values['volume-bytes'] ? { volumeBytes: Number(values['volume-bytes']) } : {}),
      ...(values.volumes ? { volumeCount: Number(values.volumes) } : {}),
      ...(policy ? { fencePolicy: policy } : {}),
      hosts: listenAddressesOf(values.listen ?? []),
    });
    const file = path.join(dir, 'cluster.json');
    const validated = validateDeploymentConfig(config, dir);
    fs.writeFileSync(file, `${JSON.stringify(config, null, 2)}\n`);
    await createCredentialsFor(validated);
    console.log(file);
    console.log(credentialsHelp(validated));
    return 0;
  }
  if (command === 'credentials') {
    if (values.config === undefined) throw new UsageError('credentials needs --config FILE');
    const config = loadDeploymentConfig(values.config);
    const layout = credentialsLayoutOf(config);
    const action = positionals[0];
    if (action === 'rotate') {
      await createCredentialsFor(config, hostsWithCredentials(config.credentialsDir));
      console.log(
        `a new authority in ${layout.caDir} and every certificate: restart the three sites (threesite serve, or SIGHUP; each comes back failed), then threesite recover --site 1, 2 and 3 and threesite resync of the secondary (--site 2 while site 1 is primary), and hand hosts their new ${layout.hostDir(1).replace(/1$/, 'N')} directories`,
      );
      return 0;
    }
    if (action !== 'issue') throw new UsageError('credentials needs issue or rotate');
    const authority = await readAuthority(layout.caDir, config.cluster);
    if (values.operator) {
      writeCredentials(layout.operatorDir, 'client', authority, await issue(authority, { kind: 'operator' }));
      console.log(layout.operatorDir);
    } else if (values.host !== undefined) {
      const host = Number(values.host);
      if (!Number.isInteger(host) || host < 1 || host > hostsMax) throw new UsageError(`--host must be in [1, ${hostsMax}], got ${values.host}`);
      writeCredentials(layout.hostDir(host), 'client', authority, await issue(authority, { kind: 'host', host }));
      console.log(layout.hostDir(host));
    } else if (values.site !== undefined) {
      const site = siteOf(values.site, [1, 2, 3]);
      writeCredentials(layout.siteDir(site), 'server', authority, await issue(authority, { kind: 'site', site }, [config.sites[site].host]));
      console.log(`${layout.siteDir(site)} (restart site ${site}, or send it SIGHUP, to take it)`);
    } else {
      throw new UsageError('credentials issue needs --host N, --operator or --site N');
    }
    return 0;
  }
  if (values.config === undefined) throw new UsageError(`${command} needs --config FILE`);
  const configFile = values.config;
  const config = loadDeploymentConfig(configFile);
  if (command === 'serve') {
    const id = siteOf(values.site, [1, 2, 3]);
    const log = (line: string): void => {
      process.stderr.write(`${new Date().toISOString()} site ${id} ${line}\n`);
    };
    let running = await serveSite(config, id, log, { rebuild: values.rebuild === true });
    return new Promise<number>((resolve) => {
      // Signals are handled one at a time, in order.
      let chain = Promise.resolve();
      let stopped = false;
      const stop = (signal: string): void => {
        chain = chain.then(async () => {
          if (stopped) return;
          stopped = true;
          log(`${signal}: closing`);
          await running.close().catch((error: unknown) => log(`close failed: ${(error as Error).message}`));
          resolve(0);
        });
      };
      // SIGHUP: the site closes (as for SIGTERM) and serves again from the configuration file as it reads now.
      // Over the same data directory that is a restart (the site comes back failed, site-serve.ts); over a new
      // one a new site. A configuration that cannot be served ends the process (exit status 2).
      const reload = (): void => {
        chain = chain.then(async () => {
          if (stopped) return;
          log('SIGHUP: closing, then serving again from the configuration file');
          await running.close();
          try {
            running = await serveSite(loadDeploymentConfig(configFile), id, log);
          } catch (error) {
            // A half-started site may hold listeners open: the process ends here rather than linger.
            log(`SIGHUP: cannot serve again: ${(error as Error).message}`);
            process.exit(2);
          }
        });
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      process.on('SIGHUP', reload);
    });
  }
  const operator = operatorFor(config);
  // With a trace directory, each command is recorded in the operator's log (operator-trace.ts).
  const trace = config.traceDir === null || command === 'status' || command === 'verify' ? null : OperatorTrace.open(config.traceDir, traceConfigOf(config));
  // A recovered site and a restored link reconnect on their own; the record's view waits for that (rules R1
  // and R2 act on the link's return, which the model's atomic step includes).
  const settles = (action: TraceAction): boolean => action.type === 'RECOVER_SITE' || action.type === 'RESTORE_LINK';
  const traced = <T>(action: TraceAction, body: () => Promise<T>): Promise<T> =>
    trace === null
      ? body()
      : trace.run(action, body, () => (settles(action) ? settledStatus(operator) : operator.status()), () => operator.takeCommittedAt());
  try {
    return await runCommand(command, values, operator, trace, traced);
  } finally {
    trace?.close();
  }
}

async function runCommand(
  command: string | undefined,
  values: { site?: string; link?: string; force: boolean; json: boolean; digest: boolean; volume?: string[]; 'deadline-ms'?: string },
  operator: Operator,
  trace: OperatorTrace | null,
  traced: <T>(action: TraceAction, body: () => Promise<T>) => Promise<T>,
): Promise<number> {
  switch (command) {
    case 'status': {
      const status = await operator.status(values.digest);
      console.log(values.json ? JSON.stringify(status) : formatStatus(status));
      return 0;
    }
    case 'fail': {
      const site = siteOf(values.site, [1, 2, 3]);
      await traced({ type: 'FAIL_SITE', site }, () => operator.fail(site));
      break;
    }
    case 'recover': {
      const site = siteOf(values.site, [1, 2, 3]);
      await traced({ type: 'RECOVER_SITE', site }, () => operator.recover(site));
      break;
    }
    case 'cut-link':
    case 'restore-link': {
      const link = values.link ?? '';
      const match = /^([123])-([123])$/.exec(link);
      if (match === null || match[1] === match[2]) throw new UsageError(`${command} needs --link A-B (sites 1, 2, 3), got ${JSON.stringify(link)}`);
      const [a, b] = [Number(match[1]) as SiteId, Number(match[2]) as SiteId];
      const name = `${Math.min(a, b)}-${Math.max(a, b)}` as '1-2' | '1-3' | '2-3';
      await traced({ type: command === 'cut-link' ? 'CUT_LINK' : 'RESTORE_LINK', link: name }, () => operator.setLinkCut(a, b, command === 'cut-link'));
      break;
    }
    case 'fence': {
      const site = values.site === undefined ? 1 : siteOf(values.site, [1, 2, 3]);
      await traced({ type: 'FENCE_SITE', site }, () => operator.fence(site));
      break;
    }
    case 'failover': {
      trace?.failUnreachable(await operator.status());
      const judgement = await traced({ type: 'FAILOVER', force: values.force }, () => operator.failover(values.force));
      console.log(judgement === null ? 'failed over; site 3 was unreachable: it is judged when it returns' : `failed over; judge: ${judgement.verdict} (site 3 held ${judgement.remoteReceived}, site 2 at ${judgement.sourceLast})${judgement.forced ? ', forced' : ''}`);
      break;
    }
    case 'delta-resync':
      console.log(`async pair ${await traced({ type: 'DELTA_RESYNC' }, () => operator.deltaResync())}`);
      break;
    case 'full-copy':
      await traced({ type: 'FULL_COPY' }, () => operator.fullCopy());
      break;
    case 'resync': {
      const site = siteOf(values.site, [1, 2, 3]);
      if (site === 3) await traced({ type: 'FULL_COPY' }, () => operator.resync(3));
      else await traced({ type: 'RESYNC_SITE', site: site as SyncSiteId }, () => operator.resync(site));
      break;
    }
    case 'verify': {
      const volumes = values.volume?.map((raw) => {
        const volume = Number(raw);
        if (!Number.isSafeInteger(volume) || volume < 0) throw new UsageError(`--volume must be a volume number, got ${JSON.stringify(raw)}`);
        return volume;
      });
      const deadlineMs = values['deadline-ms'] === undefined ? verifyDeadlineMsDefault : Number(values['deadline-ms']);
      if (!Number.isSafeInteger(deadlineMs) || deadlineMs < 1 || deadlineMs > verifyDeadlineMsMax) throw new UsageError(`--deadline-ms must be in [1, ${verifyDeadlineMsMax}], got ${values['deadline-ms']}`);
      const { result, site3NeedsFullCopy, site3Refused } = await operator.verify({ volumes: volumes ?? null, deadlineMs });
      if (values.json) console.log(JSON.stringify({ result, site3NeedsFullCopy, site3Refused }));
      else {
        console.log(formatVerify(result, 'verify', true).join('\n'));
        const secondary = result.sites[0];
        if (secondary.blocksDiffering > 0) console.log(`site ${secondary.site}'s differing blocks (${secondary.blocksDiffering}) are in site ${result.primary}'s changed-block record: threesite resync --site ${secondary.site} copies them`);
        if (site3NeedsFullCopy) console.log('site 3 needs a full copy: threesite resync --site 3');
        if (site3Refused !== null) console.log(`site 3 differs but could not be told it needs a full copy (${site3Refused}): verify again once it is idle`);
      }
      return result.outcome === 'equal' ? 0 : result.outcome === 'differ' ? verifyDifferExit : verifyNotVerifiedExit;
    }
    case 'failback': {
      const judgement = await traced({ type: 'FAILBACK' }, () => operator.failback());
      console.log(`failed back; judge: ${judgement.verdict} (site 3 held ${judgement.remoteReceived}, site 1 at ${judgement.sourceLast})`);
      break;
    }
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}`);
  }
  if (!values.json) console.log(formatStatus(await operator.status()));
  return 0;
}

/** How long a traced command waits for its sites to reconnect before it records what it sees. */
export const settleWaitMsMax = 10_000;

/**
 * The status once every two up sites whose link is not cut are connected and no site waits for a peer (a
 * judgement on reattach), or after {@link settleWaitMsMax}, whichever comes first.
 */
async function settledStatus(operator: Operator): Promise<DeploymentStatus> {
  const deadline = performance.now() + settleWaitMsMax;
  for (;;) {
    const status = await operator.status();
    if (isSettled(status) || performance.now() > deadline) return status;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

function isSettled(status: DeploymentStatus): boolean {
  for (const a of [1, 2, 3] as const) {
    const site = status.sites[a];
    if (site === null || !site.up) continue;
    if (site.busy !== null && site.busy !== 'pull') return false;
    for (const b of [1, 2, 3] as const) {
      const peer = status.sites[b];
      if (b === a || peer === null || !peer.up || site.cut.includes(b) || peer.cut.includes(a)) continue;
      if (!site.connected.includes(b)) return false;
    }
  }
  return true;
}

/** Runs the command; resolves with its exit status. */
export async function main(argv: string[]): Promise<number> {
  try {
    return await run(argv);
  } catch (error) {
    if (error instanceof UsageError || (error instanceof TypeError && (error as { code?: string }).code?.startsWith('ERR_PARSE_ARGS'))) {
      console.error(`threesite: ${error.message}\n${usage}`);
      return 2;
    }
    if (error instanceof ConfigError) {
      console.error(`threesite: configuration: ${error.message}`);
      return 2;
    }
    if (error instanceof CredentialsError) {
      // The operator's (or, for serve, the site's) certificate is missing or unprotected: every port needs it.
      console.error(`threesite: ${error.message}`);
      return 2;
    }
    if (error instanceof SiteUnreachableError) {
      console.error(`threesite: ${error.message}`);
      return 3;
    }
    if (error instanceof RefusalError) {
      console.error(`threesite: refused (${error.code}): ${error.message}`);
      return 1;
    }
    if (error instanceof StateFileError || error instanceof CorruptJournalError || error instanceof DeviceError || error instanceof CredentialsError) {
      // Damaged or unreadable storage: the site does not start from it (README "Restart").
      console.error(`threesite: storage: ${error.message}`);
      return 4;
    }
    throw error;
  }
}
