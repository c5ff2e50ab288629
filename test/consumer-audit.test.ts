/**
 * Issue 25, the tests the audit found missing: SUBREQUEST_BUDGET counted over one whole
 * consumer invocation, the 101st destination refused, a dead letter for a disabled
 * destination, and `cancelled` (a replay leaves it alone, `more` past 1,000, a DELETE with
 * more than 5,000 pending).
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { MAX_DESTINATIONS } from "../src/limits";
import { ADMIN_TOKEN, callWorker, freshId } from "./fixtures";
import { deliveries, FANOUT_ENV, message, runQueue, storedAlert, stubDestinations, watchSendBatch } from "./fanout-fixtures";
import { meterD1, zeroCost } from "./meter";

afterEach(() => {
  vi.restoreAllMocks();
});

const API_ENV: Env = { ...env, ADMIN_TOKEN, DESTINATIONS: "" };

function json(method: string, body?: unknown): RequestInit {
  return body === undefined ? { method } : { method, body: JSON.stringify(body), headers: { "content-type": "application/json" } };
}

async function pendingRows(destination: string, n: number, prefix: string) {
  await env.DB.prepare(
    `WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?3)
     INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at)
     SELECT ?2 || '-' || i, ?1, 'pending', 1, '2020-01-01T00:00:00.000Z' FROM k`,
  )
    .bind(destination, prefix, n)
    .run();
}

describe("SUBREQUEST_BUDGET over one consumer invocation", () => {
  it("12 destinations, SUBREQUEST_BUDGET=20: one invocation makes at most 20 subrequests (D1 calls, Queue sends and requests together)", async () => {
    const names = Array.from({ length: 12 }, (_, i) => freshId(`sub${i}`));
    const alerts = [await storedAlert(), await storedAlert()];
    const received = stubDestinations();
    const sent = watchSendBatch();
    const cost = zeroCost();
    const ENV: Env = {
      ...FANOUT_ENV,
      DESTINATIONS: JSON.stringify(names.map((name, i) => ({ name, url: `https://sub${i}.test/h` }))),
      SUBREQUEST_BUDGET: "20",
      DB: meterD1(env.DB, cost),
    };
    const result = await runQueue("oneflow-alerts", alerts.map((a) => message(a.alert_id)), ENV);
    expect(result.retryMessages).toEqual([]);
    const subrequests = cost.calls + sent.spy.mock.calls.length + received.length;
    expect(received.length).toBeGreaterThan(0);
    // Measured: 4 D1 calls (the destinations' version, the claim, its extension, the record), 15 requests, 1 carry-over.
    expect(subrequests).toBeLessThanOrEqual(20);
  });
});

describe("at most MAX_DESTINATIONS", () => {
  it("the 101st destination is refused with a 400; replacing one of the 100 still works", async () => {
    const existing = await env.DB.prepare("SELECT COUNT(*) AS n FROM destinations").first<{ n: number }>();
    const names: string[] = [];
    for (let i = existing?.n ?? 0; i < MAX_DESTINATIONS; i++) {
      const name = freshId(`cap${i}`);
      names.push(name);
      const res = await callWorker(`/api/destinations/${name}`, json("PUT", { url: `https://cap${i}.test/h` }), API_ENV);
      expect(res.status).toBe(201);
    }
    const over = await callWorker(`/api/destinations/${freshId("cap-over")}`, json("PUT", { url: "https://cap-over.test/h" }), API_ENV);
    expect(over.status).toBe(400);
    expect(JSON.stringify(await over.json())).toContain(`at most ${MAX_DESTINATIONS} destinations`);
    const replace = await callWorker(`/api/destinations/${names[0]}`, json("PUT", { url: "https://cap-replaced.test/h" }), API_ENV);
    expect(replace.status).toBe(200);
    await env.DB.prepare("DELETE FROM destinations").run();
  });
});

describe("the dead-letter consumer and a disabled destination", () => {
  it("a dead letter never makes dead what a disabled destination holds (no attempt of it failed); an enabled one's is dead", async () => {
    const off = freshId("dl-off");
    const on = freshId("dl-on");
    const ENV: Env = {
      ...FANOUT_ENV,
      DESTINATIONS: JSON.stringify([
        { name: off, url: "https://dl-off.test/h", enabled: false },
        { name: on, url: "https://dl-on.test/h" },
      ]),
    };
    const { alert_id } = await storedAlert();
    for (const name of [off, on]) {
      await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, ?, 'pending', 3, 'x')").bind(alert_id, name).run();
    }
    const m = message(alert_id, 11);
    const result = await runQueue("oneflow-alerts-dlq", [m], ENV);
    expect(result.explicitAcks).toEqual([m.id]);
    const rows = Object.fromEntries((await deliveries(alert_id)).map((r) => [r.destination, r.status]));
    expect(rows).toEqual({ [off]: "pending", [on]: "dead" });
  });
});

describe("cancelled deliveries", () => {
  it("a replay, forced or bulk, leaves a cancelled delivery alone", async () => {
    const name = freshId("cx-replay");
    const ENV: Env = { ...FANOUT_ENV, ADMIN_TOKEN, DESTINATIONS: JSON.stringify([{ name, url: "https://cx-replay.test/h" }]) };
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, last_error, updated_at) VALUES (?, ?, 'cancelled', 2, 'cancelled by the operator', '2020-01-01T00:00:00.000Z')")
      .bind(alert_id, name)
      .run();
    const forced = await callWorker(`/api/alerts/${alert_id}/replay`, json("POST", { force: true }), ENV);
    expect(await forced.json()).toMatchObject({ ok: true, destinations: [] });
    for (const status of ["dead", "failed"]) {
      const bulk = await callWorker("/api/replay", json("POST", { status, destination: name }), ENV);
      expect(bulk.status).toBe(200);
    }
    expect((await deliveries(alert_id)).map((r) => [r.status, r.last_error])).toEqual([["cancelled", "cancelled by the operator"]]);
  });

  it("POST /api/deliveries/cancel answers more: true past 1,000, and the next call finishes", async () => {
    const name = freshId("cx-more");
    await pendingRows(name, 1_001, freshId("cx-more-alert"));
    const first = await callWorker("/api/deliveries/cancel", json("POST", { destination: name }), API_ENV);
    expect(await first.json()).toEqual({ ok: true, cancelled: 1_000, more: true });
    const second = await callWorker("/api/deliveries/cancel", json("POST", { destination: name }), API_ENV);
    expect(await second.json()).toEqual({ ok: true, cancelled: 1, more: false });
  });

  it("DELETE of a destination with more than 5,000 pending: 5,000 cancelled at once, the rest by the consumer once their alert comes round", async () => {
    const name = freshId("cx-delete");
    const put = await callWorker(`/api/destinations/${name}`, json("PUT", { url: "https://cx-delete.test/h" }), API_ENV);
    expect(put.status).toBe(201);
    await pendingRows(name, 5_000, freshId("cx-delete-alert"));
    // The 5,001st, newest, on a real alert.
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, ?, 'pending', 1, '2021-01-01T00:00:00.000Z')").bind(alert_id, name).run();
    const res = await callWorker(`/api/destinations/${name}`, json("DELETE"), API_ENV);
    // `more`: the operator knows to go on with POST /api/deliveries/cancel.
    expect(await res.json()).toEqual({ ok: true, cancelled: 5_000, more: true });
    expect((await deliveries(alert_id)).map((r) => r.status)).toEqual(["pending"]);
    // Its alert's next message (the stale sweep sends it) meets a current list without the destination.
    stubDestinations();
    await runQueue("oneflow-alerts", [message(alert_id)], { ...API_ENV, DESTINATIONS: JSON.stringify([{ name: freshId("cx-other"), url: "https://cx-other.test/h" }]) });
    expect((await deliveries(alert_id)).find((r) => r.destination === name)).toMatchObject({ status: "cancelled", last_error: "destination removed" });
  });
});
