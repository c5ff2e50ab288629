/**
 * The consumer's phases, each callable on its own with typed inputs and outputs, so that a
 * simulation can drive and interleave them (consumeAlerts runs them in order):
 *
 *   claim   one D1 batch: the alerts, their ledger rows and the breakers; each alert claimed
 *           for the requests that can go out up to its own (see claimEnds)
 *   plan    what each (alert, destination) gets: send, hold, cancel, refuse, carry over; the
 *           identify leases and probes; which jobs this invocation sends, within its
 *           subrequest and evaluation budgets
 *   send    the requests, six at a time
 *   record  one D1 batch: the ledger, the counters, the breakers, and the end of everything
 *           the invocation holds (its claims and its leases)
 *   settle  the carry-over, then each message acknowledged or retried
 *
 * Whatever an invocation holds ends when it ends: the claims and leases end in the batch that
 * records the ledger (or, when that batch fails, in one statement of their own), so a retry,
 * a replay or retention never waits for a consumer that has finished. A claim is sized from
 * the requests the batch can send up to that alert's last one, so that it never ends while
 * one of its requests is in flight, with no second write to extend it. No final decision (cancel, refuse, finish) is taken
 * from a cached destinations list that D1 has moved past: those writes hold only while the
 * list's version is the current one, checked in the batch that makes them.
 */
import type { Budget } from "../budget";
import { errorMessage, log } from "../log";
import { isAlertMessage, type SentOutcome } from "../alert";
import { SEND_BATCH_SIZE } from "../queue";
import type { QueueMessage } from "../alert";
import {
  type AttemptRecord,
  CANCELLED_REMOVED,
  CANCELLED_UNWANTED,
  claimAlerts,
  claimsOf,
  type DeliveryKey,
  type DeliveryStatus,
  finishClaimsStatement,
  type HourlyRecord,
  recordOutcomes,
  type StoredAlert,
  versionStatement,
} from "../store/deliveries";
import { type BatchHealth, type HealthRow, healthStatements, holdStatement, takeProbe } from "../store/health";
import { paceDelaySeconds, takeGrants } from "../store/pace";
import { isSuperseded, pairKey, settleLeaseStatement, takeLeases } from "../store/identify";
import { DESTINATIONS_CACHE_IN_MS } from "./configured";
import { retryDelaySeconds } from "./backoff";
import { buildRequest, type DeliveryAttempt, deliver, sendRequest } from "./deliver";
import { type Destination, type Wanted, wants, wantsStatically } from "./destinations";
import type { ConsumerContext } from "./consumer";
import type { EvaluationBudget } from "./jsonata";
import { mapWithConcurrency, OUTBOUND_CONNECTIONS } from "./pool";

/** The ledger's word for an identify delivery that waits while another consumer sends to the same user. */
export const LEASED_ELSEWHERE = "waiting for another consumer sending to this user";

/** The ledger's word for an identify delivery that a newer response of the same user made moot. */
export const SUPERSEDED = "superseded by a newer response";

/** The ledger's word for a delivery left for a later invocation (the subrequest budget was spent). */
export const CARRIED_OVER = "carried over to a later invocation (subrequest budget)";

/** The ledger's word for a delivery left for a later invocation (the evaluation budget was spent). */
export const EVALUATION_CARRIED_OVER = "carried over to a later invocation (evaluation budget)";

/** The ledger's word for a delivery past its destination's rate_limit: sent later, no attempt spent. */
export const PACED = "carried over: the destination's rate_limit";

/** The ledger's word for a delivery its destination asked to wait for (a 429, or a 503 with Retry-After). */
export const HELD_BY_DESTINATION = "held: the destination asked to wait (429 or Retry-After)";

/** How long a 429 without Retry-After holds its destination. */
export const HOLD_DEFAULT_SECONDS = 60;

/** The shortest hold: a `Retry-After: 0` would otherwise bring every waiting delivery back every second. */
export const HOLD_MIN_SECONDS = 5;

/** A 429, or a 503 with Retry-After: the destination asks to wait. Neither a failure nor a try. */
export function isHold(a: Attempt): boolean {
  return !a.attempt.ok && (a.attempt.status === 429 || (a.attempt.status === 503 && a.attempt.retry_after_seconds !== null));
}

/** When a hold ends. */
function holdEnd(a: Attempt, at: Date): string {
  return new Date(at.getTime() + Math.max(HOLD_MIN_SECONDS, a.attempt.retry_after_seconds ?? HOLD_DEFAULT_SECONDS) * 1000).toISOString();
}

/** How long a consumer holds an alert beyond the time its deliveries can take. */
export const CLAIM_MARGIN_IN_SECONDS = 50;

/**
 * How long a consumer holds the alerts of a batch: the jobs it sends, six at a time, each up
 * to the delivery timeout, plus the margin (for D1 and the Queue), so that a claim never ends
 * while one of its requests is in flight.
 */
export function claimMilliseconds(jobs: number, delivery_timeout_ms: number): number {
  return Math.ceil(Math.max(1, jobs) / OUTBOUND_CONNECTIONS) * delivery_timeout_ms + CLAIM_MARGIN_IN_SECONDS * 1000;
}

