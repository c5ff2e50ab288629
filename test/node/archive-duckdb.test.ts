/**
 * The archive read back as an analyst reads it: the bundled Worker runs in Miniflare (workerd,
 * local D1 and R2) with ARCHIVE_DELAY_MINUTES=0, takes responses from four days and runs its
 * archive schedule; DuckDB (@duckdb/node-api) then reads the parts that GET /api/archive lists,
 * hive-partitioned, and `npm run archive:query` runs the README's queries over the same bucket.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bundleModules, schemaStatements } from "../../bench/lib.mjs";
import { ARCHIVE_CRON } from "../../src/schedules";

const ROOT = join(import.meta.dirname, "..", "..");
const SECRET = "archive-secret";
const ADMIN = "archive-admin";
const BUNDLE = join(ROOT, "bench", ".build", "archive-test");
const EXAMPLE = JSON.parse(readFileSync(join(ROOT, "examples/1flow-example.json"), "utf8")) as Record<string, unknown> & { user: Record<string, unknown> };

interface Listed {
  key: string;
  table: "responses" | "answers";
  date: string;
  rows: number;
}

let dir: string;
let mf: Miniflare;
let origin: string;
let db: Awaited<ReturnType<Miniflare["getD1Database"]>>;
const sent: Record<string, string> = {};

async function api(path: string): Promise<Response> {
  return fetch(`${origin}${path}`, { headers: { authorization: `Bearer ${ADMIN}` } });
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "oneflow-archive-"));
  // Inside the project: workerd does not load a script from outside its starting directory.
  execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", BUNDLE], {
    cwd: ROOT,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      ...bundleModules(join(BUNDLE, "index.js")),
      compatibilityDate: "2026-10-01",
      handleStructuredLogs: () => {},
      d1Databases: { DB: "archive-test" },
      queueProducers: { ALERTS_QUEUE: { queueName: "oneflow-alerts" } },
      r2Buckets: { ARCHIVE: "oneflow-archive" },
      // The layout `wrangler dev --persist-to <dir>` uses, which archive:query reads.
      resourcePersistencePath: join(dir, "state", "v3"),
      bindings: { WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: ADMIN, ARCHIVE_DELAY_MINUTES: "0" },
    }),
  );
  origin = (await mf.ready).origin;
  db = await mf.getD1Database("DB");
  for (const sql of schemaStatements()) await db.prepare(sql).run();

  // Four days; a detractor with a reason on two of them; two platforms.
  const days = ["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-09"];
  let n = 0;
  for (const day of days) {
    for (const [hour, score, platform] of [
      ["09", 10, "ios"],
      ["17", 3, "android"],
    ] as const) {
      n++;
      const screens = structuredClone(EXAMPLE.survey_info) as { screens: { type: string; answer?: unknown }[] };
      const nps = screens.screens.find((s) => s.type === "nps");
      if (nps) nps.answer = String(score);
      const body = JSON.stringify({ ...EXAMPLE, alert_id: `duck-${n}`, timestamp: `${day}T${hour}:30:00.250Z`, platform, survey_info: screens });
      const res = await fetch(`${origin}/webhooks/1flow/${SECRET}`, { method: "POST", headers: { "content-type": "application/json" }, body });
      expect(res.status).toBe(200);
      sent[`duck-${n}`] = body;
    }
  }
  const worker = await mf.getWorker();
  await worker.scheduled({ cron: ARCHIVE_CRON });
}, 120_000);

afterAll(async () => {
  await mf?.dispose();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

async function listed(): Promise<Listed[]> {
  const res = await api("/api/archive");
  expect(res.status).toBe(200);
  const body = (await res.json()) as { files: Listed[]; next_cursor: string | null };
  expect(body.next_cursor).toBeNull();
  return body.files;
}

/** The listed parts copied out of R2 to `<dir>/pulled/<key>`. */
async function pull(files: Listed[]): Promise<string> {
  const out = join(dir, "pulled");
  rmSync(out, { recursive: true, force: true });
  const bucket = await mf.getR2Bucket("ARCHIVE");
  for (const { key } of files) {
    const object = await bucket.get(key);
    if (object === null) throw new Error(`listed ${key} is not in R2`);
    mkdirSync(dirname(join(out, key)), { recursive: true });
    writeFileSync(join(out, key), new Uint8Array(await object.arrayBuffer()));
  }
  return out;
}

