/**
 * The typed refusals of the system (model/README.md "Refusal errors"): every command or message that the
 * system does not carry out is refused with one of these, and a refused command changes nothing.
 *
 * Each class carries the facts of the refusal in fields and a stable {@link RefusalError.code}, so that the
 * conformance harness compares refusals by code (the model's `RefusalCode`) and a caller can act on the
 * fields without parsing a message. A broken invariant is not a refusal: it is an `InvariantError`
 * (`invariant.ts`), a bug.
 */

/** The stable codes of the refusals. The first seven are the model's; the others are the implementation's. */
export type RefusalCodeName =
  | 'NotWritable'
  | 'SiteFailed'
  | 'SiteUp'
  | 'LinkState'
  | 'NotAllowed'
  | 'RemoteAhead'
  | 'OutOfRange'
  | 'MalformedMessage'
  | 'OutOfOrder'
  | 'UnexpectedMessage'
  | 'StaleEpoch'
  | 'NotAcknowledged'
  | 'NotDurable'
  | 'InvalidConfig'
  | 'InvalidArgument';

/**
 * The common base of every refusal: a stable `code` a harness compares, and a message for people.
 * @see model/README.md "Refusal errors"
 */
export abstract class RefusalError extends Error {
  /** The stable code: the same for every instance of a class, never localized or reworded. */
  abstract readonly code: RefusalCodeName;
}

/**
 * Why a site does not accept a host write. `deposed`: it was primary and learnt of a higher epoch (another
 * site was promoted while it did not hear of it), so it stepped down and takes no write until the operator
 * gives it a role again.
 */
export type NotWritableReason = 'failed' | 'notPrimary' | 'fenced' | 'fencePolicy' | 'inFlightWritesMax' | 'deposed';

/**
 * A host write is refused: the site serving that host is failed, not the primary, fenced, refusing by fence
 * policy (no write acknowledged that is not on two sites), or has too many writes in flight.
 * @see claims 3, 29 (site 1 accepts no host 1 write after failover); P1, P4
 */
export class NotWritableError extends RefusalError {
  readonly code = 'NotWritable' as const;
  constructor(
    readonly site: 1 | 2,
    readonly host: 1 | 2,
    readonly reason: NotWritableReason,
    /** Reason `deposed`: the higher epoch the site learnt (null for the other reasons). */
    readonly epoch: number | null = null,
  ) {
    super(`site ${site} does not accept host ${host} writes (${reason}${epoch === null ? '' : `: epoch ${epoch} promoted another site`})`);
    this.name = 'NotWritableError';
  }
}

/**
 * Why a host's flush (NBD FLUSH, or FUA) is not answered as durable at both sync members: `fencePolicy`, the
 * sync pair is not in sync at a site 1 whose fence policy is `refuse` (nothing is promised that is not on two
 * sites); `deposed`, the primary learnt of a higher epoch while the flush waited; `flushesWaitingMax`, the
 * primary already holds that many flushes waiting for its secondary.
 */
export type NotDurableReason = 'fencePolicy' | 'deposed' | 'flushesWaitingMax';

/**
 * A host's flush was not carried out to both sync members' stable storage (the host hears EIO): what it
 * covers may be durable at this site, but nothing is promised about the secondary.
 * @see P1
 */
export class NotDurableError extends RefusalError {
  readonly code = 'NotDurable' as const;
  constructor(
    readonly site: 1 | 2 | 3,
    readonly reason: NotDurableReason,
  ) {
    super(`flush at site ${site}: not durable at both sync members (${reason})`);
    this.name = 'NotDurableError';
  }
}

/** A command needs a site up, and it is failed. */
export class SiteFailedError extends RefusalError {
  readonly code = 'SiteFailed' as const;
  constructor(
    readonly site: 1 | 2 | 3,
    readonly operation: string,
  ) {
    super(`${operation}: site ${site} is failed`);
    this.name = 'SiteFailedError';
  }
}

/** The storage a device error came from. */
export type DeviceName = 'volume' | 'journal' | 'state';

/** Device errors a storage backend reports as a {@link DeviceError}: what a disk, a full file system or a quota says. */
export const deviceErrnos: readonly string[] = ['EIO', 'ENOSPC', 'EDQUOT', 'EROFS', 'EFBIG', 'ENXIO', 'EBADF'];

