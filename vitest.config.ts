import { readFileSync } from "node:fs";
import { cloudflareTest, readD1Migrations } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";
import { E2E_DESTINATIONS } from "./test/e2e/destination.ts";

/**
 * standardwebhooks (the tests' signature check) ships source maps without their sources, and
 * Vite warns about it on a run that loads it from disk: loaded here, without the map comment,
 * a passing run stays quiet.
 */
const withoutShippedMaps = {
  name: "without-shipped-source-maps",
  enforce: "pre" as const,
  load(id: string) {
    if (!/\/node_modules\/standardwebhooks\/dist\/[^/?]+\.js(\?|$)/.test(id)) return null;
    return { code: readFileSync(id.split("?")[0] ?? id, "utf8").replace(/\/\/# sourceMappingURL=\S+\s*$/, ""), map: null };
  },
};

export default defineConfig(async () => {
  // The tests build their database from the migrations, as `wrangler d1 migrations apply` does.
  const migrations = await readD1Migrations("./migrations");
  // schema.sql, split into statements the same way, for the test that compares the two.
  const schema = await readD1Migrations({ projectPath: ".", migrationsDir: ".", migrationsPattern: "schema.sql" });
  // Every variable set explicitly, so that a developer's .dev.vars never leaks into the tests
  // (the plugin reads it). The tuning vars keep wrangler.toml's values; the optional ones are off.
  const bindings = {
    WEBHOOK_SECRET: "test-secret",
    WEBHOOK_SECRET_PREVIOUS: "old-secret",
    DESTINATIONS: "",
    ADMIN_TOKEN: "",
    MAX_BODY_BYTES: "65536",
    RETRY_BASE_SECONDS: "30",
    STORAGE_DEADLINE_MS: "5000",
    DELIVERY_TIMEOUT_MS: "10000",
    RETENTION_DAYS: "",
    EXPORT_PART_ROWS: "",
    ARCHIVE_DELAY_MINUTES: "60",
    ARCHIVE_ROWS_PER_TICK: "",
    PAUSE_AFTER_FAILURES: "",
    PAUSE_SECONDS: "",
    NOTIFY_URL: "",
    SILENCE_HOURS: "",
    SUBREQUEST_BUDGET: "",
    // A fixed test key (32 bytes, base64); the previous one is unset.
    ENCRYPTION_KEY: "q5Z0o0cJ3sWm8x2v7r9n1b4k6h8f0d2s4a6q8w0e2r4=",
    ENCRYPTION_KEY_PREVIOUS: "",
    TEST_MIGRATIONS: migrations,
    TEST_SCHEMA_SQL: schema[0]?.queries ?? [],
    // The property tests' seed: FC_SEED=<seed> npm test replays a run they printed.
    FC_SEED: process.env.FC_SEED ?? "",
  };
  const shared = {
    setupFiles: ["./test/apply-schema.ts"],
    // Log lines of passing tests are noise; a failing test shows its own.
    silent: "passed-only" as const,
  };
  return {
    test: {
      // Log lines of passing tests are noise: a failing test shows its own (the reporter reads this here, not per project).
      silent: "passed-only" as const,
      // One line a file on a green run: the e2e files are slow by design (real Queue retries).
      slowTestThreshold: 60_000,
      // A dot a test and the summary: a failure's details are what stands out (`.ci/run` asks for
      // the default and JSON reporters itself).
      reporters: ["dot"],
      projects: [
        {
          plugins: [
            withoutShippedMaps,
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              // Three more empty databases: one built from schema.sql, one upgraded from 0.1.0, one from 0.6.0 (before 0017).
              miniflare: { bindings, d1Databases: { SCHEMA_DB: "schema-check", UPGRADE_DB: "upgrade-check", ARRIVALS_DB: "arrivals-check" } },
            }),
          ],
          test: { name: "worker", include: ["test/*.test.ts"], ...shared },
        },
        {
          // The real local Queue delivers to the consumer here, so DESTINATIONS is set
          // for the whole project; outbound fetch is stubbed by the tests.
          plugins: [
            withoutShippedMaps,
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
        {
          // The real retries-exhausted path: the alerts queue gives up after 2 retries.
          plugins: [
            withoutShippedMaps,
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: {
                bindings: { ...bindings, ADMIN_TOKEN: "admin-token-for-tests", RETRY_BASE_SECONDS: "1", DESTINATIONS: E2E_DESTINATIONS },
                queueConsumers: {
                  "oneflow-alerts": { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 2, deadLetterQueue: "oneflow-alerts-dlq" },
                  "oneflow-alerts-dlq": { maxBatchSize: 10, maxBatchTimeout: 1, maxRetries: 100 },
                },
              },
            }),
          ],
          test: { name: "queue-dlq", include: ["test/e2e-dlq/*.test.ts"], testTimeout: 90_000, ...shared },
        },
        {
          // The simulation (test/sim, issue 24): the real code under a scheduler, with its own
          // simulated Queue and clock, against the real local D1 and R2. Its own project: one
          // long file, run alone in its workerd. Its variables are set by the simulation itself.
          plugins: [
            withoutShippedMaps,
            cloudflareTest({
              wrangler: { configPath: "./wrangler.toml" },
              miniflare: { bindings: { ...bindings, SIM_SEED: process.env.SIM_SEED ?? "", SIM_RUNS: process.env.SIM_RUNS ?? "", SIM_PATH: process.env.SIM_PATH ?? "", SIM_EXPLORE: process.env.SIM_EXPLORE ?? "", SIM_PROGRESS: process.env.SIM_PROGRESS ?? "", SIM_ONLY: process.env.SIM_ONLY ?? "", SIM_TRACE: process.env.SIM_TRACE ?? "", SIM_GENERATOR: process.env.SIM_GENERATOR ?? "" } },
            }),
          ],
          test: { name: "sim", include: ["test/sim/*.test.ts"], testTimeout: 600_000, ...shared },
        },
        {
          // Scripts and configuration, in Node: the deploy script, wrangler.toml.
          test: { name: "node", include: ["test/node/*.test.ts"], environment: "node", testTimeout: 60_000 },
        },
      ],
    },
  };
});
