/**
 * The circuit breaker, with an injected clock: a destination pauses after
 * PAUSE_AFTER_FAILURES consecutive failed attempts; while paused its deliveries stay
 * pending and spend no retry; one probe per PAUSE_SECONDS; a failing probe pauses it again,
 * a succeeding one resumes it, and every delivery that waited is then sent; none turns dead.
 */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { consumeAlerts } from "../src/fanout/consumer";
import { consumeDeadLetters } from "../src/fanout/dead-letters";
import { parseDestinations } from "../src/fanout/destinations";
import { sweepDestinations } from "../src/outbox";
import { deliveries, message, storedAlert, stubDestinations, watchRetryDelays, watchSendBatch } from "./fanout-fixtures";
import { ADMIN_TOKEN, callWorker } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const START = Date.parse("2026-11-27T12:00:00.000Z");
const at = (seconds: number) => new Date(START + seconds * 1000);

async function consume(name: string, messages: ReturnType<typeof message>[], clock: Date) {
  const batch = createMessageBatch("oneflow-alerts", messages);
  const delays = watchRetryDelays(batch);
  await consumeAlerts(batch, {
    db: env.DB,
    queue: env.ALERTS_QUEUE,
    destinations: parseDestinations(JSON.stringify([{ name, url: `https://${name}.test/hook` }])),
    retry_base_seconds: 30,
    delivery_timeout_ms: 1_000,
    breaker: { pause_after_failures: 3, pause_seconds: 300 },
    now: () => clock,
    random: () => 0.5,
  });
  return { ...(await getQueueResult(batch, createExecutionContext())), delays };
}

async function health(name: string) {
  return env.DB.prepare("SELECT * FROM destination_health WHERE destination = ?").bind(name).first<Record<string, unknown>>();
}

async function notifications(name: string) {
  const { results } = await env.DB.prepare("SELECT event, data FROM notifications WHERE key = ? ORDER BY id").bind(name).all<{ event: string; data: string }>();
  return results;
}

