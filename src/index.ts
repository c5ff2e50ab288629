/** The Worker: HTTP ingest, the queue consumers, and the scheduled sweep and upkeep. */
import type { Env } from "./env";
import { retryBaseSeconds } from "./fanout/backoff";
import { breakerSettings } from "./fanout/breaker";
import { consumeAlerts } from "./fanout/consumer";
import { deliveryTimeoutMs } from "./fanout/deliver";
import { consumeDeadLetters } from "./fanout/dead-letters";
import { destinationsFrom } from "./fanout/destinations";
import { app } from "./http/app";
import { errorMessage, log } from "./log";
import { configProblems } from "./config";
import { sendNotifications } from "./notify";
import { sweepDestinations, sweepOutbox } from "./outbox";
import { applyRetention, retentionDays } from "./retention";
import { pruneTombstones, TOMBSTONE_DAYS } from "./store/erasure";
import { foldSurveys, HOURLY_KEPT_IN_HOURS, pruneHourly } from "./store/rollups";
import { pruneSessions } from "./store/sessions";

/** The dead-letter queue's name ends so; the alerts queue's does not. */
const DEAD_LETTER_SUFFIX = "-dlq";

export default {
  fetch: app.fetch,

  async queue(batch, env) {
    const destinations = destinationsFrom(env.DESTINATIONS);
    const now = () => new Date();
    if (batch.queue.endsWith(DEAD_LETTER_SUFFIX)) {
      await consumeDeadLetters(batch, { db: env.DB, queue: env.ALERTS_QUEUE, destinations, now, random: Math.random });
      return;
    }
    await consumeAlerts(batch, {
      db: env.DB,
      queue: env.ALERTS_QUEUE,
      destinations,
      retry_base_seconds: retryBaseSeconds(env.RETRY_BASE_SECONDS),
      delivery_timeout_ms: deliveryTimeoutMs(env.DELIVERY_TIMEOUT_MS),
      breaker: breakerSettings(env),
      now,
      random: Math.random,
      metrics: env.METRICS,
    });
  },

  async scheduled(controller, env) {
    const now = new Date(controller.scheduledTime);
    await sweepOutbox({ db: env.DB, queue: env.ALERTS_QUEUE, now });
    // Each step on its own: one failing does not stop the others, and the next tick tries again.
    const silence = Number(env.SILENCE_HOURS);
    const yesterday = new Date(now.getTime() - 86_400_000).toISOString().slice(0, 10);
    const hoursAgo = new Date(now.getTime() - HOURLY_KEPT_IN_HOURS * 3_600_000).toISOString().slice(0, 13);
    const tombstonesBefore = new Date(now.getTime() - TOMBSTONE_DAYS * 86_400_000).toISOString();
    for (const [step, run] of [
      ["destinations", () => sweepDestinations({ db: env.DB, queue: env.ALERTS_QUEUE, now })],
      [
        "notify",
        () =>
          sendNotifications({
            db: env.DB,
            url: configProblems(env).some((p) => p.startsWith("NOTIFY_URL")) ? undefined : env.NOTIFY_URL,
            silence_hours: Number.isInteger(silence) && silence > 0 ? silence : null,
            now,
          }),
      ],
      ["fold_surveys", () => foldSurveys(env.DB, yesterday)],
      ["prune_hourly", () => pruneHourly(env.DB, hoursAgo)],
      ["prune_sessions", () => pruneSessions(env.DB, now.toISOString())],
      ["prune_tombstones", () => pruneTombstones(env.DB, tombstonesBefore)],
    ] as const) {
      await run().catch((error: unknown) => log("error", `cron.${step}_failed`, { error: errorMessage(error) }));
    }
    const days = retentionDays(env.RETENTION_DAYS);
    if (days !== null) await applyRetention(env.DB, days, now);
  },
} satisfies ExportedHandler<Env, unknown>;
