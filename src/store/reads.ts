/**
 * SQL of the read API and the dashboard. Every read walks an index that matches its
 * ORDER BY, or a rollup kept on write, so what it reads is bounded by its page size, the
 * number of surveys or destinations, or days: never by the number of stored responses.
 * test/cost.test.ts holds each to its rows read, and EXPLAIN QUERY PLAN to its index.
 */
import type { Alert } from "../alert";
import type { D1Reader } from "./d1";
import { type DeliveryStatus, parseAnswers } from "./deliveries";

/** An alert as the API shows it: parameters parsed, with answers and deliveries. */
export type AlertSummary = Omit<Alert, "user_parameters" | "trigger_event_parameters"> & {
  user_parameters: unknown;
  trigger_event_parameters: unknown;
  received_at: string;
  enqueued_at: string | null;
  deliveries: DeliveryView[];
};

export interface DeliveryView {
  destination: string;
  status: DeliveryStatus;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  updated_at: string;
  delivered_at: string | null;
}

type AlertRow = Omit<Alert, "answers"> & { received_at: string; enqueued_at: string | null; answers_json: string };

const ALERT_COLUMNS = `alert_id, alert_name, project_name, survey_id, survey_name, platform, user_system_id,
  user_parameters, trigger_event_name, trigger_event_parameters, submitted_at, received_at, enqueued_at, answers_json`;

/** Parses the rows' answers and adds their deliveries (one lookup on the ledger's key). */
async function withDetails(db: D1Reader, rows: AlertRow[]): Promise<AlertSummary[]> {
  if (rows.length === 0) return [];
  const { results } = await db
    .prepare(
      `SELECT alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at
       FROM deliveries WHERE alert_id IN (SELECT value FROM json_each(?1)) ORDER BY alert_id, destination`,
    )
    .bind(JSON.stringify(rows.map((r) => r.alert_id)))
    .all<DeliveryView & { alert_id: string }>();
  const byId = new Map<string, DeliveryView[]>();
  for (const { alert_id, ...delivery } of results) byId.set(alert_id, [...(byId.get(alert_id) ?? []), delivery]);
  return rows.map(({ answers_json, ...row }) => ({
    ...row,
    user_parameters: row.user_parameters === null ? null : (JSON.parse(row.user_parameters) as unknown),
    trigger_event_parameters: row.trigger_event_parameters === null ? null : (JSON.parse(row.trigger_event_parameters) as unknown),
    answers: parseAnswers(answers_json),
    deliveries: byId.get(row.alert_id) ?? [],
  }));
}

export type Keyset = { submitted_at: string; alert_id: string };

/**
 * A page of alerts, newest submitted first, after the keyset `after`. The statement is
 * built for its filter so that SQLite walks the one index that matches it: by user
 * (alerts_by_user), by survey (alerts_by_survey_time), or by time (alerts_by_time).
 */
export function alertsPageQuery(
  input: {
    survey_id: string | null;
    user_system_id: string | null;
    since: string | null;
    until: string | null;
    after: Keyset | null;
    limit: number;
  },
): { sql: string; params: unknown[] } {
  const where: string[] = [];
  const binds: unknown[] = [];
  const param = (value: unknown) => `?${binds.push(value)}`;
  let index = "alerts_by_time";
  if (input.user_system_id !== null) {
    index = "alerts_by_user";
    where.push(`user_system_id = ${param(input.user_system_id)}`);
    // Unary +: filter by survey without letting it pick the survey index instead.
    if (input.survey_id !== null) where.push(`+survey_id = ${param(input.survey_id)}`);
  } else if (input.survey_id !== null) {
    index = "alerts_by_survey_time";
    where.push(`survey_id = ${param(input.survey_id)}`);
  }
  if (input.since !== null) where.push(`submitted_at >= ${param(input.since)}`);
  if (input.until !== null) where.push(`submitted_at < ${param(input.until)}`);
  if (input.after !== null) where.push(`(submitted_at, alert_id) < (${param(input.after.submitted_at)}, ${param(input.after.alert_id)})`);
  const limit = param(input.limit);
  return {
    sql: `SELECT ${ALERT_COLUMNS} FROM alerts INDEXED BY ${index}
          ${where.length > 0 ? `WHERE ${where.join(" AND ")}` : ""}
          ORDER BY submitted_at DESC, alert_id DESC LIMIT ${limit}`,
    params: binds,
  };
}

