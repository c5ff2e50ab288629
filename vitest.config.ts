import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { E2E_DESTINATIONS } from "./test/e2e/destination.ts";

export default defineConfig(async () => {
  // schema.sql is the one migration: tests run against the schema users apply.
  const migrations = await readD1Migrations({ projectPath: ".", migrationsDir: ".", migrationsPattern: "schema.sql" });
  // Set explicitly, so that a developer's .dev.vars never leaks into the tests.
  const bindings = {
    WEBHOOK_SECRET: "test-secret",
    WEBHOOK_SECRET_PREVIOUS: "old-secret",
    DESTINATIONS: "",
    ADMIN_TOKEN: "",
    TEST_MIGRATIONS: migrations,
  };
  const shared = {
    setupFiles: ["./test/apply-schema.ts"],
    // Log lines of passing tests are noise; a failing test shows its own.
    silent: "passed-only" as const,
  };
  return {
    test: {
      projects: [
        {
          plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" }, miniflare: { bindings } })],
          test: { name: "worker", include: ["test/*.test.ts"], ...shared },
        },
        {
          // The real local Queue delivers to the consumer here, so DESTINATIONS is set
          // for the whole project; outbound fetch is stubbed by the tests.
          plugins: [
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: {
                  ...bindings,
                  RETRY_BASE_SECONDS: "1",
                  DESTINATIONS: E2E_DESTINATIONS,
                },
              },
            }),
          ],
          test: { name: "queue-e2e", include: ["test/e2e/*.test.ts"], testTimeout: 60_000, ...shared },
        },
      ],
    },
  };
});
