/**
 * Retention and the tombstones (issue 25): retention reaches every finished row behind any
 * number of unfinished older ones at a bounded cost a tick (path 7); a response it deleted
 * inside 1Flow's three days of retries is refused as a duplicate, not stored again (path 1);
 * tombstones outlive those three days and are forgotten after seven; erasure takes a user's
 * response out of the archive's late list.
 */
import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import { sha256Hex } from "../src/hash";
import worker from "../src/index";
import { applyRetention } from "../src/retention";
import { RETENTION_CANDIDATES_SQL } from "../src/store/erasure";
import { alertRow, callWorker, examplePayload, freshId, post } from "./fixtures";
import { meterD1, zeroCost } from "./meter";

const DAY_MS = 86_400_000;
const ALERT_COLUMNS = "alert_id, alert_name, survey_id, submitted_at, received_at, payload, payload_sha256, enqueued_at, fanned_out_at";

/** `n` alerts made by SQL alone: `prefix-i`, submitted at `submitted_at`, finished or not. */
async function generate(n: number, prefix: string, submitted_at: string, finished: boolean) {
  await env.DB.prepare(
    `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ${n})
     INSERT INTO alerts (${ALERT_COLUMNS}) SELECT ?1 || '-' || i, 'a', 's', ?2, ?2, '{}', 'x', ?3, ?3 FROM seq`,
  )
    .bind(prefix, submitted_at, finished ? submitted_at : null)
    .run();
}

const countLike = (prefix: string) => env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id LIKE ?").bind(`${prefix}-%`).first<number>("n");

const cron = (environment: Env, at: Date) => worker.scheduled(createScheduledController({ scheduledTime: at, cron: "*/5 * * * *" }), environment);

describe("retention behind unfinished rows (path 7)", () => {
  it("deletes every finished row behind 600 unfinished older ones within 3 ticks, reading ≤ 2,500 rows a tick", async () => {
    const unfinished = freshId("stuck");
    const finished = freshId("done");
    // 600 older rows the Queue never took (unfinished), then 150 finished newer ones.
    await generate(600, unfinished, "2019-06-01T00:00:00.000Z", false);
    await generate(150, finished, "2019-07-01T00:00:00.000Z", true);
    const reads: number[] = [];
    for (let i = 0; i < 3 && ((await countLike(finished)) ?? 0) > 0; i++) {
      const cost = zeroCost();
      await applyRetention(meterD1(env.DB, cost), 30, new Date());
      reads.push(cost.rows_read);
    }
    const left = { finished: await countLike(finished), unfinished: await countLike(unfinished) };
    await env.DB.prepare("DELETE FROM alerts WHERE alert_id LIKE ?").bind(`${unfinished}-%`).run();
    expect(left).toEqual({ finished: 0, unfinished: 600 });
    // The first tick looks at 500 unfinished rows and stops; the second goes on after them,
    // looks at the last 100 and at the 150 finished ones, and erases those.
    expect(reads).toHaveLength(2);
    expect(reads[0]).toBeLessThanOrEqual(760); // measured 506
    expect(reads[1]).toBeLessThanOrEqual(4_700); // measured 3,123 (19 a response erased)
  });

  it("reaches the end, then starts from the oldest again: a row finished meanwhile is deleted on a later pass", async () => {
    const prefix = freshId("stuck");
    await generate(600, prefix, "2019-06-02T00:00:00.000Z", false);
    // The first run stops after 500 of them; the oldest then finishes.
    await applyRetention(env.DB, 30, new Date());
    await env.DB.prepare("UPDATE alerts SET enqueued_at = submitted_at, fanned_out_at = submitted_at WHERE alert_id = ?").bind(`${prefix}-1`).run();
    await applyRetention(env.DB, 30, new Date());
    expect(await alertRow(`${prefix}-1`)).not.toBeNull();
    await applyRetention(env.DB, 30, new Date());
    expect(await alertRow(`${prefix}-1`)).toBeNull();
    await env.DB.prepare("DELETE FROM alerts WHERE alert_id LIKE ?").bind(`${prefix}-%`).run();
  });
});

