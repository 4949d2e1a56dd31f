/// <reference lib="dom" />
/**
 * The fit check of the review page, run inside the page (Playwright's `page.evaluate`): every visible table
 * cell whose content is wider than its box (scrollWidth > clientWidth), and every visible SVG text whose
 * drawn box leaves the shape it labels (a state, a table cell, a cluster, a site of the topology). Edge
 * labels have no shape and are not measured. Kept apart from the test so the browser gets one plain function.
 */

/** One clipped thing, described for the failure message. */
export interface Clip {
  kind: 'cell' | 'svg-text';
  where: string;
  text: string;
  /** By how many pixels it overflows. */
  overflowPx: number;
}

/** Measures the page; returns every clip found and how many cells and texts were measured. */
export function measureClips(tolerancePx: number): { clips: Clip[]; cells: number; texts: number } {
  const clips: Clip[] = [];
  const visible = (element: Element): boolean => {
    const box = element.getBoundingClientRect();
    return box.width > 0 && box.height > 0;
  };
  const where = (element: Element): string => {
    const owner = element.closest('[id]');
    return `${element.tagName.toLowerCase()} in #${owner?.id ?? '?'}`;
  };
  let cells = 0;
  for (const cell of document.querySelectorAll<HTMLElement>('td, th')) {
    if (!visible(cell)) continue;
    cells++;
    const overflow = cell.scrollWidth - cell.clientWidth;
    if (overflow > tolerancePx) clips.push({ kind: 'cell', where: where(cell), text: (cell.textContent ?? '').trim().slice(0, 80), overflowPx: overflow });
  }
  const shapes = 'polygon, path, ellipse, rect';
  let texts = 0;
  for (const text of document.querySelectorAll<SVGTextElement>('svg text')) {
    if (!visible(text) || (text.textContent ?? '').trim() === '') continue;
    if (text.closest('g.edge')) continue;
    // The shape it labels: the nearest shape drawn before it, in its own group or an enclosing one.
    let shape: Element | null = null;
    for (let branch: Element = text; branch.parentElement && !shape; branch = branch.parentElement) {
      const parent = branch.parentElement;
      if (parent.tagName.toLowerCase() === 'svg') break;
      for (const sibling of [...parent.children]) {
        if (sibling === branch) break;
        if (sibling.matches(shapes)) shape = sibling;
      }
    }
    if (!shape) continue;
    texts++;
    const inner = text.getBoundingClientRect();
    const outer = shape.getBoundingClientRect();
    const overflow = Math.max(outer.left - inner.left, inner.right - outer.right, outer.top - inner.top, inner.bottom - outer.bottom);
    if (overflow > tolerancePx) clips.push({ kind: 'svg-text', where: where(text), text: (text.textContent ?? '').trim().slice(0, 80), overflowPx: Math.round(overflow * 10) / 10 });
  }
  return { clips, cells, texts };
}
