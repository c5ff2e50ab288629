/**
 * Consumer of `oneflow-alerts-dlq`: messages whose retries ran out. Their
 * undelivered deliveries become `dead` (replayable from `/api/replay`); nothing
 * leaves without a row that says so.
 */
import { isAlertMessage } from "../alert";
import { errorMessage, log } from "../log";
import { returnToOutbox } from "../store/alerts";
import { type DeliveryKey, loadAlerts, markDead } from "../store/deliveries";
import { type DestinationsConfig, wants } from "./destinations";

export interface DeadLetterContext {
  db: D1Database;
  destinations: DestinationsConfig;
  now: () => Date;
}

export async function consumeDeadLetters(batch: MessageBatch<unknown>, ctx: DeadLetterContext): Promise<void> {
  const messages = batch.messages.filter((m) => {
    if (isAlertMessage(m.body)) return true;
    log("error", "deadletter.bad_message", { message_id: m.id });
    m.ack();
    return false;
  });
  const alert_ids = messages.map((m) => (m.body as { alert_id: string }).alert_id);
  try {
    if (!ctx.destinations.ok) {
      // Nobody could say where they go: back to the outbox until the configuration is fixed.
      await returnToOutbox(ctx.db, alert_ids);
      log("error", "deadletter.returned_to_outbox", { error: ctx.destinations.error, alerts: alert_ids.length });
    } else {
      const { destinations } = ctx.destinations;
      const alerts = await loadAlerts(ctx.db, alert_ids);
      const keys: DeliveryKey[] = [];
      for (const alert of alerts.values()) {
        for (const d of destinations) if (wants(d, alert)) keys.push({ alert_id: alert.alert_id, destination: d.name });
      }
      await markDead(ctx.db, keys, ctx.now().toISOString(), "retries exhausted");
      for (const key of keys) log("error", "deadletter.dead", { ...key });
    }
    for (const m of messages) m.ack();
  } catch (error) {
    log("error", "deadletter.failed", { error: errorMessage(error), alerts: alert_ids.length });
    for (const m of messages) m.retry();
  }
}
