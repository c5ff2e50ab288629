/**
 * D1 and Queue faults on the request path, injected where real ones happen: a D1 `batch`
 * that rejects, hangs, or commits and then throws; a renamed table in the real local D1;
 * a Queue send that rejects or hangs. A valid alert that D1 cannot take goes to the Queue
 * (the spool) and is stored by the consumer once D1 answers; when both fail, 503.
 */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpoolMessage } from "../src/alert";
import type { Env } from "../src/env";
import worker from "../src/index";
import { deliveries, FANOUT_ENV, runQueue, statusByDestination, stubDestinations } from "./fanout-fixtures";
import { alertRow, answerRows, examplePayload, rejectedRow, snapshot, webhookRequest, storedRow } from "./fixtures";
import { sha256Hex } from "../src/hash";

afterEach(async () => {
  vi.restoreAllMocks();
  await restoreTables();
});

const RENAMED = [["alerts", "alerts_off"], ["rejected_payloads", "rejected_off"]] as const;

/** Takes a table away from the Worker, as `wrangler d1 execute … ALTER TABLE … RENAME` does to a running one. */
async function renameTable(table: (typeof RENAMED)[number][0]): Promise<void> {
  const [, off] = RENAMED.find(([name]) => name === table) ?? [];
  await env.DB.prepare(`ALTER TABLE ${table} RENAME TO ${off}`).run();
}

async function restoreTables(): Promise<void> {
  for (const [name, off] of RENAMED) {
    const exists = await env.DB.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?").bind(off).first();
    if (exists) await env.DB.prepare(`ALTER TABLE ${off} RENAME TO ${name}`).run();
  }
}

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

/** Holds what the webhook spools (the Queue accepts it), so that a test hands it to the consumer itself. */
function holdSpool(): SpoolMessage[] {
  const held: SpoolMessage[] = [];
  vi.spyOn(env.ALERTS_QUEUE, "send").mockImplementation(async (body) => {
    held.push(body as SpoolMessage);
    return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendResponse;
  });
  return held;
}

let spoolId = 0;
function spoolMessage(body: SpoolMessage, attempts = 1) {
  spoolId += 1;
  return { id: `spool-${spoolId}`, timestamp: new Date(), attempts, body };
}

async function expectSpooled(res: Response, alert_id: string): Promise<void> {
  expect(res.status).toBe(200);
  expect(await res.json()).toEqual({ ok: true, alert_id, spooled: true });
}

