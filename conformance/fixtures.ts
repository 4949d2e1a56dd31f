/**
 * Failure fixtures: every divergence the harness finds is saved as a small JSON file (model parameters,
 * events, the observations the model expected after each step, and what went wrong), and every saved
 * fixture is replayed first on every run. A fixed failure stays as a regression test.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { formatEvent, parseEvent, type ModelEvent } from '../model/events.ts';
import type { Observation } from '../model/observation.ts';
import { validateParams, type ModelParams } from '../model/params.ts';
import type { SutFactory } from './sut.ts';
import { runPath, type Divergence } from './lockstep.ts';

/** The saved form of a failure. */
export interface Fixture {
  /** What the failure was about, for a person. */
  name: string;
  params: ModelParams;
  events: string[];
  /** The model's observation before the first event and after each event, up to the failing step. */
  expected: Observation[];
  /** What diverged when the fixture was saved. */
  divergence: string;
}

/** The outcome of replaying one fixture. */
export interface FixtureResult {
  file: string;
  name: string;
  events: number;
  passed: boolean;
  summary: string | null;
}

/** Limits: fixture files read per run, and bytes per file. */
export const fixtureLimits = { fixturesMax: 1_000, fixtureBytesMax: 1_048_576 };

/** Saves a failure as `failure-<hash>.json` (the same failure twice is one file); returns the file name. */
export function saveFixture(
  dir: string,
  params: ModelParams,
  events: readonly ModelEvent[],
  run: { divergence: Divergence | null; expected?: Observation[] },
  name: string,
): string {
  const fixture: Fixture = {
    name,
    params,
    events: events.map(formatEvent),
    expected: run.expected ?? [],
    divergence: run.divergence?.summary ?? '',
  };
  const hash = createHash('sha256').update(JSON.stringify([fixture.params, fixture.events])).digest('hex').slice(0, 12);
  mkdirSync(dir, { recursive: true });
  const file = `failure-${hash}.json`;
  writeFileSync(join(dir, file), `${JSON.stringify(fixture, null, 2)}\n`);
  return file;
}

/** Reads and checks one fixture file; throws on a malformed one. */
export function readFixture(path: string): Fixture {
  const text = readFileSync(path, 'utf8');
  if (text.length > fixtureLimits.fixtureBytesMax) throw new Error(`${path}: fixture larger than ${fixtureLimits.fixtureBytesMax} bytes`);
  const data = JSON.parse(text) as Partial<Fixture>;
  if (typeof data.name !== 'string' || !Array.isArray(data.events) || typeof data.params !== 'object' || data.params === null) {
    throw new Error(`${path}: not a fixture (needs name, params, events)`);
  }
  return {
    name: data.name,
    params: validateParams(data.params),
    events: data.events.map(String),
    expected: Array.isArray(data.expected) ? data.expected : [],
    divergence: String(data.divergence ?? ''),
  };
}

/** Replays every fixture of a folder against a system under test (none when the folder is missing). */
export function loadFixtures(dir: string, makeSut: SutFactory): FixtureResult[] {
  let files: string[];
  try {
    files = readdirSync(dir).filter((file) => file.endsWith('.json')).sort();
  } catch {
    return [];
  }
  return files.slice(0, fixtureLimits.fixturesMax).map((file) => {
    const fixture = readFixture(join(dir, file));
    const run = runPath(fixture.params, fixture.events.map(parseEvent), makeSut);
    return { file, name: fixture.name, events: fixture.events.length, passed: !run.divergence, summary: run.divergence?.summary ?? null };
  });
}
