/**
 * SQL of `alerts` (answers inline as JSON; `answers` is a view over it), the per-survey
 * rollups written beside it, and the outbox.
 *
 * Cost per new alert (rows written, as D1 bills them): the alert and its four index
 * entries (5), its survey's day (1); a repeat writes only its day's duplicate counter.
 */
import { type Alert, npsCounts } from "../alert";
import type { D1Reader } from "./d1";

export interface StoreAlertInput {
  alert: Alert;
  /** SHA-256 hex of `alert.user_system_id` (null without one): finds an erased user's tombstone. */
  user_sha256: string | null;
  /** The answers as `alerts.answers_json` keeps them (see answersJson). */
  answers_json: string;
  /** The body exactly as received. */
  payload: string;
  payload_sha256: string;
  received_at: string;
  /** When this call stores it (now): a late response waits ARCHIVE_DELAY_MINUTES from here. */
  stored_at: string;
}

export interface StoreAlertResult {
  /** True when this call created the row; false when the alert_id was known. */
  inserted: boolean;
  /** True when the alert was erased on request: nothing is stored. */
  erased: boolean;
  /** True when the stored body is the same as this one. */
  same_body: boolean;
  /** True when the Queue has not yet accepted a message for the stored alert. */
  needs_enqueue: boolean;
}

// A response erased on request (erased_alerts) is not stored again when 1Flow retries it, nor
// a response of an erased user submitted before their erasure (erased_users, by ?16 = the
// SHA-256 of user_system_id; NULL without a user), nor one the archive holds (archived_alerts
// outlives retention): a copy that comes back after retention removed it from D1, a spool
// message or a late retry, is a duplicate, never a new response to deliver again.
const INSERT_ALERT = `INSERT INTO alerts (alert_id, alert_name, project_name, survey_id, survey_name,
  platform, user_system_id, user_parameters, trigger_event_name, trigger_event_parameters,
  submitted_at, received_at, payload, payload_sha256, answers_json, user_sha256)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16
WHERE NOT EXISTS (SELECT 1 FROM erased_alerts WHERE alert_id = ?1)
  AND NOT EXISTS (SELECT 1 FROM archived_alerts WHERE alert_id = ?1)
  AND NOT EXISTS (SELECT 1 FROM erased_users WHERE user_sha256 = ?16 AND erased_at >= ?11)
ON CONFLICT (alert_id) DO NOTHING`;

// Right after INSERT_ALERT in the same batch: changes() is 1 only when that insert wrote the
// alert, so a repeat counts nothing. The day is the UTC day of submission; ?11, the day it
// arrived, notes one that arrived on a later day (arrived_later), so that the overview can count
// by arrival without a row written for the common case.
const COUNT_RESPONSE = `INSERT INTO survey_daily (survey_id, day, survey_name, responses, nps_responses, promoters,
  passives, detractors, last_response_at, screens, titles, arrived_later)
SELECT ?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11 <> ?2 WHERE changes() = 1
ON CONFLICT (survey_id, day) DO UPDATE SET
  survey_name = CASE WHEN excluded.last_response_at >= COALESCE(last_response_at, '') THEN excluded.survey_name ELSE survey_name END,
  titles = CASE WHEN excluded.last_response_at >= COALESCE(last_response_at, '') THEN excluded.titles ELSE titles END,
  responses = responses + 1,
  nps_responses = nps_responses + excluded.nps_responses,
  promoters = promoters + excluded.promoters,
  passives = passives + excluded.passives,
  detractors = detractors + excluded.detractors,
  last_response_at = MAX(COALESCE(last_response_at, ''), excluded.last_response_at),
  screens = MAX(screens, excluded.screens),
  arrived_later = arrived_later + excluded.arrived_later`;

