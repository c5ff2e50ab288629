/** Sending alerts to `oneflow-alerts`: the one place that builds the message. */
import type { QueueMessage } from "./alert";

/** Queues take at most 100 messages a `sendBatch`. */
export const SEND_BATCH_SIZE = 100;

/**
 * Sends `{v:1, alert_id}` for each alert, in `sendBatch` calls of at most 100.
 *
 * @example
 * await sendAlerts(env.ALERTS_QUEUE, ["6425124d1b026625c189cac0"]);
 */
export async function sendAlerts(queue: Queue<QueueMessage>, alert_ids: readonly string[], only: ReadonlyMap<string, ReadonlySet<string>> = new Map()): Promise<void> {
  for (let i = 0; i < alert_ids.length; i += SEND_BATCH_SIZE) {
    const chunk = alert_ids.slice(i, i + SEND_BATCH_SIZE);
    await queue.sendBatch(
      chunk.map((alert_id) => {
        const names = only.get(alert_id);
        return { body: names === undefined ? { v: 1 as const, alert_id } : { v: 1 as const, alert_id, only: [...names] }, contentType: "json" as const };
      }),
    );
  }
}
