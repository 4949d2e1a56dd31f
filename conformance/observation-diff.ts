/**
 * Field-by-field comparison of two observations: the model's (expected) and the implementation's (actual).
 * A difference names the field by its path (`sites.3.received`, `asyncPair.state`) so a failure report says
 * exactly what diverged.
 */
import type { Observation } from '../model/observation.ts';

/** One field that differs. */
export interface FieldDifference {
  path: string;
  expected: unknown;
  actual: unknown;
}

function walk(expected: unknown, actual: unknown, path: string, out: FieldDifference[]): void {
  if (Object.is(expected, actual)) return;
  const bothObjects = typeof expected === 'object' && expected !== null && typeof actual === 'object' && actual !== null;
  if (!bothObjects || Array.isArray(expected) !== Array.isArray(actual)) {
    out.push({ path, expected, actual });
    return;
  }
  const keys = new Set([...Object.keys(expected as object), ...Object.keys(actual as object)]);
  for (const key of keys) {
    walk((expected as Record<string, unknown>)[key], (actual as Record<string, unknown>)[key], path ? `${path}.${key}` : key, out);
  }
}

/** The fields where `actual` differs from `expected` (empty when they agree). */
export function diffObservations(expected: Observation, actual: Observation): FieldDifference[] {
  const out: FieldDifference[] = [];
  walk(expected, actual, '', out);
  return out;
}

/** A difference as one line: `sites.3.received: expected 2, actual 1`. */
export function formatDifference(difference: FieldDifference): string {
  return `${difference.path}: expected ${JSON.stringify(difference.expected)}, actual ${JSON.stringify(difference.actual)}`;
}
