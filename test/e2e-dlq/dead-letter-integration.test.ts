/**
 * The real retries-exhausted path through the real local Queue: a test configuration with
 * max_retries 2 sends a failing delivery to the dead-letter queue, whose consumer marks it
 * `dead`; a replay through /api then delivers it exactly once.
 */
import { env } from "cloudflare:workers";
import { afterEach, expect, it, vi } from "vitest";
import { callWorker, examplePayload, post } from "../fixtures";
import { deliveryRow, laterDelivery, stubDestination, until } from "../e2e/helpers";

afterEach(() => {
  vi.restoreAllMocks();
});

it("retries exhausted → dead → replayed through /api → delivered exactly once", async () => {
  let up = false;
  const received = stubDestination(() => (up ? new Response("ok") : new Response("down", { status: 503 })));
  const payload = examplePayload();
  expect((await post(payload)).status).toBe(200);

  // One attempt and two retries, then the dead-letter queue.
  const dead = await until(() => deliveryRow(payload.alert_id, "dead"), 40_000);
  expect(dead).toMatchObject({ status: "dead", attempts: 3, last_status: 503 });
  expect(received).toHaveLength(3);

  up = true;
  const replay = await callWorker(`/api/alerts/${payload.alert_id}/replay`, { method: "POST" });
  expect(await replay.json()).toMatchObject({ ok: true, deliveries: 1, destinations: ["crm"] });
  expect(await until(() => deliveryRow(payload.alert_id), 30_000)).toMatchObject({ status: "delivered", attempts: 4, last_status: 200 });
  await laterDelivery();
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(4);
});

it("a long D1 outage: the spooled body outlives max_retries, comes back from the dead-letter queue, and is stored once D1 returns", async () => {
  const lines: string[] = [];
  const warn = console.warn.bind(console);
  vi.spyOn(console, "warn").mockImplementation((line: string) => {
    lines.push(line);
    warn(line);
  });
  const received = stubDestination(() => new Response("ok"));
  const payload = examplePayload();
  await env.DB.prepare("ALTER TABLE alerts RENAME TO alerts_off").run();
  try {
    expect(await (await post(payload)).json()).toEqual({ ok: true, alert_id: payload.alert_id, spooled: true });
    await until(async () => lines.some((l) => l.includes("deadletter.spool_requeued")), 40_000);
  } finally {
    await env.DB.prepare("ALTER TABLE alerts_off RENAME TO alerts").run();
  }
  expect(await until(() => deliveryRow(payload.alert_id), 40_000)).toMatchObject({ status: "delivered" });
  await laterDelivery();
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(1);
  expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id = ?").bind(payload.alert_id).first()).toEqual({ n: 1 });
});
