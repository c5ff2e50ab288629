/**
 * The fan-out's guarantees on paths a review traced: each test here failed before its fix.
 * A message is acknowledged only when every destination that wants its alert has a ledger
 * row; rows nobody wants any more end `cancelled`; 1flow-identify never sends an older
 * response after a newer one; a claim outlasts the batch; the dead-letter consumer never
 * overrides a live delivery; retention never deletes an alert still on the Queue.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { CLAIM_MARGIN_IN_SECONDS, claimMilliseconds, LEASED_ELSEWHERE, SUPERSEDED } from "../src/fanout/consumer";
import { applyRetention } from "../src/retention";
import { stalePendingAlerts } from "../src/store/deliveries";
import { alertRow, callWorker, examplePayload, freshId } from "./fixtures";
import { deliveries, failBatchesWith, FANOUT_ENV, message, runQueue, statusByDestination, storedAlert, stubDestinations, watchSendBatch } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const QUEUE = "oneflow-alerts";
const DLQ = "oneflow-alerts-dlq";

/** A Worker whose destinations have names of their own, so that breaker rows never leak between tests. */
function envWith(destinations: Record<string, unknown>[], more: Partial<Env> = {}): Env {
  return { ...FANOUT_ENV, DESTINATIONS: JSON.stringify(destinations), ...more };
}

async function pause(destination: string, paused_until: string) {
  await env.DB.prepare(
    `INSERT INTO destination_health (destination, state, consecutive_failures, paused_until) VALUES (?1, 'paused', 10, ?2)
     ON CONFLICT (destination) DO UPDATE SET state = 'paused', paused_until = ?2, probe_until = NULL`,
  )
    .bind(destination, paused_until)
    .run();
}

async function pendingRow(alert_id: string, destination: string, attempts: number, updated_at = "2020-01-01T00:00:00.000Z") {
  await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, ?, 'pending', ?, ?)")
    .bind(alert_id, destination, attempts, updated_at)
    .run();
}

const future = (seconds: number) => new Date(Date.now() + seconds * 1000).toISOString();

describe("a message is acknowledged only with its ledger rows", () => {
  it("every destination paused and the ledger write failing: the message comes back, and the next one records the wait", async () => {
    const a = freshId("held-a");
    const b = freshId("held-b");
    const ENV = envWith([
      { name: a, url: "https://held-a.test/hook" },
      { name: b, url: "https://held-b.test/hook" },
    ]);
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    await pause(a, future(300));
    await pause(b, future(300));
    const fault = failBatchesWith("INSERT INTO deliveries"); // the ledger's batch
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], ENV);
    expect(fault.hit).toBe(1);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(await deliveries(alert_id)).toEqual([]);
    expect((await alertRow(alert_id))?.fanned_out_at ?? null).toBeNull();

    vi.restoreAllMocks();
    stubDestinations();
    // The failed batch could not end the claim: the retry comes once it has run out.
    await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = NULL WHERE alert_id = ?").bind(alert_id).run();
    const again = message(alert_id, 2);
    const second = await runQueue(QUEUE, [again], ENV);
    expect(second.explicitAcks).toEqual([again.id]);
    const rows = await deliveries(alert_id);
    expect(statusByDestination(rows)).toEqual({ [a]: "pending", [b]: "pending" });
    for (const row of rows) expect(row).toMatchObject({ attempts: 0, last_error: "destination paused" });
    expect(received).toEqual([]);
  });
});

