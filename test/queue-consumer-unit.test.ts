/** The consumer of oneflow-alerts, called directly with createMessageBatch / getQueueResult. */
import { createExecutionContext, createMessageBatch, getQueueResult } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import { retryDelaySeconds } from "../src/fanout/backoff";
import { consumeAlerts } from "../src/fanout/consumer";
import { parseDestinations } from "../src/fanout/destinations";
import { alertRow, storedRow } from "./fixtures";
import {
  deliveries,
  FANOUT_ENV,
  message,
  runQueue,
  SECRET,
  SLACK_SURVEY,
  statusByDestination,
  storedAlert,
  stubDestinations,
  watchRetryDelays,
} from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const QUEUE = "oneflow-alerts";

describe("queue consumer", () => {
  it("delivers to every destination that wants the alert and acknowledges", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m]);
    expect(result.explicitAcks).toEqual([m.id]);
    expect(result.retryMessages).toEqual([]);
    expect(received.map((r) => r.host).sort()).toEqual(["crm.test", "warehouse.test"]);
    const rows = await deliveries(alert_id);
    expect(statusByDestination(rows)).toEqual({ crm: "delivered", warehouse: "delivered" });
    for (const row of rows) {
      expect(row).toMatchObject({ attempts: 1, last_status: 200, last_error: null });
      expect(row.delivered_at).toMatch(/Z$/);
    }
  });

  it("raw: the body is the stored payload byte for byte, signed in the Standard Webhooks scheme", async () => {
    const received = stubDestinations();
    const { alert_id, payload } = await storedAlert();
    await runQueue(QUEUE, [message(alert_id)]);
    const stored = (await alertRow(alert_id))?.payload;
    const crm = received.find((r) => r.host === "crm.test");
    expect(crm?.body).toBe(stored);
    expect(crm?.headers).toMatchObject({ "content-type": "application/json", "webhook-id": alert_id });
    expect(Math.abs(Number(crm?.headers["webhook-timestamp"]) - Date.now() / 1000)).toBeLessThan(60);
    expect(new Webhook(SECRET).verify(crm?.body ?? "", crm?.headers ?? {})).toEqual(payload);
    // A tampered body fails verification.
    expect(() => new Webhook(SECRET).verify(`${crm?.body} `, crm?.headers ?? {})).toThrow();

    const warehouse = received.find((r) => r.host === "warehouse.test");
    expect(warehouse?.body).toBe(stored);
    expect(warehouse?.headers["webhook-id"]).toBe(alert_id);
    expect(warehouse?.headers["webhook-signature"]).toBeUndefined();
  });

  it("a destination answering 500: that message is retried with the computed delay, the delivery stays pending", async () => {
    stubDestinations({ "warehouse.test": () => new Response("boom", { status: 500 }) });
    const { alert_id } = await storedAlert();
    const m = message(alert_id, 3);
    const batch = createMessageBatch(QUEUE, [m]);
    const delays = watchRetryDelays(batch);
    const ctx = createExecutionContext();
    await consumeAlerts(batch, {
      db: env.DB,
      queue: env.ALERTS_QUEUE,
      destinations: parseDestinations(FANOUT_ENV.DESTINATIONS),
      retry_base_seconds: 30,
      delivery_timeout_ms: 10_000,
      breaker: { pause_after_failures: 100_000, pause_seconds: 300 },
      now: () => new Date(),
      random: () => 0.5,
    });
    const result = await getQueueResult(batch, ctx);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    // Third attempt, base 30 s: a step of 120 s, half fixed and half jittered.
    expect(delays[m.id]).toBe(retryDelaySeconds({ attempts: 3, base_seconds: 30, random: 0.5 }));
    expect(delays[m.id]).toBe(90);
    expect(statusByDestination(await deliveries(alert_id))).toEqual({ crm: "delivered", warehouse: "pending" });
    expect((await deliveries(alert_id)).find((d) => d.destination === "warehouse")).toMatchObject({
      attempts: 1,
      last_status: 500,
      last_error: "HTTP 500",
    });
  });

  it("the retry delivers only to the destination still pending", async () => {
    let failing = true;
    const received = stubDestinations({
      "warehouse.test": () => (failing ? new Response("boom", { status: 503 }) : new Response("ok")),
    });
    const { alert_id } = await storedAlert();
    await runQueue(QUEUE, [message(alert_id, 1)]);
    failing = false;
    const again = message(alert_id, 2);
    const result = await runQueue(QUEUE, [again]);
    expect(result.explicitAcks).toEqual([again.id]);
    expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1);
    expect(received.filter((r) => r.host === "warehouse.test")).toHaveLength(2);
    const rows = await deliveries(alert_id);
    expect(statusByDestination(rows)).toEqual({ crm: "delivered", warehouse: "delivered" });
    expect(rows.find((r) => r.destination === "warehouse")?.attempts).toBe(2);
  });

  it.each([400, 401, 404, 410, 422])("a %i is permanent: marked failed, acknowledged, not retried", async (status) => {
    stubDestinations({ "crm.test": () => new Response("no", { status }) });
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m]);
    expect(result.explicitAcks).toEqual([m.id]);
    expect(result.retryMessages).toEqual([]);
    expect((await deliveries(alert_id)).find((d) => d.destination === "crm")).toMatchObject({
      status: "failed",
      last_status: status,
    });
  });

  // A 429 holds its destination instead (test/pacing.test.ts).
  it.each([408, 500, 502])("a %i is retried", async (status) => {
    stubDestinations({ "crm.test": () => new Response("later", { status }) });
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect((await deliveries(alert_id)).find((d) => d.destination === "crm")?.status).toBe("pending");
  });

  it("honours a destination's Retry-After on a 5xx it retries", async () => {
    stubDestinations({ "crm.test": () => new Response("down for maintenance", { status: 500, headers: { "retry-after": "600" } }) });
    const { alert_id } = await storedAlert();
    const result = await runQueue(QUEUE, [message(alert_id, 1)]);
    expect(result.delays[result.retryMessages[0]?.msgId ?? ""]).toBe(600);
  });

  it("a network error or timeout is retried and recorded", async () => {
    stubDestinations({
      "crm.test": () => {
        throw new DOMException("The operation was aborted due to timeout", "TimeoutError");
      },
      "warehouse.test": () => {
        throw new TypeError("Network connection lost.");
      },
    });
    const { alert_id } = await storedAlert();
    const result = await runQueue(QUEUE, [message(alert_id)]);
    expect(result.retryMessages).toHaveLength(1);
    const rows = await deliveries(alert_id);
    expect(rows.map((r) => [r.destination, r.status, r.last_status, r.last_error])).toEqual([
      ["crm", "pending", null, "no answer within 10 s"],
      ["warehouse", "pending", null, "Network connection lost."],
    ]);
  });

  it("every request carries a timeout signal", async () => {
    const signals: (AbortSignal | null | undefined)[] = [];
    const original = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      if (!new URL(new Request(input).url).hostname.endsWith(".test")) return original(input, init);
      signals.push(init?.signal);
      return new Response("ok");
    });
    const { alert_id } = await storedAlert();
    await runQueue(QUEUE, [message(alert_id)]);
    expect(signals).toHaveLength(2);
    for (const signal of signals) expect(signal).toBeInstanceOf(AbortSignal);
  });

  it("a redirect is never followed: the 3xx is recorded with its status and retried like a 5xx", async () => {
    const received = stubDestinations({
      "crm.test": () => new Response(null, { status: 302, headers: { location: "https://elsewhere.test/hook" } }),
    });
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(received.map((r) => r.host).sort()).toEqual(["crm.test", "warehouse.test"]);
    expect(received.map((r) => r.redirect)).toEqual(["manual", "manual"]);
    const crm = (await deliveries(alert_id)).find((d) => d.destination === "crm");
    expect(crm).toMatchObject({ status: "pending", last_status: 302, last_error: "HTTP 302" });
  });

  it("at most six requests are open at once, and each timeout starts when its request is sent", async () => {
    let open = 0;
    let most = 0;
    const sent: string[] = [];
    const original = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const request = new Request(input);
      if (!new URL(request.url).hostname.endsWith(".test")) return original(input, init);
      sent.push(request.headers.get("webhook-id") ?? "");
      open += 1;
      most = Math.max(most, open);
      // Never answers: only the timeout ends it.
      const signal = init?.signal;
      return new Promise<Response>((_, reject) =>
        signal?.addEventListener("abort", () => {
          open -= 1;
          reject(signal.reason);
        }),
      );
    });
    const alerts = await Promise.all(Array.from({ length: 7 }, () => storedAlert()));
    const started = Date.now();
    await runQueue(QUEUE, alerts.map((a) => message(a.alert_id)), { ...FANOUT_ENV, DELIVERY_TIMEOUT_MS: "300" });
    // 14 deliveries, six at a time, each given its own 300 ms once sent: three waves.
    expect(most).toBe(6);
    expect(sent).toHaveLength(14);
    expect(Date.now() - started).toBeGreaterThanOrEqual(850);
    for (const a of alerts) {
      for (const d of await deliveries(a.alert_id)) expect(d).toMatchObject({ status: "pending", last_error: "no answer within 0.3 s" });
    }
  });

  it("a destination that never answers is cut off at DELIVERY_TIMEOUT_MS; the others are delivered", async () => {
    const original = globalThis.fetch;
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      const host = new URL(new Request(input).url).hostname;
      if (host === "crm.test") {
        const signal = init?.signal;
        return new Promise<Response>((_, reject) => signal?.addEventListener("abort", () => reject(signal.reason)));
      }
      return host.endsWith(".test") ? new Response("ok") : original(input, init);
    });
    const { alert_id } = await storedAlert();
    const started = Date.now();
    const result = await runQueue(QUEUE, [message(alert_id)], { ...FANOUT_ENV, DELIVERY_TIMEOUT_MS: "300" });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(result.retryMessages).toHaveLength(1);
    const rows = await deliveries(alert_id);
    expect(rows.map((r) => [r.destination, r.status, r.last_error])).toEqual([
      ["crm", "pending", "no answer within 0.3 s"],
      ["warehouse", "delivered", null],
    ]);
  });

  it("a mixed batch: each message acknowledged or retried on its own", async () => {
    const bad = await storedAlert({ survey_id: "fails-at-crm" });
    const good = await storedAlert();
    stubDestinations({
      "crm.test": (_, r) =>
        r.headers["webhook-id"] === bad.alert_id ? new Response("no", { status: 500 }) : new Response("ok"),
    });
    const mGood = message(good.alert_id);
    const mBad = message(bad.alert_id);
    const result = await runQueue(QUEUE, [mBad, mGood]);
    expect(result.explicitAcks).toEqual([mGood.id]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([mBad.id]);
    expect(statusByDestination(await deliveries(good.alert_id))).toEqual({ crm: "delivered", warehouse: "delivered" });
    expect(statusByDestination(await deliveries(bad.alert_id))).toEqual({ crm: "pending", warehouse: "delivered" });
  });

  it("skips destinations that already have the alert", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    await runQueue(QUEUE, [message(alert_id)]);
    expect(received).toHaveLength(2);
    const again = message(alert_id);
    const result = await runQueue(QUEUE, [again]);
    expect(result.explicitAcks).toEqual([again.id]);
    expect(received).toHaveLength(2);
  });

  it("two messages for one alert in one batch deliver it once", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    const result = await runQueue(QUEUE, [message(alert_id), message(alert_id)]);
    expect(result.explicitAcks).toHaveLength(2);
    expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1);
  });

  it("two consumers racing on one alert deliver it once", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const received = stubDestinations({
      "crm.test": async () => {
        await gate;
        return new Response("ok");
      },
    });
    const { alert_id } = await storedAlert();
    const first = runQueue(QUEUE, [message(alert_id)]);
    await vi.waitFor(() => expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1));
    const second = await runQueue(QUEUE, [message(alert_id)]);
    release();
    await first;
    // The second consumer neither sends nor acknowledges: its message comes back when the claim ends.
    expect(second.explicitAcks).toHaveLength(0);
    expect(second.retryMessages).toHaveLength(1);
    const delay = Object.values(second.delays)[0] ?? 0;
    expect(delay).toBeGreaterThan(10);
    expect(delay).toBeLessThanOrEqual(61);
    expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1);
    // When it comes back, everything is delivered: acknowledged, nothing resent.
    const third = await runQueue(QUEUE, [message(alert_id)]);
    expect(third.explicitAcks).toHaveLength(1);
    expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1);
  });

  it("the survey_ids filter: the Slack destination gets only its survey", async () => {
    const received = stubDestinations();
    const other = await storedAlert();
    const wanted = await storedAlert({ survey_id: SLACK_SURVEY });
    await runQueue(QUEUE, [message(other.alert_id), message(wanted.alert_id)]);
    expect(statusByDestination(await deliveries(other.alert_id))).toEqual({ crm: "delivered", warehouse: "delivered" });
    expect(statusByDestination(await deliveries(wanted.alert_id))).toEqual({
      crm: "delivered",
      slack: "delivered",
      warehouse: "delivered",
    });
    expect(received.filter((r) => r.host === "slack.test")).toHaveLength(1);
  });

  it("slack: a readable message with survey, user, each question and answer, and the NPS category", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert({ survey_id: SLACK_SURVEY });
    await runQueue(QUEUE, [message(alert_id)]);
    const slack = received.find((r) => r.host === "slack.test");
    expect(slack?.headers["content-type"]).toBe("application/json");
    const body = JSON.parse(slack?.body ?? "{}") as { text: string; blocks: unknown[] };
    expect(body.text).toBe(
      "New response to Net Promoter Score (NPS) from sdk_system_id_1680151080658 · NPS 10 (promoter)",
    );
    const all = JSON.stringify(body.blocks);
    expect(all).toContain("How likely are you to recommend us to a friend or co-worker?");
    expect(all).toContain("*10* (promoter)");
    expect(all).toContain("What's the reason for this score?");
    expect(all).toContain("best user experience");
    expect(all).toContain(alert_id);
  });

  it("one slow destination does not hold up the others", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const answered: string[] = [];
    stubDestinations({
      "crm.test": async () => {
        await gate;
        answered.push("crm");
        return new Response("ok");
      },
      "warehouse.test": () => {
        answered.push("warehouse");
        return new Response("ok");
      },
    });
    const { alert_id } = await storedAlert();
    const running = runQueue(QUEUE, [message(alert_id)]);
    // The warehouse is answered while the crm still hangs: the deliveries run side by side.
    await vi.waitFor(() => expect(answered).toEqual(["warehouse"]));
    release();
    await running;
    expect(statusByDestination(await deliveries(alert_id)).crm).toBe("delivered");
  });

  it("no destinations configured: acknowledged, nothing recorded", async () => {
    const received = stubDestinations();
    const logs = vi.spyOn(console, "log");
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], { ...env, DESTINATIONS: "" });
    expect(result.explicitAcks).toEqual([m.id]);
    expect(received).toEqual([]);
    expect(await deliveries(alert_id)).toEqual([]);
    expect(logs.mock.calls.map((c) => String(c[0])).some((l) => l.includes("fanout.no_destinations") && l.includes(alert_id))).toBe(true);
  });

  it("malformed DESTINATIONS: messages retried, an error logged, /healthz answers bad_destinations", async () => {
    const errors = vi.spyOn(console, "error");
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const broken = { ...env, DESTINATIONS: '[{"name":"x","url":"ftp://nope"}]' };
    const result = await runQueue(QUEUE, [m], broken);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(errors.mock.calls.map((c) => String(c[0])).some((l) => l.includes("fanout.bad_destinations"))).toBe(true);

    const ctx = createExecutionContext();
    const res = await (await import("../src/index")).default.fetch(new Request("https://worker.test/healthz"), broken, ctx);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "bad_destinations" });
    expect((await exports.default.fetch("https://worker.test/healthz")).status).toBe(200);
  });

  it("a message for an alert that is not stored, or not ours, is acknowledged", async () => {
    stubDestinations();
    const missing = message("never-stored");
    const junk = { id: "junk-1", timestamp: new Date(), attempts: 1, body: { hello: "world" } };
    const result = await runQueue(QUEUE, [missing, junk as unknown as ReturnType<typeof message>]);
    expect(result.explicitAcks.sort()).toEqual([junk.id, missing.id].sort());
  });

  it("D1 failing while reading the batch: every message retried", async () => {
    stubDestinations();
    const { alert_id } = await storedAlert();
    vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: disk I/O error"));
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], { ...FANOUT_ENV, DB: env.DB });
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
  });
});

describe("the outbox mark", () => {
  it("the consumer sets enqueued_at for every alert of its batch, with or without destinations", async () => {
    stubDestinations();
    const a = await storedAlert();
    const b = await storedAlert();
    await env.DB.prepare("UPDATE alerts SET enqueued_at = NULL WHERE alert_id IN (?, ?)").bind(a.alert_id, b.alert_id).run();
    await runQueue(QUEUE, [message(a.alert_id)]);
    await runQueue(QUEUE, [message(b.alert_id)], { ...env, DESTINATIONS: "" });
    expect((await storedRow(a.alert_id)).enqueued_at).toMatch(/Z$/);
    expect((await storedRow(b.alert_id)).enqueued_at).toMatch(/Z$/);
  });
});
