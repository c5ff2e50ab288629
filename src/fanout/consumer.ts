/**
 * Consumer of `oneflow-alerts`: claims each alert of a batch, delivers it to every
 * destination that wants it and does not have it yet (at most 6 requests open at once),
 * records the batch in one D1 batch, and acknowledges or retries each message on its own.
 * A message is acknowledged only when every delivery of its alert has an outcome in the
 * ledger; one whose alert another consumer holds comes back when that claim ends. The work
 * is done by the phases of ./phases.ts (claim, plan, send, record, settle), in order.
 */
import { positiveWholeNumber } from "../config";
import { isAlertMessage, isBackfillMessage, isSpoolMessage, type QueueMessage, type SpoolMessage } from "../alert";
import { Budget, meteredD1, meteredQueue } from "../budget";
import { DEFAULT_SUBREQUEST_BUDGET } from "../limits";
import { consumeBackfills } from "../backfill";
import { ingest } from "../ingest/ingest";
import { spooledBody } from "../spool";
import { errorMessage, log } from "../log";
import { finishWithoutDestinations } from "../store/deliveries";
import { DESTINATIONS_CACHE_IN_MS } from "./configured";
import type { BreakerSettings } from "./breaker";
import type { DestinationsConfig } from "./destinations";
import { EvaluationBudget, INVOCATION_STEPS } from "./jsonata";
import { AFTER_DELIVERIES, backoffSeconds, claim, type Entry, inheritsOf, onlyOf, type PhaseContext, plan, record, release, send, sentOf, settle } from "./phases";

export {
  CARRIED_OVER,
  CLAIM_MARGIN_IN_SECONDS,
  claimMilliseconds,
  EVALUATION_CARRIED_OVER,
  fairShare,
  HELD_BY_DESTINATION,
  LEASED_ELSEWHERE,
  PACED,
  SUPERSEDED,
} from "./phases";

export interface ConsumerContext {
  db: D1Database;
  queue: Queue<QueueMessage>;
  destinations: DestinationsConfig;
  retry_base_seconds: number;
  delivery_timeout_ms: number;
  /** The circuit breaker: consecutive failed attempts that pause a destination, and for how long. */
  breaker: BreakerSettings;
  now: () => Date;
  random: () => number;
  /** Workers Analytics Engine: one data point per delivery attempt, when bound. */
  metrics?: AnalyticsEngineDataset;
  /** Subrequests one invocation may make (D1 calls, Queue sends, deliveries): SUBREQUEST_BUDGET. */
  subrequest_budget?: number;
  /** JSONata evaluation steps one invocation may spend: INVOCATION_STEPS. */
  evaluation_steps?: number;
}

export { DEFAULT_SUBREQUEST_BUDGET };

export function subrequestBudget(raw: string | undefined): number {
  return positiveWholeNumber(raw) ?? DEFAULT_SUBREQUEST_BUDGET;
}

/**
 * The phases' context for one invocation: every D1 call and Queue send spends the
 * invocation's budget (and so does every delivery), and its evaluations the step budget.
 * Null when the destinations could not be read (`config`'s error).
 */
export function phaseContext(context: ConsumerContext, budget = new Budget(context.subrequest_budget ?? DEFAULT_SUBREQUEST_BUDGET)): PhaseContext | null {
  if (!context.destinations.ok) return null;
  return {
    ...context,
    db: meteredD1(context.db, budget),
    queue: meteredQueue(context.queue, budget),
    destinations: context.destinations.destinations,
    version: context.destinations.version,
    budget,
    evaluation: new EvaluationBudget(context.evaluation_steps ?? INVOCATION_STEPS),
  };
}

