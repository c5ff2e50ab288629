/**
 * SQL of the fan-out: claiming alerts for delivery, the `deliveries` ledger and the
 * per-destination hourly counters.
 *
 * Cost per alert delivered to one destination (rows written): the claim on the alert (1),
 * the ledger row, which a delivered row writes without index entry (1), and the
 * destination's hour (1, shared by the whole batch).
 */
import type { Alert, Answer } from "../alert";
import type { D1Reader } from "./d1";
import { type HealthRow, healthStatement } from "./health";

/** What the consumer needs of a stored alert to deliver it: the normalised alert and the body as received. */
export interface StoredAlert extends Alert {
  received_at: string;
  payload: string;
}

export type DeliveryStatus = "pending" | "delivered" | "failed" | "dead" | "cancelled";

/** Why a pending delivery was cancelled: final, not a failure, never re-sent by a sweep. */
export const CANCELLED_REMOVED = "destination removed";
export const CANCELLED_UNWANTED = "no longer matches its filter";
export const CANCELLED_BY_OPERATOR = "cancelled by the operator";

export interface DeliveryKey {
  alert_id: string;
  destination: string;
}

export const STORED_COLUMNS = `alert_id, alert_name, project_name, survey_id, survey_name, platform, user_system_id,
  user_parameters, trigger_event_name, trigger_event_parameters, submitted_at, received_at, payload, answers_json`;

export type StoredRow = Omit<StoredAlert, "answers"> & { answers_json: string };

/** `alerts.answers_json` as answers, each with its position. */
export function parseAnswers(answers_json: string): Answer[] {
  const list = JSON.parse(answers_json) as Omit<Answer, "position">[];
  return list.map((a, position) => ({ position, title: a.title, type: a.type, answer: a.answer, value: a.value }));
}

export function storedAlert(row: StoredRow): StoredAlert {
  const { answers_json, ...rest } = row;
  return { ...rest, answers: parseAnswers(answers_json) };
}

export interface Claim {
  /** The alerts this consumer now holds, until `claimed_until`. */
  claimed: Map<string, StoredAlert>;
  /** Every ledger row of the batch's alerts, by alert and destination. */
  statuses: Map<string, Map<string, DeliveryStatus>>;
  /** Every destination's breaker. */
  health: Map<string, HealthRow>;
}

/** One end for every claim, or each alert's own. */
export type ClaimEnds = string | Record<string, string>;

/** `{alert_id: until}` for these alerts. */
function endsOf(alert_ids: string[], until: ClaimEnds): Record<string, string> {
  return Object.fromEntries(alert_ids.map((id) => [id, typeof until === "string" ? until : (until[id] ?? "")]).filter(([, u]) => u !== ""));
}

/**
 * Claims the batch's alerts for this consumer, each until its end in `claimed_until` (one
 * for all, or one per alert), and reads them with their ledger rows, in one round trip. An
 * alert held by another consumer, or missing, is not in `claimed`. The claim also marks the
 * alert enqueued (the producer's mark may have failed).
 */
export async function claimAlerts(
  db: D1Database,
  alert_ids: string[],
  now: string,
  claimed_until: ClaimEnds,
  /** Claims these alerts' messages may take over while they hold (`{alert_id: the end a failed predecessor set}`). */
  inherits: Record<string, string> = {},
): Promise<Claim> {
  const ids = JSON.stringify([...new Set(alert_ids)]);
  const [alerts, ledger, breakers] = await db.batch([
    db
      .prepare(
        // Joined with the ends once (UPDATE … FROM): a correlated lookup into the JSON per alert
        // would read the whole list for each alert, rows D1 bills (batch² a batch).
        `UPDATE alerts SET fanout_claimed_until = e.value,
           enqueued_at = COALESCE(alerts.enqueued_at, ?1), outbox_claimed_until = NULL
         FROM (SELECT key, value FROM json_each(?2)) AS e
         WHERE alerts.alert_id = e.key
           AND (alerts.fanout_claimed_until IS NULL OR alerts.fanout_claimed_until <= ?1
                OR alerts.fanout_claimed_until = (SELECT value FROM json_each(?3) WHERE key = alerts.alert_id))
         RETURNING ${STORED_COLUMNS.split(",").map((c) => `alerts.${c.trim()}`).join(", ")}`,
      )
      .bind(now, JSON.stringify(endsOf([...new Set(alert_ids)], claimed_until)), JSON.stringify(inherits)),
    db.prepare(`SELECT alert_id, destination, status FROM deliveries WHERE alert_id IN (SELECT value FROM json_each(?1))`).bind(ids),
    healthStatement(db),
  ]);
  const claimed = new Map<string, StoredAlert>();
  for (const row of (alerts?.results ?? []) as StoredRow[]) claimed.set(row.alert_id, storedAlert(row));
  const statuses = new Map<string, Map<string, DeliveryStatus>>();
  for (const row of (ledger?.results ?? []) as (DeliveryKey & { status: DeliveryStatus })[]) {
    const byDestination = statuses.get(row.alert_id) ?? new Map<string, DeliveryStatus>();
    byDestination.set(row.destination, row.status);
    statuses.set(row.alert_id, byDestination);
  }
  const health = new Map(((breakers?.results ?? []) as HealthRow[]).map((r) => [r.destination, r]));
  return { claimed, statuses, health };
}

