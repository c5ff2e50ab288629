/**
 * Consumer of `oneflow-alerts-dlq`: messages whose retries ran out. An alert message's
 * undelivered deliveries become `dead` (replayable from `/api/replay`); a spooled body
 * goes back to `oneflow-alerts`, since D1 was down longer than its retries (it is never
 * dropped unstored). Nothing is acknowledged before its outcome is written: when D1 or
 * the Queue fails, the message comes back with backoff (the queue's max_retries is
 * high: it outlasts a D1 outage of days, past the Queue's own message retention).
 */
import { type AlertMessage, isAlertMessage, isBackfillMessage, isSpoolMessage, type QueueMessage } from "../alert";
import { onlyOf } from "./phases";
import { errorMessage, log } from "../log";
import { returnToOutbox } from "../store/alerts";
import { type AttemptRecord, claimAlerts, claimsOf, type DeliveryKey, markDead } from "../store/deliveries";
import { retryDelaySeconds } from "./backoff";
import { DESTINATIONS_CACHE_IN_MS } from "./configured";
import { type DestinationsConfig, wants } from "./destinations";
import { EvaluationBudget, INVOCATION_STEPS } from "./jsonata";

/** Backoff base of a dead letter that could not be recorded, in seconds (capped at an hour). */
export const DEAD_LETTER_RETRY_BASE_IN_SECONDS = 60;
/** How long the dead-letter consumer holds the alerts it records (two D1 round trips). */
export const DEAD_LETTER_CLAIM_IN_SECONDS = 60;

export interface DeadLetterContext {
  db: D1Database;
  queue: Queue<QueueMessage>;
  destinations: DestinationsConfig;
  now: () => Date;
  random: () => number;
}

