/**
 * The ingest flow: validate -> store -> enqueue. The webhook calls it for every
 * authenticated body; nothing it is given is dropped without a row that says so.
 */
import type { AlertMessage, RejectReason } from "../alert";
import { errorMessage, log } from "../log";
import { sendAlerts } from "../queue";
import { markEnqueued, storeAlert } from "../store/alerts";
import { withDeadline } from "../store/d1";
import { quarantine, type Rejection } from "../store/rejected";
import { bufferEnqueue } from "./enqueue-buffer";
import { type PayloadIssue, parsePayload } from "./payload";

export interface IngestContext {
  db: D1Database;
  queue: Queue<AlertMessage>;
  /** Runs work after the reply (the Worker's `ctx.waitUntil`). */
  waitUntil: (promise: Promise<unknown>) => void;
  now: () => Date;
  deadline_ms: number;
  request_id: string;
  /** False when reprocessing a body from the quarantine: a refusal leaves it where it is. */
  quarantine?: boolean;
}

export type IngestOutcome =
  | { outcome: "stored"; alert_id: string; duplicate: false }
  | { outcome: "duplicate" | "conflict"; alert_id: string; duplicate: true }
  | { outcome: "invalid_json"; alert_id: null }
  | { outcome: "invalid_payload"; alert_id: string | null; issues: PayloadIssue[] };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

/** SHA-256 of the bytes, as lowercase hex. */
export async function sha256Hex(bytes: ArrayBuffer | Uint8Array | string): Promise<string> {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", data));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Validates one body, stores it in D1 exactly once (or quarantines it), and
 * enqueues it after the reply. Throws `StorageUnavailableError` when D1 fails.
 */
export async function ingest(body: ArrayBuffer, ctx: IngestContext): Promise<IngestOutcome> {
  const sha = await sha256Hex(body);
  const size = body.byteLength;
  const text = decodeUtf8(body);
  const json = text === null ? { ok: false as const, message: "body is not UTF-8" } : parseJson(text);
  if (text === null || !json.ok) {
    const detail = { message: json.ok ? "" : json.message };
    await reject(ctx, { id: sha, reason: "invalid_json", detail, body: text ?? body, alert_id: null, size });
    return { outcome: "invalid_json", alert_id: null };
  }

  const parsed = parsePayload(json.value);
  if (!parsed.ok) {
    const alert_id = readableAlertId(json.value);
    await reject(ctx, { id: sha, reason: "invalid_payload", detail: { issues: parsed.issues }, body: text, alert_id, size });
    return { outcome: "invalid_payload", alert_id, issues: parsed.issues };
  }

  const { alert, unknown_types } = parsed;
  if (unknown_types.length > 0) {
    log("warn", "payload.unknown_screen_type", {
      request_id: ctx.request_id,
      alert_id: alert.alert_id,
      types: unknown_types.join(","),
    });
  }
  const received_at = ctx.now().toISOString();
  const stored = await withDeadline(
    () => storeAlert(ctx.db, { alert, payload: text, payload_sha256: sha, received_at }),
    ctx.deadline_ms,
  );
  if (!stored.same_body) {
    // The first version stays; this one is kept aside, and the sender is done with it.
    await reject(ctx, {
      id: sha,
      reason: "alert_id_conflict",
      detail: { message: "a different body is already stored under this alert_id" },
      body: text,
      alert_id: alert.alert_id,
      size,
    });
  }
  if (stored.needs_enqueue) {
    const sending = bufferEnqueue(alert.alert_id, (alert_ids) => enqueue(ctx, alert_ids));
    if (sending) ctx.waitUntil(sending);
  }
  if (stored.inserted) return { outcome: "stored", alert_id: alert.alert_id, duplicate: false };
  return { outcome: stored.same_body ? "duplicate" : "conflict", alert_id: alert.alert_id, duplicate: true };
}

/** Quarantines a body that never reached validation (wrong media type, too large). */
export async function rejectUnread(
  ctx: IngestContext,
  reason: Extract<RejectReason, "unsupported_media_type" | "payload_too_large">,
  body: ArrayBuffer | null,
  detail: Record<string, unknown>,
  size: number,
): Promise<void> {
  const id = body ? await sha256Hex(body) : await sha256Hex(`${reason}:${size}`);
  const kept = body ? (decodeUtf8(body) ?? body) : null;
  await reject(ctx, { id, reason, detail, body: kept, alert_id: null, size });
}

async function reject(ctx: IngestContext, r: Omit<Rejection, "seen_at">): Promise<void> {
  if (ctx.quarantine === false) return;
  await withDeadline(() => quarantine(ctx.db, { ...r, seen_at: ctx.now().toISOString() }), ctx.deadline_ms);
  log("warn", "payload.quarantined", {
    request_id: ctx.request_id,
    alert_id: r.alert_id,
    reason: r.reason,
    size: r.size,
  });
}

/**
 * Sends alerts to the Queue after the reply, batched with those of requests that
 * arrived alongside, then takes them out of the outbox in one statement, so that the
 * sweep never resends what a lagging Queue already has. A failed send leaves them in
 * the outbox for the sweep; a failed mark leaves it to the consumer, which marks too.
 */
async function enqueue(ctx: IngestContext, alert_ids: string[]): Promise<void> {
  const fields = { request_id: ctx.request_id, alert_id: alert_ids.length === 1 ? alert_ids[0] : undefined, alerts: alert_ids.join(",") };
  try {
    await sendAlerts(ctx.queue, alert_ids);
  } catch (error) {
    log("error", "enqueue.failed", { ...fields, error: errorMessage(error) });
    return;
  }
  try {
    await markEnqueued(ctx.db, alert_ids, ctx.now().toISOString());
  } catch (error) {
    log("warn", "enqueue.mark_failed", { ...fields, error: errorMessage(error) });
  }
}

function parseJson(text: string): { ok: true; value: unknown } | { ok: false; message: string } {
  try {
    return { ok: true, value: JSON.parse(text) };
  } catch (error) {
    return { ok: false, message: errorMessage(error) };
  }
}

function decodeUtf8(bytes: ArrayBuffer): string | null {
  try {
    return utf8.decode(bytes);
  } catch {
    return null;
  }
}

function readableAlertId(json: unknown): string | null {
  if (typeof json !== "object" || json === null || !("alert_id" in json)) return null;
  const id = (json as { alert_id: unknown }).alert_id;
  return typeof id === "string" && id.length > 0 && id.length <= 1024 ? id : null;
}
