/**
 * `npm run deploy` (scripts/deploy.mjs) against a stand-in `wrangler` on PATH that
 * records every command and its stdin: no network, no account.
 */
import { spawnSync } from "node:child_process";
import { chmodSync, existsSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const WORKER_URL = "https://oneflow-webhooks.example.workers.dev";

/** The stand-in: answers from FAKE_STATE, appends {args, stdin} to FAKE_LOG. */
const FAKE_WRANGLER = `#!/usr/bin/env node
const fs = require("node:fs");
const args = process.argv.slice(2);
let stdin = "";
try { stdin = fs.readFileSync(0, "utf8"); } catch {}
fs.appendFileSync(process.env.FAKE_LOG, JSON.stringify({ args, stdin }) + "\\n");
const state = JSON.parse(process.env.FAKE_STATE);
const cmd = args.slice(0, 2).join(" ");
if (cmd === "d1 info") process.exit(state.database ? 0 : 1);
if (cmd === "queues info") process.exit(state.queues.includes(args[2]) ? 0 : 1);
if (args.slice(0, 3).join(" ") === "r2 bucket info") process.exit(state.bucket ? 0 : 1);
if (args.slice(0, 3).join(" ") === "r2 bucket create") process.exit(state.r2_disabled ? 1 : 0);
if (args[0] === "deploy" && args.includes("--config")) fs.appendFileSync(process.env.FAKE_LOG, JSON.stringify({ args: ["(config)"], stdin: fs.readFileSync(args[args.indexOf("--config") + 1], "utf8") }) + "\\n");
if (cmd === "d1 migrations") process.exit(state.migrations_fail ? 1 : 0);
if (args[0] === "deploy") { console.log("Deployed oneflow-webhooks triggers\\n  ${WORKER_URL}\\n  schedule: */5 * * * *"); process.exit(0); }
if (cmd === "secret list") { console.log(JSON.stringify(state.secrets.map((name) => ({ name, type: "secret_text" })))); process.exit(0); }
process.exit(0);
`;

interface Call {
  args: string[];
  stdin: string;
}

function runDeploy(state: { database: boolean; queues: string[]; secrets: string[]; bucket?: boolean; r2_disabled?: boolean; migrations_fail?: boolean }) {
  const dir = mkdtempSync(join(tmpdir(), "fake-wrangler-"));
  writeFileSync(join(dir, "wrangler"), FAKE_WRANGLER);
  chmodSync(join(dir, "wrangler"), 0o755);
  const log = join(dir, "calls.jsonl");
  writeFileSync(log, "");
  const result = spawnSync(process.execPath, ["scripts/deploy.mjs"], {
    cwd: ROOT,
    encoding: "utf8",
    env: { ...process.env, PATH: `${dir}${delimiter}${process.env.PATH}`, FAKE_LOG: log, FAKE_STATE: JSON.stringify(state) },
  });
  const calls = readFileSync(log, "utf8")
    .split("\n")
    .filter(Boolean)
    .map((line) => JSON.parse(line) as Call);
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, calls, commands: calls.map((c) => c.args.join(" ")) };
}

