/**
 * Issue 25, path 4: two isolates, each with its own destinations cache. The one whose cache
 * predates a change never makes a final decision (cancel, fail, finish) from it: its writes
 * are confirmed against the current version in the batch that makes them, and what it could
 * not confirm comes back once its cache has expired. Also the 30 s propagation's effect, with
 * the version triggers on insert, update and delete.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { type DestinationsCache, DESTINATIONS_CACHE_IN_MS, destinationsOf, newDestinationsCache } from "../src/fanout/configured";
import { consumeAlerts } from "../src/fanout/consumer";
import { destinationsVersion } from "../src/store/destinations";
import { ADMIN_TOKEN, alertRow, callWorker, freshId } from "./fixtures";
import { deliveries, message, storedAlert, stubDestinations, watchRetryDelays } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const ENV: Env = { ...env, ADMIN_TOKEN, DESTINATIONS: "" };

/** One isolate: its own cache and clock. */
interface Isolate {
  cache: DestinationsCache;
  now: number;
}

function isolate(): Isolate {
  return { cache: newDestinationsCache(), now: Date.now() };
}

/** A consumer invocation in `iso`, with its cached list as it stands at `iso.now`. */
async function consumeIn(iso: Isolate, messages: ReturnType<typeof message>[]) {
  const { config } = await destinationsOf(ENV, { cache: iso.cache, now: iso.now });
  const batch = createMessageBatch("oneflow-alerts", messages);
  const delays = watchRetryDelays(batch);
  const ctx = createExecutionContext();
  await consumeAlerts(batch, {
    db: env.DB,
    queue: env.ALERTS_QUEUE,
    destinations: config,
    retry_base_seconds: 1,
    delivery_timeout_ms: 10_000,
    breaker: { pause_after_failures: 100_000, pause_seconds: 60 },
    now: () => new Date(),
    random: () => 0.5,
  });
  return { ...(await getQueueResult(batch, ctx)), delays };
}

async function put(name: string, entry: Record<string, unknown>) {
  const res = await callWorker(`/api/destinations/${name}`, { method: "PUT", body: JSON.stringify(entry), headers: { "content-type": "application/json" } }, ENV);
  expect(res.status).toBeLessThan(300);
}

async function patch(name: string, fields: Record<string, unknown>) {
  const res = await callWorker(`/api/destinations/${name}`, { method: "PATCH", body: JSON.stringify(fields), headers: { "content-type": "application/json" } }, ENV);
  expect(res.status).toBe(200);
}

async function remove(name: string) {
  const res = await callWorker(`/api/destinations/${name}`, { method: "DELETE" }, ENV);
  expect(res.status).toBe(200);
}

/** A destination host that answers 500 (so that its row stays pending) until `up`. */
function flaky(host: string) {
  const state = { up: false };
  stubDestinations({ [host]: () => (state.up ? new Response("ok") : new Response("down", { status: 500 })) });
  return state;
}

