/**
 * The schema's two forms: migrations/ (how a database changes) and schema.sql
 * (the whole current schema in one file) build the same structure; and a
 * database of version 0.1.0 upgrades through the migrations with its data intact.
 */
import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { eraseAlerts } from "../src/store/erasure";
import { callWorker } from "./fixtures";

/** SQL text compared without comments, quoting, case, `IF NOT EXISTS` or spacing. */
function normalise(sql: string | null): string | null {
  if (sql === null) return null;
  return sql
    .replace(/--[^\n]*/g, " ")
    .replace(/\bIF NOT EXISTS\b/gi, " ")
    .replace(/["`[\]]/g, "")
    .replace(/\s+/g, " ")
    .replace(/\s*([(),=<>])\s*/g, "$1")
    .trim()
    .toLowerCase();
}

interface SchemaObject {
  type: string;
  name: string;
  tbl_name: string;
  sql: string | null;
}

/** Every table's columns, indexes and key, every view and trigger: what a test can tell apart. */
async function structure(db: D1Database) {
  const { results: objects } = await db
    .prepare(
      `SELECT type, name, tbl_name, sql FROM sqlite_schema
       WHERE name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name <> 'd1_migrations'
       ORDER BY type, name`,
    )
    .all<SchemaObject>();
  const tables: Record<string, unknown> = {};
  for (const t of objects.filter((o) => o.type === "table")) {
    const columns = await db.prepare("SELECT name, type, \"notnull\", dflt_value, pk FROM pragma_table_info(?1) ORDER BY cid").bind(t.name).all();
    const { results: indexList } = await db
      .prepare('SELECT name, "unique", origin, partial FROM pragma_index_list(?1) ORDER BY name')
      .bind(t.name)
      .all<{ name: string; unique: number; origin: string; partial: number }>();
    const indexes: Record<string, unknown> = {};
    for (const index of indexList) {
      const cols = await db.prepare("SELECT seqno, name FROM pragma_index_info(?1) ORDER BY seqno").bind(index.name).all();
      // Automatic indexes are named after the table's creation order; compare them by what they index.
      const key = index.origin === "c" ? index.name : `${index.origin}:${JSON.stringify(cols.results)}`;
      const sql = objects.find((o) => o.name === index.name)?.sql ?? null;
      const where = sql !== null && index.partial === 1 ? normalise(sql.replace(/^[\s\S]*?\bWHERE\b/i, "WHERE")) : null;
      indexes[key] = { unique: index.unique, origin: index.origin, columns: cols.results, where };
    }
    tables[t.name] = {
      columns: columns.results,
      indexes,
      without_rowid: /\bWITHOUT\s+ROWID\b/i.test(t.sql ?? ""),
    };
  }
  const code = (type: string) =>
    Object.fromEntries(objects.filter((o) => o.type === type).map((o) => [o.name, normalise(o.sql)]));
  return { tables, views: code("view"), triggers: code("trigger") };
}

describe("migrations and schema.sql", () => {
  it("build the same columns, indexes, views and triggers", async () => {
    await env.SCHEMA_DB.batch(env.TEST_SCHEMA_SQL.map((sql) => env.SCHEMA_DB.prepare(sql)));
    const fromSchema = await structure(env.SCHEMA_DB);
    const fromMigrations = await structure(env.DB);
    expect(Object.keys(fromMigrations.tables)).toContain("alerts");
    expect(Object.keys(fromMigrations.views)).toContain("survey_nps");
    expect(fromSchema).toEqual(fromMigrations);
  });

  it("schema.sql can run again on its own database (idempotent)", async () => {
    const before = await structure(env.SCHEMA_DB);
    await env.SCHEMA_DB.batch(env.TEST_SCHEMA_SQL.map((sql) => env.SCHEMA_DB.prepare(sql)));
    expect(await structure(env.SCHEMA_DB)).toEqual(before);
  });
});

describe("upgrading a 0.1.0 database", () => {
  it("keeps every row, readable through the API, after every migration", async () => {
    const db = env.UPGRADE_DB;
    const [initial] = env.TEST_MIGRATIONS;
    expect(initial?.name).toBe("0001_initial.sql");
    // As 0.1.0's README had users do: schema.sql executed, no migrations table.
    await db.batch((initial?.queries ?? []).map((sql) => db.prepare(sql)));
    const payload = (id: string, user: string) =>
      JSON.stringify({ alert_id: id, alert_name: "submitted_survey", survey_id: "s1", timestamp: "2026-01-02T03:04:05Z", user: { user_system_id: user }, survey_info: { name: "NPS", screens: [{ title: "Score?", type: "nps", answer: "9" }, { title: "Why?", type: "text", answer: "fast" }] } });
    await db.batch([
      db.prepare(
        `INSERT INTO alerts (alert_id, alert_name, project_name, survey_id, survey_name, platform, user_system_id,
           user_parameters, trigger_event_name, trigger_event_parameters, submitted_at, received_at, payload, payload_sha256, enqueued_at)
         VALUES ('old-1', 'submitted_survey', 'P', 's1', 'NPS', 'ios', 'u1', '{"plan":"pro"}', 'open', NULL,
           '2026-01-02T03:04:05.000Z', '2026-01-02T03:04:06.000Z', ?1, 'sha-1', '2026-01-02T03:04:07.000Z'),
                ('old-2', 'submitted_survey', NULL, 's1', 'NPS', NULL, 'u2', NULL, NULL, NULL,
           '2026-01-03T03:04:05.000Z', '2026-01-03T03:04:06.000Z', ?2, 'sha-2', NULL)`,
      ).bind(payload("old-1", "u1"), payload("old-2", "u2")),
      db.prepare(
        `INSERT INTO answers (alert_id, position, title, type, answer, value) VALUES
           ('old-1', 0, 'Score?', 'nps', '9', 9), ('old-1', 1, 'Why?', 'text', 'fast', NULL),
           ('old-2', 0, 'Score?', 'nps', '3', 3), ('old-2', 1, 'Why?', 'text', NULL, NULL)`,
      ),
      db.prepare(
        `INSERT INTO deliveries (alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at) VALUES
           ('old-1', 'crm', 'delivered', 1, 200, NULL, '2026-01-02T03:04:08.000Z', '2026-01-02T03:04:08.000Z'),
           ('old-2', 'crm', 'dead', 10, 500, 'HTTP 500', '2026-01-04T00:00:00.000Z', NULL)`,
      ),
      db.prepare(
        `INSERT INTO rejected_payloads (id, reason, detail, body, alert_id, size, first_seen_at, last_seen_at, attempts)
         VALUES ('rej-1', 'invalid_json', '{"message":"x"}', '{oops', NULL, 5, '2026-01-01T00:00:00.000Z', '2026-01-02T00:00:00.000Z', 2)`,
      ),
      db.prepare("INSERT INTO ingest_daily (day, duplicates) VALUES ('2026-01-02', 4)"),
    ]);

    await applyD1Migrations(db, env.TEST_MIGRATIONS);

    const upgraded = { ...env, DB: db };
    const get = async (path: string) => {
      const res = await callWorker(path, {}, { ...upgraded, ADMIN_TOKEN: "admin-token-for-tests" });
      expect(res.status, path).toBe(200);
      return res.json<Record<string, unknown>>();
    };
    const one = await get("/api/alerts/old-1");
    expect(one.alert).toMatchObject({
      alert_id: "old-1",
      project_name: "P",
      platform: "ios",
      user_system_id: "u1",
      user_parameters: { plan: "pro" },
      trigger_event_name: "open",
      submitted_at: "2026-01-02T03:04:05.000Z",
      received_at: "2026-01-02T03:04:06.000Z",
      enqueued_at: "2026-01-02T03:04:07.000Z",
      payload: payload("old-1", "u1"),
      answers: [
        { position: 0, title: "Score?", type: "nps", answer: "9", value: 9 },
        { position: 1, title: "Why?", type: "text", answer: "fast", value: null },
      ],
      deliveries: [{ destination: "crm", status: "delivered", attempts: 1, last_status: 200 }],
    });
    const two = await get("/api/alerts/old-2");
    expect(two.alert).toMatchObject({
      enqueued_at: null,
      answers: [
        { position: 0, answer: "3", value: 3 },
        { position: 1, answer: null, value: null },
      ],
      deliveries: [{ destination: "crm", status: "dead", attempts: 10, last_error: "HTTP 500" }],
    });
    const list = await get("/api/alerts?survey_id=s1");
    expect((list.alerts as { alert_id: string }[]).map((a) => a.alert_id)).toEqual(["old-2", "old-1"]);
    const rejected = await get("/api/rejected");
    expect(rejected.rejected).toMatchObject([{ id: "rej-1", reason: "invalid_json", body: "{oops", attempts: 2 }]);
    const surveys = await get("/api/surveys");
    expect(surveys.surveys).toMatchObject([{ survey_id: "s1", responses: 2, nps: 0 }]);

    // What users query with `wrangler d1 execute` keeps working.
    const answers = await db.prepare("SELECT alert_id, position, answer, value FROM answers ORDER BY alert_id, position").all();
    expect(answers.results).toHaveLength(4);
    const nps = await db.prepare("SELECT survey_id, responses, promoters, detractors, nps FROM survey_nps").all();
    expect(nps.results).toEqual([{ survey_id: "s1", responses: 2, promoters: 1, detractors: 1, nps: 0 }]);

    // Applying again is a no-op.
    await applyD1Migrations(db, env.TEST_MIGRATIONS);
    expect((await db.prepare("SELECT COUNT(*) AS n FROM alerts").first<{ n: number }>())?.n).toBe(2);
  });
});

describe("upgrading a database of 0.6.0 (before the arrival counters of 0017)", () => {
  it("counts what it holds that arrived on another day, so that erasing it leaves every arrival counter at zero, never below", async () => {
    const db = env.ARRIVALS_DB;
    const before = env.TEST_MIGRATIONS.filter((m) => m.name < "0017");
    expect(before.at(-1)?.name).toBe("0016_identify_in_flight.sql");
    await applyD1Migrations(db, before);
    // Submitted on the 2nd, arrived on the 5th (a 1Flow retry, the spool): stored by 0.6.0, which had no arrival counters.
    await db.batch([
      db.prepare(
        `INSERT INTO alerts (alert_id, alert_name, survey_id, survey_name, submitted_at, received_at, payload, payload_sha256, enqueued_at, fanned_out_at)
         VALUES ('late-1', 'submitted_survey', 's1', 'NPS', '2026-01-02T03:04:05.000Z', '2026-01-05T00:00:00.000Z', '{}', 'sha-late', '2026-01-05T00:00:01.000Z', '2026-01-05T00:00:02.000Z')`,
      ),
      db.prepare("INSERT INTO survey_daily (survey_id, day, survey_name, responses) VALUES ('s1', '2026-01-02', 'NPS', 1)"),
      // The day it arrived has its row already (two duplicates counted that day).
      db.prepare("INSERT INTO ingest_daily (day, duplicates) VALUES ('2026-01-05', 2)"),
    ]);
    await applyD1Migrations(db, env.TEST_MIGRATIONS);
    const counters = async () => ({
      later: (await db.prepare("SELECT arrived_later FROM survey_daily WHERE survey_id = 's1' AND day = '2026-01-02'").first<{ arrived_later: number }>())?.arrived_later,
      other: await db.prepare("SELECT arrived_other_day, duplicates FROM ingest_daily WHERE day = '2026-01-05'").first(),
    });
    expect(await counters()).toEqual({ later: 1, other: { arrived_other_day: 1, duplicates: 2 } });
    await eraseAlerts(db, ["late-1"]);
    expect(await counters()).toEqual({ later: 0, other: { arrived_other_day: 0, duplicates: 2 } });
  });
});
