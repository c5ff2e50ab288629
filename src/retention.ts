/**
 * Retention: with RETENTION_DAYS set, the cron erases alerts submitted longer ago (with
 * their deliveries and quarantined conflicts) and quarantined bodies last seen longer ago,
 * in bounded batches. An alert whose fan-out is unfinished is kept until it is finished; with
 * the archive bound (ARCHIVE), an alert the archive has not taken yet is kept too.
 * Unset: everything is kept.
 */
import type { Budget } from "./budget";
import { positiveWholeNumber } from "./config";
import { log } from "./log";
import { addErasure, alertsSubmittedBefore, type ErasureCounts, eraseAlerts, eraseRejectedBefore, noErasure } from "./store/erasure";

/** Alerts looked at per batch, and batches per run. */
export const RETENTION_BATCH = 100;
export const RETENTION_BATCHES_PER_RUN = 5;

/** RETENTION_DAYS: a positive whole number of days, or null (unset, or not a positive integer). */
export function retentionDays(raw: string | undefined): number | null {
  return positiveWholeNumber(raw);
}

/**
 * Applies the retention period, within `budget` when given: each batch costs a read and an
 * erase, and the quarantine's part one more at the end.
 */
export async function applyRetention(
  db: D1Database,
  days: number,
  now: Date,
  budget?: Budget,
  options: { archive: boolean } = { archive: false },
): Promise<ErasureCounts & { kept_unfinished: number }> {
  const before = new Date(now.getTime() - days * 86_400_000).toISOString();
  let total = noErasure();
  let kept_unfinished = 0;
  let after: { submitted_at: string; alert_id: string } | null = null;
  for (let i = 0; i < RETENTION_BATCHES_PER_RUN && (budget?.left() ?? Number.POSITIVE_INFINITY) >= 3; i++) {
    const candidates = await alertsSubmittedBefore(db, { before, now: now.toISOString(), after, limit: RETENTION_BATCH, archive: options.archive });
    const finished = candidates.filter((c) => !c.unfinished).map((c) => c.alert_id);
    kept_unfinished += candidates.length - finished.length;
    total = addErasure(total, await eraseAlerts(db, finished));
    const last = candidates.at(-1);
    if (!last || candidates.length < RETENTION_BATCH) break;
    after = { submitted_at: last.submitted_at, alert_id: last.alert_id };
  }
  total.rejected_payloads += await eraseRejectedBefore(db, before, RETENTION_BATCH * RETENTION_BATCHES_PER_RUN);
  log("info", "retention.applied", { days, before, ...total, kept_unfinished });
  return { ...total, kept_unfinished };
}
