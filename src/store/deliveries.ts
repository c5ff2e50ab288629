/** SQL of the fan-out: reading alerts for delivery, and the `deliveries` ledger. */

/** What the consumer needs of a stored alert to deliver it. */
export interface StoredAlert {
  alert_id: string;
  survey_id: string;
  survey_name: string | null;
  user_system_id: string | null;
  platform: string | null;
  submitted_at: string;
  payload: string;
  answers: StoredAnswer[];
}

export interface StoredAnswer {
  position: number;
  title: string | null;
  type: string;
  answer: string | null;
  value: number | null;
}

export type DeliveryStatus = "pending" | "delivered" | "failed" | "dead";

/** The alerts of a batch with their answers, in one round trip. */
export async function loadAlerts(db: D1Database, alert_ids: string[]): Promise<Map<string, StoredAlert>> {
  const ids = JSON.stringify([...new Set(alert_ids)]);
  const [alerts, answers] = await db.batch([
    db
      .prepare(
        `SELECT alert_id, survey_id, survey_name, user_system_id, platform, submitted_at, payload
         FROM alerts WHERE alert_id IN (SELECT value FROM json_each(?1))`,
      )
      .bind(ids),
    db
      .prepare(
        `SELECT alert_id, position, title, type, answer, value FROM answers
         WHERE alert_id IN (SELECT value FROM json_each(?1)) ORDER BY alert_id, position`,
      )
      .bind(ids),
  ]);
  const byId = new Map<string, StoredAlert>();
  for (const row of (alerts?.results ?? []) as Omit<StoredAlert, "answers">[]) {
    byId.set(row.alert_id, { ...row, answers: [] });
  }
  for (const row of (answers?.results ?? []) as (StoredAnswer & { alert_id: string })[]) {
    const { alert_id, ...answer } = row;
    byId.get(alert_id)?.answers.push(answer);
  }
  return byId;
}

export interface DeliveryKey {
  alert_id: string;
  destination: string;
}

/**
 * Claims deliveries for this consumer until `claimed_until`, in one round trip.
 * A delivery is claimable when it has no row yet, or is `pending` and not held
 * by another consumer; `delivered`, `failed` and `dead` are never claimed.
 * Returns, for each key in order, whether this call claimed it.
 */
export async function claimDeliveries(
  db: D1Database,
  keys: DeliveryKey[],
  now: string,
  claimed_until: string,
): Promise<boolean[]> {
  if (keys.length === 0) return [];
  const claim = db.prepare(
    `INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, claimed_until)
     VALUES (?1, ?2, 'pending', 0, ?3, ?4)
     ON CONFLICT (alert_id, destination) DO UPDATE SET claimed_until = excluded.claimed_until
     WHERE deliveries.status = 'pending' AND (deliveries.claimed_until IS NULL OR deliveries.claimed_until < ?3)
     RETURNING alert_id`,
  );
  const results = await db.batch(keys.map((k) => claim.bind(k.alert_id, k.destination, now, claimed_until)));
  return results.map((r) => r.results.length === 1);
}

export interface AttemptRecord extends DeliveryKey {
  status: Exclude<DeliveryStatus, "dead">;
  last_status: number | null;
  last_error: string | null;
  at: string;
}

/** Records attempts and releases their claims, in one round trip. */
export async function recordAttempts(db: D1Database, records: AttemptRecord[]): Promise<void> {
  if (records.length === 0) return;
  const record = db.prepare(
    `UPDATE deliveries SET status = ?3, attempts = attempts + 1, last_status = ?4, last_error = ?5,
       updated_at = ?6, delivered_at = CASE WHEN ?3 = 'delivered' THEN ?6 ELSE delivered_at END,
       claimed_until = NULL
     WHERE alert_id = ?1 AND destination = ?2`,
  );
  await db.batch(records.map((r) => record.bind(r.alert_id, r.destination, r.status, r.last_status, r.last_error, r.at)));
}

/** Marks deliveries whose retries ran out as `dead`, creating rows that are missing. */
export async function markDead(db: D1Database, keys: DeliveryKey[], at: string, reason: string): Promise<void> {
  if (keys.length === 0) return;
  const dead = db.prepare(
    `INSERT INTO deliveries (alert_id, destination, status, attempts, last_error, updated_at)
     VALUES (?1, ?2, 'dead', 0, ?4, ?3)
     ON CONFLICT (alert_id, destination) DO UPDATE SET status = 'dead', updated_at = ?3,
       last_error = COALESCE(deliveries.last_error, ?4), claimed_until = NULL
     WHERE deliveries.status = 'pending'`,
  );
  await db.batch(keys.map((k) => dead.bind(k.alert_id, k.destination, at, reason)));
}

/**
 * Resets one alert's deliveries to `pending` for a replay: `failed` and `dead`
 * ones, and `delivered` ones only when forced. Returns the destinations reset.
 */
export async function resetAlertDeliveries(
  db: D1Database,
  input: { alert_id: string; destination: string | null; force: boolean; at: string },
): Promise<string[]> {
  const { results } = await db
    .prepare(
      `UPDATE deliveries SET status = 'pending', claimed_until = NULL, updated_at = ?4
       WHERE alert_id = ?1 AND (?2 IS NULL OR destination = ?2)
         AND (status IN ('failed', 'dead') OR (?3 = 1 AND status = 'delivered'))
       RETURNING destination`,
    )
    .bind(input.alert_id, input.destination, input.force ? 1 : 0, input.at)
    .all<{ destination: string }>();
  return results.map((r) => r.destination);
}

/**
 * Resets up to `limit` `failed` or `dead` deliveries matching the filter to
 * `pending`. Returns the keys reset.
 */
export async function resetDeliveries(
  db: D1Database,
  input: {
    status: "failed" | "dead";
    destination: string | null;
    since: string | null;
    until: string | null;
    limit: number;
    at: string;
  },
): Promise<DeliveryKey[]> {
  const { results } = await db
    .prepare(
      `UPDATE deliveries SET status = 'pending', claimed_until = NULL, updated_at = ?6
       WHERE rowid IN (
         SELECT rowid FROM deliveries
         WHERE status = ?1 AND (?2 IS NULL OR destination = ?2)
           AND (?3 IS NULL OR updated_at >= ?3) AND (?4 IS NULL OR updated_at < ?4)
         ORDER BY updated_at LIMIT ?5)
       RETURNING alert_id, destination`,
    )
    .bind(input.status, input.destination, input.since, input.until, input.limit, input.at)
    .all<DeliveryKey>();
  return results;
}

/** Alerts with a `pending` delivery untouched since `before`: their message was lost. */
export async function stalePendingAlerts(db: D1Database, before: string, limit: number): Promise<string[]> {
  const { results } = await db
    .prepare(
      `SELECT DISTINCT alert_id FROM deliveries
       WHERE status = 'pending' AND updated_at < ?1 AND (claimed_until IS NULL OR claimed_until < ?1)
       LIMIT ?2`,
    )
    .bind(before, limit)
    .all<{ alert_id: string }>();
  return results.map((r) => r.alert_id);
}

/** Touches pending deliveries so that the sweep does not pick them again at once. */
export async function touchPending(db: D1Database, alert_ids: string[], at: string): Promise<void> {
  if (alert_ids.length === 0) return;
  await db
    .prepare(
      `UPDATE deliveries SET updated_at = ?1
       WHERE status = 'pending' AND alert_id IN (SELECT value FROM json_each(?2))`,
    )
    .bind(at, JSON.stringify(alert_ids))
    .run();
}
