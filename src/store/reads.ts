/** SQL of the read API: alerts with their answers and per-destination delivery status. */
import type { Answer } from "../alert";
import type { DeliveryStatus } from "./deliveries";

export interface AlertSummary {
  alert_id: string;
  alert_name: string;
  project_name: string | null;
  survey_id: string;
  survey_name: string | null;
  platform: string | null;
  user_system_id: string | null;
  user_parameters: unknown;
  trigger_event_name: string | null;
  trigger_event_parameters: unknown;
  submitted_at: string;
  received_at: string;
  enqueued_at: string | null;
  answers: Answer[];
  deliveries: DeliveryView[];
}

export interface DeliveryView {
  destination: string;
  status: DeliveryStatus;
  attempts: number;
  last_status: number | null;
  last_error: string | null;
  updated_at: string;
  delivered_at: string | null;
}

type AlertRow = Omit<AlertSummary, "answers" | "deliveries" | "user_parameters" | "trigger_event_parameters"> & {
  user_parameters: string | null;
  trigger_event_parameters: string | null;
};

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
