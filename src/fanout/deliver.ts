/** One delivery of one alert to one destination, with a timeout. */
import type { StoredAlert } from "../store/deliveries";
import { parseRetryAfter } from "./backoff";
import type { Destination } from "./destinations";
import { identifyBody } from "./identify";
import { type EvaluationBudget, evaluate } from "./jsonata";
import { normalisedAlert } from "./json-format";
import { sign } from "./signing";
import { slackMessage } from "./slack";

/** 1Flow's identify endpoint takes at most 32 KB a request. */
export const IDENTIFY_MAX_BYTES = 32 * 1024;

/** Default time a destination has to answer one delivery. */
export const DELIVERY_TIMEOUT_IN_MS = 10_000;
const USER_AGENT = "oneflow-webhooks";

export function deliveryTimeoutMs(raw: string | undefined): number {
  const parsed = Number(raw);
  return Number.isFinite(parsed) && parsed > 0 ? parsed : DELIVERY_TIMEOUT_IN_MS;
}

export interface DeliveryAttempt {
  ok: boolean;
  /** A failure that retrying cannot fix (a 4xx other than 408 and 429). */
  permanent: boolean;
  status: number | null;
  error: string | null;
  retry_after_seconds: number | null;
  /** From sending the request to its answer (or its failure). */
  latency_ms: number;
}

/** Built, or why not; `deferred`: the invocation's evaluation budget had no room (nothing failed). */
type Built<T> = { ok: true; value: T } | { ok: false; error: string; deferred?: true };

/** The body a destination of this format receives for an alert; a transform that fails says why. */
async function bodyOf(destination: Destination, alert: StoredAlert, budget?: EvaluationBudget): Promise<Built<string>> {
  switch (destination.format) {
    case "raw":
      return { ok: true, value: alert.payload };
    case "json":
      return { ok: true, value: JSON.stringify(normalisedAlert(alert)) };
    case "slack":
      return { ok: true, value: JSON.stringify(slackMessage(alert)) };
    case "1flow-identify":
      return { ok: true, value: JSON.stringify(identifyBody(alert)) };
    case "jsonata": {
      const result = await evaluate(destination.transform ?? "", normalisedAlert(alert), budget);
      if (!result.ok) return { ok: false, error: `transform: ${result.error}`, ...(result.deferred ? { deferred: true as const } : {}) };
      if (result.value === undefined) return { ok: false, error: "transform: gave no value (nothing matched)" };
      return { ok: true, value: JSON.stringify(result.value) };
    }
  }
}

/**
 * Whether a path (before its query) has a segment that is `.` or `..` once percent-decoded
 * (`%2e%2e` too), split at `/` and at `\` (which URLs of http and https read as `/`).
 */
