/** The dead-letter consumer, the admin replay API and its bearer auth. */
import { env, exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { ADMIN_TOKEN, alertRow, callWorker, storedRow } from "./fixtures";
import {
  deliveries,
  FANOUT_ENV,
  message,
  runQueue,
  statusByDestination,
  storedAlert,
  stubDestinations,
  watchSendBatch,
} from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const ADMIN_ENV: Env = { ...FANOUT_ENV, ADMIN_TOKEN };

/** The replay routes are POSTs; the fan-out destinations are configured. */
function api(path: string, init: RequestInit & { token?: string | null } = {}, environment: Env = ADMIN_ENV) {
  return callWorker(path, { method: "POST", ...init }, environment);
}

/** An alert whose crm delivery ran out of retries. */
async function deadAtCrm() {
  stubDestinations({ "crm.test": () => new Response("down", { status: 503 }) });
  const stored = await storedAlert();
  await runQueue("oneflow-alerts", [message(stored.alert_id)]);
  const m = message(stored.alert_id, 11);
  const result = await runQueue("oneflow-alerts-dlq", [m]);
  expect(result.explicitAcks).toEqual([m.id]);
  vi.restoreAllMocks();
  return stored;
}

describe("dead-letter consumer", () => {
  it("marks the undelivered deliveries dead, leaves delivered ones, and acknowledges", async () => {
    const { alert_id } = await deadAtCrm();
    const rows = await deliveries(alert_id);
    expect(statusByDestination(rows)).toEqual({ crm: "dead", warehouse: "delivered" });
    expect(rows.find((r) => r.destination === "crm")).toMatchObject({ attempts: 1, last_status: 503, last_error: "HTTP 503" });
  });

  it("creates a dead row for a destination never attempted", async () => {
    const { alert_id } = await storedAlert();
    await runQueue("oneflow-alerts-dlq", [message(alert_id, 11)]);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ crm: "dead", warehouse: "dead" });
    expect((await deliveries(alert_id))[0]?.last_error).toBe("retries exhausted");
  });

  it("with malformed DESTINATIONS, returns the alert to the outbox instead of dropping it", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("UPDATE alerts SET enqueued_at = '2026-01-01T00:00:00.000Z' WHERE alert_id = ?").bind(alert_id).run();
    const m = message(alert_id, 11);
    const result = await runQueue("oneflow-alerts-dlq", [m], { ...env, DESTINATIONS: "{oops" });
    expect(result.explicitAcks).toEqual([m.id]);
    expect((await storedRow(alert_id)).enqueued_at).toBeNull();
  });

  it("D1 failing: the dead letters are retried, not acknowledged", async () => {
    const { alert_id } = await storedAlert();
    vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: disk I/O error"));
    const m = message(alert_id, 11);
    const result = await runQueue("oneflow-alerts-dlq", [m], { ...FANOUT_ENV, DB: env.DB });
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
  });
});

describe("admin auth on /api", () => {
  it("ADMIN_TOKEN unset: 404 whatever the token", async () => {
    for (const token of [ADMIN_TOKEN, null, ""]) {
      const res = await api("/api/replay", { token, body: '{"status":"dead"}' }, FANOUT_ENV);
      expect(res.status).toBe(404);
      expect(await res.json()).toMatchObject({ ok: false, error: "not_found" });
    }
    expect((await exports.default.fetch("https://worker.test/api/replay", { method: "POST" })).status).toBe(404);
  });

  it.each([
    ["missing", null, undefined],
    ["wrong", "not-the-token", undefined],
    ["a prefix", ADMIN_TOKEN.slice(0, -1), undefined],
    ["not a bearer", undefined, `Basic ${btoa(`x:${ADMIN_TOKEN}`)}`],
  ])("%s token: 401 unauthorized", async (_, token, authorization) => {
    const headers: Record<string, string> = authorization ? { authorization } : {};
    const res = await api("/api/replay", { token: authorization ? null : token, headers, body: '{"status":"dead"}' });
    expect(res.status).toBe(401);
    expect(res.headers.get("x-request-id")).toBeTruthy();
    expect(await res.json()).toMatchObject({ ok: false, error: "unauthorized" });
  });

  it("right token: 200", async () => {
    const res = await api("/api/replay", { body: '{"status":"dead","destination":"crm"}' });
    expect(res.status).toBe(200);
  });
});

