/**
 * The admin API under `/api`, behind bearer `ADMIN_TOKEN`: replaying deliveries.
 * Unset token: every `/api` route answers 404, as if it did not exist.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import * as v from "valibot";
import type { AlertMessage } from "../alert";
import { destinationsFrom } from "../fanout/destinations";
import { errorMessage, log } from "../log";
import { sendAlerts } from "../queue";
import { alertExists } from "../store/alerts";
import { resetAlertDeliveries, resetDeliveries } from "../store/deliveries";
import type { AppEnv } from "./app-env";
import { tokenMatches } from "./auth";
import { readJson } from "./input";
import { errorResponse } from "./responses";

/** Deliveries one bulk replay resets at most; call again while `more` is true. */
export const REPLAY_LIMIT = 1_000;

export const api = new Hono<AppEnv>({ strict: false });

/** Bearer ADMIN_TOKEN for every `/api` route; app.ts puts it in front of them all. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async function requireAdmin(c, next) {
  const admin = c.env.ADMIN_TOKEN;
  if (!admin) return errorResponse(c, 404, "not_found");
  const unauthorized = (c: Context<AppEnv>) => errorResponse(c, 401, "unauthorized");
  return bearerAuth<AppEnv>({
    verifyToken: (token) => tokenMatches(token, [admin]),
    noAuthenticationHeader: { message: unauthorized },
    invalidAuthenticationHeader: { message: unauthorized },
    invalidToken: { message: unauthorized },
  })(c, next);
};

const isoTime = v.pipe(v.string(), v.isoTimestamp("must be an ISO 8601 timestamp with a time zone"));

export const alertReplaySchema = v.strictObject({
  destination: v.optional(v.string()),
  force: v.optional(v.boolean(), false),
});

export const bulkReplaySchema = v.strictObject({
  status: v.picklist(["dead", "failed"], 'must be "dead" or "failed"'),
  destination: v.optional(v.string()),
  since: v.optional(isoTime),
  until: v.optional(isoTime),
});

api.post("/api/alerts/:alert_id/replay", async (c) => {
  const input = await readJson(c, alertReplaySchema, { optional: true });
  if (!input.ok) return input.response;
  const { destination, force } = input.value;
  if (destination !== undefined && !isConfigured(c, destination)) return unknownDestination(c);
  const alert_id = c.req.param("alert_id");
  if (!(await alertExists(c.env.DB, alert_id))) return errorResponse(c, 404, "not_found");

  const reset = await resetAlertDeliveries(c.env.DB, { alert_id, destination: destination ?? null, force, at: now() });
  const sent = await enqueue(c.env.ALERTS_QUEUE, [alert_id]);
  log("info", "replay.alert", { request_id: c.get("requestId"), alert_id, deliveries: reset.length, force });
  if (!sent) return errorResponse(c, 503, "queue_unavailable");
  return c.json({ ok: true, alert_id, deliveries: reset.length, destinations: reset, enqueued: 1 });
});

api.post("/api/replay", async (c) => {
  const input = await readJson(c, bulkReplaySchema, { optional: false });
  if (!input.ok) return input.response;
  const { status, destination, since, until } = input.value;
  if (destination !== undefined && !isConfigured(c, destination)) return unknownDestination(c);

  const reset = await resetDeliveries(c.env.DB, {
    status,
    destination: destination ?? null,
    since: since ? new Date(since).toISOString() : null,
    until: until ? new Date(until).toISOString() : null,
    limit: REPLAY_LIMIT,
    at: now(),
  });
  const alert_ids = [...new Set(reset.map((k) => k.alert_id))];
  const sent = await enqueue(c.env.ALERTS_QUEUE, alert_ids);
  log("info", "replay.bulk", { request_id: c.get("requestId"), status, deliveries: reset.length, alerts: alert_ids.length });
  if (!sent) return errorResponse(c, 503, "queue_unavailable");
  return c.json({ ok: true, deliveries: reset.length, alerts: alert_ids.length, more: reset.length === REPLAY_LIMIT });
});

function now(): string {
  return new Date().toISOString();
}

function isConfigured(c: Context<AppEnv>, name: string): boolean {
  const config = destinationsFrom(c.env.DESTINATIONS);
  return config.ok && config.destinations.some((d) => d.name === name);
}

function unknownDestination(c: Context<AppEnv>): Response {
  return errorResponse(c, 400, "invalid_request", {
    issues: [{ path: "destination", message: "no destination of that name is configured" }],
  });
}

/** Sends replayed alerts to the Queue; pending deliveries left by a failure are swept later. */
async function enqueue(queue: Queue<AlertMessage>, alert_ids: string[]): Promise<boolean> {
  try {
    await sendAlerts(queue, alert_ids);
    return true;
  } catch (error) {
    log("error", "replay.enqueue_failed", { error: errorMessage(error), alerts: alert_ids.length });
    return false;
  }
}