describe("D1 fails, the Queue takes the body (the spool)", () => {
  it("DB.batch rejects: 200 spooled with the body as received; nothing in D1; the consumer stores it once and delivers it once", async () => {
    const before = await snapshot();
    const held = holdSpool();
    vi.spyOn(env.DB, "batch").mockRejectedValueOnce(new Error("D1_ERROR: disk I/O error"));
    const payload = examplePayload();
    const body = JSON.stringify(payload);
    await expectSpooled(await call(body), payload.alert_id);
    expect(await snapshot()).toEqual(before);
    expect(held).toHaveLength(1);
    expect(held[0]).toMatchObject({ v: 1, kind: "spool", body, sha256: await sha256Hex(body) });
    expect(Date.parse(held[0]?.received_at ?? "")).toBeGreaterThan(Date.now() - 60_000);

    const spooledToday = async () =>
      (await env.DB.prepare("SELECT spooled FROM ingest_daily WHERE day = ?").bind(new Date().toISOString().slice(0, 10)).first<{ spooled: number }>())?.spooled ?? 0;
    const spooledBefore = await spooledToday();
    const received = stubDestinations();
    const first = await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage)], FANOUT_ENV);
    expect(first.explicitAcks).toHaveLength(1);
    expect((await alertRow(payload.alert_id))?.received_at).toBe(held[0]?.received_at);
    expect(await answerRows(payload.alert_id)).toHaveLength(2);
    expect(statusByDestination(await deliveries(payload.alert_id))).toEqual({ crm: "delivered", warehouse: "delivered" });
    // Delivered again (a Queue duplicate of the spool message): stored once, sent once.
    const again = await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage)], FANOUT_ENV);
    expect(again.explicitAcks).toHaveLength(1);
    expect(received.filter((r) => r.headers["webhook-id"] === payload.alert_id)).toHaveLength(2);
    expect(await rejectedRow(await sha256Hex(body))).toBeNull();
    // The dashboard's "through the spool" counts it once.
    expect(await spooledToday()).toBe(spooledBefore + 1);
  });

  it("a renamed table (D1 failing for real): spooled; the consumer retries while it fails, and stores it once D1 is back", async () => {
    const held = holdSpool();
    const payload = examplePayload();
    await renameTable("alerts");
    await expectSpooled(await call(JSON.stringify(payload)), payload.alert_id);
    const healthz = await worker.fetch(new Request("https://worker.test/healthz"), env, createExecutionContext());
    expect(healthz.status).toBe(503);
    expect(await healthz.json()).toMatchObject({ error: "storage_unavailable" });

    stubDestinations();
    const during = await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage)], FANOUT_ENV);
    expect(during.explicitAcks).toHaveLength(0);
    expect(during.retryMessages).toHaveLength(1);
    await restoreTables();
    const after = await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage, 2)], FANOUT_ENV);
    expect(after.explicitAcks).toHaveLength(1);
    expect(await alertRow(payload.alert_id)).not.toBeNull();
    expect(statusByDestination(await deliveries(payload.alert_id))).toEqual({ crm: "delivered", warehouse: "delivered" });
  });

  it("a statement of the batch failing rolls the whole batch back (nothing half written), and the spool stores it whole", async () => {
    const held = holdSpool();
    const original = env.DB.batch.bind(env.DB);
    vi.spyOn(env.DB, "batch").mockImplementationOnce((statements) =>
      original([...statements, env.DB.prepare("INSERT INTO no_such_table VALUES (1)")]),
    );
    const payload = examplePayload();
    await expectSpooled(await call(JSON.stringify(payload)), payload.alert_id);
    expect(await alertRow(payload.alert_id)).toBeNull();
    expect(await answerRows(payload.alert_id)).toEqual([]);
    await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage)], { ...env, DESTINATIONS: "" });
    expect(await answerRows(payload.alert_id)).toHaveLength(2);
  });

  it("a hanging D1 spools at STORAGE_DEADLINE_MS: the answer comes in under 2 s", async () => {
    holdSpool();
    vi.spyOn(env.DB, "batch").mockReturnValue(new Promise(() => {}));
    const payload = examplePayload();
    const started = Date.now();
    const res = await call(JSON.stringify(payload), { STORAGE_DEADLINE_MS: "300" });
    const elapsed = Date.now() - started;
    await expectSpooled(res, payload.alert_id);
    expect(elapsed).toBeGreaterThanOrEqual(290);
    expect(elapsed).toBeLessThan(2_000);
  });

  it("a transient D1 error is retried once and the alert is stored, not spooled", async () => {
    const original = env.DB.batch.bind(env.DB);
    const batch = vi
      .spyOn(env.DB, "batch")
      .mockRejectedValueOnce(new Error("D1_ERROR: Network connection lost."))
      .mockImplementation((statements) => original(statements));
    const send = vi.spyOn(env.ALERTS_QUEUE, "send");
    const payload = examplePayload();
    const res = await call(JSON.stringify(payload));
    expect(await res.json()).toMatchObject({ duplicate: false });
    expect(batch).toHaveBeenCalledTimes(2);
    expect(send).not.toHaveBeenCalled();
    expect(await alertRow(payload.alert_id)).not.toBeNull();
  });

  it("a permanent D1 error is not retried: spooled at once", async () => {
    holdSpool();
    const batch = vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: no such table: alerts"));
    const payload = examplePayload();
    await expectSpooled(await call(JSON.stringify(payload)), payload.alert_id);
    expect(batch).toHaveBeenCalledTimes(1);
  });
});

