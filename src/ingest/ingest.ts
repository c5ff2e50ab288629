/**
 * The ingest flow: validate -> store -> enqueue. The webhook, the quarantine's
 * reprocessing and the spool's consumer all call it; nothing it is given is dropped
 * without a row (or a Queue message) that says so.
 */
import type { QueueMessage, RejectReason, SpoolMessage } from "../alert";
import { sha256Hex } from "../hash";
import { errorMessage, log } from "../log";
import { sendAlerts } from "../queue";
import { spoolMessage } from "../spool";
import { answersJson, countSpooled, markEnqueued, storeAlert } from "../store/alerts";
import { isConstraintError, isTooBigError, StorageUnavailableError, withDeadline } from "../store/d1";
import { quarantine, type Rejection } from "../store/rejected";
import { bufferEnqueue, type EnqueueBuffer } from "./enqueue-buffer";
import { jsonDepthExceeds, type PayloadIssue, parsePayload } from "./payload";

/** JSON nested deeper than this is refused (422): no retry could make it acceptable. */
export const MAX_JSON_DEPTH = 32;
/** D1 refuses a row over 2,000,000 bytes; an alert whose row would pass this is refused (422) instead. */
export const MAX_ROW_BYTES = 1_900_000;
/** Issues of a refused body kept in the quarantine and given in the 422, at most (`issues_total` counts them all). */
export const MAX_ISSUES_KEPT = 50;
/** Time the spool's Queue send may take before the request gives up with a 503. */
export const SPOOL_SEND_TIMEOUT_IN_MS = 2_000;

export interface IngestContext {
  db: D1Database;
  queue: Queue<QueueMessage>;
  /** Runs work after the reply (the Worker's `ctx.waitUntil`). */
  waitUntil: (promise: Promise<unknown>) => void;
  now: () => Date;
  /** When D1 work on this request must be done (epoch ms): one deadline for the whole request. */
  deadline_at: number;
  request_id: string;
  /** False when reprocessing a body from the quarantine: a refusal leaves it where it is. */
  quarantine?: boolean;
  /** True on the request path: a valid alert D1 cannot take goes to the Queue instead (the spool). */
  spool?: boolean;
  /** The time the body first arrived, when it comes from the spool. */
  received_at?: string;
  /** False when the caller fans the alert out itself (the spool's consumer): no Queue message. */
  enqueue?: boolean;
  /** The isolate's enqueue buffer (module state by default; the simulation gives each isolate its own). */
  enqueue_buffer?: EnqueueBuffer;
}

export type IngestOutcome =
  | { outcome: "stored"; alert_id: string; duplicate: false }
  | { outcome: "duplicate"; alert_id: string; duplicate: true }
  | { outcome: "conflict"; alert_id: string; duplicate: true }
  | { outcome: "erased"; alert_id: string; duplicate: true }
  | { outcome: "spooled"; alert_id: string }
  | { outcome: "invalid_json"; alert_id: null }
  | { outcome: "invalid_payload"; alert_id: string | null; issues: PayloadIssue[]; issues_total: number };

const utf8 = new TextDecoder("utf-8", { fatal: true, ignoreBOM: false });

export { sha256Hex };

/** Milliseconds left before the request's deadline. */
function remaining(ctx: IngestContext): number {
  return Math.max(0, ctx.deadline_at - Date.now());
}

/**
 * Validates one body, stores it in D1 exactly once (or quarantines it), and enqueues it
 * after the reply. When D1 fails for a valid alert on the request path, the body goes to
 * the Queue (the spool) instead. Throws `StorageUnavailableError` when neither takes it.
 */