export async function consumeDeadLetters(batch: MessageBatch<unknown>, ctx: DeadLetterContext): Promise<void> {
  const backoff = (m: Message<unknown>) =>
    m.retry({ delaySeconds: retryDelaySeconds({ attempts: m.attempts, base_seconds: DEAD_LETTER_RETRY_BASE_IN_SECONDS, random: ctx.random() }) });

  const alerts: Message<unknown>[] = [];
  for (const m of batch.messages) {
    if (isAlertMessage(m.body)) alerts.push(m);
    else if (isSpoolMessage(m.body)) {
      try {
        await ctx.queue.send(m.body, { contentType: "json" });
        log("warn", "deadletter.spool_requeued", { sha256: m.body.sha256 });
        m.ack();
      } catch (error) {
        log("error", "deadletter.spool_requeue_failed", { error: errorMessage(error) });
        backoff(m);
      }
    } else if (isBackfillMessage(m.body)) {
      // A backfill's page that kept failing (D1 down): its chain goes on from the main queue.
      try {
        await ctx.queue.send(m.body, { contentType: "json" });
        m.ack();
      } catch (error) {
        log("error", "deadletter.backfill_requeue_failed", { error: errorMessage(error) });
        backoff(m);
      }
    } else {
      log("error", "deadletter.bad_message", { message_id: m.id });
      m.ack();
    }
  }
  if (alerts.length === 0) return;
  const alert_ids = alerts.map((m) => (m.body as { alert_id: string }).alert_id);
  try {
    if (!ctx.destinations.ok) {
      // Nobody could say where they go: back to the outbox until the configuration is fixed.
      await returnToOutbox(ctx.db, alert_ids);
      log("error", "deadletter.returned_to_outbox", { error: ctx.destinations.error, alerts: alert_ids.length });
      for (const m of alerts) m.ack();
      return;
    }
    const { destinations } = ctx.destinations;
    // Claimed first, like a delivery: a consumer still sending one of these alerts keeps it,
    // and its outcome is never overwritten by `dead`.
    const now = ctx.now();
    const claimed_until = new Date(now.getTime() + DEAD_LETTER_CLAIM_IN_SECONDS * 1000).toISOString();
    const { claimed, statuses, health } = await claimAlerts(ctx.db, alert_ids, now.toISOString(), claimed_until);
    const unclaimed = alert_ids.filter((id) => !claimed.has(id));
    const elsewhere = unclaimed.length > 0 ? await claimsOf(ctx.db, unclaimed) : new Map<string, { until: string | null }>();
    // Deliveries a message carries (made before its consumer's ledger write failed): recorded
    // as delivered in the batch that marks the rest dead, never made dead themselves.
    const carried = new Map<string, Map<string, AttemptRecord>>();
    for (const m of alerts) {
      const body = m.body as AlertMessage;
      if (!claimed.has(body.alert_id)) continue;
      for (const o of body.sent ?? []) {
        const status = statuses.get(body.alert_id)?.get(o.destination);
        if (status !== undefined && status !== "pending") continue;
        const mine = carried.get(body.alert_id) ?? new Map<string, AttemptRecord>();
        mine.set(o.destination, { alert_id: body.alert_id, destination: o.destination, status: "delivered", last_status: o.status, last_error: null, at: o.at });
        carried.set(body.alert_id, mine);
      }
    }
    const keys: DeliveryKey[] = [];
    // Filters within the invocation's evaluation budget; an alert whose filters did not all
    // fit is left as it is and its dead letter comes back (nothing is decided for it now).
    const evaluation = new EvaluationBudget(INVOCATION_STEPS);
    const undecided = new Set<string>();
    // A backfill's message was about its destination only: the others are not its to decide.
    const only = onlyOf(alerts.map((m) => ({ message: m, alert_id: (m.body as AlertMessage).alert_id, only: (m.body as AlertMessage).only })));
    // A destination that asked to wait (a 429) holds its deliveries: never made dead, sent again after the hold.
    const at = now.toISOString();
    const held: { alert_id: string; destination: string; until: string }[] = [];
    for (const alert of claimed.values()) {
      const mine: DeliveryKey[] = [];
      const restriction = only.get(alert.alert_id);
      for (const d of destinations) {
        if (restriction !== undefined && !restriction.has(d.name)) continue;
        const status = statuses.get(alert.alert_id)?.get(d.name);
        // A paused destination's deliveries wait for its resume: a pause never makes one dead.
        if (status !== undefined && status !== "pending") continue;
        if (carried.get(alert.alert_id)?.has(d.name)) continue;
        if (health.get(d.name)?.state === "paused" || d.enabled === false) continue;
        const held_until = health.get(d.name)?.held_until ?? null;
        if (held_until !== null && held_until > at) {
          held.push({ alert_id: alert.alert_id, destination: d.name, until: held_until });
          continue;
        }
        const wanted = await wants(d, alert, evaluation);
        if (wanted.deferred) undecided.add(alert.alert_id);
        else if (wanted.wanted) mine.push({ alert_id: alert.alert_id, destination: d.name });
      }
      // What was decided is marked now, even when a later filter of the same alert did not fit:
      // the next try then spends its budget on the undecided ones only, so it always progresses.
      keys.push(...mine);
    }
    const finished = [...claimed.keys()].filter((id) => !undecided.has(id) && !only.has(id) && !held.some((h) => h.alert_id === id));
    // What a hold keeps goes back on the Queue for its destination, after the hold (no try spent).
    if (held.length > 0) {
      await ctx.queue.sendBatch(
        held.map((h) => ({
          body: { v: 1 as const, alert_id: h.alert_id, only: [h.destination] },
          contentType: "json" as const,
          delaySeconds: Math.max(1, Math.ceil((Date.parse(h.until) - now.getTime()) / 1000)),
        })),
      );
    }
    const dead = await markDead(ctx.db, keys, now.toISOString(), "retries exhausted", {
      release: [...claimed.keys()],
      claimed_until,
      fanned_out: finished,
      at: now.toISOString(),
      version: ctx.destinations.version ?? null,
    }, [...carried.values()].flatMap((m) => [...m.values()]));
    for (const key of dead) log("error", "deadletter.dead", { ...key });
    for (const m of alerts) {
      const alert_id = (m.body as { alert_id: string }).alert_id;
      const other = elsewhere.get(alert_id);
      if (claimed.has(alert_id) && dead.confirmed === false) {
        // This isolate's destinations were stale: nothing was marked; decided again once its cache has expired.
        m.retry({ delaySeconds: Math.ceil(DESTINATIONS_CACHE_IN_MS / 1000) + 1 });
      } else if (undecided.has(alert_id)) m.retry({ delaySeconds: 1 });
      else if (claimed.has(alert_id) || other === undefined) m.ack();
      else {
        // A consumer holds it: its outcome decides; look again when its claim ends.
        const seconds = other.until === null ? 1 : Math.ceil((Date.parse(other.until) - ctx.now().getTime()) / 1000) + 1;
        m.retry({ delaySeconds: Math.max(1, seconds) });
      }
    }
  } catch (error) {
    log("error", "deadletter.failed", { error: errorMessage(error), alerts: alert_ids.length });
    for (const m of alerts) backoff(m);
  }
}