describe("sent, then the ledger write failing: the Queue carries what was delivered", () => {
  it("the message comes back as a new one that names the destinations that have it: they are recorded, never sent again", async () => {
    const a = freshId("carried-a");
    const b = freshId("carried-b");
    const ENV = envWith([
      { name: a, url: "https://carried-a.test/hook" },
      { name: b, url: "https://carried-b.test/hook" },
    ]);
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    const sent = watchSendBatch();
    const fault = failBatchesWith("INSERT INTO deliveries"); // the ledger's batch, after both sends
    const m = message(alert_id);
    const first = await runQueue(QUEUE, [m], ENV);
    expect(fault.hit).toBe(1);
    expect(received.map((r) => r.host).sort()).toEqual(["carried-a.test", "carried-b.test"]);
    expect(await deliveries(alert_id)).toEqual([]);
    // Acknowledged, and replaced by a message that carries the two outcomes.
    expect(first.explicitAcks).toEqual([m.id]);
    const carried = sent.batches.flat().filter((x) => x.body.alert_id === alert_id);
    expect(carried).toHaveLength(1);
    expect(carried[0]?.body.sent?.map((o) => o.destination).sort()).toEqual([a, b].sort());

    vi.restoreAllMocks();
    const again = stubDestinations();
    const second = await runQueue(QUEUE, [{ ...message(alert_id, 1), body: carried[0]?.body }], ENV);
    expect(second.explicitAcks).toHaveLength(1);
    expect(again).toEqual([]);
    const rows = await deliveries(alert_id);
    expect(statusByDestination(rows)).toEqual({ [a]: "delivered", [b]: "delivered" });
    for (const row of rows) expect(row).toMatchObject({ attempts: 1, last_status: 200 });
  });

  it("its claim could not be ended either: the carried message takes the claim over, and another message for the alert waits and sends nothing", async () => {
    const a = freshId("inherit");
    const ENV = envWith([{ name: a, url: "https://inherit.test/hook" }]);
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    const sent = watchSendBatch();
    // The record batch and the release both end the claims: both fail (D1 down from then on).
    const fault = failBatchesWith("fanout_claimed_until = CASE WHEN", 2);
    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(fault.hit).toBe(2);
    const carried = sent.batches.flat().find((x) => x.body.alert_id === alert_id);
    expect(carried?.body.claim).toEqual(expect.any(String));
    vi.restoreAllMocks();
    const again = stubDestinations();
    // Another message for the alert (a spool copy, a redelivery) while the claim holds: it waits.
    const other = message(alert_id, 1);
    const waiting = await runQueue(QUEUE, [other], ENV);
    expect(waiting.retryMessages.map((r) => r.msgId)).toEqual([other.id]);
    // The carried message takes the claim over: recorded, nothing sent again.
    const successor = await runQueue(QUEUE, [{ ...message(alert_id, 1), body: carried?.body }], ENV);
    expect(successor.explicitAcks).toHaveLength(1);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ [a]: "delivered" });
    expect(received).toHaveLength(1);
    expect(again).toEqual([]);
  });

  it("the dead-letter consumer records what a message carries as delivered, and makes dead only the rest", async () => {
    const a = freshId("dl-carried");
    const b = freshId("dl-failing");
    const ENV = envWith([
      { name: a, url: "https://dl-carried.test/hook" },
      { name: b, url: "https://dl-failing.test/hook" },
    ]);
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    await pendingRow(alert_id, b, 10);
    const body = { v: 1, alert_id, sent: [{ destination: a, status: 200, at: new Date().toISOString() }] };
    const result = await runQueue(DLQ, [{ ...message(alert_id, 1), body }], ENV);
    expect(result.explicitAcks).toHaveLength(1);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ [a]: "delivered", [b]: "dead" });
    expect(received).toEqual([]);
  });
});

