/** The Worker: HTTP ingest, the queue consumers, and the scheduled sweep and upkeep. */
import { runArchiveCron, runCron } from "./cron";
import { ARCHIVE_CRON } from "./schedules";
import type { Env } from "./env";
import { retryBaseSeconds } from "./fanout/backoff";
import { breakerSettings } from "./fanout/breaker";
import { consumeAlerts, subrequestBudget } from "./fanout/consumer";
import { destinationsOf } from "./fanout/configured";
import { deliveryTimeoutMs } from "./fanout/deliver";
import { consumeDeadLetters } from "./fanout/dead-letters";
import { app } from "./http/app";

/** The dead-letter queue's name ends so; the alerts queue's does not. */
const DEAD_LETTER_SUFFIX = "-dlq";

export default {
  fetch: app.fetch,

  async queue(batch, env) {
    const now = () => new Date();
    const { config: destinations, calls } = await destinationsOf(env);
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
      // What reading the destinations spent counts against the invocation's budget too.
      subrequest_budget: subrequestBudget(env.SUBREQUEST_BUDGET) - calls,
    });
  },

  async scheduled(controller, env) {
    // The archive's schedule: an archive tick with the whole invocation. Any other (the main
    // schedule, or a trigger by hand without ?cron): the sweep, upkeep, retention, then an
    // archive tick with what they left.
    const now = new Date(controller.scheduledTime);
    if (controller.cron === ARCHIVE_CRON) await runArchiveCron(env, now);
    else await runCron(env, now);
  },
} satisfies ExportedHandler<Env, unknown>;
