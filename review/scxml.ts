/**
 * The statechart as W3C SCXML (https://www.w3.org/TR/scxml/), so that other statechart tools can read the
 * specification. Written from the machine (through `chart.ts`): the root is a `<parallel>` whose regions are
 * `<state>`s; each root event variant is a targetless (`type="internal"`) transition of the `<parallel>`;
 * each region's eventless move is an eventless transition with a target. Guards become `cond` expressions
 * calling the named guard of `model/machine.ts` (`siteModeIs({"site":1,"value":"failed"})`: the datamodel
 * provides the guards as functions of the context and `_event`); actions become `<ts:action name="..."/>`
 * elements; the traceability (transition id, claim numbers, beyond-claims behaviour, description) is kept in
 * attributes of the namespace {@link scxmlTraceNamespace} and in a comment naming each claim's subject.
 */
import { claimNumbered, type Chart, type GuardSpec } from './chart.ts';
import { systemRegion } from '../model/traceability.ts';

/** The namespace of the traceability attributes and the action elements. */
export const scxmlTraceNamespace = 'urn:threesite:statechart:traceability';

/** The namespace of SCXML itself. */
export const scxmlNamespace = 'http://www.w3.org/2005/07/scxml';

/** Escapes text for an XML attribute or text node. */
function xml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;').replace(/\n/g, '&#10;');
}

/** Text inside an XML comment (which may not contain `--`). */
function commentText(text: string): string {
  return text.replace(/--/g, '- -');
}

/** A parameter value as an ECMAScript literal (strings single-quoted, so the XML attribute stays readable). */
function literal(value: unknown): string {
  if (typeof value === 'string') return `'${value.replace(/\\/g, '\\\\').replace(/'/g, "\\'")}'`;
  if (typeof value === 'number' || typeof value === 'boolean') return String(value);
  return JSON.stringify(value);
}

/** A named guard as an ECMAScript call: `name()` or `name({ site: 1, value: 'failed' })`. */
export function condOf(guard: GuardSpec): string {
  const entries = Object.entries(guard.params);
  if (entries.length === 0) return `${guard.type}()`;
  return `${guard.type}({ ${entries.map(([key, value]) => `${key}: ${literal(value)}`).join(', ')} })`;
}

function traceAttributes(id: string, meta: { claims: number[]; beyondClaims?: string; description: string }): string {
  const parts = [`ts:id="${xml(id)}"`, `ts:claims="${meta.claims.join(' ')}"`];
  if (meta.beyondClaims) parts.push(`ts:beyond="${xml(meta.beyondClaims)}"`);
  parts.push(`ts:description="${xml(meta.description)}"`);
  return parts.join(' ');
}

function claimComment(claims: number[], indent: string): string[] {
  return claims.map((number) => `${indent}<!-- claim ${number}: ${commentText(claimNumbered(number).subject)} -->`);
}

/** The chart as an SCXML document. */
export function statechartScxml(chart: Chart): string {
  const lines = [
    '<?xml version="1.0" encoding="UTF-8"?>',
    '<!--',
    `  The three-site replication statechart, exported from model/machine.ts by \`npm run diagram\` (do not edit).`,
    '  Every event has its guarded variants in the system region (they change the context); the other regions',
    "  move on the same events. Guards are the named guards of model/machine.ts and model/regions.ts;",
    `  ts:* attributes (namespace ${scxmlTraceNamespace}) carry each transition's claims.`,
    '-->',
    `<scxml xmlns="${scxmlNamespace}" xmlns:ts="${scxmlTraceNamespace}" version="1.0" name="${xml(chart.id)}" datamodel="ecmascript">`,
    `  <parallel id="${xml(chart.id)}">`,
  ];
  lines.push(`    <state id="${systemRegion}" initial="${systemRegion}.operating">`, `      <state id="${systemRegion}.operating">`);
  for (const variant of chart.rootTransitions) {
    lines.push(`        <transition event="${xml(variant.event)}" cond="${xml(condOf(variant.guardSpec))}" ${traceAttributes(variant.id, variant.meta)}>`);
    lines.push(...claimComment(variant.meta.claims, '          '));
    for (const action of variant.actions) lines.push(`          <ts:action name="${xml(action)}"/>`);
    lines.push('        </transition>');
  }
  lines.push('      </state>', '    </state>');
  for (const region of chart.regions) {
    lines.push(`    <state id="${xml(region.key)}" initial="${xml(region.initial)}">`);
    for (const state of region.states) {
      lines.push(`      <state id="${xml(state.id)}" ts:description="${xml(state.description)}">`);
      for (const move of region.moves.filter((candidate) => candidate.source === state.id)) {
        for (const trigger of move.triggers) {
          lines.push(`        <transition event="${xml(trigger.event)}" cond="${xml(condOf(trigger.guardSpec))}" target="${xml(move.target)}" ${traceAttributes(move.id, move.meta)}/>`);
        }
      }
      lines.push('      </state>');
    }
    lines.push('    </state>');
  }
  lines.push('  </parallel>', '</scxml>');
  return `${lines.join('\n')}\n`;
}