describe("pending rows nobody wants any more are cancelled", () => {
  it("a removed destination and a narrowed filter: cancelled with the reason, not dead, never swept again", async () => {
    const kept = freshId("kept");
    const narrowed = freshId("narrowed");
    const removed = freshId("removed");
    const ENV = envWith([
      { name: kept, url: "https://kept.test/hook" },
      { name: narrowed, url: "https://narrowed.test/hook", survey_ids: ["another-survey"] },
    ]);
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    await pendingRow(alert_id, removed, 3);
    await pendingRow(alert_id, narrowed, 1);
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], ENV);
    expect(result.explicitAcks).toEqual([m.id]);
    expect(received.map((r) => r.host)).toEqual(["kept.test"]);
    const rows = await deliveries(alert_id);
    expect(statusByDestination(rows)).toEqual({ [kept]: "delivered", [narrowed]: "cancelled", [removed]: "cancelled" });
    expect(rows.find((r) => r.destination === removed)).toMatchObject({ last_error: "destination removed", attempts: 3 });
    expect(rows.find((r) => r.destination === narrowed)).toMatchObject({ last_error: "no longer matches its filter", attempts: 1 });
    // Not failures: no dead count, and the stale sweep never picks the alert again.
    const dead = await env.DB.prepare("SELECT COALESCE(SUM(dead), 0) AS n FROM destination_hourly WHERE destination IN (?, ?)").bind(removed, narrowed).first();
    expect(dead).toEqual({ n: 0 });
    expect(await stalePendingAlerts(env.DB, future(86_400), 10_000)).not.toContain(alert_id);
  });

  it("with no destination configured at all, what removed ones left pending is cancelled", async () => {
    const { alert_id } = await storedAlert();
    await pendingRow(alert_id, freshId("gone"), 2);
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], { ...FANOUT_ENV, DESTINATIONS: "" });
    expect(result.explicitAcks).toEqual([m.id]);
    expect((await deliveries(alert_id)).map((r) => [r.status, r.last_error])).toEqual([["cancelled", "destination removed"]]);
    expect((await alertRow(alert_id))?.fanned_out_at).toMatch(/Z$/);
  });

  it("POST /api/deliveries/cancel cancels one destination's pending rows, and retention then moves past them", async () => {
    const gone = freshId("operator");
    const other = freshId("other");
    const old = { timestamp: "2020-02-01T00:00:00.000Z" };
    const first = await storedAlert(examplePayload(old));
    const second = await storedAlert(examplePayload(old));
    for (const { alert_id } of [first, second]) {
      await pendingRow(alert_id, gone, 4);
      await env.DB.prepare("UPDATE alerts SET enqueued_at = ?2, fanned_out_at = ?2 WHERE alert_id = ?1").bind(alert_id, "2020-02-01T00:00:00.000Z").run();
    }
    await pendingRow(second.alert_id, other, 1);
    const res = await callWorker("/api/deliveries/cancel", { method: "POST", body: JSON.stringify({ destination: gone }), headers: { "content-type": "application/json" } });
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, cancelled: 2, more: false });
    expect(statusByDestination(await deliveries(first.alert_id))).toEqual({ [gone]: "cancelled" });
    expect(statusByDestination(await deliveries(second.alert_id))).toEqual({ [gone]: "cancelled", [other]: "pending" });
    expect((await deliveries(first.alert_id))[0]?.last_error).toBe("cancelled by the operator");

    await applyRetention(env.DB, 30, new Date());
    expect(await alertRow(first.alert_id)).toBeNull();
    // Still pending for another destination: kept.
    expect(await alertRow(second.alert_id)).not.toBeNull();
  });

  it("POST /api/deliveries/cancel without a destination is a 400", async () => {
    const res = await callWorker("/api/deliveries/cancel", { method: "POST", body: "{}", headers: { "content-type": "application/json" } });
    expect(res.status).toBe(400);
    expect(await res.json()).toMatchObject({ ok: false, error: "invalid_request" });
  });
});

