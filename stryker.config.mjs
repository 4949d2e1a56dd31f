// StrykerJS: mutation testing of the implementation (impl/) against the checks that reach it: the
// implementation's own tests and the conformance harness's generated paths (lockstep against the model).
// `npm run mutation`; reports under reports/mutation/ (mutation.json is Stryker's standard schema).
// Not part of `npm test` or CI: on two cores a full run takes tens of minutes; incremental mode reruns only
// mutants whose code or covering tests changed.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  mutate: ['impl/**/*.ts'],
  testRunner: 'vitest',
  vitest: {
    configFile: 'vitest.mutation.config.ts',
    // The conformance tests reach impl/ through the harness's adapter, not by importing the mutated file
    // directly: vitest's related-file search would miss them.
    related: false,
  },
  coverageAnalysis: 'perTest',
  reporters: ['json', 'html', 'clear-text', 'progress'],
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  incremental: true,
  incrementalFile: 'reports/mutation/stryker-incremental.json',
  concurrency: 2,
  // Our tsconfig needs no rewriting in the sandbox (no `extends`, no references), and Stryker's rewriter
  // calls TypeScript's JavaScript API, which TypeScript 7 (the native compiler we use) no longer has.
  tsconfigFile: 'tsconfig.stryker.json',
  tempDirName: '.stryker-tmp',
  cleanTempDir: 'always',
  timeoutMS: 10_000,
  timeoutFactor: 2,
  thresholds: { high: 90, low: 75, break: null },
};