describe("circuit breaker", () => {
  it("pause, held deliveries, probe failing, probe succeeding, every waiting delivery sent, none dead", async () => {
    const name = "brk";
    let up = false;
    const received = stubDestinations({ [`${name}.test`]: () => new Response(up ? "ok" : "down", { status: up ? 200 : 503 }) });
    const sent = () => received.filter((r) => r.host === `${name}.test`).length;
    const alerts = await Promise.all(Array.from({ length: 3 }, () => storedAlert()));

    // Three failed attempts in a row: paused until +300 s, the operator told once.
    const failing = await consume(name, alerts.map((a) => message(a.alert_id)), at(0));
    expect(failing.retryMessages).toHaveLength(3);
    expect(await health(name)).toMatchObject({ state: "paused", consecutive_failures: 3, paused_until: at(300).toISOString(), last_status: 503 });
    expect((await notifications(name)).map((n) => n.event)).toEqual(["destination.paused"]);

    // While paused: nothing is sent, nothing spends a retry, the messages are acknowledged.
    const later = await storedAlert();
    const paused = await consume(name, [...alerts.map((a) => message(a.alert_id, 2)), message(later.alert_id)], at(60));
    expect(paused.explicitAcks).toHaveLength(4);
    expect(paused.retryMessages).toHaveLength(0);
    expect(sent()).toBe(3);
    expect(await deliveries(later.alert_id)).toMatchObject([{ status: "pending", attempts: 0, last_error: "destination paused" }]);
    for (const a of alerts) expect(await deliveries(a.alert_id)).toMatchObject([{ status: "pending", attempts: 1 }]);
    // Nothing of theirs is in flight: their claims end, so that the probe's message is taken at once.
    const claims = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id = ? AND fanout_claimed_until IS NOT NULL").bind(later.alert_id).first();
    expect(claims).toEqual({ n: 0 });

    // The pause runs out: the sweep sends one waiting alert, the consumer takes it as the probe. It fails.
    const sweep = watchSendBatch();
    expect(await sweepDestinations({ db: env.DB, queue: env.ALERTS_QUEUE, now: at(301) })).toMatchObject({ probes: 1 });
    const probeIds = sweep.ids();
    expect(probeIds).toHaveLength(1);
    await consume(name, [message(probeIds[0] ?? "")], at(301));
    expect(sent()).toBe(4);
    expect(await health(name)).toMatchObject({ state: "paused", paused_until: at(601).toISOString(), probe_until: null });

    // A second message in the same period sends nothing: one probe per period.
    await consume(name, [message(later.alert_id, 2)], at(400));
    expect(sent()).toBe(4);

    // The next probe succeeds: resumed, told once, and everything that waited is sent.
    up = true;
    await sweepDestinations({ db: env.DB, queue: env.ALERTS_QUEUE, now: at(601) });
    const probe2 = sweep.ids().at(-1) ?? "";
    await consume(name, [message(probe2)], at(601));
    expect(await health(name)).toMatchObject({ state: "active", consecutive_failures: 0, paused_until: null });
    expect((await notifications(name)).map((n) => n.event)).toEqual(["destination.paused", "destination.resumed"]);
    const before = sweep.ids().length;
    expect(await sweepDestinations({ db: env.DB, queue: env.ALERTS_QUEUE, now: at(602) })).toMatchObject({ resent: 3 });
    const resent = sweep.ids().slice(before);
    expect(resent.sort()).toEqual([...alerts, later].map((a) => a.alert_id).filter((id) => id !== probe2).sort());
    await consume(name, resent.map((id) => message(id)), at(603));
    for (const a of [...alerts, later]) expect((await deliveries(a.alert_id)).map((d) => d.status)).toEqual(["delivered"]);
    expect(await health(name)).toMatchObject({ resume_after: null, pending: 0 });
    // Nothing more to resend.
    expect(await sweepDestinations({ db: env.DB, queue: env.ALERTS_QUEUE, now: at(900) })).toEqual({ resent: 0, probes: 0 });
  });

  it("one probe per period, however many consumers ask at once: two concurrent batches of three send one request", async () => {
    const name = "brk-race";
    let calls = 0;
    stubDestinations({
      [`${name}.test`]: async () => {
        calls += 1;
        // Slow enough that both consumers are past their read of the breaker before either ends.
        await new Promise((r) => setTimeout(r, 50));
        return new Response("down", { status: 503 });
      },
    });
    const alerts = await Promise.all(Array.from({ length: 6 }, () => storedAlert()));
    await env.DB.prepare("INSERT INTO destination_health (destination, state, consecutive_failures, paused_until) VALUES (?, 'paused', 3, ?)")
      .bind(name, at(300).toISOString())
      .run();
    const [first, second] = await Promise.all([
      consume(name, alerts.slice(0, 3).map((a) => message(a.alert_id)), at(301)),
      consume(name, alerts.slice(3).map((a) => message(a.alert_id)), at(301)),
    ]);
    expect(calls).toBe(1);
    // The probe's message comes back (it failed); the five others wait, pending, with no attempt spent.
    expect(first.retryMessages.length + second.retryMessages.length).toBe(1);
    expect(first.explicitAcks.length + second.explicitAcks.length).toBe(5);
    const rows = (await Promise.all(alerts.map((a) => deliveries(a.alert_id)))).flat();
    expect(rows.filter((r) => r.attempts === 1)).toHaveLength(1);
    expect(rows.filter((r) => r.attempts === 0 && r.status === "pending")).toHaveLength(5);
    expect(await health(name)).toMatchObject({ state: "paused", paused_until: at(601).toISOString(), probe_until: null });
  });

  it("a message whose retries run out while its destination is paused leaves the delivery pending, never dead", async () => {
    const name = "brk-dlq";
    stubDestinations({ [`${name}.test`]: () => new Response("down", { status: 503 }) });
    const alerts = await Promise.all(Array.from({ length: 3 }, () => storedAlert()));
    await consume(name, alerts.map((a) => message(a.alert_id)), at(0));
    expect(await health(name)).toMatchObject({ state: "paused" });
    const batch = createMessageBatch("oneflow-alerts-dlq", [message(alerts[0]?.alert_id ?? "", 11)]);
    await consumeDeadLetters(batch, {
      db: env.DB,
      queue: env.ALERTS_QUEUE,
      destinations: parseDestinations(JSON.stringify([{ name, url: `https://${name}.test/hook` }])),
      now: () => at(10),
      random: () => 0.5,
    });
    expect((await getQueueResult(batch, createExecutionContext())).explicitAcks).toHaveLength(1);
    expect((await deliveries(alerts[0]?.alert_id ?? "")).map((d) => d.status)).toEqual(["pending"]);
  });

  it("a success resets the count of failures in a row", async () => {
    const name = "brk-reset";
    let fail = true;
    stubDestinations({ [`${name}.test`]: () => new Response("x", { status: fail ? 500 : 200 }) });
    const [a, b, c] = await Promise.all(Array.from({ length: 3 }, () => storedAlert()));
    await consume(name, [message(a?.alert_id ?? ""), message(b?.alert_id ?? "")], at(0));
    expect(await health(name)).toMatchObject({ consecutive_failures: 2, state: "active" });
    fail = false;
    await consume(name, [message(c?.alert_id ?? "")], at(10));
    expect(await health(name)).toMatchObject({ consecutive_failures: 0, state: "active" });
  });
});

describe("GET /api/destinations and Resume now", () => {
  it("reports each destination's health, and resumes a paused one", async () => {
    const name = "brk-api";
    const environment = { ...env, ADMIN_TOKEN, DESTINATIONS: JSON.stringify([{ name, url: `https://${name}.test/hook` }]) };
    await env.DB.prepare(
      `INSERT INTO destination_health (destination, state, consecutive_failures, paused_until, last_status, last_error)
       VALUES (?, 'paused', 12, '2030-01-01T00:00:00.000Z', 503, 'HTTP 503')`,
    )
      .bind(name)
      .run();
    const res = await callWorker("/api/destinations", {}, environment);
    expect(await res.json()).toMatchObject({
      ok: true,
      destinations: [
        {
          name,
          source: "config",
          enabled: true,
          state: "paused",
          consecutive_failures: 12,
          paused_until: "2030-01-01T00:00:00.000Z",
          last_status: 503,
          last_error: "HTTP 503",
          last_delivered_at: null,
          delivered_24h: 0,
          failed_24h: 0,
          pending: 0,
        },
      ],
    });
    const resumed = await callWorker(`/api/destinations/${name}/resume`, { method: "POST" }, environment);
    expect(await resumed.json()).toEqual({ ok: true, resumed: true });
    expect(await health(name)).toMatchObject({ state: "active", consecutive_failures: 0 });
    expect((await callWorker("/api/destinations/nope/resume", { method: "POST" }, environment)).status).toBe(400);
  });
});
