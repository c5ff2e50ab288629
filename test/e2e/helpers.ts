/** Shared by the tests that run through the real local Queue: a stubbed destination and waiting. */
import { env } from "cloudflare:workers";
import { vi } from "vitest";
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
