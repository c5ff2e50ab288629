/**
 * The scheduled outbox sweep. An alert whose enqueue after the reply failed
 * (its `enqueued_at` still NULL a minute after `received_at`) is sent to the
 * Queue here; so is an alert whose pending delivery lost its message. Work per
 * run is bounded, and two overlapping sweeps never send the same alert.
 */
import type { QueueMessage } from "./alert";
import type { Budget } from "./budget";
import { errorMessage, log } from "./log";
import { SEND_BATCH_SIZE, sendAlerts } from "./queue";
import { claimOutbox, markEnqueued } from "./store/alerts";
import { stalePendingAlerts, touchPending } from "./store/deliveries";
import { advanceResume, healthOf, pendingOf } from "./store/health";

/** Alerts the outbox part sends per run, at most (its budget share may stop it sooner). */
export const SWEEP_LIMIT = 500;
/** An alert younger than this is still in its request's hands. */
export const OUTBOX_GRACE_IN_SECONDS = 60;
/** How long a sweep holds the alerts it is sending. */
export const OUTBOX_CLAIM_IN_SECONDS = 120;
/** A pending delivery untouched this long has lost its message (retries are at most an hour apart). */
export const STALE_PENDING_IN_SECONDS = 2 * 3_600;

export interface SweepContext {
  db: D1Database;
  queue: Queue<QueueMessage>;
  now: Date;
  /** The subrequests this sweep may make (its share of the cron's); unlimited when absent. */
  budget?: Budget;
}

/** Subrequests one round of the outbox loop makes: claim, send, mark. */
const OUTBOX_ROUND_SUBREQUESTS = 3;
/** Subrequests the stale part needs: select, send (at most SEND_BATCH_SIZE alerts), touch. */
const STALE_SUBREQUESTS = 3;

function left(budget: Budget | undefined): number {
  return budget?.left() ?? Number.POSITIVE_INFINITY;
}

export interface SweepResult {
  enqueued: number;
  requeued_stale: number;
  failed: number;
}

export async function sweepOutbox(ctx: SweepContext): Promise<SweepResult> {
  const result: SweepResult = { enqueued: 0, requeued_stale: 0, failed: 0 };
  const now = ctx.now.getTime();
  const iso = (ms: number) => new Date(ms).toISOString();
  // Each part on its own: a D1 or Queue failure in one leaves the other to run, and the next tick retries.
  try {
    // Rounds while the share leaves room for one more and for the stale part after it.
    while (result.enqueued + result.failed < SWEEP_LIMIT && left(ctx.budget) >= OUTBOX_ROUND_SUBREQUESTS + STALE_SUBREQUESTS) {
      const alert_ids = await claimOutbox(ctx.db, {
        received_before: iso(now - OUTBOX_GRACE_IN_SECONDS * 1000),
        now: iso(now),
        claimed_until: iso(now + OUTBOX_CLAIM_IN_SECONDS * 1000),
        limit: SEND_BATCH_SIZE,
      });
      if (alert_ids.length === 0) break;
      try {
        await sendAlerts(ctx.queue, alert_ids);
      } catch (error) {
        // The claim lapses and a later sweep tries again.
        log("error", "outbox.send_failed", { error: errorMessage(error), alerts: alert_ids.length });
        result.failed += alert_ids.length;
        break;
      }
      result.enqueued += alert_ids.length;
      // Sent: a failed mark leaves it to the consumer, which marks what it receives.
      await markEnqueued(ctx.db, alert_ids, iso(now)).catch((error: unknown) =>
        log("warn", "outbox.mark_failed", { error: errorMessage(error), alerts: alert_ids.length }),
      );
    }
  } catch (error) {
    log("error", "outbox.claim_failed", { error: errorMessage(error) });
  }

  try {
    // One Queue send's worth a tick: cancelled and finished rows are never picked.
    const stale = await stalePendingAlerts(ctx.db, iso(now - STALE_PENDING_IN_SECONDS * 1000), SEND_BATCH_SIZE);
    if (stale.length > 0) {
      try {
        await sendAlerts(ctx.queue, stale);
        result.requeued_stale = stale.length;
        await touchPending(ctx.db, stale, iso(now));
      } catch (error) {
        log("error", "outbox.send_failed", { error: errorMessage(error), alerts: stale.length });
        if (result.requeued_stale === 0) result.failed += stale.length;
      }
    }
  } catch (error) {
    log("error", "outbox.stale_failed", { error: errorMessage(error) });
  }
  log(result.failed > 0 ? "error" : "info", "outbox.swept", { ...result });
  return result;
}

/** Pages of pending deliveries (100 each) a tick re-sends for resumed destinations, all destinations together. */
export const RESUME_PAGES_PER_RUN = 10;
const RESUME_PAGE = 100;

/**
 * The breakers' part of the sweep. A resumed destination's pending deliveries (they waited
 * while it was paused, spending no retry) are sent again, a bounded number per tick, until
 * none is left. A paused destination whose pause has run out gets one of its waiting
 * alerts sent, which the consumer takes as the probe; a destination with none waiting is
 * probed by the next alert that comes for it.
 */
export async function sweepDestinations(ctx: SweepContext): Promise<{ resent: number; probes: number }> {
  const result = { resent: 0, probes: 0 };
  const health = await healthOf(ctx.db);
  let pages = 0;
  for (const row of health.values()) {
    // A page costs a read and a send, and its cursor one write; a probe a read and a send.
    if (left(ctx.budget) < 3) break;
    if (row.state === "active" && row.resume_after !== null) {
      let after = JSON.parse(row.resume_after) as [string, string];
      let finished = false;
      while (pages < RESUME_PAGES_PER_RUN && left(ctx.budget) >= 3) {
        pages += 1;
        const { keys, last } = await pendingOf(ctx.db, { destination: row.destination, after, limit: RESUME_PAGE });
        if (keys.length > 0) await sendAlerts(ctx.queue, [...new Set(keys.map((k) => k.alert_id))]);
        result.resent += keys.length;
        if (last === null || keys.length < RESUME_PAGE) {
          finished = true;
          break;
        }
        after = last;
      }
      await advanceResume(ctx.db, row.destination, finished ? null : after);
      log("info", "outbox.resumed_destination", { destination: row.destination, resent: result.resent, finished });
    } else if (row.state === "paused" && row.paused_until !== null && Date.parse(row.paused_until) <= ctx.now.getTime()) {
      if (row.probe_until !== null && Date.parse(row.probe_until) > ctx.now.getTime()) continue;
      const { keys } = await pendingOf(ctx.db, { destination: row.destination, after: ["", ""], limit: 1 });
      if (keys.length > 0) {
        await sendAlerts(ctx.queue, [keys[0]?.alert_id ?? ""]);
        result.probes += 1;
      }
    }
  }
  if (result.resent + result.probes > 0) log("info", "outbox.destinations", result);
  return result;
}