describe("a stale cache never cancels", () => {
  it("a stale empty list: the new destination's pending row stays pending, and the message comes back after the cache's life", async () => {
    const a = isolate();
    await destinationsOf(ENV, { cache: a.cache, now: a.now }); // A reads: nothing stored
    const name = freshId("fresh-empty");
    await put(name, { url: "https://fresh-empty.test/hook" });
    flaky("fresh-empty.test");
    const { alert_id } = await storedAlert();
    const b = isolate();
    await consumeIn(b, [message(alert_id)]); // B sends: 500, pending
    expect((await deliveries(alert_id)).map((r) => r.status)).toEqual(["pending"]);

    const m = message(alert_id, 2);
    const result = await consumeIn(a, [m]); // A, 30 s cache not yet expired
    expect(result.explicitAcks).toEqual([]);
    expect(result.delays[m.id]).toBeGreaterThanOrEqual(DESTINATIONS_CACHE_IN_MS / 1000);
    expect((await deliveries(alert_id)).map((r) => [r.status, r.last_error])).toEqual([["pending", "HTTP 500"]]);
    expect((await alertRow(alert_id))?.fanned_out_at ?? null).toBeNull();
  });

  it("a stale list without a destination PUT since: its pending row is not cancelled as removed", async () => {
    const a = isolate();
    const first = freshId("old");
    await put(first, { url: "https://old.test/hook" });
    await destinationsOf(ENV, { cache: a.cache, now: a.now }); // A knows `first` only
    const name = freshId("fresh-put");
    await put(name, { url: "https://fresh-put.test/hook" });
    flaky("fresh-put.test");
    const { alert_id } = await storedAlert();
    await consumeIn(isolate(), [message(alert_id)]);
    const m = message(alert_id, 2);
    const result = await consumeIn(a, [m]);
    expect(result.explicitAcks).toEqual([]);
    const rows = await deliveries(alert_id);
    expect(rows.find((r) => r.destination === name)).toMatchObject({ status: "pending" });
    expect(rows.find((r) => r.destination === first)).toMatchObject({ status: "delivered" });
  });

  it("a PATCH that widens a filter: the stale isolate does not cancel the row as unwanted", async () => {
    const name = freshId("widened");
    await put(name, { url: "https://widened.test/hook", survey_ids: ["no-such-survey"] });
    const a = isolate();
    await destinationsOf(ENV, { cache: a.cache, now: a.now }); // A: the narrow filter
    await patch(name, { survey_ids: null });
    flaky("widened.test");
    const { alert_id } = await storedAlert();
    await consumeIn(isolate(), [message(alert_id)]);
    expect((await deliveries(alert_id)).find((r) => r.destination === name)).toMatchObject({ status: "pending" });
    const result = await consumeIn(a, [message(alert_id, 2)]);
    expect(result.explicitAcks).toEqual([]);
    expect((await deliveries(alert_id)).find((r) => r.destination === name)).toMatchObject({ status: "pending" });
  });

  it("a stale list that no destination of it wants: the alert is not marked finished, and a fresh isolate delivers it", async () => {
    await env.DB.prepare("DELETE FROM destinations").run(); // what earlier tests stored
    const narrow = freshId("narrow");
    await put(narrow, { url: "https://narrow.test/hook", survey_ids: ["no-such-survey"] });
    const a = isolate();
    await destinationsOf(ENV, { cache: a.cache, now: a.now });
    const name = freshId("wide");
    await put(name, { url: "https://wide.test/hook" });
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const stale = await consumeIn(a, [m]);
    expect(stale.explicitAcks).toEqual([]);
    expect(stale.delays[m.id]).toBeGreaterThanOrEqual(DESTINATIONS_CACHE_IN_MS / 1000);
    expect((await alertRow(alert_id))?.fanned_out_at ?? null).toBeNull();
    const fresh = await consumeIn(isolate(), [message(alert_id, 2)]);
    expect(fresh.explicitAcks).toHaveLength(1);
    expect(received.filter((r) => r.host === "wide.test")).toHaveLength(1);
  });

  it("a stale list with a transform the operator has since fixed: the delivery is not failed, and a fresh isolate delivers it", async () => {
    const name = freshId("fixed");
    await put(name, { url: "https://fixed.test/hook", format: "jsonata", transform: `{ "a": $nosuchfn() }`, force: true });
    const a = isolate();
    await destinationsOf(ENV, { cache: a.cache, now: a.now }); // A: the broken transform
    await put(name, { url: "https://fixed.test/hook", format: "jsonata", transform: `{ "a": alert_id }` });
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const stale = await consumeIn(a, [m]);
    expect(stale.explicitAcks).toEqual([]);
    expect((await deliveries(alert_id)).find((r) => r.destination === name)?.status ?? "none").not.toBe("failed");
    const fresh = await consumeIn(isolate(), [message(alert_id, 2)]);
    expect(fresh.explicitAcks).toHaveLength(1);
    expect((await deliveries(alert_id)).find((r) => r.destination === name)).toMatchObject({ status: "delivered" });
    expect(received.filter((r) => r.host === "fixed.test").map((r) => JSON.parse(r.body))).toEqual([{ a: alert_id }]);
  });

  it("a stale list that still has a destination disabled: what its re-enable sent is not held again with the message acknowledged", async () => {
    await env.DB.prepare("DELETE FROM destinations").run();
    const name = freshId("reenabled");
    await put(name, { url: "https://reenabled.test/hook" });
    await patch(name, { enabled: false });
    const { alert_id } = await storedAlert();
    await consumeIn(isolate(), [message(alert_id)]); // held while disabled: a pending row
    expect((await deliveries(alert_id)).map((r) => r.status)).toEqual(["pending"]);
    const a = isolate();
    await destinationsOf(ENV, { cache: a.cache, now: a.now }); // A caches it disabled
    await patch(name, { enabled: true }); // re-enabled: what waited is sent again
    const received = stubDestinations();
    const m = message(alert_id, 2);
    const stale = await consumeIn(a, [m]);
    // A's list predates the re-enable: the message comes back once the cache has expired,
    // instead of being acknowledged with the row left for the two-hour sweep.
    expect(stale.explicitAcks).toEqual([]);
    expect(stale.delays[m.id]).toBeGreaterThanOrEqual(DESTINATIONS_CACHE_IN_MS / 1000);
    const fresh = await consumeIn(isolate(), [message(alert_id, 3)]);
    expect(fresh.explicitAcks).toHaveLength(1);
    expect(received.filter((r) => r.host === "reenabled.test")).toHaveLength(1);
    expect((await deliveries(alert_id)).map((r) => r.status)).toEqual(["delivered"]);
  });

  it("a current list still cancels what a DELETE removed (the version confirms it)", async () => {
    const name = freshId("deleted");
    await put(name, { url: "https://deleted.test/hook" });
    flaky("deleted.test");
    const { alert_id } = await storedAlert();
    await consumeIn(isolate(), [message(alert_id)]);
    // Removed behind the API's back (so that the row stays pending), then a fresh isolate.
    await env.DB.prepare("DELETE FROM destinations WHERE name = ?").bind(name).run();
    const m = message(alert_id, 2);
    const result = await consumeIn(isolate(), [m]);
    expect(result.explicitAcks).toEqual([m.id]);
    expect((await deliveries(alert_id)).find((r) => r.destination === name)).toMatchObject({ status: "cancelled", last_error: "destination removed" });
  });
});