describe("retention's tombstones (path 1)", () => {
  it("a response it deleted inside 1Flow's retry window is refused as a duplicate when 1Flow retries it", async () => {
    // RETENTION_DAYS=1: a response submitted two days ago and received just now.
    const p = examplePayload({ timestamp: new Date(Date.now() - 2 * DAY_MS).toISOString() });
    await post(p);
    await env.DB.prepare("UPDATE alerts SET enqueued_at = received_at, fanned_out_at = received_at WHERE alert_id = ?").bind(p.alert_id).run();
    await cron({ ...env, ARCHIVE: undefined, RETENTION_DAYS: "1" } as Env, new Date());
    expect(await alertRow(p.alert_id)).toBeNull();
    const retry = await post(p);
    expect(await retry.json()).toEqual({ ok: true, alert_id: p.alert_id, duplicate: true });
    expect(await alertRow(p.alert_id)).toBeNull();
  });

  it("a response the archive holds is refused after retention removed it, however late its copy comes back; a different body is quarantined as a conflict", async () => {
    const p = examplePayload({ timestamp: "2019-08-02T00:00:00.000Z" });
    await post(p);
    await env.DB.prepare("UPDATE alerts SET received_at = ?2, enqueued_at = ?2, fanned_out_at = ?2 WHERE alert_id = ?1").bind(p.alert_id, "2019-08-02T00:00:01.000Z").run();
    // The archive took it (its row, as a tick writes it), then retention removed it from D1 with no tombstone.
    await env.DB.prepare(
      "INSERT INTO archived_alerts (alert_id, user_sha256, responses_part, answers_part, payload_sha256) SELECT alert_id, NULL, 1, NULL, payload_sha256 FROM alerts WHERE alert_id = ?1",
    )
      .bind(p.alert_id)
      .run();
    await cron({ ...env, ARCHIVE: undefined, RETENTION_DAYS: "30" } as Env, new Date());
    expect(await alertRow(p.alert_id)).toBeNull();
    const quarantined = () => env.DB.prepare("SELECT COUNT(*) AS n FROM rejected_payloads WHERE alert_id = ?1 AND reason = 'alert_id_conflict'").bind(p.alert_id).first<number>("n");
    const again = await post(p);
    expect(await again.json()).toEqual({ ok: true, alert_id: p.alert_id, duplicate: true });
    expect(await alertRow(p.alert_id)).toBeNull();
    expect(await quarantined()).toBe(0);
    const edited = await post({ ...p, survey_info: { ...(p.survey_info as Record<string, unknown>), name: "NPS (edited)" } });
    expect(await edited.json()).toEqual({ ok: true, alert_id: p.alert_id, duplicate: true });
    expect(await alertRow(p.alert_id)).toBeNull();
    expect(await quarantined()).toBe(1);
    await env.DB.prepare("DELETE FROM archived_alerts WHERE alert_id = ?").bind(p.alert_id).run();
  });

  it("writes no tombstone for a response received before the retry window (1Flow no longer retries it)", async () => {
    const p = examplePayload({ timestamp: "2019-08-01T00:00:00.000Z" });
    await post(p);
    await env.DB.prepare("UPDATE alerts SET received_at = ?2, enqueued_at = ?2, fanned_out_at = ?2 WHERE alert_id = ?1").bind(p.alert_id, "2019-08-01T00:00:01.000Z").run();
    await cron({ ...env, ARCHIVE: undefined, RETENTION_DAYS: "30" } as Env, new Date());
    expect(await alertRow(p.alert_id)).toBeNull();
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM erased_alerts WHERE alert_id = ?").bind(p.alert_id).first<number>("n")).toBe(0);
  });

  it("tombstones (of responses and of users) refuse a retry 3 days later, and are forgotten after 8 days", async () => {
    const user = freshId("tomb-user");
    const p = examplePayload({ user: { user_system_id: user }, timestamp: new Date(Date.now() - 60_000).toISOString() });
    await post(p);
    expect((await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" })).status).toBe(200);
    const tombstones = async () => ({
      alert: await env.DB.prepare("SELECT COUNT(*) AS n FROM erased_alerts WHERE alert_id = ?").bind(p.alert_id).first<number>("n"),
      user: await env.DB.prepare("SELECT COUNT(*) AS n FROM erased_users WHERE user_sha256 = ?").bind(await sha256Hex(user)).first<number>("n"),
    });
    expect(await tombstones()).toEqual({ alert: 1, user: 1 });
    await cron({ ...env, ARCHIVE: undefined } as Env, new Date(Date.now() + 3 * DAY_MS));
    expect(await tombstones()).toEqual({ alert: 1, user: 1 });
    expect(await (await post(p)).json()).toMatchObject({ duplicate: true });
    expect(await alertRow(p.alert_id)).toBeNull();
    await cron({ ...env, ARCHIVE: undefined } as Env, new Date(Date.now() + 8 * DAY_MS));
    expect(await tombstones()).toEqual({ alert: 0, user: 0 });
  });
});

describe("erasure and the archive's late list", () => {
  it("erasing a user deletes their archive_late rows", async () => {
    const user = freshId("late-user");
    const p = examplePayload({ user: { user_system_id: user }, timestamp: "2019-09-01T00:00:00.000Z" });
    await post(p);
    await env.DB.prepare("INSERT INTO archive_late (alert_id, stored_at) VALUES (?, ?) ON CONFLICT DO NOTHING").bind(p.alert_id, new Date().toISOString()).run();
    expect(await (await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" })).json()).toMatchObject({ more: false });
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM archive_late WHERE alert_id = ?").bind(p.alert_id).first<number>("n")).toBe(0);
  });
});

describe("retention's read", () => {
  it("seeks alerts_by_time from the kept cursor (or the given keyset), never a walk from the oldest", async () => {
    for (const params of [
      ["2026", null, null, "2026", 100, 1],
      ["2026", "2020", "a", "2026", 100, 1],
    ]) {
      const { results } = await env.DB.prepare(`EXPLAIN QUERY PLAN ${RETENTION_CANDIDATES_SQL}`).bind(...params).all<{ detail: string }>();
      const plan = results.map((r) => r.detail).join(" | ");
      expect(plan).toContain("SEARCH a USING INDEX alerts_by_time ((submitted_at,alert_id)>(?,?)");
      expect(plan).not.toContain("TEMP B-TREE");
    }
  });
});