/**
 * Subrequests kept for what follows the deliveries: the record batch and the one
 * `sendBatch` that carries deferred alerts over.
 */
export const AFTER_DELIVERIES = 2;

/**
 * What every phase needs: the consumer's context (bindings metered), with the destinations in
 * force as this isolate sees them and the version they were read at, and the invocation's budgets.
 */
export interface PhaseContext extends Omit<ConsumerContext, "destinations" | "subrequest_budget" | "evaluation_steps"> {
  destinations: Destination[];
  version?: string;
  /** The invocation's subrequests (D1 calls, Queue sends, deliveries). */
  budget: Budget;
  /** The invocation's JSONata evaluation steps. */
  evaluation: EvaluationBudget;
}

/** A message of the batch and the alert it is about. */
export interface Entry {
  message: Message<unknown>;
  alert_id: string;
  /** Deliveries its message carries, made before a failed record batch (see AlertMessage). */
  sent?: SentOutcome[];
  /** The claim its message may take over (see AlertMessage). */
  claim?: string;
  /** Only these destinations (a backfill's message; see AlertMessage). */
  only?: string[];
}

/** The longest delay a Queue message may take (12 hours). */
const MAX_QUEUE_DELAY_IN_SECONDS = 43_200;

/** New messages for alerts left for later, each after its delay (seconds; 0 at once), in sendBatch's chunks. */
async function carry(queue: Queue<QueueMessage>, list: { alert_id: string; delay: number; only?: string[] }[]): Promise<void> {
  for (let i = 0; i < list.length; i += SEND_BATCH_SIZE) {
    await queue.sendBatch(
      list.slice(i, i + SEND_BATCH_SIZE).map(({ alert_id, delay, only }) => ({
        body: only === undefined ? { v: 1 as const, alert_id } : { v: 1 as const, alert_id, only },
        contentType: "json" as const,
        ...(delay > 0 ? { delaySeconds: Math.min(delay, MAX_QUEUE_DELAY_IN_SECONDS) } : {}),
      })),
    );
  }
}

/** The `only` of a message for this alert, as its batch planned it. */
function onlyBody(only: Map<string, Set<string>>, alert_id: string): { only?: string[] } {
  const names = only.get(alert_id);
  return names === undefined ? {} : { only: [...names] };
}

/**
 * Per alert, the destinations its messages are restricted to: only where every message of the
 * batch for that alert is restricted (the union of theirs); an unrestricted one opens it to all.
 */
export function onlyOf(entries: Entry[]): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  const open = new Set(entries.filter((e) => e.only === undefined).map((e) => e.alert_id));
  for (const { alert_id, only } of entries) {
    if (only === undefined || open.has(alert_id)) continue;
    const names = out.get(alert_id) ?? new Set<string>();
    for (const name of only) names.add(name);
    out.set(alert_id, names);
  }
  return out;
}

/** The claims the batch's messages may take over: per alert, the end a failed predecessor set. */
export function inheritsOf(entries: Entry[]): Record<string, string> {
  return Object.fromEntries(entries.filter((e) => e.claim !== undefined).map((e) => [e.alert_id, e.claim as string]));
}

/** What the batch's messages carry: per alert, the destinations already delivered to. */
export function sentOf(entries: Entry[]): Map<string, Map<string, SentOutcome>> {
  const out = new Map<string, Map<string, SentOutcome>>();
  for (const { alert_id, sent } of entries) {
    for (const outcome of sent ?? []) {
      const mine = out.get(alert_id) ?? new Map<string, SentOutcome>();
      mine.set(outcome.destination, outcome);
      out.set(alert_id, mine);
    }
  }
  return out;
}

export interface Job {
  key: DeliveryKey;
  alert: StoredAlert;
  destination: Destination;
  /**
   * `held`: its destination is paused; nothing is sent and no retry is spent.
   * `superseded`: a newer response of the same user is at (or going to) this identify destination.
   * `busy`: another consumer is sending to this identify destination for the same user: later.
   * `deferred`: past the invocation's subrequest or evaluation budget: carried over.
   * `sent`: its message says it was delivered (the ledger write of that attempt failed).
   */
  mode: "send" | "probe" | "held" | "superseded" | "busy" | "deferred" | "sent";
  /** `sent`: delivered by an earlier invocation whose record batch failed; recorded now, never sent again. */
  sent?: SentOutcome;
  /** Its breaker allows one probe now (its pause has run out). */
  may_probe?: boolean;
  /** Why a deferred job waits. */
  reason?: typeof CARRIED_OVER | typeof EVALUATION_CARRIED_OVER | typeof PACED;
  /** Held (mode `held`) because its destination asked to wait, until then: sent again at that time. */
  hold_until?: string;
  /** Paced (deferred past the rate_limit): sent again after this many seconds. */
  pace_delay?: number;
  /** Its request, built when it was planned (the transform and path spent the evaluation budget then). */
  request?: Request;
  /**
   * Held because its destination is disabled in this isolate's list: its message is acknowledged
   * only if that list is the current one (a cache older than the re-enable would leave it
   * waiting for the two-hour sweep).
   */
  disabled?: boolean;
}

