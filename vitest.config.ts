import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    setupFiles: ['./packages/mesh/src/polyfill.ts'],
    pool: 'forks',
    testTimeout: 60_000,
    hookTimeout: 60_000,
    include: ['packages/*/src/**/*.test.ts', 'cmd/*/src/**/*.test.ts', 'test/**/*.test.ts'],
    reporters: ['default', 'json'],
    outputFile: { json: 'test-results/vitest.json' }
  }
})
