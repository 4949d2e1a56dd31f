/**
 * DOT to SVG with Graphviz compiled to WebAssembly (`@viz-js/viz`): offline, no browser, no system Graphviz.
 * Graphviz's `dot` layout draws compound states inside their parents and parallel regions as clusters, which
 * is why it is the renderer (Mermaid draws nested states outside their parents). One WebAssembly instance is
 * made per process and reused; every render is timed, because the review page reports how long it took.
 */
import { instance } from '@viz-js/viz';

type Viz = Awaited<ReturnType<typeof instance>>;

let vizPromise: Promise<Viz> | null = null;

/** The process's Graphviz instance (compiled once, in about 15 ms). */
function viz(): Promise<Viz> {
  vizPromise ??= instance();
  return vizPromise;
}

/** Thrown when Graphviz cannot lay out a graph; carries its messages. */
export class RenderError extends Error {
  constructor(
    readonly graphName: string,
    readonly messages: string[],
  ) {
    super(`Graphviz could not render ${graphName}: ${messages.join('; ')}`);
    this.name = 'RenderError';
  }
}

/** One rendered diagram and how long Graphviz took. */
export interface Rendered {
  svg: string;
  ms: number;
}

/** Lays out `dot` with Graphviz's `dot` engine and returns the SVG; throws {@link RenderError}. */
export async function renderSvg(dot: string, graphName = 'graph'): Promise<Rendered> {
  const graphviz = await viz();
  const started = performance.now();
  const result = graphviz.render(dot, { format: 'svg', engine: 'dot' });
  const ms = performance.now() - started;
  if (result.status !== 'success' || result.output === undefined) {
    throw new RenderError(graphName, result.errors.map((error) => `${error.level ?? 'error'}: ${error.message}`));
  }
  const warnings = result.errors.filter((error) => error.level === 'warning');
  if (warnings.length > 0) throw new RenderError(graphName, warnings.map((warning) => `warning: ${warning.message}`));
  return { svg: result.output, ms };
}

/** The Graphviz version used, for the page's colophon. */
export async function graphvizVersion(): Promise<string> {
  return (await viz()).graphvizVersion;
}

/**
 * An SVG ready to sit inside an HTML page: without its XML prolog and doctype, and with every `id` prefixed,
 * so that several diagrams (each with Graphviz's own `graph0`, `node1`, ...) can share one document. Page
 * links (`href="#claim-3"`) are left as they are.
 */
export function inlineSvg(svg: string, idPrefix: string): string {
  const start = svg.indexOf('<svg');
  if (start < 0) throw new RenderError(idPrefix, ['no <svg> element in the output']);
  return svg.slice(start).replace(/ id="/g, ` id="${idPrefix}`);
}
