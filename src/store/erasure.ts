/**
 * SQL of erasure: a user's data on request, and everything past the retention period.
 * Work goes in chunks of ERASE_CHUNK alerts, each one batch whose parameters are one JSON
 * array (no parameter list that could pass D1's limits); the survey rollups lose what the
 * erased alerts added to them in the same batch.
 */
import { sha256Hex } from "../hash";
import type { D1Reader } from "./d1";
import { countRetainedStatement } from "./backfills";

/** Alerts erased per batch. */
export const ERASE_CHUNK = 100;

export interface ErasureCounts {
  alerts: number;
  answers: number;
  deliveries: number;
  rejected_payloads: number;
}

export function noErasure(): ErasureCounts {
  return { alerts: 0, answers: 0, deliveries: 0, rejected_payloads: 0 };
}

export function addErasure(total: ErasureCounts, more: ErasureCounts): ErasureCounts {
  return {
    alerts: total.alerts + more.alerts,
    answers: total.answers + more.answers,
    deliveries: total.deliveries + more.deliveries,
    rejected_payloads: total.rejected_payloads + more.rejected_payloads,
  };
}

const IN_IDS = "alert_id IN (SELECT value FROM json_each(?1))";

// What the alerts ?1 added to their surveys' days: responses and NPS answers by category.
const ADDED = `SELECT survey_id, day, COUNT(*) AS responses, SUM(nps) AS nps_responses, SUM(promoters) AS promoters,
       SUM(passives) AS passives, SUM(detractors) AS detractors, SUM(later) AS arrived_later
FROM (SELECT a.survey_id AS survey_id, substr(a.submitted_at, 1, 10) AS day,
        substr(a.received_at, 1, 10) <> substr(a.submitted_at, 1, 10) AS later,
        (SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' IS NOT NULL) AS nps,
        (SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' >= 9) AS promoters,
        (SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' BETWEEN 7 AND 8) AS passives,
        (SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' <= 6) AS detractors
      FROM alerts AS a WHERE a.${IN_IDS})
GROUP BY survey_id, day`;

/** Days a tombstone of an erased response is kept: longer than 1Flow's three days of retries. */
export const TOMBSTONE_DAYS = 7;

/**
 * How long after a response was received 1Flow may still send it again: three days of hourly
 * retries from its first attempt (which came at or before our received_at), and an hour more.
 * Retention tombstones a response it deletes inside this window, so that the retry is refused
 * as a duplicate instead of being stored, delivered and archived again.
 */
export const SENDER_RETRY_WINDOW_IN_HOURS = 3 * 24 + 1;

/** Tombstones to leave: these alerts' ids, refused for TOMBSTONE_DAYS from `at`. */
export interface Tombstones {
  at: string;
  alert_ids: string[];
}

/**
 * Deletes the given alerts (at most ERASE_CHUNK) with their deliveries and quarantined
 * conflicts, in one batch; with `tombstones`, leaves one for each of those alerts so that a
 * later retry does not store it again.
 */
