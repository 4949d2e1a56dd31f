import { describe, expect, it } from 'vitest';
import { createMachine, initialTransition, transition, type AnyStateMachine } from 'xstate';
import { formatEvent, type ModelEvent } from '../../model/events.ts';
import { defaultParams } from '../../model/params.ts';
import { regionStatesOf } from '../../model/regions.ts';
import { replicationMachine } from '../../model/machine.ts';
import { transitionDefinitions } from '../../model/traceability.ts';
import { chartOf } from '../../review/chart.ts';
import { condOf, scxmlNamespace, scxmlTraceNamespace, statechartScxml } from '../../review/scxml.ts';
import { plainConfig, statelyModule } from '../../review/stately.ts';
import { readXml, walkXml, XmlReadError } from '../../review/xml-read.ts';

const chart = chartOf(replicationMachine);

describe('the SCXML export', () => {
  const document = readXml(statechartScxml(chart));

  it('is SCXML 1.0 with a <parallel> root holding the system region and one <state> per region', () => {
    expect(document.name).toBe('scxml');
    expect(document.attributes).toMatchObject({ xmlns: scxmlNamespace, 'xmlns:ts': scxmlTraceNamespace, version: '1.0' });
    const [root] = document.children;
    expect(root).toMatchObject({ name: 'parallel', attributes: { id: 'threeSite' } });
    const regions = root!.children.filter((child) => child.name === 'state');
    expect(regions.map((region) => region.attributes.id)).toEqual(['system', ...chart.regions.map((region) => region.key)]);
    for (const region of regions.slice(1)) expect(region.attributes.initial).toBe(chart.regions.find((r) => r.key === region.attributes.id)!.initial);
  });

  it('reads back with every state and every transition of the machine, guards as cond, claims kept', () => {
    const states = new Set<string>();
    type Read = { events: string[]; conds: string[]; source: string; target: string | null; claims: number[]; beyond: string | null; actions: string[] };
    const transitions = new Map<string, Read>();
    for (const { element, parent } of walkXml(document)) {
      if (element.name === 'state' && element.children.every((child) => child.name !== 'state')) states.add(element.attributes.id!);
      if (element.name !== 'transition') continue;
      const id = element.attributes['ts:id']!;
      const claims = element.attributes['ts:claims']!.split(' ').filter(Boolean).map(Number);
      const known = transitions.get(id);
      // A region move is one <transition> per event and guard that take it, all with the move's id.
      if (known) {
        expect(known.source, id).toBe(parent!.attributes.id!);
        expect(known.target, id).toBe(element.attributes.target ?? null);
        known.events.push(element.attributes.event!);
        known.conds.push(element.attributes.cond!);
        continue;
      }
      // Claim numbers are also kept readable in comments with the claim's subject.
      expect(element.comments.map((comment) => Number(/^claim (\d+):/.exec(comment)?.[1]))).toEqual(claims);
      transitions.set(id, {
        events: [element.attributes.event!],
        conds: [element.attributes.cond!],
        source: parent!.attributes.id!,
        target: element.attributes.target ?? null,
        claims,
        beyond: element.attributes['ts:beyond'] ?? null,
        actions: element.children.filter((child) => child.name === 'ts:action').map((child) => child.attributes.name!),
      });
    }
    expect([...states].sort()).toEqual(['system.operating', ...chart.regions.flatMap((region) => region.states.map((state) => state.id))].sort());
    const definitions = transitionDefinitions(replicationMachine);
    expect([...transitions.keys()].sort()).toEqual(definitions.map((info) => info.id).sort());
    for (const info of definitions) {
      const read = transitions.get(info.id)!;
      expect(read.source, info.id).toBe(info.source);
      expect(read.target, info.id).toBe(info.target);
      expect([...new Set(read.events)].join('|'), info.id).toBe(info.event);
      expect(read.claims, info.id).toEqual(info.meta!.claims);
      expect(read.beyond, info.id).toBe(info.meta!.beyondClaims ?? null);
      if (info.definition) expect(read.conds[0]!.startsWith(`${info.guard!.replace(/\(.*$/, '')}(`), info.id).toBe(true);
    }
    expect(transitions.get('FAILOVER#3')!.actions).toEqual(['failover']);
    expect(transitions.get('site1.primary -> failed')!.conds).toEqual(['siteFails({ site: 1 })']);
    expect(transitions.get('site2.secondary -> primary')!.events).toEqual(['FAILOVER']);
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

  it('imported from its text alone, steps a failover story region by region as the model does', () => {
    const text = statelyModule(replicationMachine);
    // What a user does with the file: evaluate it with xstate's createMachine, then give the named guards
    // and actions their code (Stately Studio keeps them as names).
    const body = text.replace("import { createMachine } from 'xstate';", '').replace('export const machine =', 'return');
    const imported = (new Function('createMachine', body) as (create: typeof createMachine) => AnyStateMachine)(createMachine).provide({
      guards: replicationMachine.implementations.guards,
      actions: replicationMachine.implementations.actions,
    } as never);
    const story: ModelEvent[] = [
      { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 },
      { type: 'PULL_JOURNAL' },
      { type: 'RESTORE_JOURNAL' },
      { type: 'FAIL_SITE', site: 1 },
      { type: 'FAILOVER', force: false },
      // Site 2 learns that site 3 restored entry 1 and trims it, so its one-entry journal has room.
      { type: 'PULL_JOURNAL' },
      { type: 'HOST_WRITE', host: 2, volume: 1, block: 0, data: 2 },
      { type: 'RECOVER_SITE', site: 1 },
      { type: 'RESYNC_SITE', site: 1 },
      { type: 'PULL_JOURNAL' },
      { type: 'RESTORE_JOURNAL' },
      { type: 'FAILBACK' },
    ];
    let [mine] = initialTransition(imported);
    let [model] = initialTransition(replicationMachine, defaultParams);
    const seen: Record<string, string>[] = [];
    for (const event of story) {
      [mine] = transition(imported, mine, event);
      [model] = transition(replicationMachine, model, event);
      expect(mine.value, formatEvent(event)).toEqual(model.value);
      expect(mine.value, formatEvent(event)).toMatchObject(regionStatesOf(model.context));
      seen.push(mine.value as Record<string, string>);
    }
    expect(seen[3]).toMatchObject({ site1: 'failed', site2: 'secondary', site3: 'awaitingJudgement' });
    expect(seen[4]).toMatchObject({ site2: 'primary', site3: 'copyingFromSite2', syncPair: 'suspended' });
    expect(seen[8]).toMatchObject({ site1: 'secondary', site2: 'primary', syncPair: 'reversed' });
    expect(seen[11]).toMatchObject({ site1: 'primary', site2: 'secondary', site3: 'copyingFromSite1', syncPair: 'inSync' });
  });
});
