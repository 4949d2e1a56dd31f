import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * The tests StrykerJS runs against each mutant of impl/ (`npm run mutation`): the implementation's own tests
 * and the conformance harness's generated paths, which drive the real cluster in lockstep with the model.
 * Fast ones only (a few seconds in all); no browser, review or exploration tests. The model is not mutated,
 * so the generated paths are planned once and cached under reports/mutation/ (see generated-paths.test.ts).
 */
export default defineConfig({
  test: {
    include: ['test/impl/**/*.test.ts', 'test/conformance/generated-paths.test.ts'],
    pool: 'threads',
    testTimeout: 60_000,
    env: { THREESITE_PATHS_CACHE_DIR: resolve(import.meta.dirname, 'reports/mutation/paths-cache') },
  },
});