/**
 * A storage backend's device error (EIO, ENOSPC, EDQUOT, ...): the write, flush or save did not happen, or not
 * wholly. Not a refusal: the site that meets one takes it as a fault of its storage and detaches (DRBD's
 * `on-io-error detach`): it fails, stays up to answer its status with the fault, and serves nothing until its
 * process is restarted over repaired storage. Backends throw it; the core and the site node never swallow it.
 */
export class DeviceError extends Error {
  constructor(
    readonly device: DeviceName,
    readonly file: string,
    readonly operation: string,
    readonly errno: string,
    override readonly cause: unknown,
  ) {
    super(`${device} ${file}: ${operation} failed with ${errno}${cause instanceof Error ? ` (${cause.message})` : ''}`);
    this.name = 'DeviceError';
  }
}

/**
 * `error` as a {@link DeviceError} of `device` when it is a system error of the file system (it has an errno
 * `code` such as ENOSPC), else `error` itself: a backend calls this in its catch and rethrows what it returns.
 */
export function asDeviceError(device: DeviceName, file: string, operation: string, error: unknown): unknown {
  if (error instanceof DeviceError) return error;
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code === 'string' && /^E[A-Z0-9]+$/.test(code)) return new DeviceError(device, file, operation, code, error);
  return error;
}

/**
 * A host write (or another step) that a device error at this site ended: it was not done, nor acknowledged,
 * and the site has failed (see {@link DeviceError}). `errno` is the device's, so the host hears ENOSPC for a
 * full disk and EIO for a broken one.
 */
export class StorageFaultError extends RefusalError {
  readonly code = 'SiteFailed' as const;
  constructor(
    readonly site: 1 | 2 | 3,
    readonly operation: string,
    readonly fault: DeviceError,
  ) {
    super(`${operation}: site ${site} failed on a device error: ${fault.message}`);
    this.name = 'StorageFaultError';
  }
}

/** `recoverSite` of a site that is up. */
export class SiteUpError extends RefusalError {
  readonly code = 'SiteUp' as const;
  constructor(
    readonly site: 1 | 2 | 3,
    readonly operation: string,
  ) {
    super(`${operation}: site ${site} is up`);
    this.name = 'SiteUpError';
  }
}

/** `cutLink` of a cut link, or `restoreLink` of a link that is up. */
export class LinkStateError extends RefusalError {
  readonly code = 'LinkState' as const;
  constructor(
    /** The link, `"a-b"` with `a < b`. */
    readonly link: string,
    /** Whether the link is cut now. */
    readonly cut: boolean,
    readonly operation: string,
  ) {
    super(`${operation}: link ${link} is ${cut ? 'already cut' : 'not cut'}`);
    this.name = 'LinkStateError';
  }
}

/**
 * An operator command whose conditions do not hold (model/README.md's table, in its order): `condition` is
 * the condition that failed, as the README states it, so a test or an operator sees which one.
 */
export class NotAllowedError extends RefusalError {
  readonly code = 'NotAllowed' as const;
  constructor(
    readonly operation: string,
    /** The failed condition, e.g. `'async pair is suspended, not copying'`. */
    readonly condition: string,
  ) {
    super(`${operation} not allowed: ${condition}`);
    this.name = 'NotAllowedError';
  }
}

/**
 * A failover refused by the judge: site 3 holds updates site 2 lacks, and promoting site 2 would lose them.
 * The judgement is recorded; `failover({ force: true })` goes ahead and makes the async pair a full copy.
 * @see claim 18 (site 3 sends its latest update number; site 2 judges)
 */
export class RemoteAheadError extends RefusalError {
  readonly code = 'RemoteAhead' as const;
  constructor(
    /** Site 3's received update number, as it sent it. */
    readonly remoteReceived: number,
    /** The takeover point: site 2's last update number. */
    readonly takeover: number,
  ) {
    super(
      `failover refused: site 3 holds update numbers ${takeover + 1}..${remoteReceived} that site 2 lacks; ` +
        'failover({ force: true }) loses them',
    );
    this.name = 'RemoteAheadError';
  }

  /** First update number that a forced failover would lose. */
  get lostFirst(): number {
    return this.takeover + 1;
  }

  /** Last update number that a forced failover would lose. */
  get lostLast(): number {
    return this.remoteReceived;
  }

