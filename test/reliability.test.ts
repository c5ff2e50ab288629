/**
 * Every alert reaches every destination after any single fault: one fault per step of the
 * consumer, the dead-letter consumer and the sweep (a D1 `batch`/`run` that rejects, a
 * Queue send that rejects, an exception at an await), then the way back the system takes
 * by itself (the message's retry, the claim's end, the next sweep). Each test ends with
 * every delivery `delivered`, `failed` or `dead`: none stuck.
 */
import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpoolMessage } from "../src/alert";
import worker from "../src/index";
import { deliveries, failBatchesWith, FANOUT_ENV, message, runQueue, storedAlert, stubDestinations, watchSendBatch } from "./fanout-fixtures";
import { alertRow, examplePayload, storedRow } from "./fixtures";

const QUEUE = "oneflow-alerts";
const DLQ = "oneflow-alerts-dlq";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Every delivery of the alert has an outcome; `delivered` for each destination that wants it. */
async function expectSettled(alert_id: string, expected: Record<string, string> = { crm: "delivered", warehouse: "delivered" }) {
  const rows = await deliveries(alert_id);
  expect(Object.fromEntries(rows.map((r) => [r.destination, r.status]))).toEqual(expected);
  for (const r of rows) expect(["delivered", "failed", "dead"]).toContain(r.status);
}

/** The claim a consumer left on an alert ends (as it does 60 s after it was taken). */
async function endClaim(alert_id: string) {
  await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = '2000-01-01T00:00:00.000Z' WHERE alert_id = ?").bind(alert_id).run();
}

/**
 * Statements whose SQL holds `fragment` are prepared as usual (D1 does no I/O there) but
 * reject when run, as D1 does when it fails; every other statement runs.
 */
function failStatementsMatching(fragment: string) {
  const original = env.DB.prepare.bind(env.DB);
  const fault = { hit: 0 };
  const failing = (statement: D1PreparedStatement): D1PreparedStatement =>
    new Proxy(statement, {
      get(target, prop) {
        if (prop === "bind") return (...values: unknown[]) => failing(target.bind(...values));
        if (prop === "all" || prop === "run" || prop === "first") {
          return () => {
            fault.hit += 1;
            return Promise.reject(new Error("D1_ERROR: disk I/O error"));
          };
        }
        return Reflect.get(target, prop, target);
      },
    });
  vi.spyOn(env.DB, "prepare").mockImplementation((sql) => (sql.includes(fragment) ? failing(original(sql)) : original(sql)));
  return fault;
}

/** The backoff of a message's first failed attempt (base 30 s): 15 to 30 s. */
function expectFirstBackoff(delay: number | undefined) {
  expect(delay).toBeGreaterThanOrEqual(15);
  expect(delay).toBeLessThanOrEqual(30);
}

const tick = (scheduledTime = new Date()) => worker.scheduled(createScheduledController({ scheduledTime, cron: "*/5 * * * *" }), FANOUT_ENV);

