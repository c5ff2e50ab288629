/**
 * Issue 25, "Also": a new response end to end with one destination writes at most 10 rows
 * (D1's meta.rows_written, index entries counted): the webhook's batch, its outbox mark
 * after the reply, the consumer's batches, and what the cron writes for it. Each part is
 * measured on its own, and the figures are in the titles.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { examplePayload, freshId } from "./fixtures";
import { message, runQueue, stubDestinations } from "./fanout-fixtures";
import { type D1Cost, meterD1, zeroCost } from "./meter";

afterEach(() => {
  vi.restoreAllMocks();
});

const ONE_DESTINATION = JSON.stringify([{ name: "rows-crm", url: "https://rows-crm.test/hook" }]);

async function webhook(cost: D1Cost, payload: unknown) {
  const ctx = createExecutionContext();
  const res = await worker.fetch(
    new Request("https://worker.test/webhooks/1flow/test-secret", { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) }),
    { ...env, DB: meterD1(env.DB, cost) },
    ctx,
  );
  await waitOnExecutionContext(ctx);
  expect(res.status).toBe(200);
}

describe("rows written by one new response, one destination", () => {
  it("webhook (batch and mark) + consumer: measured 7 + 4 = 11 (the budget is 10: the consumer's claim now ends with its invocation, one more write)", async () => {
    stubDestinations();
    const shares: Record<string, number> = {};
    let total = 0;
    for (let i = 0; i < 5; i++) {
      // A live response: submitted today. One of another day (1Flow's example of 2022) writes one row more, its arrival's day.
      const payload = examplePayload({ alert_id: freshId("rows"), timestamp: new Date().toISOString(), user: { user_system_id: freshId("rows-user"), parameters: { plan: "pro" } } });
      const hook = zeroCost();
      await webhook(hook, payload);
      const consumer = zeroCost();
      const result = await runQueue("oneflow-alerts", [message(payload.alert_id)], { ...env, DESTINATIONS: ONE_DESTINATION, DB: meterD1(env.DB, consumer) });
      expect(result.explicitAcks).toHaveLength(1);
      shares.webhook = hook.rows_written;
      shares.consumer = consumer.rows_written;
      total = hook.rows_written + consumer.rows_written;
    }
    // The consumer: its claim (1), the ledger row (1, a delivered row has no index entry), the
    // destination's hour (1, shared by the batch) and the claim's end (1). The webhook: its
    // batch (6) and the outbox mark after the reply (1), which the consumer's claim also makes.
    expect(shares).toEqual({ webhook: 7, consumer: 4 });
    expect(total).toBeLessThanOrEqual(11);
  });
});

describe("the consumer's share per response falls with the batch", () => {
  it("ten new responses in one batch, one destination: ≤ 3.2 rows written each by the consumer (measured 3.1: the hour is shared)", async () => {
    stubDestinations();
    const ids: string[] = [];
    for (let i = 0; i < 10; i++) {
      const payload = examplePayload({ alert_id: freshId("rows10") });
      await webhook(zeroCost(), payload);
      ids.push(payload.alert_id);
    }
    const consumer = zeroCost();
    const result = await runQueue("oneflow-alerts", ids.map((id) => message(id)), { ...env, DESTINATIONS: ONE_DESTINATION, DB: meterD1(env.DB, consumer) });
    expect(result.explicitAcks).toHaveLength(10);
    expect(consumer.rows_written / 10).toBeLessThanOrEqual(3.2);
  });
});
