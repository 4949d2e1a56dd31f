/**
 * The nemesis's schedules (Jepsen's nemesis, FoundationDB's seeded simulation): from one seed, the faults a
 * run applies to a deployment of three site processes, at which instant of the schedule, for how long, and how
 * the operator answers them. A schedule is a plain list, printed before it runs, so a failure is replayed
 * from its seed alone (`npm run nemesis -- --seed S`).
 *
 * Faults run one after another (each one healed before the next begins) while the host workload writes: a
 * schedule checks that the system survives each fault and its repair under load, not that it survives any
 * overlap of them (two sync members down at once has no writable site and is the operator's regional
 * disaster, section 8 of DESIGN.md, out of this run's scope).
 *
 * The kinds, and which the default run applies (`--faults default`) or only `--faults all`:
 * - `kill`: kill -9 of a site process, restarted after the fault's duration (it comes back failed:
 *   `threesite recover`). A kill of the primary is answered by a failover to site 2 (host 2 writes there)
 *   or by restarting and recovering site 1, as the seed says. Default.
 * - `stop`: SIGSTOP of a site process, SIGCONT after the duration. Default: site 3 for any duration, a sync
 *   member for less than the answer timeout; with `--faults all` a sync member also for longer (its peer then
 *   suspends the pair on its own, a decision no model event marks, so the traces cannot be checked).
 * - `cut`: a link between two sites broken at the TCP proxy the run owns (every connection reset, new ones
 *   refused), restored after the duration. Default.
 * - `corrupt`: a site is stopped, one bit of its `state.json` (after kill -9) or of its last journal entry
 *   (after a clean stop, when a bad last entry is corruption, not a torn tail; site 3's journal is usually empty
 *   then, and its `remote.json` is damaged instead) is flipped; the site must refuse
 *   to start with an error naming the file; the operator rebuilds it (a new directory, then resync or a full
 *   copy). Default for site 3, whose rebuild is a full copy the system has; a sync member's rebuild only with
 *   `--faults all` (no command brings a new empty sync member to a full copy).
 * - `diskFull`: the site's directory is a small tmpfs (root only; skipped with a reason otherwise), filled
 *   to the last byte for the duration, then freed. Default. The site that meets it detaches (the process
 *   stays up and says so); the operator restarts its process once there is room, then recovers it.
 * - Fence policy `refuse` (a quarter of the schedules) only with `--faults all`: its refusals after a link
 *   loss a site saw alone are not traced, and the entries of the writes it refused reach site 3.
 * - An I/O error at a site: not applied. No fault-injecting backend exists in impl/ to reach from a
 *   process (issue 15 asks for one); the run says so.
 */

/** The kinds of fault a schedule applies. */
export type FaultKind = 'kill' | 'stop' | 'cut' | 'corrupt' | 'diskFull';

/** Every fault kind, in the order the figures list them. */
export const faultKinds: readonly FaultKind[] = ['kill', 'stop', 'cut', 'corrupt', 'diskFull'];

/** Which set of faults a run draws from. */
export type FaultMix = 'default' | 'all';

/** A link between two sites, lower id first. */
export type LinkName = '1-2' | '1-3' | '2-3';

/** One fault of a schedule. */
export type Fault =
  | { kind: 'kill'; site: 1 | 2 | 3; atMs: number; durationMs: number; failover: boolean }
  | { kind: 'stop'; site: 1 | 2 | 3; atMs: number; durationMs: number }
  | { kind: 'cut'; link: LinkName; atMs: number; durationMs: number }
  | { kind: 'corrupt'; site: 1 | 2 | 3; atMs: number; file: 'state' | 'journal' }
  | { kind: 'diskFull'; site: 1 | 2 | 3; atMs: number; durationMs: number };

/** One schedule: its seed, the sites' fence policy, and its faults in the order they are applied. */
export interface Schedule {
  index: number;
  seed: number;
  fencePolicy: 'keepWriting' | 'refuse';
  /** The site whose directory is a tmpfs (diskFull), or null. */
  tmpfsSite: 1 | 2 | 3 | null;
  faults: Fault[];
}

/** Faults a schedule applies at most (and at least 1). */
export const faultsPerScheduleMax = 3;

/** The pause before each fault, while the workload writes: drawn in [faultGapMsMin, faultGapMsMax]. */
export const faultGapMsMin = 150;
export const faultGapMsMax = 600;

/** How long a kill, a link cut or a full disk lasts: drawn in [faultDurationMsMin, faultDurationMsMax]. */
export const faultDurationMsMin = 200;
export const faultDurationMsMax = 1200;

/**
 * How long a SIGSTOP lasts beyond the answer timeout (so the peer suspends the pair, rule R1): drawn in
 * [0, stopBeyondTimeoutMsMax]; a third of stops are shorter than the timeout instead (the pair holds).
 */
export const stopBeyondTimeoutMsMax = 800;

/** The seed of a run when none is given (FoundationDB: the seed defaults to a fixed value). */
export const nemesisSeedDefault = 20261204;

/**
 * A small seeded generator (mulberry32): the same seed, the same numbers, on every machine. Not for
 * anything but choosing faults and blocks.
 */
export class Rng {
  #state: number;

  constructor(seed: number) {
    this.#state = seed >>> 0;
  }

