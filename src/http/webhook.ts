/** `POST /webhooks/1flow/:token`: authenticate, limit, and hand the body to ingest. */
import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { MAX_BODY_BYTES_LIMIT } from "../config";
import { type IngestContext, ingest, rejectUnread } from "../ingest/ingest";
import { storageDeadlineMs } from "../store/d1";
import type { AppEnv } from "./app-env";
import { tokenMatches } from "./auth";
import { errorResponse } from "./responses";

export const DEFAULT_MAX_BODY_BYTES = 65_536;

export const webhook = new Hono<AppEnv>({ strict: false });

/** Fails closed without a secret; otherwise the path token must match one. */
const authenticate: MiddlewareHandler<AppEnv> = async function authenticate(c, next) {
  const { WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS } = c.env;
  if (!WEBHOOK_SECRET) {
    c.set("outcome", "not_configured");
    return errorResponse(c, 503, "not_configured");
  }
  const token = c.req.param("token") ?? "";
  if (!(await tokenMatches(token, [WEBHOOK_SECRET, WEBHOOK_SECRET_PREVIOUS]))) {
    c.set("outcome", "unauthorized");
    return errorResponse(c, 401, "unauthorized");
  }
  await next();
};

/** Hono's bodyLimit, with the limit from MAX_BODY_BYTES and the refusal quarantined. */
const limitBody: MiddlewareHandler<AppEnv> = async function limitBody(c, next) {
  const maxSize = maxBodyBytes(c.env.MAX_BODY_BYTES);
  const limit = bodyLimit({
    maxSize,
    onError: async (c) => {
      const declared = Number(c.req.header("content-length"));
      const size = Number.isFinite(declared) && declared > maxSize ? declared : maxSize + 1;
      await rejectUnread(ingestContext(c), "payload_too_large", null, { limit: maxSize, size }, size);
      c.set("outcome", "payload_too_large");
      return errorResponse(c, 413, "payload_too_large");
    },
  });
  return limit(c, next);
};

webhook.post("/webhooks/1flow/:token?", authenticate, limitBody, async (c) => {
  const ctx = ingestContext(c);
  const body = await c.req.arrayBuffer();
  if (!isJsonMediaType(c.req.header("content-type"))) {
    const detail = { content_type: c.req.header("content-type") ?? null };
    await rejectUnread(ctx, "unsupported_media_type", body, detail, body.byteLength);
    c.set("outcome", "unsupported_media_type");
    return errorResponse(c, 415, "unsupported_media_type");
  }

  const result = await ingest(body, ctx);
  c.set("outcome", result.outcome);
  c.set("alert_id", result.alert_id ?? undefined);
  switch (result.outcome) {
    case "invalid_json":
      return errorResponse(c, 400, "invalid_json");
    case "invalid_payload":
      return errorResponse(c, 422, "invalid_payload", { issues: result.issues, issues_total: result.issues_total });
    case "spooled":
      return c.json({ ok: true, alert_id: result.alert_id, spooled: true });
    default:
      return c.json({ ok: true, alert_id: result.alert_id, duplicate: result.duplicate });
  }
});

/** What the ingest routine needs of a request: bindings, clock, deadline, request id. */
export function ingestContext(c: Parameters<MiddlewareHandler<AppEnv>>[0]): IngestContext {
  return {
    db: c.env.DB,
    queue: c.env.ALERTS_QUEUE,
    waitUntil: (promise) => c.executionCtx.waitUntil(promise),
    now: () => new Date(),
    deadline_at: Date.now() + storageDeadlineMs(c.env.STORAGE_DEADLINE_MS),
    request_id: c.get("requestId"),
    spool: true,
  };
}

/** `application/json`, with or without parameters, or any `+json` type. */
export function isJsonMediaType(header: string | undefined): boolean {
  const type = header?.split(";")[0]?.trim().toLowerCase() ?? "";
  return type === "application/json" || (type.startsWith("application/") && type.endsWith("+json"));
}

/** MAX_BODY_BYTES, or the default when unset or refused (not a positive integer, or over 1 MiB: see config.ts). */
export function maxBodyBytes(raw: string | undefined): number {
  const parsed = Number(raw);
  return Number.isInteger(parsed) && parsed > 0 && parsed <= MAX_BODY_BYTES_LIMIT ? parsed : DEFAULT_MAX_BODY_BYTES;
}
