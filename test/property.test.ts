/**
 * Property tests with fast-check: whatever an authenticated sender posts, the
 * Worker answers without a 5xx, stores an alert only when the body is valid,
 * and quarantines every body it refuses.
 */
import { env, exports } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/ingest/ingest";
import { parsePayload } from "../src/ingest/payload";
import { EXAMPLE, rejectedRow, webhookRequest } from "./fixtures";

const RUNS = 60;
/** A new seed each run, printed, so that a failure can be replayed: FC_SEED=<seed> npm test. */
const SEED = env.FC_SEED ? Number(env.FC_SEED) : Math.floor(Math.random() * 2 ** 31);
console.info(`fast-check seed ${SEED} (replay with FC_SEED=${SEED} npm test)`);

async function checkOne(body: Uint8Array | string): Promise<void> {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts").first<{ n: number }>();
  const res = await exports.default.fetch(webhookRequest(bytes));
  const answer = (await res.json()) as { ok: boolean; error?: string; alert_id?: string };
  expect(res.status).toBeLessThan(500);
  expect([200, 400, 422]).toContain(res.status);

  let valid = false;
  try {
    valid = parsePayload(JSON.parse(new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes))).ok;
  } catch {
    valid = false;
  }
  const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts").first<{ n: number }>();
  if (valid) {
    expect(res.status).toBe(200);
    expect(answer.ok).toBe(true);
  } else {
    expect(after?.n).toBe(before?.n);
    const rejected = await rejectedRow(await sha256Hex(bytes));
    expect(rejected?.reason).toBe(answer.error);
  }
}

/** Payloads near the valid shape, so that both branches are exercised. */
const nearlyValid = fc
  .record({
    alert_id: fc.oneof(fc.string({ minLength: 0, maxLength: 140 }), fc.uuid(), fc.integer()),
    alert_name: fc.oneof(fc.constant("submitted_survey"), fc.string()),
    survey_id: fc.oneof(fc.constant("30cc805f1f0c541d4dcfccef"), fc.string(), fc.constant(null)),
    timestamp: fc.oneof(
      fc.date({ noInvalidDate: true, min: new Date(0), max: new Date(4e12) }).map((d) => d.toISOString()),
      fc.string(),
    ),
    screens: fc.array(
      fc.record({
        title: fc.option(fc.string(), { nil: undefined }),
        type: fc.oneof(fc.constantFrom("nps", "text", "mcq", "checkbox", "rating-5-star", "weird"), fc.string(), fc.integer()),
        answer: fc.oneof(fc.string(), fc.integer(), fc.array(fc.string()), fc.constant(null), fc.array(fc.integer()), fc.object()),
      }),
      { maxLength: 5 },
    ),
    extra: fc.jsonValue(),
  })
  .map(({ screens, extra, ...top }) => ({ ...structuredClone(EXAMPLE), ...top, survey_info: { name: "P", screens }, extra }));

describe("the webhook under arbitrary input", () => {
  it("arbitrary JSON values", async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        await checkOne(JSON.stringify(value));
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it("arbitrary bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) => {
        await checkOne(bytes);
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it("payloads near the valid shape", async () => {
    await fc.assert(
      fc.asyncProperty(nearlyValid, async (payload) => {
        await checkOne(JSON.stringify(payload));
      }),
      { numRuns: RUNS * 2, seed: SEED },
    );
  });
});