describe("consumer", () => {
  it("claiming fails (D1): every message retried; the retry delivers", async () => {
    stubDestinations();
    const { alert_id } = await storedAlert();
    const fault = failBatchesWith("SET fanout_claimed_until = e.value");
    const failed = await runQueue(QUEUE, [message(alert_id)]);
    expect(fault.hit).toBe(1);
    expect(failed.retryMessages).toHaveLength(1);
    expect(failed.explicitAcks).toHaveLength(0);
    expectFirstBackoff(Object.values(failed.delays)[0]);
    vi.restoreAllMocks();
    stubDestinations();
    expect((await runQueue(QUEUE, [message(alert_id, 2)])).explicitAcks).toHaveLength(1);
    await expectSettled(alert_id);
  });

  it("reading another consumer's claim fails (D1): retried, not acknowledged; delivered once the claim ends", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = ? WHERE alert_id = ?").bind(new Date(Date.now() + 60_000).toISOString(), alert_id).run();
    const fault = failStatementsMatching("fanout_claimed_until FROM alerts");
    const failed = await runQueue(QUEUE, [message(alert_id)]);
    expect(fault.hit).toBe(1);
    expect(failed.retryMessages).toHaveLength(1);
    expectFirstBackoff(Object.values(failed.delays)[0]);
    vi.restoreAllMocks();
    await endClaim(alert_id);
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id, 2)]);
    await expectSettled(alert_id);
  });

  it("an exception at the delivery's await (the network): pending and retried; the retry delivers", async () => {
    stubDestinations({ "crm.test": () => Promise.reject(new TypeError("Network connection lost")) });
    const { alert_id } = await storedAlert();
    const failed = await runQueue(QUEUE, [message(alert_id)]);
    expect(failed.retryMessages).toHaveLength(1);
    expect((await deliveries(alert_id)).find((d) => d.destination === "crm")?.status).toBe("pending");
    vi.restoreAllMocks();
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id, 2)]);
    await expectSettled(alert_id);
  });

  it("the ledger write fails after a 2xx and the Queue refuses the outcomes: the message is retried, never acknowledged; it is delivered again (receivers dedupe on webhook-id)", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    // The record's batch (the ledger rows with the end of the claims) fails, and so does the
    // Queue send that would carry the outcomes (with the Queue up, see delivery-guarantees).
    const fault = failBatchesWith("INSERT INTO deliveries");
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const failed = await runQueue(QUEUE, [message(alert_id)]);
    expect(fault.hit).toBe(1);
    expect(failed.explicitAcks).toHaveLength(0);
    expect(failed.retryMessages).toHaveLength(1);
    expectFirstBackoff(Object.values(failed.delays)[0]);
    vi.restoreAllMocks();
    const after = stubDestinations();
    expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1);
    expect(await deliveries(alert_id)).toEqual([]);
    // The failed batch's claim was ended on its own (issue 25): the retry, after its backoff, delivers.
    expect((await env.DB.prepare("SELECT fanout_claimed_until AS c FROM alerts WHERE alert_id = ?").bind(alert_id).first())?.c).toBeNull();
    await runQueue(QUEUE, [message(alert_id, 2)]);
    await expectSettled(alert_id);
    expect(after.filter((r) => r.host === "crm.test")).toHaveLength(1);
  });

  it("taking a paused destination's probe fails (D1): the message is retried with backoff; the retry probes and delivers", async () => {
    const name = "rel-probe";
    const ENV = { ...FANOUT_ENV, DESTINATIONS: JSON.stringify([{ name, url: "https://rel-probe.test/hook" }]) };
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO destination_health (destination, state, consecutive_failures, paused_until) VALUES (?, 'paused', 10, '2020-01-01T00:00:00.000Z')")
      .bind(name)
      .run();
    const fault = failStatementsMatching("SET probe_until");
    const received = stubDestinations();
    const failed = await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(fault.hit).toBe(1);
    expect(failed.explicitAcks).toHaveLength(0);
    expectFirstBackoff(Object.values(failed.delays)[0]);
    expect(received).toHaveLength(0);
    vi.restoreAllMocks();
    await endClaim(alert_id);
    stubDestinations();
    expect((await runQueue(QUEUE, [message(alert_id, 2)], ENV)).explicitAcks).toHaveLength(1);
    await expectSettled(alert_id, { [name]: "delivered" });
  });

  it("taking identify leases fails (D1): nothing is sent, the message is retried with backoff; the retry delivers", async () => {
    const name = "rel-identify";
    const ENV = { ...FANOUT_ENV, DESTINATIONS: JSON.stringify([{ name, url: "https://rel-identify.test/v1/identify", format: "1flow-identify", headers: { api_key: "k" } }]) };
    const { alert_id } = await storedAlert(examplePayload({ user: { user_system_id: "rel-user" } }));
    const fault = failBatchesWith("INSERT INTO identify_latest");
    const received = stubDestinations();
    const failed = await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(fault.hit).toBe(1);
    expect(received).toHaveLength(0);
    expectFirstBackoff(Object.values(failed.delays)[0]);
    vi.restoreAllMocks();
    await endClaim(alert_id);
    stubDestinations();
    expect((await runQueue(QUEUE, [message(alert_id, 2)], ENV)).explicitAcks).toHaveLength(1);
    await expectSettled(alert_id, { [name]: "delivered" });
  });

  it("a consumer that died mid-delivery: its claim holds the redelivered message back, then the delivery completes", async () => {
    const { alert_id } = await storedAlert();
    const until = new Date(Date.now() + 45_000).toISOString();
    await env.DB.prepare("UPDATE alerts SET fanout_claimed_until = ? WHERE alert_id = ?").bind(until, alert_id).run();
    const received = stubDestinations();
    const held = await runQueue(QUEUE, [message(alert_id, 2)]);
    expect(held.explicitAcks).toHaveLength(0);
    expect(Object.values(held.delays)[0]).toBeGreaterThanOrEqual(44);
    expect(received).toHaveLength(0);
    await endClaim(alert_id);
    await runQueue(QUEUE, [message(alert_id, 3)]);
    await expectSettled(alert_id);
  });
});

