/** SQL of the dashboard's server-side sessions. */
import type { D1Reader } from "./d1";

export async function createSession(db: D1Database, input: { id_sha256: string; token_sha256: string; created_at: string; expires_at: string }): Promise<void> {
  await db
    .prepare("INSERT INTO sessions (id_sha256, token_sha256, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)")
    .bind(input.id_sha256, input.token_sha256, input.created_at, input.expires_at)
    .run();
}

/** Whether a session is live: not expired, not revoked, and signed in with the current token. */
export async function sessionIsLive(db: D1Reader, input: { id_sha256: string; token_sha256: string; now: string }): Promise<boolean> {
  const row = await db
    .prepare(
      `SELECT 1 AS live FROM sessions
       WHERE id_sha256 = ?1 AND token_sha256 = ?2 AND revoked_at IS NULL AND expires_at > ?3`,
    )
    .bind(input.id_sha256, input.token_sha256, input.now)
    .first();
  return row !== null;
}

export async function revokeSession(db: D1Database, id_sha256: string, at: string): Promise<void> {
  await db.prepare("UPDATE sessions SET revoked_at = ?2 WHERE id_sha256 = ?1 AND revoked_at IS NULL").bind(id_sha256, at).run();
}

/** Deletes sessions that ended before `before` (the cron). */
export async function pruneSessions(db: D1Database, before: string): Promise<void> {
  await db.prepare("DELETE FROM sessions WHERE expires_at < ?1").bind(before).run();
}
