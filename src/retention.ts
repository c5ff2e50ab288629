/**
 * Retention: with RETENTION_DAYS set, the cron erases alerts submitted longer ago (with
 * their deliveries and quarantined conflicts) and quarantined bodies last seen longer ago,
 * in bounded batches. An alert whose fan-out is unfinished is kept until it is finished; with
 * the archive bound (ARCHIVE), an alert the archive has not taken yet is kept too.
 * Each run goes on where the last one stopped (a cursor kept in `settings`), and starts from
 * the oldest again once it reaches the end: unfinished rows, however many, never keep it from
 * the finished ones behind them. A response deleted inside 1Flow's retry window leaves a
 * tombstone, so that a retry of it is refused as a duplicate. Unset: everything is kept.
 */
import type { Budget } from "./budget";
import { positiveWholeNumber } from "./config";
import { log } from "./log";
import {
  addErasure,
  alertsSubmittedBefore,
  endRetention,
  type ErasureCounts,
  eraseAlerts,
  noErasure,
  type RetentionKeyset,
  SENDER_RETRY_WINDOW_IN_HOURS,
} from "./store/erasure";

/** Alerts looked at per batch, and batches per run. */
export const RETENTION_BATCH = 100;
export const RETENTION_BATCHES_PER_RUN = 5;

/** RETENTION_DAYS: a positive whole number of days, or null (unset, or not a positive integer). */
export function retentionDays(raw: string | undefined): number | null {
  return positiveWholeNumber(raw);
}

/**
 * Applies the retention period, within `budget` when given: each batch costs a read and an
 * erase, and the end (the quarantine's part and the kept cursor) one more.
 */
export async function applyRetention(
  db: D1Database,
  days: number,
  now: Date,
  budget?: Budget,
  options: { archive: boolean } = { archive: false },
): Promise<ErasureCounts & { kept_unfinished: number }> {
  const before = new Date(now.getTime() - days * 86_400_000).toISOString();
  const retried_since = new Date(now.getTime() - SENDER_RETRY_WINDOW_IN_HOURS * 3_600_000).toISOString();
  let total = noErasure();
  let kept_unfinished = 0;
  // null: after the cursor the last run kept.
  let after: RetentionKeyset | null = null;
  // Where the next run goes on: undefined leaves the kept cursor as it is, null starts it over.
  let cursor: RetentionKeyset | null | undefined;
  for (let i = 0; i < RETENTION_BATCHES_PER_RUN && (budget?.left() ?? Number.POSITIVE_INFINITY) >= 3; i++) {
    const candidates = await alertsSubmittedBefore(db, { before, now: now.toISOString(), after, limit: RETENTION_BATCH, archive: options.archive });
    const finished = candidates.filter((c) => !c.unfinished);
    kept_unfinished += candidates.length - finished.length;
    // 1Flow may still retry what it sent less than its window ago: a tombstone refuses it.
    const tombstones = { at: now.toISOString(), alert_ids: finished.filter((c) => c.received_at > retried_since).map((c) => c.alert_id) };
    total = addErasure(total, await eraseAlerts(db, finished.map((c) => c.alert_id), tombstones));
    const last = candidates.at(-1);
    if (!last || candidates.length < RETENTION_BATCH) {
      cursor = null;
      break;
    }
    after = { submitted_at: last.submitted_at, alert_id: last.alert_id };
    cursor = after;
  }
  total.rejected_payloads += await endRetention(db, { before, limit: RETENTION_BATCH * RETENTION_BATCHES_PER_RUN, cursor });
  log("info", "retention.applied", { days, before, ...total, kept_unfinished, restarts: cursor === null });
  return { ...total, kept_unfinished };
}
