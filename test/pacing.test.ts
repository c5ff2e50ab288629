/**
 * Pacing: a destination's rate_limit, shared by every consumer through D1, and the holds a 429
 * (or a 503 with Retry-After) asks for. Neither spends a try, counts as a failure, or moves the
 * breaker: what waits is sent again as a new message when its time comes.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { HELD_BY_DESTINATION, PACED } from "../src/fanout/consumer";
import { takeGrants } from "../src/store/pace";
import { ADMIN_TOKEN, callWorker, freshId } from "./fixtures";
import { deliveries, FANOUT_ENV, message, runQueue, storedAlert, stubDestinations, watchSendBatch } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const QUEUE = "oneflow-alerts";

function withDestination(name: string, entry: Record<string, unknown> = {}): Env {
  return { ...FANOUT_ENV, ADMIN_TOKEN, PAUSE_AFTER_FAILURES: "3", DESTINATIONS: JSON.stringify([{ name, url: `https://${name}.test/hook`, ...entry }]) };
}

const health = (name: string) =>
  env.DB.prepare("SELECT state, consecutive_failures, held_until FROM destination_health WHERE destination = ?").bind(name).first<{ state: string; consecutive_failures: number; held_until: string | null }>();

describe("429 and Retry-After", () => {
  it("a 429 with Retry-After holds every delivery of the destination until then: nothing is sent meanwhile, nothing fails, the breaker is untouched, and each waits as a new message", async () => {
    const name = freshId("held");
    const ENV = withDestination(name);
    let answer = 429;
    const received = stubDestinations({ [`${name}.test`]: () => new Response("slow down", { status: answer, headers: { "retry-after": "3" } }) });
    const first = await storedAlert();
    const sent = watchSendBatch();
    const m1 = message(first.alert_id);
    expect((await runQueue(QUEUE, [m1], ENV)).explicitAcks).toEqual([m1.id]);
    const held = await health(name);
    expect(held).toMatchObject({ state: "active", consecutive_failures: 0 });
    expect(Date.parse(held?.held_until ?? "") - Date.now()).toBeGreaterThan(1_000);
    expect(sent.batches.flat().find((x) => x.body.alert_id === first.alert_id)).toMatchObject({ delaySeconds: expect.any(Number) });
    expect((sent.batches.flat().find((x) => x.body.alert_id === first.alert_id) as { delaySeconds: number }).delaySeconds).toBeGreaterThanOrEqual(3);

    // Within the hold: a new response is not sent, and waits as a new message until the hold ends.
    const second = await storedAlert();
    const m2 = message(second.alert_id, 4); // however many tries it had, a hold spends none
    const during = await runQueue(QUEUE, [m2], ENV);
    expect(during.explicitAcks).toEqual([m2.id]);
    expect(received.filter((r) => r.host === `${name}.test`)).toHaveLength(1);
    expect(await deliveries(second.alert_id)).toMatchObject([{ status: "pending", attempts: 0, last_error: HELD_BY_DESTINATION }]);
    const api = (await (await callWorker("/api/destinations", {}, ENV)).json()) as { destinations: { name: string; held_until: string | null }[] };
    expect(api.destinations.find((d) => d.name === name)?.held_until).toBe(held?.held_until);

    // After it: both are sent, delivered; no failed or dead row, and the breaker never moved.
    answer = 200;
    await env.DB.prepare("UPDATE destination_health SET held_until = ?2 WHERE destination = ?1").bind(name, new Date(Date.now() - 1).toISOString()).run();
    const after = [message(first.alert_id), message(second.alert_id)];
    expect((await runQueue(QUEUE, after, ENV)).explicitAcks).toHaveLength(2);
    for (const id of [first.alert_id, second.alert_id]) expect(await deliveries(id)).toMatchObject([{ status: "delivered" }]);
    expect(await health(name)).toMatchObject({ state: "active", consecutive_failures: 0 });
  });

  it("a 429 without Retry-After holds for 60 s; a 503 with one holds; a 503 without one is an ordinary failure, retried", async () => {
    const cases: [number, Record<string, string>, "hold" | "retry", number][] = [
      [429, {}, "hold", 60],
      [503, { "retry-after": "7" }, "hold", 7],
      [503, {}, "retry", 0],
    ];
    for (const [status, headers, kind, seconds] of cases) {
      const name = freshId(`s${status}`);
      const ENV = withDestination(name);
      stubDestinations({ [`${name}.test`]: () => new Response("wait", { status, headers }) });
      const { alert_id } = await storedAlert();
      const m = message(alert_id);
      const result = await runQueue(QUEUE, [m], ENV);
      const h = await health(name);
      if (kind === "hold") {
        expect(result.explicitAcks, `${status} ${JSON.stringify(headers)}`).toEqual([m.id]);
        const left = (Date.parse(h?.held_until ?? "") - Date.now()) / 1000;
        expect(left).toBeGreaterThan(seconds - 3);
        expect(left).toBeLessThanOrEqual(seconds);
        expect(h?.consecutive_failures).toBe(0);
      } else {
        expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
        expect(h).toMatchObject({ consecutive_failures: 1, held_until: null });
      }
      vi.restoreAllMocks();
    }
  });
});

describe("rate_limit", () => {
  it("the sliding window: what fits under `requests` by the last `per_seconds` (the previous window weighted by what is left of it)", async () => {
    const name = freshId("window");
    const limit = { destination: name, requests: 5, per_seconds: 1 };
    const t0 = Math.floor(Date.now() / 1000) * 1000 + 5_000_000; // a window boundary
    const take = async (at: number, wanted: number) => (await takeGrants(env.DB, [{ ...limit, wanted }], t0 + at)).get(name)?.granted;
    expect(await take(0, 10)).toBe(5);
    expect(await take(500, 5)).toBe(0);
    expect(await take(1_200, 5)).toBe(1); // 5 × 0.8 of the previous second still counts
    expect(await take(1_900, 5)).toBe(3); // 5 × 0.1 + 1
    expect(await take(2_500, 5)).toBe(3); // the second before holds 4: 4 × 0.5 counts
    expect(await take(10_000, 3)).toBe(3); // long after: the whole limit again
  });

  it("a batch past the limit sends what it allows; the rest wait, with no try spent, and two consumers share the limit", async () => {
    const name = freshId("paced");
    const ENV = withDestination(name, { rate_limit: { requests: 5, per_seconds: 3600 } });
    const received = stubDestinations();
    const alerts = [];
    for (let i = 0; i < 8; i++) alerts.push(await storedAlert());
    const sent = watchSendBatch();
    // Three consumers (as if in three isolates), one after the other in the same window.
    for (const slice of [alerts.slice(0, 3), alerts.slice(3, 6), alerts.slice(6)]) {
      expect((await runQueue(QUEUE, slice.map((a) => message(a.alert_id)), ENV)).explicitAcks).toHaveLength(slice.length);
    }
    expect(received.filter((r) => r.host === `${name}.test`)).toHaveLength(5);
    const rows = (await Promise.all(alerts.map((a) => deliveries(a.alert_id)))).flat();
    expect(rows.filter((r) => r.status === "delivered")).toHaveLength(5);
    const waiting = rows.filter((r) => r.status === "pending");
    expect(waiting).toHaveLength(3);
    for (const row of waiting) expect(row).toMatchObject({ attempts: 0, last_error: PACED });
    // Each waits as a new message until its own send slot: one request's share of the window
    // (3600 / 5 = 720 s) apart, after the slots already given out: never all at once.
    const again = sent.batches.flat().filter((x) => waiting.some((w) => w.alert_id === x.body.alert_id)) as { delaySeconds?: number }[];
    const delays = again.map((x) => x.delaySeconds ?? 0).sort((a, b) => a - b);
    expect(delays.map((d) => Math.round(d / 720))).toEqual([1, 2, 3]);
    expect(await health(name)).toMatchObject({ state: "active", consecutive_failures: 0, held_until: null });
  });

  it("PUT and PATCH take rate_limit within its bounds, GET shows it, and anything else is a 400", async () => {
    const name = freshId("limited");
    const put = (body: unknown) => callWorker(`/api/destinations/${name}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
    const url = `https://${name}.test/hook`;
    for (const bad of [{ requests: 0, per_seconds: 1 }, { requests: 5, per_seconds: 0 }, { requests: 5, per_seconds: 3601 }, { requests: 1.5, per_seconds: 1 }, { requests: 5 }]) {
      expect((await put({ url, rate_limit: bad })).status, JSON.stringify(bad)).toBe(400);
    }
    const created = await put({ url, rate_limit: { requests: 100, per_seconds: 10 } });
    expect(created.status).toBe(201);
    expect(await created.json()).toMatchObject({ destination: { rate_limit: { requests: 100, per_seconds: 10 } } });
    const patched = await callWorker(`/api/destinations/${name}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ rate_limit: { requests: 5, per_seconds: 1 } }) });
    expect(await patched.json()).toMatchObject({ ok: true, destination: { rate_limit: { requests: 5, per_seconds: 1 } } });
    const list = (await (await callWorker("/api/destinations")).json()) as { destinations: { name: string; rate_limit: unknown }[] };
    expect(list.destinations.find((d) => d.name === name)?.rate_limit).toEqual({ requests: 5, per_seconds: 1 });
    const removed = await callWorker(`/api/destinations/${name}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ rate_limit: null }) });
    expect(await removed.json()).toMatchObject({ destination: { rate_limit: null } });
  });
});

describe("dead letters", () => {
  it("never make a held destination's delivery dead (it goes back on the Queue after the hold), nor touch destinations a backfill's message was not about", async () => {
    const held = freshId("dl-held");
    const other = freshId("dl-other");
    const ENV = { ...withDestination(held), DESTINATIONS: JSON.stringify([{ name: held, url: `https://${held}.test/hook` }, { name: other, url: `https://${other}.test/hook` }]) };
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, last_status, updated_at) VALUES (?, ?, 'pending', 1, 429, ?)").bind(alert_id, held, new Date().toISOString()).run();
    await env.DB.prepare("INSERT INTO destination_health (destination, held_until) VALUES (?1, ?2) ON CONFLICT (destination) DO UPDATE SET held_until = ?2").bind(held, new Date(Date.now() + 30_000).toISOString()).run();
    const sent = watchSendBatch();
    // A backfill's message for `held` only, out of retries.
    const dead = { id: `dl-${freshId()}`, timestamp: new Date(), attempts: 11, body: { v: 1, alert_id, only: [held] } };
    expect((await runQueue("oneflow-alerts-dlq", [dead], ENV)).explicitAcks).toEqual([dead.id]);
    const rows = await deliveries(alert_id);
    expect(rows.map((r) => [r.destination, r.status])).toEqual([[held, "pending"]]);
    const again = sent.batches.flat().find((x) => x.body.alert_id === alert_id) as { body: { only?: string[] }; delaySeconds?: number } | undefined;
    expect(again?.body.only).toEqual([held]);
    expect(again?.delaySeconds).toBeGreaterThanOrEqual(25);
  });
});
