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
  it("webhook (batch and mark) + consumer: ≤ 10 rows written in all; the consumer's share ≤ 3", async () => {
    stubDestinations();
    const shares: Record<string, number> = {};
    let total = 0;
    for (let i = 0; i < 5; i++) {
      const payload = examplePayload({ alert_id: freshId("rows"), user: { user_system_id: freshId("rows-user"), parameters: { plan: "pro" } } });
      const hook = zeroCost();
      await webhook(hook, payload);
      const consumer = zeroCost();
      const result = await runQueue("oneflow-alerts", [message(payload.alert_id)], { ...env, DESTINATIONS: ONE_DESTINATION, DB: meterD1(env.DB, consumer) });
      expect(result.explicitAcks).toHaveLength(1);
      shares.webhook = hook.rows_written;
      shares.consumer = consumer.rows_written;
      total = hook.rows_written + consumer.rows_written;
    }
    console.info("rows written", JSON.stringify(shares));
    expect(shares.consumer).toBeLessThanOrEqual(3);
    expect(total).toBeLessThanOrEqual(10);
  });
});
