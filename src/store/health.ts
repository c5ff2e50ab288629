/**
 * SQL of destination health: the circuit breaker's state per destination, its probe, the
 * resume that re-sends what waited, and the notifications its transitions leave for the
 * cron. A destination with no row is active with no failures.
 */
import type { D1Reader } from "./d1";
import type { DeliveryKey } from "./deliveries";

export interface HealthRow {
  destination: string;
  pending: number;
  state: "active" | "paused";
  consecutive_failures: number;
  paused_until: string | null;
  probe_until: string | null;
  last_status: number | null;
  last_error: string | null;
  resume_after: string | null;
  /** A 429 (or a 503 with Retry-After) holds every delivery of the destination until then. */
  held_until: string | null;
}

export const HEALTH_COLUMNS =
  "destination, pending, state, consecutive_failures, paused_until, probe_until, last_status, last_error, resume_after, held_until";

/** Every destination's row (a handful): what the consumer, the dead-letter consumer and the pages read. */
export function healthStatement(db: D1Reader): D1PreparedStatement {
  return db.prepare(`SELECT ${HEALTH_COLUMNS} FROM destination_health`);
}

export async function healthOf(db: D1Reader): Promise<Map<string, HealthRow>> {
  const { results } = await healthStatement(db).all<HealthRow>();
  return new Map(results.map((r) => [r.destination, r]));
}

/** Holds every delivery of a destination until `until` (never shortens a longer hold); the breaker is untouched. */
export function holdStatement(db: D1Database, destination: string, until: string): D1PreparedStatement {
  return db
    .prepare(
      `INSERT INTO destination_health (destination, held_until) VALUES (?1, ?2)
       ON CONFLICT (destination) DO UPDATE SET held_until = MAX(COALESCE(held_until, ''), ?2)`,
    )
    .bind(destination, until);
}

/**
 * Takes the one probe a paused destination gets per period, when its pause has run out;
 * holds it until `until`. True when this consumer got it.
 */
export async function takeProbe(db: D1Database, destination: string, now: string, until: string): Promise<boolean> {
  const { results } = await db
    .prepare(
      `UPDATE destination_health SET probe_until = ?3
       WHERE destination = ?1 AND state = 'paused' AND paused_until <= ?2 AND (probe_until IS NULL OR probe_until <= ?2)
       RETURNING destination`,
    )
    .bind(destination, now, until)
    .all();
  return results.length === 1;
}

/** A notification for the cron to send, left only when `when` (SQL over ?5, ?6, … = `more`) holds. */
function notify(
  db: D1Database,
  event: string,
  destination: string,
  data: Record<string, unknown>,
  at: string,
  when: string,
  ...more: unknown[]
): D1PreparedStatement {
  return db
    .prepare(`INSERT INTO notifications (event, key, data, created_at) SELECT ?1, ?2, ?3, ?4 WHERE ${when}`)
    .bind(event, destination, JSON.stringify(data), at, ...more);
}

export interface BatchHealth {
  destination: string;
  delivered: number;
  failed: number;
  /** The last failure's status and error, when there was one. */
  last_status: number | null;
  last_error: string | null;
  /** This batch sent the paused destination's probe: its outcome pauses it again or resumes it. */
  probe: boolean;
}

/**
 * Statements that record a batch's outcomes in the breakers: consecutive failures add up
 * (a success resets them), and at `pause_after` an active destination pauses until
 * `paused_until`, leaving a `destination.paused` notification. A probe's success resumes
 * the destination (and starts re-sending what waited); its failure pauses it again.
 */
