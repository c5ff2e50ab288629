/**
 * The operator's data under `/api` (bearer ADMIN_TOKEN, applied in app.ts):
 * alerts, the quarantine and its reprocessing, and erasure of a user's data.
 */
import { type Context, Hono } from "hono";
import * as v from "valibot";
import { type ReprocessResult, reprocessRejected } from "../operations";
import { errorMessage, log } from "../log";
import { exportBoundary, exportColumns, exportPage, getAlert, type Keyset, listAlerts, listSurveys, npsSeries } from "../store/reads";
import { stream } from "hono/streaming";
import { csvLine } from "./csv";
import { eraseUserData } from "../erase-user";
import { archivedKey, archiveState, manifestPage } from "../store/archive";
import { readerOf } from "./reader";
import { listRejected, type RejectedRow } from "../store/rejected";
import type { AppEnv } from "./app-env";
import { documented } from "./openapi";
import { readQuery } from "./input";
import { insightsOf } from "../insights";
import { surveyOf, windowFacets } from "../store/facets";
import { errorResponse } from "./responses";
import { ingestContext } from "./webhook";

export const apiData = new Hono<AppEnv>({ strict: false });

/** Page sizes: 50 unless asked, 500 at most. */
const DEFAULT_PAGE = 50;
const MAX_PAGE = 500;

const isoTime = v.pipe(v.string(), v.isoTimestamp("must be an ISO 8601 timestamp with a time zone"));
const limit = v.optional(
  v.pipe(v.string(), v.regex(/^\d+$/, "must be a whole number"), v.transform(Number), v.minValue(1), v.maxValue(MAX_PAGE)),
  String(DEFAULT_PAGE),
);

export const alertsQuerySchema = v.strictObject({
  survey_id: v.optional(v.string()),
  user_system_id: v.optional(v.string()),
  since: v.optional(isoTime),
  until: v.optional(isoTime),
  limit,
  cursor: v.optional(v.string()),
});

export const pageQuerySchema = v.strictObject({ limit, cursor: v.optional(v.string()) });

export const npsQuerySchema = v.strictObject({
  bucket: v.optional(v.picklist(["day", "week"], 'must be "day" or "week"'), "day"),
  since: v.optional(isoTime),
  until: v.optional(isoTime),
});

export const insightsQuerySchema = v.strictObject({
  bucket: v.optional(v.picklist(["day", "week"], 'must be "day" or "week"'), "week"),
  since: v.optional(isoTime),
  until: v.optional(isoTime),
});

export const exportQuerySchema = v.strictObject({
  survey_id: v.optional(v.string()),
  since: v.optional(isoTime),
  until: v.optional(isoTime),
  cursor: v.optional(v.string()),
});

/** Rows the export reads from D1 at a time: memory stays flat however large it is. */
export const EXPORT_PAGE = 500;
/**
 * Rows in one part of the export (EXPORT_PART_ROWS, default 40 pages), so that one
 * invocation makes at most 43 D1 calls (the free plan allows 50). A larger export
 * continues at `Link: <…>; rel="next"`.
 */
export const DEFAULT_EXPORT_PART_ROWS = 40 * EXPORT_PAGE;

export function exportPartRows(raw: string | undefined): number {
  const parsed = Number(raw);
  return Number.isInteger(parsed) && parsed > 0 && parsed <= DEFAULT_EXPORT_PART_ROWS ? parsed : DEFAULT_EXPORT_PART_ROWS;
}


const utc = (iso: string | undefined): string | null => (iso ? new Date(iso).toISOString() : null);


