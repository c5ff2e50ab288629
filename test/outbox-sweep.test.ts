/** The scheduled outbox sweep, through the Worker's real `scheduled()` handler. */
import { createExecutionContext, createScheduledController, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { OUTBOX_CLAIM_IN_SECONDS, SWEEP_LIMIT } from "../src/outbox";
import { watchSendBatch } from "./fanout-fixtures";
import { alertRow, examplePayload, webhookRequest, storedRow } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Stores an alert whose enqueue failed, received `age_seconds` ago. */
async function unsent(age_seconds: number): Promise<string> {
  const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
  const payload = examplePayload();
  const ctx = createExecutionContext();
  await worker.fetch(webhookRequest(JSON.stringify(payload)), env, ctx);
  await waitOnExecutionContext(ctx);
  send.mockRestore();
  const received = new Date(Date.now() - age_seconds * 1000).toISOString();
  await env.DB.prepare("UPDATE alerts SET received_at = ? WHERE alert_id = ?").bind(received, payload.alert_id).run();
  expect((await storedRow(payload.alert_id)).enqueued_at).toBeNull();
  return payload.alert_id;
}

function sweep(at: Date = new Date()): Promise<void> {
  return worker.scheduled(createScheduledController({ scheduledTime: at, cron: "*/5 * * * *" }), env);
}


describe("outbox sweep", () => {
  it("enqueues a stored alert whose send failed, with sendBatch, and marks it", async () => {
    const alert_id = await unsent(120);
    const sent = watchSendBatch();
    await sweep();
    expect(sent.ids()).toContain(alert_id);
    expect(sent.batches[0]?.[0]).toMatchObject({ body: { v: 1 }, contentType: "json" });
    expect((await storedRow(alert_id)).enqueued_at).not.toBeNull();
    await sweep();
    expect(sent.ids().filter((id) => id === alert_id)).toHaveLength(1);
  });

  it("leaves an alert younger than a minute to its own request", async () => {
    const alert_id = await unsent(10);
    const sent = watchSendBatch();
    await sweep();
    expect(sent.ids()).not.toContain(alert_id);
    expect((await storedRow(alert_id)).enqueued_at).toBeNull();
  });

  it("two overlapping sweeps enqueue an alert once", async () => {
    const ids = [await unsent(300), await unsent(300), await unsent(300)];
    const sent = watchSendBatch();
    await Promise.all([sweep(), sweep(), sweep()]);
    for (const id of ids) expect(sent.ids().filter((s) => s === id)).toHaveLength(1);
  });

  it("sends at most 100 messages a call and bounds the work of a run by its share of the cron's subrequests", async () => {
    const values = Array.from({ length: 230 }, (_, i) => `('bulk-${i}-${crypto.randomUUID()}')`).join(",");
    await env.DB.prepare(
      `INSERT INTO alerts (alert_id, alert_name, survey_id, submitted_at, received_at, payload, payload_sha256)
       SELECT column1, 'submitted_survey', 's', '2024-01-01T00:00:00.000Z', '2024-01-01T00:00:00.000Z', '{}', 'x'
       FROM (VALUES ${values})`,
    ).run();
    const sent = watchSendBatch();
    await sweep();
    for (const batch of sent.batches) expect(batch.length).toBeLessThanOrEqual(100);
    // Its share (9 subrequests) holds two rounds of claim, send and mark, and the stale part.
    expect(sent.ids().filter((id) => id.startsWith("bulk-"))).toHaveLength(200);
    expect(sent.ids().length).toBeLessThanOrEqual(SWEEP_LIMIT);
    await sweep();
    expect(new Set(sent.ids().filter((id) => id.startsWith("bulk-"))).size).toBe(230);
    const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id LIKE 'bulk-%' AND enqueued_at IS NULL").first();
    expect(left).toEqual({ n: 0 });
  });

  it("a failed sendBatch leaves the alert for a later sweep", async () => {
    const alert_id = await unsent(120);
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValueOnce(new Error("Queue send failed"));
    await sweep();
    expect((await storedRow(alert_id)).enqueued_at).toBeNull();
    vi.restoreAllMocks();

    const sent = watchSendBatch();
    await sweep(new Date());
    expect(sent.ids()).not.toContain(alert_id); // still held by the first sweep's claim
    await sweep(new Date(Date.now() + (OUTBOX_CLAIM_IN_SECONDS + 1) * 1000));
    expect(sent.ids()).toContain(alert_id);
    expect((await storedRow(alert_id)).enqueued_at).not.toBeNull();
  });

  it("re-enqueues an alert whose pending delivery lost its message", async () => {
    const alert_id = await unsent(120);
    await sweep();
    const old = new Date(Date.now() - 3 * 3_600_000).toISOString();
    await env.DB.prepare(
      "INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) VALUES (?, 'crm', 'pending', 2, ?)",
    )
      .bind(alert_id, old)
      .run();
    const sent = watchSendBatch();
    await sweep();
    expect(sent.ids()).toContain(alert_id);
    const row = await env.DB.prepare("SELECT updated_at FROM deliveries WHERE alert_id = ?").bind(alert_id).first<{ updated_at: string }>();
    expect((row?.updated_at ?? "") > old).toBe(true);
  });
});