export type Attempt = { key: DeliveryKey; probe: boolean; attempt: DeliveryAttempt };

// ---------------------------------------------------------------------------------------------
// claim

export interface Claimed {
  now: Date;
  /** This invocation's name on the leases it takes. */
  owner: string;
  /** The batch's alerts, once each, in the order of their messages: the order of the plan's jobs. */
  order: string[];
  /** Each alert's claim end (what this invocation set, and what ending it must match). */
  ends: Record<string, string>;
  /** The latest of them: how long the leases and probes this invocation takes may last. */
  claimed_until: string;
  claimed: Map<string, StoredAlert>;
  statuses: Map<string, Map<string, DeliveryStatus>>;
  health: Map<string, HealthRow>;
  /** The batch's alerts another consumer holds (or that are gone: absent). */
  held: Map<string, { alert: StoredAlert; until: string | null }>;
}

/**
 * How long to claim each alert: the plan sends jobs in fair order (each destination's first
 * job before any second), built alert by alert in `order`, so the job of the k-th alert (from
 * 0) for a destination is at most at position (k + 1) × destinations - 1, and never past what
 * the budget lets the batch send. That alert's last request ends within that many requests,
 * six at a time, each up to the delivery timeout, plus the margin: its claim covers exactly
 * that, so one alone in its batch is held one round (60 s), and no claim needs extending.
 */
export function claimEnds(input: { order: string[]; destinations: number; sendable: number; now: Date; delivery_timeout_ms: number }): Record<string, string> {
  return Object.fromEntries(
    input.order.map((id, k) => {
      const before = Math.max(1, Math.min((k + 1) * Math.max(1, input.destinations), input.sendable));
      return [id, new Date(input.now.getTime() + claimMilliseconds(before, input.delivery_timeout_ms)).toISOString()];
    }),
  );
}

/**
 * Claims the alerts, each for the requests that can go out up to its own (claimEnds), and
 * reads them with their ledger rows and the breakers, in one round trip; then, only when
 * some are held elsewhere, who holds them and until when.
 */
export async function claim(ctx: PhaseContext, alert_ids: string[], inherits: Record<string, string> = {}): Promise<Claimed> {
  const now = ctx.now();
  const order = [...new Set(alert_ids)];
  // What the batch may send at most: the budget after this claim and what follows the deliveries.
  const sendable = ctx.budget.left() - 1 - AFTER_DELIVERIES;
  const ends = claimEnds({ order, destinations: ctx.destinations.length, sendable, now, delivery_timeout_ms: ctx.delivery_timeout_ms });
  const claimed_until = Object.values(ends).reduce((a, b) => (b > a ? b : a), now.toISOString());
  const { claimed, statuses, health } = await claimAlerts(ctx.db, order, now.toISOString(), ends, inherits);
  const unclaimed = order.filter((id) => !claimed.has(id));
  const held = unclaimed.length > 0 ? await claimsOf(ctx.db, unclaimed) : new Map<string, { alert: StoredAlert; until: string | null }>();
  return { now, owner: crypto.randomUUID(), order, ends, claimed_until, claimed, statuses, health, held };
}

// ---------------------------------------------------------------------------------------------
// plan

export interface Plan {
  jobs: Job[];
  /** The jobs this invocation sends, in order. */
  sending: Job[];
  /** Pending rows nobody wants any more, and deliveries whose filter failed: final, so confirmed against the version. */
  cancelled: AttemptRecord[];
  refused: AttemptRecord[];
  /** The identify jobs whose lease this invocation took. */
  leased: Job[];
  /** The destinations whose probe this invocation took. */
  probes: string[];
  /** The alerts planned for some destinations only (backfill messages): never marked fanned out, and carried as they came. */
  only: Map<string, Set<string>>;
}

/** Whether a ledger status is final (only `pending` is not). */
export function isFinal(status: string | undefined): boolean {
  return status !== undefined && status !== "pending";
}

/**
 * Decides every (alert, destination) of the claimed alerts, in the order of their messages.
 * Filters are evaluated within the invocation's evaluation budget (what does not fit is
 * carried over, undecided); the identify leases and the probes are taken; the jobs to send
 * are chosen fairly within both budgets, in the order the claims were sized for.
 */