describe("replay", () => {
  it("POST /api/alerts/:alert_id/replay turns dead into delivered", async () => {
    const { alert_id } = await deadAtCrm();
    const sent = watchSendBatch();
    const res = await api(`/api/alerts/${alert_id}/replay`);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, alert_id, deliveries: 1, destinations: ["crm"], enqueued: 1 });
    expect(sent.batches).toEqual([[{ body: { v: 1, alert_id }, contentType: "json" }]]);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ crm: "pending", warehouse: "delivered" });

    const received = stubDestinations();
    await runQueue("oneflow-alerts", [message(alert_id)]);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ crm: "delivered", warehouse: "delivered" });
    expect(received.map((r) => r.host)).toEqual(["crm.test"]);
  });

  it("a replay does not resend to a destination that has it, unless forced", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    await runQueue("oneflow-alerts", [message(alert_id)]);
    expect(received).toHaveLength(2);

    const plain = await api(`/api/alerts/${alert_id}/replay`, { body: '{"destination":"crm"}' });
    expect(await plain.json()).toMatchObject({ deliveries: 0 });
    await runQueue("oneflow-alerts", [message(alert_id)]);
    expect(received).toHaveLength(2);

    const forced = await api(`/api/alerts/${alert_id}/replay`, { body: '{"destination":"crm","force":true}' });
    expect(await forced.json()).toMatchObject({ deliveries: 1, destinations: ["crm"] });
    // The first consumer's claim ended with its invocation: the replay's message resends at once.
    const replayed = await runQueue("oneflow-alerts", [message(alert_id)]);
    expect(replayed.retryMessages).toHaveLength(0);
    expect(received.map((r) => r.host).sort()).toEqual(["crm.test", "crm.test", "warehouse.test"]);
    expect((await deliveries(alert_id)).find((d) => d.destination === "crm")).toMatchObject({ status: "delivered", attempts: 2 });
  });

  it("replay of an unknown alert: 404; of an unknown destination or a bad body: 400", async () => {
    expect((await api("/api/alerts/no-such-alert/replay")).status).toBe(404);
    const { alert_id } = await storedAlert();
    const unknown = await api(`/api/alerts/${alert_id}/replay`, { body: '{"destination":"nope"}' });
    expect(unknown.status).toBe(400);
    expect(await unknown.json()).toMatchObject({ error: "invalid_request", issues: [{ path: "destination" }] });
    const bad = await api(`/api/alerts/${alert_id}/replay`, { body: '{"force":"yes"}' });
    expect(bad.status).toBe(400);
    expect(await bad.json()).toMatchObject({ error: "invalid_request", issues: [{ path: "force" }] });
    expect((await api(`/api/alerts/${alert_id}/replay`, { body: "{" })).status).toBe(400);
  });

  it("POST /api/replay resets the chosen deliveries and enqueues their alerts", async () => {
    const a = await deadAtCrm();
    const b = await deadAtCrm();
    const sent = watchSendBatch();
    const res = await api("/api/replay", { body: JSON.stringify({ status: "dead", destination: "crm" }) });
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { deliveries: number; alerts: number; more: boolean };
    expect(answer.deliveries).toBeGreaterThanOrEqual(2);
    expect(answer.more).toBe(false);
    expect(sent.ids()).toEqual(expect.arrayContaining([a.alert_id, b.alert_id]));
    expect(statusByDestination(await deliveries(a.alert_id)).crm).toBe("pending");
    expect(statusByDestination(await deliveries(b.alert_id)).crm).toBe("pending");
  });

  it("POST /api/replay honours since and until", async () => {
    const { alert_id } = await deadAtCrm();
    await env.DB.prepare("UPDATE deliveries SET updated_at = '2020-01-01T00:00:00.000Z' WHERE alert_id = ?").bind(alert_id).run();
    const later = await api("/api/replay", { body: '{"status":"dead","since":"2021-01-01T00:00:00Z"}' });
    expect(later.status).toBe(200);
    expect(statusByDestination(await deliveries(alert_id)).crm).toBe("dead");
    // A row past `until` stays as it is.
    const past = await deadAtCrm();
    await env.DB.prepare("UPDATE deliveries SET updated_at = '2020-01-03T00:00:00.000Z' WHERE alert_id = ?").bind(past.alert_id).run();
    const window = await api("/api/replay", {
      body: '{"status":"dead","since":"2019-12-31T00:00:00Z","until":"2020-01-02T00:00:00+00:00"}',
    });
    expect(await window.json()).toMatchObject({ ok: true });
    expect(statusByDestination(await deliveries(alert_id)).crm).toBe("pending");
    expect(statusByDestination(await deliveries(past.alert_id)).crm).toBe("dead");
  });

  it.each([
    ["{}", "status"],
    ['{"status":"delivered"}', "status"],
    ['{"status":"dead","since":"yesterday"}', "since"],
    ['{"status":"dead","extra":1}', "extra"],
  ])("POST /api/replay with %s: 400 at %s", async (body, path) => {
    const res = await api("/api/replay", { body });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ ok: false, error: "invalid_request", issues: [{ path }] });
  });

  it("a Queue that refuses the replay: 503 queue_unavailable, deliveries left pending for the sweep", async () => {
    const { alert_id } = await deadAtCrm();
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const res = await api(`/api/alerts/${alert_id}/replay`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ error: "queue_unavailable" });
    expect(statusByDestination(await deliveries(alert_id)).crm).toBe("pending");
  });
});
