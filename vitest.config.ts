import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['**/*.test.ts'],
    exclude: ['node_modules/**', 'test/tmp/**'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Network tests bind fixed loopback addresses; files run in parallel processes, tests in one file serially.
    pool: 'forks',
  },
});
