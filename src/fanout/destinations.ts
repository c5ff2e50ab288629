/**
 * Destinations: their schema (one for `DESTINATIONS` and for the ones the API stores in
 * D1), `DESTINATIONS` parsed once per isolate (per distinct value), and whether one wants
 * an alert. A malformed value is an error to report, never a crash and never a silent skip.
 */
import * as v from "valibot";
import type { Alert } from "../alert";
import type { StoredAlert } from "../store/deliveries";
import { MAX_DESTINATIONS } from "../limits";
import { validate } from "../validation";
import { normalisedAlert } from "./json-format";
import { boundProblem, evaluate, type EvaluationBudget, syntaxError } from "./jsonata";

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

/** A JSONata expression that compiles; a syntax error says at which position. */
const expressionSchema = v.pipe(
  v.string(),
  v.minLength(1, "must not be empty"),
  v.maxLength(10_000, "must be at most 10,000 characters"),
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const error = syntaxError(dataset.value);
    if (error !== null) addIssue({ message: `is not valid JSONata: ${error}` });
  }),
);

/**
 * An expression that may be stored from now on: it compiles, and it holds no regular
 * expression (no step bound stops one on respondents' free text); the refusal names its
 * position. A row stored before this rule is still read (`storedDestinationSchema`): its
 * regular expression fails each delivery with the reason instead of being run.
 */
const boundedExpressionSchema = v.pipe(
  expressionSchema,
  v.rawCheck(({ dataset, addIssue }) => {
    if (!dataset.typed) return;
    const problem = boundProblem(dataset.value);
    if (problem !== null) addIssue({ message: problem });
  }),
);

