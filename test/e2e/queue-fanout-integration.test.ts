/** End to end through the real local Queue: POST the webhook, observe the delivery at the destination. */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, expect, it, vi } from "vitest";
import { alertRow, answerRows, examplePayload, post } from "../fixtures";
import { E2E_DESTINATION_SECRET } from "./destination";
import { deliveryRow, laterDelivery, stubDestination, until } from "./helpers";

it("a webhook POST reaches the destination through the Queue, signed, byte for byte, once", async () => {
  const received = stubDestination(() => new Response("ok"));
  const payload = examplePayload();
  const body = JSON.stringify(payload, null, 1);
  expect((await post(body)).status).toBe(200);

  expect(await until(() => deliveryRow(payload.alert_id))).toEqual({ status: "delivered", attempts: 1, last_status: 200 });
  const mine = received.filter((r) => r.headers["webhook-id"] === payload.alert_id);
  expect(mine).toHaveLength(1);
  expect(mine[0]?.body).toBe(body);
  expect(new Webhook(E2E_DESTINATION_SECRET).verify(mine[0]?.body ?? "", mine[0]?.headers ?? {})).toEqual(payload);

  // 1Flow's retry of the same alert delivers nothing more, by the time a later response arrived.
  expect((await post(body)).status).toBe(200);
  const later = await laterDelivery();
  expect(received.filter((r) => r.headers["webhook-id"] === later)).toHaveLength(1);
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(1);
});

it("a destination that fails twice receives the alert on a later attempt", async () => {
  const received = stubDestination((n) => (n <= 2 ? new Response("down", { status: 500 }) : new Response("ok")));
  const payload = examplePayload();
  expect((await post(payload)).status).toBe(200);
  const row = await until(() => deliveryRow(payload.alert_id), 30_000);
  expect(row).toEqual({ status: "delivered", attempts: 3, last_status: 200 });
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(3);
});

it("D1 down: a valid alert is answered 200 spooled, and stored once and delivered once after D1 is back", async () => {
  const received = stubDestination(() => new Response("ok"));
  const payload = examplePayload();
  await env.DB.prepare("ALTER TABLE alerts RENAME TO alerts_off").run();
  let res: Response;
  try {
    res = await post(payload);
    // The consumer meets the same outage and retries with backoff.
    await new Promise((r) => setTimeout(r, 1_500));
  } finally {
    await env.DB.prepare("ALTER TABLE alerts_off RENAME TO alerts").run();
  }
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ ok: true, alert_id: payload.alert_id, spooled: true });
  expect(await until(() => deliveryRow(payload.alert_id), 30_000)).toMatchObject({ status: "delivered" });
  expect(await alertRow(payload.alert_id)).not.toBeNull();
  expect(await answerRows(payload.alert_id)).toHaveLength(2);
  await laterDelivery();
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(1);
});
