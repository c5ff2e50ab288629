/** The operator's API: alerts, the quarantine and its reprocessing, erasure and retention. */
import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { sha256Hex } from "../src/ingest/ingest";
import { ADMIN_TOKEN, alertRow, answerRows, callWorker, examplePayload, post, quarantinedValidBody, rejectedRow } from "./fixtures";

const api = callWorker;

async function json<T>(res: Response): Promise<T> {
  return (await res.json()) as T;
}

interface AlertsPage {
  alerts: { alert_id: string; submitted_at: string; answers: unknown[]; deliveries: unknown[] }[];
  next_cursor: string | null;
}

describe("auth on every data route", () => {
  it.each([
    ["GET", "/api/alerts"],
    ["GET", "/api/alerts/x"],
    ["GET", "/api/rejected"],
    ["POST", "/api/rejected/x/reprocess"],
    ["DELETE", "/api/users/u"],
    ["GET", "/api/surveys"],
    ["GET", "/api/surveys/s/nps"],
    ["GET", "/api/export.csv"],
    ["GET", "/api/openapi.json"],
  ])("%s %s: 404 without ADMIN_TOKEN, 401 with a wrong token", async (method, path) => {
    expect((await api(path, { method }, { ...env, ADMIN_TOKEN: "" })).status).toBe(404);
    expect((await api(path, { method, token: "wrong" })).status).toBe(401);
    expect((await api(path, { method, token: null })).status).toBe(401);
  });
});

describe("GET /api/alerts", () => {
  it("pages through more rows than one page, newest first, with no gaps or repeats", async () => {
    const survey_id = `page-${crypto.randomUUID()}`;
    const ids: string[] = [];
    for (let i = 0; i < 23; i++) {
      const p = examplePayload({ survey_id, timestamp: new Date(Date.UTC(2024, 0, 1, 0, i % 7)).toISOString() });
      ids.push(p.alert_id);
      await post(p);
    }
    const seen: string[] = [];
    let cursor: string | null = null;
    let pages = 0;
    do {
      const query: string = `survey_id=${survey_id}&limit=5${cursor ? `&cursor=${cursor}` : ""}`;
      const page: AlertsPage = await json(await api(`/api/alerts?${query}`));
      pages++;
      const keys = page.alerts.map((a) => `${a.submitted_at}|${a.alert_id}`);
      expect([...keys].sort().reverse()).toEqual(keys);
      seen.push(...page.alerts.map((a) => a.alert_id));
      cursor = page.next_cursor;
    } while (cursor);
    expect(pages).toBe(5);
    expect(seen).toHaveLength(23);
    expect(new Set(seen)).toEqual(new Set(ids));
  });

  it("filters by user and time, and carries answers and deliveries", async () => {
    const user = `user-${crypto.randomUUID()}`;
    const early = examplePayload({ user: { user_system_id: user }, timestamp: "2023-01-01T00:00:00Z" });
    const late = examplePayload({ user: { user_system_id: user }, timestamp: "2023-06-01T00:00:00Z" });
    // Past `until`: excluded from the window below.
    const after = examplePayload({ user: { user_system_id: user }, timestamp: "2024-02-01T00:00:00Z" });
    await post(early);
    await post(late);
    await post(after);
    const all: AlertsPage = await json(await api(`/api/alerts?user_system_id=${user}`));
    expect(all.alerts.map((a) => a.alert_id)).toEqual([after.alert_id, late.alert_id, early.alert_id]);
    expect(all.alerts[0]?.answers).toHaveLength(2);
    expect(all.alerts[0]?.deliveries).toEqual([]);
    const windowed: AlertsPage = await json(
      await api(`/api/alerts?user_system_id=${user}&since=2023-03-01T00:00:00Z&until=2023-12-31T00:00:00Z`),
    );
    expect(windowed.alerts.map((a) => a.alert_id)).toEqual([late.alert_id]);
  });

  it.each([
    ["limit=0", "limit"],
    ["limit=501", "limit"],
    ["limit=ten", "limit"],
    ["since=yesterday", "since"],
    ["cursor=nonsense", "cursor"],
    ["colour=red", "colour"],
  ])("?%s: 400 at %s", async (query, path) => {
    const res = await api(`/api/alerts?${query}`);
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ ok: false, error: "invalid_request", issues: [{ path }] });
  });
});

describe("GET /api/alerts/:alert_id", () => {
  it("answers the alert with answers, deliveries and the raw payload", async () => {
    const p = examplePayload();
    const body = JSON.stringify(p, null, 2);
    await post(body);
    const res = await api(`/api/alerts/${p.alert_id}`);
    const { alert } = await json<{ alert: { payload: string; answers: unknown[]; user_parameters: unknown } }>(res);
    expect(alert.payload).toBe(body);
    expect(alert.answers).toHaveLength(2);
    expect(alert.user_parameters).toEqual({ firstName: "John", lastName: "Wick" });
    expect((await api("/api/alerts/nope")).status).toBe(404);
  });
});

