/**
 * Issue 25, path 3: an erased user does not come back through the quarantine. 1Flow retries
 * a refused body every hour for three days; a body whose user id can be read is checked
 * against the user tombstones in the same D1 call as the quarantine write, and nothing of an
 * erased user is stored again. The webhook's answer stays what the contract gives.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/hash";
import { ingest } from "../src/ingest/ingest";
import { callWorker, examplePayload, freshId, post, rejectedRow } from "./fixtures";
import { meterD1, zeroCost } from "./meter";

const erase = async (user: string) => {
  const res = await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" });
  expect(res.status).toBe(200);
};

/** The example for `user`, without alert_name: 422 invalid_payload, quarantined. */
function invalidBodyOf(user: string): string {
  const payload = examplePayload({ user: { user_system_id: user, parameters: { email: `${user}@example.com` } } }) as Record<string, unknown>;
  delete payload.alert_name;
  return JSON.stringify(payload);
}

async function rowsNaming(user: string): Promise<number> {
  const row = await env.DB.prepare("SELECT COUNT(*) AS n FROM rejected_payloads WHERE instr(CAST(body AS TEXT), ?1) > 0").bind(user).first<{ n: number }>();
  return row?.n ?? 0;
}

describe("the quarantine after a user's erasure", () => {
  it("1Flow's retry of an erased user's invalid body answers 422 as before and stores nothing", async () => {
    const user = freshId("user");
    const body = invalidBodyOf(user);
    const first = await post(body);
    expect(first.status).toBe(422);
    expect(await rejectedRow(await sha256Hex(body))).not.toBeNull();

    await erase(user);
    expect(await rowsNaming(user)).toBe(0);

    const retry = await post(body);
    expect(retry.status).toBe(422);
    expect(await retry.json()).toMatchObject({ ok: false, error: "invalid_payload" });
    expect(await rejectedRow(await sha256Hex(body))).toBeNull();
    expect(await rowsNaming(user)).toBe(0);
  });

  it("an erased user's body that is not JSON but names them answers 400 as before and stores nothing", async () => {
    const user = freshId("user");
    // Cut short: not JSON, and its user id is still there in the text.
    const body = invalidBodyOf(user).slice(0, -20);
    expect((await post(body)).status).toBe(400);
    await erase(user);
    expect(await rowsNaming(user)).toBe(0);
    const retry = await post(body);
    expect(retry.status).toBe(400);
    expect(await retry.json()).toMatchObject({ ok: false, error: "invalid_json" });
    expect(await rowsNaming(user)).toBe(0);
    // Another user's broken body is kept.
    const other = invalidBodyOf(freshId("user")).slice(0, -20);
    await post(other);
    expect(await rejectedRow(await sha256Hex(other))).not.toBeNull();
  });

  it("another user's invalid body is still quarantined, and a repeat counts an attempt", async () => {
    const body = invalidBodyOf(freshId("user"));
    await post(body);
    await post(body);
    expect((await rejectedRow(await sha256Hex(body)))?.attempts).toBe(2);
  });

  it("an erased user's JSON body sent with the wrong media type answers 415 and stores nothing", async () => {
    const user = freshId("user");
    await erase(user);
    const body = JSON.stringify(examplePayload({ user: { user_system_id: user } }));
    const res = await post(body, { contentType: "text/plain" });
    expect(res.status).toBe(415);
    expect(await rejectedRow(await sha256Hex(body))).toBeNull();
    expect(await rowsNaming(user)).toBe(0);
  });

  it("an alert_id conflict whose body is an erased user's is not kept aside", async () => {
    const stored = examplePayload();
    expect((await post(stored)).status).toBe(200);
    const user = freshId("user");
    await erase(user);
    const conflicting = JSON.stringify({ ...stored, user: { user_system_id: user, parameters: { email: "erased@example.com" } } });
    const res = await post(conflicting);
    expect(res.status).toBe(200);
    expect(await rejectedRow(await sha256Hex(conflicting))).toBeNull();
    expect(await rowsNaming(user)).toBe(0);
  });

  it("a user erased after the body was submitted but before it came: the check is in the quarantine write's one D1 call", async () => {
    const user = freshId("user");
    await erase(user);
    const body = invalidBodyOf(user);
    const cost = zeroCost();
    const outcome = await ingest(new TextEncoder().encode(body).buffer as ArrayBuffer, {
      db: meterD1(env.DB, cost),
      queue: env.ALERTS_QUEUE,
      waitUntil: () => {},
      now: () => new Date(),
      deadline_at: Date.now() + 5_000,
      request_id: "quarantine-erasure",
    });
    expect(outcome.outcome).toBe("invalid_payload");
    expect(cost.calls).toBe(1);
    expect(await rejectedRow(await sha256Hex(body))).toBeNull();
  });
});
