/**
 * The statechart's plain configuration as a `createMachine({...})` module, for XState's own editor (Stately
 * Studio: a new machine, then Import, then paste this file). `model/machine.ts` builds its regions with small
 * helper functions, which an importer that reads code without running it cannot follow; this export is the
 * configuration those helpers produce, taken from the machine itself: every state, every transition with its
 * named guard (and parameters), named actions, `meta` (claims) and descriptions, plus the initial context as
 * data so the editor's simulator starts where the model starts.
 */
import type { AnyStateMachine } from 'xstate';
import { defaultParams } from '../model/params.ts';
import { initialContext } from '../model/state.ts';

/** Thrown when the configuration holds code other than the context factory (it would not import). */
export class NotPlainConfigError extends Error {
  constructor(readonly path: string) {
    super(`machine configuration holds a function at ${path}: name it in setup() so the chart stays plain data`);
    this.name = 'NotPlainConfigError';
  }
}

function plain(value: unknown, path: string): unknown {
  if (typeof value === 'function') throw new NotPlainConfigError(path);
  if (Array.isArray(value)) return value.map((item, i) => plain(item, `${path}[${i}]`));
  if (value && typeof value === 'object') {
    return Object.fromEntries(Object.entries(value).map(([key, item]) => [key, plain(item, `${path}.${key}`)]));
  }
  return value;
}

/** The machine's configuration as plain data (the context factory replaced by the default initial context). */
export function plainConfig(machine: AnyStateMachine): Record<string, unknown> {
  const { context: _factory, ...rest } = machine.config as Record<string, unknown>;
  return { ...(plain(rest, 'config') as Record<string, unknown>), context: initialContext(defaultParams) };
}

/** The importable module text. */
export function statelyModule(machine: AnyStateMachine): string {
  const config = JSON.stringify(plainConfig(machine), null, 2);
  return [
    '// The three-site replication statechart, exported from model/machine.ts by `npm run diagram` (do not edit).',
    "// Import into XState's editor: Stately Studio, new machine, Import, paste this file. Guards and actions are",
    '// named; their code is in model/machine.ts and model/semantics.ts. The context is the model at its default bounds.',
    "import { createMachine } from 'xstate';",
    '',
    `export const machine = createMachine(${config});`,
    '',
  ].join('\n');
}
