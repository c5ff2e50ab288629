/**
 * SQL of the Parquet archive: the cursor and totals (archive_state), the manifest
 * (archive_parts), which part holds each archived response (archived_alerts), responses the
 * cursor passed that still wait (archive_late), and objects that may be left in R2 by a
 * crash (archive_garbage).
 *
 * A tick reads in one batch (the mark that makes later stores late, then the rows), writes
 * its parts to R2, and commits in one batch: the manifest rows, archived_alerts, the cursor.
 * The commit asserts that every response it archives is still stored (erasure may have run
 * meanwhile) through archive_state's `guard` CHECK: if not, nothing of it is kept.
 */
import type { Alert } from "../alert";
import type { D1Reader } from "./d1";

/** A stored response as the archive reads it: the alert's columns, answers still as answers_json. */
export type ArchiveSource = Omit<Alert, "answers"> & {
  received_at: string;
  payload: string;
  answers_json: string;
  /** SHA-256 of user_system_id as ingest stored it (null for rows stored before 0.4, or without a user). */
  user_sha256?: string | null;
};

export interface ArchiveState {
  /** The largest id archive_parts has given (0 for none). */
  last_part_id: number;
  cursor_submitted_at: string;
  cursor_alert_id: string;
  read_through: string;
  files: number;
  responses: number;
  answers: number;
  bytes: number;
  newest_submitted_at: string | null;
  last_run_at: string | null;
  last_error: string | null;
  last_error_at: string | null;
}

export interface ManifestPart {
  key: string;
  table: "responses" | "answers";
  date: string;
  rows: number;
  bytes: number;
  created_at: string;
}

const SOURCE_COLUMNS = `a.alert_id AS alert_id, a.alert_name AS alert_name, a.project_name AS project_name, a.survey_id AS survey_id,
  a.survey_name AS survey_name, a.platform AS platform, a.user_system_id AS user_system_id, a.user_parameters AS user_parameters,
  a.trigger_event_name AS trigger_event_name, a.trigger_event_parameters AS trigger_event_parameters,
  a.submitted_at AS submitted_at, a.received_at AS received_at, a.payload AS payload, a.answers_json AS answers_json,
  a.user_sha256 AS user_sha256`;

/**
 * The cursor's next rows (alerts_by_time from the cursor on), as keys with their body's size,
 * each with whether it is archived or late already: the tick picks what fits before it reads
 * any body.
 */
export const ARCHIVE_RANGE_SQL = `SELECT a.alert_id AS alert_id, a.submitted_at AS submitted_at, a.received_at AS received_at,
  length(a.payload) AS size,
  (EXISTS (SELECT 1 FROM archived_alerts AS x WHERE x.alert_id = a.alert_id)
   OR EXISTS (SELECT 1 FROM archive_late AS l WHERE l.alert_id = a.alert_id)) AS skip
FROM alerts AS a INDEXED BY alerts_by_time
WHERE (a.submitted_at, a.alert_id) > (?1, ?2) AND a.submitted_at <= ?3
ORDER BY a.submitted_at, a.alert_id LIMIT ?4`;

/**
 * Late rows whose delay has passed (archive_late_by_time), oldest first, as keys with their
 * body's size; `drop` when the response is archived already or no longer stored: such a row
 * is deleted, never archived (a second archived_alerts row would fail every tick).
 */
export const ARCHIVE_LATE_SQL = `SELECT l.alert_id AS alert_id, a.submitted_at AS submitted_at, l.stored_at AS stored_at, length(a.payload) AS size,
  (a.alert_id IS NULL OR EXISTS (SELECT 1 FROM archived_alerts AS x WHERE x.alert_id = l.alert_id)) AS "drop"
FROM archive_late AS l INDEXED BY archive_late_by_time LEFT JOIN alerts AS a ON a.alert_id = l.alert_id
WHERE l.stored_at <= ?1 ORDER BY l.stored_at, l.alert_id LIMIT ?2`;

