/// <reference lib="dom" />
/**
 * The review page's simulator, in the browser: the same statechart as the specification (bundled from
 * `model/`), stepped by clicking the enabled events; each site's mode, journal and volumes shown from the
 * model's observation; the current state highlighted on the diagrams. It also loads a counterexample (a
 * divergence of the conformance run embedded in the page, one read from a `conformance.json` chosen on
 * disk, an exploration counterexample, or events pasted one per line) and steps through it.
 */
import { parseEvent, type ModelEvent } from '../../model/events.ts';
import type { FencePolicy, ModelParams } from '../../model/params.ts';
import { simulatorDataId, type SimulatorData, type SimulatorTrace } from './defaults.ts';
import { highlightStep, transitionElements } from './highlight.ts';
import { EventRefusedError, SimulatorSession } from './session.ts';
import { pairStateTable } from './pair-states.ts';
import { topologySvg } from './topology.ts';
import { escapeHtml, eventsPanel, pairsCard, siteCard, stepLog } from './view.ts';
import type { ModelContext } from '../../model/state.ts';

/** The most events a pasted trace may hold. */
const pastedEventsMax = 1_000;

const byId = <T extends HTMLElement>(id: string): T => {
  const element = document.getElementById(id);
  if (!element) throw new Error(`the page has no #${id}`);
  return element as T;
};

const data = JSON.parse(byId(simulatorDataId).textContent ?? '{}') as SimulatorData;
let session = new SimulatorSession(data.params);
let message = '';
/** The loaded trace and how many of its events have been applied. */
let player: { trace: SimulatorTrace; position: number } | null = null;
const traces: SimulatorTrace[] = [...data.traces];
/** The step shown, when the reviewer went back to an earlier one (null: the latest). */
let viewing: number | null = null;

/** The parts of the simulator that show a model state, each element of them keyed by `data-key`. */
const stateViews: [string, (context: ModelContext) => string][] = [
  ['sim-sites', (context) => [siteCard(context, 1), siteCard(context, 2), siteCard(context, 3), pairsCard(context)].join('')],
  ['sim-topology', topologySvg],
  ['sim-pairs', pairStateTable],
];

/** The keyed elements of a view's HTML, by key, as their HTML (a detached template, never in the page). */
function keyed(html: string): Map<string, string> {
  const template = document.createElement('template');
  template.innerHTML = html;
  return new Map([...template.content.querySelectorAll<HTMLElement>('[data-key]')].map((element) => [element.dataset.key!, element.outerHTML]));
}

function render(): void {
  const shown = viewing ?? session.history.length - 1;
  const step = session.history[shown]!;
  const before = shown > 0 ? session.history[shown - 1]!.snapshot.context : null;
  const context = step.snapshot.context;
  for (const [id, view] of stateViews) {
    const html = view(context);
    byId(id).innerHTML = html;
    // What changed at this step: every keyed element whose HTML differs from the step before.
    if (!before) continue;
    const previous = keyed(view(before));
    for (const element of byId(id).querySelectorAll<HTMLElement | SVGElement>('[data-key]')) {
      if (previous.get(element.dataset.key!) !== element.outerHTML) element.classList.add('changed');
    }
  }
  byId('sim-events').innerHTML = eventsPanel(session.candidates(shown));
  byId('sim-log').innerHTML = stepLog(session.history, shown);
  const banner = byId('sim-viewing');
  banner.hidden = viewing === null;
  banner.innerHTML = viewing === null ? '' : `showing step ${shown} of ${session.history.length - 1}: an event taken now drops the later steps. <button type="button" id="sim-latest">back to the latest step</button>`;
  byId('sim-message').textContent = message;
  byId('sim-message').hidden = message === '';
  byId<HTMLButtonElement>('sim-back').disabled = session.history.length <= 1;
  renderTrace();
  highlightStep(step, data.diagramPrefixes);
}