describe("the archive, read with DuckDB", () => {
  it("holds every stored response once, with the right types and every column equal to D1's", async () => {
    const files = await listed();
    expect(new Set(files.map((f) => f.date))).toEqual(new Set(["2026-02-27", "2026-02-28", "2026-03-01", "2026-03-09"]));
    const out = await pull(files);
    const duck = await (await DuckDBInstance.create(":memory:")).connect();
    const responses = `read_parquet('${join(out, "responses/*/*.parquet")}', hive_partitioning = true)`;
    const answers = `read_parquet('${join(out, "answers/*/*.parquet")}', hive_partitioning = true)`;

    const types = async (source: string) =>
      Object.fromEntries((await duck.runAndReadAll(`DESCRIBE SELECT * FROM ${source}`)).getRowObjectsJson().map((r) => [r.column_name, r.column_type]));
    expect(await types(responses)).toMatchObject({ submitted_at: "TIMESTAMP", received_at: "TIMESTAMP", nps: "INTEGER", payload: "VARCHAR", alert_id: "VARCHAR" });
    expect(await types(answers)).toMatchObject({ submitted_at: "TIMESTAMP", position: "INTEGER", value: "DOUBLE", answer: "VARCHAR" });

    const { results: stored } = await db.prepare("SELECT * FROM alerts ORDER BY alert_id").all<Record<string, string | null>>();
    const rows = (
      await duck.runAndReadAll(
        `SELECT *, epoch_ms(submitted_at) AS submitted_ms, epoch_ms(received_at) AS received_ms FROM ${responses} ORDER BY alert_id`,
      )
    ).getRowObjectsJson();
    expect(rows).toHaveLength(stored.length);
    expect(stored.length).toBe(8);
    stored.forEach((s, i) => {
      const r = rows[i] as Record<string, unknown>;
      for (const column of ["alert_id", "alert_name", "project_name", "survey_id", "survey_name", "platform", "user_system_id", "user_parameters", "trigger_event_name", "trigger_event_parameters", "payload"]) {
        expect(r[column], column).toBe(s[column]);
      }
      expect(Number(r.submitted_ms)).toBe(Date.parse(String(s.submitted_at)));
      expect(Number(r.received_ms)).toBe(Date.parse(String(s.received_at)));
      expect(r.date).toBe(String(s.submitted_at).slice(0, 10));
      // The original body, byte for byte.
      expect(r.payload).toBe(sent[String(s.alert_id)]);
    });
    const nps = (await duck.runAndReadAll(`SELECT alert_id, nps FROM ${responses} ORDER BY alert_id`)).getRowObjectsJson();
    const { results: firstNps } = await db
      .prepare("SELECT alert_id, (SELECT value FROM answers AS x WHERE x.alert_id = a.alert_id AND x.type = 'nps' ORDER BY position LIMIT 1) AS nps FROM alerts AS a ORDER BY alert_id")
      .all();
    expect(nps).toEqual(firstNps);

    const { results: storedAnswers } = await db
      .prepare("SELECT x.alert_id, a.survey_id, x.position, x.title, x.type, x.answer, x.value FROM answers AS x JOIN alerts AS a USING (alert_id) ORDER BY x.alert_id, x.position")
      .all();
    const archivedAnswers = (
      await duck.runAndReadAll(`SELECT alert_id, survey_id, position, title, type, answer, value FROM ${answers} ORDER BY alert_id, position`)
    ).getRowObjectsJson();
    expect(archivedAnswers).toEqual(storedAnswers);
    duck.closeSync();
  });

  it("npm run archive:query runs the README's DuckDB queries over the local bucket", async () => {
    const readme = readFileSync(join(ROOT, "README.md"), "utf8");
    const section = readme.slice(readme.indexOf("## Archive"));
    const queries = [...section.matchAll(/```sql\n([\s\S]*?)```/g)].map((m) => m[1] ?? "");
    const local = queries.filter((q) => !q.includes("r2://") && !q.includes("CREATE SECRET"));
    expect(local.length).toBeGreaterThanOrEqual(2);
    const results = local.map((sql) => {
      const run = spawnSync(process.execPath, [join(ROOT, "scripts/archive-query.mjs"), "--persist-to", join(dir, "state"), "--out", join(dir, "query"), "--json", sql], {
        encoding: "utf8",
      });
      expect(run.stderr).toBe("");
      expect(run.status).toBe(0);
      return JSON.parse(run.stdout) as Record<string, unknown>[];
    });
    // NPS per week per platform: every (week, platform) of the eight responses, 100 or -100.
    expect(results[0]?.length).toBeGreaterThan(0);
    // Numbers as numbers, not as the text DuckDB's JSON gives a BIGINT or a DOUBLE.
    for (const row of results[0] ?? []) {
      expect([100, -100]).toContain(row.nps);
      expect(typeof row.answers).toBe("number");
    }
    // Detractors' reasons: the four android responses scored 3.
    expect(results[1]).toHaveLength(4);
  });
});