export async function plan(
  ctx: PhaseContext,
  claimed: Claimed,
  sent: Map<string, Map<string, SentOutcome>> = new Map(),
  only: Map<string, Set<string>> = new Map(),
): Promise<Plan> {
  const { now, statuses, health } = claimed;
  const at = now.toISOString();
  const jobs: Job[] = [];
  const cancelled: AttemptRecord[] = [];
  // A filter expression that fails (a runaway one, stopped at its bound) fails that delivery, with the reason.
  const refused: AttemptRecord[] = [];
  const guard = { version: ctx.version ?? null };
  for (const id of claimed.order) {
    const alert = claimed.claimed.get(id);
    if (alert === undefined) continue;
    const done = statuses.get(alert.alert_id);
    const wanted = new Map<string, Wanted>();
    const restriction = only.get(alert.alert_id);
    for (const destination of ctx.destinations) {
      if (restriction !== undefined && !restriction.has(destination.name)) continue;
      const status = done?.get(destination.name);
      // Only what is still open is evaluated: a final row needs no filter.
      if (isFinal(status)) continue;
      const key = { alert_id: alert.alert_id, destination: destination.name };
      const earlier = sent.get(alert.alert_id)?.get(destination.name);
      if (earlier !== undefined) {
        // Delivered by an invocation whose ledger write failed: recorded now, never sent again.
        wanted.set(destination.name, { wanted: true });
        jobs.push({ key, alert, destination, mode: "sent", sent: earlier });
        continue;
      }
      const w = await wants(destination, alert, ctx.evaluation);
      wanted.set(destination.name, w);
      if (w.deferred) {
        jobs.push({ key, alert, destination, mode: "deferred", reason: EVALUATION_CARRIED_OVER });
        continue;
      }
      if (w.error !== undefined) {
        refused.push({ ...key, status: "failed", last_status: null, last_error: w.error, at, ...guard });
        continue;
      }
      if (!w.wanted) continue;
      // Disabled by hand: held like a pause, with no probe; re-enabling sends what waited.
      const breaker = destination.enabled === false ? "paused" : breakerMode(health.get(destination.name), now);
      const job: Job = { key, alert, destination, mode: breaker === "active" ? "send" : "held", may_probe: breaker === "probe" };
      if (destination.enabled === false) job.disabled = true;
      // The destination asked to wait (a 429): held until then, with no probe, apart from the breaker.
      const held_until = health.get(destination.name)?.held_until ?? null;
      if (breaker !== "paused" && held_until !== null && held_until > at) {
        job.mode = "held";
        job.may_probe = false;
        job.hold_until = held_until;
      }
      // A job that may be sent builds its request now, right after its filter, within the
      // evaluation budget (its transform and path are evaluated here, never as it is sent), so
      // that the budget is exact and the filters after it never leave the invocation nothing to
      // send. One that does not fit waits; one that cannot be built fails, from the current list only.
      if (job.mode === "send" || job.may_probe) {
        const built = await buildRequest(destination, alert, now, ctx.evaluation);
        if (built.ok) job.request = built.value;
        else if (built.deferred) {
          job.mode = "deferred";
          job.may_probe = false;
          job.reason = EVALUATION_CARRIED_OVER;
        } else {
          refused.push({ ...key, status: "failed", last_status: null, last_error: built.error, at, ...guard });
          continue;
        }
      }
      jobs.push(job);
    }
    // Pending rows nobody wants any more: final, so that no sweep re-sends them forever.
    for (const [name, status] of done ?? []) {
      if (status !== "pending" || (restriction !== undefined && !restriction.has(name))) continue;
      const w = wanted.get(name);
      if (w?.wanted || w?.error !== undefined || w?.deferred) continue;
      const reason = w === undefined ? CANCELLED_REMOVED : CANCELLED_UNWANTED;
      cancelled.push({ alert_id: alert.alert_id, destination: name, status: "cancelled", last_status: null, last_error: reason, at, attempted: false, ...guard });
    }
  }

  // Identify: one response per user in flight, never one older than what 1Flow has (probes too).
  const leased = await leaseIdentify(ctx.db, jobs, { owner: claimed.owner, now: at, until: claimed.claimed_until });

  // A paused destination whose pause has run out gets one probe; everything else for it waits.
  const probeAsked = new Set<string>();
  const probes: string[] = [];
  for (const job of jobs) {
    if (job.mode !== "held" || !job.may_probe || probeAsked.has(job.key.destination)) continue;
    // A probe costs its ask and its request: only while the budget has room for both.
    if (ctx.budget.left() < AFTER_DELIVERIES + 2) break;
    // Once per destination per batch, whether or not this consumer gets it.
    probeAsked.add(job.key.destination);
    if (await takeProbe(ctx.db, job.key.destination, at, claimed.claimed_until)) {
      job.mode = "probe";
      probes.push(job.key.destination);
    }
  }

  // What the budget allows, taken fairly: each destination's first job before any second one,
  // from a starting destination that rotates, so that no destination waits behind the others.
  const candidates = jobs.filter((j) => j.mode === "send" || j.mode === "probe");
  const limited = (j: Job) => j.destination.rate_limit !== undefined;
  // A rate limit costs one round trip (every limited destination's grant at once): kept from the budget.
  const pacing = candidates.some(limited) ? 1 : 0;
  const chosen = fairShare(candidates, ctx.destinations.map((d) => d.name), Math.max(0, ctx.budget.left() - AFTER_DELIVERIES - pacing), ctx.random());
  for (const job of candidates) {
    if (!chosen.includes(job)) {
      job.mode = "deferred";
      job.reason = CARRIED_OVER;
    }
  }
  const sending = pacing === 0 ? chosen : await pace(ctx, chosen, now);
  ctx.budget.take(sending.length);
  return { jobs, sending, cancelled, refused, leased, probes, only };
}

/**
 * Keeps, of the jobs chosen, what each rate-limited destination's grant allows (in their order);
 * the others are deferred with no attempt spent, to be sent again after one request's share of
 * the destination's window.
 */