/** A page of alerts, newest submitted first, after the keyset `after`. */
export async function listAlerts(
  db: D1Reader,
  input: Parameters<typeof alertsPageQuery>[0],
): Promise<{ alerts: AlertSummary[]; more: boolean }> {
  const { sql, params } = alertsPageQuery({ ...input, limit: input.limit + 1 });
  const { results } = await db.prepare(sql).bind(...params).all<AlertRow>();
  const page = results.slice(0, input.limit);
  return { alerts: await withDetails(db, page), more: results.length > page.length };
}

/** One alert with its answers, deliveries and the raw payload. */
export async function getAlert(db: D1Reader, alert_id: string): Promise<(AlertSummary & { payload: string }) | null> {
  const row = await db
    .prepare(`SELECT ${ALERT_COLUMNS}, payload FROM alerts WHERE alert_id = ?1`)
    .bind(alert_id)
    .first<AlertRow & { payload: string }>();
  if (!row) return null;
  const { payload, ...rest } = row;
  const [summary] = await withDetails(db, [rest]);
  return summary ? { ...summary, payload } : null;
}

export interface SurveySummary {
  survey_id: string;
  survey_name: string | null;
  responses: number;
  last_response_at: string;
  nps: number | null;
}

/** Each survey with its name, responses, last response time and NPS, from the rollups (survey_totals). */
export async function listSurveys(db: D1Reader): Promise<SurveySummary[]> {
  const { results } = await db
    .prepare(
      `SELECT survey_id, survey_name, responses, last_response_at,
              CASE WHEN nps_responses > 0 THEN CAST(ROUND(100.0 * (promoters - detractors) / nps_responses) AS INTEGER) END AS nps
       FROM survey_totals WHERE responses > 0 ORDER BY last_response_at DESC`,
    )
    .all<SurveySummary>();
  return results;
}

export interface NpsBucket {
  bucket: string;
  responses: number;
  promoters: number;
  passives: number;
  detractors: number;
  nps: number;
}

/** The NPS of one survey per UTC day, or per week starting on Monday, from its days (survey_daily's key). */
export async function npsSeries(
  db: D1Reader,
  input: { survey_id: string; bucket: "day" | "week"; since: string | null; until: string | null },
): Promise<NpsBucket[]> {
  const { results } = await db
    .prepare(
      `SELECT CASE ?2 WHEN 'week' THEN date(day, 'weekday 0', '-6 days') ELSE day END AS bucket,
              SUM(nps_responses) AS responses, SUM(promoters) AS promoters, SUM(passives) AS passives, SUM(detractors) AS detractors
       FROM survey_daily
       WHERE survey_id = ?1 AND day >= COALESCE(substr(?3, 1, 10), '') AND (?4 IS NULL OR day < ?4) AND nps_responses > 0
       GROUP BY bucket ORDER BY bucket`,
    )
    .bind(input.survey_id, input.bucket, input.since, input.until === null ? null : ceilDay(input.until))
    .all<Omit<NpsBucket, "nps">>();
  return results.map((b) => ({ ...b, nps: Math.round((100 * (b.promoters - b.detractors)) / b.responses) }));
}

/** The first UTC day that starts at or after `iso`: an `until` inside a day keeps that day. */
function ceilDay(iso: string): string {
  const ms = Date.parse(iso);
  return new Date(Math.ceil(ms / 86_400_000) * 86_400_000).toISOString().slice(0, 10);
}

/**
 * The export's question columns, by screen position: as many as the longest response in
 * range has, each named by the title the latest response gave that position. Read from
 * the survey's days (survey_daily), not from the responses.
 */
export async function exportColumns(db: D1Reader, input: { survey_id: string | null; since: string | null; until: string | null }): Promise<string[]> {
  const { results } = await db
    .prepare(
      `SELECT screens, titles FROM survey_daily
       WHERE (?1 IS NULL OR survey_id = ?1) AND day >= COALESCE(substr(?2, 1, 10), '') AND (?3 IS NULL OR day <= substr(?3, 1, 10))
       ORDER BY day DESC, last_response_at DESC`,
    )
    .bind(input.survey_id, input.since, input.until)
    .all<{ screens: number; titles: string | null }>();
  const count = Math.max(0, ...results.map((r) => r.screens));
  const names: (string | null)[] = Array.from({ length: count }, () => null);
  for (const row of results) {
    const titles = row.titles === null ? [] : (JSON.parse(row.titles) as (string | null)[]);
    titles.forEach((title, position) => {
      if (position < count && names[position] === null && title !== null && title !== "") names[position] = title;
    });
  }
  return names.map((name, position) => name ?? `Question ${position + 1}`);
}

