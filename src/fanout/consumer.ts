/**
 * Consumer of `oneflow-alerts`: claims each alert of a batch, delivers it to every
 * destination that wants it and does not have it yet (at most 6 requests open at once),
 * records the batch in one D1 batch, and acknowledges or retries each message on its own.
 * A message is acknowledged only when every delivery of its alert has an outcome in the
 * ledger; one whose alert another consumer holds comes back when that claim ends.
 */
import { isAlertMessage, isSpoolMessage, type QueueMessage, type SpoolMessage } from "../alert";
import { ingest } from "../ingest/ingest";
import { errorMessage, log } from "../log";
import { markEnqueued } from "../store/alerts";
import {
  type AttemptRecord,
  claimAlerts,
  claimsOf,
  type DeliveryKey,
  type HourlyRecord,
  recordOutcomes,
  releaseClaims,
  type StoredAlert,
} from "../store/deliveries";
import { type BatchHealth, type HealthRow, healthStatements, takeProbe } from "../store/health";
import { isSuperseded, latestDelivered, pairKey, recordLatestStatement } from "../store/identify";
import { retryDelaySeconds } from "./backoff";
import type { BreakerSettings } from "./breaker";
import { type DeliveryAttempt, deliver } from "./deliver";
import { type Destination, type DestinationsConfig, wants } from "./destinations";
import { mapWithConcurrency, OUTBOUND_CONNECTIONS } from "./pool";

/** The ledger's word for an identify delivery that a newer response of the same user made moot. */
export const SUPERSEDED = "superseded by a newer response";

/** How long a consumer holds an alert it is delivering, beyond the delivery timeout. */
export const CLAIM_MARGIN_IN_SECONDS = 50;

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
}

interface Job {
  key: DeliveryKey;
  alert: StoredAlert;
  destination: Destination;
  /**
   * `held`: its destination is paused; nothing is sent and no retry is spent.
   * `superseded`: a newer response of the same user is already at this identify destination.
   */
  mode: "send" | "probe" | "held" | "superseded";
}

