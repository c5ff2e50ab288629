/**
 * Issue 25, path 9: a test send keeps the first 2 KB of the receiver's answer and reads no
 * more than that: the rest of the body is cancelled, however large the receiver makes it.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { DestinationsConfig } from "../src/fanout/destinations";
import { TEST_RESPONSE_BYTES, testDelivery } from "../src/manage-destinations";

afterEach(() => {
  vi.restoreAllMocks();
});

const CHUNK = 1_024;
const CONFIG: DestinationsConfig = { ok: true, destinations: [{ name: "big", url: "https://big-answer.test/hook", format: "raw", enabled: true }] };

/** A receiver whose answer is `total` bytes of "x", served a chunk per pull; counts what was pulled. */
function streamingReceiver(total: number) {
  const seen = { pulled: 0, cancelled: false };
  vi.spyOn(globalThis, "fetch").mockImplementation(async () => {
    const body = new ReadableStream<Uint8Array>(
      {
        pull(controller) {
          if (seen.pulled >= total) {
            controller.close();
            return;
          }
          seen.pulled += CHUNK;
          controller.enqueue(new TextEncoder().encode("x".repeat(CHUNK)));
        },
        cancel() {
          seen.cancelled = true;
        },
      },
      { highWaterMark: 0 },
    );
    return new Response(body, { status: 200 });
  });
  return seen;
}

describe("the test send's answer", () => {
  it("a 10 MB answer: the first 2 KB are kept, at most one chunk more is read, and the body is cancelled", async () => {
    const seen = streamingReceiver(10 * 1024 * 1024);
    const result = await testDelivery(env.DB, CONFIG, { name: "big", now: new Date() });
    expect(result).toMatchObject({ ok: true, status: 200 });
    if (!result.ok) return;
    expect(result.response).toBe("x".repeat(TEST_RESPONSE_BYTES));
    expect(seen.pulled).toBeLessThanOrEqual(TEST_RESPONSE_BYTES + 2 * CHUNK);
    expect(seen.cancelled).toBe(true);
  });

  it("a short answer is kept whole", async () => {
    vi.spyOn(globalThis, "fetch").mockResolvedValue(new Response("fine", { status: 201 }));
    const result = await testDelivery(env.DB, CONFIG, { name: "big", now: new Date() });
    expect(result).toMatchObject({ ok: true, status: 201, response: "fine" });
  });

  it("an answer with no body gives an empty text", async () => {
    vi.spyOn(globalThis, "fetch").mockResolvedValue(new Response(null, { status: 204 }));
    const result = await testDelivery(env.DB, CONFIG, { name: "big", now: new Date() });
    expect(result).toMatchObject({ ok: true, status: 204, response: "" });
  });
});