describe("npm run deploy", () => {
  it("first deploy: creates what is missing, migrates, deploys, then generates and stores both secrets", () => {
    const run = runDeploy({ database: false, queues: ["oneflow-alerts"], secrets: [] });
    expect(run.status, run.stderr).toBe(0);
    expect(run.commands).toEqual([
      "d1 info DB",
      "d1 create oneflow",
      "queues info oneflow-alerts",
      "queues info oneflow-alerts-dlq",
      "queues create oneflow-alerts-dlq",
      "r2 bucket info oneflow-archive",
      "r2 bucket create oneflow-archive",
      "d1 migrations apply DB --remote",
      "deploy",
      "secret list --format json",
      "secret put ENCRYPTION_KEY",
      "secret put WEBHOOK_SECRET",
      "secret put ADMIN_TOKEN",
    ]);
    // 32 random bytes, as base64: never printed.
    const key = run.calls.find((c) => c.args.join(" ") === "secret put ENCRYPTION_KEY")?.stdin.trim() ?? "";
    expect(Buffer.from(key, "base64")).toHaveLength(32);
    expect(run.stdout).not.toContain(key);
    const secret = run.calls.find((c) => c.args.join(" ") === "secret put WEBHOOK_SECRET")?.stdin.trim() ?? "";
    const admin = run.calls.find((c) => c.args.join(" ") === "secret put ADMIN_TOKEN")?.stdin.trim() ?? "";
    // 32 random bytes each, as hex; never the same twice.
    expect(secret).toMatch(/^[0-9a-f]{64}$/);
    expect(admin).toMatch(/^[0-9a-f]{64}$/);
    expect(admin).not.toBe(secret);
    // Secrets travel through stdin, never as arguments.
    expect(run.commands.join(" ")).not.toContain(secret);
    // Printed once: the URL for 1Flow and the dashboard.
    expect(run.stdout.split(`${WORKER_URL}/webhooks/1flow/${secret}`)).toHaveLength(2);
    expect(run.stdout).toContain(`${WORKER_URL}/dashboard`);
    expect(run.stdout).toContain(admin);
  });

  it("upgrading from 0.2: ENCRYPTION_KEY generated, the other secrets kept", () => {
    const run = runDeploy({ database: true, queues: ["oneflow-alerts", "oneflow-alerts-dlq"], secrets: ["WEBHOOK_SECRET", "ADMIN_TOKEN"] });
    expect(run.status, run.stderr).toBe(0);
    expect(run.commands.filter((c) => c.startsWith("secret put"))).toEqual(["secret put ENCRYPTION_KEY"]);
    expect(run.stdout).not.toContain("/webhooks/1flow/");
  });

  it("later deploys: nothing created, no secret touched, migrations before the deploy", () => {
    const run = runDeploy({ database: true, queues: ["oneflow-alerts", "oneflow-alerts-dlq"], bucket: true, secrets: ["WEBHOOK_SECRET", "ADMIN_TOKEN", "ENCRYPTION_KEY"] });
    expect(run.status, run.stderr).toBe(0);
    expect(run.commands).toEqual([
      "d1 info DB",
      "queues info oneflow-alerts",
      "queues info oneflow-alerts-dlq",
      "r2 bucket info oneflow-archive",
      "d1 migrations apply DB --remote",
      "deploy",
      "secret list --format json",
    ]);
    expect(run.stdout).not.toContain("/webhooks/1flow/");
  });

  it("keeps an ADMIN_TOKEN that is already set", () => {
    const run = runDeploy({ database: true, queues: ["oneflow-alerts", "oneflow-alerts-dlq"], secrets: ["ADMIN_TOKEN"] });
    expect(run.status, run.stderr).toBe(0);
    expect(run.commands.filter((c) => c.startsWith("secret put"))).toEqual(["secret put ENCRYPTION_KEY", "secret put WEBHOOK_SECRET"]);
    expect(run.stdout).toContain("sign in with your ADMIN_TOKEN");
  });

  it("an account without R2: deploys without the archive (wrangler.toml less its [[r2_buckets]]) and says so", () => {
    const run = runDeploy({ database: true, queues: ["oneflow-alerts", "oneflow-alerts-dlq"], r2_disabled: true, secrets: ["WEBHOOK_SECRET", "ADMIN_TOKEN", "ENCRYPTION_KEY"] });
    expect(run.status, run.stderr).toBe(0);
    expect(run.commands).toContain("deploy --config wrangler.no-archive.toml");
    const used = run.calls.find((c) => c.args[0] === "(config)")?.stdin ?? "";
    expect(used).toContain("[[d1_databases]]");
    expect(used).toContain("[triggers]");
    expect(used).not.toContain("r2_buckets");
    expect(used).not.toContain("oneflow-archive");
    expect(run.stdout).toContain("Deploying without the archive");
    expect(existsSync(join(ROOT, "wrangler.no-archive.toml"))).toBe(false);
  });

  it("stops before deploying when the migrations fail", () => {
    const run = runDeploy({ database: true, queues: ["oneflow-alerts", "oneflow-alerts-dlq"], secrets: [], migrations_fail: true });
    expect(run.status).toBe(1);
    expect(run.commands.at(-1)).toBe("d1 migrations apply DB --remote");
    expect(run.commands).not.toContain("deploy");
  });
});