/** The parts that hold a user's archived responses (archived_by_user), with those responses. */
export const PARTS_OF_USER_SQL = `SELECT p.id AS id, p.key AS key, p.table_name AS "table", p.date AS date, json_group_array(u.alert_id) AS alert_ids
FROM (SELECT alert_id, responses_part AS part FROM archived_alerts WHERE user_sha256 = ?1 AND responses_part IS NOT NULL
      UNION ALL
      SELECT alert_id, answers_part AS part FROM archived_alerts WHERE user_sha256 = ?1 AND answers_part IS NOT NULL) AS u
JOIN archive_parts AS p ON p.id = u.part
GROUP BY p.id ORDER BY p.id LIMIT ?2`;

/**
 * The highest part id ever committed (archive_state is the row in scope): a new part's id is
 * above it, even once an erasure removed the newest parts, so a part with a higher id than one a
 * backfill noted at its start was written after it (backfills.archive_parts_through).
 */
export const LAST_PART_ID = "MAX(archive_state.last_part_id, (SELECT COALESCE(MAX(id), 0) FROM archive_parts))";

/** The one state row. */
export async function archiveState(db: D1Reader): Promise<ArchiveState> {
  const row = await db
    .prepare(
      `SELECT ${LAST_PART_ID} AS last_part_id, cursor_submitted_at, cursor_alert_id, read_through,
              files, responses, answers, bytes, newest_submitted_at, last_run_at, last_error, last_error_at FROM archive_state WHERE id = 1`,
    )
    .first<ArchiveState>();
  if (!row) throw new Error("archive_state has no row: apply migrations/0013_archive.sql");
  return row;
}

/** A row the tick may take: its key, its day, and the size of its body. */
export interface ArchiveKey {
  alert_id: string;
  submitted_at: string;
  /** The body's length in characters. */
  size: number;
}

/**
 * One tick's reading, in one batch (a transaction): first the mark (`read_through`), so that
 * a response stored after this batch and submitted at or before `through` is noted late by
 * its own insert; then up to `limit` keys after the cursor submitted at or before `through`
 * (alerts_by_time), each with `skip` when it is archived or late already; then up to `limit`
 * late keys stored at or before `late_before` (archive_late_by_time). No body is read here.
 */
export async function readForArchive(
  db: D1Database,
  input: { cursor: { submitted_at: string; alert_id: string }; through: string; late_before: string; limit: number },
): Promise<{ range: (ArchiveKey & { received_at: string; skip: number })[]; late: (ArchiveKey & { stored_at: string; drop: number })[] }> {
  const [, range, late] = await db.batch([
    db.prepare("UPDATE archive_state SET read_through = MAX(read_through, ?1) WHERE id = 1").bind(input.through),
    db.prepare(ARCHIVE_RANGE_SQL).bind(input.cursor.submitted_at, input.cursor.alert_id, input.through, input.limit),
    db.prepare(ARCHIVE_LATE_SQL).bind(input.late_before, input.limit),
  ]);
  return {
    range: (range?.results ?? []) as (ArchiveKey & { received_at: string; skip: number })[],
    late: (late?.results ?? []) as (ArchiveKey & { stored_at: string; drop: number })[],
  };
}

/** The stored responses of these ids (by key; one erased meanwhile is simply missing). */
export async function archiveSources(db: D1Database, alert_ids: string[]): Promise<Map<string, ArchiveSource>> {
  if (alert_ids.length === 0) return new Map();
  const { results } = await db
    .prepare(`SELECT ${SOURCE_COLUMNS} FROM alerts AS a WHERE a.alert_id IN (SELECT value FROM json_each(?1))`)
    .bind(JSON.stringify(alert_ids))
    .all<ArchiveSource>();
  return new Map(results.map((r) => [r.alert_id, r]));
}

/**
 * Notes objects about to be written: if their commit never comes, the cleanup deletes them once
 * `due`, or at once when one of `users` (per key: the SHA-256 of the user ids it holds) is erased.
 */
export async function noteGarbage(db: D1Database, keys: string[], due: string, users: Record<string, string[]> = {}): Promise<void> {
  if (keys.length === 0) return;
  const rows = keys.map((key) => ({ key, users: users[key]?.length ? users[key] : null }));
  await db
    .prepare(
      `INSERT INTO archive_garbage (key, due, users) SELECT value ->> 'key', ?2, value ->> 'users' FROM json_each(?1) WHERE true
       ON CONFLICT (key) DO UPDATE SET due = excluded.due, users = excluded.users`,
    )
    .bind(JSON.stringify(rows), due)
    .run();
}