function renderTrace(): void {
  const select = byId<HTMLSelectElement>('trace-select');
  if (select.options.length !== traces.length + 1) {
    select.innerHTML = `<option value="">${traces.length ? 'choose a trace…' : 'no trace to load'}</option>${traces
      .map((trace, i) => `<option value="${i}">${escapeHtml(trace.title)}</option>`)
      .join('')}`;
  }
  const panel = byId('trace-steps');
  byId<HTMLButtonElement>('trace-next').disabled = !player || player.position >= player.trace.events.length;
  byId<HTMLButtonElement>('trace-run').disabled = byId<HTMLButtonElement>('trace-next').disabled;
  byId('trace-run').textContent = player && player.trace.step !== null ? 'run to the divergence' : 'run to the end';
  if (!player) {
    panel.innerHTML = '';
    return;
  }
  const { trace, position } = player;
  panel.innerHTML = `<p class="summary"><b>${escapeHtml(trace.title)}</b> (${trace.fencePolicy}): ${escapeHtml(trace.summary)}</p><ol>${trace.events
    .map((event, i) => {
      const state = i < position ? 'done' : i === position ? 'next' : '';
      const bad = trace.step === i ? ' diverged' : '';
      return `<li class="${state}${bad}">${escapeHtml(event)}</li>`;
    })
    .join('')}</ol>`;
}

function send(event: ModelEvent): boolean {
  if (viewing !== null) {
    session.truncate(viewing + 1);
    if (player && player.position > viewing) player.position = viewing;
    viewing = null;
  }
  try {
    session.send(event);
    message = '';
    return true;
  } catch (error) {
    if (!(error instanceof EventRefusedError)) throw error;
    message = error.message;
    return false;
  }
}

function formParams(): Partial<ModelParams> {
  const form = byId<HTMLFormElement>('sim-params');
  const value = (name: string): number => Number((form.elements.namedItem(name) as HTMLInputElement).value);
  return {
    ...data.params,
    volumeCount: value('volumeCount'),
    blocksPerVolume: value('blocksPerVolume'),
    journalEntriesMax: value('journalEntriesMax'),
    pullBatchEntriesMax: value('pullBatchEntriesMax'),
    fencePolicy: (form.elements.namedItem('fencePolicy') as HTMLSelectElement).value as FencePolicy,
  };
}

function fillForm(params: ModelParams): void {
  const form = byId<HTMLFormElement>('sim-params');
  for (const name of ['volumeCount', 'blocksPerVolume', 'journalEntriesMax', 'pullBatchEntriesMax', 'fencePolicy'] as const) {
    (form.elements.namedItem(name) as HTMLInputElement).value = String(params[name]);
  }
}

function restart(params: Partial<ModelParams>): void {
  try {
    session = new SimulatorSession(params);
    message = '';
  } catch (error) {
    message = (error as Error).message;
  }
  fillForm(session.params);
}

function loadTrace(trace: SimulatorTrace): void {
  viewing = null;
  restart({ ...trace.params, fencePolicy: trace.fencePolicy });
  player = { trace, position: 0 };
}

function stepTrace(): boolean {
  if (!player || player.position >= player.trace.events.length) return false;
  let event: ModelEvent;
  try {
    event = parseEvent(player.trace.events[player.position]!);
  } catch (error) {
    message = (error as Error).message;
    return false;
  }
  if (!send(event)) return false;
  player.position++;
  return true;
}

function tracesFromReport(text: string, name: string): SimulatorTrace[] {
  const report = JSON.parse(text) as { params?: Record<string, unknown>; divergences?: { fencePolicy: FencePolicy; strategy: string; target: string; path: string[]; step: number; summary: string }[] };
  if (!Array.isArray(report.divergences)) throw new Error(`${name} has no divergences list`);
  const { fencePolicies: _policies, ...params } = report.params ?? {};
  return report.divergences.map((divergence, i) => ({
    key: `${name}-${i}`,
    title: `${name}: divergence ${i + 1} (${divergence.strategy} ${divergence.target})`,
    kind: 'divergence',
    fencePolicy: divergence.fencePolicy,
    params: params as Partial<ModelParams>,
    events: divergence.path,
    step: divergence.step,
    summary: divergence.summary,
  }));
}

/** Marks transition `id` on every diagram (`focus`), clearing the mark of any other. */
function focusTransition(id: string): void {
  for (const element of document.querySelectorAll('.focus')) element.classList.remove('focus');
  for (const prefix of data.diagramPrefixes) for (const element of transitionElements(prefix, id)) element.classList.add('focus');
}

