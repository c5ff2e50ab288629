/**
 * Consumer of `oneflow-alerts`: delivers each alert of a batch to every
 * destination that wants it, concurrently, and acknowledges or retries each
 * message on its own. The `deliveries` ledger makes it idempotent: a
 * destination that has an alert is never sent it again.
 */
import { isAlertMessage } from "../alert";
import { errorMessage, log } from "../log";
import { markEnqueued } from "../store/alerts";
import { claimDeliveries, type DeliveryKey, loadAlerts, recordAttempts } from "../store/deliveries";
import { retryDelaySeconds } from "./backoff";
import { type DeliveryAttempt, deliver } from "./deliver";
import { type DestinationsConfig, wants } from "./destinations";

/** How long a consumer holds a delivery it is making, beyond the delivery timeout. */
export const CLAIM_MARGIN_IN_SECONDS = 50;

export interface ConsumerContext {
  db: D1Database;
  destinations: DestinationsConfig;
  retry_base_seconds: number;
  delivery_timeout_ms: number;
  now: () => Date;
  random: () => number;
}

export async function consumeAlerts(batch: MessageBatch<unknown>, ctx: ConsumerContext): Promise<void> {
  const retry = (message: Message<unknown>, retry_after_seconds: number | null = null) =>
    message.retry({
      delaySeconds: retryDelaySeconds({
        attempts: message.attempts,
        base_seconds: ctx.retry_base_seconds,
        random: ctx.random(),
        retry_after_seconds,
      }),
    });

  const messages: { message: Message<unknown>; alert_id: string }[] = [];
  for (const message of batch.messages) {
    if (isAlertMessage(message.body)) messages.push({ message, alert_id: message.body.alert_id });
    else {
      log("error", "fanout.bad_message", { message_id: message.id, body: JSON.stringify(message.body)?.slice(0, 200) });
      message.ack();
    }
  }
  // The Queue has these messages: take their alerts out of the outbox.
  const marked = markEnqueued(
    ctx.db,
    messages.map((m) => m.alert_id),
    ctx.now().toISOString(),
  ).catch((error: unknown) => log("warn", "fanout.mark_enqueued_failed", { error: errorMessage(error) }));

  if (!ctx.destinations.ok) {
    // Kept on the Queue until the configuration is fixed (see GET /healthz).
    log("error", "fanout.bad_destinations", { error: ctx.destinations.error, messages: messages.length });
    for (const { message } of messages) retry(message);
    await marked;
    return;
  }
  const { destinations } = ctx.destinations;
  if (destinations.length === 0) {
    log("info", "fanout.no_destinations", { alerts: messages.map((m) => m.alert_id).join(",") });
    for (const { message } of messages) message.ack();
    await marked;
    return;
  }

  try {
    const alerts = await loadAlerts(ctx.db, messages.map((m) => m.alert_id));
    const now = ctx.now();
    const keys: (DeliveryKey & { index: number })[] = [];
    messages.forEach(({ alert_id }, index) => {
      const alert = alerts.get(alert_id);
      if (!alert) return;
      for (const d of destinations) if (wants(d, alert.survey_id)) keys.push({ alert_id, destination: d.name, index });
    });
    const claimed = await claimDeliveries(
      ctx.db,
      keys,
      now.toISOString(),
      new Date(now.getTime() + ctx.delivery_timeout_ms + CLAIM_MARGIN_IN_SECONDS * 1000).toISOString(),
    );

    // Every delivery of the batch at once; a slow destination holds up none of the others.
    const attempts = await Promise.all(
      keys
        .filter((_, i) => claimed[i])
        .map(async (key) => {
          const alert = alerts.get(key.alert_id);
          const destination = destinations.find((d) => d.name === key.destination);
          if (!alert || !destination) throw new Error("claimed a delivery it cannot make");
          return { key, attempt: await deliver(destination, alert, ctx.now(), ctx.delivery_timeout_ms) };
        }),
    );
    // One write for the whole batch keeps D1 calls per invocation few (50 on the free plan).
    const recorded = await record(ctx, attempts);

    messages.forEach(({ message, alert_id }, index) => {
      if (!alerts.has(alert_id)) {
        log("warn", "fanout.alert_missing", { alert_id });
        message.ack();
        return;
      }
      const mine = attempts.filter((a) => a.key.index === index);
      const again = mine.filter((a) => !recorded || (!a.attempt.ok && !a.attempt.permanent));
      if (again.length === 0) {
        message.ack();
        return;
      }
      const retry_after = Math.max(0, ...again.map((a) => a.attempt.retry_after_seconds ?? 0));
      retry(message, retry_after);
    });
  } catch (error) {
    log("error", "fanout.batch_failed", { error: errorMessage(error), messages: messages.length });
    for (const { message } of messages) retry(message);
  }
  await marked;
}

/** Records the attempts; false when D1 did not take them, so their messages are retried. */
async function record(
  ctx: ConsumerContext,
  attempts: { key: DeliveryKey; attempt: DeliveryAttempt }[],
): Promise<boolean> {
  const at = ctx.now().toISOString();
  const records = attempts.map(({ key, attempt }) => {
    const status = attempt.ok ? "delivered" : attempt.permanent ? "failed" : "pending";
    log(attempt.ok ? "info" : "warn", "fanout.attempt", {
      alert_id: key.alert_id,
      destination: key.destination,
      outcome: status,
      http_status: attempt.status,
      error: attempt.error,
    });
    return {
      alert_id: key.alert_id,
      destination: key.destination,
      status,
      last_status: attempt.status,
      last_error: attempt.error,
      at,
    } as const;
  });
  try {
    await recordAttempts(ctx.db, records);
    return true;
  } catch (error) {
    log("error", "fanout.record_failed", { deliveries: records.length, error: errorMessage(error) });
    return false;
  }
}