describe("1flow-identify: the newest response wins, probes and concurrent consumers included", () => {
  const HOST = "identify-order.test";
  const identifyEnv = (name: string) =>
    envWith([{ name, url: `https://${HOST}/v1/identify`, format: "1flow-identify", headers: { api_key: "k" } }]);
  const response = (user: string, timestamp: string) => examplePayload({ user: { user_system_id: user }, timestamp });

  it("a probe never sends a response older than the one 1Flow has", async () => {
    const name = freshId("probe");
    const user = freshId("user");
    const received = stubDestinations();
    const older = await storedAlert(response(user, "2026-11-01T10:00:00.000Z"));
    await env.DB.prepare("INSERT INTO identify_latest (destination, user_system_id, submitted_at, alert_id) VALUES (?, ?, ?, ?)")
      .bind(name, user, "2026-11-02T10:00:00.000Z", "newer-one")
      .run();
    await pause(name, new Date(Date.now() - 1_000).toISOString()); // its pause has run out: a probe is due
    const m = message(older.alert_id);
    const result = await runQueue(QUEUE, [m], identifyEnv(name));
    expect(received.filter((r) => r.host === HOST)).toEqual([]);
    expect(result.explicitAcks).toEqual([m.id]);
    expect(await deliveries(older.alert_id)).toMatchObject([{ status: "delivered", last_error: SUPERSEDED, attempts: 0 }]);
  });

  it("two responses of one user in one batch: only the newer is sent", async () => {
    const name = freshId("batch");
    const user = freshId("user");
    const received = stubDestinations();
    const newer = await storedAlert(response(user, "2026-11-03T10:00:00.000Z"));
    const older = await storedAlert(response(user, "2026-11-02T10:00:00.000Z"));
    const result = await runQueue(QUEUE, [message(newer.alert_id), message(older.alert_id)], identifyEnv(name));
    expect(result.explicitAcks).toHaveLength(2);
    const sent = received.filter((r) => r.host === HOST).map((r) => (JSON.parse(r.body) as { timestamp: string }).timestamp);
    expect(sent).toEqual(["2026-11-03T10:00:00.000Z"]);
    expect(await deliveries(older.alert_id)).toMatchObject([{ status: "delivered", last_error: SUPERSEDED }]);
    const latest = await env.DB.prepare("SELECT alert_id, lease_owner FROM identify_latest WHERE destination = ? AND user_system_id = ?").bind(name, user).first();
    expect(latest).toEqual({ alert_id: newer.alert_id, lease_owner: null });
  });

  it("a send whose record and release both failed: after its lease runs out, an older response is still not sent, and the newer one is", async () => {
    const name = freshId("unsettled");
    const user = freshId("user");
    const received = stubDestinations();
    const newer = await storedAlert(response(user, "2026-11-05T10:00:00.000Z"));
    const older = await storedAlert(response(user, "2026-11-05T09:00:00.000Z"));
    // The record batch and the release both fail: identify_latest never hears of the send.
    const fault = failBatchesWith("fanout_claimed_until = CASE WHEN", 2);
    await runQueue(QUEUE, [message(newer.alert_id)], identifyEnv(name));
    expect(fault.hit).toBe(2);
    vi.restoreAllMocks();
    const timestamps = () => received.filter((r) => r.host === HOST).map((r) => (JSON.parse(r.body) as { timestamp: string }).timestamp);
    expect(timestamps()).toEqual(["2026-11-05T10:00:00.000Z"]);
    // Its lease runs out (the claim too), and the older response comes.
    await env.DB.prepare("UPDATE identify_latest SET lease_until = ?3 WHERE destination = ?1 AND user_system_id = ?2").bind(name, user, future(-1)).run();
    await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = NULL WHERE alert_id = ?").bind(newer.alert_id).run();
    const again = stubDestinations();
    const m = message(older.alert_id);
    expect((await runQueue(QUEUE, [m], identifyEnv(name))).explicitAcks).toEqual([m.id]);
    expect(again.filter((r) => r.host === HOST)).toEqual([]);
    expect(await deliveries(older.alert_id)).toMatchObject([{ status: "delivered", last_error: SUPERSEDED, attempts: 0 }]);
    // The newer response's own message comes back and is sent (again: at least once), never superseded.
    const n = message(newer.alert_id, 1);
    expect((await runQueue(QUEUE, [n], identifyEnv(name))).explicitAcks).toEqual([n.id]);
    expect(again.filter((r) => r.host === HOST)).toHaveLength(1);
    expect(await deliveries(newer.alert_id)).toMatchObject([{ status: "delivered", last_error: null }]);
  });

  it("another consumer sending to the same user: nothing is sent, and the message comes back after its lease", async () => {
    const name = freshId("lease");
    const user = freshId("user");
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response(user, "2026-11-04T10:00:00.000Z"));
    const leaseEnd = future(120);
    await env.DB.prepare(
      "INSERT INTO identify_latest (destination, user_system_id, submitted_at, alert_id, lease_until, lease_owner) VALUES (?, ?, '', '', ?, 'other-consumer')",
    )
      .bind(name, user, leaseEnd)
      .run();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], identifyEnv(name));
    expect(received.filter((r) => r.host === HOST)).toEqual([]);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(result.delays[m.id]).toBeGreaterThan(60);
    // Its row says why it waits (so that retention and the sweep know it is unfinished).
    expect(await deliveries(alert_id)).toMatchObject([{ status: "pending", attempts: 0, last_error: LEASED_ELSEWHERE }]);

    // The other consumer finished: the retry sends it.
    await env.DB.prepare("UPDATE identify_latest SET lease_until = NULL, lease_owner = NULL WHERE destination = ?").bind(name).run();
    const again = message(alert_id, 2);
    expect((await runQueue(QUEUE, [again], identifyEnv(name))).explicitAcks).toEqual([again.id]);
    expect(received.filter((r) => r.host === HOST)).toHaveLength(1);
  });
});