async function eraseChunk(db: D1Database, alert_ids: string[], tombstones: Tombstones | null = null, insights: "refold" | "keep" = "keep"): Promise<ErasureCounts> {
  if (alert_ids.length === 0) return noErasure();
  const ids = JSON.stringify(alert_ids);
  // An erasure on request takes the responses out of the insights too: their text answers at
  // once, their counts when the cron folds their days again (facets_through moves back before
  // the first of them; the page counts the days after it live meanwhile). Retention takes
  // their text answers, and keeps the counts that were folded: insights still count what it
  // removed from D1 (the archive holds it), unless a day is folded again later (a late
  // response, an erasure), which counts only what D1 still holds of it.
  // Their text answers go at once either way (free text is the respondent's own words).
  const texts = db
    .prepare(
      `DELETE FROM survey_texts WHERE (survey_id, day) IN (SELECT survey_id, substr(submitted_at, 1, 10) FROM alerts WHERE ${IN_IDS})
         AND alert_id IN (SELECT value FROM json_each(?1))`,
    )
    .bind(ids);
  // Retention (insights kept): a running backfill counts what it will not find in D1 any more.
  const refold =
    insights === "keep"
      ? [texts, countRetainedStatement(db, ids)]
      : [
          texts,
          db
            .prepare(
              `UPDATE surveys SET facets_through = MIN(surveys.facets_through, date(t.first_day, '-1 day')), facets_hour = '', facets_version = surveys.facets_version + 1
               FROM (SELECT survey_id, MIN(substr(submitted_at, 1, 10)) AS first_day FROM alerts WHERE ${IN_IDS} GROUP BY survey_id) AS t
               WHERE surveys.survey_id = t.survey_id`,
            )
            .bind(ids),
        ];
  const leave = tombstones === null || tombstones.alert_ids.length === 0
    ? []
    : [
        db
          .prepare(`INSERT INTO erased_alerts (alert_id, erased_at) SELECT value, ?2 FROM json_each(?1) WHERE true ON CONFLICT (alert_id) DO NOTHING`)
          .bind(JSON.stringify(tombstones.alert_ids), tombstones.at),
      ];
  const results = await db.batch([
    ...refold,
    db
      .prepare(
        `UPDATE survey_daily SET responses = survey_daily.responses - g.responses, nps_responses = survey_daily.nps_responses - g.nps_responses,
           promoters = survey_daily.promoters - g.promoters, passives = survey_daily.passives - g.passives,
           detractors = survey_daily.detractors - g.detractors, arrived_later = survey_daily.arrived_later - g.arrived_later
         FROM (${ADDED}) AS g WHERE survey_daily.survey_id = g.survey_id AND survey_daily.day = g.day`,
      )
      .bind(ids),
    // What arrived on another day than its submission's is counted in its arrival's day too.
    db
      .prepare(
        `UPDATE ingest_daily SET arrived_other_day = ingest_daily.arrived_other_day - g.n
         FROM (SELECT substr(received_at, 1, 10) AS day, COUNT(*) AS n FROM alerts
               WHERE ${IN_IDS} AND substr(received_at, 1, 10) <> substr(submitted_at, 1, 10) GROUP BY 1) AS g
         WHERE ingest_daily.day = g.day`,
      )
      .bind(ids),
    db
      .prepare(
        `UPDATE surveys SET responses = surveys.responses - t.responses, nps_responses = surveys.nps_responses - t.nps_responses,
           promoters = surveys.promoters - t.promoters, passives = surveys.passives - t.passives, detractors = surveys.detractors - t.detractors
         FROM (SELECT g.survey_id AS survey_id, SUM(g.responses) AS responses, SUM(g.nps_responses) AS nps_responses,
                 SUM(g.promoters) AS promoters, SUM(g.passives) AS passives, SUM(g.detractors) AS detractors
               FROM (${ADDED}) AS g JOIN surveys AS s ON s.survey_id = g.survey_id AND g.day <= s.folded_through
               GROUP BY g.survey_id) AS t
         WHERE surveys.survey_id = t.survey_id`,
      )
      .bind(ids),
    // Counted from RETURNING: meta.changes also counts the pending counter's trigger writes.
    db.prepare(`DELETE FROM deliveries WHERE ${IN_IDS} RETURNING 1`).bind(ids),
    db.prepare(`DELETE FROM rejected_payloads WHERE ${IN_IDS}`).bind(ids),
    db.prepare(`DELETE FROM alerts WHERE ${IN_IDS} RETURNING json_array_length(answers_json) AS answers`).bind(ids),
    db.prepare(`DELETE FROM archive_late WHERE ${IN_IDS}`).bind(ids),
    ...leave,
  ]);
  const [, , , deliveries, rejected, alerts] = results.slice(refold.length);
  const erased = (alerts?.results ?? []) as { answers: number }[];
  return {
    alerts: erased.length,
    answers: erased.reduce((n, r) => n + r.answers, 0),
    deliveries: deliveries?.results.length ?? 0,
    rejected_payloads: rejected?.meta.changes ?? 0,
  };
}

