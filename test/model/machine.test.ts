import { describe, expect, it } from 'vitest';
import { initialTransition, transition } from 'xstate';
import { claimCount } from '../../model/claims.ts';
import { replicationMachine } from '../../model/machine.ts';
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

  it('has one parallel region per storage system and per pair', () => {
    expect(replicationMachine.root.type).toBe('parallel');
    expect(Object.keys(replicationMachine.root.states)).toEqual(['site1', 'site2', 'site3', 'syncPair', 'asyncPair', 'standbyPair']);
    for (const site of ['site1', 'site2']) {
      expect(Object.keys(replicationMachine.root.states[site]!.states).sort()).toEqual(['failed', 'normal', 'resyncing', 'syncReversed']);
    }
    expect(Object.keys(replicationMachine.root.states.syncPair!.states).sort()).toEqual(['inSync', 'resyncing', 'reversed', 'suspended']);
    expect(Object.keys(replicationMachine.root.states.asyncPair!.states).sort()).toEqual(['copying', 'deltaResync', 'fullCopy', 'suspended', 'suspendedOverflow']);
    expect(Object.keys(replicationMachine.root.states.standbyPair!.states).sort()).toEqual(['hold', 'holdError', 'none']);
  });

  it('tags every transition with claims or a beyond-claims product behaviour, and a description', () => {
    const definitions = transitionDefinitions(replicationMachine);
    expect(definitions.length).toBeGreaterThan(60);
    for (const info of definitions) {
      expect(info.meta, info.id).toBeDefined();
      expect(info.meta!.description.length, info.id).toBeGreaterThan(5);
      expect(info.meta!.claims.length > 0 || (info.meta!.beyondClaims ?? '').length > 0, info.id).toBe(true);
      for (const claim of info.meta!.claims) expect(claim >= 1 && claim <= claimCount, `${info.id} claim ${claim}`).toBe(true);
      expect(info.guard, info.id).not.toBeNull();
    }
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
    expect(step({ type: 'FAIL_SITE', site: 1 })).toMatchObject({ site1: 'failed', syncPair: 'suspended', asyncPair: 'suspended' });
    expect(step({ type: 'FAILOVER', force: false })).toMatchObject({ site3: 'normal', asyncPair: 'copying' });
    expect(snapshot.context.judgement?.verdict).toBe('noUpdateRequired');
    step({ type: 'HOST_WRITE', host: 2, volume: 1, block: 0, data: 2 });
    expect(snapshot.context.sites[2].applied.map((e) => e.u)).toEqual([1, 2]);
    expect(step({ type: 'RECOVER_SITE', site: 1 })).toMatchObject({ site1: 'resyncing', syncPair: 'resyncing' });
    expect(step({ type: 'RESYNC_SITE', site: 1 })).toMatchObject({ site1: 'syncReversed', site2: 'syncReversed', syncPair: 'reversed' });
    step({ type: 'HOST_WRITE', host: 2, volume: 0, block: 0, data: 3 });
    expect(snapshot.context.sites[1].applied.map((e) => e.u)).toEqual([1, 2, 3]);
    step({ type: 'PULL_JOURNAL' });
    expect(step({ type: 'FAILBACK' })).toMatchObject({ site1: 'normal', site2: 'normal', syncPair: 'inSync' });
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
