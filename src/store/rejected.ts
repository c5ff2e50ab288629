/** SQL of the quarantine, `rejected_payloads`, and its count per day of receipt. */
import type { RejectReason } from "../alert";
import type { D1Reader } from "./d1";

export interface Rejection {
  /** SHA-256 hex of the body: the same body is one row, however often it comes. */
  id: string;
  reason: RejectReason;
  detail: unknown;
  /** Text when the body is UTF-8, raw bytes otherwise, null when not kept (too large). */
  body: string | ArrayBuffer | null;
  alert_id: string | null;
  size: number;
  seen_at: string;
  /** SHA-256 hex of the body's user id (`user.user_system_id`), when it can be read: finds an erased user's tombstone. */
  user_sha256: string | null;
  /** When the body says it was submitted (ISO), when it can be read; unknown, any tombstone of its user refuses it. */
  submitted_at: string | null;
}

// The quarantine keeps nothing of a user erased on request (erased_users, by ?8 = the SHA-256 of
// the body's user id; NULL when none can be read): 1Flow retries a refused body for three days,
// and a retry after the erasure must not store it again. Checked in the write itself, so an
// erasure that lands between the request's read and this write cannot be missed.
const QUARANTINE = `INSERT INTO rejected_payloads (id, reason, detail, body, alert_id, size, first_seen_at, last_seen_at, attempts)
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, 1
WHERE NOT EXISTS (SELECT 1 FROM erased_users WHERE user_sha256 = ?8 AND erased_at >= COALESCE(?9, ''))
ON CONFLICT (id) DO UPDATE SET attempts = attempts + 1, last_seen_at = excluded.last_seen_at`;

/**
 * Keeps a body we could not accept (a repeat only counts another attempt), and counts it in
 * its day, in one round trip. False when the body is an erased user's: nothing of it is kept.
 */
export async function quarantine(db: D1Database, r: Rejection): Promise<boolean> {
  const [kept] = await db.batch([
    db.prepare(QUARANTINE).bind(r.id, r.reason, JSON.stringify(r.detail ?? null), r.body, r.alert_id, r.size, r.seen_at, r.user_sha256, r.submitted_at),
    db
      .prepare(
        `INSERT INTO ingest_daily (day, rejected) VALUES (substr(?1, 1, 10), 1)
         ON CONFLICT (day) DO UPDATE SET rejected = rejected + 1`,
      )
      .bind(r.seen_at),
  ]);
  return (kept?.meta.changes ?? 0) > 0;
}

export interface RejectedRow {
  id: string;
  reason: RejectReason;
  detail: string | null;
  body: string | ArrayBuffer | null;
  alert_id: string | null;
  size: number;
  first_seen_at: string;
  last_seen_at: string;
  attempts: number;
}

/** A page of the quarantine, newest first (rejected_by_time); `after` is the last row of the previous page. */
export async function listRejected(
  db: D1Reader,
  input: { limit: number; after: { last_seen_at: string; id: string } | null },
): Promise<RejectedRow[]> {
  const { results } = await db
    .prepare(
      `SELECT * FROM rejected_payloads INDEXED BY rejected_by_time
       WHERE (last_seen_at, id) < (COALESCE(?1, '~'), COALESCE(?2, '~'))
       ORDER BY last_seen_at DESC, id DESC LIMIT ?3`,
    )
    .bind(input.after?.last_seen_at ?? null, input.after?.id ?? null, input.limit)
    .all<RejectedRow>();
  return results;
}

export async function getRejected(db: D1Reader, id: string): Promise<RejectedRow | null> {
  return db.prepare("SELECT * FROM rejected_payloads WHERE id = ?1").bind(id).first<RejectedRow>();
}

export async function deleteRejected(db: D1Database, id: string): Promise<void> {
  await db.prepare("DELETE FROM rejected_payloads WHERE id = ?1").bind(id).run();
}
