/**
 * The `DESTINATIONS` configuration: a JSON array validated with valibot once
 * per isolate (per distinct value). A malformed value is an error to report,
 * never a crash and never a silent skip.
 */
import * as v from "valibot";
import type { Alert } from "../alert";
import { validate } from "../validation";

/** Headers a destination may not set: the Worker's own, the host, and hop-by-hop ones. */
const RESERVED_HEADERS = new Set([
  "content-type",
  "content-length",
  "host",
  "connection",
  "keep-alive",
  "proxy-authenticate",
  "proxy-authorization",
  "proxy-connection",
  "te",
  "trailer",
  "transfer-encoding",
  "upgrade",
]);

/** An HTTP header name (RFC 9110 token) that the destination may set. */
function isAllowedHeader(name: string): boolean {
  const lower = name.toLowerCase();
  return /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(name) && !RESERVED_HEADERS.has(lower) && !lower.startsWith("webhook-");
}

const names = v.array(v.pipe(v.string(), v.minLength(1)));

const filterSchema = v.strictObject({
  platforms: v.optional(names),
  alert_names: v.optional(names),
  event_names: v.optional(names),
  score: v.optional(
    v.pipe(
      v.strictObject({ type: v.pipe(v.string(), v.minLength(1)), min: v.number(), max: v.number() }),
      v.check((s) => s.min <= s.max, "min must not be above max"),
    ),
  ),
});

const headersSchema = v.pipe(
  v.record(v.string(), v.pipe(v.string(), v.check((value) => !/[\r\n]/.test(value), "must be one line"))),
  v.check(
    (headers) => Object.keys(headers).every(isAllowedHeader),
    "may not set content-type, content-length, host, webhook-* or hop-by-hop headers, and names must be tokens",
  ),
);

export const FORMATS = ["raw", "json", "slack", "1flow-identify"] as const;

const destinationSchema = v.strictObject({
  name: v.pipe(v.string(), v.regex(/^[\w.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'")),
  url: v.pipe(
    v.string(),
    v.url("must be a URL"),
    v.check(isAllowedUrl, "must be https:// (plain http:// only to a loopback host: 127.0.0.0/8, [::1], localhost)"),
  ),
  secret: v.optional(
    v.pipe(v.string(), v.regex(/^whsec_[A-Za-z0-9+/]+={0,2}$/, "must be whsec_ followed by base64")),
  ),
  format: v.optional(v.picklist(FORMATS, `must be one of ${FORMATS.join(", ")}`), "raw"),
  survey_ids: v.optional(names),
  filter: v.optional(filterSchema),
  headers: v.optional(headersSchema),
});

/**
 * At most this many destinations: a consumer invocation sends up to max_batch_size
 * (10) alerts to each, inside the free plan's 50 subrequests per invocation.
 */
export const MAX_DESTINATIONS = 5;

const destinationsSchema = v.pipe(
  v.array(destinationSchema),
  v.maxLength(MAX_DESTINATIONS, `at most ${MAX_DESTINATIONS} destinations (the Workers subrequest limit)`),
  v.check(
    (list) => new Set(list.map((d) => d.name)).size === list.length,
    "destination names must be unique",
  ),
);

export type Destination = v.InferOutput<typeof destinationSchema>;

/** https://, or http:// to a loopback host (for local receivers): nothing else leaves unencrypted. */
export function isAllowedUrl(raw: string): boolean {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return false;
  }
  if (url.protocol === "https:") return true;
  if (url.protocol !== "http:") return false;
  const host = url.hostname;
  return host === "localhost" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

export type DestinationsConfig = { ok: true; destinations: Destination[] } | { ok: false; error: string };

let cached: { raw: string | undefined; config: DestinationsConfig } | undefined;

/**
 * Parses `DESTINATIONS`; unset or blank means none. Cached per isolate.
 *
 * @example
 * const config = destinationsFrom(env.DESTINATIONS);
 * if (!config.ok) log("error", "fanout.bad_destinations", { error: config.error });
 */
export function destinationsFrom(raw: string | undefined): DestinationsConfig {
  if (cached !== undefined && cached.raw === raw) return cached.config;
  const config = parseDestinations(raw);
  cached = { raw, config };
  return config;
}

export function parseDestinations(raw: string | undefined): DestinationsConfig {
  if (raw === undefined || raw.trim() === "") return { ok: true, destinations: [] };
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch {
    return { ok: false, error: "DESTINATIONS is not valid JSON" };
  }
  const result = validate(destinationsSchema, json);
  if (!result.ok) {
    const issues = result.issues.map((i) => `${i.path || "(root)"}: ${i.message}`);
    return { ok: false, error: `DESTINATIONS is invalid: ${issues.join("; ")}` };
  }
  return { ok: true, destinations: result.value };
}

/**
 * Whether a destination wants this alert: every condition it gives holds (its surveys,
 * platforms, alert names, trigger event names, and an answer of a type whose score is in
 * range). The identify format needs the respondent's user id.
 */
export function wants(
  destination: Destination,
  alert: Pick<Alert, "survey_id" | "platform" | "alert_name" | "trigger_event_name" | "user_system_id" | "answers">,
): boolean {
  const { survey_ids, filter, format } = destination;
  if (survey_ids !== undefined && !survey_ids.includes(alert.survey_id)) return false;
  if (format === "1flow-identify" && !alert.user_system_id) return false;
  if (filter === undefined) return true;
  const among = (list: string[] | undefined, value: string | null) => list === undefined || (value !== null && list.includes(value));
  if (!among(filter.platforms, alert.platform)) return false;
  if (!among(filter.alert_names, alert.alert_name)) return false;
  if (!among(filter.event_names, alert.trigger_event_name)) return false;
  const { score } = filter;
  if (score === undefined) return true;
  return alert.answers.some((a) => a.type === score.type && a.value !== null && a.value >= score.min && a.value <= score.max);
}
