/**
 * The statechart as the review tools see it: its parallel regions with their states, the guarded variants
 * of every event (the `system` region), and the moves of each region with the events that take them, all read from the machine itself
 * (`machine.root` and `model/traceability.ts`), never from a hand-kept copy. The DOT, SCXML and Stately
 * exports and the review page all draw from this one walk, so they cannot disagree about the chart.
 */
import type { AnyStateMachine, AnyStateNode } from 'xstate';
import { claims, type Claim } from '../model/claims.ts';
import type { TransitionMeta } from '../model/machine.ts';
import { shownRegions, systemRegion, transitionDefinitions, type TransitionDefinitionInfo } from '../model/traceability.ts';

/** A named guard with its parameters, as the machine's configuration holds it. */
export interface GuardSpec {
  type: string;
  params: Record<string, unknown>;
}

/** One atomic state of a region. */
export interface ChartState {
  /** `region.state`, as `model/traceability.ts` writes sources and targets. */
  id: string;
  key: string;
  description: string;
}

/** One parallel region of the root: a storage system or a pair. */
export interface ChartRegion {
  key: string;
  initial: string;
  states: ChartState[];
  /** The region's moves, one per source and target, with the events that take them. */
  moves: ChartMove[];
}

/** One event and named condition that take a region move. */
export interface ChartTrigger {
  event: string;
  /** The guard as `model/traceability.ts` prints it: `siteFails(site=1)`. */
  guard: string;
  guardSpec: GuardSpec;
  description: string;
}

/** A move of a region from one state to another, on the events of its triggers. */
export interface ChartMove {
  /** The traceability id, `region.from -> to`. */
  id: string;
  region: string;
  /** `region.state` ids. */
  source: string;
  target: string;
  /** Every trigger, printed: `FAIL_SITE [siteFails(site=1)]; ...`. */
  guard: string;
  triggers: ChartTrigger[];
  meta: TransitionMeta;
}

/** A guarded variant of an event: a targetless transition of the `system` region whose action changes the context. */
export interface ChartRootTransition {
  /** The traceability id, `EVENT#i`. */
  id: string;
  event: string;
  guard: string;
  guardSpec: GuardSpec;
  actions: string[];
  meta: TransitionMeta;
}

/** The whole chart. */
export interface Chart {
  id: string;
  regions: ChartRegion[];
  rootTransitions: ChartRootTransition[];
}

/** Thrown when the machine has a shape the review tools do not draw (they would otherwise draw it wrong). */
export class ChartShapeError extends Error {
  constructor(
    readonly where: string,
    readonly reason: string,
  ) {
    super(`chart shape at ${where}: ${reason}`);
    this.name = 'ChartShapeError';
  }
}

function metaOf(info: TransitionDefinitionInfo): TransitionMeta {
  if (!info.meta) throw new ChartShapeError(info.id, 'transition has no meta (claims or beyondClaims)');
  return info.meta;
}

function guardSpecOf(where: string, guard: unknown): GuardSpec {
  if (typeof guard === 'string') return { type: guard, params: {} };
  if (guard && typeof guard === 'object' && 'type' in guard && typeof (guard as { type: unknown }).type === 'string') {
    const { type, params } = guard as { type: string; params?: Record<string, unknown> };
    return { type, params: { ...(params ?? {}) } };
  }
  throw new ChartShapeError(where, 'guards must be named (a string or { type, params })');
}

function actionNames(info: TransitionDefinitionInfo): string[] {
  return (info.definition?.actions ?? []).map((action: unknown) => {
    if (typeof action === 'string') return action;
    if (action && typeof action === 'object' && 'type' in action) return String((action as { type: unknown }).type);
    throw new ChartShapeError(info.id, 'inline action: every action must be named');
  });
}

/**
 * Walks the machine: a parallel root with the `system` region (one state holding every event's variants)
 * and the regions that show sites and pairs, whose atomic states move on events. Throws
 * {@link ChartShapeError} on any other shape (deeper nesting, targeted variants, eventless or targetless
 * region moves, unnamed guards), so a change of the chart's shape is noticed instead of being drawn wrong.
 */
export function chartOf(machine: AnyStateMachine): Chart {
  const root = machine.root;
  if (root.type !== 'parallel') throw new ChartShapeError(root.id, 'the root must be parallel');
  if (root.transitions.size > 0) throw new ChartShapeError(root.id, `events belong to the ${systemRegion} region, not the root`);
  const definitions = transitionDefinitions(machine);
  const regions: ChartRegion[] = shownRegions(machine).map((region) => {
    const initial = region.initial?.target?.[0]?.key;
    if (!initial) throw new ChartShapeError(region.id, 'region has no initial state');
    const states = (Object.values(region.states) as AnyStateNode[]).map((state) => {
      if (Object.keys(state.states).length > 0) throw new ChartShapeError(state.id, 'nested states below a region are not drawn');
      if ((state.always ?? []).length > 0) throw new ChartShapeError(state.id, 'eventless region moves are not drawn');
      return { id: `${region.key}.${state.key}`, key: state.key, description: state.description ?? '' };
    });
    const moves = definitions
      .filter((info) => info.regionDefinitions && info.source.startsWith(`${region.key}.`))
      .map((info) => {
        if (info.target === null) throw new ChartShapeError(info.id, 'region move without target');
        const triggers = (info.regionDefinitions ?? []).map((definition) => {
          const guardSpec = guardSpecOf(info.id, definition.guard);
          const params = Object.entries(guardSpec.params);
          return {
            event: definition.eventType,
            guard: params.length === 0 ? guardSpec.type : `${guardSpec.type}(${params.map(([k, v]) => `${k}=${String(v)}`).join(', ')})`,
            guardSpec,
            description: (definition.meta as TransitionMeta | undefined)?.description ?? '',
          };
        });
        return { id: info.id, region: region.key, source: info.source, target: info.target, guard: info.guard ?? '', triggers, meta: metaOf(info) };
      });
    return { key: region.key, initial: `${region.key}.${initial}`, states, moves };
  });
  const rootTransitions = definitions
    .filter((info) => info.definition !== null)
    .map((info) => {
      if ((info.definition?.target ?? []).length > 0) throw new ChartShapeError(info.id, 'event variants must be targetless');
      if (info.guard === null) throw new ChartShapeError(info.id, 'event variant without guard');
      const guardSpec = guardSpecOf(info.id, info.definition?.guard);
      return { id: info.id, event: info.event, guard: info.guard, guardSpec, actions: actionNames(info), meta: metaOf(info) };
    });
  return { id: root.id, regions, rootTransitions };
}

/** The claim with this number (1..40); throws for any other number. */
export function claimNumbered(number: number): Claim {
  const claim = claims[number - 1];
  if (!claim || claim.number !== number) throw new RangeError(`no claim ${number}`);
  return claim;
}

/** `claims 2,3,4` or `beyond claims`: the short traceability tag drawn on a transition. */
export function claimsTag(meta: TransitionMeta): string {
  return meta.claims.length > 0 ? `claims ${meta.claims.join(',')}` : 'beyond claims';
}

/**
 * The tooltip text of a transition: its description, every claim with its subject, and the product
 * behaviour it follows when it goes beyond the claims.
 */
export function transitionTooltip(meta: TransitionMeta, extra: string[] = []): string {
  const lines = [meta.description];
  for (const number of meta.claims) lines.push(`claim ${number}: ${claimNumbered(number).subject}`);
  if (meta.beyondClaims) lines.push(`beyond the claims: ${meta.beyondClaims}`);
  return [...lines, ...extra].join('\n');
}