function bind(): void {
  byId('sim-events').addEventListener('click', (click) => {
    const button = (click.target as HTMLElement).closest<HTMLButtonElement>('button[data-event]');
    if (!button) return;
    send(parseEvent(button.dataset.event!));
    render();
  });
  byId('sim-log').addEventListener('click', (click) => {
    const button = (click.target as HTMLElement).closest<HTMLButtonElement>('button[data-step]');
    if (!button) return;
    const index = Number(button.dataset.step);
    viewing = index >= session.history.length - 1 ? null : index;
    render();
  });
  byId('sim-viewing').addEventListener('click', (click) => {
    if (!(click.target as HTMLElement).closest('#sim-latest')) return;
    viewing = null;
    render();
  });
  byId('sim-back').addEventListener('click', () => {
    viewing = null;
    session.back();
    if (player && player.position > 0) player.position--;
    message = '';
    render();
  });
  byId('sim-reset').addEventListener('click', () => {
    player = null;
    viewing = null;
    restart(formParams());
    render();
  });
  byId<HTMLFormElement>('sim-params').addEventListener('submit', (submit) => {
    submit.preventDefault();
    player = null;
    restart(formParams());
    render();
  });
  byId('trace-load').addEventListener('click', () => {
    const index = byId<HTMLSelectElement>('trace-select').value;
    if (index === '') return;
    loadTrace(traces[Number(index)]!);
    render();
  });
  byId('trace-next').addEventListener('click', () => {
    stepTrace();
    render();
  });
  byId('trace-run').addEventListener('click', () => {
    // Up to and including the step that diverged (or to the end).
    const stop = player?.trace.step ?? Number.MAX_SAFE_INTEGER;
    while (player && player.position <= stop && stepTrace());
    render();
  });
  byId('trace-paste-load').addEventListener('click', () => {
    const lines = byId<HTMLTextAreaElement>('trace-paste')
      .value.split('\n')
      .map((line) => line.trim())
      .filter(Boolean)
      .slice(0, pastedEventsMax);
    loadTrace({ key: 'pasted', title: `pasted trace (${lines.length} events)`, kind: 'pasted', fencePolicy: formParams().fencePolicy ?? 'keepWriting', params: formParams(), events: lines, step: null, summary: 'events pasted by hand' });
    render();
  });
  byId<HTMLInputElement>('trace-file').addEventListener('change', async (change) => {
    const file = (change.target as HTMLInputElement).files?.[0];
    if (!file) return;
    try {
      const loaded = tracesFromReport(await file.text(), file.name);
      traces.push(...loaded);
      message = `${file.name}: ${loaded.length} divergence${loaded.length === 1 ? '' : 's'} added to the trace list`;
    } catch (error) {
      message = `${file.name}: ${(error as Error).message}`;
    }
    render();
  });
  document.addEventListener('click', (click) => {
    const chip = (click.target as HTMLElement).closest<HTMLElement>('[data-focus-transition]');
    if (!chip) return;
    focusTransition(chip.dataset.focusTransition!);
    byId('chart-view').scrollIntoView({ behavior: 'smooth', block: 'start' });
  });
  for (const button of document.querySelectorAll<HTMLButtonElement>('[data-load-trace]')) {
    button.addEventListener('click', () => {
      const index = traces.findIndex((trace) => trace.key === button.dataset.loadTrace);
      if (index < 0) return;
      loadTrace(traces[index]!);
      byId<HTMLSelectElement>('trace-select').value = String(index);
      // "Show me a path": step the whole path, then show its last transition on the chart.
      if (button.dataset.runTrace === 'end') while (stepTrace());
      render();
      if (button.dataset.showTransition) focusTransition(button.dataset.showTransition);
      byId('simulator').scrollIntoView({ behavior: 'smooth', block: 'start' });
    });
  }
  const zoom = byId('chart-zoom');
  zoom.addEventListener('click', () => {
    const view = byId('chart-view');
    view.classList.toggle('natural');
    zoom.textContent = view.classList.contains('natural') ? 'fit to width' : 'actual size';
  });
}

fillForm(session.params);
bind();
render();
document.documentElement.dataset.simulator = 'ready';
