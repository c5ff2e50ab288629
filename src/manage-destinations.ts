/**
 * Destinations as data: what `/api/destinations/{name}` and the dashboard's Destinations page
 * both do, once, below HTTP. Stored ones live in D1 with their secret and header values
 * sealed; those of `DESTINATIONS` are read-only here (`managed_by_config`).
 */
import * as v from "valibot";
import example from "../examples/1flow-example.json";
import type { QueueMessage } from "./alert";
import { forgetDestinations } from "./fanout/configured";
import { buildRequest, DELIVERY_TIMEOUT_IN_MS } from "./fanout/deliver";
import {
  type Destination,
  type DestinationEntry,
  type DestinationsConfig,
  destinationsFrom,
  entrySchema,
  FORMATS,
  MAX_DESTINATIONS,
  METHODS,
  nameSchema,
  wants,
  wantsStatically,
  rateLimitSchema,
} from "./fanout/destinations";
import { parsePayload } from "./ingest/payload";
import { log } from "./log";
import { sendResumed } from "./operations";
import { open, seal, type SecretKeys, SecretsUnavailableError } from "./secrets";
import { CANCEL_LIMIT, CANCELLED_REMOVED, cancelPending, latestAlerts, loadAlerts, type StoredAlert } from "./store/deliveries";
import { type DestinationRow, deleteDestination, patchDestination, putDestination, storedDestination, storedDestinations } from "./store/destinations";
import { resumeAfterEnable } from "./store/health";
import { validate, type Issue } from "./validation";

/** How a secret or header value is shown: never in full. */
export const MASK = "••••";

/** What the API and the dashboard show of a destination: no secret, no header value. */
export interface DestinationView {
  name: string;
  source: "config" | "api";
  enabled: boolean;
  format: Destination["format"];
  url: string;
  survey_ids: string[] | null;
  filter: Destination["filter"] | null;
  transform: string | null;
  method: string | null;
  path: string | null;
  has_secret: boolean;
  headers: Record<string, string>;
  rate_limit: Destination["rate_limit"] | null;
}

export function destinationView(d: Destination): DestinationView {
  return {
    name: d.name,
    source: d.source ?? "config",
    enabled: d.enabled !== false,
    format: d.format,
    url: d.url,
    survey_ids: d.survey_ids ?? null,
    filter: d.filter ?? null,
    transform: d.transform ?? null,
    method: d.method ?? null,
    path: d.path ?? null,
    has_secret: d.secret !== undefined,
    headers: Object.fromEntries(Object.keys(d.headers ?? {}).map((name) => [name, MASK])),
    rate_limit: d.rate_limit ?? null,
  };
}

export interface ManageDeps {
  db: D1Database;
  queue: Queue<QueueMessage>;
  /** The raw `DESTINATIONS` value: its names are read-only here. */
  config: string | undefined;
  keys: SecretKeys;
  now: () => Date;
  request_id: string;
}

export type ManageFailure =
  | { ok: false; error: "invalid_request"; issues: Issue[] }
  | { ok: false; error: "managed_by_config" }
  | { ok: false; error: "not_found" }
  | { ok: false; error: "not_configured"; message: string };

function isConfigName(deps: Pick<ManageDeps, "config">, name: string): boolean {
  const config = destinationsFrom(deps.config);
  return config.ok && config.destinations.some((d) => d.name === name);
}

function badName(name: string): ManageFailure | null {
  const result = validate(nameSchema, name);
  return result.ok ? null : { ok: false, error: "invalid_request", issues: result.issues.map((i) => ({ ...i, path: "name" })) };
}

/** The stored row's configuration: the entry without its name, secret and header values. */
function storedConfig(entry: DestinationEntry): string {
  const { secret: _secret, headers: _headers, ...rest } = entry;
  return JSON.stringify(rest);
}

/** The origin of a URL, or null when it is not one. */
function originOf(url: unknown): string | null {
  try {
    return typeof url === "string" ? new URL(url).origin : null;
  } catch {
    return null;
  }
}

/** The sealed fields of a stored destination. */
const SEALED = ["secret", "headers"] as const;
type Sealed = (typeof SEALED)[number];

/**
 * The issues of a write that moves a destination to another origin without supplying its
 * sealed values again: a secret or header value is never sent to an origin it was not given for.
 */
