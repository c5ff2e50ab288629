/**
 * Retention: with RETENTION_DAYS set, the cron erases alerts received longer ago
 * (with their answers, deliveries and quarantined mentions) and quarantined bodies
 * last seen longer ago, in bounded batches. Unset: everything is kept.
 */
import { log } from "./log";
import { type ErasureCounts, eraseOlderThan } from "./store/erasure";

/** Alerts erased per statement batch, and batches per run. */
export const RETENTION_BATCH = 500;
export const RETENTION_BATCHES_PER_RUN = 5;

export function retentionDays(raw: string | undefined): number | null {
  if (raw === undefined || raw.trim() === "") return null;
  const days = Number(raw);
  return Number.isFinite(days) && days > 0 ? days : null;
}

export async function applyRetention(db: D1Database, days: number, now: Date): Promise<ErasureCounts> {
  const before = new Date(now.getTime() - days * 86_400_000).toISOString();
  const total: ErasureCounts = { alerts: 0, answers: 0, deliveries: 0, rejected_payloads: 0 };
  for (let i = 0; i < RETENTION_BATCHES_PER_RUN; i++) {
    const erased = await eraseOlderThan(db, before, RETENTION_BATCH);
    total.alerts += erased.alerts;
    total.answers += erased.answers;
    total.deliveries += erased.deliveries;
    total.rejected_payloads += erased.rejected_payloads;
    if (erased.alerts < RETENTION_BATCH && erased.rejected_payloads < RETENTION_BATCH) break;
  }
  log("info", "retention.applied", { days, before, ...total });
  return total;
}
