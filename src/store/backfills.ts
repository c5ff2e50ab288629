/**
 * SQL of backfills: one row per backfill (its range, its cursor through the stored responses
 * and its counters), and the pages it reads. The counters `sent`, `delivered`, `failed` and
 * `settled` are kept by triggers on `deliveries` (migrations/0018_backfills.sql): progress is one
 * row to read, and the consumer's record batch is unchanged.
 *
 * Cost per response sent (rows): read once (the alert, its archive row and its delivery row by
 * key), written once as a pending delivery (the row, its two index entries, the pending counter
 * and the backfill's `sent`); then what any delivery costs, and the backfill's counters once.
 */
import { LAST_PART_ID } from "./archive";
import type { D1Reader } from "./d1";
import { STORED_COLUMNS, type StoredAlert, storedAlert, type StoredRow } from "./deliveries";

export interface Backfill {
  id: number;
  destination: string;
  since: string;
  until: string;
  state: "running" | "done" | "cancelled";
  total: number | null;
  sent: number;
  delivered: number;
  failed: number;
  settled: number;
  archived_only: number | null;
  archived_seen: number;
  /** The archive's last part when it started (null: started before 0020); a later part was written after the start. */
  archive_parts_through: number | null;
  cursor_submitted_at: string;
  cursor_alert_id: string;
  started_at: string;
  updated_at: string;
  finished_at: string | null;
}

/** Why a backfill's pending delivery was cancelled: final, never re-sent. */
export const CANCELLED_BACKFILL = "backfill cancelled";

/** Responses one page reads (one Queue message's work). */
export const BACKFILL_PAGE = 100;

/** The latest backfill of a destination, or null when none ever ran. */
export async function latestBackfill(db: D1Reader, destination: string): Promise<Backfill | null> {
  return db.prepare("SELECT * FROM backfills WHERE destination = ?1 ORDER BY id DESC LIMIT 1").bind(destination).first<Backfill>();
}

/** Every destination's latest backfill (the table holds one row per backfill ever run: a few). */
export async function latestBackfills(db: D1Reader): Promise<Backfill[]> {
  const { results } = await db.prepare("SELECT * FROM backfills WHERE id IN (SELECT MAX(id) FROM backfills GROUP BY destination)").all<Backfill>();
  return results;
}

/** One backfill, with the version of the stored destinations read in the same statement. */
export async function backfillById(db: D1Reader, id: number): Promise<(Backfill & { destinations_version: string }) | null> {
  return db
    .prepare("SELECT *, COALESCE((SELECT value FROM settings WHERE key = 'destinations_version'), '0') AS destinations_version FROM backfills WHERE id = ?1")
    .bind(id)
    .first<Backfill & { destinations_version: string }>();
}

/**
 * Starts a backfill of `destination` unless one is running (null then). The responses of the
 * range that only the archive holds are counted from its manifest now, less those of them that
 * the pages find still in D1 (archived_seen), plus those archived after the start that
 * retention removes before the pages reach them (`countRetainedStatement`): `archived_only`
 * once done. The archive's last part id now tells the parts written after the start.
 */
export async function startBackfill(db: D1Database, input: { destination: string; since: string; until: string; now: string }): Promise<Backfill | null> {
  const rows = await db
    .prepare(
      `INSERT INTO backfills (destination, since, until, state, cursor_submitted_at, cursor_alert_id, started_at, updated_at, archived_only, archive_parts_through)
       VALUES (?1, ?2, ?3, 'running', ?2, '', ?4, ?4,
         (SELECT COALESCE(SUM(rows), 0) FROM archive_parts WHERE table_name = 'responses' AND date >= substr(?2, 1, 10) AND date <= substr(?3, 1, 10)),
         (SELECT ${LAST_PART_ID} FROM archive_state WHERE id = 1))
       ON CONFLICT DO NOTHING RETURNING *`,
    )
    .bind(input.destination, input.since, input.until, input.now)
    .all<Backfill>();
  return rows.results[0] ?? null;
}

export interface PageRow {
  alert: StoredAlert;
  /** Its ledger row for the backfill's destination: none, or its status and the backfill that made it. */
  status: string | null;
  backfill: number | null;
  /** In a part the archive had when the backfill started (counted in its `archived_only` then). */
  archived: boolean;
}

/**
 * The next page of the backfill's range after its cursor, by (submitted_at, alert_id) through
 * alerts_by_time from the cursor on (a row-value seek: never the rows before it again), each
 * with its ledger row for the destination and whether the archive holds it.
 */
