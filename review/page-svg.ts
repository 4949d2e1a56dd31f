/**
 * Diagrams that never clip their text in a browser. Graphviz sizes every box (a state, a table cell) from its
 * own estimate of the text's width in its built-in Helvetica metrics; a browser then draws the text in
 * whatever font it has (DejaVu Sans on a Linux without Helvetica: about 15% wider), so `HOST_WRITING` ran
 * out of its cell as `HOST_WRITI`. This renders the DOT once to SVG and to Graphviz's JSON from the same
 * layout, reads the width Graphviz gave each text (the `T` operations of `_ldraw_` and friends), and pins it
 * on the SVG's `<text>` as `textLength` with `lengthAdjust="spacingAndGlyphs"`: the browser then fits each
 * label to exactly the width its box was made for, whatever the font.
 */
import { instance } from '@viz-js/viz';
import { RenderError } from './render.ts';

type Viz = Awaited<ReturnType<typeof instance>>;
let vizPromise: Promise<Viz> | null = null;

/** One text of the layout: where Graphviz placed it (SVG coordinates) and the width it reserved. */
export interface LaidOutText {
  x: number;
  y: number;
  width: number;
  text: string;
}

/** Every text operation of Graphviz's JSON output (`-Tjson`), in SVG coordinates (y negated). */
export function laidOutTexts(json: string): LaidOutText[] {
  const graph = JSON.parse(json) as Record<string, unknown> & { objects?: Record<string, unknown>[]; edges?: Record<string, unknown>[] };
  const texts: LaidOutText[] = [];
  const drawKeys = ['_draw_', '_ldraw_', '_hdraw_', '_tdraw_', '_hldraw_', '_tldraw_'];
  for (const item of [graph, ...(graph.objects ?? []), ...(graph.edges ?? [])]) {
    for (const key of drawKeys) {
      const ops = item[key] as { op: string; pt?: [number, number]; width?: number; text?: string }[] | undefined;
      for (const op of ops ?? []) {
        if (op.op === 'T' && op.pt && typeof op.width === 'number') texts.push({ x: op.pt[0], y: -op.pt[1], width: op.width, text: op.text ?? '' });
      }
    }
  }
  return texts;
}

const at = (x: number, y: number): string => `${x.toFixed(2)}|${y.toFixed(2)}`;

/**
 * Pins each `<text>` of `svg` to the width Graphviz reserved for it (from {@link laidOutTexts} of the same
 * layout). Returns the SVG and how many texts were pinned and left (a text without a laid-out twin).
 */
export function pinTextWidths(svg: string, texts: readonly LaidOutText[]): { svg: string; pinned: number; unmatched: number } {
  const widths = new Map<string, number>();
  for (const text of texts) widths.set(at(text.x, text.y), text.width);
  let pinned = 0;
  let unmatched = 0;
  const out = svg.replace(/<text ([^>]*?)x="(-?[\d.]+)" y="(-?[\d.]+)"([^>]*)>/g, (whole, before: string, x: string, y: string, after: string) => {
    const width = widths.get(at(Number(x), Number(y)));
    if (width === undefined || width <= 0) {
      unmatched++;
      return whole;
    }
    pinned++;
    return `<text ${before}x="${x}" y="${y}" textLength="${width.toFixed(2)}" lengthAdjust="spacingAndGlyphs"${after}>`;
  });
  return { svg: out, pinned, unmatched };
}

/** Renders `dot` to an SVG whose every text is pinned to its laid-out width; throws {@link RenderError}. */
export async function renderFittedSvg(dot: string, graphName = 'graph'): Promise<{ svg: string; pinned: number; unmatched: number }> {
  vizPromise ??= instance();
  const viz = await vizPromise;
  const result = viz.renderFormats(dot, ['svg', 'json'], { engine: 'dot' });
  if (result.status !== 'success' || !result.output) {
    throw new RenderError(graphName, result.errors.map((error) => `${error.level ?? 'error'}: ${error.message}`));
  }
  return pinTextWidths(result.output.svg!, laidOutTexts(result.output.json!));
}