describe("quarantine", () => {
  it("lists rejected bodies, newest first, paginated", async () => {
    for (let i = 0; i < 4; i++) await post(`{broken ${crypto.randomUUID()}`);
    const first = await json<{ rejected: { id: string; reason: string }[]; next_cursor: string }>(
      await api("/api/rejected?limit=2"),
    );
    expect(first.rejected).toHaveLength(2);
    expect(first.rejected[0]?.reason).toBe("invalid_json");
    const second = await json<{ rejected: { id: string }[] }>(await api(`/api/rejected?limit=2&cursor=${first.next_cursor}`));
    expect(second.rejected.map((r) => r.id)).not.toContain(first.rejected[0]?.id);
  });

  it("a body refused under a stricter rule is accepted on reprocess, stored, enqueued and taken out", async () => {
    const { payload: p, body, id } = await quarantinedValidBody();
    const res = await api(`/api/rejected/${id}/reprocess`, { method: "POST" });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, alert_id: p.alert_id, duplicate: false });
    expect((await alertRow(p.alert_id))?.payload).toBe(body);
    expect(await answerRows(p.alert_id)).toHaveLength(2);
    expect(await rejectedRow(id)).toBeNull();
  });

  it("a body that still fails answers 422 with the issues and stays", async () => {
    const body = JSON.stringify({ ...examplePayload(), timestamp: "never" });
    await post(body);
    const id = await sha256Hex(body);
    const res = await api(`/api/rejected/${id}/reprocess`, { method: "POST" });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: "invalid_payload", issues: [{ path: "timestamp" }] });
    expect((await rejectedRow(id))?.attempts).toBe(1);
    expect((await api("/api/rejected/not-there/reprocess", { method: "POST" })).status).toBe(404);
  });
});

