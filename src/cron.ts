/**
 * The cron tick: the outbox sweep, the destinations' resumes and probes, notifications,
 * upkeep and retention, within one budget of subrequests.
 */
import type { QueueMessage } from "./alert";
import {
  ARCHIVE_DAYS_PER_TICK,
  ARCHIVE_FIXED_SUBREQUESTS,
  archiveDelayMinutes,
  archiveRowsPerTick,
  type ArchiveTickResult,
  runArchiveTick,
} from "./archive/archive";
import { Budget, BudgetSpentError, meteredD1, meteredQueue } from "./budget";
import { configProblems } from "./config";
import type { Env } from "./env";
import { errorMessage, log } from "./log";
import { sendNotifications } from "./notify";
import { sweepDestinations, sweepOutbox } from "./outbox";
import { applyRetention, retentionDays } from "./retention";
import { restartStalledBackfills } from "./backfill";
import { pruneTombstones, TOMBSTONE_DAYS } from "./store/erasure";
import { foldFacets, foldToday } from "./store/facets";
import { foldSurveys, HOURLY_KEPT_IN_HOURS, pruneHourly } from "./store/rollups";
import { pruneSessions } from "./store/sessions";

/**
 * Subrequests one cron tick makes at most (D1 calls, Queue sends and notification POSTs):
 * inside the free plan's 50 per invocation, with room to spare.
 */
export const CRON_SUBREQUEST_BUDGET = 45;

/** Each step's share of the tick's budget (they add up to CRON_SUBREQUEST_BUDGET). */
export const CRON_SHARES = { outbox: 9, destinations: 6, backfill: 3, notify: 12, upkeep: 5, insights: 4, retention: 6 } as const;

/** Surveys the insights' fold takes per tick: a read of up to 7 of its days' responses and a batch (two subrequests, after the list). */
export const FACET_SURVEYS_PER_TICK = 1;

/** Subrequests of the hourly fold of one survey's today: its mark, its read and its batch. */
const TODAY_FOLD_SUBREQUESTS = 3;
/** Subrequests of the whole days' fold of one survey: its list, its read and its batch. */
const WHOLE_DAYS_FOLD_SUBREQUESTS = 3;

/**
 * The archive's tick, in its own invocation (its own subrequests and CPU): one batch of
 * responses into Parquet parts in R2. Without the ARCHIVE binding it does nothing.
 */
export async function runArchiveCron(env: Env, now: Date): Promise<ArchiveTickResult | null> {
  return archiveWithin(env, now, new Budget(CRON_SUBREQUEST_BUDGET), ARCHIVE_DAYS_PER_TICK);
}

/** An archive tick on `budget`, writing at most `max_days` days; null without the ARCHIVE binding. */
function archiveWithin(env: Env, now: Date, budget: Budget, max_days: number): Promise<ArchiveTickResult | null> {
  if (!env.ARCHIVE) return Promise.resolve(null);
  return runArchiveTick({
    db: meteredD1(env.DB, budget),
    bucket: env.ARCHIVE,
    now,
    delay_minutes: archiveDelayMinutes(env.ARCHIVE_DELAY_MINUTES),
    rows_per_tick: archiveRowsPerTick(env.ARCHIVE_ROWS_PER_TICK),
    budget,
    max_days,
  });
}

