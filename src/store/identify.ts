/**
 * SQL of the 1flow-identify ordering: the newest response delivered per (destination,
 * user). A response older than it is not sent (its ledger row says superseded), so a
 * retry of an older response never overwrites a newer one in 1Flow.
 */

export interface Latest {
  submitted_at: string;
  alert_id: string;
}

/** The newest response delivered for each (destination, user) pair asked, by "destination\\0user". */
export async function latestDelivered(db: D1Database, pairs: { destination: string; user_system_id: string }[]): Promise<Map<string, Latest>> {
  if (pairs.length === 0) return new Map();
  const { results } = await db
    .prepare(
      `SELECT l.destination AS destination, l.user_system_id AS user_system_id, l.submitted_at AS submitted_at, l.alert_id AS alert_id
       FROM json_each(?1) AS p JOIN identify_latest AS l
         ON l.destination = json_extract(p.value, '$[0]') AND l.user_system_id = json_extract(p.value, '$[1]')`,
    )
    .bind(JSON.stringify(pairs.map((p) => [p.destination, p.user_system_id])))
    .all<Latest & { destination: string; user_system_id: string }>();
  return new Map(results.map((r) => [pairKey(r.destination, r.user_system_id), { submitted_at: r.submitted_at, alert_id: r.alert_id }]));
}

export function pairKey(destination: string, user_system_id: string): string {
  return `${destination}\u0000${user_system_id}`;
}

/** Whether a response is older than the newest one delivered (by submission time, then alert_id). */
export function isSuperseded(response: Latest, latest: Latest | undefined): boolean {
  if (latest === undefined) return false;
  return response.submitted_at < latest.submitted_at || (response.submitted_at === latest.submitted_at && response.alert_id < latest.alert_id);
}

/** Records a delivered response as its user's newest for the destination, unless a newer one is. */
export function recordLatestStatement(db: D1Database, input: { destination: string; user_system_id: string } & Latest): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO identify_latest (destination, user_system_id, submitted_at, alert_id) VALUES (?1, ?2, ?3, ?4)
       ON CONFLICT (destination, user_system_id) DO UPDATE SET submitted_at = excluded.submitted_at, alert_id = excluded.alert_id
       WHERE (excluded.submitted_at, excluded.alert_id) > (identify_latest.submitted_at, identify_latest.alert_id)`,
    )
    .bind(input.destination, input.user_system_id, input.submitted_at, input.alert_id);
}