/**
 * Up to `limit` objects that are due for deletion (a crash's leftovers, replaced parts), and,
 * for an erasure (`user`), every unlisted object a tick noted as holding that user no later than
 * the erasure began (its `due` is at most `noted_before`, the erasure's start plus the grace), due
 * or not: no commit can list it any more (that tick read before the erasure, so its guard
 * counts the user's responses, which the erasure deleted before it came here). A tick that
 * noted its parts later may hold a response of the user submitted after the erasure: not those.
 */
export async function dueGarbage(
  db: D1Database,
  now: string,
  limit: number,
  user: { sha256: string; noted_before: string } | null = null,
): Promise<{ keys: string[]; rewrites_waiting: boolean }> {
  // Never a key the manifest lists, whatever a row here says. And, in the same statement, whether
  // an erasure's rewrite left a new object unlisted and not yet due (noted without users: its
  // commit may still come, so no other erasure may delete it early; it may hold this user).
  const { results } = await db
    .prepare(
      `SELECT key, EXISTS (SELECT 1 FROM archive_garbage WHERE users IS NULL AND due > ?1 AND key NOT IN (SELECT key FROM archive_parts)) AS waiting
       FROM (SELECT 1) LEFT JOIN (
         SELECT key FROM archive_garbage
         WHERE (due <= ?1 OR (?3 IS NOT NULL AND users IS NOT NULL AND due <= ?4 AND EXISTS (SELECT 1 FROM json_each(archive_garbage.users) WHERE value = ?3)))
           AND key NOT IN (SELECT key FROM archive_parts) LIMIT ?2)`,
    )
    .bind(now, limit, user?.sha256 ?? null, user?.noted_before ?? null)
    .all<{ key: string | null; waiting: number }>();
  return { keys: results.flatMap((r) => (r.key === null ? [] : [r.key])), rewrites_waiting: results.some((r) => r.waiting === 1) };
}

/** Forgets objects deleted from R2 (never one the manifest lists). */
export async function forgetGarbage(db: D1Database, keys: string[]): Promise<void> {
  if (keys.length === 0) return;
  await db
    .prepare("DELETE FROM archive_garbage WHERE key IN (SELECT value FROM json_each(?1)) AND key NOT IN (SELECT key FROM archive_parts)")
    .bind(JSON.stringify(keys))
    .run();
}

export interface NewPart {
  key: string;
  table: "responses" | "answers";
  date: string;
  rows: number;
  bytes: number;
}

export interface ArchivedEntry {
  alert_id: string;
  user_sha256: string | null;
  /** Keys of the parts that hold it (answers: null when it has none). */
  responses_key: string;
  answers_key: string | null;
  /** Taken from archive_late. */
  late: boolean;
}

/**
 * Commits a tick in one batch: the parts join the manifest, each response gets its
 * archived_alerts row, late rows archived leave archive_late and `defer` rows join it, and
 * the cursor moves to `cursor`. Fails, changing nothing, when a response is no longer stored
 * or one is archived already.
 */
