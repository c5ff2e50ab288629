/**
 * Property tests with fast-check: whatever an authenticated sender posts, the
 * Worker answers without a 5xx, stores an alert only when the body is valid,
 * and quarantines every body it refuses.
 */
import { env, exports } from "cloudflare:workers";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/ingest/ingest";
import { alertRow, EXAMPLE, rejectedRow, webhookRequest } from "./fixtures";

const RUNS = 60;
/** A new seed each run, printed, so that a failure can be replayed: FC_SEED=<seed> npm test. */
const SEED = env.FC_SEED ? Number(env.FC_SEED) : Math.floor(Math.random() * 2 ** 31);
console.info(`fast-check seed ${SEED} (replay with FC_SEED=${SEED} npm test)`);

/**
 * The oracle: 1Flow's field table as DESIGN.md states it, written out by hand (not the
 * Worker's valibot schema), so that the test can disagree with the code.
 */
function validByTheTable(text: string): boolean {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return false;
  }
  const isObject = (x: unknown): x is Record<string, unknown> => typeof x === "object" && x !== null && !Array.isArray(x);
  const nonEmpty = (x: unknown) => typeof x === "string" && x.length > 0;
  const absentOr = (x: unknown, test: (y: unknown) => boolean) => x === undefined || x === null || test(x);
  const depth = (x: unknown): number => (typeof x === "object" && x !== null ? 1 + Math.max(0, ...Object.values(x).map(depth)) : 0);
  if (!isObject(value) || depth(value) > 32) return false;
  if (typeof value.alert_id !== "string" || !/^[\x21-\x7e]{1,128}$/.test(value.alert_id)) return false;
  if (!nonEmpty(value.alert_name) || !nonEmpty(value.survey_id)) return false;
  const ts = value.timestamp;
  if (typeof ts !== "string" || !/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$/.test(ts) || Number.isNaN(Date.parse(ts))) return false;
  if (!absentOr(value.project_name, (x) => typeof x === "string") || !absentOr(value.platform, (x) => typeof x === "string")) return false;
  const info = value.survey_info;
  if (!isObject(info) || !absentOr(info.name, (x) => typeof x === "string") || !Array.isArray(info.screens)) return false;
  for (const screen of info.screens as unknown[]) {
    if (!isObject(screen) || !nonEmpty(screen.type) || !absentOr(screen.title, (x) => typeof x === "string")) return false;
    const answer = screen.answer;
    const answerOk =
      answer === undefined ||
      answer === null ||
      ["string", "number", "boolean"].includes(typeof answer) ||
      (Array.isArray(answer) && answer.every((a) => typeof a === "string"));
    if (!answerOk) return false;
  }
  if (!absentOr(value.user, (u) => isObject(u) && typeof u.user_system_id === "string")) return false;
  if (!absentOr(value.trigger_event, (t) => isObject(t) && typeof t.event_name === "string")) return false;
  return true;
}

/** How many bodies of each kind a property saw: each must see both. */
type Seen = { valid: number; invalid: number };

async function checkOne(body: Uint8Array | string, seen: Seen): Promise<void> {
  const bytes = typeof body === "string" ? new TextEncoder().encode(body) : body;
  const before = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts").first<{ n: number }>();
  const res = await exports.default.fetch(webhookRequest(bytes));
  const answer = (await res.json()) as { ok: boolean; error?: string; alert_id?: string };
  expect(res.status).toBeLessThan(500);
  expect([200, 400, 422]).toContain(res.status);

  let text: string | null = null;
  try {
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false }).decode(bytes);
  } catch {
    text = null;
  }
  const valid = text !== null && validByTheTable(text);
  const after = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts").first<{ n: number }>();
  if (valid) {
    seen.valid += 1;
    expect(res.status).toBe(200);
    expect(answer.ok).toBe(true);
    const id = (JSON.parse(text ?? "{}") as { alert_id: string }).alert_id;
    expect(answer.alert_id).toBe(id);
    expect(await alertRow(id)).not.toBeNull();
  } else {
    seen.invalid += 1;
    expect(res.status).not.toBe(200);
    expect(after?.n).toBe(before?.n);
    const rejected = await rejectedRow(await sha256Hex(bytes));
    expect(rejected).not.toBeNull();
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
        type: fc.oneof(fc.constantFrom("nps", "text", "mcq", "checkbox", "rating-5-star", "weird"), fc.string(), fc.integer(), fc.constant("")),
        answer: fc.oneof(fc.string(), fc.integer(), fc.array(fc.string()), fc.constant(null), fc.array(fc.integer()), fc.object()),
      }),
      { maxLength: 5 },
    ),
    extra: fc.jsonValue(),
  })
  .map(({ screens, extra, ...top }) => ({ ...structuredClone(EXAMPLE), ...top, survey_info: { name: "P", screens }, extra }));

describe("the webhook under arbitrary input", () => {
  it("arbitrary JSON values", async () => {
    const seen = { valid: 0, invalid: 0 };
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (value) => {
        await checkOne(JSON.stringify(value), seen);
      }),
      { numRuns: RUNS, seed: SEED },
    );
    expect(seen.invalid).toBeGreaterThan(0);
  });

  it("arbitrary bytes", async () => {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 512 }), async (bytes) => {
        await checkOne(bytes, { valid: 0, invalid: 0 });
      }),
      { numRuns: RUNS, seed: SEED },
    );
  });

  it("payloads near the valid shape: both branches run, and the valid ones are stored", async () => {
    const seen = { valid: 0, invalid: 0 };
    await fc.assert(
      fc.asyncProperty(nearlyValid, async (payload) => {
        await checkOne(JSON.stringify(payload), seen);
      }),
      { numRuns: RUNS * 2, seed: SEED },
    );
    expect(seen.valid).toBeGreaterThan(0);
    expect(seen.invalid).toBeGreaterThan(0);
  });
});
