import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 30_000,
    // End-to-end tests start real processes; keep a couple of files in flight, not a crowd.
    maxWorkers: 4,
  },
});
