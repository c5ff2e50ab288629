/** D1 and Queue faults, injected with spies on the real bindings. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import type { Env } from "../src/env";
import { alertRow, answerRows, examplePayload, snapshot, webhookRequest } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

async function call(body: string, overrides: Partial<Env> = {}): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(webhookRequest(body), { ...env, ...overrides }, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

async function expectStorageUnavailable(res: Response): Promise<void> {
  expect(res.status).toBe(503);
  expect(res.headers.get("retry-after")).toMatch(/^\d+$/);
  expect(res.headers.get("x-request-id")).toBeTruthy();
  expect(await res.json()).toMatchObject({ ok: false, error: "storage_unavailable" });
}

describe("D1 faults on the webhook", () => {
  it("DB.batch throws: 503 storage_unavailable with Retry-After, nothing written", async () => {
    const before = await snapshot();
    vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: disk I/O error"));
    const payload = examplePayload();
    await expectStorageUnavailable(await call(JSON.stringify(payload)));
    vi.restoreAllMocks();
    expect(await snapshot()).toEqual(before);
  });

  it("a statement of the batch failing rolls the whole batch back: nothing half written", async () => {
    const original = env.DB.batch.bind(env.DB);
    vi.spyOn(env.DB, "batch").mockImplementation((statements) =>
      original([...statements, env.DB.prepare("INSERT INTO no_such_table VALUES (1)")]),
    );
    const payload = examplePayload();
    await expectStorageUnavailable(await call(JSON.stringify(payload)));
    vi.restoreAllMocks();
    expect(await alertRow(payload.alert_id)).toBeNull();
    expect(await answerRows(payload.alert_id)).toEqual([]);

    // The sender's retry then stores it whole.
    const retry = await call(JSON.stringify(payload));
    expect(await retry.json()).toMatchObject({ ok: true, duplicate: false });
    expect(await answerRows(payload.alert_id)).toHaveLength(2);
  });

  it("DB.batch hangs: 503 before the deadline", async () => {
    vi.spyOn(env.DB, "batch").mockReturnValue(new Promise(() => {}));
    const payload = examplePayload();
    const started = Date.now();
    const res = await call(JSON.stringify(payload), { STORAGE_DEADLINE_MS: "300" });
    const elapsed = Date.now() - started;
    await expectStorageUnavailable(res);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(9_000);
  });

  it("a transient D1 error is retried once and the alert is stored", async () => {
    const original = env.DB.batch.bind(env.DB);
    const batch = vi
      .spyOn(env.DB, "batch")
      .mockRejectedValueOnce(new Error("D1_ERROR: Network connection lost."))
      .mockImplementation((statements) => original(statements));
    const payload = examplePayload();
    const res = await call(JSON.stringify(payload));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ duplicate: false });
    expect(batch).toHaveBeenCalledTimes(2);
    expect(await alertRow(payload.alert_id)).not.toBeNull();
  });

  it("a transient error twice gives up: 503 after two tries", async () => {
    const batch = vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: Network connection lost."));
    await expectStorageUnavailable(await call(JSON.stringify(examplePayload())));
    expect(batch).toHaveBeenCalledTimes(2);
  });

  it("a permanent D1 error is not retried", async () => {
    const batch = vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: no such table: alerts"));
    await expectStorageUnavailable(await call(JSON.stringify(examplePayload())));
    expect(batch).toHaveBeenCalledTimes(1);
  });

  it("the quarantine write failing is a 503 too, so the sender retries and nothing is lost", async () => {
    vi.spyOn(env.DB, "prepare").mockImplementation(() => {
      throw new Error("D1_ERROR: disk I/O error");
    });
    await expectStorageUnavailable(await call("{not json"));
  });

  it("a conflicting body whose quarantine fails is a 503, not a silent 200", async () => {
    const payload = examplePayload();
    await call(JSON.stringify(payload));
    const original = env.DB.prepare.bind(env.DB);
    vi.spyOn(env.DB, "prepare").mockImplementation((sql) => {
      if (sql.includes("rejected_payloads")) throw new Error("D1_ERROR: disk I/O error");
      return original(sql);
    });
    await expectStorageUnavailable(await call(JSON.stringify({ ...payload, platform: "other" })));
  });
});

describe("Queue faults", () => {
  it("the Queue send rejects: still 200, the row stored with enqueued_at NULL for the sweep", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const payload = examplePayload();
    const res = await call(JSON.stringify(payload));
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ ok: true, alert_id: payload.alert_id, duplicate: false });
    expect(send).toHaveBeenCalledTimes(1);
    const row = await alertRow(payload.alert_id);
    expect(row).not.toBeNull();
    expect(row?.enqueued_at).toBeNull();
  });

  it("a retry of an alert whose enqueue failed enqueues it then", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValueOnce(new Error("Queue send failed"));
    const payload = examplePayload();
    await call(JSON.stringify(payload));
    expect((await alertRow(payload.alert_id))?.enqueued_at).toBeNull();
    send.mockClear();
    const res = await call(JSON.stringify(payload));
    expect(await res.json()).toMatchObject({ duplicate: true });
    expect(send.mock.calls.map((c) => c[0])).toEqual([[{ body: { v: 1, alert_id: payload.alert_id }, contentType: "json" }]]);
    await vi.waitFor(async () => expect((await alertRow(payload.alert_id))?.enqueued_at).not.toBeNull(), {
      timeout: 15_000,
      interval: 100,
    });
  });
});

describe("GET /healthz with D1 down", () => {
  it("answers 503", async () => {
    vi.spyOn(env.DB, "prepare").mockImplementation(() => {
      throw new Error("D1_ERROR: disk I/O error");
    });
    const ctx = createExecutionContext();
    const res = await worker.fetch(new Request("https://worker.test/healthz"), env, ctx);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "storage_unavailable" });
  });
});