/** These alerts, each with when its claim ends (null: not claimed); alerts not stored are absent. */
export async function claimsOf(db: D1Database, alert_ids: string[]): Promise<Map<string, { alert: StoredAlert; until: string | null }>> {
  const { results } = await db
    .prepare(`SELECT ${STORED_COLUMNS}, fanout_claimed_until FROM alerts WHERE alert_id IN (SELECT value FROM json_each(?1))`)
    .bind(JSON.stringify(alert_ids))
    .all<StoredRow & { fanout_claimed_until: string | null }>();
  return new Map(results.map(({ fanout_claimed_until, ...row }) => [row.alert_id, { alert: storedAlert(row), until: fanout_claimed_until }]));
}

/** The alerts of a batch, without claiming them (the dead-letter consumer's read). */
export async function loadAlerts(db: D1Reader, alert_ids: string[]): Promise<Map<string, StoredAlert>> {
  const { results } = await db
    .prepare(`SELECT ${STORED_COLUMNS} FROM alerts WHERE alert_id IN (SELECT value FROM json_each(?1))`)
    .bind(JSON.stringify([...new Set(alert_ids)]))
    .all<StoredRow>();
  return new Map(results.map((row) => [row.alert_id, storedAlert(row)]));
}

export interface AttemptRecord extends DeliveryKey {
  status: Exclude<DeliveryStatus, "dead">;
  last_status: number | null;
  last_error: string | null;
  at: string;
  /** False when nothing was sent (a paused destination): the attempt count stays. */
  attempted?: boolean;
  /**
   * A final decision taken from a cached destinations list read at this version: written
   * only while it is still the current one (null or absent: unconditional).
   */
  version?: string | null;
}

/** The stored destinations' version as SQL (what a cached list is confirmed against). */
const CURRENT_VERSION = "COALESCE((SELECT value FROM settings WHERE key = 'destinations_version'), '0')";

/** Reads the stored destinations' version: the last statement of a batch whose guarded writes it tells about. */
export function versionStatement(db: D1Database): D1PreparedStatement {
  return db.prepare(`SELECT ${CURRENT_VERSION} AS value`);
}

export interface HourlyRecord {
  destination: string;
  /** YYYY-MM-DDTHH, UTC. */
  hour: string;
  delivered: number;
  failed: number;
  last_delivered_at: string | null;
}

/**
 * Records a batch's outcomes in one round trip: the ledger rows (a row that is already
 * delivered, failed, dead or cancelled stays as it is; an alert erased meanwhile gets none; a
 * final decision whose destinations version is no longer current is not written), the
 * destinations' hourly counters, and `also` (the breakers' statements, the claims' end).
 * Returns the batch's results, `also`'s last.
 */
