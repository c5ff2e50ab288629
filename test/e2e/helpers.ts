/** Shared by the tests that run through the real local Queue: a stubbed destination and waiting. */
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import { examplePayload, post } from "../fixtures";
import { E2E_DESTINATION_HOST } from "./destination";

export interface Received {
  headers: Record<string, string>;
  body: string;
}

/** Stubs outbound fetch: the destination host answers with `answer`; it records what arrives. */
export function stubDestination(answer: (n: number) => Response): Received[] {
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

export async function until<T>(check: () => Promise<T | undefined | null>, timeout_ms = 20_000): Promise<T> {
  const started = Date.now();
  for (;;) {
    const value = await check();
    if (value) return value;
    if (Date.now() - started > timeout_ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 100));
  }
}

export function deliveryRow(alert_id: string, status = "delivered") {
  return env.DB.prepare("SELECT status, attempts, last_status FROM deliveries WHERE alert_id = ? AND status = ?")
    .bind(alert_id, status)
    .first<{ status: string; attempts: number; last_status: number }>();
}

/**
 * Posts a fresh response and waits until it is delivered: the messages the Queue held before
 * it (a duplicate's, a redelivery's) have been consumed by then. "Nothing more arrived" is
 * checked after this, not after a sleep, which proves nothing on a slow machine.
 */
export async function laterDelivery(timeout_ms = 30_000): Promise<string> {
  const payload = examplePayload();
  const res = await post(payload);
  if (res.status !== 200) throw new Error(`the later response was answered ${res.status}`);
  await until(() => deliveryRow(payload.alert_id), timeout_ms);
  return payload.alert_id;
}