function movedWithout(row: DestinationRow, from: unknown, to: unknown, supplied: Record<Sealed, boolean>, nullRemoves: boolean): Issue[] {
  if (originOf(from) === originOf(to)) return [];
  const what = { secret: "the signing secret", headers: "the header values" } as const;
  return SEALED.filter((field) => row[field] !== null && !supplied[field]).map((field) => ({
    path: field,
    message: `the url's origin changes: give ${what[field]} again in the same request${nullRemoves ? " (null removes them)" : ""}; a sealed value is never sent to an origin it was not given for`,
  }));
}

const CHANGED_MEANWHILE: ManageFailure = {
  ok: false,
  error: "invalid_request",
  issues: [{ path: "", message: "the destination was changed by another request meanwhile: read it again and retry" }],
};

/** Seals what is given; null (or no header) stays null. Throws `SecretsUnavailableError` without a key. */
async function sealed(keys: SecretKeys, input: { secret?: string | null; headers?: Record<string, string> | null }): Promise<{ secret: string | null; headers: string | null }> {
  return {
    secret: typeof input.secret === "string" ? await seal(keys, input.secret) : null,
    headers: input.headers && Object.keys(input.headers).length > 0 ? await seal(keys, JSON.stringify(input.headers)) : null,
  };
}

function notConfigured(error: SecretsUnavailableError): ManageFailure {
  return { ok: false, error: "not_configured", message: `${error.message}: a secret or header value cannot be stored` };
}

/** Responses looked at for the latest one a destination matches (alerts_by_time, newest first). */
export const LATEST_CANDIDATES = 20;

/** The fields whose change a PATCH tries on the latest matching response. */
const TRIED_FIELDS = ["transform", "path", "filter", "format", "method"] as const;

/** A body's `force` (taken out of it): a PUT may carry it beside the entry's fields. */
function forced(body: unknown): { ok: true; force: boolean; body: unknown } | { ok: false; error: "invalid_request"; issues: Issue[] } {
  if (typeof body !== "object" || body === null || Array.isArray(body) || !("force" in body)) return { ok: true, force: false, body };
  const { force, ...rest } = body as Record<string, unknown>;
  if (typeof force !== "boolean") return { ok: false, error: "invalid_request", issues: [{ path: "force", message: "must be true or false" }] };
  return { ok: true, force, body: rest };
}

/**
 * Runs a destination's filter expression and its request (transform, path) on the latest
 * response it matches, or on 1Flow's example when none of the latest does: the issues, with the
 * error's code and position, when either fails (a destination that would fail every delivery
 * is refused at save unless `"force": true`).
 */
export async function failsOnLatest(db: D1Database, destination: Destination, now: Date): Promise<Issue[]> {
  const candidates = await latestAlerts(db, LATEST_CANDIDATES);
  const latest = candidates.find((a) => wantsStatically(destination, a));
  const alert = latest ?? exampleAlert(now);
  const on = latest === undefined ? "1Flow's example payload" : `the latest matching response (${latest.alert_id})`;
  const hint = `; it fails on ${on}. Send "force": true to save it anyway.`;
  const wanted = await wants(destination, alert);
  if (wanted.error !== undefined) return [{ ...buildIssue(wanted.error), message: `${buildIssue(wanted.error).message}${hint}` }];
  if (!wanted.wanted) return [];
  const built = await buildRequest(destination, alert, now);
  if (built.ok) return [];
  const issue = buildIssue(built.error);
  return [{ ...issue, message: `${issue.message}${hint}` }];
}

/**
 * Creates or replaces a stored destination (the whole entry). 201 vs 200 is `created`. A PUT
 * keeps nothing of the old entry; the dashboard's edit asks to `keep_sealed` values it does not
 * supply (its secret fields left empty), which it may only while the url keeps its origin.
 *
 * @example
 * await putDestinationEntry(deps, "discord", { url: "https://discord.com/api/webhooks/…", format: "jsonata", transform: "{ 'content': … }" });
 */
