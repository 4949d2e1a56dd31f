import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { formatEvent, type ModelEvent } from '../../model/events.ts';
import { observe } from '../../model/observe.ts';
import { validateParams } from '../../model/params.ts';
import { apply, check, journalOf } from '../../model/semantics.ts';
import { initialContext, type ModelContext } from '../../model/state.ts';
import type { ConformanceReport } from '../../review/conformance-report.ts';
import { writeReviewPage } from '../../review/page.ts';
import { simulatorParams } from '../../review/simulator/defaults.ts';
import { measureClips } from './page-fit.ts';

/** The browser: Debian's Chromium (test/setup/system-packages.ts makes sure it is there); never a download. */
const chromiumPath = '/usr/bin/chromium';
const chromiumArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];
/** Small exploration bounds: the page's P1-P7 table in about a second per fence policy. */
const exploreBounds = { volumeCount: 1, blocksPerVolume: 1, journalEntriesMax: 1, writesMax: 1, faultsMax: 1 };

/** Host 1 writes twice, site 3 pulls and restores, host 1 writes again, site 1 fails: failover with delta resync. */
const story: ModelEvent[] = [
  { type: 'HOST_WRITE', host: 1, volume: 0, block: 0, data: 1 },
  { type: 'HOST_WRITE', host: 1, volume: 1, block: 1, data: 2 },
  { type: 'PULL_JOURNAL' },
  { type: 'RESTORE_JOURNAL' },
  { type: 'HOST_WRITE', host: 1, volume: 0, block: 1, data: 3 },
  { type: 'FAIL_SITE', site: 1 },
  { type: 'FAILOVER', force: false },
  { type: 'DELTA_RESYNC' },
];

const work = mkdtempSync(join(tmpdir(), 'review-page-'));
let context: BrowserContext;

async function openPage(file: string): Promise<{ page: Page; requests: string[]; errors: string[] }> {
  const page = await context.newPage();
  const requests: string[] = [];
  const errors: string[] = [];
  page.on('request', (request) => {
    if (!request.url().startsWith('file://') && !request.url().startsWith('data:')) requests.push(request.url());
  });
  page.on('pageerror', (error) => errors.push(String(error)));
  // esbuild's keepNames wraps functions passed to page.evaluate in __name(); give the page a no-op one.
  await page.addInitScript('globalThis.__name = (f) => f');
  page.on('console', (message) => {
    if (message.type() === 'error') errors.push(message.text());
  });
  await page.goto(`file://${resolve(file)}`);
  await page.waitForSelector('html[data-simulator="ready"]', { timeout: 15_000 });
  return { page, requests, errors };
}

/** What a site card shows, read from the page. */
async function shownSite(page: Page, site: 1 | 2 | 3) {
  const card = page.locator(`#sim-sites [data-site="${site}"]`);
  return {
    mode: (await card.locator('[data-field="mode"]').textContent())?.trim(),
    journal: await card.locator('[data-field="journal"] li[data-u]').evaluateAll((items) => items.map((item) => Number(item.getAttribute('data-u')))),
    journalFirst: Number(await card.getAttribute('data-journal-first')),
    journalLast: Number(await card.getAttribute('data-journal-last')),
    digest: await card.getAttribute('data-digest'),
    digestShown: (await card.locator('[data-field="digest"]').textContent())?.trim(),
    last: Number((await card.locator('[data-field="last"]').textContent())?.trim()),
  };
}

/** What the model says the same card must show. */
function expectedSite(state: ModelContext, site: 1 | 2 | 3) {
  const seen = observe(state).sites[site];
  const entries = site === 3 ? state.sites[3].pending : journalOf(state.sites[site]);
  return {
    mode: seen.mode,
    journal: entries.map((entry) => entry.u),
    journalFirst: seen.journal.first,
    journalLast: seen.journal.last,
    digest: seen.volumeDigest,
    digestShown: seen.volumeDigest.slice(0, 16),
    last: seen.lastUpdateNumber,
  };
}

beforeAll(async () => {
  expect(existsSync(chromiumPath), `${chromiumPath} (Debian package chromium) is missing`).toBe(true);
  context = await chromium.launchPersistentContext(join(work, 'profile'), {
    executablePath: chromiumPath,
    args: chromiumArgs,
    viewport: { width: 1600, height: 1000 },
  });
});

