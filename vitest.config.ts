import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig(async () => {
  // schema.sql is the one migration: tests run against the schema users apply.
  const migrations = await readD1Migrations({ projectPath: ".", migrationsDir: ".", migrationsPattern: "schema.sql" });
  return {
    plugins: [
      cloudflareTest({
        wrangler: { configPath: "./wrangler.toml" },
        miniflare: {
          bindings: {
            WEBHOOK_SECRET: "test-secret",
            WEBHOOK_SECRET_PREVIOUS: "old-secret",
            TEST_MIGRATIONS: migrations,
          },
        },
      }),
    ],
    test: {
      include: ["test/**/*.test.ts"],
      setupFiles: ["./test/apply-schema.ts"],
      // Log lines of passing tests are noise; a failing test shows its own.
      silent: "passed-only" as const,
    },
  };
});