  /** Every update number a forced failover would lose, in order. */
  get lost(): number[] {
    const out: number[] = [];
    for (let u = this.lostFirst; u <= this.lostLast; u += 1) out.push(u);
    return out;
  }
}

/** A volume index that the consistency group does not have (code `OutOfRange`, like a byte range outside a volume). */
export class NoSuchVolumeError extends RefusalError {
  readonly code = 'OutOfRange' as const;
  constructor(
    readonly volume: number,
    readonly volumeCount: number,
  ) {
    super(`volume ${volume} does not exist (the consistency group has ${volumeCount} volumes)`);
    this.name = 'NoSuchVolumeError';
  }
}

/**
 * Bytes or a value that is not a well-formed message: wrong type, negative or non-integer number, data
 * length mismatch, oversize, unknown kind. `field` is the path of the offending field (`'entries[2].data'`).
 */
export class MalformedMessageError extends RefusalError {
  readonly code = 'MalformedMessage' as const;
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`malformed message: ${field}: ${reason}`);
    this.name = 'MalformedMessageError';
  }
}

/**
 * A well-formed message that arrives out of order: a sync write whose update number is not `last + 1`, an
 * entries answer whose first update number is not `received + 1`, an answer to a write not in flight. The
 * site changes nothing.
 * @see P2, P3
 */
export class OutOfOrderError extends RefusalError {
  readonly code = 'OutOfOrder' as const;
  constructor(
    readonly kind: string,
    readonly expected: number,
    readonly got: number,
  ) {
    super(`${kind} out of order: expected update number ${expected}, got ${got}`);
    this.name = 'OutOfOrderError';
  }
}

/**
 * A well-formed message that this site does not take in its state: a sync write to a site that does not
 * follow the sender, a pull from a site that is not the source, a copy block with no copy under way.
 */
export class UnexpectedMessageError extends RefusalError {
  readonly code = 'UnexpectedMessage' as const;
  constructor(
    readonly kind: string,
    readonly from: number,
    readonly to: number,
    readonly reason: string,
  ) {
    super(`site ${to} does not take ${kind} from site ${from}: ${reason}`);
    this.name = 'UnexpectedMessageError';
  }
}

/**
 * A well-formed message of an epoch lower than the receiver's: its sender was deposed or missed a promotion
 * (it was stopped, cut off, or its answer was delayed across a failover). The receiver applies nothing of it
 * (nothing journaled, restored or acknowledged) and answers with its own epoch, from which the sender learns.
 * @see P4 (a deposed primary cannot get a sync write acknowledged)
 */
export class StaleEpochError extends RefusalError {
  readonly code = 'StaleEpoch' as const;
  constructor(
    readonly kind: string,
    readonly from: number,
    readonly to: number,
    /** The epoch the message carried. */
    readonly messageEpoch: number,
    /** The receiver's epoch. */
    readonly epoch: number,
  ) {
    super(`site ${to} refuses ${kind} from site ${from}: its epoch ${messageEpoch} is lower than ${epoch}`);
    this.name = 'StaleEpochError';
  }
}

/**
 * A synchronous call ran the transport until it was idle and the answer it waits for did not come (a link
 * is held, or a message was dropped by a test). What the call already did is described in `detail`.
 */
export class NotAcknowledgedError extends RefusalError {
  readonly code = 'NotAcknowledged' as const;
  constructor(
    readonly operation: string,
    readonly detail: string,
  ) {
    super(`${operation}: no answer while the transport was idle (${detail})`);
    this.name = 'NotAcknowledgedError';
  }
}

/** A cluster configuration that cannot be built: `field` and `value` say which and what. */
export class ConfigError extends RefusalError {
  readonly code = 'InvalidConfig' as const;
  constructor(
    readonly field: string,
    readonly value: unknown,
    readonly reason: string,
  ) {
    super(`cluster config ${field}=${JSON.stringify(value)}: ${reason}`);
    this.name = 'ConfigError';
  }
}

/** An argument of a public call that is not of its type (a site 4, a host 0, a non-boolean force). */
export class InvalidArgumentError extends RefusalError {
  readonly code = 'InvalidArgument' as const;
  constructor(
    readonly operation: string,
    readonly argument: string,
    readonly value: unknown,
  ) {
    super(`${operation}: invalid ${argument} ${JSON.stringify(value)}`);
    this.name = 'InvalidArgumentError';
  }
}
