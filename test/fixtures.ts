/** The documented example payload and helpers to post it. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import example from "../examples/1flow-example.json";
import type { Alert, Answer } from "../src/alert";
import type { Env } from "../src/env";
import worker from "../src/index";
import { sha256Hex } from "../src/ingest/ingest";
import type { RejectedRow } from "../src/store/rejected";

/** The example from 1Flow's documentation, as the README posts it. */
export const EXAMPLE = example;

export type ExamplePayload = typeof EXAMPLE;

/** The example's fields as `alerts` stores them, spelled out once for every test that checks them. */
export const EXAMPLE_STORED = {
  alert_id: "6425124d1b026625c189cac0",
  alert_name: "submitted_survey",
  project_name: "Survey Responses",
  survey_id: "30cc805f1f0c541d4dcfccef",
  survey_name: "Net Promoter Score (NPS)",
  platform: "windows",
  user_system_id: "sdk_system_id_1680151080658",
  trigger_event_name: "complete_meditation",
  submitted_at: "2022-09-30T03:26:24.894Z",
} as const;

let counter = 0;
/** A fresh alert_id: storage is shared by the tests of one file. */
export function freshId(prefix = "t"): string {
  counter += 1;
  return `${prefix}-${Date.now().toString(36)}-${counter}-${crypto.randomUUID().slice(0, 8)}`;
}

/** The example with a fresh alert_id and any overrides. */
export function examplePayload(overrides: Record<string, unknown> = {}): ExamplePayload & Record<string, unknown> {
  return { ...structuredClone(EXAMPLE), alert_id: freshId(), ...overrides };
}

export const TOKEN = "test-secret";
export const WEBHOOK_URL = `https://worker.test/webhooks/1flow/${TOKEN}`;

export function webhookRequest(
  body: BodyInit | null,
  init: { token?: string; contentType?: string | null; method?: string; headers?: Record<string, string> } = {},
): Request {
  const headers = new Headers(init.headers);
  const contentType = init.contentType === undefined ? "application/json" : init.contentType;
  if (contentType !== null) headers.set("content-type", contentType);
  // As a client sends it (the runtime adds it on a real request; a Request built here has none).
  if (typeof body === "string" && !headers.has("content-length")) headers.set("content-length", String(new TextEncoder().encode(body).byteLength));
  if (body instanceof Uint8Array && !headers.has("content-length")) headers.set("content-length", String(body.byteLength));
  return new Request(`https://worker.test/webhooks/1flow/${init.token ?? TOKEN}`, {
    method: init.method ?? "POST",
    headers,
    body,
  });
}

/**
 * Posts through the Worker's fetch handler, with the tests' bindings. With
 * `contentType: null` the body goes as raw bytes, so that no content-type is added for it
 * (a string body would silently get text/plain).
 */
export async function post(body: unknown, init: Parameters<typeof webhookRequest>[1] = {}): Promise<Response> {
  let raw = typeof body === "string" || body instanceof Uint8Array || body === null ? body : JSON.stringify(body);
  if (init.contentType === null && typeof raw === "string") raw = new TextEncoder().encode(raw);
  // Its work after the reply (the enqueue) is done when this returns: a test that restores its
  // mocks next never leaves that work running against them, or against the next test's.
  const ctx = createExecutionContext();
  const res = await worker.fetch(webhookRequest(raw as BodyInit | null, init), env, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/** A row of `alerts`: the normalised alert without its answers, and what ingest adds. */
export type AlertRow = Omit<Alert, "answers"> & {
  received_at: string;
  payload: string;
  payload_sha256: string;
  enqueued_at: string | null;
  fanout_claimed_until: string | null;
  fanned_out_at: string | null;
};

export type AnswerRow = Answer & { alert_id: string };

export type { RejectedRow } from "../src/store/rejected";

/** The alert's row, which must exist: a check on one of its columns then cannot pass on a missing row. */
export async function storedRow(alert_id: string): Promise<AlertRow> {
  const row = await alertRow(alert_id);
  if (row === null) throw new Error(`alert ${alert_id} is not stored`);
  return row;
}

export async function alertRow(alert_id: string): Promise<AlertRow | null> {
  return env.DB.prepare("SELECT * FROM alerts WHERE alert_id = ?").bind(alert_id).first<AlertRow>();
}

export async function answerRows(alert_id: string): Promise<AnswerRow[]> {
  const { results } = await env.DB.prepare("SELECT * FROM answers WHERE alert_id = ? ORDER BY position")
    .bind(alert_id)
    .all<AnswerRow>();
  return results;
}

export async function rejectedRow(id: string): Promise<RejectedRow | null> {
  return env.DB.prepare("SELECT * FROM rejected_payloads WHERE id = ?").bind(id).first<RejectedRow>();
}

export async function count(table: "alerts" | "answers" | "rejected_payloads" | "deliveries"): Promise<number> {
  const row = await env.DB.prepare(`SELECT COUNT(*) AS n FROM ${table}`).first<{ n: number }>();
  return row?.n ?? 0;
}

/** Row counts of the three ingest tables, to show that a request stored nothing. */
export async function snapshot(): Promise<Record<string, number>> {
  return {
    alerts: await count("alerts"),
    answers: await count("answers"),
    rejected_payloads: await count("rejected_payloads"),
  };
}

/** The admin token the API and dashboard tests use. */
export const ADMIN_TOKEN = "admin-token-for-tests";

/**
 * Calls the Worker's fetch handler directly with `environment` (ADMIN_TOKEN set by
 * default) and waits for its `waitUntil` work. `token` sends a bearer header
 * (default ADMIN_TOKEN, null for none). Redirects are returned, not followed.
 */
export async function callWorker(
  path: string,
  init: RequestInit & { token?: string | null } = {},
  environment: Env = { ...env, ADMIN_TOKEN },
): Promise<Response> {
  const { token = ADMIN_TOKEN, ...rest } = init;
  const headers = new Headers(rest.headers);
  if (token !== null) headers.set("authorization", `Bearer ${token}`);
  const ctx = createExecutionContext();
  const res = await worker.fetch(new Request(`https://worker.test${path}`, { redirect: "manual", ...rest, headers }), environment, ctx);
  await waitOnExecutionContext(ctx);
  return res;
}

/**
 * Puts a valid example body in the quarantine as if an older, stricter schema had
 * refused it; returns the payload, the body and its quarantine id.
 */
export async function quarantinedValidBody() {
  const payload = examplePayload();
  const body = JSON.stringify(payload);
  const id = await sha256Hex(body);
  await env.DB.prepare(
    `INSERT INTO rejected_payloads (id, reason, detail, body, alert_id, size, first_seen_at, last_seen_at, attempts)
     VALUES (?, 'invalid_payload', '{"issues":[]}', ?, ?, ?, '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z', 3)`,
  )
    .bind(id, body, payload.alert_id, body.length)
    .run();
  return { payload, body, id };
}