const filterSchemaOf = (expression: typeof expressionSchema | typeof boundedExpressionSchema) => v.strictObject({
  platforms: v.optional(names),
  project_names: v.optional(names),
  expression: v.optional(expression),
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

export const FORMATS = ["raw", "json", "slack", "1flow-identify", "jsonata"] as const;
export const METHODS = ["POST", "PUT", "PATCH"] as const;

export const nameSchema = v.pipe(v.string(), v.regex(/^[\w.-]{1,64}$/, "must be 1-64 letters, digits, '_', '.' or '-'"));

/** `{"requests": n ≥ 1, "per_seconds": 1..3600}`. */
export const rateLimitSchema = v.strictObject({
  requests: v.pipe(v.number(), v.integer("must be a whole number"), v.minValue(1, "must be at least 1")),
  per_seconds: v.pipe(v.number(), v.integer("must be a whole number"), v.minValue(1, "must be 1 to 3600"), v.maxValue(3600, "must be 1 to 3600")),
});

const entryFieldsOf = (expression: typeof expressionSchema | typeof boundedExpressionSchema) => ({
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
  filter: v.optional(filterSchemaOf(expression)),
  headers: v.optional(headersSchema),
  /** jsonata: the body, a JSONata expression over the normalised alert (the json format's body). */
  transform: v.optional(expression),
  /** jsonata: the HTTP method, POST by default. */
  method: v.optional(v.picklist(METHODS, `must be one of ${METHODS.join(", ")}`)),
  /** jsonata: a JSONata expression giving the path and query appended to `url`. */
  path: v.optional(expression),
  /** False holds new deliveries pending, as a pause does. */
  enabled: v.optional(v.boolean(), true),
  /** At most `requests` per `per_seconds` to it, across every consumer (live, replays and backfills). */
  rate_limit: v.optional(rateLimitSchema),
});

/** What PUT, PATCH, the dashboard and `DESTINATIONS` accept. */
const entryFields = entryFieldsOf(boundedExpressionSchema);

/** Whether a destination's fields fit its format: what is only for `jsonata`, and what `jsonata` needs. */
function formatProblem(d: { format: string; transform?: string | undefined; method?: string | undefined; path?: string | undefined }): string | null {
  if (d.format === "jsonata") return d.transform === undefined ? "transform: is required with format jsonata" : null;
  const extra = (["transform", "method", "path"] as const).find((field) => d[field] !== undefined);
  return extra === undefined ? null : `${extra}: is only for format jsonata`;
}

const entryObject = v.strictObject(entryFields);

/** One destination without its name: the body of `PUT /api/destinations/{name}`. */
export const entrySchema = v.pipe(
  entryObject,
  v.rawCheck(({ dataset, addIssue }) => {
    const problem = dataset.typed ? formatProblem(dataset.value) : null;
    if (problem !== null) addIssue({ message: problem });
  }),
);

export const destinationSchema = v.pipe(
  v.strictObject({ name: nameSchema, ...entryFields }),
  v.rawCheck(({ dataset, addIssue }) => {
    const problem = dataset.typed ? formatProblem(dataset.value) : null;
    if (problem !== null) addIssue({ message: problem });
  }),
);

/** A destination row read back from D1: as `destinationSchema`, but one stored with a regular expression still opens. */
export const storedDestinationSchema = v.pipe(
  v.strictObject({ name: nameSchema, ...entryFieldsOf(expressionSchema) }),
  v.rawCheck(({ dataset, addIssue }) => {
    const problem = dataset.typed ? formatProblem(dataset.value) : null;
    if (problem !== null) addIssue({ message: problem });
  }),
);

/**
 * At most MAX_DESTINATIONS in all: the consumer keeps each invocation within
 * SUBREQUEST_BUDGET and carries the rest over, so the count is not tied to that limit.
 */
export { MAX_DESTINATIONS };

const destinationsSchema = v.pipe(
  v.array(destinationSchema),
  v.maxLength(MAX_DESTINATIONS, `at most ${MAX_DESTINATIONS} destinations`),
  v.check(
    (list) => new Set(list.map((d) => d.name)).size === list.length,
    "destination names must be unique",
  ),
);

export type DestinationEntry = v.InferOutput<typeof entrySchema>;
/** A destination and where it is managed: `DESTINATIONS` (read-only) or the API (D1). */
export type Destination = v.InferOutput<typeof destinationSchema> & { source?: "config" | "api" };

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

/**
 * The destinations in force. `version`: the stored destinations' version the list was read
 * at (a cached list may be older than D1's); a consumer's final decisions hold only while it
 * is still the current one. Absent for a list that is not cached (DESTINATIONS alone, a test).
 */
export type DestinationsConfig = { ok: true; destinations: Destination[]; version?: string } | { ok: false; error: string };

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
  return { ok: true, destinations: result.value.map((d) => ({ ...d, source: "config" as const })) };
}

export type WantedAlert = Pick<Alert, "survey_id" | "platform" | "project_name" | "alert_name" | "trigger_event_name" | "user_system_id" | "answers">;

/**
 * Whether a destination wants this alert by its static conditions: every one it gives
 * holds (its surveys, platforms, projects, alert names, trigger event names, and an answer
 * of a type whose score is in range). The identify format needs the respondent's user id.
 */
export function wantsStatically(destination: Destination, alert: WantedAlert): boolean {
  const { survey_ids, filter, format } = destination;
  if (survey_ids !== undefined && !survey_ids.includes(alert.survey_id)) return false;
  if (format === "1flow-identify" && !alert.user_system_id) return false;
  if (filter === undefined) return true;
  const among = (list: string[] | undefined, value: string | null) => list === undefined || (value !== null && list.includes(value));
  if (!among(filter.platforms, alert.platform)) return false;
  if (!among(filter.project_names, alert.project_name)) return false;
  if (!among(filter.alert_names, alert.alert_name)) return false;
  if (!among(filter.event_names, alert.trigger_event_name)) return false;
  const { score } = filter;
  if (score === undefined) return true;
  return alert.answers.some((a) => a.type === score.type && a.value !== null && a.value >= score.min && a.value <= score.max);
}

/**
 * `deferred`: the invocation's evaluation budget had no room for its filter; nothing was
 * decided, and the job is carried over like one past the subrequest budget.
 */
export type Wanted = { wanted: boolean; error?: undefined; deferred?: undefined } | { wanted: false; error: string; deferred?: undefined } | { wanted: false; deferred: true; error?: undefined };

/**
 * Whether a destination wants this alert: its static conditions, then `filter.expression`
 * (JSONata over the normalised alert), which must be `true`. An expression that fails (a
 * runaway one stopped at its bound) says why: that delivery fails, with the reason.
 */
export async function wants(destination: Destination, alert: StoredAlert, budget?: EvaluationBudget): Promise<Wanted> {
  if (!wantsStatically(destination, alert)) return { wanted: false };
  const expression = destination.filter?.expression;
  if (expression === undefined) return { wanted: true };
  const result = await evaluate(expression, normalisedAlert(alert), budget);
  if (!result.ok && result.deferred) return { wanted: false, deferred: true };
  if (!result.ok) return { wanted: false, error: `filter.expression: ${result.error}` };
  return { wanted: result.value === true };
}