export async function ingest(body: ArrayBuffer, ctx: IngestContext): Promise<IngestOutcome> {
  const sha = await sha256Hex(body);
  const size = body.byteLength;
  const text = decodeUtf8(body);
  const json = text === null ? { ok: false as const, message: "body is not UTF-8" } : parseJson(text);
  if (text === null || !json.ok) {
    const detail = { message: json.ok ? "" : json.message };
    // Not JSON, but it may still name its user: an erased user's broken body is not kept either.
    await reject(ctx, { id: sha, reason: "invalid_json", detail, body: text ?? body, alert_id: null, size, ...(await ownerInText(text)) });
    return { outcome: "invalid_json", alert_id: null };
  }

  const refuse = async (all: PayloadIssue[]): Promise<IngestOutcome> => {
    const alert_id = readableAlertId(json.value);
    // The first issues and a count: a body of 20,000 bad screens must not make a 2 MB row that D1 refuses.
    const issues = all.slice(0, MAX_ISSUES_KEPT);
    const owner = await readableOwner(json.value);
    await reject(ctx, { id: sha, reason: "invalid_payload", detail: { issues, issues_total: all.length }, body: text, alert_id, size, ...owner });
    return { outcome: "invalid_payload", alert_id, issues, issues_total: all.length };
  };
  if (jsonDepthExceeds(text, MAX_JSON_DEPTH)) return refuse([{ path: "", message: `JSON nested deeper than ${MAX_JSON_DEPTH} levels` }]);
  const parsed = parsePayload(json.value);
  if (!parsed.ok) return refuse(parsed.issues);

  const { alert, unknown_types } = parsed;
  if (unknown_types.length > 0) {
    log("warn", "payload.unknown_screen_type", { request_id: ctx.request_id, alert_id: alert.alert_id, types: unknown_types.join(",") });
  }
  const stored_at = ctx.now().toISOString();
  const received_at = ctx.received_at ?? stored_at;
  const user_sha256 = alert.user_system_id === null ? null : await sha256Hex(alert.user_system_id);
  const row = { alert, answers_json: answersJson(alert), payload: text, payload_sha256: sha, received_at, stored_at, user_sha256 };
  const tooBig = [{ path: "", message: `too large to store in one D1 row (${MAX_ROW_BYTES} bytes)` }];
  if (rowBytes(row) > MAX_ROW_BYTES) return refuse(tooBig);

  let stored: Awaited<ReturnType<typeof storeAlert>>;
  try {
    stored = await withDeadline(() => storeAlert(ctx.db, row), remaining(ctx));
  } catch (error) {
    if (isTooBigError(error)) return refuse(tooBig);
    if (!ctx.spool || isConstraintError(error)) throw error;
    await spool(ctx, () => spoolMessage(text, { received_at, sha256: sha }), alert.alert_id, error);
    return { outcome: "spooled", alert_id: alert.alert_id };
  }
  if (stored.erased) {
    log("info", "ingest.erased", { request_id: ctx.request_id, alert_id: alert.alert_id });
    return { outcome: "erased", alert_id: alert.alert_id, duplicate: true };
  }
  if (!stored.same_body) {
    // The first version stays; this one is kept aside, and the sender is done with it.
    await reject(ctx, {
      id: sha,
      reason: "alert_id_conflict",
      detail: { message: "a different body is already stored under this alert_id" },
      body: text,
      alert_id: alert.alert_id,
      size,
      // This body's own user, which may not be the stored one's.
      user_sha256,
      submitted_at: alert.submitted_at,
    });
  }
  if (stored.needs_enqueue && ctx.enqueue !== false) {
    const sending = bufferEnqueue(alert.alert_id, (alert_ids) => enqueue(ctx, alert_ids), undefined, ctx.enqueue_buffer);
    if (sending) ctx.waitUntil(sending);
  }
  if (stored.inserted && ctx.received_at !== undefined) {
    // From the spool: counted for the dashboard; a failure here only leaves the count short.
    await countSpooled(ctx.db, received_at).catch((error: unknown) => log("warn", "spool.count_failed", { error: errorMessage(error) }));
  }
  if (stored.inserted) return { outcome: "stored", alert_id: alert.alert_id, duplicate: false };
  if (stored.same_body) return { outcome: "duplicate", alert_id: alert.alert_id, duplicate: true };
  return { outcome: "conflict", alert_id: alert.alert_id, duplicate: true };
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
  // A JSON body sent with the wrong media type still names its user.
  const json = typeof kept === "string" ? parseJson(kept) : null;
  const owner = json?.ok ? await readableOwner(json.value) : await ownerInText(kept);
  await reject(ctx, { id, reason, detail, body: kept, alert_id: null, size, ...owner });
}

