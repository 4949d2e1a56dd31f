/**
 * Bundles the simulator (`review/simulator/main.ts` and the parts of `model/` it imports: the machine, the
 * semantics, the observation, the events) into one browser script with esbuild, so the review page runs the
 * very machine the specification is, with no network and no server.
 */
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';

/** The bundled script and how long bundling took. */
export interface Bundle {
  code: string;
  ms: number;
}

/** The largest simulator bundle the page accepts: a guard against bundling something by mistake. */
export const simulatorBundleBytesMax = 2 * 1024 * 1024;

/** Bundles the simulator for the browser (an IIFE, minified). */
export async function bundleSimulator(): Promise<Bundle> {
  const started = performance.now();
  const result = await build({
    entryPoints: [fileURLToPath(new URL('./simulator/main.ts', import.meta.url))],
    bundle: true,
    format: 'iife',
    platform: 'browser',
    target: ['es2022'],
    minify: true,
    write: false,
    legalComments: 'none',
    logLevel: 'silent',
  });
  const code = result.outputFiles[0]!.text;
  if (code.length > simulatorBundleBytesMax) throw new RangeError(`simulator bundle is ${code.length} bytes, more than ${simulatorBundleBytesMax}`);
  return { code, ms: performance.now() - started };
}
