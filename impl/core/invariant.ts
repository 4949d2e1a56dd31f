/**
 * Invariants asserted in the code (TIGER_STYLE): a broken invariant is a bug in this system, never a
 * condition a caller handles, so it throws an {@link InvariantError} that names the rule it broke.
 *
 * The rule names follow `shared/DESIGN.md`: a safety property is named by its number first
 * (`'P3 journal append is last+1'`, `'P7 journal within capacity'`); any other invariant by a short sentence
 * that states what must hold (`'journal is open'`).
 */

/**
 * Thrown when an invariant of the system does not hold. The `invariant` field names the rule (for example
 * `'P3 journal append is last+1'`), so that tests and the fault catalogue can tell which rule fired.
 */
export class InvariantError extends Error {
  constructor(
    /** The rule that broke, e.g. `'P7 journal within capacity'`. */
    readonly invariant: string,
    message: string,
  ) {
    super(`invariant '${invariant}' violated: ${message}`);
    this.name = 'InvariantError';
  }
}

/**
 * Asserts one condition; throws an {@link InvariantError} naming `invariant` when it is false.
 *
 * `message` may be a function, evaluated only on failure, so that an assertion on a hot path (a host
 * write, a journal append) does not build a string every time it holds.
 */
export function assert(condition: boolean, invariant: string, message: string | (() => string)): asserts condition {
  if (!condition) throw new InvariantError(invariant, typeof message === 'string' ? message : message());
}
