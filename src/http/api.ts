/**
 * The admin API under `/api`, behind bearer `ADMIN_TOKEN`: replaying deliveries.
 * Unset token: every `/api` route answers 404, as if it did not exist.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { bearerAuth } from "hono/bearer-auth";
import * as v from "valibot";
import { destinationsOf } from "../fanout/configured";
import { entrySchema } from "../fanout/destinations";
import { deliveryTimeoutMs } from "../fanout/deliver";
import {
  destinationView,
  type ManageDeps,
  patchSchema,
  type ManageFailure,
  patchDestinationEntry,
  previewDelivery,
  putDestinationEntry,
  removeDestination,
  testDelivery,
} from "../manage-destinations";
import { secretKeys } from "../secrets";
import { cancelDeliveries, destinationsReport, type ReplayDeps, replayAlert, replayDeliveries, resumeDestination } from "../operations";
import { readerOf } from "./reader";
import { backfillView, beginBackfill, endBackfill } from "../backfill";
import { latestBackfill } from "../store/backfills";
import type { AppEnv } from "./app-env";
import { documented } from "./openapi";
import { tokenMatches } from "./auth";
import { readJson } from "./input";
import { errorResponse, UNAUTHORIZED_API } from "./responses";

export const api = new Hono<AppEnv>({ strict: false });

/** Bearer ADMIN_TOKEN for every `/api` route; app.ts puts it in front of them all. */
export const requireAdmin: MiddlewareHandler<AppEnv> = async function requireAdmin(c, next) {
  const admin = c.env.ADMIN_TOKEN;
  if (!admin) return errorResponse(c, 404, "not_found");
  // The error string is the contract's; the sentence says which part of the credential was wrong.
  const unauthorized = (why: keyof typeof UNAUTHORIZED_API) => (c: Context<AppEnv>) => errorResponse(c, 401, "unauthorized", { message: UNAUTHORIZED_API[why] });
  return bearerAuth<AppEnv>({
    verifyToken: (token) => tokenMatches(token, [admin]),
    noAuthenticationHeader: { message: unauthorized("missing") },
    invalidAuthenticationHeader: { message: unauthorized("malformed") },
    invalidToken: { message: unauthorized("wrong") },
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

api.post("/api/alerts/:alert_id/replay", documented({ summary: "Reset an alert's failed and dead deliveries (or delivered ones, with force) and enqueue it", body: alertReplaySchema, body_optional: true }), async (c) => {
  const input = await readJson(c, alertReplaySchema, { optional: true });
  if (!input.ok) return input.response;
  const alert_id = c.req.param("alert_id");
  const result = await replayAlert(await replayDeps(c), { alert_id, ...input.value });
  if (!result.ok) return FAILURES[result.error](c);
  return c.json({ ok: true, alert_id, deliveries: result.destinations.length, destinations: result.destinations, enqueued: 1 });
});

api.post("/api/replay", documented({ summary: "Reset failed or dead deliveries matching a filter and enqueue them", body: bulkReplaySchema }), async (c) => {
  const input = await readJson(c, bulkReplaySchema, { optional: false });
  if (!input.ok) return input.response;
  const result = await replayDeliveries(await replayDeps(c), input.value);
  if (!result.ok) return FAILURES[result.error](c);
  return c.json(result);
});

/** Every destination with its configuration (secrets and header values masked) and its health. */
api.get("/api/destinations", documented({ summary: "Every destination with its configuration (secrets and header values masked) and health: breaker state, last error, pending, delivered and failed over 24 h" }), async (c) => {
  const { config } = await destinationsOf(c.env);
  const health = await destinationsReport(readerOf(c.env), config, new Date());
  const destinations = config.ok ? config.destinations.map((d, i) => ({ ...destinationView(d), ...health[i] })) : [];
  return c.json({ ok: true, destinations, ...(config.ok ? {} : { error: "bad_destinations", message: config.error }) });
});

/** What the management operations need of a request (the dashboard's pages use it too). */
export async function manageDeps(c: Context<AppEnv>): Promise<ManageDeps> {
  return {
    db: c.env.DB,
    queue: c.env.ALERTS_QUEUE,
    config: c.env.DESTINATIONS,
    keys: await secretKeys(c.env),
    now: () => new Date(),
    request_id: c.get("requestId"),
  };
}

/** The answer to a failed management operation. */
function manageFailure(c: Context<AppEnv>, failure: ManageFailure | { ok: false; error: "bad_destinations" }): Response {
  switch (failure.error) {
    case "invalid_request":
      return errorResponse(c, 400, "invalid_request", { issues: failure.issues });
    case "managed_by_config":
      return errorResponse(c, 409, "managed_by_config");
    case "not_found":
      return errorResponse(c, 404, "not_found");
    case "not_configured":
      return errorResponse(c, 503, "not_configured", { message: failure.message });
    case "bad_destinations":
      return errorResponse(c, 503, "bad_destinations");
  }
}

api.put("/api/destinations/:name", documented({ summary: "Create (201) or replace (200) a destination managed from the API; one whose transform, path or filter fails on the latest matching response is refused unless \"force\": true", body: entrySchema }), async (c) => {
  const body = await readJson(c, v.unknown(), { optional: false });
  if (!body.ok) return body.response;
  const result = await putDestinationEntry(await manageDeps(c), c.req.param("name"), body.value);
  if (!result.ok) return manageFailure(c, result);
  return c.json({ ok: true, destination: result.destination }, result.created ? 201 : 200);
});

api.patch("/api/destinations/:name", documented({ summary: "Change some fields of an API destination (enabled, filter, survey_ids, url, transform, path, method, format, secret, headers); a url on another origin needs secret and headers again", body: patchSchema }), async (c) => {
  const body = await readJson(c, v.unknown(), { optional: false });
  if (!body.ok) return body.response;
  const result = await patchDestinationEntry(await manageDeps(c), c.req.param("name"), body.value);
  if (!result.ok) return manageFailure(c, result);
  return c.json(result);
});

api.delete("/api/destinations/:name", documented({ summary: "Remove an API destination and cancel its pending deliveries" }), async (c) => {
  const result = await removeDestination(await manageDeps(c), c.req.param("name"));
  if (!result.ok) return manageFailure(c, result);
  return c.json(result);
});

export const previewSchema = v.strictObject({ alert_id: v.pipe(v.string(), v.minLength(1)) });
export const testSendSchema = v.strictObject({ alert_id: v.optional(v.pipe(v.string(), v.minLength(1))) });

api.post("/api/destinations/:name/preview", documented({ summary: "The exact request a destination would receive for a stored alert; nothing is sent", body: previewSchema }), async (c) => {
  const input = await readJson(c, previewSchema, { optional: false });
  if (!input.ok) return input.response;
  const { config } = await destinationsOf(c.env);
  const result = await previewDelivery(c.env.DB, config, { name: c.req.param("name"), alert_id: input.value.alert_id, now: new Date() });
  if (!result.ok) return manageFailure(c, result);
  return c.json(result);
});

api.post("/api/destinations/:name/test", documented({ summary: "Send one request now (an alert, or 1Flow's example payload); no ledger row, breaker untouched", body: testSendSchema, body_optional: true }), async (c) => {
  const input = await readJson(c, testSendSchema, { optional: true });
  if (!input.ok) return input.response;
  const { config } = await destinationsOf(c.env);
  const result = await testDelivery(c.env.DB, config, {
    name: c.req.param("name"),
    alert_id: input.value.alert_id,
    now: new Date(),
    timeout_ms: deliveryTimeoutMs(c.env.DELIVERY_TIMEOUT_MS),
  });
  // Nothing answered (no such host, refused, timed out): not a success, whatever the request was.
  if (!result.ok && result.error === "no_answer") return errorResponse(c, 502, "no_answer", { status: null, duration_ms: result.duration_ms, detail: result.detail });
  if (!result.ok) return manageFailure(c, result);
  return c.json(result);
});

api.post("/api/destinations/:name/resume", documented({ summary: "Resume a paused destination now and send what waited" }), async (c) => {
  const result = await resumeDestination(await replayDeps(c), c.req.param("name"));
  if (!result.ok) return FAILURES[result.error](c);
  return c.json(result);
});

export const backfillSchema = v.strictObject({ since: isoTime, until: v.optional(isoTime) });

api.post("/api/destinations/:name/backfill", documented({ summary: "Send a destination the stored responses submitted in a range that it wants and has no delivery for (202; runs in the background)", body: backfillSchema }), async (c) => {
  const input = await readJson(c, backfillSchema, { optional: false });
  if (!input.ok) return input.response;
  const { config } = await destinationsOf(c.env);
  if (!config.ok) return errorResponse(c, 503, "bad_destinations");
  const result = await beginBackfill(
    { db: c.env.DB, queue: c.env.ALERTS_QUEUE, destinations: config.destinations, now: () => new Date() },
    { name: c.req.param("name"), since: input.value.since, until: input.value.until },
  );
  if (!result.ok && result.error === "invalid_request") return errorResponse(c, 400, "invalid_request", { issues: result.issues });
  if (!result.ok) return errorResponse(c, result.error === "not_found" ? 404 : 409, result.error);
  return c.json({ ok: true, backfill: backfillView(result.backfill) }, 202);
});

api.get("/api/destinations/:name/backfill", documented({ summary: "The destination's latest backfill: its range, state and counts (total, sent, delivered, failed)" }), async (c) => {
  const backfill = await latestBackfill(readerOf(c.env, true), c.req.param("name"));
  if (backfill === null) return errorResponse(c, 404, "not_found");
  return c.json({ ok: true, backfill: backfillView(backfill) });
});

api.delete("/api/destinations/:name/backfill", documented({ summary: "Cancel the destination's running backfill: what it has not sent yet" }), async (c) => {
  const result = await endBackfill(c.env.DB, c.req.param("name"), new Date());
  if (!result.ok) return errorResponse(c, 404, "not_found");
  return c.json(result);
});

/** Cancels one destination's pending deliveries (a removed one's too); `more` while some are left. */
api.post("/api/deliveries/cancel", documented({ summary: "Cancel a destination's pending deliveries (final, never re-sent)", body: cancelSchema }), async (c) => {
  const input = await readJson(c, cancelSchema, { optional: false });
  if (!input.ok) return input.response;
  return c.json(await cancelDeliveries(await replayDeps(c), { destination: input.value.destination }));
});
