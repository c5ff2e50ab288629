/** One delivery of one alert to one destination, with a timeout. */
import type { StoredAlert } from "../store/deliveries";
import { parseRetryAfter } from "./backoff";
import type { Destination } from "./destinations";
import { identifyBody } from "./identify";
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

/** The body a destination of this format receives for an alert. */
function bodyOf(destination: Destination, alert: StoredAlert): string {
  switch (destination.format) {
    case "raw":
      return alert.payload;
    case "json":
      return JSON.stringify(normalisedAlert(alert));
    case "slack":
      return JSON.stringify(slackMessage(alert));
    case "1flow-identify":
      return JSON.stringify(identifyBody(alert));
  }
}

/**
 * The request a destination receives for an alert: its own headers first, then the
 * Worker's (which a destination may not set). `raw` and `json` carry the Standard
 * Webhooks headers, signed when the destination has a secret.
 */
export async function deliveryRequest(destination: Destination, alert: StoredAlert, now: Date): Promise<Request> {
  const body = bodyOf(destination, alert);
  const headers = new Headers(destination.headers);
  headers.set("content-type", "application/json");
  headers.set("user-agent", USER_AGENT);
  if (destination.format === "raw" || destination.format === "json") {
    const timestamp = Math.floor(now.getTime() / 1000);
    headers.set("webhook-id", alert.alert_id);
    headers.set("webhook-timestamp", String(timestamp));
    if (destination.secret) headers.set("webhook-signature", await sign(destination.secret, alert.alert_id, timestamp, body));
  }
  return new Request(destination.url, { method: "POST", headers, body });
}

/** Sends one alert to one destination; never throws. */
export async function deliver(
  destination: Destination,
  alert: StoredAlert,
  now: Date,
  timeout_ms: number = DELIVERY_TIMEOUT_IN_MS,
): Promise<DeliveryAttempt> {
  const started = performance.now();
  const latency = () => Math.round(performance.now() - started);
  try {
    const request = await deliveryRequest(destination, alert, now);
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