export function healthStatements(
  db: D1Database,
  outcomes: BatchHealth[],
  input: { now: string; paused_until: string; pause_after: number },
): D1PreparedStatement[] {
  const statements: D1PreparedStatement[] = [];
  for (const o of outcomes) {
    if (o.probe) {
      if (o.delivered > 0) {
        statements.push(
          db
            .prepare(
              `UPDATE destination_health SET state = 'active', consecutive_failures = 0, paused_until = NULL, probe_until = NULL,
                 resume_after = '["",""]'
               WHERE destination = ?1 AND state = 'paused'`,
            )
            .bind(o.destination),
          notify(db, "destination.resumed", o.destination, { destination: o.destination, after: "probe" }, input.now, "changes() = 1"),
        );
      } else {
        statements.push(
          db
            .prepare(
              `UPDATE destination_health SET paused_until = ?2, probe_until = NULL, last_status = ?3, last_error = ?4
               WHERE destination = ?1 AND state = 'paused'`,
            )
            .bind(o.destination, input.paused_until, o.last_status, o.last_error),
        );
      }
      continue;
    }
    statements.push(
      db
        .prepare(
          `INSERT INTO destination_health (destination, consecutive_failures, last_status, last_error, state, paused_until)
           VALUES (?1, ?2, ?4, ?5, CASE WHEN ?3 = 0 AND ?2 >= ?6 THEN 'paused' ELSE 'active' END, CASE WHEN ?3 = 0 AND ?2 >= ?6 THEN ?7 END)
           ON CONFLICT (destination) DO UPDATE SET
             consecutive_failures = CASE WHEN ?3 > 0 THEN 0 ELSE consecutive_failures + ?2 END,
             last_status = COALESCE(?4, last_status), last_error = COALESCE(?5, last_error),
             state = CASE WHEN state = 'active' AND ?3 = 0 AND consecutive_failures + ?2 >= ?6 THEN 'paused' ELSE state END,
             paused_until = CASE WHEN state = 'active' AND ?3 = 0 AND consecutive_failures + ?2 >= ?6 THEN ?7 ELSE paused_until END`,
        )
        .bind(o.destination, o.failed, o.delivered, o.last_status, o.last_error, input.pause_after, input.paused_until),
      notify(
        db,
        "destination.paused",
        o.destination,
        { destination: o.destination, paused_until: input.paused_until, last_status: o.last_status, last_error: o.last_error },
        input.now,
        // Only the batch that paused it: its own paused_until is now the row's.
        "?5 = 0 AND EXISTS (SELECT 1 FROM destination_health WHERE destination = ?2 AND state = 'paused' AND paused_until = ?6)",
        o.delivered,
        input.paused_until,
      ),
    );
  }
  return statements;
}

/** Resumes a paused destination now (the dashboard's Resume now): re-sending what waited starts. */
export async function resumeNow(db: D1Database, destination: string, now: string): Promise<boolean> {
  const [resumed] = await db.batch([
    db
      .prepare(
        `UPDATE destination_health SET state = 'active', consecutive_failures = 0, paused_until = NULL, probe_until = NULL,
           resume_after = '["",""]'
         WHERE destination = ?1 AND state = 'paused'`,
      )
      .bind(destination),
    notify(db, "destination.resumed", destination, { destination, after: "operator" }, now, "changes() = 1"),
  ]);
  return (resumed?.meta.changes ?? 0) > 0;
}

/**
 * Up to `limit` alerts with a pending delivery to `destination` after the keyset `after`
 * (deliveries_pending_by_destination), oldest first, with the key of the last one.
 */
export async function pendingOf(
  db: D1Reader,
  input: { destination: string; after: [string, string]; limit: number },
): Promise<{ keys: DeliveryKey[]; last: [string, string] | null }> {
  const { results } = await db
    .prepare(
      `SELECT alert_id, destination, updated_at FROM deliveries INDEXED BY deliveries_pending_by_destination
       WHERE destination = ?1 AND status = 'pending' AND (updated_at, alert_id) > (?2, ?3)
       ORDER BY updated_at, alert_id LIMIT ?4`,
    )
    .bind(input.destination, input.after[0], input.after[1], input.limit)
    .all<DeliveryKey & { updated_at: string }>();
  const tail = results.at(-1);
  return { keys: results.map(({ alert_id, destination }) => ({ alert_id, destination })), last: tail ? [tail.updated_at, tail.alert_id] : null };
}

/** Moves a resume's cursor forward, or ends the resume (null). */
export async function advanceResume(db: D1Database, destination: string, after: [string, string] | null): Promise<void> {
  await db
    .prepare("UPDATE destination_health SET resume_after = ?2 WHERE destination = ?1")
    .bind(destination, after === null ? null : JSON.stringify(after))
    .run();
}

/**
 * After a destination is enabled again: its deliveries that waited are re-sent from the
 * start (the cron pages through them). False when none waits.
 */
export async function resumeAfterEnable(db: D1Database, destination: string): Promise<boolean> {
  const { results } = await db
    .prepare(`UPDATE destination_health SET resume_after = '["",""]' WHERE destination = ?1 AND pending > 0 AND state = 'active' RETURNING destination`)
    .bind(destination)
    .all();
  return results.length > 0;
}
