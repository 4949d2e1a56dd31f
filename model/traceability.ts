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
  /** Stable id: `EVENT#i` for the i-th variant of an event (in the `system` region), `region.from -> to` for a region move. */
  id: string;
  /** The event of a variant; for a region move, the events that take it, joined by `|`. */
  event: string;
  source: string;
  target: string | null;
  guard: string | null;
  meta: TransitionMeta | undefined;
  /** The xstate definition, for event variants (used to recognise which variant fired). */
  definition: AnyTransitionDefinition | null;
  /** For a region move: its xstate definitions, one per event and guard. */
  regionDefinitions?: AnyTransitionDefinition[];
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

/** The region whose single state holds every event's variants (the context changes there). */
export const systemRegion = 'system';

/** The state node that holds the event variants: `system.operating`. */
export function variantNode(machine: AnyStateMachine): AnyStateNode {
  const system = machine.root.states[systemRegion] as AnyStateNode | undefined;
  const node = system ? (Object.values(system.states)[0] as AnyStateNode | undefined) : undefined;
  if (!node) throw new Error(`the chart has no ${systemRegion} region with a state that holds the event variants`);
  return node;
}

/** The regions that show sites and pairs (every region but `system`). */
export function shownRegions(machine: AnyStateMachine): AnyStateNode[] {
  return (Object.values(machine.root.states) as AnyStateNode[]).filter((region) => region.key !== systemRegion);
}

/**
 * Every transition definition of the chart: the event variants first (`EVENT#i`, in the `system` region),
 * then each region's moves, one per source and target (`region.from -> to`), whatever events take it: the
 * events and guards of a move are listed together.
 */
export function transitionDefinitions(machine: AnyStateMachine): TransitionDefinitionInfo[] {
  const cached = cache.get(machine);
  if (cached) return cached;
  const list: TransitionDefinitionInfo[] = [];
  const variants = variantNode(machine);
  for (const [event, definitions] of variants.transitions) {
    definitions.forEach((definition, i) => {
      list.push({
        id: `${event}#${i}`,
        event,
        source: `${systemRegion}.${variants.key}`,
        target: null,
        guard: guardName(definition),
        meta: definition.meta as TransitionMeta | undefined,
        definition,
      });
    });
  }
  for (const region of shownRegions(machine)) {
    for (const state of Object.values(region.states) as AnyStateNode[]) {
      const moves = new Map<string, { events: string[]; guards: string[]; descriptions: string[]; definitions: AnyTransitionDefinition[] }>();
      for (const [event, definitions] of state.transitions) {
        for (const definition of definitions) {
          const target = definition.target?.[0]?.key;
          if (target === undefined) throw new Error(`region ${region.key}: ${state.key} has a targetless transition on ${event}`);
          let move = moves.get(target);
          if (!move) moves.set(target, (move = { events: [], guards: [], descriptions: [], definitions: [] }));
          if (!move.events.includes(event)) move.events.push(event);
          move.guards.push(`${event} [${guardName(definition) ?? 'no guard'}]`);
          const description = (definition.meta as TransitionMeta | undefined)?.description;
          if (description && !move.descriptions.includes(description)) move.descriptions.push(description);
          move.definitions.push(definition);
        }
      }
      for (const [target, move] of moves) {
        list.push({
          id: `${region.key}.${state.key} -> ${target}`,
          event: move.events.join('|'),
          source: `${region.key}.${state.key}`,
          target: `${region.key}.${target}`,
          guard: move.guards.join('; '),
          meta: { claims: [], description: move.descriptions.join('; ') },
          definition: null,
          regionDefinitions: move.definitions,
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
