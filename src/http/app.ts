/**
 * The Worker's HTTP face: middleware order, mounts, and the error and 404
 * handlers. Every response carries `x-request-id`; every request writes one
 * log line, with the route pattern in place of the path so the token never
 * reaches a log.
 */
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { routePath } from "hono/route";
import { methodNotAllowed } from "hono/method-not-allowed";
import { requestId } from "hono/request-id";
import { bodyLimit } from "hono/body-limit";
import { errorMessage, log } from "../log";
import { ping } from "../store/alerts";
import { StorageUnavailableError, storageDeadlineMs, withDeadline } from "../store/d1";
import type { AppEnv } from "./app-env";
import { errorResponse, RETRY_AFTER_IN_SECONDS } from "./responses";
import { webhook } from "./webhook";
import { api, requireAdmin } from "./api";
import { apiData } from "./api-data";
import { documented, openApiHandler } from "./openapi";
import { dashboard } from "./dashboard/index";
import { configProblems } from "../config";
import { destinationsOf } from "../fanout/configured";
import { destinationsFrom } from "../fanout/destinations";

/** Request bodies `/api` takes at most. */
export const API_BODY_LIMIT_IN_BYTES = 16 * 1024;

export const app = new Hono<AppEnv>({ strict: false });

// Always the Worker's own id: a client's x-request-id is never taken (it would let a caller forge log lines' ids).
app.use(requestId({ headerName: "" }));
app.use(async function requestIdHeader(c, next) {
  c.header("x-request-id", c.get("requestId"));
  await next();
});

app.use(async function requestLog(c, next) {
  const started = performance.now();
  await next();
  const route = routePath(c, -1);
  const duration_ms = Math.round((performance.now() - started) * 10) / 10;
  log(c.res.status >= 500 ? "error" : "info", "http.request", {
    request_id: c.get("requestId"),
    method: c.req.method,
    route,
    status: c.res.status,
    outcome: c.get("outcome"),
    alert_id: c.get("alert_id"),
    duration_ms,
  });
  // One data point per webhook outcome, when the Analytics Engine binding is there.
  if (route.startsWith("/webhooks/")) {
    c.env.METRICS?.writeDataPoint({ indexes: ["webhook"], blobs: ["webhook", c.get("outcome") ?? String(c.res.status)], doubles: [c.res.status, duration_ms] });
  }
});

app.use(
  methodNotAllowed({
    app,
    onMethodNotAllowed: (c, methods) =>
      errorResponse(c, 405, "method_not_allowed", {}, { Allow: methods.filter((m) => m !== "HEAD").join(", ") }),
  }),
);

app.get("/healthz", async (c) => {
  const destinations = destinationsFrom(c.env.DESTINATIONS);
  if (!destinations.ok) {
    log("error", "fanout.bad_destinations", { request_id: c.get("requestId"), error: destinations.error });
    return errorResponse(c, 503, "bad_destinations");
  }
  const problems = configProblems(c.env);
  if (problems.length > 0) {
    log("error", "config.bad", { request_id: c.get("requestId"), problems: problems.join("; ") });
    return errorResponse(c, 503, "bad_config", { problems });
  }
  try {
    await withDeadline(() => ping(c.env.DB), storageDeadlineMs(c.env.STORAGE_DEADLINE_MS));
  } catch (error) {
    log("error", "healthz.storage_unavailable", { request_id: c.get("requestId"), error: errorMessage(error) });
    return errorResponse(c, 503, "storage_unavailable");
  }
  // The destinations stored in D1 too: one that cannot be opened (a rotated ENCRYPTION_KEY) stops the fan-out.
  const { config } = await destinationsOf(c.env);
  if (!config.ok) {
    log("error", "fanout.bad_destinations", { request_id: c.get("requestId"), error: config.error });
    return errorResponse(c, 503, "bad_destinations");
  }
  return c.json({ ok: true });
});

app.route("/", webhook);
app.use("/api/*", requireAdmin);
app.use(
  "/api/*",
  bodyLimit({ maxSize: API_BODY_LIMIT_IN_BYTES, onError: (c) => errorResponse(c, 413, "payload_too_large") }),
);
app.route("/", api);
app.route("/", apiData);
app.get("/api/openapi.json", documented({ summary: "This document" }), openApiHandler(app));
app.route("/", dashboard);

app.notFound((c) => errorResponse(c, 404, "not_found"));

app.onError((error, c) => {
  if (error instanceof StorageUnavailableError) {
    c.set("outcome", "storage_unavailable");
    log("error", "storage.unavailable", {
      request_id: c.get("requestId"),
      alert_id: c.get("alert_id"),
      error: errorMessage(error),
    });
    return errorResponse(c, 503, "storage_unavailable", {}, { "Retry-After": String(RETRY_AFTER_IN_SECONDS) });
  }
  if (error instanceof HTTPException) {
    const res = new Response(error.getResponse().body, error.getResponse());
    res.headers.set("x-request-id", c.get("requestId"));
    return res;
  }
  c.set("outcome", "internal_error");
  log("error", "http.unhandled", { request_id: c.get("requestId"), error: errorMessage(error) });
  return errorResponse(c, 500, "internal_error");
});