export async function backfillPage(db: D1Reader, backfill: Backfill, limit = BACKFILL_PAGE): Promise<PageRow[]> {
  const { results } = await db
    .prepare(
      `SELECT ${STORED_COLUMNS.split(",").map((c) => `a.${c.trim()}`).join(", ")},
              d.status AS d_status, d.backfill AS d_backfill,
              EXISTS (SELECT 1 FROM archived_alerts AS r WHERE r.alert_id = a.alert_id AND r.responses_part <= ?7) AS archived
       FROM alerts AS a INDEXED BY alerts_by_time
       LEFT JOIN deliveries AS d ON d.alert_id = a.alert_id AND d.destination = ?5
       WHERE (a.submitted_at, a.alert_id) > (?3, ?4) AND a.submitted_at >= ?1 AND a.submitted_at < ?2
         -- Only a response whose live fan-out is decided (its message consumed): one still in the
         -- outbox or on the Queue reaches this destination that way, and a backfill row must never
         -- stand in for a live delivery (a cancel would cancel it, a restricted message would close it).
         AND a.enqueued_at IS NOT NULL
         AND (a.fanned_out_at IS NOT NULL OR EXISTS (SELECT 1 FROM deliveries AS o WHERE o.alert_id = a.alert_id AND o.backfill IS NULL))
       ORDER BY a.submitted_at, a.alert_id LIMIT ?6`,
    )
    .bind(backfill.since, backfill.until, backfill.cursor_submitted_at, backfill.cursor_alert_id, backfill.destination, limit, backfill.archive_parts_through ?? Number.MAX_SAFE_INTEGER)
    .all<StoredRow & { d_status: string | null; d_backfill: number | null; archived: number }>();
  return results.map(({ d_status, d_backfill, archived, ...row }) => ({ alert: storedAlert(row), status: d_status, backfill: d_backfill, archived: archived === 1 }));
}

/**
 * The pending ledger rows of a page's wanted responses, named by the backfill; none where the
 * destination has a row already (never a second delivery), and none once the backfill is
 * cancelled. Idempotent: a page read again creates nothing twice.
 */
