/**
 * SQL of the 1flow-identify ordering: per (destination, user), the newest response
 * delivered and a lease. One consumer at a time holds a pair's lease while it sends; it
 * reads the newest delivered response as it takes the lease, so that it never sends one
 * older than that, and two consumers never have requests for one user in flight at once.
 * Every statement is keyed by the pair: no scan.
 */

export interface Latest {
  submitted_at: string;
  alert_id: string;
}

export interface Pair {
  destination: string;
  user_system_id: string;
}

export function pairKey(destination: string, user_system_id: string): string {
  return `${destination}\u0000${user_system_id}`;
}

/** Whether a response is older than the newest one delivered (by submission time, then alert_id). */
export function isSuperseded(response: Latest, latest: Latest | undefined | null): boolean {
  if (latest === undefined || latest === null || latest.alert_id === "") return false;
  return response.submitted_at < latest.submitted_at || (response.submitted_at === latest.submitted_at && response.alert_id < latest.alert_id);
}

/**
 * Takes the pair's lease for `owner` until `until`, unless another consumer holds a live
 * one; only while the response `alert_id` is still stored (an erasure in between leaves no
 * row). The lease names the response it is taken to send. A lease that ran out without its
 * holder ending it (the record failed, the invocation was killed) may have delivered its
 * response: taking it over counts that response as delivered, so that an older one is never
 * sent after it (the response itself is still pending, and is sent again: at least once).
 * Returns the newest delivered response (alert_id '' when none) when it took the lease, no
 * row when it did not.
 */
export function leaseStatement(
  db: D1Database,
  input: Pair & { alert_id: string; submitted_at: string; owner: string; now: string; until: string },
): D1PreparedStatement {
  const unended = "lease_alert_id IS NOT NULL AND (lease_submitted_at, lease_alert_id) > (submitted_at, alert_id)";
  return db
    .prepare(
      `INSERT INTO identify_latest (destination, user_system_id, submitted_at, alert_id, lease_until, lease_owner, lease_submitted_at, lease_alert_id)
       SELECT ?1, ?2, '', '', ?4, ?3, ?7, ?6 WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?6)
       ON CONFLICT (destination, user_system_id) DO UPDATE SET
         submitted_at = CASE WHEN ${unended} THEN lease_submitted_at ELSE submitted_at END,
         alert_id = CASE WHEN ${unended} THEN lease_alert_id ELSE alert_id END,
         lease_until = ?4, lease_owner = ?3, lease_submitted_at = ?7, lease_alert_id = ?6
       WHERE identify_latest.lease_until IS NULL OR identify_latest.lease_until <= ?5
       RETURNING submitted_at, alert_id`,
    )
    .bind(input.destination, input.user_system_id, input.owner, input.until, input.now, input.alert_id, input.submitted_at);
}

/**
 * Ends `owner`'s lease on the pair and, with `delivered`, records that response as the
 * newest when it is newer. A pair erased meanwhile stays erased (an UPDATE writes no new row).
 */
export function settleLeaseStatement(db: D1Database, input: Pair & { owner: string; delivered: Latest | null }): D1PreparedStatement {
  const mine = "lease_owner = ?3";
  return db
    .prepare(
      `UPDATE identify_latest SET
         submitted_at = CASE WHEN ?4 IS NOT NULL AND (?4, ?5) > (submitted_at, alert_id) THEN ?4 ELSE submitted_at END,
         alert_id = CASE WHEN ?4 IS NOT NULL AND (?4, ?5) > (submitted_at, alert_id) THEN ?5 ELSE alert_id END,
         lease_until = CASE WHEN ${mine} THEN NULL ELSE lease_until END,
         lease_submitted_at = CASE WHEN ${mine} THEN NULL ELSE lease_submitted_at END,
         lease_alert_id = CASE WHEN ${mine} THEN NULL ELSE lease_alert_id END,
         lease_owner = CASE WHEN ${mine} THEN NULL ELSE lease_owner END
       WHERE destination = ?1 AND user_system_id = ?2`,
    )
    .bind(input.destination, input.user_system_id, input.owner, input.delivered?.submitted_at ?? null, input.delivered?.alert_id ?? null);
}

/** Takes the leases of these pairs in one round trip; each result is the pair's newest delivered response, or null when busy. */
export async function takeLeases(
  db: D1Database,
  pairs: (Pair & { alert_id: string; submitted_at: string })[],
  input: { owner: string; now: string; until: string },
): Promise<(Latest | null)[]> {
  if (pairs.length === 0) return [];
  const results = await db.batch(pairs.map((p) => leaseStatement(db, { ...p, ...input })));
  return results.map((r) => ((r.results[0] as Latest | undefined) ?? null));
}