  /** A float in [0, 1). */
  next(): number {
    this.#state = (this.#state + 0x6d2b79f5) >>> 0;
    let t = this.#state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** One element of a non-empty list. */
  pick<T>(items: readonly T[]): T {
    if (items.length === 0) throw new RangeError('pick from an empty list');
    return items[Math.floor(this.next() * items.length)] as T;
  }
}

/** The seed of schedule `index` of a run seeded `runSeed`: each schedule replays alone from its own seed. */
export function scheduleSeedOf(runSeed: number, index: number): number {
  return (Math.imul(runSeed >>> 0, 2654435761) + Math.imul(index + 1, 40503)) >>> 0;
}

/** The kinds a mix draws from, and how often (weights). */
function kindsOf(mix: FaultMix, root: boolean): [FaultKind, number][] {
  const kinds: [FaultKind, number][] = [
    ['kill', 4],
    ['stop', 3],
    ['cut', 3],
    ['corrupt', 1],
  ];
  if (root) kinds.push(['diskFull', 2]);
  return kinds;
}

function weighted(rng: Rng, kinds: [FaultKind, number][]): FaultKind {
  const total = kinds.reduce((sum, [, weight]) => sum + weight, 0);
  let roll = rng.next() * total;
  for (const [kind, weight] of kinds) {
    roll -= weight;
    if (roll < 0) return kind;
  }
  return (kinds[kinds.length - 1] as [FaultKind, number])[0];
}

/**
 * The schedule a seed gives. `answerTimeoutMs` is the sites' (a stop is timed around it); `root`: whether
 * a tmpfs can be mounted (a full disk is drawn only then).
 */
export function scheduleOf(index: number, seed: number, mix: FaultMix, answerTimeoutMs: number, root: boolean): Schedule {
  const rng = new Rng(seed);
  // Fence policy refuse only in `all`: its refusals after a link loss a site saw alone are not traced
  // (conformance/TRACE.md "Not recorded"), and the entries of writes it refused reach site 3.
  const refuse = rng.next() < 0.25;
  const fencePolicy = mix === 'all' && refuse ? 'refuse' : 'keepWriting';
  const kinds = kindsOf(mix, root);
  const count = rng.int(1, faultsPerScheduleMax);
  const faults: Fault[] = [];
  let diskFullSite: 1 | 2 | 3 | null = null;
  for (let i = 0; i < count; i += 1) {
    const kind = weighted(rng, kinds);
    const atMs = rng.int(faultGapMsMin, faultGapMsMax);
    const durationMs = rng.int(faultDurationMsMin, faultDurationMsMax);
    const site = rng.pick([1, 2, 3] as const);
    switch (kind) {
      case 'kill':
        faults.push({ kind, site, atMs, durationMs, failover: site === 1 && rng.next() < 0.5 });
        break;
      case 'stop': {
        // A sync member stopped past the answer timeout only in `all`: its peer suspends the pair alone,
        // which no model event marks (conformance/TRACE.md "Not recorded").
        const long = rng.next() < 2 / 3 && (mix === 'all' || site === 3);
        const stopMs = long ? answerTimeoutMs + rng.int(100, stopBeyondTimeoutMsMax) : rng.int(faultDurationMsMin, Math.max(faultDurationMsMin, answerTimeoutMs - 500));
        faults.push({ kind, site, atMs, durationMs: stopMs });
        break;
      }
      case 'cut':
        faults.push({ kind, link: rng.pick(['1-2', '1-3', '2-3'] as const), atMs, durationMs });
        break;
      case 'corrupt':
        faults.push({ kind, site: mix === 'all' ? site : 3, atMs, file: rng.pick(['state', 'journal'] as const) });
        break;
      case 'diskFull':
        diskFullSite ??= site;
        faults.push({ kind, site: diskFullSite, atMs, durationMs });
        break;
    }
  }
  return { index, seed, fencePolicy, tmpfsSite: diskFullSite, faults };
}

/** One line per fault, as the run prints a schedule. */
export function formatSchedule(schedule: Schedule): string {
  const lines = [`schedule ${schedule.index} seed ${schedule.seed} fence ${schedule.fencePolicy}${schedule.tmpfsSite === null ? '' : `, site ${schedule.tmpfsSite} on tmpfs`}`];
  for (const fault of schedule.faults) lines.push(`  +${fault.atMs}ms ${formatFault(fault)}`);
  return lines.join('\n');
}

/** A fault in a few words. */
export function formatFault(fault: Fault): string {
  switch (fault.kind) {
    case 'kill':
      return `kill -9 site ${fault.site} for ${fault.durationMs}ms${fault.site === 1 ? (fault.failover ? ', failover to site 2' : ', restart and recover') : ''}`;
    case 'stop':
      return `SIGSTOP site ${fault.site} for ${fault.durationMs}ms`;
    case 'cut':
      return `cut link ${fault.link} for ${fault.durationMs}ms`;
    case 'corrupt':
      return `corrupt site ${fault.site}'s ${fault.file === 'state' ? 'state.json (after kill -9)' : 'last journal entry (after a clean stop)'}, rebuild it`;
    case 'diskFull':
      return `fill site ${fault.site}'s disk for ${fault.durationMs}ms`;
  }
}
