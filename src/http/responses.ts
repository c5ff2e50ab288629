/** The JSON error bodies of the contract: a fixed `error` string and a human sentence. */
import type { Context } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import type { ErrorCode } from "../alert";

const MESSAGES: Record<ErrorCode, string> = {
  unauthorized: "The token in the URL is wrong or missing.",
  not_configured: "WEBHOOK_SECRET is not set on this Worker; it refuses every webhook until it is.",
  unsupported_media_type: "The body must be sent as application/json.",
  payload_too_large: "The body is larger than MAX_BODY_BYTES.",
  invalid_json: "The body is not valid JSON.",
  invalid_payload: "The JSON does not match the 1Flow webhook payload.",
  storage_unavailable: "Storage did not answer in time and the Queue did not take the body either; retry later.",
  method_not_allowed: "This path does not accept that method.",
  not_found: "Nothing here.",
  internal_error: "Something went wrong on our side.",
  bad_destinations: "DESTINATIONS is malformed; the Worker's logs say where (event fanout.bad_destinations).",
  bad_config: "A variable is set to a value the Worker refuses; `problems` and the logs (event config.bad) say which.",
  invalid_request: "The request does not match what this endpoint takes.",
  queue_unavailable: "The Queue did not accept the message; retry later.",
  managed_by_config: "This destination is set in DESTINATIONS: change it there, or give the API's one another name.",
  alert_id_conflict: "A different body is already stored under this alert_id.",
  archived: "Retention removed this response from D1; the archive part `key` in R2 holds it.",
  no_answer: "Nothing answered the test send: `detail` says why (no such host, refused, timed out).",
  backfill_running: "A backfill of this destination is running: wait for it, or DELETE it first.",
};

/** What a 401 from /api says, by what was wrong with the credential (the webhook's says the URL's token). */
export const UNAUTHORIZED_API = {
  missing: "This route needs an `Authorization: Bearer <ADMIN_TOKEN>` header, and none was sent.",
  malformed: "The Authorization header is not `Bearer <ADMIN_TOKEN>`.",
  wrong: "The bearer token in the Authorization header is not this Worker's ADMIN_TOKEN.",
} as const;

/** Seconds a sender is asked to wait after a 503 storage_unavailable. */
export const RETRY_AFTER_IN_SECONDS = 30;

export function errorResponse(
  c: Context,
  status: ContentfulStatusCode,
  error: ErrorCode,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Response {
  return c.json({ ok: false, error, message: MESSAGES[error], ...extra }, status, headers);
}