async function pace(ctx: PhaseContext, chosen: Job[], now: Date): Promise<Job[]> {
  const wanted = new Map<string, { destination: Destination; n: number }>();
  for (const job of chosen) {
    if (job.destination.rate_limit === undefined || job.mode === "probe") continue;
    const w = wanted.get(job.key.destination) ?? { destination: job.destination, n: 0 };
    w.n += 1;
    wanted.set(job.key.destination, w);
  }
  const grants = await takeGrants(
    ctx.db,
    [...wanted.values()].map(({ destination, n }) => ({ destination: destination.name, requests: destination.rate_limit?.requests ?? 1, per_seconds: destination.rate_limit?.per_seconds ?? 1, wanted: n })),
    now.getTime(),
  );
  const left = new Map([...grants].map(([name, g]) => [name, g.granted]));
  const slot = new Map<string, number>();
  // A probe (one request, for a paused destination) is never held back.
  return chosen.filter((job) => {
    const limit = job.destination.rate_limit;
    if (limit === undefined || job.mode === "probe") return true;
    const n = left.get(job.key.destination) ?? 0;
    if (n > 0) {
      left.set(job.key.destination, n - 1);
      return true;
    }
    // Past the grant: back at its own slot (the take reserved one per job left over).
    const grant = grants.get(job.key.destination);
    const i = slot.get(job.key.destination) ?? 0;
    slot.set(job.key.destination, i + 1);
    job.mode = "deferred";
    job.may_probe = false;
    job.reason = PACED;
    job.pace_delay = grant === undefined ? paceDelaySeconds(limit) : Math.max(1, Math.ceil((grant.slot_start + i * grant.interval_ms - now.getTime()) / 1000));
    return false;
  });
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
    candidates.map((j) => ({ destination: j.key.destination, user_system_id: j.alert.user_system_id ?? "", alert_id: j.alert.alert_id, submitted_at: j.alert.submitted_at })),
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

// ---------------------------------------------------------------------------------------------
// send

/** Sends the plan's jobs, at most six requests open at once (the Workers limit); never throws. */
export async function send(ctx: PhaseContext, planned: Pick<Plan, "sending">): Promise<Attempt[]> {
  // Each timeout starts when its request is sent.
  const attempts: Attempt[] = await mapWithConcurrency(planned.sending, OUTBOUND_CONNECTIONS, async (job) => ({
    key: job.key,
    probe: job.mode === "probe",
    attempt:
      job.request === undefined
        ? await deliver(job.destination, job.alert, ctx.now(), ctx.delivery_timeout_ms)
        : await sendRequest(job.destination, job.request, ctx.now(), ctx.delivery_timeout_ms),
  }));
  for (const { key, attempt } of attempts) {
    ctx.metrics?.writeDataPoint({
      indexes: [key.destination],
      blobs: [key.destination, attempt.ok ? "delivered" : attempt.permanent ? "failed" : "retry", String(attempt.status ?? "")],
      doubles: [attempt.status ?? 0, attempt.latency_ms],
    });
  }
  return attempts;
}

// ---------------------------------------------------------------------------------------------
// record

export interface Recorded {
  /** D1 took the batch: every destination that wants an alert of it has its row. */
  ok: boolean;
  /**
   * Alerts with a final decision (cancel, refuse, finish) that the current version did not
   * confirm: this isolate's list was stale, nothing final was written, their message comes
   * back once the cache has expired.
   */
  unconfirmed: Set<string>;
}

/** Whether an attempt is a transient failure: its message comes back after its backoff. */
export function isRetryable(a: Attempt): boolean {
  return !a.attempt.ok && !a.attempt.permanent && !isHold(a);
}

/**
 * Records the batch in one D1 batch: the attempts, new deliveries held by a pause (pending,
 * no attempt spent), superseded, cancelled and refused ones, the identify leases' end, the
 * hourly counters, the breakers, and the end of every claim of this invocation (with which
 * alerts are finished). Not ok when D1 did not take it, so that every message is retried:
 * none is acknowledged without its rows; the claims and leases are then ended on their own.
 */
export async function record(ctx: PhaseContext, claimed: Claimed, planned: Plan, attempts: Attempt[]): Promise<Recorded> {
  const { jobs } = planned;
  const { statuses } = claimed;
  const isNew = (j: Job) => statuses.get(j.key.alert_id)?.get(j.key.destination) === undefined;
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
    } else if (!isHold({ key, probe: false, attempt })) counter.failed += 1;
    hourly.set(key.destination, counter);
    return { ...key, status, last_status: attempt.status, last_error: attempt.error, at };
  });
  // A destination that asked to wait holds all its deliveries until then (the latest asked).
  const holds = new Map<string, string>();
  for (const a of attempts) {
    if (!isHold(a)) continue;
    const until = holdEnd(a, ctx.now());
    if ((holds.get(a.key.destination) ?? "") < until) holds.set(a.key.destination, until);
  }
  for (const job of jobs) {
    if (job.mode !== "sent" || job.sent === undefined) continue;
    const counter = hourly.get(job.key.destination) ?? { destination: job.key.destination, hour: at.slice(0, 13), delivered: 0, failed: 0, last_delivered_at: null };
    counter.delivered += 1;
    counter.last_delivered_at = at;
    hourly.set(job.key.destination, counter);
    records.push({ ...job.key, status: "delivered", last_status: job.sent.status, last_error: null, at: job.sent.at });
  }
  const pending = (job: Job, last_error: string): AttemptRecord => ({ ...job.key, status: "pending", last_status: null, last_error, at, attempted: false });
  for (const job of jobs) {
    if (!isNew(job)) continue;
    if (job.mode === "held") records.push(pending(job, job.hold_until !== undefined ? HELD_BY_DESTINATION : "destination paused"));
    // A job waiting for another consumer's lease gets a pending row too: every destination that
    // wants an alert has its row once this batch is recorded (retention and the sweep see it).
    else if (job.mode === "busy") records.push(pending(job, LEASED_ELSEWHERE));
    // Jobs past a budget: a pending row (no attempt spent) and a fresh message for their alert.
    else if (job.mode === "deferred") records.push(pending(job, job.reason ?? CARRIED_OVER));
  }
  // Not sent, and no failure: 1Flow already has (or is getting) this user's newer answer.
  for (const job of jobs) {
    if (job.mode !== "superseded") continue;
    log("info", "fanout.superseded", { alert_id: job.key.alert_id, destination: job.key.destination });
    records.push({ ...job.key, status: "delivered", last_status: null, last_error: SUPERSEDED, at, attempted: false });
  }
  const final = [...planned.cancelled, ...planned.refused];
  for (const row of final) {
    log("info", row.status === "cancelled" ? "fanout.cancelled" : "fanout.refused", { alert_id: row.alert_id, destination: row.destination, reason: row.last_error });
    records.push(row);
  }
  const withJobs = new Set([...jobs.map((j) => j.key.alert_id), ...final.map((c) => c.alert_id)]);
  // An alert no destination wants (in this isolate's list) is finished: final, so confirmed too.
  const fanned_out = [...claimed.claimed.keys()].filter((id) => !withJobs.has(id) && !planned.only.has(id) && (statuses.get(id)?.size ?? 0) === 0);
  const finish = { release: [...claimed.claimed.keys()], claimed_until: claimed.ends, fanned_out, at: ctx.now().toISOString(), version: ctx.version ?? null };
  const paused_until = new Date(Date.parse(at) + ctx.breaker.pause_seconds * 1000).toISOString();
  const breakers = healthStatements(ctx.db, batchHealth(attempts, claimed.health), {
    now: at,
    paused_until,
    pause_after: ctx.breaker.pause_after_failures,
  });
  const guarded = new Set([...final.map((r) => r.alert_id), ...fanned_out, ...jobs.filter((j) => j.disabled && j.mode === "held").map((j) => j.key.alert_id)]);
  const check = ctx.version !== undefined && guarded.size > 0;
  const settleLeases = planned.leased.map((job) => settleLeaseStatement(ctx.db, leaseEnd(job, claimed.owner, attempts)));
  try {
    const results = await recordOutcomes(ctx.db, {
      attempts: records,
      hourly: [...hourly.values()],
      also: [
        ...breakers,
        ...[...holds].map(([destination, until]) => holdStatement(ctx.db, destination, until)),
        ...settleLeases,
        finishClaimsStatement(ctx.db, finish),
        ...(check ? [versionStatement(ctx.db)] : []),
      ],
    });
    const current = check ? ((results.at(-1)?.results[0] as { value: string } | undefined)?.value ?? "0") : ctx.version;
    const unconfirmed = current === ctx.version ? new Set<string>() : guarded;
    if (unconfirmed.size > 0) log("warn", "fanout.stale_destinations", { alerts: unconfirmed.size, version: ctx.version ?? null, current: current ?? null });
    return { ok: true, unconfirmed };
  } catch (error) {
    log("error", "fanout.record_failed", { deliveries: records.length, error: errorMessage(error) });
    return { ok: false, unconfirmed: new Set() };
  }
}

