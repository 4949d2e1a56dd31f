/**
 * Claim traceability: every transition definition of the chart with its meta, and, for each of the 40
 * claims, the transitions that implement it. Reports, the review page and a test (every claim has at least
 * one transition) read it from the machine itself, never from a hand-kept copy.
 */
import type { AnyStateMachine, AnyStateNode, AnyTransitionDefinition } from 'xstate';
import { claims, type Claim } from './claims.ts';
import type { TransitionMeta } from './machine.ts';

/** One transition definition of the chart. */
export interface TransitionDefinitionInfo {
  /** Stable id: `EVENT#i` for the i-th variant of a root event, `region.from -> to` for a region move. */
  id: string;
  /** The event, or `always` for an eventless region move. */
  event: string;
  source: string;
  target: string | null;
  guard: string | null;
  meta: TransitionMeta | undefined;
  /** The xstate definition, for root events (used to recognise which variant fired). */
  definition: AnyTransitionDefinition | null;
}

function guardName(definition: AnyTransitionDefinition): string | null {
  const guard = definition.guard as unknown;
  if (!guard) return null;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && guard !== null && 'type' in guard) {
    const { type, params } = guard as { type: string; params?: Record<string, unknown> };
    if (!params) return type;
    return `${type}(${Object.entries(params).map(([k, v]) => `${k}=${String(v)}`).join(', ')})`;
  }
  return 'inline';
}

const cache = new WeakMap<AnyStateMachine, TransitionDefinitionInfo[]>();

/** Every transition definition of the chart, root events first, then each region's moves. */
export function transitionDefinitions(machine: AnyStateMachine): TransitionDefinitionInfo[] {
  const cached = cache.get(machine);
  if (cached) return cached;
  const list: TransitionDefinitionInfo[] = [];
  for (const [event, definitions] of machine.root.transitions) {
    definitions.forEach((definition, i) => {
      list.push({
        id: `${event}#${i}`,
        event,
        source: machine.root.id,
        target: null,
        guard: guardName(definition),
        meta: definition.meta as TransitionMeta | undefined,
        definition,
      });
    });
  }
  for (const region of Object.values(machine.root.states) as AnyStateNode[]) {
    for (const state of Object.values(region.states) as AnyStateNode[]) {
      for (const definition of state.always ?? []) {
        const target = definition.target?.[0]?.key ?? null;
        list.push({
          id: `${region.key}.${state.key} -> ${target}`,
          event: 'always',
          source: `${region.key}.${state.key}`,
          target: target === null ? null : `${region.key}.${target}`,
          guard: guardName(definition),
          meta: definition.meta as TransitionMeta | undefined,
          definition: null,
        });
      }
    }
  }
  cache.set(machine, list);
  return list;
}

/** One row of the claim-to-transition table. */
export interface ClaimTrace {
  claim: Claim;
  transitions: TransitionDefinitionInfo[];
}

/** For each of the 40 claims, the transitions whose `meta.claims` name it. */
export function claimTraceability(machine: AnyStateMachine): ClaimTrace[] {
  const definitions = transitionDefinitions(machine);
  return claims.map((claim) => ({
    claim,
    transitions: definitions.filter((info) => info.meta?.claims.includes(claim.number)),
  }));
}
