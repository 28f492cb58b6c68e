import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    globalSetup: ['test/helpers/global-setup.ts'],
    // Real clusters: starting one takes seconds, a rolling upgrade minutes.
    testTimeout: 180_000,
    hookTimeout: 600_000,
    pool: 'forks',
    // Two cores: two test files at a time, each with at most one cluster of its own.
    maxWorkers: 2,
    // The JSON report lets .ci/run print a plain 'N passed, N failed' closing line.
    reporters: ['default', ['json', { outputFile: 'node_modules/.cache/vaultops/vitest-report.json' }]],
  },
});
