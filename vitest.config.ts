import { defineConfig } from 'vitest/config';

/** The whole suite: model, implementation, conformance and end-to-end tests. */
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Installs (as root) or names the system packages tests need, so no test is silently skipped.
    globalSetup: ['test/setup/system-packages.ts'],
    pool: 'threads',
    // Two workers on the two-core machines we run on: vitest's default (cores - 1) runs the suite serially.
    maxWorkers: 2,
    isolate: false,
    testTimeout: 120_000,
    hookTimeout: 120_000,
  },
});
