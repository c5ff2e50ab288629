/** SQL of erasure: a user's data on request, and everything past the retention period. */

export interface ErasureCounts {
  alerts: number;
  answers: number;
  deliveries: number;
  rejected_payloads: number;
}

/** Deletes the given alerts, their answers and deliveries, and quarantined bodies that mention them, in one batch. */
async function eraseAlerts(db: D1Database, alert_ids: string[]): Promise<ErasureCounts> {
  if (alert_ids.length === 0) return { alerts: 0, answers: 0, deliveries: 0, rejected_payloads: 0 };
  const ids = JSON.stringify(alert_ids);
  const inIds = "alert_id IN (SELECT value FROM json_each(?1))";
  const [deliveries, answers, rejected, alerts] = await db.batch([
    db.prepare(`DELETE FROM deliveries WHERE ${inIds}`).bind(ids),
    db.prepare(`DELETE FROM answers WHERE ${inIds}`).bind(ids),
    db
      .prepare(
        `DELETE FROM rejected_payloads WHERE ${inIds}
           OR (typeof(body) = 'text' AND EXISTS (SELECT 1 FROM json_each(?1) AS j WHERE instr(body, j.value) > 0))`,
      )
      .bind(ids),
    db.prepare(`DELETE FROM alerts WHERE ${inIds}`).bind(ids),
  ]);
  return {
    alerts: alerts?.meta.changes ?? 0,
    answers: answers?.meta.changes ?? 0,
    deliveries: deliveries?.meta.changes ?? 0,
    rejected_payloads: rejected?.meta.changes ?? 0,
  };
}

/** Erases everything stored about one user. */
export async function eraseUser(db: D1Database, user_system_id: string): Promise<ErasureCounts> {
  const { results } = await db
    .prepare("SELECT alert_id FROM alerts WHERE user_system_id = ?1")
    .bind(user_system_id)
    .all<{ alert_id: string }>();
  return eraseAlerts(
    db,
    results.map((r) => r.alert_id),
  );
}

/**
 * Erases up to `limit` alerts received before `before` (with their answers,
 * deliveries and quarantined mentions) and quarantined bodies last seen before it.
 */
export async function eraseOlderThan(db: D1Database, before: string, limit: number): Promise<ErasureCounts> {
  const { results } = await db
    .prepare("SELECT alert_id FROM alerts WHERE received_at < ?1 ORDER BY received_at LIMIT ?2")
    .bind(before, limit)
    .all<{ alert_id: string }>();
  const counts = await eraseAlerts(
    db,
    results.map((r) => r.alert_id),
  );
  const old = await db
    .prepare(
      "DELETE FROM rejected_payloads WHERE id IN (SELECT id FROM rejected_payloads WHERE last_seen_at < ?1 LIMIT ?2)",
    )
    .bind(before, limit)
    .run();
  return { ...counts, rejected_payloads: counts.rejected_payloads + (old.meta.changes ?? 0) };
}
