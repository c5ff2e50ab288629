/**
 * Consumer of `oneflow-alerts`: claims each alert of a batch, delivers it to every
 * destination that wants it and does not have it yet (at most 6 requests open at once),
 * records the batch in one D1 batch, and acknowledges or retries each message on its own.
 * A message is acknowledged only when every delivery of its alert has an outcome in the
 * ledger; one whose alert another consumer holds comes back when that claim ends.
 */
import { positiveWholeNumber } from "../config";
import { isAlertMessage, isSpoolMessage, type QueueMessage, type SpoolMessage } from "../alert";
import { Budget, meteredD1, meteredQueue } from "../budget";
import { DEFAULT_SUBREQUEST_BUDGET } from "../limits";
import { sendAlerts } from "../queue";
import { ingest } from "../ingest/ingest";
import { spooledBody } from "../spool";
import { errorMessage, log } from "../log";
import {
  type AttemptRecord,
  CANCELLED_REMOVED,
  CANCELLED_UNWANTED,
  claimAlerts,
  claimsOf,
  type DeliveryKey,
  finishClaimsStatement,
  finishWithoutDestinations,
  type HourlyRecord,
  recordOutcomes,
  type StoredAlert,
} from "../store/deliveries";
import { type BatchHealth, type HealthRow, healthStatements, takeProbe } from "../store/health";
import { isSuperseded, pairKey, settleLeaseStatement, takeLeases } from "../store/identify";
import { retryDelaySeconds } from "./backoff";
import type { BreakerSettings } from "./breaker";
import { type DeliveryAttempt, deliver } from "./deliver";
import { type Destination, type DestinationsConfig, type Wanted, wants, wantsStatically } from "./destinations";
import { mapWithConcurrency, OUTBOUND_CONNECTIONS } from "./pool";

/** The ledger's word for an identify delivery that waits while another consumer sends to the same user. */
export const LEASED_ELSEWHERE = "waiting for another consumer sending to this user";

/** The ledger's word for an identify delivery that a newer response of the same user made moot. */
export const SUPERSEDED = "superseded by a newer response";

/** How long a consumer holds an alert beyond the time its deliveries can take. */
export const CLAIM_MARGIN_IN_SECONDS = 50;

/**
 * How long a consumer holds the alerts of a batch: every job it may send, six at a time,
 * each up to the delivery timeout, plus the margin (for D1 and the Queue), so that a claim
 * never ends while one of its requests is in flight.
 */
export function claimMilliseconds(jobs: number, delivery_timeout_ms: number): number {
  return Math.ceil(Math.max(1, jobs) / OUTBOUND_CONNECTIONS) * delivery_timeout_ms + CLAIM_MARGIN_IN_SECONDS * 1000;
}

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
}

export { DEFAULT_SUBREQUEST_BUDGET };

export function subrequestBudget(raw: string | undefined): number {
  return positiveWholeNumber(raw) ?? DEFAULT_SUBREQUEST_BUDGET;
}

/**
 * Subrequests kept for what follows the deliveries: the record batch and the one
 * `sendBatch` that carries deferred alerts over.
 */
const AFTER_DELIVERIES = 2;

/** The ledger's word for a delivery left for a later invocation (the subrequest budget was spent). */
export const CARRIED_OVER = "carried over to a later invocation (subrequest budget)";

interface Job {
  key: DeliveryKey;
  alert: StoredAlert;
  destination: Destination;
  /**
   * `held`: its destination is paused; nothing is sent and no retry is spent.
   * `superseded`: a newer response of the same user is at (or going to) this identify destination.
   * `busy`: another consumer is sending to this identify destination for the same user: later.
   */
  mode: "send" | "probe" | "held" | "superseded" | "busy" | "deferred";
  /** Its breaker allows one probe now (its pause has run out). */
  may_probe?: boolean;
}

type Attempt = { key: DeliveryKey; probe: boolean; attempt: DeliveryAttempt };