function hasDotSegment(path: string): boolean {
  const beforeQuery = path.split(/[?#]/, 1)[0] ?? "";
  return beforeQuery.split(/[/\\]/).some((segment) => {
    let decoded: string;
    try {
      decoded = decodeURIComponent(segment);
    } catch {
      decoded = segment.replace(/%2e/gi, ".");
    }
    return decoded.split(/[/\\]/).some((part) => part === "." || part === "..");
  });
}

/**
 * Where a jsonata destination's request goes: `url`, with `path` (JSONata giving the path
 * and query) appended. A segment that is `.` or `..` (decoded) is refused, and the result
 * must stay under `url`'s path (so under its origin), or nothing is sent.
 */
async function urlOf(destination: Destination, alert: StoredAlert, budget?: EvaluationBudget): Promise<Built<string>> {
  if (destination.format !== "jsonata" || destination.path === undefined) return { ok: true, value: destination.url };
  const result = await evaluate(destination.path, normalisedAlert(alert), budget);
  if (!result.ok) return { ok: false, error: `path: ${result.error}`, ...(result.deferred ? { deferred: true as const } : {}) };
  if (typeof result.value !== "string") return { ok: false, error: "path: must give a string" };
  if (hasDotSegment(result.value)) return { ok: false, error: "path: has a . or .. segment" };
  let url: URL;
  try {
    url = new URL(destination.url + result.value);
  } catch {
    return { ok: false, error: "path: does not make a URL" };
  }
  const base = new URL(destination.url);
  if (url.origin !== base.origin) return { ok: false, error: `path: leaves ${base.origin}` };
  // Under the url's path as a folder: `/api` admits `/api`, `/api/…` and `/api?…`, never `/api-admin`.
  const folder = base.pathname.endsWith("/") ? base.pathname : `${base.pathname}/`;
  if (url.pathname !== base.pathname && !url.pathname.startsWith(folder)) return { ok: false, error: "path: leaves the url's path" };
  return { ok: true, value: url.toString() };
}

/**
 * The request a destination receives for an alert: its own headers first, then the
 * Worker's (which a destination may not set). `raw`, `json` and `jsonata` carry the
 * Standard Webhooks headers, signed when the destination has a secret. A transform or
 * path that fails, or a URL that leaves the destination's origin, gives the reason instead:
 * nothing is sent, and no retry could change it. With an evaluation budget, the transform and
 * path spend it (the consumer builds its requests when it plans them), and one that does not
 * fit is `deferred`.
 */
export async function buildRequest(destination: Destination, alert: StoredAlert, now: Date, budget?: EvaluationBudget): Promise<Built<Request>> {
  // One after the other: each evaluation checks the budget's room before it starts.
  const body = await bodyOf(destination, alert, budget);
  if (!body.ok) return body;
  const url = await urlOf(destination, alert, budget);
  if (!url.ok) return url;
  const headers = new Headers(destination.headers);
  headers.set("content-type", "application/json");
  headers.set("user-agent", USER_AGENT);
  if (destination.format === "raw" || destination.format === "json" || destination.format === "jsonata") {
    const timestamp = Math.floor(now.getTime() / 1000);
    headers.set("webhook-id", alert.alert_id);
    headers.set("webhook-timestamp", String(timestamp));
    if (destination.secret) headers.set("webhook-signature", await sign(destination.secret, alert.alert_id, timestamp, body.value));
  }
  const method = destination.format === "jsonata" ? (destination.method ?? "POST") : "POST";
  return { ok: true, value: new Request(url.value, { method, headers, body: body.value }) };
}

/** The request a destination receives for an alert (see buildRequest); throws what buildRequest reports. */
export async function deliveryRequest(destination: Destination, alert: StoredAlert, now: Date): Promise<Request> {
  const built = await buildRequest(destination, alert, now);
  if (!built.ok) throw new Error(built.error);
  return built.value;
}

/** A request that could not be built: failed for good, nothing sent (no retry could change it). */
export function unbuilt(error: string): DeliveryAttempt {
  return { ok: false, permanent: true, status: null, error, retry_after_seconds: null, latency_ms: 0 };
}

/** Sends one alert to one destination; never throws. */
export async function deliver(
  destination: Destination,
  alert: StoredAlert,
  now: Date,
  timeout_ms: number = DELIVERY_TIMEOUT_IN_MS,
): Promise<DeliveryAttempt> {
  const built = await buildRequest(destination, alert, now);
  if (!built.ok) return unbuilt(built.error);
  return sendRequest(destination, built.value, now, timeout_ms);
}

/** Sends a request built for a destination (buildRequest) and classifies the answer; never throws. */
export async function sendRequest(
  destination: Destination,
  request: Request,
  now: Date,
  timeout_ms: number = DELIVERY_TIMEOUT_IN_MS,
): Promise<DeliveryAttempt> {
  const started = performance.now();
  const latency = () => Math.round(performance.now() - started);
  try {
    if (destination.format === "1flow-identify" && (await request.clone().arrayBuffer()).byteLength > IDENTIFY_MAX_BYTES) {
      // 1Flow would refuse it every time: failed, not retried (the traits are bounded; only a huge user id gets here).
      return { ok: false, permanent: true, status: null, error: "body over 1Flow's 32 KB limit", retry_after_seconds: null, latency_ms: latency() };
    }
    // Redirects are never followed: a 3xx is recorded with its status and retried like a 5xx.
    const res = await fetch(request, { signal: AbortSignal.timeout(timeout_ms), redirect: "manual" });
    await res.body?.cancel();
    if (res.ok) return { ok: true, permanent: false, status: res.status, error: null, retry_after_seconds: null, latency_ms: latency() };
    const permanent = res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429;
    return {
      ok: false,
      permanent,
      status: res.status,
      error: `HTTP ${res.status}`,
      retry_after_seconds: parseRetryAfter(res.headers.get("retry-after"), now),
      latency_ms: latency(),
    };
  } catch (error) {
    const timedOut = error instanceof Error && (error.name === "TimeoutError" || error.name === "AbortError");
    return {
      ok: false,
      permanent: false,
      status: null,
      error: timedOut ? `no answer within ${timeout_ms / 1000} s` : String(error instanceof Error ? error.message : error),
      retry_after_seconds: null,
      latency_ms: latency(),
    };
  }
}
