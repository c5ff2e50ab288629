/** Every row of the HTTP contract table in DESIGN.md, through the Worker's real entry point. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env, exports } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { sha256Hex } from "../src/ingest/ingest";
import worker from "../src/index";
import {
  alertRow,
  answerRows,
  examplePayload,
  post,
  rejectedRow,
  snapshot,
  webhookRequest,
} from "./fixtures";

async function json(res: Response): Promise<Record<string, unknown>> {
  return (await res.json()) as Record<string, unknown>;
}

function expectRequestId(res: Response): void {
  expect(res.headers.get("x-request-id")).toMatch(/^[\w-]{8,}$/);
}

describe("POST /webhooks/1flow/:token", () => {
  it("new valid alert: 200 duplicate:false, alert and answers stored", async () => {
    const payload = examplePayload();
    const res = await post(payload);
    expect(res.status).toBe(200);
    expectRequestId(res);
    expect(await json(res)).toEqual({ ok: true, alert_id: payload.alert_id, duplicate: false });
    expect(await alertRow(payload.alert_id)).not.toBeNull();
    expect(await answerRows(payload.alert_id)).toHaveLength(2);
  });

  it("same alert_id again with the same body: 200 duplicate:true, nothing new", async () => {
    const payload = examplePayload();
    await post(payload);
    const before = await snapshot();
    const res = await post(payload);
    expect(res.status).toBe(200);
    expectRequestId(res);
    expect(await json(res)).toEqual({ ok: true, alert_id: payload.alert_id, duplicate: true });
    expect(await snapshot()).toEqual(before);
  });

  it("same alert_id with a different body: first kept, the other quarantined as alert_id_conflict", async () => {
    const first = examplePayload();
    await post(first);
    const second = { ...first, survey_info: { name: "Changed", screens: [{ title: "Q", type: "text", answer: "x" }, { title: "Q2", type: "text", answer: "y" }, { title: "Q3", type: "text", answer: "z" }] } };
    const body = JSON.stringify(second);
    const res = await post(body);
    expect(res.status).toBe(200);
    expectRequestId(res);
    expect(await json(res)).toEqual({ ok: true, alert_id: first.alert_id, duplicate: true });

    const stored = await alertRow(first.alert_id);
    expect(stored?.payload).toBe(JSON.stringify(first));
    expect(stored?.survey_name).toBe("Net Promoter Score (NPS)");
    expect((await answerRows(first.alert_id)).map((a) => a.answer)).toEqual(["10", "best user experience"]);

    const rejected = await rejectedRow(await sha256Hex(body));
    expect(rejected).toMatchObject({ reason: "alert_id_conflict", alert_id: first.alert_id, body, attempts: 1 });

    await post(body);
    expect((await rejectedRow(await sha256Hex(body)))?.attempts).toBe(2);
  });

  it.each([
    ["wrong", "https://worker.test/webhooks/1flow/not-the-secret"],
    ["missing", "https://worker.test/webhooks/1flow"],
    ["empty", "https://worker.test/webhooks/1flow/"],
    ["a prefix of the secret", "https://worker.test/webhooks/1flow/test-secre"],
  ])("token %s: 401 unauthorized, nothing stored", async (_, url) => {
    const payload = examplePayload();
    const before = await snapshot();
    const res = await exports.default.fetch(
      new Request(url, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) }),
    );
    expect(res.status).toBe(401);
    expectRequestId(res);
    expect(await json(res)).toMatchObject({ ok: false, error: "unauthorized" });
    expect(await snapshot()).toEqual(before);
  });

  it("the previous secret is accepted during rotation", async () => {
    const payload = examplePayload();
    const res = await post(payload, { token: "old-secret" });
    expect(res.status).toBe(200);
    expect(await alertRow(payload.alert_id)).not.toBeNull();
  });

  it("with WEBHOOK_SECRET_PREVIOUS unset, the old token gets 401", async () => {
    const payload = examplePayload();
    const ctx = createExecutionContext();
    const res = await worker.fetch(webhookRequest(JSON.stringify(payload), { token: "old-secret" }), { ...env, WEBHOOK_SECRET_PREVIOUS: undefined }, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(401);
    expect(await alertRow(payload.alert_id)).toBeNull();
  });

  it("no content-type at all (raw bytes, nothing added): 415, quarantined", async () => {
    const request = webhookRequest(new TextEncoder().encode(JSON.stringify(examplePayload())), { contentType: null });
    expect(request.headers.get("content-type")).toBeNull();
    const res = await exports.default.fetch(request);
    expect(res.status).toBe(415);
  });

  it("WEBHOOK_SECRET not configured: 503 not_configured, even with an empty token; nothing stored", async () => {
    const before = await snapshot();
    for (const token of ["test-secret", ""]) {
      const ctx = createExecutionContext();
      const res = await worker.fetch(
        webhookRequest(JSON.stringify(examplePayload()), { token }),
        { ...env, WEBHOOK_SECRET: undefined, WEBHOOK_SECRET_PREVIOUS: undefined },
        ctx,
      );
      await waitOnExecutionContext(ctx);
      expect(res.status).toBe(503);
      expectRequestId(res);
      expect(await json(res)).toMatchObject({ ok: false, error: "not_configured" });
    }
    expect(await snapshot()).toEqual(before);
  });

  it.each([["text/plain"], ["application/x-www-form-urlencoded"], [null]])(
    "content-type %s: 415 unsupported_media_type, body quarantined",
    async (contentType) => {
      const payload = examplePayload();
      const body = JSON.stringify(payload);
      const res = await post(body, { contentType });
      expect(res.status).toBe(415);
      expectRequestId(res);
      expect(await json(res)).toMatchObject({ ok: false, error: "unsupported_media_type" });
      expect(await alertRow(payload.alert_id)).toBeNull();
      const rejected = await rejectedRow(await sha256Hex(body));
      expect(rejected).toMatchObject({ reason: "unsupported_media_type", body, size: body.length, attempts: 1 });
    },
  );

  it("content-type with a charset parameter is JSON", async () => {
    const payload = examplePayload();
    const res = await post(payload, { contentType: "application/json; charset=utf-8" });
    expect(res.status).toBe(200);
  });

  it("body over MAX_BODY_BYTES (content-length): 413 payload_too_large, quarantined by size without the body", async () => {
    const payload = examplePayload({ padding: "x".repeat(70_000) });
    const body = JSON.stringify(payload);
    const res = await post(body);
    expect(res.status).toBe(413);
    expectRequestId(res);
    expect(await json(res)).toMatchObject({ ok: false, error: "payload_too_large" });
    expect(await alertRow(payload.alert_id)).toBeNull();
    const rejected = await rejectedRow(await sha256Hex(`payload_too_large:${body.length}`));
    expect(rejected).toMatchObject({ reason: "payload_too_large", body: null, size: body.length });
    expect(JSON.parse(rejected?.detail ?? "{}")).toEqual({ limit: 65_536, size: body.length });
  });

  it("body over MAX_BODY_BYTES without a content-length (streamed): 413", async () => {
    const payload = examplePayload({ padding: "y".repeat(70_000) });
    const bytes = new TextEncoder().encode(JSON.stringify(payload));
    const stream = new ReadableStream<Uint8Array>({
      start(controller) {
        for (let i = 0; i < bytes.length; i += 8192) controller.enqueue(bytes.slice(i, i + 8192));
        controller.close();
      },
    });
    const res = await exports.default.fetch(webhookRequest(stream));
    expect(res.status).toBe(413);
    expect(await json(res)).toMatchObject({ error: "payload_too_large" });
    expect(await alertRow(payload.alert_id)).toBeNull();
    expect(await rejectedRow(await sha256Hex("payload_too_large:65537"))).toMatchObject({ reason: "payload_too_large" });
  });

  it("a body exactly at MAX_BODY_BYTES is accepted", async () => {
    const payload = examplePayload({ padding: "" });
    const base = JSON.stringify(payload).length;
    const exact = { ...payload, padding: "z".repeat(65_536 - base) };
    const body = JSON.stringify(exact);
    expect(body.length).toBe(65_536);
    const res = await post(body);
    expect(res.status).toBe(200);
    expect((await alertRow(payload.alert_id))?.payload).toBe(body);
  });

  it("MAX_BODY_BYTES is configurable", async () => {
    const payload = examplePayload();
    const ctx = createExecutionContext();
    const res = await worker.fetch(webhookRequest(JSON.stringify(payload)), { ...env, MAX_BODY_BYTES: "100" }, ctx);
    await waitOnExecutionContext(ctx);
    expect(res.status).toBe(413);
    expect(await alertRow(payload.alert_id)).toBeNull();
  });

  it.each([["{not json"], [""], ["[1, 2"], ["null x"]])("body %j is not JSON: 400 invalid_json, quarantined", async (body) => {
    const res = await post(body);
    expect(res.status).toBe(400);
    expectRequestId(res);
    expect(await json(res)).toMatchObject({ ok: false, error: "invalid_json" });
    expect(await rejectedRow(await sha256Hex(body))).toMatchObject({ reason: "invalid_json", body, size: body.length });
  });

  it("a body that is not UTF-8: 400 invalid_json, the raw bytes quarantined", async () => {
    const bytes = new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]);
    const res = await post(bytes);
    expect(res.status).toBe(400);
    const rejected = await rejectedRow(await sha256Hex(bytes));
    expect(rejected?.reason).toBe("invalid_json");
    expect(new Uint8Array(rejected?.body as ArrayBuffer)).toEqual(bytes);
  });

  it("JSON that fails the schema: 422 invalid_payload with dotted issue paths, quarantined", async () => {
    const payload = examplePayload();
    const broken = {
      ...payload,
      survey_id: undefined,
      survey_info: { ...payload.survey_info, screens: [{ title: "Q", answer: "1", type: 7 }] },
    };
    const body = JSON.stringify(broken);
    const res = await post(body);
    expect(res.status).toBe(422);
    expectRequestId(res);
    const answer = await json(res);
    expect(answer).toMatchObject({ ok: false, error: "invalid_payload" });
    const paths = (answer.issues as { path: string; message: string }[]).map((i) => i.path);
    expect(paths).toEqual(expect.arrayContaining(["survey_id", "survey_info.screens.0.type"]));
    expect(await alertRow(payload.alert_id)).toBeNull();
    const rejected = await rejectedRow(await sha256Hex(body));
    expect(rejected).toMatchObject({ reason: "invalid_payload", alert_id: payload.alert_id, body });
    expect(JSON.parse(rejected?.detail ?? "{}").issues).toEqual(answer.issues);
  });

  it("the same rejected body twice is one quarantine row with two attempts", async () => {
    const body = JSON.stringify({ alert_id: "x", nonsense: crypto.randomUUID() });
    await post(body);
    const first = await rejectedRow(await sha256Hex(body));
    await new Promise((r) => setTimeout(r, 5));
    await post(body);
    const rejected = await rejectedRow(await sha256Hex(body));
    expect(rejected?.attempts).toBe(2);
    expect(rejected?.first_seen_at).toBe(first?.first_seen_at);
    // The repeat moves last_seen_at forward.
    expect((rejected?.last_seen_at ?? "") > (first?.last_seen_at ?? "~")).toBe(true);
  });

  it.each(["GET", "PUT", "DELETE", "PATCH"])("%s on the webhook path: 405 with Allow: POST, nothing stored", async (method) => {
    const before = await snapshot();
    const res = await exports.default.fetch(new Request("https://worker.test/webhooks/1flow/test-secret", { method }));
    expect(res.status).toBe(405);
    expectRequestId(res);
    expect(res.headers.get("allow")).toBe("POST");
    expect(await json(res)).toMatchObject({ ok: false, error: "method_not_allowed" });
    expect(await snapshot()).toEqual(before);
  });

  it.each(["/", "/webhooks", "/webhooks/1flow/test-secret/extra", "/webhooks/other/test-secret"])(
    "POST %s: 404 not_found, nothing stored",
    async (path) => {
      const before = await snapshot();
      const res = await exports.default.fetch(
        new Request(`https://worker.test${path}`, { method: "POST", body: JSON.stringify(examplePayload()) }),
      );
      expect(res.status).toBe(404);
      expectRequestId(res);
      expect(await json(res)).toMatchObject({ ok: false, error: "not_found" });
      expect(await snapshot()).toEqual(before);
    },
  );

  it("error bodies never echo the token", async () => {
    const res = await post("{", { token: "test-secret" });
    expect(await res.text()).not.toContain("test-secret");
    const wrong = await post("{}", { token: "guess-123" });
    expect(await wrong.text()).not.toContain("guess-123");
  });
});

describe("GET /healthz", () => {
  it("answers 200 {ok:true} when D1 answers", async () => {
    const res = await exports.default.fetch("https://worker.test/healthz");
    expect(res.status).toBe(200);
    expectRequestId(res);
    expect(await res.json()).toEqual({ ok: true });
  });
});
