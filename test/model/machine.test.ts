import { describe, expect, it } from 'vitest';
import { createMachine, initialTransition, transition } from 'xstate';
import { checkChartStructure } from '../../model/properties.ts';
import { claimCount } from '../../model/claims.ts';
import { replicationMachine } from '../../model/machine.ts';
import { regionNames, regionStateNames } from '../../model/regions.ts';
import { claimTraceability, transitionDefinitions } from '../../model/traceability.ts';

/** Finds every function inside a configuration object, with its path. */
function functionsIn(value: unknown, path: string, found: string[]): string[] {
  if (typeof value === 'function') found.push(path);
  else if (Array.isArray(value)) value.forEach((item, i) => functionsIn(item, `${path}[${i}]`, found));
  else if (value && typeof value === 'object') for (const [key, item] of Object.entries(value)) functionsIn(item, `${path}.${key}`, found);
  return found;
}

describe('the statechart', () => {
  it('is plain data: every guard and action is named, only the context factory is code', () => {
    expect(functionsIn(replicationMachine.config, 'config', [])).toEqual(['config.context']);
  });

  it('has the system region (the event variants) and one region per storage system and per pair, with the states the context can name', () => {
    expect(replicationMachine.root.type).toBe('parallel');
    expect(Object.keys(replicationMachine.root.states)).toEqual(['system', ...regionNames]);
    for (const region of regionNames) {
      expect(Object.keys(replicationMachine.root.states[region]!.states).sort(), region).toEqual([...regionStateNames[region]].sort());
    }
    expect(replicationMachine.root.transitions.size).toBe(0);
  });

  it('moves the regions on the events themselves: FAILOVER takes site 2 from secondary to primary and site 3 to its verdict', () => {
    const site2 = replicationMachine.root.states.site2!.states.secondary!;
    expect(site2.transitions.get('FAILOVER')?.map((t) => t.target?.[0]?.key)).toEqual(['primary']);
    const site3 = replicationMachine.root.states.site3!.states.copyingFromSite1!;
    expect(site3.transitions.get('FAILOVER')?.map((t) => t.target?.[0]?.key)).toEqual(['copyingFromSite2', 'deltaResync', 'needsFullCopy', 'awaitingJudgement']);
    for (const region of regionNames) {
      for (const state of Object.values(replicationMachine.root.states[region]!.states)) expect(state.always ?? [], state.id).toEqual([]);
    }
  });

  it('tags every event variant with claims or a beyond-claims product behaviour, and every move with a description', () => {
    const definitions = transitionDefinitions(replicationMachine);
    expect(definitions.length).toBeGreaterThan(60);
    for (const info of definitions) {
      expect(info.meta, info.id).toBeDefined();
      expect(info.meta!.description.length, info.id).toBeGreaterThan(5);
      if (info.definition) expect(info.meta!.claims.length > 0 || (info.meta!.beyondClaims ?? '').length > 0, info.id).toBe(true);
      else expect(info.meta!.claims, `${info.id}: a region move's claims are learned from the variants that take it`).toEqual([]);
      for (const claim of info.meta!.claims) expect(claim >= 1 && claim <= claimCount, `${info.id} claim ${claim}`).toBe(true);
      expect(info.guard, info.id).not.toBeNull();
    }
  });

  it('cites claim 16 (the six storage areas) where the data flows through them, and claim 3 only where site 2 confirms a write', () => {
    const definitions = transitionDefinitions(replicationMachine).filter((info) => info.definition);
    const citing = (claim: number): string[] => definitions.filter((info) => info.meta!.claims.includes(claim)).map((info) => info.guard!);
    expect(citing(16)).toEqual(['hostWriteInSync', 'pullFromSite1', 'restoreAccepted']);
    expect(citing(3)).toEqual(['hostWriteInSync']);
  });

  it('traces each of the 40 claims to at least one transition', () => {
    const table = claimTraceability(replicationMachine);
    expect(table).toHaveLength(40);
    const untraced = table.filter((row) => row.transitions.length === 0).map((row) => row.claim.number);
    expect(untraced).toEqual([]);
    // Claim 35 depends on claim 34 (its text says "according to claim 35").
    expect(table[34]!.claim.dependsOn).toBe(34);
  });

  it('walks the patent story: writes, failover, reversed sync, failback', () => {
    let [snapshot] = initialTransition(replicationMachine, { journalEntriesMax: 4, writesMax: 4 });
    const step = (event: Parameters<typeof transition<typeof replicationMachine>>[2]) => {
      [snapshot] = transition(replicationMachine, snapshot, event);
      return snapshot.value as unknown as Record<string, string>;
    };
    step({ type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 });
    expect(snapshot.context.sites[2].applied).toHaveLength(1);
    step({ type: 'PULL_JOURNAL' });
    step({ type: 'RESTORE_JOURNAL' });
    expect(step({ type: 'FAIL_SITE', site: 1 })).toMatchObject({ site1: 'failed', site2: 'secondary', site3: 'awaitingJudgement', syncPair: 'suspended', asyncPair: 'suspended' });
    expect(step({ type: 'FAILOVER', force: false })).toMatchObject({ site2: 'primary', site3: 'copyingFromSite2', asyncPair: 'copying' });
    expect(snapshot.context.judgement?.verdict).toBe('noUpdateRequired');
    step({ type: 'HOST_WRITE', host: 2, volume: 1, block: 0, data: 2 });
    expect(snapshot.context.sites[2].applied.map((e) => e.u)).toEqual([1, 2]);
    expect(step({ type: 'RECOVER_SITE', site: 1 })).toMatchObject({ site1: 'resyncing', syncPair: 'resyncing' });
    expect(step({ type: 'RESYNC_SITE', site: 1 })).toMatchObject({ site1: 'secondary', site2: 'primary', syncPair: 'reversed' });
    step({ type: 'HOST_WRITE', host: 2, volume: 0, block: 0, data: 3 });
    expect(snapshot.context.sites[1].applied.map((e) => e.u)).toEqual([1, 2, 3]);
    step({ type: 'PULL_JOURNAL' });
    // Site 3 pulled entry 1 only (batches of one): the failback judges it against site 1's journal, which covers it.
    expect(step({ type: 'FAILBACK' })).toMatchObject({ site1: 'primary', site2: 'secondary', site3: 'deltaResync', syncPair: 'inSync' });
    expect(snapshot.context.primary).toBe(1);
  });

  it('refuses what the semantics refuse: a host 2 write while site 1 is primary changes nothing', () => {
    const [initial] = initialTransition(replicationMachine, {});
    const [next] = transition(replicationMachine, initial, { type: 'HOST_WRITE', host: 2, volume: 0, block: 0, data: 1 });
    expect(next).toBe(initial);
    expect(initial.can({ type: 'FAILBACK' })).toBe(false);
    expect(initial.can({ type: 'FAILOVER', force: false })).toBe(false);
  });
});