/** One ledger row: inserted, or a pending row updated (a final row is never changed). */
export function attemptStatement(db: D1Database, r: AttemptRecord): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO deliveries (alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at)
       SELECT ?1, ?2, ?3, ?7, ?4, ?5, ?6, CASE WHEN ?3 = 'delivered' THEN ?6 END WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?1)
         AND (?8 IS NULL OR ${CURRENT_VERSION} = ?8) -- no row to insert: no conflict, no update either
       ON CONFLICT (alert_id, destination) DO UPDATE SET status = excluded.status, attempts = deliveries.attempts + ?7,
         last_status = excluded.last_status, last_error = excluded.last_error,
         updated_at = excluded.updated_at, delivered_at = excluded.delivered_at
       WHERE deliveries.status = 'pending'`,
    )
    .bind(r.alert_id, r.destination, r.status, r.last_status, r.last_error, r.at, r.attempted === false ? 0 : 1, r.version ?? null);
}

export async function recordOutcomes(
  db: D1Database,
  input: { attempts: AttemptRecord[]; hourly: HourlyRecord[]; also?: D1PreparedStatement[] },
): Promise<D1Result[]> {
  const count = db.prepare(
    `INSERT INTO destination_hourly (destination, hour, delivered, failed, last_delivered_at) VALUES (?1, ?2, ?3, ?4, ?5)
     ON CONFLICT (destination, hour) DO UPDATE SET delivered = delivered + excluded.delivered, failed = failed + excluded.failed,
       last_delivered_at = COALESCE(excluded.last_delivered_at, last_delivered_at)`,
  );
  const statements = [
    ...input.attempts.map((r) => attemptStatement(db, r)),
    ...input.hourly.map((h) => count.bind(h.destination, h.hour, h.delivered, h.failed, h.last_delivered_at)),
    ...(input.also ?? []),
  ];
  return statements.length > 0 ? db.batch(statements) : [];
}

/**
 * Ends a consumer's claims (`release`; only its own claim: `claimed_until` is the end it set,
 * one for all or one per alert), and marks `fanned_out` ones finished: alerts that no
 * destination wanted (an alert with ledger rows is finished by them), only while `version`
 * (when given) is the current one. Goes in the batch that records the outcomes. Writes
 * nothing for any other alert.
 */
export function finishClaimsStatement(
  db: D1Database,
  input: { release: string[]; claimed_until: ClaimEnds; fanned_out: string[]; at: string; version?: string | null },
): D1PreparedStatement {
  // One entry per alert: its claim's end (to end it if it is still this one) and whether it is
  // finished; joined once (UPDATE … FROM), never looked up per alert.
  const ends = endsOf(input.release, input.claimed_until);
  const fanned = new Set(input.fanned_out);
  const entries = Object.fromEntries([...new Set([...Object.keys(ends), ...fanned])].map((id) => [id, { end: ends[id] ?? null, fanned: fanned.has(id) ? 1 : 0 }]));
  return db
    .prepare(
      `UPDATE alerts SET
         fanout_claimed_until = CASE WHEN alerts.fanout_claimed_until = e.value ->> 'end' THEN NULL ELSE alerts.fanout_claimed_until END,
         fanned_out_at = CASE WHEN e.value ->> 'fanned' = 1 AND (?3 IS NULL OR ${CURRENT_VERSION} = ?3) THEN COALESCE(alerts.fanned_out_at, ?2) ELSE alerts.fanned_out_at END
       FROM (SELECT key, value FROM json_each(?1)) AS e
       WHERE alerts.alert_id = e.key
         AND (alerts.fanout_claimed_until = e.value ->> 'end'
              OR (e.value ->> 'fanned' = 1 AND alerts.fanned_out_at IS NULL AND (?3 IS NULL OR ${CURRENT_VERSION} = ?3)))`,
    )
    .bind(JSON.stringify(entries), input.at, input.version ?? null);
}

/**
 * With no destination configured: the alerts are finished, and their pending deliveries
 * (left by destinations since removed) cancelled, in one round trip; both only while
 * `version` (the list's, when it was cached) is the current one. False when it was not: an
 * isolate whose cache predates a PUT wrote nothing final.
 */
export async function finishWithoutDestinations(db: D1Database, alert_ids: string[], at: string, version: string | null = null): Promise<boolean> {
  const ids = JSON.stringify(alert_ids);
  const results = await db.batch([
    db
      .prepare(
        `UPDATE alerts SET enqueued_at = COALESCE(enqueued_at, ?2), outbox_claimed_until = NULL, fanned_out_at = COALESCE(fanned_out_at, ?2)
         WHERE alert_id IN (SELECT value FROM json_each(?1)) AND (?3 IS NULL OR ${CURRENT_VERSION} = ?3)`,
      )
      .bind(ids, at, version),
    db
      .prepare(
        `UPDATE deliveries SET status = 'cancelled', last_error = ?3, updated_at = ?2
         WHERE status = 'pending' AND alert_id IN (SELECT value FROM json_each(?1)) AND (?4 IS NULL OR ${CURRENT_VERSION} = ?4)`,
      )
      .bind(ids, at, CANCELLED_REMOVED, version),
    versionStatement(db),
  ]);
  const current = (results[2]?.results[0] as { value: string } | undefined)?.value ?? "0";
  return version === null || current === version;
}

/** Deliveries one cancel call ends at most; call again while `more` is true. */
export const CANCEL_LIMIT = 1_000;

/**
 * Cancels up to CANCEL_LIMIT pending deliveries of one destination, oldest first
 * (deliveries_pending_by_destination). Returns how many.
 */
export async function cancelPending(db: D1Database, input: { destination: string; reason: string; at: string }): Promise<number> {
  // Counted from RETURNING: meta.changes also counts the pending counter's trigger writes.
  const { results } = await db
    .prepare(
      `UPDATE deliveries SET status = 'cancelled', last_error = ?2, updated_at = ?3
       WHERE (alert_id, destination) IN (
         SELECT alert_id, destination FROM deliveries INDEXED BY deliveries_pending_by_destination
         WHERE destination = ?1 AND status = 'pending' ORDER BY updated_at LIMIT ?4)
       RETURNING alert_id`,
    )
    .bind(input.destination, input.reason, input.at, CANCEL_LIMIT)
    .all();
  return results.length;
}

/**
 * Marks deliveries whose retries ran out as `dead` (creating rows that are missing), in
 * one batch with the destinations' dead counts and a `delivery.dead` notification per
 * destination for the cron. A pending row that no attempt was spent on (held by a pause)
 * stays pending, and an alert erased meanwhile gets no row. Returns the deliveries that
 * became dead.
 */
export async function markDead(
  db: D1Database,
  keys: DeliveryKey[],
  at: string,
  reason: string,
  finish: Parameters<typeof finishClaimsStatement>[1],
  /** Deliveries a dead letter carried (made before a failed ledger write): recorded first, never made dead. */
  delivered: AttemptRecord[] = [],
): Promise<DeliveryKey[] & { confirmed?: boolean }> {
  const version = finish.version ?? null;
  const dead = db.prepare(
    `INSERT INTO deliveries (alert_id, destination, status, attempts, last_error, updated_at)
     SELECT ?1, ?2, 'dead', 0, ?4, ?3 WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?1) AND (?5 IS NULL OR ${CURRENT_VERSION} = ?5)
     ON CONFLICT (alert_id, destination) DO UPDATE SET status = 'dead', updated_at = ?3,
       last_error = COALESCE(deliveries.last_error, ?4)
     WHERE deliveries.status = 'pending' AND deliveries.attempts > 0
     RETURNING alert_id, destination`,
  );
  // The claims end (and the alerts are finished) in the same batch as their rows; with a
  // cached list's version, only while it is the current one (the last statement tells).
  const results = await db.batch([
    ...keys.map((k) => dead.bind(k.alert_id, k.destination, at, reason, version)),
    ...delivered.map((r) => attemptStatement(db, r)),
    finishClaimsStatement(db, finish),
    versionStatement(db),
  ]);
  const current = (results.at(-1)?.results[0] as { value: string } | undefined)?.value ?? "0";
  const died: DeliveryKey[] & { confirmed?: boolean } = results.slice(0, keys.length).flatMap((r) => r.results as DeliveryKey[]);
  died.confirmed = version === null || current === version;
  const perDestination = new Map<string, number>();
  for (const k of died) perDestination.set(k.destination, (perDestination.get(k.destination) ?? 0) + 1);
  if (perDestination.size > 0) {
    await db.batch(
      [...perDestination].flatMap(([destination, count]) => [
        db
          .prepare(
            `INSERT INTO destination_hourly (destination, hour, dead) VALUES (?1, substr(?2, 1, 13), ?3)
             ON CONFLICT (destination, hour) DO UPDATE SET dead = dead + excluded.dead`,
          )
          .bind(destination, at, count),
        db
          .prepare("INSERT INTO notifications (event, key, data, created_at) VALUES ('delivery.dead', ?1, ?2, ?3)")
          .bind(destination, JSON.stringify({ destination, count }), at),
      ]),
    );
  }
  return died;
}

/**
 * Resets one alert's deliveries to `pending` for a replay: `failed` and `dead`
 * ones, and `delivered` ones only when forced. Returns the destinations reset. A consumer's
 * live claim on the alert stays: the replay's message waits for it to end, so that two
 * consumers never send one alert at once.
 */
export async function resetAlertDeliveries(
  db: D1Database,
  input: { alert_id: string; destination: string | null; force: boolean; at: string },
): Promise<string[]> {
  const { results } = await db
      .prepare(
        `UPDATE deliveries SET status = 'pending', updated_at = ?4
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
 * `pending`, oldest first, on the open-deliveries index. Returns the keys reset.
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
      `UPDATE deliveries SET status = 'pending', updated_at = ?6
       WHERE (alert_id, destination) IN (
         SELECT alert_id, destination FROM deliveries INDEXED BY deliveries_open
         WHERE status = ?1 AND status <> 'delivered' AND (?2 IS NULL OR destination = ?2)
           AND updated_at >= COALESCE(?3, '') AND (?4 IS NULL OR updated_at < ?4)
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
      `SELECT DISTINCT alert_id FROM deliveries INDEXED BY deliveries_open
       WHERE status = 'pending' AND status <> 'delivered' AND updated_at < ?1 LIMIT ?2`,
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

/** The `limit` latest responses, newest submitted first (alerts_by_time): what a preview picks from. */
export async function latestAlerts(db: D1Reader, limit: number): Promise<StoredAlert[]> {
  const { results } = await db
    .prepare(`SELECT ${STORED_COLUMNS} FROM alerts INDEXED BY alerts_by_time ORDER BY submitted_at DESC LIMIT ?1`)
    .bind(limit)
    .all<StoredRow>();
  return results.map(storedAlert);
}