export async function commitArchive(
  db: D1Database,
  input: {
    parts: NewPart[];
    entries: ArchivedEntry[];
    defer: { alert_id: string; stored_at: string }[];
    /** Late rows to delete unarchived: their response is archived already, or gone. */
    drop: string[];
    cursor: { submitted_at: string; alert_id: string };
    /** The id of the first new part (the largest id so far, plus one); the rest follow. */
    first_part_id: number;
    newest_submitted_at: string | null;
    now: string;
  },
): Promise<void> {
  // Part ids are chosen here (after the largest one, read with the state): a tick that raced
  // another to the same ids fails on the primary key, and nothing of it is kept.
  const ids_by_key = new Map(input.parts.map((p, i) => [p.key, input.first_part_id + i]));
  const parts = JSON.stringify(input.parts.map((p) => ({ ...p, id: ids_by_key.get(p.key) })));
  const entries = JSON.stringify(
    input.entries.map((e) => [e.alert_id, e.user_sha256, ids_by_key.get(e.responses_key), e.answers_key === null ? null : ids_by_key.get(e.answers_key)]),
  );
  const ids = JSON.stringify(input.entries.map((e) => e.alert_id));
  const late = JSON.stringify([...input.entries.filter((e) => e.late).map((e) => e.alert_id), ...input.drop]);
  const bytes = input.parts.reduce((n, p) => n + p.bytes, 0);
  await db.batch([
    db
      .prepare(
        `INSERT INTO archive_parts (id, key, table_name, date, rows, bytes, created_at)
         SELECT value ->> 'id', value ->> 'key', value ->> 'table', value ->> 'date', value ->> 'rows', value ->> 'bytes', ?2 FROM json_each(?1)`,
      )
      .bind(parts, input.now),
    // A response archived already fails this insert (its key), and with it the batch.
    db
      .prepare(
        `INSERT INTO archived_alerts (alert_id, user_sha256, responses_part, answers_part, payload_sha256)
         SELECT value ->> 0, value ->> 1, value ->> 2, value ->> 3, (SELECT payload_sha256 FROM alerts WHERE alerts.alert_id = value ->> 0) FROM json_each(?1)`,
      )
      .bind(entries),
    db.prepare("DELETE FROM archive_late WHERE alert_id IN (SELECT value FROM json_each(?1))").bind(late),
    db
      .prepare("INSERT INTO archive_late (alert_id, stored_at) SELECT value ->> 0, value ->> 1 FROM json_each(?1) WHERE true ON CONFLICT (alert_id) DO NOTHING")
      .bind(JSON.stringify(input.defer.map((d) => [d.alert_id, d.stored_at]))),
    db.prepare("DELETE FROM archive_garbage WHERE key IN (SELECT value ->> 'key' FROM json_each(?1))").bind(parts),
    // guard: every response archived here is still stored (erasure did not take it meanwhile).
    db
      .prepare(
        `UPDATE archive_state SET cursor_submitted_at = ?1, cursor_alert_id = ?2, files = files + ?3, responses = responses + ?4,
           answers = answers + ?5, bytes = bytes + ?6, newest_submitted_at = MAX(COALESCE(newest_submitted_at, ''), COALESCE(?7, '')),
           last_run_at = ?8, last_error = NULL, last_error_at = NULL, last_part_id = ${LAST_PART_ID},
           guard = ((SELECT COUNT(*) FROM alerts WHERE alert_id IN (SELECT value FROM json_each(?9))) = ?10)
         WHERE id = 1`,
      )
      .bind(
        input.cursor.submitted_at,
        input.cursor.alert_id,
        input.parts.length,
        input.entries.length,
        input.parts.filter((p) => p.table === "answers").reduce((n, p) => n + p.rows, 0),
        bytes,
        input.newest_submitted_at,
        input.now,
        ids,
        input.entries.length,
      ),
  ]);
}

/** A tick with nothing to archive still moves the cursor past what it skipped or deferred, and drops late rows archived already. */
export async function moveCursor(
  db: D1Database,
  input: { cursor: { submitted_at: string; alert_id: string }; defer: { alert_id: string; stored_at: string }[]; drop: string[]; now: string },
): Promise<void> {
  await db.batch([
    db.prepare("DELETE FROM archive_late WHERE alert_id IN (SELECT value FROM json_each(?1))").bind(JSON.stringify(input.drop)),
    db
      .prepare("INSERT INTO archive_late (alert_id, stored_at) SELECT value ->> 0, value ->> 1 FROM json_each(?1) WHERE true ON CONFLICT (alert_id) DO NOTHING")
      .bind(JSON.stringify(input.defer.map((d) => [d.alert_id, d.stored_at]))),
    db
      .prepare("UPDATE archive_state SET cursor_submitted_at = ?1, cursor_alert_id = ?2, last_run_at = ?3, last_error = NULL, last_error_at = NULL WHERE id = 1")
      .bind(input.cursor.submitted_at, input.cursor.alert_id, input.now),
  ]);
}

/** Records a tick's failure for the dashboard and /api/archive. */
export async function recordArchiveError(db: D1Database, error: string, now: string): Promise<void> {
  await db.prepare("UPDATE archive_state SET last_error = ?1, last_error_at = ?2, last_run_at = ?2 WHERE id = 1").bind(error.slice(0, 500), now).run();
}