export function createDeliveriesStatement(db: D1Database, input: { backfill: Backfill; alert_ids: string[]; now: string }): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, backfill)
       SELECT j.value, ?2, 'pending', 0, ?3, ?4 FROM json_each(?1) AS j
       WHERE EXISTS (SELECT 1 FROM backfills WHERE id = ?4 AND state = 'running')
         AND EXISTS (SELECT 1 FROM alerts WHERE alert_id = j.value)
       ON CONFLICT (alert_id, destination) DO NOTHING`,
    )
    .bind(JSON.stringify(input.alert_ids), input.backfill.destination, input.now, input.backfill.id);
}

/**
 * Moves the cursor past a page (only from where it was: a page read twice moves it once); at
 * the range's end, the total is known, and a backfill whose deliveries all settled is done.
 * `archived` are the page's responses counted in `archived_only` at the start: those still in
 * D1 as the cursor passes them were not only in the archive (one that retention removed since
 * the page's read stays counted).
 */
export async function advanceBackfill(
  db: D1Database,
  input: { backfill: Backfill; to: { submitted_at: string; alert_id: string }; last: boolean; archived: string[]; now: string },
): Promise<boolean> {
  const { backfill } = input;
  const seen = "(SELECT COUNT(*) FROM json_each(?7) AS j WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = j.value))";
  const result = await db
    .prepare(
      `UPDATE backfills SET cursor_submitted_at = ?3, cursor_alert_id = ?4, updated_at = ?6, archived_seen = archived_seen + ${seen},
         total = CASE WHEN ?5 THEN sent ELSE total END,
         archived_only = CASE WHEN ?5 THEN MAX(0, archived_only - archived_seen - ${seen}) ELSE archived_only END,
         state = CASE WHEN ?5 AND settled >= sent THEN 'done' ELSE state END,
         finished_at = CASE WHEN ?5 AND settled >= sent THEN ?6 ELSE finished_at END
       WHERE id = ?8 AND state = 'running' AND cursor_submitted_at = ?1 AND cursor_alert_id = ?2`,
    )
    .bind(backfill.cursor_submitted_at, backfill.cursor_alert_id, input.to.submitted_at, input.to.alert_id, input.last ? 1 : 0, input.now, JSON.stringify(input.archived), backfill.id)
    .run();
  return result.meta.changes > 0;
}

/** Running backfills whose chain of pages stopped before the range's end (a lost message): the cron starts them again. */
export async function stalledBackfills(db: D1Reader, before: string, limit: number): Promise<{ id: number }[]> {
  const { results } = await db
    .prepare("SELECT id FROM backfills INDEXED BY backfills_by_state WHERE state = 'running' AND updated_at < ?1 AND total IS NULL ORDER BY updated_at LIMIT ?2")
    .bind(before, limit)
    .all<{ id: number }>();
  return results;
}

/**
 * A cancelled backfill some of whose rows are still pending and untried: the cron cancels them
 * on. Rows being retried (attempts > 0) are left to their retries, and rows an operator's replay
 * reset after the cancel (updated later) are the operator's, so a backfill that has only those
 * left is passed over (the next one's untried rows are not kept waiting behind it).
 */
export async function unfinishedCancel(db: D1Reader): Promise<Backfill | null> {
  // The table holds one row per backfill ever run: a few; each is looked up in the index by its untried rows.
  return db
    .prepare(
      `SELECT * FROM backfills AS b WHERE b.state = 'cancelled' AND b.settled < b.sent
         AND EXISTS (SELECT 1 FROM deliveries INDEXED BY deliveries_by_backfill
                     WHERE backfill = b.id AND status = 'pending' AND attempts = 0 AND reopened = 0)
       ORDER BY b.updated_at LIMIT 1`,
    )
    .first<Backfill>();
}

/** Marks a running backfill touched (its page message was just sent again). */
export async function touchBackfill(db: D1Database, id: number, now: string): Promise<void> {
  await db.prepare("UPDATE backfills SET updated_at = ?2 WHERE id = ?1 AND state = 'running'").bind(id, now).run();
}

/**
 * Cancels a running backfill and, up to `limit` at a time, its deliveries not yet tried (pending
 * with no attempt, never reset by a replay); returns how many it cancelled now, and whether
 * some are left.
 */
export async function cancelBackfill(db: D1Database, input: { backfill: Backfill; now: string; limit: number }): Promise<{ cancelled: number; more: boolean }> {
  const [, cancelled] = await db.batch([
    db
      .prepare("UPDATE backfills SET state = 'cancelled', finished_at = ?2, updated_at = ?2 WHERE id = ?1 AND state = 'running'")
      .bind(input.backfill.id, input.now),
    db
      .prepare(
        `UPDATE deliveries SET status = 'cancelled', last_error = ?4, updated_at = ?3
         WHERE (alert_id, destination) IN (
           SELECT alert_id, destination FROM deliveries INDEXED BY deliveries_by_backfill
           WHERE backfill = ?2 AND status = 'pending' AND destination = ?1 AND attempts = 0
             -- Not a row an operator's replay reset to pending (migrations/0022): that one is the operator's.
             AND reopened = 0 LIMIT ?5)
         RETURNING 1`,
      )
      .bind(input.backfill.destination, input.backfill.id, input.now, CANCELLED_BACKFILL, input.limit),
  ]);
  const n = cancelled?.results.length ?? 0;
  return { cancelled: n, more: n >= input.limit };
}

/**
 * Retention's share (in its erase batch, before the alerts go): each running backfill counts
 * the erased responses of its range that its pages have not reached and that were archived
 * after it started (those archived before were counted at the start), and those its pages passed
 * whose pending row is still unsent (created after retention read them: retention's read and its
 * erase are two calls; the row goes with the alert, and the archive holds the response). The backfills table
 * holds a few rows; each reads the batch's alerts and their ledger rows by key.
 */
export function countRetainedStatement(db: D1Database, alert_ids: string): D1PreparedStatement {
  return db
    .prepare(
      `UPDATE backfills SET archived_only = archived_only + (
         SELECT COUNT(*) FROM alerts AS a JOIN archived_alerts AS r ON r.alert_id = a.alert_id
         WHERE a.alert_id IN (SELECT value FROM json_each(?1))
           AND a.submitted_at >= backfills.since AND a.submitted_at < backfills.until
           AND CASE WHEN (a.submitted_at, a.alert_id) > (backfills.cursor_submitted_at, backfills.cursor_alert_id)
             -- Ahead of the pages: counted at the start if archived before it (its part's id).
             THEN r.responses_part > COALESCE(backfills.archive_parts_through, ${Number.MAX_SAFE_INTEGER})
             -- Passed by them: still in D1 then (not counted), and erased before its row was sent.
             ELSE EXISTS (SELECT 1 FROM deliveries AS d WHERE d.alert_id = a.alert_id AND d.destination = backfills.destination
                            AND d.backfill = backfills.id AND d.status = 'pending') END)
       WHERE state = 'running'`,
    )
    .bind(alert_ids);
}