/** A lease's end: with the response it delivered, when it did. */
function leaseEnd(job: Job, owner: string, attempts: Attempt[]): Parameters<typeof settleLeaseStatement>[1] {
  const delivered = attempts.some((a) => a.attempt.ok && a.key.alert_id === job.key.alert_id && a.key.destination === job.key.destination);
  return {
    destination: job.key.destination,
    user_system_id: job.alert.user_system_id ?? "",
    owner,
    delivered: delivered ? { submitted_at: job.alert.submitted_at, alert_id: job.alert.alert_id } : null,
  };
}

/**
 * After a record batch that failed (and once settle has sent what the Queue must carry): ends
 * the claims and leases on their own (nothing is in flight any more), when the budget has
 * room; if this fails too, they run out by themselves.
 */
export async function release(ctx: PhaseContext, claimed: Claimed, planned: Plan, attempts: Attempt[]): Promise<void> {
  if (ctx.budget.left() < 1) return;
  try {
    await ctx.db.batch([
      finishClaimsStatement(ctx.db, { release: [...claimed.claimed.keys()], claimed_until: claimed.ends, fanned_out: [], at: ctx.now().toISOString() }),
      // An identify lease ends with what it delivered, ledger or not: a user's older response is
      // never sent after the newer one that 1Flow already has (and that one is not sent again).
      ...planned.leased.map((job) => settleLeaseStatement(ctx.db, leaseEnd(job, claimed.owner, attempts))),
    ]);
  } catch (error) {
    log("warn", "fanout.release_failed", { error: errorMessage(error) });
  }
}