describe("dead-letter consumer", () => {
  it("D1 fails (a renamed table): retried with backoff, not dropped; the retry marks them dead", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("ALTER TABLE deliveries RENAME TO deliveries_off").run();
    let failed;
    try {
      failed = await runQueue(DLQ, [message(alert_id, 11)]);
    } finally {
      await env.DB.prepare("ALTER TABLE deliveries_off RENAME TO deliveries").run();
    }
    expect(failed.explicitAcks).toHaveLength(0);
    expect(Object.values(failed.delays)[0]).toBeGreaterThanOrEqual(30);
    expect((await runQueue(DLQ, [message(alert_id, 11)])).explicitAcks).toHaveLength(1);
    await expectSettled(alert_id, { crm: "dead", warehouse: "dead" });
  });

  it("marking dead fails (D1 batch): retried with the dead letters' backoff; the retry marks them", async () => {
    const { alert_id } = await storedAlert();
    const fault = failBatchesWith("'dead', 0");
    const failed = await runQueue(DLQ, [message(alert_id, 11)]);
    expect(fault.hit).toBe(1);
    expect(failed.retryMessages).toHaveLength(1);
    // The dead-letter queue's backoff (base 60 s) at its 11th attempt: capped at an hour, never under half.
    expect(Object.values(failed.delays)[0]).toBeGreaterThanOrEqual(1_800);
    vi.restoreAllMocks();
    await endClaim(alert_id);
    await runQueue(DLQ, [message(alert_id, 11)]);
    await expectSettled(alert_id, { crm: "dead", warehouse: "dead" });
  });

  it("a spooled body that outlived its retries goes back to the main queue; when the Queue refuses, it is retried, not dropped", async () => {
    const payload = examplePayload();
    const body: SpoolMessage = { v: 1, kind: "spool", body: JSON.stringify(payload), received_at: new Date().toISOString(), sha256: "x" };
    const send = vi.spyOn(env.ALERTS_QUEUE, "send").mockRejectedValueOnce(new Error("Queue send failed"));
    const refused = await runQueue(DLQ, [{ id: "dl-1", timestamp: new Date(), attempts: 11, body }]);
    expect(refused.retryMessages).toHaveLength(1);
    send.mockImplementation(async () => ({ metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } }) as QueueSendResponse);
    const sent = await runQueue(DLQ, [{ id: "dl-2", timestamp: new Date(), attempts: 11, body }]);
    expect(sent.explicitAcks).toEqual(["dl-2"]);
    expect(send).toHaveBeenLastCalledWith(body, { contentType: "json" });
    // Back on the main queue, it is stored and delivered.
    stubDestinations();
    await runQueue(QUEUE, [{ id: "m-1", timestamp: new Date(), attempts: 1, body }]);
    expect(await alertRow(payload.alert_id)).not.toBeNull();
    await expectSettled(payload.alert_id);
  });
});