export async function runCron(env: Env, now: Date): Promise<void> {
  // One budget of subrequests for the whole tick, a share to each step: a step that has
  // more to do stops at its share, and the next tick goes on.
  const budget = new Budget(CRON_SUBREQUEST_BUDGET);
  const silence = Number(env.SILENCE_HOURS);
  const yesterday = new Date(now.getTime() - 86_400_000).toISOString().slice(0, 10);
  const hoursAgo = new Date(now.getTime() - HOURLY_KEPT_IN_HOURS * 3_600_000).toISOString().slice(0, 13);
  const tombstonesBefore = new Date(now.getTime() - TOMBSTONE_DAYS * 86_400_000).toISOString();
  const days = retentionDays(env.RETENTION_DAYS);
  const steps: [keyof typeof CRON_SHARES, (share: Budget, db: D1Database, queue: Queue<QueueMessage>) => Promise<unknown>][] = [
    ["outbox", (share, db, queue) => sweepOutbox({ db, queue, now, budget: share })],
    ["destinations", (share, db, queue) => sweepDestinations({ db, queue, now, budget: share })],
    // A backfill whose chain of page messages stopped (a message lost) gets its page again.
    ["backfill", (_, db, queue) => restartStalledBackfills(db, queue, now)],
    [
      "notify",
      (share, db) =>
        sendNotifications({
          db,
          url: configProblems(env).some((p) => p.startsWith("NOTIFY_URL")) ? undefined : env.NOTIFY_URL,
          silence_hours: Number.isInteger(silence) && silence > 0 ? silence : null,
          now,
          budget: share,
        }),
    ],
    [
      "upkeep",
      async (_, db) => {
        for (const [task, run] of [
          ["fold_surveys", () => foldSurveys(db, yesterday)],
          ["prune_hourly", () => pruneHourly(db, hoursAgo, now)],
          ["prune_sessions", () => pruneSessions(db, now.toISOString())],
          ["prune_tombstones", () => pruneTombstones(db, tombstonesBefore)],
        ] as const) {
          await run().catch((error: unknown) => log("error", `cron.${task}_failed`, { error: errorMessage(error) }));
        }
      },
    ],
    // After upkeep, whose survey fold moves the days the insights may fold up to.
    [
      "insights",
      async (share, db) => {
        // Whole days first, and today's hours (a mark, a read and a batch) with what that left of
        // the share, else on a later tick (the page counts them live meanwhile); but the hour's
        // first tick folds today first, so late responses refolding whole days never starve it.
        const fold = (subrequests: number, run: () => Promise<number>) =>
          share.left() < subrequests
            ? Promise.resolve()
            : run().catch((error: unknown) => {
                if (error instanceof BudgetSpentError) throw error;
                log("error", "cron.insights_failed", { error: errorMessage(error) });
              });
        const wholeDays = () => fold(WHOLE_DAYS_FOLD_SUBREQUESTS, () => foldFacets(db, FACET_SURVEYS_PER_TICK));
        const hours = () => fold(TODAY_FOLD_SUBREQUESTS, () => foldToday(db, now, FACET_SURVEYS_PER_TICK));
        for (const run of now.getUTCMinutes() < 5 ? [hours, wholeDays] : [wholeDays, hours]) await run();
      },
    ],
    ["retention", (share, db) => (days === null ? Promise.resolve() : applyRetention(db, days, now, share, { archive: env.ARCHIVE !== undefined }))],
  ];
  // Each step on its own: one failing does not stop the others, and the next tick tries again.
  for (const [step, run] of steps) {
    const share = budget.share(CRON_SHARES[step]);
    await run(share, meteredD1(env.DB, share), meteredQueue(env.ALERTS_QUEUE, share)).catch((error: unknown) =>
      error instanceof BudgetSpentError
        ? log("warn", "cron.budget_spent", { step, used: share.used })
        : log("error", `cron.${step}_failed`, { error: errorMessage(error) }),
    );
  }
  // Last, an archive tick with the subrequests the steps left (as many days as they allow): the
  // archive goes on where only this schedule fires (a trigger by its expression, a wrangler.toml
  // with one cron). Its own schedule, two minutes later, has a whole invocation for it.
  const archiveDays = Math.min(ARCHIVE_DAYS_PER_TICK, Math.floor((budget.left() - ARCHIVE_FIXED_SUBREQUESTS) / 2));
  if (archiveDays >= 1) await archiveWithin(env, now, budget, archiveDays);
}