/** A page of the manifest, in the order parts were first written (by id, after `after`). */
export async function manifestPage(db: D1Reader, after: number, limit: number): Promise<{ parts: (ManifestPart & { id: number })[]; more: boolean }> {
  const { results } = await db
    .prepare(
      `SELECT id, key, table_name AS "table", date, rows, bytes, created_at FROM archive_parts
       WHERE id > ?1 ORDER BY id LIMIT ?2`,
    )
    .bind(after, limit + 1)
    .all<ManifestPart & { id: number }>();
  return { parts: results.slice(0, limit), more: results.length > limit };
}

/** The responses part holding an archived response, or null (not archived, or erased). */
export async function archivedKey(db: D1Reader, alert_id: string): Promise<string | null> {
  const row = await db
    .prepare("SELECT p.key AS key FROM archived_alerts AS x JOIN archive_parts AS p ON p.id = x.responses_part WHERE x.alert_id = ?1")
    .bind(alert_id)
    .first<{ key: string }>();
  return row?.key ?? null;
}

/** A part that holds some of a user's archived responses, with those responses' ids. */
export interface UserPart {
  id: number;
  key: string;
  table: "responses" | "answers";
  date: string;
  alert_ids: string[];
}

/**
 * Up to `limit` parts that still hold responses of the user with this SHA-256
 * (archived_by_user, then each part by its id): no file is read to find them.
 */
export async function partsOfUser(db: D1Reader, user_sha256: string, limit: number): Promise<{ parts: UserPart[]; more: boolean }> {
  const { results } = await db
    .prepare(PARTS_OF_USER_SQL)
    .bind(user_sha256, limit + 1)
    .all<{ id: number; key: string; table: "responses" | "answers"; date: string; alert_ids: string }>();
  const parts = results.slice(0, limit).map((r) => ({ ...r, alert_ids: JSON.parse(r.alert_ids) as string[] }));
  return { parts, more: results.length > limit };
}

/**
 * Commits the rewrite of one part without a user's responses, in one batch: the manifest row
 * points at the new object (or goes, when nothing is left), the old object becomes garbage due
 * now, the responses leave that part in archived_alerts (and their rows go once in no part).
 * Fails, changing nothing, when the part was rewritten meanwhile (its key is not `old_key`).
 */
export async function commitRewrite(
  db: D1Database,
  input: { part: UserPart; new_key: string | null; rows: number; bytes: number; removed: number; now: string },
): Promise<void> {
  const { part } = input;
  const ids = JSON.stringify(part.alert_ids);
  const column = part.table === "responses" ? "responses_part" : "answers_part";
  await db.batch([
    db
      .prepare(
        `UPDATE archive_state SET guard = ((SELECT key FROM archive_parts WHERE id = ?1) IS ?2),
           files = files - (?3 IS NULL), bytes = bytes - (SELECT bytes FROM archive_parts WHERE id = ?1) + ?4,
           responses = responses - CASE WHEN ?5 = 'responses' THEN ?6 ELSE 0 END,
           answers = answers - CASE WHEN ?5 = 'answers' THEN ?6 ELSE 0 END
         WHERE id = 1`,
      )
      .bind(part.id, part.key, input.new_key, input.bytes, part.table, input.removed),
    input.new_key === null
      ? db.prepare("DELETE FROM archive_parts WHERE id = ?1").bind(part.id)
      : db.prepare("UPDATE archive_parts SET key = ?2, rows = ?3, bytes = ?4, created_at = ?5 WHERE id = ?1").bind(part.id, input.new_key, input.rows, input.bytes, input.now),
    db.prepare(`UPDATE archived_alerts SET ${column} = NULL WHERE ${column} = ?1 AND alert_id IN (SELECT value FROM json_each(?2))`).bind(part.id, ids),
    db.prepare("DELETE FROM archived_alerts WHERE alert_id IN (SELECT value FROM json_each(?1)) AND responses_part IS NULL AND answers_part IS NULL").bind(ids),
    db.prepare("DELETE FROM archive_garbage WHERE key = ?1").bind(input.new_key),
    db.prepare("INSERT INTO archive_garbage (key, due) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET due = excluded.due").bind(part.key, input.now),
  ]);
}
