/**
 * The admin API under `/api`, behind bearer `ADMIN_TOKEN`: replaying deliveries.
 * Unset token: every `/api` route answers 404, as if it did not exist.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import * as v from "valibot";
import { destinationsOf } from "../fanout/configured";
import { cancelDeliveries, destinationsReport, type ReplayDeps, replayAlert, replayDeliveries, resumeDestination } from "../operations";
import { readerOf } from "./reader";
import type { AppEnv } from "./app-env";
import { tokenMatches } from "./auth";
import { readJson } from "./input";
import { errorResponse } from "./responses";

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

export const cancelSchema = v.strictObject({
  destination: v.pipe(v.string(), v.minLength(1, "must name a destination")),
});

const FAILURES = {
  not_found: (c: Context<AppEnv>) => errorResponse(c, 404, "not_found"),
  queue_unavailable: (c: Context<AppEnv>) => errorResponse(c, 503, "queue_unavailable"),
  unknown_destination: (c: Context<AppEnv>) =>
    errorResponse(c, 400, "invalid_request", { issues: [{ path: "destination", message: "no destination of that name is configured" }] }),
};

/** What the replay operations need of a request: the bindings, and the destinations in force. */
export async function replayDeps(c: Context<AppEnv>): Promise<ReplayDeps> {
  return {
    db: c.env.DB,
    queue: c.env.ALERTS_QUEUE,
    destinations: (await destinationsOf(c.env)).config,
    now: () => new Date(),
    request_id: c.get("requestId"),
  };
}

api.post("/api/alerts/:alert_id/replay", async (c) => {
  const input = await readJson(c, alertReplaySchema, { optional: true });
  if (!input.ok) return input.response;
  const alert_id = c.req.param("alert_id");
  const result = await replayAlert(await replayDeps(c), { alert_id, ...input.value });
  if (!result.ok) return FAILURES[result.error](c);
  return c.json({ ok: true, alert_id, deliveries: result.destinations.length, destinations: result.destinations, enqueued: 1 });
});

api.post("/api/replay", async (c) => {
  const input = await readJson(c, bulkReplaySchema, { optional: false });
  if (!input.ok) return input.response;
  const result = await replayDeliveries(await replayDeps(c), input.value);
  if (!result.ok) return FAILURES[result.error](c);
  return c.json(result);
});

api.get("/api/destinations", async (c) =>
  c.json({ ok: true, destinations: await destinationsReport(readerOf(c.env), (await destinationsOf(c.env)).config, new Date()) }),
);

api.post("/api/destinations/:name/resume", async (c) => {
  const result = await resumeDestination(await replayDeps(c), c.req.param("name"));
  if (!result.ok) return FAILURES[result.error](c);
  return c.json(result);
});

/** Cancels one destination's pending deliveries (a removed one's too); `more` while some are left. */
api.post("/api/deliveries/cancel", async (c) => {
  const input = await readJson(c, cancelSchema, { optional: false });
  if (!input.ok) return input.response;
  return c.json(await cancelDeliveries(await replayDeps(c), { destination: input.value.destination }));
});