// Right after COUNT_RESPONSE: a new survey gets its row (once); a response for a day the cron
// has already folded into the totals goes into them too, and sends the insights' fold back
// before its day (the same row). One submitted before the insights' mark of today's hourly
// fold (migrations/0021) moves facets_version on, and takes back the folded hours it falls in.
// Otherwise nothing is written.
const COUNT_SURVEY = `INSERT INTO surveys (survey_id, survey_name) SELECT ?1, ?3 WHERE changes() = 1
ON CONFLICT (survey_id) DO UPDATE SET
  facets_through = CASE WHEN surveys.folded_through >= ?2 THEN MIN(facets_through, date(?2, '-1 day')) ELSE facets_through END,
  facets_hour = CASE WHEN ?8 < facets_hour THEN '' ELSE facets_hour END,
  facets_version = facets_version + 1,
  responses = responses + (surveys.folded_through >= ?2),
  nps_responses = nps_responses + (surveys.folded_through >= ?2) * ?4, promoters = promoters + (surveys.folded_through >= ?2) * ?5,
  passives = passives + (surveys.folded_through >= ?2) * ?6, detractors = detractors + (surveys.folded_through >= ?2) * ?7,
  last_response_at = CASE WHEN surveys.folded_through >= ?2 THEN MAX(COALESCE(last_response_at, ''), ?8) ELSE last_response_at END
WHERE surveys.folded_through >= ?2 OR ?8 < surveys.facets_mark`;

// The stored row; or, once retention removed it, what the archive keeps of it (its body's hash):
// the same body again is a duplicate, another a conflict, quarantined (never enqueued again).
const SELECT_STORED = `SELECT payload_sha256, enqueued_at FROM alerts WHERE alert_id = ?1
UNION ALL
SELECT payload_sha256, 'archived' FROM archived_alerts WHERE alert_id = ?1 AND payload_sha256 IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?1)`;

// Counts, in the day this request arrived, a repeat delivery (the stored row was received by an
// earlier request), or a new response submitted on another day (arrived_other_day: with
// survey_daily.arrived_later, what arrived each day). A new response of the day writes nothing.
const COUNT_ARRIVAL = `INSERT INTO ingest_daily (day, duplicates, arrived_other_day)
SELECT substr(?2, 1, 10), a.received_at <> ?2, a.received_at = ?2 AND substr(a.submitted_at, 1, 10) <> substr(?2, 1, 10)
FROM alerts AS a WHERE a.alert_id = ?1 AND (a.received_at <> ?2 OR substr(a.submitted_at, 1, 10) <> substr(?2, 1, 10))
ON CONFLICT (day) DO UPDATE SET duplicates = duplicates + excluded.duplicates, arrived_other_day = arrived_other_day + excluded.arrived_other_day`;

// Last in the batch: a response this request stored (its received_at and body are the row's)
// whose submitted_at the archive has already read past is noted as late, so the archive takes
// it on a later tick; never one the archive holds already (a spool message that came back after
// the archive took its response: noting it would archive it twice). Otherwise it reads one row
// and writes none.
const NOTE_LATE = `INSERT INTO archive_late (alert_id, stored_at)
SELECT ?1, ?2 WHERE ?3 <= (SELECT read_through FROM archive_state WHERE id = 1)
  AND EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?1 AND received_at = ?4 AND payload_sha256 = ?5)
  AND NOT EXISTS (SELECT 1 FROM archived_alerts WHERE alert_id = ?1)
ON CONFLICT (alert_id) DO NOTHING`;

/** The answers as `alerts.answers_json` keeps them (position is the array index). */
export function answersJson(alert: Alert): string {
  return JSON.stringify(alert.answers.map(({ title, type, answer, value }) => ({ title, type, answer, value })));
}

/**
 * Stores an alert with its answers and counts it in its survey's day, in one atomic
 * batch (one round trip). Whether the alert was new is read from that write itself, so
 * two concurrent deliveries of one alert see exactly one `inserted: true`.
 */