/** Opaque keyset cursors: base64url of the sort key of the last row of a page. */
export function encodeCursor(key: [string, string]): string {
  return btoa(JSON.stringify(key)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export function decodeCursor(cursor: string): [string, string] | null {
  try {
    const key: unknown = JSON.parse(atob(cursor.replace(/-/g, "+").replace(/_/g, "/")));
    if (!Array.isArray(key) || key.length !== 2) return null;
    const [first, second] = key as unknown[];
    return typeof first === "string" && typeof second === "string" ? [first, second] : null;
  } catch {
    return null;
  }
}

function badCursor(c: Context<AppEnv>): Response {
  return errorResponse(c, 400, "invalid_request", { issues: [{ path: "cursor", message: "is not a cursor this API gave" }] });
}

apiData.get("/api/alerts", documented({ summary: "Alerts, newest first, with answers and delivery status", query: alertsQuerySchema }), async (c) => {
  const query = readQuery(c, alertsQuerySchema);
  if (!query.ok) return query.response;
  const { survey_id, user_system_id, since, until, cursor } = query.value;
  const after = cursor === undefined ? null : decodeCursor(cursor);
  if (cursor !== undefined && after === null) return badCursor(c);
  const page = await listAlerts(readerOf(c.env), {
    survey_id: survey_id ?? null,
    user_system_id: user_system_id ?? null,
    since: since ? new Date(since).toISOString() : null,
    until: until ? new Date(until).toISOString() : null,
    after: after ? { submitted_at: after[0], alert_id: after[1] } : null,
    limit: query.value.limit,
  });
  const last = page.alerts.at(-1);
  const next_cursor = page.more && last ? encodeCursor([last.submitted_at, last.alert_id]) : null;
  return c.json({ ok: true, alerts: page.alerts, next_cursor });
});

apiData.get("/api/alerts/:alert_id", documented({ summary: "One alert with answers, deliveries and the raw payload" }), async (c) => {
  const alert = await getAlert(readerOf(c.env), c.req.param("alert_id"));
  if (!alert) {
    // Retention removed it from D1 after the archive took it: say where it is.
    const key = await archivedKey(readerOf(c.env), c.req.param("alert_id"));
    return key === null ? errorResponse(c, 404, "not_found") : errorResponse(c, 404, "archived", { key });
  }
  return c.json({ ok: true, alert });
});

function rejectedView(row: RejectedRow) {
  const text = typeof row.body === "string";
  let base64: string | null = null;
  if (row.body !== null && !text) {
    let binary = "";
    for (const byte of new Uint8Array(row.body as ArrayBuffer)) binary += String.fromCharCode(byte);
    base64 = btoa(binary);
  }
  return {
    id: row.id,
    reason: row.reason,
    detail: row.detail === null ? null : (JSON.parse(row.detail) as unknown),
    alert_id: row.alert_id,
    size: row.size,
    attempts: row.attempts,
    first_seen_at: row.first_seen_at,
    last_seen_at: row.last_seen_at,
    body: text ? row.body : base64,
    body_encoding: row.body === null ? null : text ? "utf-8" : "base64",
  };
}

apiData.get("/api/rejected", documented({ summary: "The quarantine, newest first", query: pageQuerySchema }), async (c) => {
  const query = readQuery(c, pageQuerySchema);
  if (!query.ok) return query.response;
  const after = query.value.cursor === undefined ? null : decodeCursor(query.value.cursor);
  if (query.value.cursor !== undefined && after === null) return badCursor(c);
  const rows = await listRejected(readerOf(c.env), {
    limit: query.value.limit + 1,
    after: after ? { last_seen_at: after[0], id: after[1] } : null,
  });
  const page = rows.slice(0, query.value.limit);
  const last = page.at(-1);
  const next_cursor = rows.length > page.length && last ? encodeCursor([last.last_seen_at, last.id]) : null;
  return c.json({ ok: true, rejected: page.map(rejectedView), next_cursor });
});

/** Runs a quarantined body through today's validation (see reprocessRejected). */
apiData.post("/api/rejected/:id/reprocess", documented({ summary: "Validate a quarantined body again and store it if it passes" }), async (c) => {
  const result = await reprocessRejected(ingestContext(c), c.req.param("id"));
  if (result.ok) return c.json(result);
  switch (result.error) {
    case "not_found":
      return errorResponse(c, 404, "not_found");
    case "too_large":
      return errorResponse(c, 422, "invalid_payload", {
        issues: [{ path: "", message: "the body was too large to keep; 1Flow's retry will bring it again" }],
      });
    case "refused":
      return refusal(c, result.outcome);
  }
});

/** A reprocessed body that is still refused: 422 with the reason, or 409 for a conflicting body. */
function refusal(c: Context<AppEnv>, outcome: Extract<ReprocessResult, { error: "refused" }>["outcome"]): Response {
  switch (outcome.outcome) {
    case "invalid_json":
      return errorResponse(c, 422, "invalid_json");
    case "invalid_payload":
      return errorResponse(c, 422, "invalid_payload", { issues: outcome.issues });
    case "conflict":
      return errorResponse(c, 409, "alert_id_conflict");
    case "erased":
      return errorResponse(c, 409, "alert_id_conflict", { issues: [{ path: "alert_id", message: "this response was erased on request" }] });
    case "spooled":
      return errorResponse(c, 503, "storage_unavailable");
  }
}

apiData.delete("/api/users/:user_system_id", documented({ summary: "Erase everything stored about one user" }), async (c) => {
  // D1 first, then the archive's parts; `more` stays true until nothing of theirs is left.
  const result = await eraseUserData({ db: c.env.DB, bucket: c.env.ARCHIVE, now: new Date(), request_id: c.get("requestId") }, c.req.param("user_system_id"));
  return c.json({ ok: true, ...result });
});

apiData.get("/api/surveys", documented({ summary: "Each survey with responses, last response time and NPS" }), async (c) => c.json({ ok: true, surveys: await listSurveys(readerOf(c.env)) }));

apiData.get("/api/surveys/:survey_id/nps", documented({ summary: "The NPS of a survey per day or week", query: npsQuerySchema }), async (c) => {
  const query = readQuery(c, npsQuerySchema);
  if (!query.ok) return query.response;
  const series = await npsSeries(readerOf(c.env), {
    survey_id: c.req.param("survey_id"),
    bucket: query.value.bucket,
    since: utc(query.value.since),
    until: utc(query.value.until),
  });
  return c.json({ ok: true, survey_id: c.req.param("survey_id"), bucket: query.value.bucket, series });
});

/** Days a window of insights covers when `since` is not given. */
export const INSIGHTS_DEFAULT_DAYS = 90;
/** Buckets one answer's series holds at most (about 3 years of days, 20 of weeks). */
export const INSIGHTS_MAX_BUCKETS = 1_100;

apiData.get(
  "/api/surveys/:survey_id/insights",
  documented({ summary: "What a survey's responses say over a window: NPS with its margin, a series, each question's answers, by platform and trigger event", query: insightsQuerySchema }),
  async (c) => {
    const query = readQuery(c, insightsQuerySchema);
    if (!query.ok) return query.response;
    const until = utc(query.value.until) ?? new Date().toISOString();
    const since = utc(query.value.since) ?? new Date(Date.parse(until) - INSIGHTS_DEFAULT_DAYS * 86_400_000).toISOString();
    if (since > until) return errorResponse(c, 400, "invalid_request", { issues: [{ path: "since", message: "must not be after until" }] });
    const buckets = (Date.parse(until) - Date.parse(since)) / ((query.value.bucket === "week" ? 7 : 1) * 86_400_000);
    if (buckets > INSIGHTS_MAX_BUCKETS) {
      return errorResponse(c, 400, "invalid_request", { issues: [{ path: "since", message: `the window holds more than ${INSIGHTS_MAX_BUCKETS} buckets of a ${query.value.bucket}` }] });
    }
    const db = readerOf(c.env);
    const survey_id = c.req.param("survey_id");
    const survey = await surveyOf(db, survey_id);
    if (survey === null) return errorResponse(c, 404, "not_found");
    const { facets, texts } = await windowFacets(db, { survey_id, since, until, facets_through: survey.facets_through, facets_hour: survey.facets_hour });
    return c.json({ ok: true, survey: { id: survey_id, name: survey.name }, since, until, ...insightsOf(facets, texts, { since, until, bucket: query.value.bucket }) });
  },
);

/**
 * One row per response, one column per screen position (named by the latest title there);
 * streamed page by page. A part holds at most EXPORT_PART_ROWS rows; when more follow, the
 * response says where with `Link: <…>; rel="next"`, and each part repeats the header row.
 */
apiData.get("/api/export.csv", documented({ summary: "Every response as CSV, one column per screen position; a large export continues at Link rel=next", query: exportQuerySchema, produces: "text/csv" }), async (c) => {
  const query = readQuery(c, exportQuerySchema);
  if (!query.ok) return query.response;
  const cursor = query.value.cursor === undefined ? null : decodeCursor(query.value.cursor);
  if (query.value.cursor !== undefined && cursor === null) return badCursor(c);
  const db = readerOf(c.env);
  const filter = { survey_id: query.value.survey_id ?? null, since: utc(query.value.since), until: utc(query.value.until) };
  const start: Keyset | null = cursor ? { submitted_at: cursor[0], alert_id: cursor[1] } : null;
  const part_rows = exportPartRows(c.env.EXPORT_PART_ROWS);
  const columns = await exportColumns(db, filter);
  // The last row of this part, and whether another follows it (an index-only walk).
  const last = await exportBoundary(db, { ...filter, after: start, offset: part_rows - 1 });
  const next = last && (await exportBoundary(db, { ...filter, after: last, offset: 0 })) ? last : null;
  c.header("content-type", "text/csv; charset=utf-8");
  const name = filter.survey_id ? `survey-${filter.survey_id.replace(/[^\w.-]/g, "_")}` : "responses";
  c.header("content-disposition", `attachment; filename="${name}.csv"`);
  if (next) {
    const url = new URL(c.req.url);
    url.searchParams.set("cursor", encodeCursor([next.submitted_at, next.alert_id]));
    c.header("link", `<${url.pathname}${url.search}>; rel="next"`);
  }
  return stream(c, async (out) => {
    await out.write(csvLine(["alert_id", "submitted_at", "user_system_id", "platform", ...columns]));
    // The part is every row after `start` up to the boundary the Link names, read now: a row
    // inserted or deleted meanwhile neither shifts the boundary (skipping a row) nor repeats one.
    let after = start;
    for (;;) {
      const rows = await exportPage(db, { ...filter, after, through: next, limit: EXPORT_PAGE });
      let chunk = "";
      for (const row of rows) {
        chunk += csvLine([row.alert_id, row.submitted_at, row.user_system_id, row.platform, ...columns.map((_, i) => row.answers[i])]);
      }
      if (chunk !== "") await out.write(chunk);
      const tail = rows[rows.length - 1];
      if (!tail || rows.length < EXPORT_PAGE) break;
      after = { submitted_at: tail.submitted_at, alert_id: tail.alert_id };
    }
  }, async (error) => {
    // The header is out: the part ends short, and the log says why.
    log("error", "export.failed", { request_id: c.get("requestId"), error: errorMessage(error) });
  });
});

/** Parts listed per page of the manifest. */
export const MANIFEST_PAGE = 1_000;
export const archiveQuerySchema = v.strictObject({
  cursor: v.optional(v.pipe(v.string(), v.regex(/^[1-9]\d*$/, "must be a cursor this endpoint returned"))),
  limit: v.optional(v.pipe(v.string(), v.regex(/^\d+$/, "must be a whole number"), v.transform(Number), v.minValue(1), v.maxValue(MANIFEST_PAGE)), String(MANIFEST_PAGE)),
});

apiData.get("/api/archive", documented({ summary: "The archive's manifest: every live Parquet part in R2, and how far it reaches", query: archiveQuerySchema }), async (c) => {
  if (!c.env.ARCHIVE) return errorResponse(c, 503, "not_configured", { message: "The ARCHIVE R2 binding is not set on this Worker: there is no archive." });
  const query = readQuery(c, archiveQuerySchema);
  if (!query.ok) return query.response;
  const db = readerOf(c.env);
  const [page, state] = await Promise.all([manifestPage(db, Number(query.value.cursor ?? 0), query.value.limit), archiveState(db)]);
  const last = page.parts.at(-1);
  return c.json({
    ok: true,
    files: page.parts.map(({ id: _, ...part }) => part),
    next_cursor: page.more && last ? String(last.id) : null,
    archived_through: state.cursor_submitted_at === "" ? null : state.cursor_submitted_at,
  });
});
