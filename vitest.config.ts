import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    setupFiles: ['./packages/mesh/src/polyfill.ts'],
    pool: 'forks',
    // Files run one at a time: the multi-process tests start many daemons and Postgres servers, and two machines'
    // worth of them on two cores makes timing-sensitive steps (joins, failovers) slow for no reason.
    fileParallelism: false,
    testTimeout: 60_000,
    // Setups start several daemons and Postgres servers; on a loaded machine that alone can pass a minute.
    hookTimeout: 120_000,
    include: ['packages/*/src/**/*.test.ts', 'cmd/*/src/**/*.test.ts', 'test/**/*.test.ts', 'scripts/**/*.test.ts'],
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' }
  }
})
