import { describe, expect, it } from 'vitest';
import { createMachine, type AnyStateMachine } from 'xstate';
import { replicationMachine } from '../../model/machine.ts';
import { transitionDefinitions } from '../../model/traceability.ts';
import { chartOf } from '../../review/chart.ts';
import { condOf, scxmlNamespace, scxmlTraceNamespace, statechartScxml } from '../../review/scxml.ts';
import { plainConfig, statelyModule } from '../../review/stately.ts';
import { readXml, walkXml, XmlReadError } from '../../review/xml-read.ts';

const chart = chartOf(replicationMachine);

describe('the SCXML export', () => {
  const document = readXml(statechartScxml(chart));

  it('is SCXML 1.0 with a <parallel> root holding one <state> per region', () => {
    expect(document.name).toBe('scxml');
    expect(document.attributes).toMatchObject({ xmlns: scxmlNamespace, 'xmlns:ts': scxmlTraceNamespace, version: '1.0' });
    const [root] = document.children;
    expect(root).toMatchObject({ name: 'parallel', attributes: { id: 'threeSite' } });
    const regions = root!.children.filter((child) => child.name === 'state');
    expect(regions.map((region) => region.attributes.id)).toEqual(chart.regions.map((region) => region.key));
    for (const region of regions) expect(region.attributes.initial).toBe(chart.regions.find((r) => r.key === region.attributes.id)!.initial);
  });

  it('reads back with every state and every transition of the machine, guards as cond, claims kept', () => {
    const states = new Set<string>();
    const transitions = new Map<string, { event: string | null; cond: string; source: string; target: string | null; claims: number[]; beyond: string | null; actions: string[] }>();
    for (const { element, parent } of walkXml(document)) {
      if (element.name === 'state' && element.children.every((child) => child.name !== 'state')) states.add(element.attributes.id!);
      if (element.name !== 'transition') continue;
      const id = element.attributes['ts:id']!;
      expect(transitions.has(id), `duplicate ${id}`).toBe(false);
      const claims = element.attributes['ts:claims']!.split(' ').filter(Boolean).map(Number);
      // Claim numbers are also kept readable in comments with the claim's subject.
      expect(element.comments.map((comment) => Number(/^claim (\d+):/.exec(comment)?.[1]))).toEqual(claims);
      transitions.set(id, {
        event: element.attributes.event ?? null,
        cond: element.attributes.cond!,
        source: parent!.attributes.id!,
        target: element.attributes.target ?? null,
        claims,
        beyond: element.attributes['ts:beyond'] ?? null,
        actions: element.children.filter((child) => child.name === 'ts:action').map((child) => child.attributes.name!),
      });
    }
    expect([...states].sort()).toEqual(chart.regions.flatMap((region) => region.states.map((state) => state.id)).sort());
    const definitions = transitionDefinitions(replicationMachine);
    expect([...transitions.keys()].sort()).toEqual(definitions.map((info) => info.id).sort());
    for (const info of definitions) {
      const read = transitions.get(info.id)!;
      expect(read.source, info.id).toBe(info.source);
      expect(read.target, info.id).toBe(info.target);
      expect(read.event, info.id).toBe(info.event === 'always' ? null : info.event);
      expect(read.claims, info.id).toEqual(info.meta!.claims);
      expect(read.beyond, info.id).toBe(info.meta!.beyondClaims ?? null);
      expect(read.cond.startsWith(`${info.guard!.replace(/\(.*$/, '')}(`), info.id).toBe(true);
    }
    expect(transitions.get('FAILOVER#3')!.actions).toEqual(['failover']);
    expect(transitions.get('site1.normal -> failed')!.cond).toBe("siteModeIs({ site: 1, value: 'failed' })");
  });

  it('writes guards as ECMAScript calls of the named guard', () => {
    expect(condOf({ type: 'restoreAccepted', params: {} })).toBe('restoreAccepted()');
    expect(condOf({ type: 'failbackWith', params: { verdict: "it's" } })).toBe("failbackWith({ verdict: 'it\\'s' })");
  });
});

describe('the XML reader', () => {
  it('rejects malformed documents instead of guessing', () => {
    for (const bad of ['<a>', '<a></b>', '<a x="1" x="2"/>', '<a x=1/>', '<a>&nope;</a>', '<a/><b/>', '<a><!-- x -- y --></a>', '<a>1 & 2</a>']) {
      expect(() => readXml(bad), bad).toThrow(XmlReadError);
    }
    expect(readXml('<?xml version="1.0"?><a x=\'1\'>t&amp;&#65;<b/></a>')).toMatchObject({ name: 'a', attributes: { x: '1' }, text: 't&A', children: [{ name: 'b' }] });
  });
});

describe("the module for XState's editor", () => {
  it('is the plain configuration: createMachine over it gives the same states and transitions', () => {
    const text = statelyModule(replicationMachine);
    expect(text).toContain("import { createMachine } from 'xstate';");
    const json = text.slice(text.indexOf('createMachine(') + 'createMachine('.length, text.lastIndexOf(');'));
    const config = JSON.parse(json) as Record<string, unknown>;
    expect(config).toEqual(JSON.parse(JSON.stringify(plainConfig(replicationMachine))));
    const imported: AnyStateMachine = createMachine(config as never);
    const summary = (machine: AnyStateMachine) =>
      transitionDefinitions(machine).map((info) => ({ id: info.id, guard: info.guard, target: info.target, meta: info.meta, actions: info.definition?.actions.length ?? 0 }));
    expect(summary(imported)).toEqual(summary(replicationMachine));
    // The context is data: the model's initial state at its default bounds.
    expect((config.context as { primary: number }).primary).toBe(1);
  });
});