describe("sweep", () => {
  it("the Queue refuses the send: the alert stays in the outbox; the next sweep sends it and it is delivered", async () => {
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const { alert_id } = await storedAlert();
    await tick(new Date(Date.now() + 120_000));
    expect((await storedRow(alert_id)).enqueued_at).toBeNull();
    vi.restoreAllMocks();
    const sends = watchSendBatch();
    await tick(new Date(Date.now() + 10 * 60_000));
    expect(sends.ids()).toContain(alert_id);
    expect((await storedRow(alert_id)).enqueued_at).not.toBeNull();
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id)]);
    await expectSettled(alert_id);
  });

  it("claiming the outbox fails (D1): the stale part still runs, and the next tick sends the alert", async () => {
    const stale = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'pending', 1, '2020-01-01T00:00:00.000Z')")
      .bind(stale.alert_id)
      .run();
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValueOnce(new Error("Queue send failed"));
    const { alert_id } = await storedAlert();
    vi.restoreAllMocks();
    const sends = watchSendBatch();
    failStatementsMatching("SET outbox_claimed_until");
    await tick(new Date(Date.now() + 120_000));
    expect(sends.ids()).toContain(stale.alert_id);
    expect(sends.ids()).not.toContain(alert_id);
    vi.mocked(env.DB.prepare).mockRestore();
    await tick(new Date(Date.now() + 10 * 60_000));
    expect(sends.ids()).toContain(alert_id);
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id), message(stale.alert_id)]);
    await expectSettled(alert_id);
    await expectSettled(stale.alert_id);
  });

  it("the outbox mark fails after the send (D1): the consumer marks it, and the next sweep does not send it again", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("UPDATE alerts SET enqueued_at = NULL WHERE alert_id = ?").bind(alert_id).run();
    const sends = watchSendBatch();
    const fault = failStatementsMatching("SET enqueued_at = ?1, outbox_claimed_until = NULL");
    await tick(new Date(Date.now() + 120_000));
    expect(fault.hit).toBeGreaterThanOrEqual(1);
    expect(sends.ids()).toContain(alert_id);
    const row = await alertRow(alert_id);
    expect(row).not.toBeNull();
    expect(row?.enqueued_at).toBeNull();
    vi.mocked(env.DB.prepare).mockRestore();
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id)]);
    const marked = await alertRow(alert_id);
    expect(marked).not.toBeNull();
    expect(marked?.enqueued_at).not.toBeNull();
    const before = sends.ids().length;
    await tick(new Date(Date.now() + 10 * 60_000));
    expect(sends.ids().slice(before)).not.toContain(alert_id);
    await expectSettled(alert_id);
  });

  it("touching the re-sent pending rows fails (D1): the alert was sent, and the next tick sends it again (at least once)", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'pending', 1, '2020-01-01T00:00:00.000Z')")
      .bind(alert_id)
      .run();
    const sends = watchSendBatch();
    const fault = failStatementsMatching("UPDATE deliveries SET updated_at = ?1");
    await tick();
    expect(fault.hit).toBe(1);
    expect(sends.ids()).toContain(alert_id);
    vi.mocked(env.DB.prepare).mockRestore();
    const before = sends.ids().length;
    await tick();
    expect(sends.ids().slice(before)).toContain(alert_id);
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id)]);
    await expectSettled(alert_id);
  });

  it("a pending delivery whose message was lost is sent again by the sweep and delivered", async () => {
    const { alert_id } = await storedAlert();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'pending', 1, '2020-01-01T00:00:00.000Z')")
      .bind(alert_id)
      .run();
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch");
    await tick();
    expect(send.mock.calls.flatMap((c) => Array.from(c[0]).map((m) => (m.body as { alert_id: string }).alert_id))).toContain(alert_id);
    vi.restoreAllMocks();
    stubDestinations();
    await runQueue(QUEUE, [message(alert_id)]);
    await expectSettled(alert_id);
  });
});
