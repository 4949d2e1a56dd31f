/// <reference lib="dom" />
/**
 * Shows the simulation on the embedded diagrams: the current state of every region is marked `active`, and
 * the transitions of the last step (the root variant's row in the event table, and each region move's edge)
 * are marked `taken`. The ids are those `review/dot.ts` gives, behind each diagram's prefix.
 */
import { stateSvgId, transitionSvgId } from '../dot.ts';
import { regionValues, type SimulatorStep } from './session.ts';

const marked = new Set<Element>();

function mark(element: Element | null, className: string): void {
  if (!element) return;
  element.classList.add(className);
  marked.add(element);
}

/** The elements of one transition in a diagram: an edge, or the three cells of a root table row. */
export function transitionElements(prefix: string, transitionId: string): Element[] {
  const id = transitionSvgId(transitionId);
  return [`${prefix}${id}`, `${prefix}a_${id}`, `${prefix}a_${id}-guard`, `${prefix}a_${id}-claims`]
    .map((candidate) => document.getElementById(candidate))
    .filter((element): element is HTMLElement => element !== null);
}

/** Marks the current states and the last step's transitions on every diagram. */
export function highlightStep(step: SimulatorStep, prefixes: readonly string[]): void {
  for (const element of marked) element.classList.remove('active', 'taken');
  marked.clear();
  const values = regionValues(step.snapshot);
  for (const prefix of prefixes) {
    for (const [region, state] of Object.entries(values)) mark(document.getElementById(`${prefix}${stateSvgId(`${region}.${state}`)}`), 'active');
    for (const id of [...(step.variant ? [step.variant] : []), ...step.moves]) {
      for (const element of transitionElements(prefix, id)) mark(element, 'taken');
    }
  }
}
