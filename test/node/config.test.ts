/**
 * wrangler.toml, read with wrangler's own config reader: what the code relies on.
 * Config drift fails `npm test`, not production.
 */
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { unstable_readConfig } from "wrangler";
import { DEFAULT_SUBREQUEST_BUDGET, MAX_DESTINATIONS } from "../../src/limits";
import { ARCHIVE_CRON, MAIN_CRON } from "../../src/schedules";

const ROOT = join(import.meta.dirname, "..", "..");
const config = unstable_readConfig({ config: join(ROOT, "wrangler.toml") });
const readme = readFileSync(join(ROOT, "README.md"), "utf8");

interface Consumer {
  queue: string;
  max_batch_size?: number;
  dead_letter_queue?: string;
}
const consumers: Consumer[] = config.queues.consumers ?? [];

describe("wrangler.toml", () => {
  it("binds D1 as DB by name, with no ID to paste, migrated from migrations/", () => {
    expect(config.d1_databases).toEqual([{ binding: "DB", database_name: "oneflow", migrations_dir: "migrations" }]);
  });

  it("produces to oneflow-alerts as ALERTS_QUEUE", () => {
    expect(config.queues.producers).toContainEqual({ binding: "ALERTS_QUEUE", queue: "oneflow-alerts" });
  });

  it("consumes oneflow-alerts with its dead-letter queue, and consumes the dead-letter queue", () => {
    expect(consumers.find((c) => c.queue === "oneflow-alerts")).toMatchObject({ dead_letter_queue: "oneflow-alerts-dlq" });
    // The code tells the two queues apart by the -dlq suffix (src/index.ts).
    expect(consumers.find((c) => c.queue === "oneflow-alerts-dlq")).toBeDefined();
    expect(consumers.map((c) => c.queue).filter((q) => q.endsWith("-dlq"))).toEqual(["oneflow-alerts-dlq"]);
  });

  it("runs the sweep every five minutes, and the archive two minutes after it", () => {
    expect(config.triggers.crons).toEqual([MAIN_CRON, ARCHIVE_CRON]);
    expect(MAIN_CRON).toBe("*/5 * * * *");
  });

  it("binds the archive's R2 bucket as ARCHIVE", () => {
    expect(config.r2_buckets).toContainEqual(expect.objectContaining({ binding: "ARCHIVE", bucket_name: "oneflow-archive" }));
  });

  it("keeps invocation logs off: they record the URL, which holds the webhook token", () => {
    expect(config.observability?.logs?.invocation_logs).toBe(false);
  });

  it("keeps a consumer invocation within the subrequest limit the README states, by default", () => {
    const stated = /free plan's (\d+) subrequests per invocation/.exec(readme);
    expect(stated, "README states the subrequest limit").not.toBeNull();
    expect(DEFAULT_SUBREQUEST_BUDGET).toBeLessThanOrEqual(Number(stated?.[1]));
    // More destinations than one invocation can reach are carried over, not refused.
    expect(MAX_DESTINATIONS).toBe(100);
  });

  it("is accepted by `wrangler deploy --dry-run` with no ID in it", () => {
    const outdir = mkdtempSync(join(tmpdir(), "dry-run-"));
    const result = spawnSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir], {
      cwd: ROOT,
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
    });
    expect(result.status, result.stderr).toBe(0);
    expect(result.stdout).toContain("env.DB");
  });
});

describe("the tests' bindings", () => {
  it("set every string variable of Env, so that a developer's .dev.vars never leaks into a test", () => {
    const envSource = readFileSync(join(ROOT, "src/env.ts"), "utf8");
    const vitestConfig = readFileSync(join(ROOT, "vitest.config.ts"), "utf8");
    const variables = [...envSource.matchAll(/^\s+([A-Z][A-Z0-9_]+)\?: string;/gm)].map((m) => m[1]);
    expect(variables.length).toBeGreaterThan(10);
    expect(variables.filter((name) => !new RegExp(`\\b${name}:`).test(vitestConfig))).toEqual([]);
  });
});
