/** End to end through the real local Queue: POST the webhook, observe the delivery at the destination. */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, expect, it, vi } from "vitest";
import { examplePayload, post } from "../fixtures";
import { E2E_DESTINATION_HOST, E2E_DESTINATION_SECRET } from "./destination";

interface Received {
  headers: Record<string, string>;
  body: string;
}

afterEach(() => {
  vi.restoreAllMocks();
});

/** Stubs outbound fetch: the destination host answers with `answer`; it records what arrives. */
function stubDestination(answer: (n: number) => Response): Received[] {
  const received: Received[] = [];
  const original = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const request = new Request(input, init);
    if (new URL(request.url).hostname !== E2E_DESTINATION_HOST) return original(input, init);
    received.push({ headers: Object.fromEntries(request.headers), body: await request.text() });
    return answer(received.length);
  });
  return received;
}

async function until<T>(check: () => Promise<T | undefined | null>, timeout_ms = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - started > timeout_ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 100));
  }
}

function deliveredRow(alert_id: string) {
  return env.DB.prepare("SELECT status, attempts, last_status FROM deliveries WHERE alert_id = ? AND status = 'delivered'")
    .bind(alert_id)
    .first<{ status: string; attempts: number; last_status: number }>();
}

it("a webhook POST reaches the destination through the Queue, signed, byte for byte, once", async () => {
  const received = stubDestination(() => new Response("ok"));
  const payload = examplePayload();
  const body = JSON.stringify(payload, null, 1);
  expect((await post(body)).status).toBe(200);

  expect(await until(() => deliveredRow(payload.alert_id))).toEqual({ status: "delivered", attempts: 1, last_status: 200 });
  const mine = received.filter((r) => r.headers["webhook-id"] === payload.alert_id);
  expect(mine).toHaveLength(1);
  expect(mine[0]?.body).toBe(body);
  expect(new Webhook(E2E_DESTINATION_SECRET).verify(mine[0]?.body ?? "", mine[0]?.headers ?? {})).toEqual(payload);

  // 1Flow's retry of the same alert delivers nothing more.
  expect((await post(body)).status).toBe(200);
  await new Promise((r) => setTimeout(r, 3_000));
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(1);
});

it("a destination that fails twice receives the alert on a later attempt", async () => {
  const received = stubDestination((n) => (n <= 2 ? new Response("down", { status: 500 }) : new Response("ok")));
  const payload = examplePayload();
  expect((await post(payload)).status).toBe(200);
  const row = await until(() => deliveredRow(payload.alert_id), 30_000);
  expect(row).toEqual({ status: "delivered", attempts: 3, last_status: 200 });
  expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(3);
});
