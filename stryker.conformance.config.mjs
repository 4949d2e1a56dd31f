// StrykerJS, the harness alone (issue 16): the same mutants of the replication logic as stryker.config.mjs,
// killed only by `npm start`'s generated paths (in memory, at the small and the larger bounds, and on the
// file backends with crashes), never by a unit test: test/mutation/conformance-paths.spec.ts through
// vitest.conformance-mutation.config.ts. `npm run mutation:conformance`; its score beside `npm run
// mutation`'s says how much of the implementation the conformance run proves on its own. About as long as
// the full mutation run on two cores; reports under reports/mutation-conformance/.
import base from './stryker.config.mjs';

/** @type {import('@stryker-mutator/api/core').PartialStrykerOptions} */
export default {
  ...base,
  vitest: { ...base.vitest, configFile: 'vitest.conformance-mutation.config.ts' },
  jsonReporter: { fileName: 'reports/mutation-conformance/mutation.json' },
  htmlReporter: { fileName: 'reports/mutation-conformance/index.html' },
  incrementalFile: 'reports/mutation-conformance/stryker-incremental.json',
  tempDirName: '.stryker-tmp-conformance',
  // The initial run plans the paths (minutes: the small bounds' exhaustive plan of both fence policies) and
  // runs them all once; Stryker's default of 5 minutes is too short on two shared cores.
  dryRunTimeoutMinutes: 60,
};
