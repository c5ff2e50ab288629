/** SQL of the read API: alerts with their answers and per-destination delivery status. */
import type { Alert, Answer } from "../alert";
import type { DeliveryStatus } from "./deliveries";

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

type AlertRow = Omit<Alert, "answers"> & { received_at: string; enqueued_at: string | null };

const ALERT_COLUMNS = `alert_id, alert_name, project_name, survey_id, survey_name, platform, user_system_id,
  user_parameters, trigger_event_name, trigger_event_parameters, submitted_at, received_at, enqueued_at`;

/** Adds answers and deliveries to alert rows, in one round trip. */
async function withDetails(db: D1Database, rows: AlertRow[]): Promise<AlertSummary[]> {
  if (rows.length === 0) return [];
  const ids = JSON.stringify(rows.map((r) => r.alert_id));
  const [answers, deliveries] = await db.batch([
    db
      .prepare(
        `SELECT alert_id, position, title, type, answer, value FROM answers
         WHERE alert_id IN (SELECT value FROM json_each(?1)) ORDER BY alert_id, position`,
      )
      .bind(ids),
    db
      .prepare(
        `SELECT alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at
         FROM deliveries WHERE alert_id IN (SELECT value FROM json_each(?1)) ORDER BY alert_id, destination`,
      )
      .bind(ids),
  ]);
  const byId = new Map<string, AlertSummary>();
  const summaries = rows.map((row) => {
    const summary: AlertSummary = {
      ...row,
      user_parameters: row.user_parameters === null ? null : (JSON.parse(row.user_parameters) as unknown),
      trigger_event_parameters:
        row.trigger_event_parameters === null ? null : (JSON.parse(row.trigger_event_parameters) as unknown),
      answers: [],
      deliveries: [],
    };
    byId.set(row.alert_id, summary);
    return summary;
  });
  for (const { alert_id, ...answer } of (answers?.results ?? []) as (Answer & { alert_id: string })[]) {
    byId.get(alert_id)?.answers.push(answer);
  }
  for (const { alert_id, ...delivery } of (deliveries?.results ?? []) as (DeliveryView & { alert_id: string })[]) {
    byId.get(alert_id)?.deliveries.push(delivery);
  }
  return summaries;
}

/** A page of alerts, newest submitted first, after the keyset `after`. */
export async function listAlerts(
  db: D1Database,
  input: {
    survey_id: string | null;
    user_system_id: string | null;
    since: string | null;
    until: string | null;
    after: { submitted_at: string; alert_id: string } | null;
    limit: number;
  },
): Promise<{ alerts: AlertSummary[]; more: boolean }> {
  const { results } = await db
    .prepare(
      `SELECT ${ALERT_COLUMNS} FROM alerts
       WHERE (?1 IS NULL OR survey_id = ?1) AND (?2 IS NULL OR user_system_id = ?2)
         AND (?3 IS NULL OR submitted_at >= ?3) AND (?4 IS NULL OR submitted_at < ?4)
         AND (?5 IS NULL OR (submitted_at, alert_id) < (?5, ?6))
       ORDER BY submitted_at DESC, alert_id DESC LIMIT ?7`,
    )
    .bind(
      input.survey_id,
      input.user_system_id,
      input.since,
      input.until,
      input.after?.submitted_at ?? null,
      input.after?.alert_id ?? null,
      input.limit + 1,
    )
    .all<AlertRow>();
  const page = results.slice(0, input.limit);
  return { alerts: await withDetails(db, page), more: results.length > page.length };
}