describe("ambiguous D1 commits", () => {
  it("a batch that commits and then throws: spooled, and the spooled copy is a duplicate (no second delivery, no conflict row)", async () => {
    const held = holdSpool();
    const original = env.DB.batch.bind(env.DB);
    vi.spyOn(env.DB, "batch").mockImplementationOnce(async (statements) => {
      await original(statements);
      throw new Error("D1_ERROR: Network connection lost.");
    }).mockImplementationOnce(async () => {
      throw new Error("D1_ERROR: Network connection lost.");
    });
    const payload = examplePayload();
    const body = JSON.stringify(payload);
    await expectSpooled(await call(body), payload.alert_id);
    vi.mocked(env.DB.batch).mockRestore();
    expect(await alertRow(payload.alert_id)).not.toBeNull();

    const received = stubDestinations();
    await runQueue("oneflow-alerts", [{ id: "m-a", timestamp: new Date(), attempts: 1, body: { v: 1, alert_id: payload.alert_id } }], FANOUT_ENV);
    await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage)], FANOUT_ENV);
    expect(received.filter((r) => r.host === "crm.test")).toHaveLength(1);
    expect(await rejectedRow(await sha256Hex(body))).toBeNull();
  });

  it("a batch that commits after the deadline: spooled, then a duplicate", async () => {
    const held = holdSpool();
    const original = env.DB.batch.bind(env.DB);
    vi.spyOn(env.DB, "batch").mockImplementationOnce(async (statements) => {
      await new Promise((r) => setTimeout(r, 500));
      return original(statements);
    });
    const payload = examplePayload();
    await expectSpooled(await call(JSON.stringify(payload), { STORAGE_DEADLINE_MS: "200" }), payload.alert_id);
    await vi.waitFor(async () => expect(await alertRow(payload.alert_id)).not.toBeNull());
    const result = await runQueue("oneflow-alerts", [spoolMessage(held[0] as SpoolMessage)], { ...env, DESTINATIONS: "" });
    expect(result.explicitAcks).toHaveLength(1);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id = ?").bind(payload.alert_id).first()).toEqual({ n: 1 });
  });
});

describe("D1 and the Queue both failing", () => {
  it("the Queue refuses the spool too: 503 storage_unavailable, so 1Flow retries", async () => {
    vi.spyOn(env.DB, "batch").mockRejectedValue(new Error("D1_ERROR: disk I/O error"));
    vi.spyOn(env.ALERTS_QUEUE, "send").mockRejectedValue(new Error("Queue send failed"));
    await expectStorageUnavailable(await call(JSON.stringify(examplePayload())));
  });

  it("both hang: 503 within STORAGE_DEADLINE_MS plus the spool's 2 s", async () => {
    vi.spyOn(env.DB, "batch").mockReturnValue(new Promise(() => {}));
    vi.spyOn(env.ALERTS_QUEUE, "send").mockReturnValue(new Promise(() => {}));
    const started = Date.now();
    await expectStorageUnavailable(await call(JSON.stringify(examplePayload()), { STORAGE_DEADLINE_MS: "300" }));
    expect(Date.now() - started).toBeLessThan(300 + 2_000 + 500);
  });

  it("an invalid body while D1 fails is a 503 (its quarantine needs D1), never spooled", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "send");
    await renameTable("rejected_payloads");
    await expectStorageUnavailable(await call("{not json"));
    expect(send).not.toHaveBeenCalled();
  });

  it("a conflicting body whose quarantine fails is a 503, not a silent 200", async () => {
    const payload = examplePayload();
    await call(JSON.stringify(payload));
    await renameTable("rejected_payloads");
    await expectStorageUnavailable(await call(JSON.stringify({ ...payload, platform: "other" })));
  });

  it("one deadline for the whole request: a slow store leaves only what is left of it to the conflict's quarantine", async () => {
    const payload = examplePayload();
    await call(JSON.stringify(payload));
    const original = env.DB.batch.bind(env.DB);
    vi.spyOn(env.DB, "batch")
      .mockImplementationOnce(async (statements) => {
        await new Promise((r) => setTimeout(r, 300));
        return original(statements);
      })
      .mockImplementationOnce(() => new Promise(() => {}));
    const started = Date.now();
    await expectStorageUnavailable(await call(JSON.stringify({ ...payload, platform: "other" }), { STORAGE_DEADLINE_MS: "400" }));
    // One deadline ends it near 400 ms; a deadline per step would take 300 + 400 = 700 ms.
    expect(Date.now() - started).toBeLessThan(400 + 200);
  });
});