/** The breakers' part of a batch: counts per destination, written only when they change something. */
function batchHealth(attempts: Attempt[], health: Map<string, HealthRow>): BatchHealth[] {
  const byDestination = new Map<string, BatchHealth>();
  for (const { key, probe, attempt } of attempts) {
    // A destination that asks to wait is not failing: its breaker is untouched.
    if (isHold({ key, probe, attempt })) continue;
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

// ---------------------------------------------------------------------------------------------
// settle

/** How each message of the batch ended: what the simulation and the logs look at. */
export interface Settled {
  acked: string[];
  retried: { alert_id: string; delay_seconds: number }[];
  carried_over: string[];
}

/** A message's retry after its backoff (its attempts so far), never sooner than a Retry-After. */
export function backoffSeconds(ctx: Pick<PhaseContext, "retry_base_seconds" | "random">, message: Message<unknown>, retry_after_seconds: number | null = null): number {
  return retryDelaySeconds({ attempts: message.attempts, base_seconds: ctx.retry_base_seconds, random: ctx.random(), retry_after_seconds });
}

/** Seconds until a claim (or lease) held until `until` has ended; spends no backoff step. */
export function secondsUntil(until: string | null, now: Date): number {
  const seconds = until === null ? 1 : Math.ceil((Date.parse(until) - now.getTime()) / 1000) + 1;
  return Math.max(1, seconds);
}

/**
 * Carries over the alerts with jobs past a budget (a new message each, when their own message
 * would otherwise be acknowledged), then acknowledges or retries each message: acknowledged
 * only when every destination that wants its alert has its row in the ledger.
 */
export async function settle(
  ctx: PhaseContext,
  entries: Entry[],
  claimed: Claimed,
  planned: Plan,
  attempts: Attempt[],
  recorded: Recorded,
): Promise<Settled> {
  const out: Settled = { acked: [], retried: [], carried_over: [] };
  const ack = (m: Message<unknown>) => {
    m.ack();
    out.acked.push(m.id);
  };
  const retry = (m: Message<unknown>, alert_id: string, delay_seconds: number) => {
    m.retry({ delaySeconds: delay_seconds });
    out.retried.push({ alert_id, delay_seconds });
  };
  const { jobs } = planned;
  const busy = new Set(jobs.filter((j) => j.mode === "busy").map((j) => j.key.alert_id));
  const deferred = new Set(jobs.filter((j) => j.mode === "deferred").map((j) => j.key.alert_id));
  const retryableOf = (alert_id: string) => attempts.filter((a) => a.key.alert_id === alert_id && isRetryable(a));
  // Alerts their destination asked to wait for (a 429; or held by an earlier one): sent again when the hold ends.
  const now0 = ctx.now();
  const holdEnds = new Map<string, string>();
  const noteHold = (alert_id: string, until: string) => {
    if ((holdEnds.get(alert_id) ?? "") < until) holdEnds.set(alert_id, until);
  };
  for (const a of attempts) if (isHold(a)) noteHold(a.key.alert_id, holdEnd(a, now0));
  for (const j of jobs) if (j.mode === "held" && j.hold_until !== undefined) noteHold(j.key.alert_id, j.hold_until);
  // When an alert's new message comes: after its paced jobs' share of their windows, and after its holds.
  const delayOf = (alert_id: string): number => {
    const paced = jobs.filter((j) => j.key.alert_id === alert_id && j.mode === "deferred" && j.pace_delay !== undefined).map((j) => j.pace_delay ?? 0);
    const hold = holdEnds.get(alert_id);
    return Math.max(0, ...paced, hold === undefined ? 0 : secondsUntil(hold, now0));
  };
  // Alerts with jobs past a budget or a rate limit, or held, whose message would otherwise be
  // acknowledged, go back as new messages (a new message: no try spent, never closer to dead).
  const waiting = new Set([...deferred, ...holdEnds.keys()]);
  const carryOver = recorded.ok
    ? [...waiting].filter((id) => !busy.has(id) && !recorded.unconfirmed.has(id) && retryableOf(id).length === 0)
    : [];
  let carriedOver = false;
  if (carryOver.length > 0) {
    try {
      await carry(ctx.queue, carryOver.map((alert_id) => ({ alert_id, delay: delayOf(alert_id), ...onlyBody(planned.only, alert_id) })));
      carriedOver = true;
      out.carried_over = carryOver;
      log("info", "fanout.carried_over", { alerts: carryOver.length, jobs: jobs.filter((j) => j.mode === "deferred").length });
    } catch (error) {
      log("warn", "fanout.carry_over_failed", { error: errorMessage(error), alerts: carryOver.length });
    }
  }

  // After a failed record batch: what destinations acknowledged (and what earlier messages
  // carried), so that a new message carries it to the ledger instead of it being sent again.
  // Not for 1flow-identify, whose delivered response also moves the user's lease and latest:
  // its resend (the same traits again) is what at-least-once leaves there.
  const identify = new Set(ctx.destinations.filter((d) => d.format === "1flow-identify").map((d) => d.name));
  const at = ctx.now().toISOString();
  const unrecorded = (alert_id: string): SentOutcome[] => [
    ...jobs.filter((j) => j.mode === "sent" && j.key.alert_id === alert_id && j.sent !== undefined).map((j) => j.sent as SentOutcome),
    ...attempts
      .filter((a) => a.key.alert_id === alert_id && a.attempt.ok && !identify.has(a.key.destination))
      .map((a) => ({ destination: a.key.destination, status: a.attempt.status, at })),
  ];
  const toCarry: { message: Message<unknown>; alert_id: string; outcomes: SentOutcome[]; tries: number; repeats: Message<unknown>[] }[] = [];
  // Each carry is a new message: its backoff goes on from the tries of those it replaces.
  const triesOf = (m: Message<unknown>) => m.attempts + (isAlertMessage(m.body) ? (m.body.tries ?? 0) : 0);

  const now = ctx.now();
  const scheduled = new Set<string>();
  for (const { message, alert_id } of entries) {
    if (!claimed.claimed.has(alert_id)) {
      const other = claimed.held.get(alert_id);
      if (other === undefined) {
        log("warn", "fanout.alert_missing", { alert_id });
        ack(message);
      } else if (ctx.destinations.every((d) => !wantsStatically(d, other.alert) || isFinal(claimed.statuses.get(alert_id)?.get(d.name)))) {
        // A repeat of a message whose alert every destination already has.
        ack(message);
      } else {
        // Another consumer holds it (or held it, and died): come back when that claim ends, never ack.
        retry(message, alert_id, secondsUntil(other.until, now));
        log("info", "fanout.claimed_elsewhere", { alert_id, until: other.until });
      }
      continue;
    }
    // A message repeated in one batch is answered once (with the first, when that one carries outcomes).
    if (scheduled.has(alert_id)) {
      const carrier = toCarry.find((c) => c.alert_id === alert_id);
      if (carrier !== undefined) carrier.repeats.push(message);
      else ack(message);
      continue;
    }
    scheduled.add(alert_id);
    // Acknowledged only when every destination that wants the alert has its row in the ledger;
    // what was delivered without one goes back on the Queue with the message (below).
    if (!recorded.ok) {
      const outcomes = unrecorded(alert_id);
      if (outcomes.length > 0) toCarry.push({ message, alert_id, outcomes, tries: triesOf(message), repeats: [] });
      else retry(message, alert_id, backoffSeconds(ctx, message));
      continue;
    }
    if (recorded.unconfirmed.has(alert_id)) {
      // This isolate's destinations were stale: decided again once its cache has expired.
      retry(message, alert_id, Math.ceil(DESTINATIONS_CACHE_IN_MS / 1000) + 1);
      continue;
    }
    if (busy.has(alert_id)) {
      // Another consumer is sending this user's newer or older response: after its lease.
      retry(message, alert_id, secondsUntil(claimed.claimed_until, now));
      continue;
    }
    const retryable = retryableOf(alert_id);
    if (retryable.length === 0 && waiting.has(alert_id) && !carriedOver) {
      // Its carry-over could not be sent: this message comes back instead.
      retry(message, alert_id, Math.max(1, delayOf(alert_id)));
      continue;
    }
    if (retryable.length === 0) ack(message);
    else retry(message, alert_id, backoffSeconds(ctx, message, Math.max(0, ...retryable.map((a) => a.attempt.retry_after_seconds ?? 0))));
  }
  if (toCarry.length > 0) {
    // The carried message may take over the claims this invocation holds (they end below, in
    // release, if D1 lets them): it comes after its backoff, ahead of every other message for
    // the alert, which waits for the claim's end.
    const delayOf = (c: (typeof toCarry)[number]) => retryDelaySeconds({ attempts: c.tries, base_seconds: ctx.retry_base_seconds, random: ctx.random(), retry_after_seconds: null });
    try {
      await ctx.queue.sendBatch(
        toCarry.map((c) => ({
          body: { v: 1 as const, alert_id: c.alert_id, sent: c.outcomes, tries: c.tries, claim: claimed.ends[c.alert_id], ...onlyBody(planned.only, c.alert_id) },
          contentType: "json" as const,
          delaySeconds: delayOf(c),
        })),
      );
      for (const c of toCarry) for (const m of [c.message, ...c.repeats]) ack(m);
      out.carried_over.push(...toCarry.map((c) => c.alert_id));
      log("warn", "fanout.outcomes_carried", { alerts: toCarry.length, deliveries: toCarry.reduce((n, c) => n + c.outcomes.length, 0) });
    } catch (error) {
      // The Queue refused too: the message comes back as it was, and those deliveries are sent again (at least once).
      log("error", "fanout.carry_outcomes_failed", { error: errorMessage(error), alerts: toCarry.length });
      for (const c of toCarry) for (const m of [c.message, ...c.repeats]) retry(m, c.alert_id, backoffSeconds(ctx, m));
    }
  }
  return out;
}

export type { Wanted };