describe("the 30 s propagation: its effect", () => {
  it("a PUT, a PATCH and a DELETE each move the version, and an isolate sees each within DESTINATIONS_CACHE_IN_MS", async () => {
    const iso = isolate();
    const names = async () => {
      const { config } = await destinationsOf(ENV, { cache: iso.cache, now: iso.now });
      return config.ok ? config.destinations.map((d) => d.name) : [];
    };
    const name = freshId("prop");
    const v0 = await destinationsVersion(env.DB);
    const before = await names();
    expect(before).not.toContain(name);
    await put(name, { url: "https://prop.test/hook" });
    const v1 = await destinationsVersion(env.DB);
    expect(v1).not.toBe(v0);
    // Within the cache's life the isolate still uses its list; once it has expired, the new one.
    iso.now += DESTINATIONS_CACHE_IN_MS - 1;
    expect(await names()).not.toContain(name);
    iso.now += 2;
    expect(await names()).toContain(name);
    await patch(name, { enabled: false });
    const v2 = await destinationsVersion(env.DB);
    expect(v2).not.toBe(v1);
    await remove(name);
    expect(await destinationsVersion(env.DB)).not.toBe(v2);
    iso.now += DESTINATIONS_CACHE_IN_MS + 1;
    expect(await names()).not.toContain(name);
  });
});