export async function consumeAlerts(batch: MessageBatch<unknown>, context: ConsumerContext): Promise<void> {
  // Every D1 call and Queue send spends the invocation's budget, and so does every delivery.
  const budget = new Budget(context.subrequest_budget ?? DEFAULT_SUBREQUEST_BUDGET);
  const ctx: ConsumerContext = { ...context, db: meteredD1(context.db, budget), queue: meteredQueue(context.queue, budget) };
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
    else if (isSpoolMessage(message.body) && budget.left() < SPOOL_STORE_SUBREQUESTS + AFTER_DELIVERIES + 4) {
      // No room left to store it in this invocation: it comes back soon.
      message.retry({ delaySeconds: 1 });
    } else if (isSpoolMessage(message.body)) {
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
    // Finished: out of the outbox, and what removed destinations left pending cancelled.
    try {
      await finishWithoutDestinations(ctx.db, alert_ids, ctx.now().toISOString());
      for (const { message } of messages) message.ack();
    } catch (error) {
      log("error", "fanout.finish_failed", { error: errorMessage(error), messages: messages.length });
      for (const { message } of messages) backoff(message);
    }
    return;
  }

  try {
    const now = ctx.now();
    const most_jobs = Math.min(alert_ids.length * destinations.length, budget.limit);
    const claimed_until = new Date(now.getTime() + claimMilliseconds(most_jobs, ctx.delivery_timeout_ms)).toISOString();
    const { claimed, statuses, health } = await claimAlerts(ctx.db, alert_ids, now.toISOString(), claimed_until);
    const unclaimed = alert_ids.filter((id) => !claimed.has(id));
    const held = unclaimed.length > 0 ? await claimsOf(ctx.db, unclaimed) : new Map<string, { alert: StoredAlert; until: string | null }>();

    const jobs: Job[] = [];
    const cancelled: AttemptRecord[] = [];
    // A filter expression that fails (a runaway one, stopped at its bound) fails that delivery, with the reason.
    const refused: AttemptRecord[] = [];
    const at = now.toISOString();
    for (const alert of claimed.values()) {
      const done = statuses.get(alert.alert_id);
      const wanted = new Map<string, Wanted>();
      for (const destination of destinations) wanted.set(destination.name, await wants(destination, alert));
      // Pending rows nobody wants any more: final, so that no sweep re-sends them forever.
      for (const [name, status] of done ?? []) {
        if (status !== "pending") continue;
        const w = wanted.get(name);
        if (w?.wanted || w?.error !== undefined) continue;
        const reason = w === undefined ? CANCELLED_REMOVED : CANCELLED_UNWANTED;
        cancelled.push({ alert_id: alert.alert_id, destination: name, status: "cancelled", last_status: null, last_error: reason, at, attempted: false });
      }
      for (const destination of destinations) {
        const status = done?.get(destination.name);
        const w = wanted.get(destination.name);
        if (isFinal(status) || w === undefined) continue;
        const key = { alert_id: alert.alert_id, destination: destination.name };
        if (w.error !== undefined) {
          refused.push({ ...key, status: "failed", last_status: null, last_error: w.error, at });
          continue;
        }
        if (!w.wanted) continue;
        // Disabled by hand: held like a pause, with no probe; re-enabling sends what waited.
        const breaker = destination.enabled === false ? "paused" : breakerMode(health.get(destination.name), now);
        jobs.push({ key, alert, destination, mode: breaker === "active" ? "send" : "held", may_probe: breaker === "probe" });
      }
    }

    // Identify: one response per user in flight, never one older than what 1Flow has (probes too).
    const owner = crypto.randomUUID();
    const leased = await leaseIdentify(ctx.db, jobs, { owner, now: now.toISOString(), until: claimed_until });

    // A paused destination whose pause has run out gets one probe; everything else for it waits.
    const probeAsked = new Set<string>();
    for (const job of jobs) {
      if (job.mode !== "held" || !job.may_probe || probeAsked.has(job.key.destination)) continue;
      // A probe costs its ask and its request: only while the budget has room for both.
      if (budget.left() < AFTER_DELIVERIES + 2) break;
      // Once per destination per batch, whether or not this consumer gets it.
      probeAsked.add(job.key.destination);
      if (await takeProbe(ctx.db, job.key.destination, now.toISOString(), claimed_until)) job.mode = "probe";
    }

    // What the budget allows, taken fairly: each destination's first job before any second one,
    // from a starting destination that rotates, so that no destination waits behind the others.
    const sending = fairShare(
      jobs.filter((j) => j.mode === "send" || j.mode === "probe"),
      destinations.map((d) => d.name),
      Math.max(0, budget.left() - AFTER_DELIVERIES),
      ctx.random(),
    );
    for (const job of jobs) if ((job.mode === "send" || job.mode === "probe") && !sending.includes(job)) job.mode = "deferred";
    budget.take(sending.length);
    // At most six requests open at once (the Workers limit); each timeout starts when its request is sent.
    const attempts: Attempt[] = await mapWithConcurrency(sending, OUTBOUND_CONNECTIONS, async (job) => ({
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
    const delivered = new Set(attempts.filter((a) => a.attempt.ok).map((a) => `${a.key.alert_id}\u0000${a.key.destination}`));
    const settle = leased.map((job) => ({
      destination: job.key.destination,
      user_system_id: job.alert.user_system_id ?? "",
      owner,
      delivered: delivered.has(`${job.key.alert_id}\u0000${job.key.destination}`) ? { submitted_at: job.alert.submitted_at, alert_id: job.alert.alert_id } : null,
    }));
    // A job waiting for another consumer's lease gets a pending row too: every destination that
    // wants an alert has its row once this batch is recorded (retention and the sweep see it).
    const busy = new Set(jobs.filter((j) => j.mode === "busy").map((j) => j.key.alert_id));
    const leased_elsewhere = jobs.filter((j) => j.mode === "busy" && statuses.get(j.key.alert_id)?.get(j.key.destination) === undefined).map((j) => j.key);
    // Jobs past the budget: a pending row (no attempt spent) and a fresh message for their alert.
    const deferred = new Set(jobs.filter((j) => j.mode === "deferred").map((j) => j.key.alert_id));
    const carried = jobs.filter((j) => j.mode === "deferred" && statuses.get(j.key.alert_id)?.get(j.key.destination) === undefined).map((j) => j.key);
    // Claims end now for alerts whose message comes back, and for those a pause or a lease holds
    // (nothing of theirs is in flight); an alert no destination wants is marked finished.
    const release = new Set([
      ...attempts.filter((a) => !a.attempt.ok && !a.attempt.permanent).map((a) => a.key.alert_id),
      ...jobs.filter((j) => j.mode === "held" || j.mode === "busy" || j.mode === "deferred").map((j) => j.key.alert_id),
    ]);
    const withJobs = new Set([...jobs.map((j) => j.key.alert_id), ...cancelled.map((c) => c.alert_id), ...refused.map((r) => r.alert_id)]);
    const finish = {
      release: [...release],
      claimed_until,
      fanned_out: [...claimed.keys()].filter((id) => !withJobs.has(id) && (statuses.get(id)?.size ?? 0) === 0),
      at: ctx.now().toISOString(),
    };
    const recorded = await record(ctx, { attempts, waiting, leased_elsewhere, carried, superseded, cancelled: [...cancelled, ...refused], settle, finish, health });
    // Alerts with jobs past the budget, whose message would otherwise be acknowledged, go back as new messages.
    const carryOver = recorded
      ? [...deferred].filter((id) => !busy.has(id) && !attempts.some((a) => a.key.alert_id === id && !a.attempt.ok && !a.attempt.permanent))
      : [];
    let carriedOver = false;
    if (carryOver.length > 0) {
      try {
        await sendAlerts(ctx.queue, carryOver);
        carriedOver = true;
        log("info", "fanout.carried_over", { alerts: carryOver.length, jobs: carried.length });
      } catch (error) {
        log("warn", "fanout.carry_over_failed", { error: errorMessage(error), alerts: carryOver.length });
      }
    }

    const scheduled = new Set<string>();
    for (const { message, alert_id } of messages) {
      if (!claimed.has(alert_id)) {
        const other = held.get(alert_id);
        if (other === undefined) {
          log("warn", "fanout.alert_missing", { alert_id });
          message.ack();
        } else if (destinations.every((d) => !wantsStatically(d, other.alert) || isFinal(statuses.get(alert_id)?.get(d.name)))) {
          // A repeat of a message whose alert every destination already has.
          message.ack();
        } else {
          // Another consumer holds it (or held it, and died): come back when that claim ends, never ack.
          retryAfterClaim(message, other.until, ctx.now());
          log("info", "fanout.claimed_elsewhere", { alert_id, until: other.until });
        }
        continue;
      }
      // A message repeated in one batch is answered once.
      if (scheduled.has(alert_id)) {
        message.ack();
        continue;
      }
      scheduled.add(alert_id);
      // Acknowledged only when every destination that wants the alert has its row in the ledger.
      if (!recorded) {
        backoff(message);
        continue;
      }
      if (busy.has(alert_id)) {
        // Another consumer is sending this user's newer or older response: after its lease.
        retryAfterClaim(message, claimed_until, ctx.now());
        continue;
      }
      const retryable = attempts.filter((a) => a.key.alert_id === alert_id && !a.attempt.ok && !a.attempt.permanent);
      if (retryable.length === 0 && deferred.has(alert_id) && !carriedOver) {
        // Its carry-over could not be sent: this message comes back instead.
        message.retry({ delaySeconds: 1 });
        continue;
      }
      if (retryable.length === 0) message.ack();
      else backoff(message, Math.max(0, ...retryable.map((a) => a.attempt.retry_after_seconds ?? 0)));
    }
  } catch (error) {
    log("error", "fanout.batch_failed", { error: errorMessage(error), messages: messages.length });
    for (const { message } of messages) backoff(message);
  }
}

/** Retries a message when a claim (or lease) held until `until` has ended; spends no backoff step. */
function retryAfterClaim(message: Message<unknown>, until: string | null, now: Date): void {
  const seconds = until === null ? 1 : Math.ceil((Date.parse(until) - now.getTime()) / 1000) + 1;
  message.retry({ delaySeconds: Math.max(1, seconds) });
}

/**
 * Orders the jobs that may be sent so that each destination's first job comes before any
 * destination's second, starting from a destination chosen by `random`, and returns the
 * first `limit` of them.
 */
export function fairShare<T extends { key: DeliveryKey }>(jobs: T[], order: string[], limit: number, random: number): T[] {
  const start = Math.floor(random * Math.max(1, order.length));
  const rank = new Map(order.map((name, i) => [name, (i - start + order.length) % order.length]));
  const seen = new Map<string, number>();
  const ranked = jobs.map((job) => {
    const round = seen.get(job.key.destination) ?? 0;
    seen.set(job.key.destination, round + 1);
    return { job, round, rank: rank.get(job.key.destination) ?? 0 };
  });
  ranked.sort((a, b) => a.round - b.round || a.rank - b.rank);
  return ranked.slice(0, limit).map((r) => r.job);
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

function isFinal(status: string | undefined): boolean {
  return status !== undefined && status !== "pending";
}

/**
 * For 1flow-identify destinations, per (destination, user): only the newest response of
 * the batch is a candidate (the others are superseded), and it is sent only under the
 * pair's lease, and only when it is newer than what was delivered. Held jobs (a pause) are
 * left alone, but a held job that may probe is checked too, so that a probe never sends an
 * older response. Returns the jobs whose lease this consumer took.
 */
async function leaseIdentify(db: D1Database, jobs: Job[], lease: { owner: string; now: string; until: string }): Promise<Job[]> {
  const newest = new Map<string, Job>();
  for (const job of jobs) {
    if (job.destination.format !== "1flow-identify" || job.alert.user_system_id === null) continue;
    if (job.mode !== "send" && !job.may_probe) continue;
    const pair = pairKey(job.key.destination, job.alert.user_system_id);
    const other = newest.get(pair);
    if (other === undefined) newest.set(pair, job);
    else if (isSuperseded(other.alert, job.alert)) {
      other.mode = "superseded";
      newest.set(pair, job);
    } else job.mode = "superseded";
  }
  const candidates = [...newest.values()];
  const latest = await takeLeases(
    db,
    candidates.map((j) => ({ destination: j.key.destination, user_system_id: j.alert.user_system_id ?? "", alert_id: j.alert.alert_id })),
    lease,
  );
  const leased: Job[] = [];
  candidates.forEach((job, i) => {
    const row = latest[i] ?? null;
    if (row === null) {
      job.mode = "busy";
      job.may_probe = false;
      return;
    }
    leased.push(job);
    if (isSuperseded(job.alert, row)) {
      job.mode = "superseded";
      job.may_probe = false;
    }
  });
  return leased;
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
 * no attempt spent), superseded and cancelled ones, the identify leases, the hourly counters,
 * the breakers, and the end of the claims (with which alerts are finished). False when D1
 * did not take it, so that every message is retried: none is acknowledged without its rows.
 */
async function record(
  ctx: ConsumerContext,
  batch: {
    attempts: Attempt[];
    waiting: DeliveryKey[];
    leased_elsewhere: DeliveryKey[];
    carried: DeliveryKey[];
    superseded: DeliveryKey[];
    cancelled: AttemptRecord[];
    settle: Parameters<typeof settleLeaseStatement>[1][];
    finish: Parameters<typeof finishClaimsStatement>[1];
    health: Map<string, HealthRow>;
  },
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
  for (const key of batch.leased_elsewhere) {
    records.push({ ...key, status: "pending", last_status: null, last_error: LEASED_ELSEWHERE, at, attempted: false });
  }
  for (const key of batch.carried) {
    records.push({ ...key, status: "pending", last_status: null, last_error: CARRIED_OVER, at, attempted: false });
  }
  // Not sent, and no failure: 1Flow already has (or is getting) this user's newer answer.
  for (const key of batch.superseded) {
    log("info", "fanout.superseded", { alert_id: key.alert_id, destination: key.destination });
    records.push({ ...key, status: "delivered", last_status: null, last_error: SUPERSEDED, at, attempted: false });
  }
  for (const row of batch.cancelled) {
    log("info", "fanout.cancelled", { alert_id: row.alert_id, destination: row.destination, reason: row.last_error });
    records.push(row);
  }
  const paused_until = new Date(Date.parse(at) + ctx.breaker.pause_seconds * 1000).toISOString();
  const breakers = healthStatements(ctx.db, batchHealth(attempts, batch.health), {
    now: at,
    paused_until,
    pause_after: ctx.breaker.pause_after_failures,
  });
  try {
    await recordOutcomes(ctx.db, {
      attempts: records,
      hourly: [...hourly.values()],
      also: [...breakers, ...batch.settle.map((s) => settleLeaseStatement(ctx.db, s)), finishClaimsStatement(ctx.db, batch.finish)],
    });
  } catch (error) {
    log("error", "fanout.record_failed", { deliveries: records.length, error: errorMessage(error) });
    return false;
  }
  return true;
}
