/** Destinations, a stubbed outbound fetch, and direct consumer calls for the fan-out tests. */
import { createExecutionContext, createMessageBatch, getQueueResult, type QueueResult } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { vi } from "vitest";
import { type AlertMessage, isAlertMessage, type QueueMessage } from "../src/alert";
import type { Env } from "../src/env";
import worker from "../src/index";
import { examplePayload, post } from "./fixtures";

export const SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
export const SLACK_SURVEY = "survey-for-slack";

export const DESTINATIONS = [
  { name: "crm", url: "https://crm.test/hook", secret: SECRET },
  { name: "warehouse", url: "https://warehouse.test/ingest", format: "raw" },
  { name: "slack", url: "https://slack.test/services/T/B/X", format: "slack", survey_ids: [SLACK_SURVEY] },
];

/** The fan-out tests' Worker: three destinations; the breaker set far off (its own tests set it). */
export const FANOUT_ENV: Env = { ...env, DESTINATIONS: JSON.stringify(DESTINATIONS), RETRY_BASE_SECONDS: "30", PAUSE_AFTER_FAILURES: "100000" };

export interface Received {
  host: string;
  /** The request's redirect mode: "manual" means the Worker never follows one. */
  redirect: string;
  headers: Record<string, string>;
  body: string;
}

export type Answer = (request: Request, received: Received) => Response | Promise<Response>;

/**
 * Replaces outbound fetch for hosts ending in `.test`: `answers[host]` answers
 * (200 by default), and every request is recorded.
 */
export function stubDestinations(answers: Record<string, Answer> = {}): Received[] {
  const received: Received[] = [];
  const original = globalThis.fetch;
  vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
    const request = new Request(input, init);
    const host = new URL(request.url).hostname;
    if (!host.endsWith(".test")) return original(input, init);
    const record = { host, redirect: request.redirect, headers: Object.fromEntries(request.headers), body: await request.clone().text() };
    received.push(record);
    const answer = answers[host];
    return answer ? answer(request, record) : new Response("ok");
  });
  return received;
}

/** Stores a fresh alert through the webhook; returns its payload and body. */
export async function storedAlert(overrides: Record<string, unknown> = {}) {
  const payload = examplePayload(overrides);
  const body = JSON.stringify(payload);
  const res = await post(body);
  if (res.status !== 200) throw new Error(`store failed: ${res.status}`);
  return { payload, body, alert_id: payload.alert_id };
}

let nextId = 0;
export function message(alert_id: string, attempts = 1) {
  nextId += 1;
  return { id: `msg-${nextId}`, timestamp: new Date(), attempts, body: { v: 1, alert_id } };
}

export interface QueueOutcome extends QueueResult {
  /** The delay each retried message asked for (getQueueResult keeps only the ids). */
  delays: Record<string, number | undefined>;
}

/** Spies on each message's `retry` (calling through) to see the delay it was given. */
export function watchRetryDelays(batch: MessageBatch): Record<string, number | undefined> {
  const delays: Record<string, number | undefined> = {};
  for (const m of batch.messages) {
    const retry = m.retry.bind(m);
    vi.spyOn(m, "retry").mockImplementation((options) => {
      delays[m.id] = options?.delaySeconds;
      retry(options);
    });
  }
  return delays;
}

/** Runs the Worker's real `queue()` handler on a batch and collects its acks and retries. */
export async function runQueue(
  queue: string,
  messages: { id: string; timestamp: Date; attempts: number; body: unknown }[],
  environment: Env = FANOUT_ENV,
): Promise<QueueOutcome> {
  const batch = createMessageBatch(queue, messages);
  const delays = watchRetryDelays(batch);
  const ctx = createExecutionContext();
  await worker.queue(batch, environment);
  return { ...(await getQueueResult(batch, ctx)), delays };
}

export interface DeliveryRow {
  alert_id: string;
  destination: string;
  status: string;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  updated_at: string;
  delivered_at: string | null;
}

export async function deliveries(alert_id: string): Promise<DeliveryRow[]> {
  const { results } = await env.DB.prepare(
    `SELECT alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at
     FROM deliveries WHERE alert_id = ? ORDER BY destination`,
  )
    .bind(alert_id)
    .all<DeliveryRow>();
  return results;
}

export function statusByDestination(rows: DeliveryRow[]): Record<string, string> {
  return Object.fromEntries(rows.map((r) => [r.destination, r.status]));
}

/** Watches `ALERTS_QUEUE.sendBatch` (calling through) and lists what each call sent. */
export function watchSendBatch() {
  const batches: MessageSendRequest<AlertMessage>[][] = [];
  const isAlert = (m: MessageSendRequest<QueueMessage>): m is MessageSendRequest<AlertMessage> => isAlertMessage(m.body);
  const original = env.ALERTS_QUEUE.sendBatch.bind(env.ALERTS_QUEUE);
  const spy = vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockImplementation(async (messages, options) => {
    const list = Array.from(messages);
    batches.push(list.filter(isAlert));
    return original(list, options);
  });
  return { spy, batches, ids: () => batches.flatMap((b) => b.map((m) => m.body.alert_id)) };
}

/**
 * Makes a `DB.batch` reject when one of its statements' SQL holds `fragment` (the first
 * `times` such batches); every other batch runs. Counts the faults hit.
 */
export function failBatchesWith(fragment: string, times = 1) {
  const original = env.DB.prepare.bind(env.DB);
  const originalBatch = env.DB.batch.bind(env.DB);
  const marked = new WeakSet<D1PreparedStatement>();
  const fault = { hit: 0 };
  const mark = (statement: D1PreparedStatement): D1PreparedStatement => {
    const bind = statement.bind.bind(statement);
    statement.bind = (...values: unknown[]) => mark(bind(...values));
    marked.add(statement);
    return statement;
  };
  vi.spyOn(env.DB, "prepare").mockImplementation((sql) => (sql.includes(fragment) ? mark(original(sql)) : original(sql)));
  vi.spyOn(env.DB, "batch").mockImplementation(async (statements) => {
    if (fault.hit < times && statements.some((st) => marked.has(st))) {
      fault.hit += 1;
      throw new Error("D1_ERROR: disk I/O error");
    }
    return originalBatch(statements);
  });
  return fault;
}