export async function consumeAlerts(batch: MessageBatch<unknown>, context: ConsumerContext): Promise<void> {
  const budget = new Budget(context.subrequest_budget ?? DEFAULT_SUBREQUEST_BUDGET);
  const ctx: ConsumerContext = { ...context, db: meteredD1(context.db, budget), queue: meteredQueue(context.queue, budget) };
  const backoff = (message: Message<unknown>) => message.retry({ delaySeconds: backoffSeconds(ctx, message) });

  // One context for the whole invocation: its subrequest and evaluation budgets are shared.
  const shared = phaseContext(context, budget);
  const backfills = batch.messages.filter((m) => isBackfillMessage(m.body));
  if (backfills.length > 0) {
    await consumeBackfills(backfills, shared === null ? null : { db: shared.db, queue: shared.queue, destinations: shared.destinations, version: shared.version, now: ctx.now, evaluation: shared.evaluation }, backoff);
  }
  const messages = await receive(batch, ctx, budget, backoff);
  if (messages.length === 0) return;
  const alert_ids = messages.map((m) => m.alert_id);

  if (!ctx.destinations.ok) {
    // Kept on the Queue until the configuration is fixed (see GET /healthz).
    log("error", "fanout.bad_destinations", { error: ctx.destinations.error, messages: messages.length });
    for (const { message } of messages) backoff(message);
    return;
  }
  const { destinations, version } = ctx.destinations;
  if (destinations.length === 0) {
    log("info", "fanout.no_destinations", { alerts: alert_ids.join(",") });
    // Finished: out of the outbox, and what removed destinations left pending cancelled;
    // only while this isolate's (empty) list is the current one.
    try {
      const confirmed = await finishWithoutDestinations(ctx.db, alert_ids, ctx.now().toISOString(), version ?? null);
      if (!confirmed) log("warn", "fanout.stale_destinations", { alerts: alert_ids.length, version: version ?? null });
      for (const { message } of messages) {
        if (confirmed) message.ack();
        else message.retry({ delaySeconds: Math.ceil(DESTINATIONS_CACHE_IN_MS / 1000) + 1 });
      }
    } catch (error) {
      log("error", "fanout.finish_failed", { error: errorMessage(error), messages: messages.length });
      for (const { message } of messages) backoff(message);
    }
    return;
  }

  const phases = shared as PhaseContext;
  try {
    const claimed = await claim(phases, alert_ids, inheritsOf(messages));
    const planned = await plan(phases, claimed, sentOf(messages), onlyOf(messages));
    const attempts = await send(phases, planned);
    const recorded = await record(phases, claimed, planned, attempts);
    await settle(phases, messages, claimed, planned, attempts, recorded);
    // Nothing is in flight any more: what the failed record batch could not end ends now.
    if (!recorded.ok) await release(phases, claimed, planned, attempts);
  } catch (error) {
    log("error", "fanout.batch_failed", { error: errorMessage(error), messages: messages.length });
    for (const { message } of messages) backoff(message);
  }
}

/**
 * The batch's messages as alerts to fan out: a spooled body is stored first (through the same
 * routine as the webhook), a malformed message is acknowledged with a log line.
 */
async function receive(batch: MessageBatch<unknown>, ctx: ConsumerContext, budget: Budget, backoff: (m: Message<unknown>) => void): Promise<Entry[]> {
  const messages: Entry[] = [];
  for (const message of batch.messages) {
    if (isBackfillMessage(message.body)) continue; // read above
    if (isAlertMessage(message.body)) messages.push({ message, alert_id: message.body.alert_id, sent: message.body.sent, claim: message.body.claim, only: message.body.only });
    else if (isSpoolMessage(message.body) && budget.left() < SPOOL_STORE_SUBREQUESTS + AFTER_DELIVERIES + 4) {
      // No room left to store it in this invocation: it comes back soon.
      message.retry({ delaySeconds: 1 });
    } else if (isSpoolMessage(message.body)) {
      const alert_id = await storeSpooled(message.body, ctx);
      if (alert_id === undefined) backoff(message);
      else if (alert_id === null) message.ack();
      else messages.push({ message, alert_id });
    } else {
      log("error", "fanout.bad_message", { message_id: message.id, body: JSON.stringify(message.body)?.slice(0, 200) });
      message.ack();
    }
  }
  return messages;
}

/** Subrequests storing one spooled body may take (the store batch, and the spool's counter). */
const SPOOL_STORE_SUBREQUESTS = 3;

/** How long storing one spooled body may take in the consumer. */
const SPOOL_STORE_DEADLINE_IN_MS = 10_000;

/**
 * Stores a spooled body. Returns its alert_id to fan out, null when there is nothing to
 * deliver (quarantined, or erased on request), or undefined when D1 still fails (retry).
 */
async function storeSpooled(message: SpoolMessage, ctx: ConsumerContext): Promise<string | null | undefined> {
  try {
    const result = await ingest(new TextEncoder().encode(await spooledBody(message)).buffer as ArrayBuffer, {
      db: ctx.db,
      queue: ctx.queue,
      waitUntil: () => {},
      now: ctx.now,
      deadline_at: Date.now() + SPOOL_STORE_DEADLINE_IN_MS,
      request_id: `spool-${message.sha256.slice(0, 12)}`,
      received_at: message.received_at,
      enqueue: false,
    });
    log("info", "spool.stored", { alert_id: result.alert_id, outcome: result.outcome });
    return result.outcome === "stored" || result.outcome === "duplicate" || result.outcome === "conflict" ? result.alert_id : null;
  } catch (error) {
    log("warn", "spool.store_failed", { sha256: message.sha256, error: errorMessage(error) });
    return undefined;
  }
}
