import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['packages/*/src/**/*.test.ts', 'tests/**/*.test.ts'],
    globalSetup: ['tests/src/global-setup.ts'],
    setupFiles: ['tests/src/setup.ts'],
    testTimeout: 180_000,
    hookTimeout: 120_000,
  },
});