describe('the chart structure check (MIRROR)', () => {
  const rebuild = (edit: (config: { states: Record<string, { states: Record<string, Record<string, unknown>> }> }) => void) => {
    // The context factory is the configuration's only function: set it aside while cloning the rest.
    const { context, ...rest } = replicationMachine.config as { context: unknown };
    const config = structuredClone(rest) as { states: Record<string, { states: Record<string, Record<string, unknown>> }> };
    edit(config);
    return createMachine({ ...config, context } as never, replicationMachine.implementations as never);
  };

  it('passes the specification', () => {
    expect(checkChartStructure(replicationMachine)).toEqual([]);
  });

  it('rejects an eventless region move and a region whose states differ from those the context names', () => {
    const eventless = rebuild((config) => {
      config.states.site1!.states.primary!.always = [{ target: 'failed' }];
    });
    expect(checkChartStructure(eventless).map((v) => v.message)).toEqual(['region site1: primary moves without an event']);
    const missing = rebuild((config) => {
      delete config.states.site3!.states.awaitingJudgement;
      for (const state of Object.values(config.states.site3!.states)) {
        const on = state.on as Record<string, { target: string }[]>;
        for (const event of Object.keys(on)) on[event] = on[event]!.filter((move) => move.target !== 'awaitingJudgement');
      }
    });
    expect(checkChartStructure(missing).map((v) => v.message)[0]).toMatch(/^region site3 has states .* the context names .*awaitingJudgement/);
  });
});
