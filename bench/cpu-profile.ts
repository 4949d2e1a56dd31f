/**
 * Reads a V8 `.cpuprofile` (what `node --cpu-prof` writes at exit) and summarises where the time went: the
 * functions with the most self time (samples whose top frame is the function), aggregated over every node of
 * the call tree with the same function name, file and line. The deployment benchmark uses it to say where a
 * site process spends its CPU (`npm run bench -- --only deployment --profile`).
 */

import * as fs from 'node:fs';
import * as path from 'node:path';

/** Largest profile read, in bytes: a few seconds of sampling is a few MiB; refuse anything absurd. */
export const cpuProfileBytesMax = 512 * 1024 * 1024;

/** One function's share of a profile. */
export interface ProfileEntry {
  /** `name (file:line)`, the file relative to the working directory when inside it. */
  readonly frame: string;
  readonly selfMs: number;
  /** Self time as a share of the profile's sampled time, in percent. */
  readonly selfPercent: number;
}

/** A profile's summary: its sampled time, and the top functions by self time. */
export interface ProfileSummary {
  readonly file: string;
  readonly sampledMs: number;
  /** Sampled time not in `(idle)`, `(program)` or `(garbage collector)`: JavaScript and native calls. */
  readonly busyMs: number;
  readonly garbageCollectorMs: number;
  readonly idleMs: number;
  readonly top: readonly ProfileEntry[];
}

/** A file that is not a V8 CPU profile. */
export class CpuProfileError extends Error {
  constructor(
    readonly file: string,
    readonly reason: 'tooLarge' | 'notJson' | 'notProfile',
    detail: string,
  ) {
    super(`cpu profile ${file}: ${detail}`);
    this.name = 'CpuProfileError';
  }
}

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

function frameName(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const name = functionName === '' ? '(anonymous)' : functionName;
  if (url === '') return name;
  let file = url.startsWith('file://') ? new URL(url).pathname : url;
  const cwd = `${process.cwd()}${path.sep}`;
  if (file.startsWith(cwd)) file = file.slice(cwd.length);
  // tsx's transformed modules report line 0 for every function: the file alone is the honest location.
  return lineNumber > 0 ? `${name} (${file}:${lineNumber + 1})` : `${name} (${file})`;
}

/** Summarises one profile: its `topCount` functions by self time. Throws {@link CpuProfileError}. */
export function summariseCpuProfile(file: string, topCount: number): ProfileSummary {
  const size = fs.statSync(file).size;
  if (size > cpuProfileBytesMax) throw new CpuProfileError(file, 'tooLarge', `${size} bytes > ${cpuProfileBytesMax}`);
  let profile: Profile;
  try {
    profile = JSON.parse(fs.readFileSync(file, 'utf8')) as Profile;
  } catch {
    throw new CpuProfileError(file, 'notJson', 'not JSON');
  }
  if (!Array.isArray(profile.nodes) || !Array.isArray(profile.samples) || !Array.isArray(profile.timeDeltas)) {
    throw new CpuProfileError(file, 'notProfile', 'no nodes, samples and timeDeltas');
  }
  const byId = new Map<number, ProfileNode>();
  for (const node of profile.nodes) byId.set(node.id, node);
  const selfUs = new Map<string, number>();
  let totalUs = 0;
  // timeDeltas[i] is the time before sample i; charge it to sample i's top frame (V8's own convention).
  for (let i = 0; i < profile.samples.length; i += 1) {
    const node = byId.get(profile.samples[i] as number);
    const delta = profile.timeDeltas[i] ?? 0;
    if (node === undefined || delta < 0) continue;
    const frame = frameName(node);
    selfUs.set(frame, (selfUs.get(frame) ?? 0) + delta);
    totalUs += delta;
  }
  const idleUs = selfUs.get('(idle)') ?? 0;
  const gcUs = selfUs.get('(garbage collector)') ?? 0;
  const programUs = selfUs.get('(program)') ?? 0;
  const ms = (us: number): number => Math.round(us / 100) / 10;
  const top = [...selfUs]
    .filter(([frame]) => frame !== '(idle)')
    .sort((a, b) => b[1] - a[1])
    .slice(0, topCount)
    .map(([frame, us]) => ({ frame, selfMs: ms(us), selfPercent: totalUs === 0 ? 0 : Math.round((1000 * us) / totalUs) / 10 }));
  return { file, sampledMs: ms(totalUs), busyMs: ms(totalUs - idleUs - gcUs - programUs), garbageCollectorMs: ms(gcUs), idleMs: ms(idleUs), top };
}

/**
 * The main thread's profile of process `pid` in `dir` (node names them `CPU.<date>.<time>.<pid>.<thread>.<seq>.cpuprofile`,
 * thread 0 the main thread), or undefined if it wrote none.
 */
export function mainThreadProfileOf(dir: string, pid: number): string | undefined {
  if (!fs.existsSync(dir)) return undefined;
  const pattern = new RegExp(`^CPU\\.\\d+\\.\\d+\\.${pid}\\.0\\.\\d+\\.cpuprofile$`);
  const found = fs.readdirSync(dir).filter((name) => pattern.test(name)).sort();
  const last = found.at(-1);
  return last === undefined ? undefined : path.join(dir, last);
}
