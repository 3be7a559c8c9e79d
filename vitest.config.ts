import { availableParallelism } from 'node:os';
import { defineConfig } from 'vitest/config';

/** Compiles dist/ once per run, for the files that spawn bin/sluice.js. */
const COMPILE_DIST = './test/helpers/compile-dist.ts';

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // vitest's own default is one worker fewer than the cores: a single one on a 2-core machine, where
    // integration and e2e files spend most of their time waiting on sockets and child processes.
    maxWorkers: Math.max(2, availableParallelism()),
    reporters: ['default', './test/helpers/summary-reporter.ts'],
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          include: ['test/unit/**/*.test.ts'],
          // Pure code and in-memory objects: each worker loads the modules once and runs file after file.
          // Processes rather than threads, as masking-linear measures its own CPU time with process.cpuUsage().
          pool: 'forks',
          isolate: false,
        },
      },
      {
        extends: true,
        test: {
          name: 'unit-tui',
          include: ['test/unit/**/*.test.tsx'],
          // Ink's views: a file of its own each, as some set FORCE_COLOR before chalk reads it once at import.
          pool: 'threads',
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/integration/**/*.test.ts'],
          pool: 'forks',
          // Loading fastify, the IdP and the pipeline costs a second or two per file; a worker keeps them from
          // file to file. Safe because every file closes what it starts (gatewayFixture, onTestFinished) and
          // restores what it stubs (spies, a faked Date) in the test that made it.
          isolate: false,
        },
      },
      {
        extends: true,
        // As integration; the processes a file spawns are its own and end with it.
        test: { name: 'e2e', include: ['test/e2e/**/*.test.ts'], pool: 'forks', isolate: false, globalSetup: [COMPILE_DIST] },
      },
      {
        extends: true,
        test: {
          name: 'fuzz',
          // Property-based targets (fast-check): FUZZ_RUNS cases each, 5000 by default, 100000 under `npm run fuzz`.
          include: ['test/fuzz/**/*.fuzz.test.ts'],
          pool: 'forks',
        },
      },
      {
        extends: true,
        test: {
          name: 'load',
          // Files that bound latency or memory while they load the machine (tunnel-load spawns bin/sluice.js).
          include: ['test/load/**/*.test.ts'],
          pool: 'forks',
          globalSetup: [COMPILE_DIST],
          // Alone, after the others: another file on the same cores would be measured with them.
          maxWorkers: 1,
          sequence: { groupOrder: 1 },
        },
      },
    ],
  },
});
