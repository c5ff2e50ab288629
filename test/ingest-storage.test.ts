/** What lands in D1: the example field by field, idempotency, and the enqueue after the reply. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { sha256Hex } from "../src/ingest/ingest";
import { alertRow, answerRows, EXAMPLE, EXAMPLE_STORED, examplePayload, post, webhookRequest, storedRow } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Calls the Worker directly so the test can wait for its `waitUntil` work. */
async function postAndSettle(body: string): Promise<Response> {
  const ctx = createExecutionContext();
  const res = await worker.fetch(webhookRequest(body), env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

describe("storage of a valid alert", () => {
  it("stores the documented example field by field, payload byte for byte", async () => {
    // Spacing and key order as a sender might send them: the raw body is kept as it came.
    const body = JSON.stringify(EXAMPLE, null, 2);
    const before = Date.now();
    const res = await post(body);
    expect(res.status).toBe(200);

    const row = await alertRow(EXAMPLE.alert_id);
    expect(row).toMatchObject({
      ...EXAMPLE_STORED,
      payload: body,
      payload_sha256: await sha256Hex(body),
    });
    expect(JSON.parse(row?.user_parameters ?? "null")).toEqual({ firstName: "John", lastName: "Wick" });
    expect(JSON.parse(row?.trigger_event_parameters ?? "null")).toEqual({ content_id: "1234abcdef56", session_id: "4abcdef56" });
    const received = Date.parse(row?.received_at ?? "");
    expect(received).toBeGreaterThanOrEqual(before - 1000);
    expect(row?.received_at).toMatch(/Z$/);

    expect(await answerRows(EXAMPLE.alert_id)).toEqual([
      {
        alert_id: EXAMPLE.alert_id,
        position: 0,
        title: "How likely are you to recommend us to a friend or co-worker?",
        type: "nps",
        answer: "10",
        value: 10,
      },
      {
        alert_id: EXAMPLE.alert_id,
        position: 1,
        title: "What's the reason for this score?",
        type: "text",
        answer: "best user experience",
        value: null,
      },
    ]);
  });

  it("keeps unknown fields in the stored payload and unknown screen types in answers", async () => {
    const payload = examplePayload({ brand_new: { x: 1 } });
    payload.survey_info.screens.push({ title: "Grid", type: "matrix", answer: "a" });
    await post(payload);
    expect(JSON.parse((await alertRow(payload.alert_id))?.payload ?? "{}").brand_new).toEqual({ x: 1 });
    expect((await answerRows(payload.alert_id))[2]).toMatchObject({ type: "matrix", answer: "a", value: null });
  });

  it("stores answers given as number, array and null", async () => {
    const payload = examplePayload({
      survey_info: {
        name: "Shapes",
        screens: [
          { title: "n", type: "nps", answer: 3 },
          { title: "c", type: "checkbox", answer: ["Red", "Blue"] },
          { title: "t", type: "text", answer: null },
        ],
      },
    });
    await post(payload);
    expect((await answerRows(payload.alert_id)).map((a) => [a.answer, a.value])).toEqual([
      ["3", 3],
      ["Red, Blue", null],
      [null, null],
    ]);
  });

  it("feeds the survey_nps view", async () => {
    const survey_id = `nps-${crypto.randomUUID()}`;
    for (const score of ["10", "9", "8", "3"]) {
      const payload = examplePayload({ survey_id });
      payload.survey_info.screens[0]!.answer = score;
      await post(payload);
    }
    const nps = await env.DB.prepare("SELECT * FROM survey_nps WHERE survey_id = ?").bind(survey_id).first();
    expect(nps).toEqual({
      survey_id,
      survey_name: "Net Promoter Score (NPS)",
      responses: 4,
      promoters: 2,
      passives: 1,
      detractors: 1,
      nps: 25,
    });
  });
});

describe("idempotency", () => {
  it("the same alert three times is one row and one set of answers", async () => {
    const payload = examplePayload();
    const answers = [];
    for (let i = 0; i < 3; i++) answers.push(await (await post(payload)).json());
    expect(answers.map((a) => (a as { duplicate: boolean }).duplicate)).toEqual([false, true, true]);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id = ?").bind(payload.alert_id).first();
    expect(rows).toEqual({ n: 1 });
    expect(await answerRows(payload.alert_id)).toHaveLength(2);
  });

  it("concurrent deliveries of one alert store it once; exactly one answers duplicate:false; the survey counts it once", async () => {
    const payload = examplePayload({ survey_id: `once-${crypto.randomUUID()}` });
    const body = JSON.stringify(payload);
    const responses = await Promise.all(Array.from({ length: 8 }, () => post(body)));
    const answers = (await Promise.all(responses.map((r) => r.json()))) as { duplicate: boolean }[];
    expect(responses.map((r) => r.status)).toEqual(Array(8).fill(200));
    expect(answers.filter((a) => a.duplicate === false)).toHaveLength(1);
    const rows = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id = ?").bind(payload.alert_id).first();
    expect(rows).toEqual({ n: 1 });
    expect(await answerRows(payload.alert_id)).toHaveLength(2);
    // The rollups count the response once, however many deliveries raced: 1 response, 1 NPS answer, a promoter.
    const day = await env.DB.prepare("SELECT responses, nps_responses, promoters FROM survey_daily WHERE survey_id = ?").bind(payload.survey_id).first();
    expect(day).toEqual({ responses: 1, nps_responses: 1, promoters: 1 });
    const totals = await env.DB.prepare("SELECT responses FROM survey_totals WHERE survey_id = ?").bind(payload.survey_id).first();
    expect(totals).toEqual({ responses: 1 });
  });

  it("concurrent different bodies under one alert_id: one stored, the rest quarantined", async () => {
    const alert_id = `race-${crypto.randomUUID()}`;
    const bodies = ["a", "b", "c"].map((platform) => JSON.stringify(examplePayload({ alert_id, platform })));
    const answers = (await Promise.all(bodies.map(async (b) => (await post(b)).json()))) as { duplicate: boolean }[];
    expect(answers.filter((a) => !a.duplicate)).toHaveLength(1);
    const stored = await alertRow(alert_id);
    const conflicts = await env.DB.prepare("SELECT id FROM rejected_payloads WHERE alert_id = ? AND reason = 'alert_id_conflict'")
      .bind(alert_id)
      .all<{ id: string }>();
    const losers = bodies.filter((b) => b !== stored?.payload);
    expect(losers).toHaveLength(2);
    expect(conflicts.results.map((r) => r.id).sort()).toEqual((await Promise.all(losers.map((b) => sha256Hex(b)))).sort());
  });
});

/** Waits until the real local Queue's consumer has taken the alert's message and marked it. */
async function enqueuedAt(alert_id: string): Promise<string> {
  let at: string | null | undefined = null;
  await vi.waitFor(
    async () => {
      at = (await alertRow(alert_id))?.enqueued_at;
      expect(at).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
    },
    { timeout: 15_000, interval: 100 },
  );
  return at ?? "";
}

describe("enqueue after the reply", () => {
  it("sends {v:1, alert_id} to ALERTS_QUEUE; enqueued_at is set once the Queue has it", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch");
    const payload = examplePayload();
    const res = await postAndSettle(JSON.stringify(payload));
    expect(res.status).toBe(200);
    // Sent by this request's waitUntil, or by an earlier request's still-open window.
    await vi.waitFor(() => {
      const messages = send.mock.calls.flatMap((c) => Array.from(c[0]));
      expect(messages.filter((m) => "alert_id" in m.body && m.body.alert_id === payload.alert_id)).toEqual([
        { body: { v: 1, alert_id: payload.alert_id }, contentType: "json" },
      ]);
    });
    expect(await enqueuedAt(payload.alert_id)).toBeTruthy();
  });

  it("does not enqueue a duplicate of an alert already enqueued", async () => {
    const payload = examplePayload();
    await postAndSettle(JSON.stringify(payload));
    await enqueuedAt(payload.alert_id);
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch");
    await postAndSettle(JSON.stringify(payload));
    expect(send).not.toHaveBeenCalled();
  });

  it("replies before the Queue answers", async () => {
    let release: () => void = () => {};
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    const original = env.ALERTS_QUEUE.sendBatch.bind(env.ALERTS_QUEUE);
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockImplementation(async (messages, options) => {
      await gate;
      return original(messages, options);
    });
    const payload = examplePayload();
    const ctx = createExecutionContext();
    const res = await worker.fetch(webhookRequest(JSON.stringify(payload)), env, ctx);
    expect(res.status).toBe(200);
    expect((await storedRow(payload.alert_id)).enqueued_at).toBeNull();
    release();
    await waitOnExecutionContext(ctx);
    expect(await enqueuedAt(payload.alert_id)).toBeTruthy();
  });

  it("alerts that arrive together go to the Queue in one sendBatch, sent by the request that came first", async () => {
    const send = vi.spyOn(env.ALERTS_QUEUE, "sendBatch");
    const payloads = [examplePayload(), examplePayload(), examplePayload()];
    const contexts = payloads.map(() => createExecutionContext());
    const responses = await Promise.all(
      payloads.map((p, i) => worker.fetch(webhookRequest(JSON.stringify(p)), env, contexts[i]!)),
    );
    expect(responses.map((r) => r.status)).toEqual([200, 200, 200]);
    await Promise.all(contexts.map((c) => waitOnExecutionContext(c)));
    const sent = send.mock.calls.flatMap((c) => Array.from(c[0], (m) => (m.body as { alert_id: string }).alert_id));
    expect(sent.sort()).toEqual(payloads.map((p) => p.alert_id).sort());
    expect(send).toHaveBeenCalledTimes(1);
    for (const p of payloads) expect(await enqueuedAt(p.alert_id)).toBeTruthy();
  });
});
