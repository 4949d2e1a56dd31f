// StrykerJS: mutation testing of the implementation (impl/) against the checks that reach it: the
// implementation's own tests and the conformance harness's generated paths (lockstep against the model).
// `npm run mutation`; reports under reports/mutation/ (mutation.json is Stryker's standard schema).
// Not part of `npm test` or CI: on two cores a full run takes tens of minutes; incremental mode reruns only
// mutants whose code or covering tests changed.
/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  // The replication logic (bench/mutation-summary.ts's list): the storage system's handlers, the controller's
  // rules, the journal, the judge, the changed-block record and the block copy. About an hour on two cores.
  // The edges (wire codec, simulated transport, file backends, NBD server, TCP links, control port, CLI) are
  // left out of the default run for time; `npm run mutation -- --mutate 'impl/**/*.ts'` mutates all of impl/
  // (about 4,500 mutants, several hours on two cores).
  mutate: [
    'impl/core/storage-system.ts',
    'impl/cluster/cluster.ts',
    'impl/core/journal.ts',
    'impl/core/judge.ts',
    'impl/core/changed-blocks.ts',
    'impl/core/block-copy.ts',
  ],
  testRunner: 'vitest',
  // Mutants inside invariant checks and in error-message prose are reported as Ignored, with the reason, and
  // not scored (stryker-plugins/invariant-and-message-ignorer.mjs says why). bench/mutation-summary.ts prints
  // how many.
  appendPlugins: [new URL('./stryker-plugins/invariant-and-message-ignorer.mjs', import.meta.url).pathname],
  ignorers: ['invariant-and-message'],
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