export interface ExportRow {
  alert_id: string;
  submitted_at: string;
  user_system_id: string | null;
  platform: string | null;
  /** Answer text by screen position. */
  answers: (string | null)[];
}

export interface ExportFilter {
  survey_id: string | null;
  since: string | null;
  until: string | null;
}

/**
 * The export's WHERE, built for its filter so that SQLite seeks the index straight to the
 * keyset (a row-value range), whatever page it is on: alerts_by_survey_time for one
 * survey, alerts_by_time otherwise.
 */
function exportWhere(input: ExportFilter & { after: Keyset | null; through?: Keyset | null }): { sql: string; binds: unknown[]; index: string } {
  const where: string[] = [];
  const binds: unknown[] = [];
  const param = (value: unknown) => `?${binds.push(value)}`;
  if (input.survey_id !== null) where.push(`survey_id = ${param(input.survey_id)}`);
  if (input.after !== null) where.push(`(submitted_at, alert_id) > (${param(input.after.submitted_at)}, ${param(input.after.alert_id)})`);
  if (input.through) where.push(`(submitted_at, alert_id) <= (${param(input.through.submitted_at)}, ${param(input.through.alert_id)})`);
  if (input.since !== null) where.push(`submitted_at >= ${param(input.since)}`);
  if (input.until !== null) where.push(`submitted_at < ${param(input.until)}`);
  return {
    index: input.survey_id === null ? "alerts_by_time" : "alerts_by_survey_time",
    sql: where.length > 0 ? where.join(" AND ") : "true",
    binds,
  };
}

/**
 * A page of the export, oldest first, after the keyset `after` and up to `through` (the
 * part's last row) when given: one row read per response.
 */
export function exportPageQuery(input: ExportFilter & { after: Keyset | null; through?: Keyset | null; limit: number }): { sql: string; params: unknown[] } {
  const where = exportWhere(input);
  return {
    sql: `SELECT alert_id, submitted_at, user_system_id, platform, answers_json FROM alerts INDEXED BY ${where.index}
          WHERE ${where.sql} ORDER BY submitted_at, alert_id LIMIT ?${where.binds.length + 1}`,
    params: [...where.binds, input.limit],
  };
}

export async function exportPage(db: D1Reader, input: ExportFilter & { after: Keyset | null; through?: Keyset | null; limit: number }): Promise<ExportRow[]> {
  const { sql, params } = exportPageQuery(input);
  const { results } = await db
    .prepare(sql)
    .bind(...params)
    .all<Omit<ExportRow, "answers"> & { answers_json: string }>();
  return results.map(({ answers_json, ...row }) => ({ ...row, answers: parseAnswers(answers_json).map((a) => a.answer) }));
}

/**
 * The key of the `offset`-th row after `after` (0-based), or null when there are fewer:
 * where an export part ends. Walks the index only (one row read per row skipped).
 */
export async function exportBoundary(db: D1Reader, input: ExportFilter & { after: Keyset | null; offset: number }): Promise<Keyset | null> {
  const where = exportWhere(input);
  return db
    .prepare(
      `SELECT submitted_at, alert_id FROM alerts INDEXED BY ${where.index}
       WHERE ${where.sql} ORDER BY submitted_at, alert_id LIMIT 1 OFFSET ?${where.binds.length + 1}`,
    )
    .bind(...where.binds, input.offset)
    .first<Keyset>();
}

export interface Totals {
  /** New responses that arrived in the period (whatever their submission date). */
  responses: number;
  duplicates: number;
  rejected: number;
  /** Responses stored from the spool: D1 was down when they arrived. */
  spooled: number;
}

/**
 * New responses that arrived each UTC day: a survey day's responses less those of them that
 * arrived on a later day, plus the day's arrivals submitted on another day. Erasure and
 * retention take theirs out. Reads surveys × days rows and one per day.
 */