export async function storeAlert(db: D1Database, input: StoreAlertInput): Promise<StoreAlertResult> {
  const { alert, answers_json, payload, payload_sha256, received_at, user_sha256 } = input;
  const day = alert.submitted_at.slice(0, 10);
  const nps = npsCounts(alert.answers);
  const titles = JSON.stringify(alert.answers.map((a) => a.title));
  const [inserted, , , stored] = await db.batch([
    db
      .prepare(INSERT_ALERT)
      .bind(
        alert.alert_id,
        alert.alert_name,
        alert.project_name,
        alert.survey_id,
        alert.survey_name,
        alert.platform,
        alert.user_system_id,
        alert.user_parameters,
        alert.trigger_event_name,
        alert.trigger_event_parameters,
        alert.submitted_at,
        received_at,
        payload,
        payload_sha256,
        answers_json,
        user_sha256,
      ),
    db
      .prepare(COUNT_RESPONSE)
      .bind(alert.survey_id, day, alert.survey_name, nps.responses, nps.promoters, nps.passives, nps.detractors, alert.submitted_at, alert.answers.length, titles, received_at.slice(0, 10)),
    db.prepare(COUNT_SURVEY).bind(alert.survey_id, day, alert.survey_name, nps.responses, nps.promoters, nps.passives, nps.detractors, alert.submitted_at),
    db.prepare(SELECT_STORED).bind(alert.alert_id),
    db.prepare(COUNT_ARRIVAL).bind(alert.alert_id, received_at),
    db.prepare(NOTE_LATE).bind(alert.alert_id, input.stored_at, alert.submitted_at, received_at, payload_sha256),
  ]);
  if (!inserted || !stored) throw new Error("D1 batch returned fewer results than statements");
  const row = stored.results[0] as { payload_sha256: string; enqueued_at: string | null } | undefined;
  if (!row) return { inserted: false, erased: true, same_body: true, needs_enqueue: false };
  const same_body = row.payload_sha256 === payload_sha256;
  return {
    inserted: inserted.meta.changes === 1,
    erased: false,
    same_body,
    needs_enqueue: same_body && row.enqueued_at === null,
  };
}

/** Counts a response stored from the spool, in the day it first arrived. */
export async function countSpooled(db: D1Database, received_at: string): Promise<void> {
  await db
    .prepare("INSERT INTO ingest_daily (day, spooled) VALUES (substr(?1, 1, 10), 1) ON CONFLICT (day) DO UPDATE SET spooled = spooled + 1")
    .bind(received_at)
    .run();
}

/** Records that the Queue has the alerts' messages (the outbox mark), in one statement. */
export async function markEnqueued(db: D1Database, alert_ids: string[], enqueued_at: string): Promise<void> {
  if (alert_ids.length === 0) return;
  await db
    .prepare(
      `UPDATE alerts SET enqueued_at = ?1, outbox_claimed_until = NULL
       WHERE enqueued_at IS NULL AND alert_id IN (SELECT value FROM json_each(?2))`,
    )
    .bind(enqueued_at, JSON.stringify(alert_ids))
    .run();
}

/** Answers when D1 does and holds the schema: the health check (reads no row). */
export async function ping(db: D1Database): Promise<void> {
  await db.prepare("SELECT 1 FROM alerts WHERE alert_id = ''").all();
}

/**
 * Claims up to `limit` alerts that the Queue never accepted (received before
 * `received_before`), holding them until `claimed_until` so that an overlapping sweep
 * skips them. One statement on the outbox index: two sweeps never claim one alert.
 */
export async function claimOutbox(
  db: D1Database,
  input: { received_before: string; now: string; claimed_until: string; limit: number },
): Promise<string[]> {
  const { results } = await db
    .prepare(
      `UPDATE alerts SET outbox_claimed_until = ?3
       WHERE alert_id IN (
         SELECT alert_id FROM alerts INDEXED BY alerts_outbox
         WHERE enqueued_at IS NULL AND received_at < ?1
           AND (outbox_claimed_until IS NULL OR outbox_claimed_until < ?2)
         ORDER BY received_at LIMIT ?4)
       RETURNING alert_id`,
    )
    .bind(input.received_before, input.now, input.claimed_until, input.limit)
    .all<{ alert_id: string }>();
  return results.map((r) => r.alert_id);
}

/** Puts alerts back in the outbox, for the sweep to send again. */
export async function returnToOutbox(db: D1Database, alert_ids: string[]): Promise<void> {
  if (alert_ids.length === 0) return;
  await db
    .prepare(
      `UPDATE alerts SET enqueued_at = NULL, outbox_claimed_until = NULL
       WHERE alert_id IN (SELECT value FROM json_each(?1))`,
    )
    .bind(JSON.stringify(alert_ids))
    .run();
}

/** Whether an alert is stored. */
export async function alertExists(db: D1Reader, alert_id: string): Promise<boolean> {
  return (await db.prepare("SELECT 1 AS x FROM alerts WHERE alert_id = ?1").bind(alert_id).first()) !== null;
}