async function reject(ctx: IngestContext, r: Omit<Rejection, "seen_at">): Promise<void> {
  if (ctx.quarantine === false) return;
  const kept = await withDeadline(() => quarantine(ctx.db, { ...r, seen_at: ctx.now().toISOString() }), remaining(ctx));
  if (!kept) {
    // Its user was erased on request: the answer stays the same, and nothing of it is kept.
    log("info", "payload.erased_user", { request_id: ctx.request_id, reason: r.reason, size: r.size });
    return;
  }
  log("warn", "payload.quarantined", { request_id: ctx.request_id, alert_id: r.alert_id, reason: r.reason, size: r.size });
}

const NO_USER = { user_sha256: null, submitted_at: null } as const;

/** `"user_system_id": "<id>"` in a body's text, as JSON writes it. */
const USER_IN_TEXT = /"user_system_id"\s*:\s*"((?:[^"\\]|\\.)*)"/;

/**
 * The user a body that does not parse names in its text (the first `"user_system_id": "…"`),
 * as the tombstones know it; its time unknown, so that any tombstone of that user refuses it.
 */
async function ownerInText(text: string | ArrayBuffer | null): Promise<{ user_sha256: string | null; submitted_at: string | null }> {
  if (typeof text !== "string") return NO_USER;
  const match = USER_IN_TEXT.exec(text)?.[1];
  if (match === undefined) return NO_USER;
  let id: unknown;
  try {
    id = JSON.parse(`"${match}"`);
  } catch {
    return NO_USER;
  }
  return typeof id === "string" ? { user_sha256: await sha256Hex(id), submitted_at: null } : NO_USER;
}

/**
 * The user a body names (`user.user_system_id`, when a string) as its SHA-256, and when it says
 * it was submitted (`timestamp`, when it reads as a time): what the quarantine checks against
 * the user tombstones, even for a body that fails the schema.
 */
async function readableOwner(json: unknown): Promise<{ user_sha256: string | null; submitted_at: string | null }> {
  if (typeof json !== "object" || json === null) return NO_USER;
  const { user, timestamp } = json as { user?: unknown; timestamp?: unknown };
  const id = typeof user === "object" && user !== null ? (user as { user_system_id?: unknown }).user_system_id : undefined;
  if (typeof id !== "string") return NO_USER;
  const at = typeof timestamp === "string" ? Date.parse(timestamp) : Number.NaN;
  return { user_sha256: await sha256Hex(id), submitted_at: Number.isNaN(at) ? null : new Date(at).toISOString() };
}

/**
 * D1 could not take a valid alert: the body goes to the Queue as it came, and the
 * consumer stores it once D1 answers. When the Queue refuses too, the request fails
 * with the D1 error and the sender retries.
 */
async function spool(ctx: IngestContext, build: () => Promise<SpoolMessage>, alert_id: string, cause: unknown): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`the Queue did not accept within ${SPOOL_SEND_TIMEOUT_IN_MS} ms`)), SPOOL_SEND_TIMEOUT_IN_MS);
  });
  try {
    // A body too large for a message even gzipped fails here: 503, and 1Flow retries it.
    await Promise.race([build().then((message) => ctx.queue.send(message, { contentType: "json" })), timeout]);
  } catch (error) {
    log("error", "ingest.spool_failed", { request_id: ctx.request_id, alert_id, error: errorMessage(error) });
    throw cause instanceof StorageUnavailableError ? cause : new StorageUnavailableError("D1 failed", cause);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
  log("warn", "ingest.spooled", { request_id: ctx.request_id, alert_id, error: errorMessage(cause) });
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

/** About how many bytes the alert's row takes in D1 (its text columns, as UTF-8). */
function rowBytes(row: Parameters<typeof storeAlert>[1]): number {
  const { alert } = row;
  const texts = [row.payload, row.answers_json, alert.user_parameters, alert.trigger_event_parameters];
  let bytes = 512 + alert.alert_id.length + alert.alert_name.length + alert.survey_id.length;
  for (const t of texts) if (t !== null) bytes += t.length * 3 > MAX_ROW_BYTES ? new TextEncoder().encode(t).byteLength : t.length;
  return bytes;
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