export async function putDestinationEntry(
  deps: ManageDeps,
  name: string,
  body: unknown,
  options: { keep_sealed?: boolean; force?: boolean } = {},
): Promise<{ ok: true; created: boolean; destination: DestinationView } | ManageFailure> {
  const bad = badName(name);
  if (bad !== null) return bad;
  if (isConfigName(deps, name)) return { ok: false, error: "managed_by_config" };
  const asked = forced(body);
  if (!asked.ok) return asked;
  const result = validate(entrySchema, asked.body);
  if (!result.ok) return { ok: false, error: "invalid_request", issues: result.issues };
  const entry = result.value;
  if (!asked.force && !options.force) {
    const failing = await failsOnLatest(deps.db, { ...entry, name, source: "api" }, deps.now());
    if (failing.length > 0) return { ok: false, error: "invalid_request", issues: failing };
  }
  const { rows } = await storedDestinations(deps.db);
  const config = destinationsFrom(deps.config);
  const total = rows.length + (config.ok ? config.destinations.length : 0);
  const existing = rows.find((r) => r.name === name);
  if (existing === undefined && total >= MAX_DESTINATIONS) {
    return { ok: false, error: "invalid_request", issues: [{ path: "name", message: `at most ${MAX_DESTINATIONS} destinations` }] };
  }
  const keep = options.keep_sealed === true && existing !== undefined ? existing : undefined;
  if (keep !== undefined) {
    const issues = movedWithout(keep, (JSON.parse(keep.config) as { url?: unknown }).url, entry.url, { secret: entry.secret !== undefined, headers: entry.headers !== undefined }, false);
    if (issues.length > 0) return { ok: false, error: "invalid_request", issues };
  }
  let secret: string | null;
  let headers: string | null;
  const kept: Partial<Pick<Destination, "secret" | "headers">> = {};
  try {
    ({ secret, headers } = await sealed(deps.keys, entry));
    // A kept value is sealed again, under the current key.
    if (keep?.secret && entry.secret === undefined) {
      kept.secret = await open(deps.keys, keep.secret);
      secret = await seal(deps.keys, kept.secret);
    }
    if (keep?.headers && entry.headers === undefined) {
      kept.headers = JSON.parse(await open(deps.keys, keep.headers)) as Record<string, string>;
      headers = await seal(deps.keys, JSON.stringify(kept.headers));
    }
  } catch (error) {
    if (error instanceof SecretsUnavailableError) return notConfigured(error);
    throw error;
  }
  const row = { name, config: storedConfig(entry), secret, headers, updated_at: deps.now().toISOString() };
  const created = await putDestination(deps.db, row, keep);
  if (created === null) return CHANGED_MEANWHILE;
  forgetDestinations();
  // A PUT that enables a destination that was disabled sends what waited, as a PATCH does.
  const reenabled = existing !== undefined && (JSON.parse(existing.config) as { enabled?: boolean }).enabled === false && entry.enabled !== false;
  if (reenabled && (await resumeAfterEnable(deps.db, name))) await sendResumed(deps, name);
  log("info", "destination.put", { request_id: deps.request_id, destination: name, created, reenabled });
  return {
    ok: true,
    created,
    destination: destinationView({ ...entry, secret: entry.secret ?? kept.secret, headers: entry.headers ?? kept.headers, name, source: "api" }),
  };
}

const nullable = <S extends v.GenericSchema>(schema: S) => v.optional(v.nullable(schema));

/** The fields `PATCH` may change; null removes an optional one. */
export const patchSchema = v.strictObject({
  enabled: v.optional(v.boolean()),
  filter: nullable(v.record(v.string(), v.unknown())),
  survey_ids: nullable(v.array(v.string())),
  url: v.optional(v.string()),
  transform: nullable(v.string()),
  path: nullable(v.string()),
  method: nullable(v.picklist(METHODS)),
  format: v.optional(v.picklist(FORMATS)),
  // Sealed like a PUT's; a url on another origin needs them again (or null) in the same request.
  secret: nullable(v.string()),
  headers: nullable(v.record(v.string(), v.string())),
  rate_limit: nullable(rateLimitSchema),
  // Saves a transform, path or filter that fails on the latest matching response anyway.
  force: v.optional(v.boolean()),
});

/** Times a PATCH reads and writes again when another request changed the row in between. */
const PATCH_ATTEMPTS = 3;

/**
 * Changes some fields of a stored destination; re-enabling it sends what waited. Its secret
 * and header values stay unless given (null removes them); when `url` moves to another origin
 * they must be given, or the answer is 400.
 */