/**
 * Erases up to `max_chunks` chunks of one user's alerts and, once none is left, every other
 * row that names them: their identify ordering rows and their quarantined bodies (JSON bodies
 * by their user field, bodies that are not JSON searched as text for the id as a JSON string).
 * First it tombstones the user (the SHA-256 of the id, never the id): a response of theirs
 * submitted before now that arrives later (from the spool, or a 1Flow retry) is not stored.
 * `more` is true when alerts of theirs are left (call again).
 */
export async function eraseUser(
  db: D1Database,
  user_system_id: string,
  max_chunks: number,
  now: string,
  /** Subrequests the caller has left: a chunk is begun only with 3 left (its read, its erase, and the last batch). */
  calls_left: () => number = () => Number.POSITIVE_INFINITY,
): Promise<{ erased: ErasureCounts; more: boolean }> {
  await db
    .prepare(
      `INSERT INTO erased_users (user_sha256, erased_at) VALUES (?1, ?2)
       ON CONFLICT (user_sha256) DO UPDATE SET erased_at = MAX(erased_at, excluded.erased_at)`,
    )
    .bind(await sha256Hex(user_system_id), now)
    .run();
  let erased = noErasure();
  for (let chunk = 0; chunk < max_chunks && calls_left() >= 3; chunk++) {
    // alerts_by_user
    const { results } = await db
      .prepare("SELECT alert_id FROM alerts WHERE user_system_id = ?1 LIMIT ?2")
      .bind(user_system_id, ERASE_CHUNK)
      .all<{ alert_id: string }>();
    const ids = results.map((r) => r.alert_id);
    erased = addErasure(erased, await eraseChunk(db, ids, { at: now, alert_ids: ids }, "refold"));
    if (results.length < ERASE_CHUNK) {
      const [, byUser, asText] = await db.batch([
        // identify_latest_by_user
        db.prepare("DELETE FROM identify_latest WHERE user_system_id = ?1").bind(user_system_id),
        // rejected_by_user: the body's own user, for bodies that never became alerts.
        db.prepare("DELETE FROM rejected_payloads WHERE json_valid(body) AND json_extract(body, '$.user.user_system_id') = ?1").bind(user_system_id),
        // rejected_unparsed: bodies that are not JSON (or not UTF-8), searched as text.
        db
          .prepare(
            `DELETE FROM rejected_payloads WHERE reason IN ('invalid_json', 'unsupported_media_type')
               AND instr(CAST(body AS TEXT), ?1) > 0`,
          )
          .bind(JSON.stringify(user_system_id)),
      ]);
      const rejected = (byUser?.meta.changes ?? 0) + (asText?.meta.changes ?? 0);
      return { erased: { ...erased, rejected_payloads: erased.rejected_payloads + rejected }, more: false };
    }
  }
  return { erased, more: true };
}

export interface RetentionCandidate {
  alert_id: string;
  submitted_at: string;
  received_at: string;
  /**
   * Its fan-out is unfinished: not on the Queue yet, on it but not consumed (no ledger row, and
   * not marked as wanted by none), held by a consumer, or a delivery pending; or, with the
   * archive bound, it is not archived yet.
   */
  unfinished: boolean;
}

/** Where retention goes on from: the keyset of the last alert it looked at. */
export interface RetentionKeyset {
  submitted_at: string;
  alert_id: string;
}

/** The settings row that keeps retention's place between runs (absent: from the oldest alert). */
const RETENTION_CURSOR = "retention_cursor";

/**
 * The candidates' read: alerts submitted before ?1, after the keyset (?2, ?3) or, when those
 * are NULL, after the kept cursor (alerts_by_time, a seek), each with whether it is unfinished.
 */