const ARRIVALS = `SELECT day, SUM(n) AS responses FROM (
  SELECT day, responses - arrived_later AS n FROM survey_daily WHERE survey_id IN (SELECT survey_id FROM surveys) AND day >= ?1
  UNION ALL
  SELECT day, arrived_other_day FROM ingest_daily WHERE day >= ?1)
GROUP BY day ORDER BY day`;

/**
 * Repeats, refusals and spool arrivals per UTC day since `since_day` (ingest_daily: one row a
 * day); with the day's arrivals (see arrivalsByDay), the overview's totals.
 */
export async function ingestSince(db: D1Reader, since_day: string): Promise<(Omit<Totals, "responses"> & { day: string })[]> {
  const { results } = await db
    .prepare("SELECT day, duplicates, rejected, spooled FROM ingest_daily WHERE day >= ?1 ORDER BY day")
    .bind(since_day)
    .all<Omit<Totals, "responses"> & { day: string }>();
  return results;
}

/** Per UTC day since `since_day`: the new responses that arrived (days without any are absent). */
export async function arrivalsByDay(db: D1Reader, since_day: string): Promise<{ day: string; responses: number }[]> {
  const { results } = await db.prepare(ARRIVALS).bind(since_day).all<{ day: string; responses: number }>();
  return results;
}

export interface DestinationDay {
  destination: string;
  day: string;
  delivered: number;
  failed: number;
  dead: number;
}

/**
 * Per destination per UTC day since `since_day`: deliveries, failed attempts and deliveries
 * gone dead; the days the cron folded from destination_daily, the later ones (today, and
 * yesterday until it is folded) from destination_hourly. Reads destinations × days rows.
 */
export async function destinationDays(db: D1Reader, since_day: string): Promise<DestinationDay[]> {
  const { results } = await db
    .prepare(
      `SELECT destination, day, SUM(delivered) AS delivered, SUM(failed) AS failed, SUM(dead) AS dead FROM (
         SELECT destination, day, delivered, failed, dead FROM destination_daily WHERE day >= ?1
         UNION ALL
         SELECT destination, substr(hour, 1, 10), delivered, failed, dead FROM destination_hourly
         WHERE hour >= ?1 AND substr(hour, 1, 10) > COALESCE((SELECT value FROM settings WHERE key = 'destination_days_through'), ''))
       GROUP BY destination, day ORDER BY destination, day`,
    )
    .bind(since_day)
    .all<DestinationDay>();
  return results;
}

export interface DestinationCounts {
  destination: string;
  pending: number;
  delivered_24h: number;
  failed_24h: number;
  last_delivered_at: string | null;
}

/** Per destination: pending deliveries, and delivered and failed over the last 24 hours (counters kept on write). */
export async function destinationCounts(db: D1Reader, since_hour: string): Promise<DestinationCounts[]> {
  const { results } = await db
    .prepare(
      `SELECT destination, SUM(pending) AS pending, SUM(delivered) AS delivered_24h, SUM(failed) AS failed_24h,
              MAX(last_delivered_at) AS last_delivered_at
       FROM (SELECT destination, pending, 0 AS delivered, 0 AS failed, NULL AS last_delivered_at FROM destination_health
             UNION ALL
             SELECT destination, 0, delivered, failed, last_delivered_at FROM destination_hourly WHERE hour >= ?1)
       GROUP BY destination ORDER BY destination`,
    )
    .bind(since_hour)
    .all<DestinationCounts>();
  return results;
}

/** Deliveries not (yet) delivered: failed, dead and pending ones, newest first (deliveries_open, per status). */
export async function undeliveredDeliveries(db: D1Reader, limit: number): Promise<(DeliveryView & { alert_id: string })[]> {
  const columns = "alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at";
  const per = (status: DeliveryStatus, n: number) =>
    `SELECT * FROM (SELECT ${columns} FROM deliveries INDEXED BY deliveries_open WHERE status = '${status}' AND status <> 'delivered' ORDER BY updated_at DESC LIMIT ?${n})`;
  const { results } = await db
    .prepare(`${per("failed", 1)} UNION ALL ${per("dead", 1)} UNION ALL ${per("pending", 1)} ORDER BY updated_at DESC LIMIT ?1`)
    .bind(limit)
    .all<DeliveryView & { alert_id: string }>();
  return results;
}