export async function patchDestinationEntry(
  deps: ManageDeps,
  name: string,
  body: unknown,
): Promise<{ ok: true; destination: DestinationView } | ManageFailure> {
  if (isConfigName(deps, name)) return { ok: false, error: "managed_by_config" };
  const patch = validate(patchSchema, body);
  if (!patch.ok) return { ok: false, error: "invalid_request", issues: patch.issues };
  const { secret: newSecret, headers: newHeaders, force, ...fields } = patch.value;
  for (let attempt = 0; attempt < PATCH_ATTEMPTS; attempt++) {
    const row = await storedDestination(deps.db, name);
    if (row === null) return { ok: false, error: "not_found" };
    const current = JSON.parse(row.config) as Record<string, unknown>;
    const merged: Record<string, unknown> = { ...current };
    for (const [field, value] of Object.entries(fields)) {
      if (value === null) delete merged[field];
      else if (value !== undefined) merged[field] = value;
    }
    const given = { ...(typeof newSecret === "string" ? { secret: newSecret } : {}), ...(newHeaders ? { headers: newHeaders } : {}) };
    const result = validate(entrySchema, { ...merged, ...given });
    if (!result.ok) return { ok: false, error: "invalid_request", issues: result.issues };
    if (force !== true && TRIED_FIELDS.some((f) => fields[f] !== undefined)) {
      const failing = await failsOnLatest(deps.db, { ...result.value, name, source: "api" }, deps.now());
      if (failing.length > 0) return { ok: false, error: "invalid_request", issues: failing };
    }
    const moved = movedWithout(row, current.url, result.value.url, { secret: newSecret !== undefined, headers: newHeaders !== undefined }, true);
    if (moved.length > 0) return { ok: false, error: "invalid_request", issues: moved };
    const seals: { secret?: string | null; headers?: string | null } = {};
    try {
      const values = await sealed(deps.keys, { secret: newSecret, headers: newHeaders });
      if (newSecret !== undefined) seals.secret = values.secret;
      if (newHeaders !== undefined) seals.headers = values.headers;
    } catch (error) {
      if (error instanceof SecretsUnavailableError) return notConfigured(error);
      throw error;
    }
    const written = await patchDestination(deps.db, { name, config: storedConfig(result.value), updated_at: deps.now().toISOString(), ...seals, expected: row });
    if (!written) continue;
    forgetDestinations();
    const reenabled = current.enabled === false && result.value.enabled !== false;
    // Its own waiting deliveries only, within the request's budget (sendResumed); the cron sends the rest.
    if (reenabled && (await resumeAfterEnable(deps.db, name))) await sendResumed(deps, name);
    log("info", "destination.patch", { request_id: deps.request_id, destination: name, fields: Object.keys(patch.value).join(","), reenabled });
    const has_secret = newSecret === undefined ? row.secret !== null : newSecret !== null;
    return {
      ok: true,
      destination: destinationView({ ...result.value, name, source: "api", secret: has_secret ? MASK : undefined, headers: newHeaders ?? undefined }),
    };
  }
  return CHANGED_MEANWHILE;
}

/** Cancel calls one removal makes at most; a sweep cancels what is left (the destination is gone). */
const REMOVE_CANCEL_CALLS = 5;

/** Removes a stored destination and cancels its pending deliveries ("destination removed"). */
export async function removeDestination(deps: ManageDeps, name: string): Promise<{ ok: true; cancelled: number; more: boolean } | ManageFailure> {
  if (isConfigName(deps, name)) return { ok: false, error: "managed_by_config" };
  if (!(await deleteDestination(deps.db, name))) return { ok: false, error: "not_found" };
  forgetDestinations();
  let cancelled = 0;
  // More may be left only when the last call cancelled a whole page: POST /api/deliveries/cancel
  // goes on (and the consumer cancels the rest as their alerts come round).
  let more = false;
  for (let i = 0; i < REMOVE_CANCEL_CALLS; i++) {
    const n = await cancelPending(deps.db, { destination: name, reason: CANCELLED_REMOVED, at: deps.now().toISOString() });
    cancelled += n;
    more = n === CANCEL_LIMIT;
    if (!more) break;
  }
  log("info", "destination.delete", { request_id: deps.request_id, destination: name, cancelled, more });
  return { ok: true, cancelled, more };
}

/** 1Flow's documented example payload, as a stored alert: what a test send uses by default. */
export function exampleAlert(now: Date): StoredAlert {
  const parsed = parsePayload(example);
  if (!parsed.ok) throw new Error("the example payload does not validate");
  return { ...parsed.alert, received_at: now.toISOString(), payload: JSON.stringify(example) };
}

export interface PreviewRequest {
  method: string;
  url: string;
  headers: Record<string, string>;
  /** The exact string that would be sent. */
  body: string;
}

