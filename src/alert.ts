/** The normalised alert that every layer shares: what `alerts` and `answers` hold. */

/** One screen of the survey, as stored in `answers`. */
export interface Answer {
  /** 0-based index in `survey_info.screens`. */
  position: number;
  title: string | null;
  type: string;
  /** The answer as text: arrays joined with ", ", NULL when absent. */
  answer: string | null;
  /** The numeric score of nps and rating screens, when in range. */
  value: number | null;
}

/** One 1Flow alert (one survey response), as stored in `alerts`. */
export interface Alert {
  alert_id: string;
  alert_name: string;
  project_name: string | null;
  survey_id: string;
  survey_name: string | null;
  platform: string | null;
  user_system_id: string | null;
  /** JSON text. */
  user_parameters: string | null;
  trigger_event_name: string | null;
  /** JSON text. */
  trigger_event_parameters: string | null;
  /** UTC ISO 8601. */
  submitted_at: string;
  answers: Answer[];
}

/** The message on `oneflow-alerts`: the consumer reads the rest from D1. */
export interface AlertMessage {
  v: 1;
  alert_id: string;
  /**
   * Deliveries already made that the ledger could not record (the consumer's record batch
   * failed after its requests): the Queue carries them until D1 takes them, so that they are
   * recorded, never sent again.
   */
  sent?: SentOutcome[];
  /** Tries of the messages this one replaced (each carry starts a new message): its backoff goes on from there. */
  tries?: number;
  /**
   * The claim end its predecessor set and could not end (its D1 batches failed): this message
   * takes that claim over while it still holds, ahead of every other message for the alert.
   */
  claim?: string;
  /**
   * Only these destinations (a backfill's message): the others are neither evaluated nor
   * touched for this alert. Absent: every destination.
   */
  only?: string[];
}

/** A backfill's next page of responses to read (see src/backfill.ts). */
export interface BackfillMessage {
  v: 1;
  kind: "backfill";
  backfill: number;
}

/** A delivery that a destination acknowledged before its ledger row could be written. */
export interface SentOutcome {
  destination: string;
  /** The destination's HTTP status. */
  status: number | null;
  at: string;
}

function isSentOutcome(value: unknown): value is SentOutcome {
  if (typeof value !== "object" || value === null) return false;
  const { destination, status, at } = value as Record<string, unknown>;
  return typeof destination === "string" && (status === null || typeof status === "number") && typeof at === "string";
}

/** A body D1 could not take on the request path, kept on the Queue until the consumer stores it (the spool). */
export interface SpoolMessage {
  v: 1;
  kind: "spool";
  /** The body exactly as received; absent when `body_gzip` carries it (see src/spool.ts). */
  body?: string;
  /** The body gzipped, base64: when as text it would not fit in a Queue message. */
  body_gzip?: string;
  received_at: string;
  /** SHA-256 hex of the body. */
  sha256: string;
}

/** What travels on `oneflow-alerts` (and, after its retries, on the dead-letter queue). */
export type QueueMessage = AlertMessage | SpoolMessage | BackfillMessage;

/** The error strings of the HTTP contract, fixed for clients and quarantine. */
export type ErrorCode =
  | "unauthorized"
  | "not_configured"
  | "unsupported_media_type"
  | "payload_too_large"
  | "invalid_json"
  | "invalid_payload"
  | "storage_unavailable"
  | "method_not_allowed"
  | "not_found"
  | "internal_error"
  | "bad_destinations"
  | "bad_config"
  | "invalid_request"
  | "queue_unavailable"
  | "managed_by_config"
  | "alert_id_conflict"
  | "archived"
  | "no_answer"
  | "backfill_running";

/** Why a body sits in `rejected_payloads`. */
export type RejectReason =
  | "unsupported_media_type"
  | "payload_too_large"
  | "invalid_json"
  | "invalid_payload"
  | "alert_id_conflict";

/** Whether a Queue message body is an `AlertMessage` this version understands. */
export function isAlertMessage(body: unknown): body is AlertMessage {
  if (typeof body !== "object" || body === null) return false;
  const { v, alert_id, kind, sent, tries, claim, only } = body as Record<string, unknown>;
  const outcomes = sent === undefined || (Array.isArray(sent) && sent.every(isSentOutcome));
  const counted = tries === undefined || (typeof tries === "number" && Number.isInteger(tries) && tries >= 0);
  const inherited = claim === undefined || typeof claim === "string";
  const restricted = only === undefined || (Array.isArray(only) && only.every((d) => typeof d === "string"));
  return v === 1 && kind === undefined && typeof alert_id === "string" && alert_id.length > 0 && outcomes && counted && inherited && restricted;
}

/** Whether a Queue message body is a `BackfillMessage` this version understands. */
export function isBackfillMessage(body: unknown): body is BackfillMessage {
  if (typeof body !== "object" || body === null) return false;
  const { v, kind, backfill } = body as Record<string, unknown>;
  return v === 1 && kind === "backfill" && typeof backfill === "number" && Number.isInteger(backfill);
}

/** Whether a Queue message body is a `SpoolMessage` this version understands. */
export function isSpoolMessage(body: unknown): body is SpoolMessage {
  if (typeof body !== "object" || body === null) return false;
  const { v, kind, body: text, body_gzip, received_at, sha256 } = body as Record<string, unknown>;
  const carried = typeof text === "string" || (text === undefined && typeof body_gzip === "string");
  return v === 1 && kind === "spool" && carried && typeof received_at === "string" && typeof sha256 === "string";
}

export type NpsCategory = "promoter" | "passive" | "detractor";

/** Promoters score 9-10, passives 7-8, detractors 0-6. */
export function npsCategory(score: number): NpsCategory {
  if (score >= 9) return "promoter";
  if (score >= 7) return "passive";
  return "detractor";
}

/** NPS answers with a score in these answers, by category: what the survey rollups add up. */
export function npsCounts(answers: readonly Answer[]): { responses: number; promoters: number; passives: number; detractors: number } {
  const counts = { responses: 0, promoters: 0, passives: 0, detractors: 0 };
  for (const a of answers) {
    if (a.type !== "nps" || a.value === null) continue;
    counts.responses += 1;
    counts[`${npsCategory(a.value)}s`] += 1;
  }
  return counts;
}