describe("bodies no retry could fix: 4xx and quarantined, never a 503", () => {
  it("JSON nested too deeply: 422 invalid_payload, quarantined", async () => {
    const deep = JSON.stringify({ ...examplePayload(), user: { user_system_id: "u", parameters: JSON.parse(`${"[".repeat(40)}1${"]".repeat(40)}`) } });
    const res = await call(deep);
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: "invalid_payload", issues: [{ path: "", message: "JSON nested deeper than 32 levels" }] });
    expect((await rejectedRow(await sha256Hex(deep)))?.reason).toBe("invalid_payload");
  });

  it("a row too large for D1: 422 invalid_payload, quarantined", async () => {
    const big = JSON.stringify({ ...examplePayload(), user: { user_system_id: "u", parameters: { notes: "x".repeat(990_000) } } });
    const res = await call(big, { MAX_BODY_BYTES: "1048576" });
    expect(res.status).toBe(422);
    expect(await res.json()).toMatchObject({ error: "invalid_payload", issues: [{ message: "too large to store in one D1 row (1900000 bytes)" }] });
    expect((await rejectedRow(await sha256Hex(big)))?.size).toBe(big.length);
  });

  it("MAX_BODY_BYTES above 1 MiB is refused: the default limit applies and /healthz says bad_config", async () => {
    const res = await call(JSON.stringify({ ...examplePayload(), padding: "x".repeat(70_000) }), { MAX_BODY_BYTES: "2000000" });
    expect(res.status).toBe(413);
    const healthz = await worker.fetch(new Request("https://worker.test/healthz"), { ...env, MAX_BODY_BYTES: "2000000" }, createExecutionContext());
    expect(healthz.status).toBe(503);
    expect(await healthz.json()).toMatchObject({ ok: false, error: "bad_config" });
  });
});

describe("Queue faults after D1 took the alert", () => {
  it("the Queue send rejects: still 200, the row stored with enqueued_at NULL for the sweep", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValue(new Error("Queue send failed"));
    const payload = examplePayload();
    const res = await call(JSON.stringify(payload));
    expect(await res.json()).toEqual({ ok: true, alert_id: payload.alert_id, duplicate: false });
    expect(send).toHaveBeenCalledTimes(1);
    expect((await storedRow(payload.alert_id)).enqueued_at).toBeNull();
  });

  it("a retry of an alert whose enqueue failed enqueues it then, and the outbox mark follows the send", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValueOnce(new Error("Queue send failed"));
    const payload = examplePayload();
    await call(JSON.stringify(payload));
    expect((await storedRow(payload.alert_id)).enqueued_at).toBeNull();
    send.mockClear();
    const res = await call(JSON.stringify(payload));
    expect(await res.json()).toMatchObject({ duplicate: true });
    expect(send.mock.calls.map((c) => c[0])).toEqual([[{ body: { v: 1, alert_id: payload.alert_id }, contentType: "json" }]]);
    expect((await storedRow(payload.alert_id)).enqueued_at).not.toBeNull();
  });
});

describe("GET /healthz", () => {
  it("answers 503 storage_unavailable while D1 fails (a renamed table)", async () => {
    await renameTable("alerts");
    const res = await worker.fetch(new Request("https://worker.test/healthz"), env, createExecutionContext());
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "storage_unavailable" });
  });

  it.each([
    ["ENCRYPTION_KEY", "too-short"],
    ["ENCRYPTION_KEY_PREVIOUS", "not base64 of 32 bytes"],
    ["SUBREQUEST_BUDGET", "0"],
  ])("answers 503 bad_config when %s is %j, naming it", async (name, value) => {
    const res = await worker.fetch(new Request("https://worker.test/healthz"), { ...env, [name]: value }, createExecutionContext());
    expect(res.status).toBe(503);
    const answer = (await res.json()) as { error: string; problems: string[] };
    expect(answer.error).toBe("bad_config");
    expect(answer.problems.join(" ")).toContain(name);
  });

  it.each(["0", "-3", "1.5", "thirty", "7 days"])("answers 503 bad_config when RETENTION_DAYS is %j", async (days) => {
    const res = await worker.fetch(new Request("https://worker.test/healthz"), { ...env, RETENTION_DAYS: days }, createExecutionContext());
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "bad_config" });
  });
});
