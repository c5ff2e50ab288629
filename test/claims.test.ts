/**
 * Issue 25, path 12: whatever an invocation holds (a claim, a lease) ends when that
 * invocation ends, in the batch that records the ledger; a claim is sized from the jobs the
 * batch sends. So a retry waits for its backoff, a forced replay goes out at once, and
 * retention never waits for a consumer that has finished.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { CLAIM_MARGIN_IN_SECONDS } from "../src/fanout/consumer";
import { DELIVERY_TIMEOUT_IN_MS } from "../src/fanout/deliver";
import { alertRow, callWorker, freshId } from "./fixtures";
import { deliveries, failBatchesWith, FANOUT_ENV, message, runQueue, storedAlert, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const QUEUE = "oneflow-alerts";

function envWith(destinations: Record<string, unknown>[], more: Partial<Env> = {}): Env {
  return { ...FANOUT_ENV, DESTINATIONS: JSON.stringify(destinations), ...more };
}

async function claimOf(alert_id: string): Promise<string | null> {
  return (await alertRow(alert_id))?.fanout_claimed_until ?? null;
}

describe("a claim ends with its invocation", () => {
  it("a delivered alert's claim ends in the batch that records its row", async () => {
    const name = freshId("end");
    stubDestinations();
    const { alert_id } = await storedAlert();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], envWith([{ name, url: "https://end.test/hook" }]));
    expect(result.explicitAcks).toEqual([m.id]);
    expect((await deliveries(alert_id)).map((r) => r.status)).toEqual(["delivered"]);
    expect(await claimOf(alert_id)).toBeNull();
  });

  it("a forced replay of a just-delivered alert is sent by the next batch, not after the claim", async () => {
    const name = freshId("replay");
    const ENV = envWith([{ name, url: "https://replay.test/hook" }], { ADMIN_TOKEN: "admin-token-for-tests" });
    const received = stubDestinations();
    const { alert_id } = await storedAlert();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    const res = await callWorker(`/api/alerts/${alert_id}/replay`, { method: "POST", body: JSON.stringify({ force: true }), headers: { "content-type": "application/json" } }, ENV);
    expect(res.status).toBe(200);
    const again = message(alert_id);
    const second = await runQueue(QUEUE, [again], ENV);
    expect(second.explicitAcks).toEqual([again.id]);
    expect(received.filter((r) => r.host === "replay.test")).toHaveLength(2);
  });

  it("a ledger write that fails still ends the claim (and, the Queue refusing its outcomes too, the message comes back after its backoff)", async () => {
    const name = freshId("fail");
    stubDestinations();
    const { alert_id } = await storedAlert();
    const fault = failBatchesWith("INSERT INTO deliveries");
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], envWith([{ name, url: "https://fail.test/hook" }], { RETRY_BASE_SECONDS: "1" }));
    expect(fault.hit).toBe(1);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(result.delays[m.id]).toBeLessThanOrEqual(2);
    expect(await claimOf(alert_id)).toBeNull();
  });

  it("RETRY_BASE_SECONDS=1: a destination answering 500, 500, then 200 is retried after its backoff each time", async () => {
    const name = freshId("flaky");
    const ENV = envWith([{ name, url: "https://flaky.test/hook" }], { RETRY_BASE_SECONDS: "1" });
    let n = 0;
    stubDestinations({ "flaky.test": () => (++n <= 2 ? new Response("down", { status: 500 }) : new Response("ok")) });
    const { alert_id } = await storedAlert();
    for (const attempt of [1, 2]) {
      const m = message(alert_id, attempt);
      const result = await runQueue(QUEUE, [m], ENV);
      expect(result.delays[m.id]).toBeLessThanOrEqual(2 ** attempt);
      expect(await claimOf(alert_id)).toBeNull();
    }
    const last = message(alert_id, 3);
    expect((await runQueue(QUEUE, [last], ENV)).explicitAcks).toEqual([last.id]);
    expect((await deliveries(alert_id)).map((r) => [r.status, r.attempts])).toEqual([["delivered", 3]]);
  });
});

describe("a claim is sized from what the batch sends", () => {
  it("ten alerts of which one is wanted: the claim covers one round of requests, not two", async () => {
    const name = freshId("sized");
    const survey = freshId("survey");
    const ENV = envWith([{ name, url: "https://sized.test/hook", survey_ids: [survey] }]);
    const claims: number[] = [];
    const wanted = await storedAlert({ survey_id: survey });
    const others = await Promise.all(Array.from({ length: 9 }, () => storedAlert()));
    stubDestinations({
      "sized.test": async () => {
        const until = await claimOf(wanted.alert_id);
        claims.push(Date.parse(until ?? "1970-01-01T00:00:00Z"));
        return new Response("ok");
      },
    });
    const started = Date.now();
    await runQueue(QUEUE, [wanted, ...others].map((a) => message(a.alert_id)), ENV);
    expect(claims).toHaveLength(1);
    // One request: one delivery timeout and the margin (and a few seconds of slack).
    expect((claims[0] ?? 0) - started).toBeLessThanOrEqual(DELIVERY_TIMEOUT_IN_MS + CLAIM_MARGIN_IN_SECONDS * 1000 + 3_000);
    expect((claims[0] ?? 0) - started).toBeGreaterThanOrEqual(DELIVERY_TIMEOUT_IN_MS);
  });
});

describe("the identify lease ends with its invocation", () => {
  it("after a delivery to a 1flow-identify destination, no lease is left on the pair", async () => {
    const name = freshId("ident");
    const user = freshId("user");
    stubDestinations();
    const { alert_id } = await storedAlert({ user: { user_system_id: user, parameters: {} } });
    const ENV = envWith([{ name, url: "https://ident.test/v1/identify", format: "1flow-identify" }]);
    await runQueue(QUEUE, [message(alert_id)], ENV);
    const row = await env.DB.prepare("SELECT lease_until, alert_id FROM identify_latest WHERE destination = ? AND user_system_id = ?").bind(name, user).first();
    expect(row).toEqual({ lease_until: null, alert_id });
    expect(await claimOf(alert_id)).toBeNull();
  });
});