export async function consumeAlerts(batch: MessageBatch<unknown>, ctx: ConsumerContext): Promise<void> {
  const backoff = (message: Message<unknown>, retry_after_seconds: number | null = null) =>
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
    else if (isSpoolMessage(message.body)) {
      // Stored first, through the same routine as the webhook; then fanned out with the batch.
      const alert_id = await storeSpooled(message.body, ctx);
      if (alert_id === undefined) backoff(message);
      else if (alert_id === null) message.ack();
      else messages.push({ message, alert_id });
    } else {
      log("error", "fanout.bad_message", { message_id: message.id, body: JSON.stringify(message.body)?.slice(0, 200) });
      message.ack();
    }
  }
  if (messages.length === 0) return;
  const alert_ids = messages.map((m) => m.alert_id);

  if (!ctx.destinations.ok) {
    // Kept on the Queue until the configuration is fixed (see GET /healthz).
    log("error", "fanout.bad_destinations", { error: ctx.destinations.error, messages: messages.length });
    for (const { message } of messages) backoff(message);
    return;
  }
  const { destinations } = ctx.destinations;
  if (destinations.length === 0) {
    log("info", "fanout.no_destinations", { alerts: alert_ids.join(",") });
    // The Queue has them: out of the outbox (the producer's mark may have failed).
    await markEnqueued(ctx.db, alert_ids, ctx.now().toISOString()).catch((error: unknown) =>
      log("warn", "fanout.mark_enqueued_failed", { error: errorMessage(error) }),
    );
    for (const { message } of messages) message.ack();
    return;
  }

  try {
    const now = ctx.now();
    const claim_ms = ctx.delivery_timeout_ms + CLAIM_MARGIN_IN_SECONDS * 1000;
    const claimed_until = new Date(now.getTime() + claim_ms).toISOString();
    const { claimed, statuses, health } = await claimAlerts(ctx.db, alert_ids, now.toISOString(), claimed_until);
    const unclaimed = alert_ids.filter((id) => !claimed.has(id));
    const held = unclaimed.length > 0 ? await claimsOf(ctx.db, unclaimed) : new Map<string, { alert: StoredAlert; until: string | null }>();

    const jobs: Job[] = [];
    const probing = new Set<string>();
    for (const alert of claimed.values()) {
      const done = statuses.get(alert.alert_id);
      for (const destination of destinations) {
        const status = done?.get(destination.name);
        if (!wants(destination, alert) || isFinal(status)) continue;
        const key = { alert_id: alert.alert_id, destination: destination.name };
        const breaker = breakerMode(health.get(destination.name), now);
        // A paused destination whose pause has run out gets one probe; everything else for it waits.
        let mode: Job["mode"] = breaker === "active" ? "send" : "held";
        if (breaker === "probe" && !probing.has(destination.name) && (await takeProbe(ctx.db, destination.name, now.toISOString(), claimed_until))) {
          probing.add(destination.name);
          mode = "probe";
        }
        jobs.push({ key, alert, destination, mode });
      }
    }

    await markSuperseded(ctx.db, jobs);

    // At most six requests open at once (the Workers limit); each timeout starts when its request is sent.
    const sending = jobs.filter((j) => j.mode === "send" || j.mode === "probe");
    const attempts = await mapWithConcurrency(sending, OUTBOUND_CONNECTIONS, async (job) => ({
      key: job.key,
      probe: job.mode === "probe",
      attempt: await deliver(job.destination, job.alert, ctx.now(), ctx.delivery_timeout_ms),
    }));
    for (const { key, attempt } of attempts) {
      ctx.metrics?.writeDataPoint({
        indexes: [key.destination],
        blobs: [key.destination, attempt.ok ? "delivered" : attempt.permanent ? "failed" : "retry", String(attempt.status ?? "")],
        doubles: [attempt.status ?? 0, attempt.latency_ms],
      });
    }
    const waiting = jobs.filter((j) => j.mode === "held" && statuses.get(j.key.alert_id)?.get(j.key.destination) === undefined).map((j) => j.key);
    const superseded = jobs.filter((j) => j.mode === "superseded").map((j) => j.key);
    const identified = attempts
      .filter((a) => a.attempt.ok)
      .map((a) => jobs.find((j) => j.key === a.key))
      .filter((j): j is Job => j !== undefined && j.destination.format === "1flow-identify");
    // Claims end now for alerts whose message comes back, and for those a pause holds (nothing of theirs is in flight).
    const again = new Set([
      ...attempts.filter((a) => !a.attempt.ok && !a.attempt.permanent).map((a) => a.key.alert_id),
      ...jobs.filter((j) => j.mode === "held").map((j) => j.key.alert_id),
    ]);
    const recorded = await record(ctx, { attempts, waiting, superseded, identified, health }, [...again]);

    const scheduled = new Set<string>();
    for (const { message, alert_id } of messages) {
      if (!claimed.has(alert_id)) {
        const other = held.get(alert_id);
        if (other === undefined) {
          log("warn", "fanout.alert_missing", { alert_id });
          message.ack();
        } else if (destinations.every((d) => !wants(d, other.alert) || isFinal(statuses.get(alert_id)?.get(d.name)))) {
          // A repeat of a message whose alert every destination already has.
          message.ack();
        } else {
          // Another consumer holds it (or held it, and died): come back when that claim ends, never ack.
          const { until } = other;
          const seconds = until === null ? 1 : Math.ceil((Date.parse(until) - ctx.now().getTime()) / 1000) + 1;
          message.retry({ delaySeconds: Math.max(1, seconds) });
          log("info", "fanout.claimed_elsewhere", { alert_id, until });
        }
        continue;
      }
      // A message repeated in one batch is answered once.
      if (scheduled.has(alert_id)) {
        message.ack();
        continue;
      }
      scheduled.add(alert_id);
      const mine = attempts.filter((a) => a.key.alert_id === alert_id);
      const retryable = mine.filter((a) => !recorded || (!a.attempt.ok && !a.attempt.permanent));
      if (retryable.length === 0) message.ack();
      else backoff(message, Math.max(0, ...retryable.map((a) => a.attempt.retry_after_seconds ?? 0)));
    }
  } catch (error) {
    log("error", "fanout.batch_failed", { error: errorMessage(error), messages: messages.length });
    for (const { message } of messages) backoff(message);
  }
}

/** How long storing one spooled body may take in the consumer. */
const SPOOL_STORE_DEADLINE_IN_MS = 10_000;

/**
 * Stores a spooled body. Returns its alert_id to fan out, null when there is nothing to
 * deliver (quarantined, or erased on request), or undefined when D1 still fails (retry).
 */