export const RETENTION_CANDIDATES_SQL = `SELECT a.alert_id AS alert_id, a.submitted_at AS submitted_at, a.received_at AS received_at,
              (a.enqueued_at IS NULL OR a.fanout_claimed_until > ?4
               OR EXISTS (SELECT 1 FROM deliveries AS d WHERE d.alert_id = a.alert_id AND d.status = 'pending')
               OR (a.fanned_out_at IS NULL AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.alert_id = a.alert_id))
               OR (?6 AND NOT EXISTS (SELECT 1 FROM archived_alerts AS x WHERE x.alert_id = a.alert_id))) AS unfinished
FROM alerts AS a
WHERE a.submitted_at < ?1
  AND (a.submitted_at, a.alert_id) > (COALESCE(?2, (SELECT value ->> 0 FROM settings WHERE key = '${RETENTION_CURSOR}'), ''),
                                      COALESCE(?3, (SELECT value ->> 1 FROM settings WHERE key = '${RETENTION_CURSOR}'), ''))
ORDER BY a.submitted_at, a.alert_id LIMIT ?5`;

/**
 * Up to `limit` alerts submitted before `before`, oldest first, after the keyset `after` (null:
 * after the cursor the last run kept), each with whether its fan-out is unfinished
 * (alerts_by_time, then the ledger by key).
 */
export async function alertsSubmittedBefore(
  db: D1Reader,
  input: { before: string; now: string; after: RetentionKeyset | null; limit: number; archive?: boolean },
): Promise<RetentionCandidate[]> {
  const { results } = await db
    .prepare(RETENTION_CANDIDATES_SQL)
    .bind(input.before, input.after?.submitted_at ?? null, input.after?.alert_id ?? null, input.now, input.limit, input.archive === true ? 1 : 0)
    .all<{ alert_id: string; submitted_at: string; received_at: string; unfinished: number }>();
  return results.map((r) => ({ ...r, unfinished: r.unfinished === 1 }));
}

/** Erases these alerts (in chunks), with their deliveries and quarantined conflicts; `tombstones` as eraseChunk. */
export async function eraseAlerts(db: D1Database, alert_ids: string[], tombstones: Tombstones | null = null): Promise<ErasureCounts> {
  let erased = noErasure();
  for (let i = 0; i < alert_ids.length; i += ERASE_CHUNK) {
    const chunk = alert_ids.slice(i, i + ERASE_CHUNK);
    const leave = tombstones === null ? null : { at: tombstones.at, alert_ids: tombstones.alert_ids.filter((id) => chunk.includes(id)) };
    erased = addErasure(erased, await eraseChunk(db, chunk, leave));
  }
  return erased;
}

/**
 * The end of a retention run, in one batch: deletes up to `limit` quarantined bodies last seen
 * before `before` (rejected_by_time), and keeps where the next run goes on (`cursor`; null: from
 * the oldest again; undefined: unchanged). Writes no row when the cursor does not change.
 */
export async function endRetention(
  db: D1Database,
  input: { before: string; limit: number; cursor: RetentionKeyset | null | undefined },
): Promise<number> {
  const keep =
    input.cursor === undefined
      ? []
      : input.cursor === null
        ? [db.prepare(`DELETE FROM settings WHERE key = '${RETENTION_CURSOR}'`)]
        : [
            db
              .prepare(
                `INSERT INTO settings (key, value) VALUES ('${RETENTION_CURSOR}', ?1)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value WHERE settings.value IS NOT excluded.value`,
              )
              .bind(JSON.stringify([input.cursor.submitted_at, input.cursor.alert_id])),
          ];
  const [rejected] = await db.batch([
    db.prepare("DELETE FROM rejected_payloads WHERE id IN (SELECT id FROM rejected_payloads WHERE last_seen_at < ?1 LIMIT ?2)").bind(input.before, input.limit),
    ...keep,
  ]);
  return rejected?.meta.changes ?? 0;
}

/** Forgets tombstones (of responses and of users) older than `before` (the cron), in one round trip. */
export async function pruneTombstones(db: D1Database, before: string): Promise<void> {
  await db.batch([
    db.prepare("DELETE FROM erased_alerts WHERE erased_at < ?1").bind(before),
    db.prepare("DELETE FROM erased_users WHERE erased_at < ?1").bind(before),
  ]);
}