/** A request as the API shows it: the destination's own header values masked. */
async function shown(destination: Destination, request: Request): Promise<PreviewRequest> {
  const own = new Set(Object.keys(destination.headers ?? {}).map((h) => h.toLowerCase()));
  const headers: Record<string, string> = {};
  request.headers.forEach((value, name) => {
    headers[name] = own.has(name) ? MASK : value;
  });
  return { method: request.method, url: request.url, headers, body: await request.text() };
}

type Target = { ok: true; destination: Destination; alert: StoredAlert } | { ok: false; error: "not_found" | "bad_destinations" };

async function target(db: D1Database, destinations: DestinationsConfig, name: string, alert_id: string | undefined, now: Date): Promise<Target> {
  if (!destinations.ok) return { ok: false, error: "bad_destinations" };
  const destination = destinations.destinations.find((d) => d.name === name);
  if (destination === undefined) return { ok: false, error: "not_found" };
  if (alert_id === undefined) return { ok: true, destination, alert: exampleAlert(now) };
  const alert = (await loadAlerts(db, [alert_id])).get(alert_id);
  return alert === undefined ? { ok: false, error: "not_found" } : { ok: true, destination, alert };
}

/** Where building the request failed: the field (`transform`, `path`) and why. */
function buildIssue(error: string): Issue {
  const [field, ...rest] = error.split(": ");
  return ["transform", "path", "filter.expression"].includes(field ?? "") ? { path: field ?? "", message: rest.join(": ") } : { path: "", message: error };
}

/** The exact request a destination would receive for an alert: nothing is sent, nothing written. */
export async function previewDelivery(
  db: D1Database,
  destinations: DestinationsConfig,
  input: { name: string; alert_id: string; now: Date },
): Promise<{ ok: true; request: PreviewRequest } | { ok: false; error: "not_found" | "bad_destinations" } | { ok: false; error: "invalid_request"; issues: Issue[] }> {
  const found = await target(db, destinations, input.name, input.alert_id, input.now);
  if (!found.ok) return found;
  const built = await buildRequest(found.destination, found.alert, input.now);
  if (!built.ok) return { ok: false, error: "invalid_request", issues: [buildIssue(built.error)] };
  return { ok: true, request: await shown(found.destination, built.value) };
}

/** The first bytes of a test send's answer that are returned. */
export const TEST_RESPONSE_BYTES = 2_048;

/**
 * The first `limit` bytes of an answer's body: read chunk by chunk until there are as many,
 * then the rest is cancelled unread (a receiver's answer may be of any size).
 */
async function firstBytes(res: Response, limit: number): Promise<Uint8Array> {
  if (res.body === null) return new Uint8Array(0);
  const reader = res.body.getReader();
  const kept = new Uint8Array(limit);
  let length = 0;
  try {
    while (length < limit) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = value.subarray(0, limit - length);
      kept.set(take, length);
      length += take.byteLength;
    }
  } finally {
    await reader.cancel().catch(() => {});
  }
  return kept.subarray(0, length);
}

/**
 * Sends one request now (an alert, or 1Flow's example payload): no ledger row, and the
 * breaker is not moved. Returns the status, the time taken and the answer's first 2 KB; when
 * nothing answered (no such host, refused, timed out), `no_answer` with why.
 */
export async function testDelivery(
  db: D1Database,
  destinations: DestinationsConfig,
  input: { name: string; alert_id?: string; now: Date; timeout_ms?: number },
): Promise<
  | { ok: true; status: number; duration_ms: number; response: string }
  | { ok: false; error: "no_answer"; status: null; duration_ms: number; detail: string }
  | { ok: false; error: "not_found" | "bad_destinations" }
  | { ok: false; error: "invalid_request"; issues: Issue[] }
> {
  const found = await target(db, destinations, input.name, input.alert_id, input.now);
  if (!found.ok) return found;
  const built = await buildRequest(found.destination, found.alert, input.now);
  if (!built.ok) return { ok: false, error: "invalid_request", issues: [buildIssue(built.error)] };
  const started = performance.now();
  try {
    const res = await fetch(built.value, { signal: AbortSignal.timeout(input.timeout_ms ?? DELIVERY_TIMEOUT_IN_MS), redirect: "manual" });
    const bytes = await firstBytes(res, TEST_RESPONSE_BYTES);
    return { ok: true, status: res.status, duration_ms: Math.round(performance.now() - started), response: new TextDecoder().decode(bytes) };
  } catch (error) {
    return { ok: false, error: "no_answer", status: null, duration_ms: Math.round(performance.now() - started), detail: error instanceof Error ? error.message : String(error) };
  }
}
