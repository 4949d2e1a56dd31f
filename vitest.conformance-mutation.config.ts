import { resolve } from 'node:path';
import { defineConfig } from 'vitest/config';

/**
 * The tests of the harness-only mutation run (`npm run mutation:conformance`): `npm start`'s generated paths
 * and nothing else (`test/mutation/conformance-paths.spec.ts`), no unit test. The model is not mutated, so
 * the paths are planned once and cached under reports/mutation-conformance/.
 */
export default defineConfig({
  test: {
    include: ['test/mutation/conformance-paths.spec.ts'],
    pool: 'threads',
    testTimeout: 60_000,
    hookTimeout: 600_000,
    env: { THREESITE_PATHS_CACHE_DIR: resolve(import.meta.dirname, 'reports/mutation-conformance/paths-cache') },
  },
});