/** One alert with its answers, deliveries and the raw payload. */
export async function getAlert(db: D1Database, alert_id: string): Promise<(AlertSummary & { payload: string }) | null> {
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

/** Each survey with its name, responses, last response time and NPS (from the survey_nps view). */
export async function listSurveys(db: D1Database): Promise<SurveySummary[]> {
  const { results } = await db
    .prepare(
      `SELECT a.survey_id AS survey_id, MAX(a.survey_name) AS survey_name, COUNT(*) AS responses,
              MAX(a.submitted_at) AS last_response_at, n.nps AS nps
       FROM alerts a LEFT JOIN survey_nps n ON n.survey_id = a.survey_id
       GROUP BY a.survey_id ORDER BY last_response_at DESC`,
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

/** The NPS of one survey per day, or per week starting on Monday. */
export async function npsSeries(
  db: D1Database,
  input: { survey_id: string; bucket: "day" | "week"; since: string | null; until: string | null },
): Promise<NpsBucket[]> {
  const { results } = await db
    .prepare(
      `SELECT CASE ?2 WHEN 'week' THEN date(a.submitted_at, 'weekday 0', '-6 days') ELSE date(a.submitted_at) END AS bucket,
              COUNT(*) AS responses,
              SUM(CASE WHEN n.value >= 9 THEN 1 ELSE 0 END) AS promoters,
              SUM(CASE WHEN n.value BETWEEN 7 AND 8 THEN 1 ELSE 0 END) AS passives,
              SUM(CASE WHEN n.value <= 6 THEN 1 ELSE 0 END) AS detractors
       FROM answers n JOIN alerts a ON a.alert_id = n.alert_id
       WHERE a.survey_id = ?1 AND n.type = 'nps' AND n.value IS NOT NULL
         AND (?3 IS NULL OR a.submitted_at >= ?3) AND (?4 IS NULL OR a.submitted_at < ?4)
       GROUP BY bucket ORDER BY bucket`,
    )
    .bind(input.survey_id, input.bucket, input.since, input.until)
    .all<Omit<NpsBucket, "nps">>();
  return results.map((b) => ({ ...b, nps: Math.round((100 * (b.promoters - b.detractors)) / b.responses) }));
}

/** The question titles of the export's columns, in screen order, each once. */
export async function exportColumns(db: D1Database, survey_id: string | null): Promise<string[]> {
  const { results } = await db
    .prepare(
      `SELECT COALESCE(n.title, 'Question ' || (n.position + 1)) AS title, MIN(n.position) AS position
       FROM answers n JOIN alerts a ON a.alert_id = n.alert_id
       WHERE ?1 IS NULL OR a.survey_id = ?1
       GROUP BY 1 ORDER BY position, title`,
    )
    .bind(survey_id)
    .all<{ title: string }>();
  return results.map((r) => r.title);
}

export interface ExportRow {
  alert_id: string;
  submitted_at: string;
  user_system_id: string | null;
  platform: string | null;
  /** Answer text by column title. */
  answers: Map<string, string | null>;
}

/** A page of the export, oldest first, after the keyset `after`. */
export async function exportPage(
  db: D1Database,
  input: {
    survey_id: string | null;
    since: string | null;
    until: string | null;
    after: { submitted_at: string; alert_id: string } | null;
    limit: number;
  },
): Promise<ExportRow[]> {
  const { results } = await db
    .prepare(
      `SELECT alert_id, submitted_at, user_system_id, platform FROM alerts
       WHERE (?1 IS NULL OR survey_id = ?1) AND (?2 IS NULL OR submitted_at >= ?2) AND (?3 IS NULL OR submitted_at < ?3)
         AND (?4 IS NULL OR (submitted_at, alert_id) > (?4, ?5))
       ORDER BY submitted_at, alert_id LIMIT ?6`,
    )
    .bind(input.survey_id, input.since, input.until, input.after?.submitted_at ?? null, input.after?.alert_id ?? null, input.limit)
    .all<Omit<ExportRow, "answers">>();
  if (results.length === 0) return [];
  const { results: answers } = await db
    .prepare(
      `SELECT alert_id, COALESCE(title, 'Question ' || (position + 1)) AS title, answer FROM answers
       WHERE alert_id IN (SELECT value FROM json_each(?1)) ORDER BY alert_id, position`,
    )
    .bind(JSON.stringify(results.map((r) => r.alert_id)))
    .all<{ alert_id: string; title: string; answer: string | null }>();
  const rows = new Map(results.map((r) => [r.alert_id, { ...r, answers: new Map<string, string | null>() }]));
  for (const a of answers) {
    const row = rows.get(a.alert_id);
    if (row && !row.answers.has(a.title)) row.answers.set(a.title, a.answer);
  }
  return [...rows.values()];
}

export interface Totals {
  received: number;
  duplicates: number;
  rejected: number;
  deliveries: { destination: string; status: DeliveryStatus; n: number }[];
}

/** Counts since a time, for the dashboard: alerts received, quarantine attempts, deliveries by status. */
export async function totalsSince(db: D1Database, since: string): Promise<Totals> {
  const [received, duplicates, rejected, deliveries] = await db.batch([
    db.prepare("SELECT COUNT(*) AS n FROM alerts WHERE received_at >= ?1").bind(since),
    db.prepare("SELECT COALESCE(SUM(duplicates), 0) AS n FROM ingest_daily WHERE day >= substr(?1, 1, 10)").bind(since),
    db.prepare("SELECT COALESCE(SUM(attempts), 0) AS n FROM rejected_payloads WHERE last_seen_at >= ?1").bind(since),
    db
      .prepare(
        `SELECT destination, status, COUNT(*) AS n FROM deliveries WHERE updated_at >= ?1
         GROUP BY destination, status ORDER BY destination, status`,
      )
      .bind(since),
  ]);
  return {
    received: (received?.results[0] as { n: number } | undefined)?.n ?? 0,
    duplicates: (duplicates?.results[0] as { n: number } | undefined)?.n ?? 0,
    rejected: (rejected?.results[0] as { n: number } | undefined)?.n ?? 0,
    deliveries: (deliveries?.results ?? []) as Totals["deliveries"],
  };
}

/** Deliveries not (yet) delivered: failed, dead and pending ones, newest first. */
export async function undeliveredDeliveries(db: D1Database, limit: number): Promise<(DeliveryView & { alert_id: string })[]> {
  const { results } = await db
    .prepare(
      `SELECT alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at
       FROM deliveries WHERE status <> 'delivered' ORDER BY updated_at DESC LIMIT ?1`,
    )
    .bind(limit)
    .all<DeliveryView & { alert_id: string }>();
  return results;
}