describe("claims", () => {
  it("a claim lasts as long as the batch can: every job, six at a time, each up to the timeout, plus the margin", () => {
    expect(claimMilliseconds(50, 10_000)).toBe(9 * 10_000 + CLAIM_MARGIN_IN_SECONDS * 1000);
    expect(claimMilliseconds(6, 10_000)).toBe(10_000 + CLAIM_MARGIN_IN_SECONDS * 1000);
    expect(claimMilliseconds(0, 10_000)).toBe(10_000 + CLAIM_MARGIN_IN_SECONDS * 1000);
  });

  it("ten alerts to five destinations: while the last request is in flight, the claim still holds", async () => {
    const names = Array.from({ length: 5 }, (_, i) => freshId(`lane${i}`));
    // A paid plan's budget, so that all 50 are sent in this one invocation.
    const ENV = envWith(names.map((name, i) => ({ name, url: `https://lane${i}.test/hook` })), { SUBREQUEST_BUDGET: "1000" });
    const alerts = await Promise.all(Array.from({ length: 10 }, () => storedAlert()));
    const started = Date.now();
    const claims: number[] = [];
    stubDestinations(
      Object.fromEntries(
        names.map((_, i) => [
          `lane${i}.test`,
          async (_request: Request, received: { body: string }) => {
            const { alert_id } = JSON.parse(received.body) as { alert_id: string };
            const row = await env.DB.prepare("SELECT fanout_claimed_until AS until FROM alerts WHERE alert_id = ?").bind(alert_id).first<{ until: string }>();
            claims.push(Date.parse(row?.until ?? "1970-01-01T00:00:00Z"));
            return new Response("ok");
          },
        ]),
      ),
    );
    await runQueue(QUEUE, alerts.map((a) => message(a.alert_id)), ENV);
    expect(claims).toHaveLength(50);
    // 50 jobs over 6 lanes: the j-th request starts in round ⌊j/6⌋ and may take up to 10 s,
    // so its alert's claim must last ⌈(j+1)/6⌉ rounds (the last one: 9 rounds, 90 s).
    claims.forEach((until, j) => expect(until - started).toBeGreaterThanOrEqual(Math.ceil((j + 1) / 6) * 10_000));
    expect(Math.max(...claims) - started).toBeGreaterThanOrEqual(9 * 10_000);
  });

  it("a replay never clears a consumer's live claim", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'dead', 10, 'x')").bind(alert_id).run();
    const until = future(90);
    await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = ? WHERE alert_id = ?").bind(until, alert_id).run();
    const res = await callWorker(`/api/alerts/${alert_id}/replay`, { method: "POST" });
    expect(await res.json()).toMatchObject({ ok: true, destinations: ["crm"] });
    expect((await alertRow(alert_id))?.fanout_claimed_until).toBe(until);
  });
});

describe("the dead-letter consumer", () => {
  it("leaves an alert that a consumer is still delivering to that consumer, and looks again after its claim", async () => {
    const name = freshId("dl-live");
    const ENV = envWith([{ name, url: "https://dl-live.test/hook" }]);
    const { alert_id } = await storedAlert();
    await pendingRow(alert_id, name, 2);
    const until = future(100);
    await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = ? WHERE alert_id = ?").bind(until, alert_id).run();
    const m = message(alert_id, 11);
    const result = await runQueue(DLQ, [m], ENV);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(result.delays[m.id]).toBeGreaterThanOrEqual(100);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ [name]: "pending" });
    const notified = await env.DB.prepare("SELECT COUNT(*) AS n FROM notifications WHERE key = ?").bind(name).first();
    expect(notified).toEqual({ n: 0 });
  });

  it("never makes dead a delivery that a pause held (no attempt spent); one that was tried is dead", async () => {
    const held = freshId("dl-held");
    const tried = freshId("dl-tried");
    const ENV = envWith([
      { name: held, url: "https://dl-held.test/hook" },
      { name: tried, url: "https://dl-tried.test/hook" },
    ]);
    const { alert_id } = await storedAlert();
    await pendingRow(alert_id, held, 0);
    await pendingRow(alert_id, tried, 10);
    const m = message(alert_id, 11);
    const result = await runQueue(DLQ, [m], ENV);
    expect(result.explicitAcks).toEqual([m.id]);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ [held]: "pending", [tried]: "dead" });
    // Its claim ended with the batch.
    expect((await alertRow(alert_id))?.fanout_claimed_until).toBeNull();
  });
});

describe("retention", () => {
  it("keeps an alert that is on the Queue but not yet consumed, and erases it once its fan-out is done", async () => {
    const name = freshId("ret");
    const ENV = envWith([{ name, url: "https://ret.test/hook" }]);
    stubDestinations();
    const { alert_id } = await storedAlert(examplePayload({ timestamp: "2020-03-01T00:00:00.000Z" }));
    // The producer's send went through: enqueued, no ledger row yet.
    await env.DB.prepare("UPDATE alerts SET enqueued_at = '2020-03-01T00:00:00.000Z' WHERE alert_id = ?").bind(alert_id).run();
    const kept = await applyRetention(env.DB, 30, new Date());
    expect(kept.kept_unfinished).toBeGreaterThanOrEqual(1);
    expect(await alertRow(alert_id)).not.toBeNull();

    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ [name]: "delivered" });
    // Once the consumer's claim has run out, its ledger row says it is finished.
    await applyRetention(env.DB, 30, new Date(Date.now() + 10 * 60_000));
    expect(await alertRow(alert_id)).toBeNull();
  });
});