async function storeSpooled(message: SpoolMessage, ctx: ConsumerContext): Promise<string | null | undefined> {
  try {
    const result = await ingest(new TextEncoder().encode(message.body).buffer as ArrayBuffer, {
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

function isFinal(status: string | undefined): boolean {
  return status !== undefined && status !== "pending";
}

/**
 * For 1flow-identify destinations: a response older than the newest one already delivered
 * for its user is not sent (one lookup on identify_latest's key for the whole batch).
 */
async function markSuperseded(db: D1Database, jobs: Job[]): Promise<void> {
  const identify = jobs.filter((j) => j.destination.format === "1flow-identify" && j.mode === "send" && j.alert.user_system_id !== null);
  if (identify.length === 0) return;
  const latest = await latestDelivered(db, identify.map((j) => ({ destination: j.key.destination, user_system_id: j.alert.user_system_id ?? "" })));
  for (const job of identify) {
    if (isSuperseded(job.alert, latest.get(pairKey(job.key.destination, job.alert.user_system_id ?? "")))) job.mode = "superseded";
  }
}

/** What the breaker does with a destination now: send as usual, send one probe, or hold everything. */
function breakerMode(row: HealthRow | undefined, now: Date): "active" | "probe" | "paused" {
  if (row === undefined || row.state === "active") return "active";
  const due = row.paused_until === null || Date.parse(row.paused_until) <= now.getTime();
  const probeFree = row.probe_until === null || Date.parse(row.probe_until) <= now.getTime();
  return due && probeFree ? "probe" : "paused";
}

/** The breakers' part of a batch: counts per destination, written only when they change something. */
function batchHealth(attempts: { key: DeliveryKey; probe: boolean; attempt: DeliveryAttempt }[], health: Map<string, HealthRow>): BatchHealth[] {
  const byDestination = new Map<string, BatchHealth>();
  for (const { key, probe, attempt } of attempts) {
    const h = byDestination.get(key.destination) ?? { destination: key.destination, delivered: 0, failed: 0, last_status: null, last_error: null, probe: false };
    if (attempt.ok) h.delivered += 1;
    else {
      h.failed += 1;
      h.last_status = attempt.status;
      h.last_error = attempt.error;
    }
    h.probe ||= probe;
    byDestination.set(key.destination, h);
  }
  return [...byDestination.values()].filter(
    (h) => h.probe || h.failed > 0 || (health.get(h.destination)?.consecutive_failures ?? 0) > 0,
  );
}

/**
 * Records the batch in one D1 batch: the attempts, new deliveries held by a pause (pending,
 * no attempt spent), the hourly counters and the breakers. False when D1 did not take it,
 * so that the messages are retried.
 */
async function record(
  ctx: ConsumerContext,
  batch: {
    attempts: { key: DeliveryKey; probe: boolean; attempt: DeliveryAttempt }[];
    waiting: DeliveryKey[];
    superseded: DeliveryKey[];
    identified: Job[];
    health: Map<string, HealthRow>;
  },
  release: string[],
): Promise<boolean> {
  const { attempts } = batch;
  const at = ctx.now().toISOString();
  const hourly = new Map<string, HourlyRecord>();
  const records: AttemptRecord[] = attempts.map(({ key, attempt }) => {
    const status = attempt.ok ? "delivered" : attempt.permanent ? "failed" : "pending";
    log(attempt.ok ? "info" : "warn", "fanout.attempt", {
      alert_id: key.alert_id,
      destination: key.destination,
      outcome: status,
      http_status: attempt.status,
      error: attempt.error,
    });
    const counter = hourly.get(key.destination) ?? { destination: key.destination, hour: at.slice(0, 13), delivered: 0, failed: 0, last_delivered_at: null };
    if (attempt.ok) {
      counter.delivered += 1;
      counter.last_delivered_at = at;
    } else counter.failed += 1;
    hourly.set(key.destination, counter);
    return { ...key, status, last_status: attempt.status, last_error: attempt.error, at };
  });
  for (const key of batch.waiting) {
    records.push({ ...key, status: "pending", last_status: null, last_error: "destination paused", at, attempted: false });
  }
  // Not sent, and no failure: 1Flow already has this user's newer answer.
  for (const key of batch.superseded) {
    log("info", "fanout.superseded", { alert_id: key.alert_id, destination: key.destination });
    records.push({ ...key, status: "delivered", last_status: null, last_error: SUPERSEDED, at, attempted: false });
  }
  const latest = batch.identified.map((j) =>
    recordLatestStatement(ctx.db, {
      destination: j.key.destination,
      user_system_id: j.alert.user_system_id ?? "",
      submitted_at: j.alert.submitted_at,
      alert_id: j.alert.alert_id,
    }),
  );
  const paused_until = new Date(Date.parse(at) + ctx.breaker.pause_seconds * 1000).toISOString();
  const breakers = healthStatements(ctx.db, batchHealth(attempts, batch.health), {
    now: at,
    paused_until,
    pause_after: ctx.breaker.pause_after_failures,
  });
  try {
    await recordOutcomes(ctx.db, { attempts: records, hourly: [...hourly.values()], also: [...breakers, ...latest] });
  } catch (error) {
    log("error", "fanout.record_failed", { deliveries: records.length, error: errorMessage(error) });
    return false;
  }
  // On its own, so that the ledger never depends on it: a failed release only holds the retry until the claim ends.
  await releaseClaims(ctx.db, release).catch((error: unknown) => log("warn", "fanout.release_failed", { error: errorMessage(error) }));
  return true;
}