describe("erasure and retention", () => {
  it("DELETE /api/users/:id erases the user's alerts, answers, deliveries and quarantined mentions, and nothing else", async () => {
    const user = `erase-${crypto.randomUUID()}`;
    const mine = examplePayload({ user: { user_system_id: user } });
    const other = examplePayload();
    await post(mine);
    await post(other);
    await post(JSON.stringify({ ...mine, platform: "conflicting body" }));
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'delivered', 1, 'x')")
      .bind(mine.alert_id)
      .run();
    const res = await api(`/api/users/${user}`, { method: "DELETE" });
    expect(await res.json()).toEqual({ ok: true, erased: { alerts: 1, answers: 2, deliveries: 1, rejected_payloads: 1, archive_parts: 0 }, more: false });
    expect(await alertRow(mine.alert_id)).toBeNull();
    expect(await answerRows(mine.alert_id)).toEqual([]);
    const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM rejected_payloads WHERE alert_id = ?").bind(mine.alert_id).first();
    expect(left).toEqual({ n: 0 });
    expect(await alertRow(other.alert_id)).not.toBeNull();
    expect(await answerRows(other.alert_id)).toHaveLength(2);
  });

  it("erasure also removes the user's quarantined bodies that never became alerts, found without reading every body", async () => {
    const user = `q-${crypto.randomUUID()}`;
    const refused = JSON.stringify({ ...examplePayload({ user: { user_system_id: user } }), timestamp: "not a time" });
    const other = JSON.stringify({ ...examplePayload(), timestamp: "not a time" });
    await post(refused);
    await post(other);
    const res = await api(`/api/users/${user}`, { method: "DELETE" });
    expect(await res.json()).toMatchObject({ erased: { alerts: 0, rejected_payloads: 1 }, more: false });
    expect(await rejectedRow(await sha256Hex(refused))).toBeNull();
    expect(await rejectedRow(await sha256Hex(other))).not.toBeNull();
    const plan = await env.DB.prepare(
      "EXPLAIN QUERY PLAN DELETE FROM rejected_payloads WHERE json_valid(body) AND json_extract(body, '$.user.user_system_id') = ?1",
    )
      .bind(user)
      .all<{ detail: string }>();
    expect(plan.results.map((r) => r.detail).join(" ")).toContain("USING INDEX rejected_by_user");
  });

  it("erasure works in chunks: 150 alerts of one user in one request, each chunk one batch", async () => {
    const user = `many-${crypto.randomUUID()}`;
    await Promise.all(Array.from({ length: 150 }, () => post(examplePayload({ user: { user_system_id: user } }))));
    // Batches of this request alone (a spy on the binding would also count other work in flight).
    const batches: number[] = [];
    const DB = new Proxy(env.DB, {
      get(target, prop) {
        if (prop === "batch") {
          return (statements: D1PreparedStatement[]) => {
            batches.push(statements.length);
            return target.batch(statements);
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const res = await callWorker(`/api/users/${user}`, { method: "DELETE" }, { ...env, ADMIN_TOKEN, DB });
    expect(await res.json()).toMatchObject({ erased: { alerts: 150, answers: 300 }, more: false });
    // Two chunks of at most 100: two batches, each bound to one JSON array, never a list of 150
    // parameters; then one batch for the rows that name the user elsewhere.
    expect(batches).toHaveLength(3);
    vi.restoreAllMocks();
    const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE user_system_id = ?").bind(user).first();
    expect(left).toEqual({ n: 0 });
  });

  it("a tombstone stops 1Flow's later retry from storing an erased response again", async () => {
    const user = `tomb-${crypto.randomUUID()}`;
    const mine = examplePayload({ user: { user_system_id: user } });
    await post(mine);
    await api(`/api/users/${user}`, { method: "DELETE" });
    const retry = await post(mine);
    expect(retry.status).toBe(200);
    expect(await retry.json()).toEqual({ ok: true, alert_id: mine.alert_id, duplicate: true });
    expect(await alertRow(mine.alert_id)).toBeNull();
    expect(await rejectedRow(await sha256Hex(JSON.stringify(mine)))).toBeNull();
    // A response of that user submitted after the erasure is stored: the user's tombstone
    // refuses only what they had submitted before it.
    const later = examplePayload({ user: { user_system_id: user }, timestamp: new Date(Date.now() + 1_000).toISOString() });
    expect(await (await post(later)).json()).toMatchObject({ duplicate: false });
  });

  it("retention never deletes a response whose fan-out is unfinished", async () => {
    const old = { timestamp: "2020-01-01T00:00:00.000Z" };
    const done = examplePayload(old);
    const notSent = examplePayload(old);
    const pending = examplePayload(old);
    for (const p of [done, notSent, pending]) await post(p);
    await env.DB.prepare("UPDATE alerts SET enqueued_at = '2020-01-01T00:00:00.000Z', fanned_out_at = '2020-01-01T00:00:00.000Z' WHERE alert_id IN (?, ?)").bind(done.alert_id, pending.alert_id).run();
    await env.DB.prepare("UPDATE alerts SET enqueued_at = NULL WHERE alert_id = ?").bind(notSent.alert_id).run();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'pending', 2, 'x')")
      .bind(pending.alert_id)
      .run();
    await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: "*/5 * * * *" }), { ...env, ARCHIVE: undefined, RETENTION_DAYS: "30" });
    expect(await alertRow(done.alert_id)).toBeNull();
    expect(await alertRow(notSent.alert_id)).not.toBeNull();
    expect(await alertRow(pending.alert_id)).not.toBeNull();
  });

  it("RETENTION_DAYS makes the cron erase what was submitted earlier, and nothing newer", async () => {
    const old = examplePayload({ timestamp: "2020-01-01T00:00:00.000Z" });
    const recent = examplePayload({ timestamp: new Date().toISOString() });
    await post(old);
    await post(recent);
    await env.DB.prepare("UPDATE alerts SET enqueued_at = '2020-01-01T00:00:00.000Z', fanned_out_at = '2020-01-01T00:00:00.000Z' WHERE alert_id = ?").bind(old.alert_id).run();
    // Without the archive bound (with it, retention waits for the archive: test/archive.test.ts).
    await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: "*/5 * * * *" }), {
      ...env,
      ARCHIVE: undefined,
      RETENTION_DAYS: "30",
    });
    expect(await alertRow(old.alert_id)).toBeNull();
    expect(await answerRows(old.alert_id)).toEqual([]);
    expect(await alertRow(recent.alert_id)).not.toBeNull();
    expect(await answerRows(recent.alert_id)).toHaveLength(2);
  });

  it("without RETENTION_DAYS the cron keeps everything", async () => {
    const old = examplePayload({ timestamp: "2019-01-01T00:00:00.000Z" });
    await post(old);
    // Finished, and the archive unbound: any retention period at all would delete it.
    await env.DB.prepare("UPDATE alerts SET enqueued_at = '2019-01-01T00:00:00.000Z', fanned_out_at = '2019-01-01T00:00:00.000Z' WHERE alert_id = ?")
      .bind(old.alert_id)
      .run();
    for (const unset of ["", undefined]) {
      await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: "*/5 * * * *" }), { ...env, ARCHIVE: undefined, RETENTION_DAYS: unset } as typeof env);
    }
    expect(await alertRow(old.alert_id)).not.toBeNull();
  });
});
