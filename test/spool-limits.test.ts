/**
 * What a body may cost on the way in: a spooled body always fits in a Queue message (gzipped
 * when its escaped form would not), and a refused body's quarantine row stays small however
 * many issues it has.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpoolMessage } from "../src/alert";
import type { Env } from "../src/env";
import worker from "../src/index";
import { MAX_ISSUES_KEPT } from "../src/ingest/ingest";
import { sha256Hex } from "../src/hash";
import { MAX_SPOOL_MESSAGE_BYTES, serialisedBytes } from "../src/spool";
import { alertRow, examplePayload, freshId, rejectedRow, webhookRequest } from "./fixtures";
import { FANOUT_ENV, runQueue, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

async function call(body: string, overrides: Partial<Env> = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(webhookRequest(body), { ...env, ...overrides }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** Watches what the webhook sends to the Queue, and lets it through to the real local Queue. */
function watchSends(): SpoolMessage[] {
  const sent: SpoolMessage[] = [];
  const original = env.ALERTS_QUEUE.send.bind(env.ALERTS_QUEUE);
  vi.spyOn(env.ALERTS_QUEUE, "send").mockImplementation(async (body, options) => {
    sent.push(body as SpoolMessage);
    return original(body, options);
  });
  return sent;
}

/** A valid alert of about `bytes` bytes whose text is mostly escaped quotes and backslashes. */
function escapedBody(bytes: number): string {
  const user = { user_system_id: freshId("quotes"), parameters: { note: "" } };
  const payload = examplePayload({ user });
  const base = JSON.stringify(payload).length;
  user.parameters.note = '"\\'.repeat(Math.floor((bytes - base) / 4));
  return JSON.stringify(payload);
}

describe("the spool's message size", () => {
  it("a body of almost MAX_BODY_BYTES made of escaped quotes is spooled, fits a Queue message, and is stored byte for byte", async () => {
    const body = escapedBody(65_400);
    expect(body.length).toBeGreaterThan(64_000);
    expect(body.length).toBeLessThanOrEqual(65_536);
    // As text, its message would pass the Queue's 128 KB (less the room kept for its framing).
    expect(serialisedBytes({ v: 1, kind: "spool", body, received_at: new Date().toISOString(), sha256: "x".repeat(64) })).toBeGreaterThan(MAX_SPOOL_MESSAGE_BYTES);
    const sent = watchSends();
    vi.spyOn(env.DB, "batch").mockRejectedValueOnce(new Error("D1_ERROR: disk I/O error"));
    const { alert_id } = JSON.parse(body) as { alert_id: string };
    const res = await call(body);
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, alert_id, spooled: true });
    expect(sent).toHaveLength(1);
    expect(serialisedBytes(sent[0])).toBeLessThanOrEqual(MAX_SPOOL_MESSAGE_BYTES);
    expect(sent[0]?.body).toBeUndefined();

    vi.restoreAllMocks();
    stubDestinations();
    const result = await runQueue("oneflow-alerts", [{ id: freshId("m"), timestamp: new Date(), attempts: 1, body: sent[0] }], FANOUT_ENV);
    expect(result.explicitAcks).toHaveLength(1);
    expect((await alertRow(alert_id))?.payload).toBe(body);
  });

  it("a small body is spooled as text", async () => {
    const sent = watchSends();
    vi.spyOn(env.DB, "batch").mockRejectedValueOnce(new Error("D1_ERROR: disk I/O error"));
    const body = JSON.stringify(examplePayload());
    expect((await call(body)).status).toBe(200);
    expect(sent[0]).toMatchObject({ kind: "spool", body, sha256: await sha256Hex(body) });
  });

  it("with MAX_BODY_BYTES raised, a body that no message can carry is a 503 (1Flow retries it), never a loss", async () => {
    const random = new Uint8Array(150_000);
    for (let i = 0; i < random.length; i += 65_536) crypto.getRandomValues(random.subarray(i, i + 65_536));
    const noise = Array.from(random, (b) => b.toString(36)).join("");
    const payload = examplePayload({ user: { user_system_id: "u", parameters: { noise } } });
    const body = JSON.stringify(payload);
    const sent = watchSends();
    vi.spyOn(env.DB, "batch").mockRejectedValueOnce(new Error("D1_ERROR: disk I/O error"));
    const res = await call(body, { MAX_BODY_BYTES: String(2 * 1024 * 1024) });
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "storage_unavailable" });
    expect(sent).toEqual([]);
  });
});

describe("the quarantine row of a refused body", () => {
  it("20,000 empty screens: a 422 with the first issues and their count, and a quarantine row that D1 takes", async () => {
    const payload = examplePayload();
    (payload.survey_info as { screens: unknown[] }).screens = Array.from({ length: 20_000 }, () => ({}));
    const body = JSON.stringify(payload);
    expect(body.length).toBeLessThanOrEqual(65_536);
    const res = await call(body);
    expect(res.status).toBe(422);
    const answer = (await res.json()) as { error: string; issues: unknown[]; issues_total: number };
    expect(answer.error).toBe("invalid_payload");
    expect(answer.issues).toHaveLength(MAX_ISSUES_KEPT);
    expect(answer.issues_total).toBeGreaterThanOrEqual(20_000);
    const row = await rejectedRow(await sha256Hex(body));
    expect(row?.reason).toBe("invalid_payload");
    const detail = JSON.parse(row?.detail ?? "{}") as { issues: unknown[]; issues_total: number };
    expect(detail.issues).toHaveLength(MAX_ISSUES_KEPT);
    expect(detail.issues_total).toBe(answer.issues_total);
  });
});