afterAll(async () => {
  await context?.close();
  rmSync(work, { recursive: true, force: true });
});

describe('the spec review page, without a conformance run', () => {
  let file: string;
  beforeAll(async () => {
    const result = await writeReviewPage({ reportsDir: join(work, 'bare'), conformanceFile: join(work, 'none.json'), exploreFile: join(work, 'none.json'), exploreBounds, pathBounds: exploreBounds });
    file = result.file;
    console.log(`review page built in ${result.ms.toFixed(0)} ms; whole chart rendered in ${result.statechartMs.toFixed(1)} ms (${result.statechartWarmMs.toFixed(1)} ms warm)`);
  });

  it('is one self-contained file with the diagrams written beside it', () => {
    const html = readFileSync(file, 'utf8');
    expect(html).not.toMatch(/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\/(?!www\.w3\.org)/);
    for (const name of ['statechart.svg', 'statechart.dot', 'statechart.scxml', 'site1.svg', 'site2.svg', 'site3.svg']) {
      expect(existsSync(join(work, 'bare', name)), name).toBe(true);
    }
  });

  it('shows 40 claim rows, says there is no conformance run, and runs the failover story in the simulator', async () => {
    const { page, requests, errors } = await openPage(file);
    expect(await page.locator('[data-claim]').count()).toBe(40);
    expect(await page.locator('tr[data-claim="20"] td').nth(1).textContent()).toContain("reads from site 2's journal");
    expect(await page.locator('[data-claim][data-result="no conformance run"]').count()).toBe(40);
    expect(await page.locator('header .verdicts').textContent()).toContain('no conformance run yet');
    expect(await page.locator('[data-property]').count()).toBe(8);
    expect(await page.locator('#property-P5').textContent()).toContain('holds (keepWriting');

    let state = initialContext(validateParams(simulatorParams));
    for (const site of [1, 2, 3] as const) expect(await shownSite(page, site), `site ${site} at start`).toEqual(expectedSite(state, site));
    for (const event of story) {
      expect(check(state, event), formatEvent(event)).toBeNull();
      await page.click(`#sim-events button[data-event="${formatEvent(event)}"]`);
      state = apply(state, event);
      for (const site of [1, 2, 3] as const) expect(await shownSite(page, site), `site ${site} after ${formatEvent(event)}`).toEqual(expectedSite(state, site));
      if (event.type === 'FAILOVER') {
        // The judge: site 2's journal covers site 3, so a delta resync (claims 18-20).
        expect(observe(state).asyncPair.state).toBe('deltaResync');
        expect(await page.getAttribute('#sim-sites .pairs', 'data-async-pair')).toBe('deltaResync');
        expect(await page.locator('#sim-sites [data-field="judgement"]').textContent()).toContain('deltaResync');
      }
    }
    // After the delta resync: site 2 primary for host 2, site 3 holds u3 from site 2's journal in its own journal
    // (claim 20; site 2 keeps u3 too: it trims only what site 3 restored, u1-u2), site 1 failed with its journal
    // as it was.
    expect(await shownSite(page, 1)).toMatchObject({ mode: 'failed', journal: [1, 2, 3] });
    expect(await shownSite(page, 2)).toMatchObject({ mode: 'normal', journal: [3] });
    expect(await shownSite(page, 3)).toMatchObject({ mode: 'normal', last: 2, journal: [3], digest: observe(state).sites[3].volumeDigest });
    expect(await page.getAttribute('#sim-sites .pairs', 'data-async-pair')).toBe('copying');
    // The chart shows the current state and the transition just taken.
    expect(await page.getAttribute('[id="chart-state-asyncPair.copying"]', 'class')).toContain('active');
    expect(await page.getAttribute('[id="chart-state-site1.failed"]', 'class')).toContain('active');
    expect(await page.getAttribute('[id="chart-a_tr-DELTA_RESYNC-0"]', 'class')).toContain('taken');
    expect(await page.getAttribute('[id="chart-tr-asyncPair.deltaResync--copying"]', 'class')).toContain('taken');
    // HOST_WRITE for host 1 is no longer offered: site 1 is failed and site 2 is the primary (P4).
    expect(await page.locator('#sim-events button[data-event^="HOST_WRITE host=1"]').count()).toBe(0);
    expect(await page.locator('#sim-events button[data-event^="HOST_WRITE host=2"]').count()).toBeGreaterThan(0);

    // The pair states and the topology after the failover with delta resync: site 2 took over (SSWS), site 1 is
    // failed, site 3 copies from site 2.
    expect(await page.locator('#sim-pairs tr[data-pair]').evaluateAll((rows) => rows.map((row) => `${row.getAttribute('data-pair')} ${row.getAttribute('data-pvol')}/${row.getAttribute('data-svol')}`))).toEqual([
      'sync SSWS/unknown',
      'async PAIR/PAIR',
      'standby unknown/SMPL',
    ]);
    expect(await page.getAttribute('#sim-topology [data-link="2-3"]', 'data-carries')).toBe('async');
    expect(await page.getAttribute('#sim-topology [data-link="1-2"]', 'data-carries')).toBe('none');
    expect(await page.getAttribute('#sim-topology [data-site="1"]', 'data-failed')).toBe('true');
    expect(await page.getAttribute('#sim-topology [data-site="2"]', 'data-primary')).toBe('true');

    // Site 3's restore writes u3 into its volumes: caught up with site 2.
    await page.click('#sim-events button[data-event="RESTORE_JOURNAL"]');
    state = apply(state, { type: 'RESTORE_JOURNAL' });
    expect(await shownSite(page, 3)).toMatchObject({ mode: 'normal', last: 3, journal: [], digest: observe(state).sites[2].volumeDigest });

    mkdirSync('reports', { recursive: true });
    await page.screenshot({ path: 'reports/review-screenshot.png' });
    expect(requests).toEqual([]);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('shows each claim in its words with the storage areas named, and the bounds of every state count', async () => {
    const { page, errors } = await openPage(file);
    const claim20 = page.locator('tr[data-claim="20"] td.claim-text');
    expect(await claim20.textContent()).toContain('fourth storage area [site 2 journal]');
    expect(await claim20.textContent()).toContain('fifth storage area [site 3 journal]');
    expect(await page.locator('tr[data-claim] td.claim-text').count()).toBe(40);
    // Claims 9, 24, 38 ("at specified time intervals"): what stands for the interval in a model without a clock.
    expect(await page.locator('tr[data-claim] [data-field="interval"]').evaluateAll((lines) => lines.map((line) => line.closest('tr')!.getAttribute('data-claim')))).toEqual(['9', '24', '38']);
    for (const [claim, source] of [['9', 'site 1 is the source'], ['24', 'site 2 is the source after the failover'], ['38', 'sync pair reversed']]) {
      const line = await page.locator(`tr[data-claim="${claim}"] [data-field="interval"]`).textContent();
      expect(line, claim).toMatch(/^What stands for the interval: PULL_JOURNAL while /);
      expect(line, claim).toContain(source);
      expect(line, claim).toContain('every interleaving');
    }
    expect(await page.locator('tr[data-area-row]').evaluateAll((rows) => rows.map((row) => row.children[2]!.textContent))).toEqual([
      'site 1 volumes',
      'site 1 journal',
      'site 2 volumes',
      'site 2 journal',
      'site 3 journal',
      'site 3 volumes',
    ]);
    expect(await page.locator('header [data-verdict="properties"]').textContent()).toMatch(/P1-P7, P9 hold in [\d,]+ states \(bounds: 1 volume x 1 block, journal 1, pull batch 1, <= 1 writes, <= 1 faults; fence policies keepWriting and refuse\)/);
    expect(await page.locator('#properties .ok [data-bounds]').count()).toBe(16);
    expect(await page.locator('#several-volumes-note').textContent()).toContain('claims 12, 13, 14');
    expect(await page.locator('tr[data-claim="13"] .bounds-note').count()).toBe(1);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('marks what changed at each step, shows any earlier step in one click, and shows a path to a claim\'s transition', async () => {
    const { page, errors } = await openPage(file);
    const changed = () => page.locator('#simulator .changed[data-key]').evaluateAll((elements) => elements.map((element) => element.getAttribute('data-key')).sort());
    expect(await changed()).toEqual([]);
    let state = initialContext(validateParams(simulatorParams));
    const states = [state];
    for (const event of story.slice(0, 6)) {
      await page.click(`#sim-events button[data-event="${formatEvent(event)}"]`);
      state = apply(state, event);
      states.push(state);
    }
    // The last step was FAIL_SITE site=1: site 1's mode, the pairs and the links changed; site 3's volumes did not.
    const marks = await changed();
    expect(marks).toEqual(expect.arrayContaining(['site1-mode', 'site1-accepts', 'pair-sync-pvol', 'topology-site-1', 'topology-link-1-2', 'topology-host-1']));
    expect(marks).not.toContain('site3-volumes');
    expect(marks).not.toContain('site2-journal');
    // One click on step 2 shows the state after two writes, with what step 2 changed.
    await page.click('#sim-log button[data-step="2"]');
    expect(await page.locator('#sim-viewing').isVisible()).toBe(true);
    for (const site of [1, 2, 3] as const) expect(await shownSite(page, site), `site ${site} at step 2`).toEqual(expectedSite(states[2]!, site));
    expect(await changed()).toEqual(expect.arrayContaining(['site1-journal', 'site2-journal', 'site1-last']));
    expect(await page.locator('#sim-log li.viewing').getAttribute('data-step')).toBe('2');
    await page.click('#sim-latest');
    for (const site of [1, 2, 3] as const) expect(await shownSite(page, site), `site ${site} back at the latest`).toEqual(expectedSite(states[6]!, site));

    // "Show me a path" from claim 20's row: the simulator steps a shortest path whose last step takes the transition.
    const button = page.locator('tr[data-claim="20"] button.path').first();
    const transition = (await button.getAttribute('data-show-transition'))!;
    await button.click();
    const stepsDone = await page.locator('#trace-steps li.done').count();
    expect(stepsDone).toBeGreaterThan(0);
    expect(await page.locator('#trace-steps li').count()).toBe(stepsDone);
    expect(await page.locator('#sim-log li[data-step]').count()).toBe(stepsDone + 1);
    expect(await page.locator('#sim-log li[data-step]').first().textContent()).toContain(transition);
    expect(await page.locator('#chart-view .focus').count()).toBeGreaterThan(0);
    expect(errors).toEqual([]);
    await page.close();
  });

  it('clips no table cell and no diagram label at 1,280 and 1,920 px, even in a font wider than Graphviz assumed; the claims table fits its card at 1,400 px', async () => {
    const { page, errors } = await openPage(file);
    // Every region's figure shown at once, so all of them are measured; the simulator after a failover story,
    // so its tables and figure hold a state worth looking at.
    await page.addStyleTag({ content: '.region-tabs > figure { display: block !important; }' });
    await page.click('button[data-load-trace="story-failover-delta-resync"]');
    await page.click('#trace-run');
    for (const width of [1280, 1920]) {
      await page.setViewportSize({ width, height: 1000 });
      const measured = await page.evaluate(measureClips, 1);
      console.log(`${width} px: ${measured.cells} table cells and ${measured.texts} diagram labels measured, ${measured.clips.length} clipped`);
      expect(measured.cells).toBeGreaterThan(400);
      expect(measured.texts).toBeGreaterThan(300);
      expect(measured.clips, `at ${width} px`).toEqual([]);
      for (const [section, name] of [['simulator', `review-${width}.png`], ['claims', `review-${width}-claims.png`]] as const) {
        await page.evaluate((id) => document.getElementById(id)!.scrollIntoView({ block: 'start' }), section);
        await page.screenshot({ path: `reports/${name}` });
      }
    }
    // DejaVu Sans is about 15% wider than the Helvetica metrics Graphviz sizes its boxes with: a machine without a
    // Helvetica-compatible font draws it so, and the texts still fit their boxes.
    await page.addStyleTag({ content: 'svg text { font-family: "DejaVu Sans" !important; }' });
    for (const width of [1280, 1920]) {
      await page.setViewportSize({ width, height: 1000 });
      const measured = await page.evaluate(measureClips, 1);
      expect(measured.clips, `at ${width} px in DejaVu Sans`).toEqual([]);
    }
    await page.setViewportSize({ width: 1400, height: 1000 });
    const fit = await page.evaluate(() => {
      const card = document.getElementById('claims')!;
      const table = card.querySelector('table.claims-table')!;
      return { overflow: card.scrollWidth - card.clientWidth, tableRight: table.getBoundingClientRect().right, cardRight: card.getBoundingClientRect().right };
    });
    expect(fit.overflow).toBeLessThanOrEqual(0);
    expect(fit.tableRight).toBeLessThanOrEqual(fit.cardRight);
    expect(errors).toEqual([]);
    await page.close();
  });
});

describe('the spec review page, with a conformance report holding a divergence', () => {
  let file: string;
  const divergencePath = story.slice(0, 7).map(formatEvent);

  beforeAll(async () => {
    const { fencePolicy: _policy, ...params } = validateParams(simulatorParams);
    const figure = (total: number, missing: string[] = []) => ({ covered: total - missing.length, total, missing, unreachable: [] });
    const report: ConformanceReport = {
      seed: 7,
      params: { ...params, fencePolicies: ['keepWriting'] },
      paths: 2,
      steps: 12,
      coverage: { states: figure(23), transitions: figure(85, ['FAILBACK#2']), graphEdges: figure(10), transitionPairs: figure(10), guards: figure(10), claims: figure(40) },
      divergences: [
        {
          fencePolicy: 'keepWriting',
          strategy: 'transition',
          target: 'FAILOVER#3',
          seed: null,
          replayPath: null,
          path: divergencePath,
          step: 6,
          summary: 'after FAILOVER force=false:\n  asyncPair.state: expected "deltaResync", actual "fullCopy"',
          expected: {},
          actual: {},
        },
      ],
      faults: { total: 1, caught: 1, list: [{ name: 'skip-journal', description: 'site 2 forgets to journal', caught: true, strategy: 'transition', summary: 'caught' }] },
      mustHappen: [{ name: 'a delta resync', transitions: ['DELTA_RESYNC#0'], happened: true }],
      pathOutcomes: [
        { fencePolicy: 'keepWriting', strategy: 'transition', target: 'FAILOVER#3', events: 7, passed: false },
        { fencePolicy: 'keepWriting', strategy: 'transition', target: 'HOST_WRITE#0', events: 1, passed: true },
      ],
      exploration: { states: 100, transitions: 300, violations: [], complete: true, ms: 5 },
      ms: 50,
      passed: false,
    };
    mkdirSync(join(work, 'run'), { recursive: true });
    writeFileSync(join(work, 'run', 'conformance.json'), JSON.stringify(report));
    file = (await writeReviewPage({ reportsDir: join(work, 'run'), exploreBounds: null, pathBounds: null })).file;
  });

  it('marks the claims of the diverging step failed, the others passed, and steps through the counterexample', async () => {
    const { page, errors } = await openPage(file);
    expect(await page.locator('[data-claim]').count()).toBe(40);
    // FAILOVER#3 (judge: delta resync) implements claims 16, 18, 19, 20, 29, 30: the divergence is at that step.
    for (const claim of [19, 20]) expect(await page.getAttribute(`tr[data-claim="${claim}"]`, 'data-result'), `claim ${claim}`).toBe('failed');
    expect(await page.getAttribute('tr[data-claim="2"]', 'data-result')).toBe('passed');
    expect(await page.locator('header .verdicts').textContent()).toContain('conformance FAILED');

    await page.click('button[data-load-trace="divergence-0"]');
    await page.click('#trace-run');
    expect(await page.locator('#trace-steps li.done').count()).toBe(7);
    expect(await page.locator('#trace-steps li.diverged').textContent()).toBe('FAILOVER force=false');
    expect(await page.getAttribute('#sim-sites .pairs', 'data-async-pair')).toBe('deltaResync');
    // Back one step: the trace position follows.
    await page.click('#sim-back');
    expect(await page.locator('#trace-steps li.done').count()).toBe(6);
    // A story runs to its end: after failback and delta resync, all three sites hold the same image (P6).
    await page.click('button[data-load-trace="story-failback"]');
    await page.click('#trace-run');
    const digests = await page.locator('#sim-sites [data-site]').evaluateAll((cards) => cards.map((card) => card.getAttribute('data-digest')));
    expect(new Set(digests).size).toBe(1);
    expect(await page.getAttribute('#sim-sites .pairs', 'data-sync-pair')).toBe('inSync');
    expect(errors).toEqual([]);
    await page.close();
  });
});
