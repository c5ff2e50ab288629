/** SQL of the operator notifications: the outbox the consumers fill, and what the cron last sent. */

export interface NotificationRow {
  id: number;
  event: string;
  key: string;
  data: string;
  created_at: string;
  attempts: number;
}

/** The oldest notifications waiting (the table holds a handful). */
export async function pendingNotifications(db: D1Database, limit = 100): Promise<NotificationRow[]> {
  const { results } = await db.prepare("SELECT * FROM notifications ORDER BY id LIMIT ?1").bind(limit).all<NotificationRow>();
  return results;
}

export async function deleteNotifications(db: D1Database, ids: number[]): Promise<void> {
  await db.prepare("DELETE FROM notifications WHERE id IN (SELECT value FROM json_each(?1))").bind(JSON.stringify(ids)).run();
}

/** Counts a failed try of each; drops those that reached `max_attempts`. Returns how many were dropped. */
export async function failedNotifications(db: D1Database, ids: number[], max_attempts: number): Promise<number> {
  const [, dropped] = await db.batch([
    db.prepare("UPDATE notifications SET attempts = attempts + 1 WHERE id IN (SELECT value FROM json_each(?1))").bind(JSON.stringify(ids)),
    db.prepare("DELETE FROM notifications WHERE attempts >= ?1").bind(max_attempts),
  ]);
  return dropped?.meta.changes ?? 0;
}

export async function notifyState(db: D1Database, key: string): Promise<string | null> {
  const row = await db.prepare("SELECT value FROM notify_state WHERE key = ?1").bind(key).first<{ value: string }>();
  return row?.value ?? null;
}

export async function setNotifyState(db: D1Database, key: string, value: string): Promise<void> {
  await db
    .prepare("INSERT INTO notify_state (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value")
    .bind(key, value)
    .run();
}

/** Quarantine rows first seen after `since` (rejected_by_time: only rows touched since then are read). */
export async function newQuarantineRows(db: D1Database, since: string): Promise<number> {
  const row = await db
    .prepare("SELECT COUNT(*) AS n FROM rejected_payloads INDEXED BY rejected_by_time WHERE last_seen_at > ?1 AND first_seen_at > ?1")
    .bind(since)
    .first<{ n: number }>();
  return row?.n ?? 0;
}

/** The most recently submitted response (alerts_by_time: one row read). */
export async function newestResponse(db: D1Database): Promise<{ alert_id: string; submitted_at: string } | null> {
  return db
    .prepare("SELECT alert_id, submitted_at FROM alerts INDEXED BY alerts_by_time ORDER BY submitted_at DESC LIMIT 1")
    .first<{ alert_id: string; submitted_at: string }>();
}
