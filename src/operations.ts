/**
 * What the operator's two faces (`/api` and `/dashboard`) both do, once, below HTTP:
 * replaying deliveries and reprocessing a quarantined body. Each returns a result the
 * face turns into its own answer (JSON or a page).
 */
import type { QueueMessage } from "./alert";
import { Budget, meteredD1, meteredQueue } from "./budget";
import type { DestinationsConfig } from "./fanout/destinations";
import { type IngestContext, type IngestOutcome, ingest } from "./ingest/ingest";
import { errorMessage, log } from "./log";
import { sendAlerts } from "./queue";
import { alertExists } from "./store/alerts";
import { CANCEL_LIMIT, CANCELLED_BY_OPERATOR, cancelPending, resetAlertDeliveries, resetDeliveries } from "./store/deliveries";
import { deleteRejected, getRejected } from "./store/rejected";
import type { D1Reader } from "./store/d1";
import { advanceResume, healthOf, pendingOf, resumeNow } from "./store/health";
import { destinationCounts } from "./store/reads";

/** Deliveries one bulk replay resets at most; call again while `more` is true. */
export const REPLAY_LIMIT = 1_000;

export interface ReplayDeps {
  db: D1Database;
  queue: Queue<QueueMessage>;
  destinations: DestinationsConfig;
  now: () => Date;
  request_id: string;
}

export type ReplayFailure = "not_found" | "unknown_destination" | "queue_unavailable";

function isConfigured(destinations: DestinationsConfig, name: string): boolean {
  return destinations.ok && destinations.destinations.some((d) => d.name === name);
}

/** Sends replayed alerts to the Queue; pending deliveries left by a failure are swept later. */
async function enqueue(queue: Queue<QueueMessage>, alert_ids: string[]): Promise<boolean> {
  try {
    await sendAlerts(queue, alert_ids);
    return true;
  } catch (error) {
    log("error", "replay.enqueue_failed", { error: errorMessage(error), alerts: alert_ids.length });
    return false;
  }
}

/**
 * Resets an alert's `failed` and `dead` deliveries (and `delivered` ones when forced) to
 * `pending`, and enqueues the alert.
 */
export async function replayAlert(
  deps: ReplayDeps,
  input: { alert_id: string; destination?: string; force: boolean },
): Promise<{ ok: true; destinations: string[] } | { ok: false; error: ReplayFailure }> {
  const { alert_id, destination, force } = input;
  if (destination !== undefined && !isConfigured(deps.destinations, destination)) return { ok: false, error: "unknown_destination" };
  if (!(await alertExists(deps.db, alert_id))) return { ok: false, error: "not_found" };
  const reset = await resetAlertDeliveries(deps.db, { alert_id, destination: destination ?? null, force, at: deps.now().toISOString() });
  const sent = await enqueue(deps.queue, [alert_id]);
  log("info", "replay.alert", { request_id: deps.request_id, alert_id, deliveries: reset.length, force });
  return sent ? { ok: true, destinations: reset } : { ok: false, error: "queue_unavailable" };
}

/** Resets up to REPLAY_LIMIT `failed` or `dead` deliveries matching the filter, and enqueues their alerts. */
export async function replayDeliveries(
  deps: ReplayDeps,
  input: { status: "dead" | "failed"; destination?: string; since?: string; until?: string },
): Promise<{ ok: true; deliveries: number; alerts: number; more: boolean } | { ok: false; error: ReplayFailure }> {
  const { status, destination, since, until } = input;
  if (destination !== undefined && !isConfigured(deps.destinations, destination)) return { ok: false, error: "unknown_destination" };
  const reset = await resetDeliveries(deps.db, {
    status,
    destination: destination ?? null,
    since: since ? new Date(since).toISOString() : null,
    until: until ? new Date(until).toISOString() : null,
    limit: REPLAY_LIMIT,
    at: deps.now().toISOString(),
  });
  const alert_ids = [...new Set(reset.map((k) => k.alert_id))];
  const sent = await enqueue(deps.queue, alert_ids);
  log("info", "replay.bulk", { request_id: deps.request_id, status, deliveries: reset.length, alerts: alert_ids.length });
  if (!sent) return { ok: false, error: "queue_unavailable" };
  return { ok: true, deliveries: reset.length, alerts: alert_ids.length, more: reset.length === REPLAY_LIMIT };
}

export type ReprocessResult =
  | { ok: true; alert_id: string; duplicate: boolean }
  | { ok: false; error: "not_found" }
  | { ok: false; error: "too_large" }
  | { ok: false; error: "refused"; outcome: Exclude<IngestOutcome, { outcome: "stored" | "duplicate" }> };

/**
 * Runs a quarantined body through today's validation. Accepted: stored and enqueued
 * like a fresh webhook, and taken out of the quarantine. Refused: it stays.
 */
export async function reprocessRejected(ctx: IngestContext, id: string): Promise<ReprocessResult> {
  const row = await getRejected(ctx.db, id);
  if (!row) return { ok: false, error: "not_found" };
  if (row.body === null) return { ok: false, error: "too_large" };
  const body = typeof row.body === "string" ? new TextEncoder().encode(row.body).buffer : row.body;
  const result = await ingest(body as ArrayBuffer, { ...ctx, quarantine: false });
  log("info", "quarantine.reprocess", { request_id: ctx.request_id, id: row.id, outcome: result.outcome, alert_id: result.alert_id });
  if (result.outcome === "stored" || result.outcome === "duplicate") {
    await deleteRejected(ctx.db, row.id);
    return { ok: true, alert_id: result.alert_id, duplicate: result.duplicate };
  }
  return { ok: false, error: "refused", outcome: result };
}

export interface DestinationReport {
  name: string;
  state: "active" | "paused";
  consecutive_failures: number;
  paused_until: string | null;
  held_until: string | null;
  last_status: number | null;
  last_error: string | null;
  last_delivered_at: string | null;
  delivered_24h: number;
  failed_24h: number;
  pending: number;
}

/** Each configured destination's health: its breaker, and its last 24 hours from the counters (no scan). */
export async function destinationsReport(db: D1Reader, destinations: DestinationsConfig, now: Date): Promise<DestinationReport[]> {
  if (!destinations.ok) return [];
  const [health, counts] = await Promise.all([healthOf(db), destinationCounts(db, new Date(now.getTime() - 23 * 3_600_000).toISOString().slice(0, 13))]);
  return destinations.destinations.map(({ name }) => {
    const h = health.get(name);
    const c = counts.find((x) => x.destination === name);
    return {
      name,
      state: h?.state ?? "active",
      consecutive_failures: h?.consecutive_failures ?? 0,
      paused_until: h?.state === "paused" ? h.paused_until : null,
      // A 429 (or a 503 with Retry-After) holds every delivery until then: null once it ran out.
      held_until: h?.held_until != null && h.held_until > now.toISOString() ? h.held_until : null,
      last_status: h?.last_status ?? null,
      last_error: h?.last_error ?? null,
      last_delivered_at: c?.last_delivered_at ?? null,
      delivered_24h: c?.delivered_24h ?? 0,
      failed_24h: c?.failed_24h ?? 0,
      pending: c?.pending ?? 0,
    };
  });
}

/** Subrequests a request spends sending a resumed destination's waiting deliveries; the cron's sweep sends the rest. */
export const RESUME_NOW_SUBREQUESTS = 12;
/** Deliveries a page of that sending reads. */
const RESUME_NOW_PAGE = 100;

/**
 * Sends the first pages of one resumed destination's waiting deliveries, within
 * RESUME_NOW_SUBREQUESTS (a page is a read and a Queue send, the cursor one write), and keeps
 * its cursor for the cron, which goes on from there. Only this destination: the others that
 * are paused or being resumed are the cron's, however many there are. Never throws: what
 * fails here the cron does.
 */
export async function sendResumed(deps: Pick<ReplayDeps, "db" | "queue" | "request_id">, destination: string): Promise<number> {
  const budget = new Budget(RESUME_NOW_SUBREQUESTS);
  const db = meteredD1(deps.db, budget);
  const queue = meteredQueue(deps.queue, budget);
  let after: [string, string] = ["", ""];
  let sent = 0;
  try {
    let finished = false;
    // Room for a page (read, send) and for the cursor's write after it.
    while (budget.left() >= 3) {
      const { keys, last } = await pendingOf(db, { destination, after, limit: RESUME_NOW_PAGE });
      if (keys.length > 0) await sendAlerts(queue, [...new Set(keys.map((k) => k.alert_id))]);
      sent += keys.length;
      if (last === null || keys.length < RESUME_NOW_PAGE) {
        finished = true;
        break;
      }
      after = last;
    }
    await advanceResume(db, destination, finished ? null : after);
  } catch (error) {
    // The cursor stays where the last write left it: the cron sends from there (again, at worst).
    log("warn", "destination.resume_send_failed", { request_id: deps.request_id, destination, error: errorMessage(error) });
  }
  return sent;
}

/**
 * Resumes a paused destination now (the operator's Resume now), and sends its waiting
 * deliveries: the first pages at once (sendResumed), the rest from the cron.
 */
export async function resumeDestination(
  deps: ReplayDeps,
  name: string,
): Promise<{ ok: true; resumed: boolean } | { ok: false; error: "unknown_destination" }> {
  if (!isConfigured(deps.destinations, name)) return { ok: false, error: "unknown_destination" };
  const resumed = await resumeNow(deps.db, name, deps.now().toISOString());
  log("info", "destination.resume_now", { request_id: deps.request_id, destination: name, resumed });
  if (resumed) await sendResumed(deps, name);
  return { ok: true, resumed };
}

/**
 * Cancels a destination's pending deliveries (up to CANCEL_LIMIT a call; call again while
 * `more` is true): final, not failures, never re-sent by a sweep, and retention moves past
 * them. Any name is accepted, so that a removed destination's leftovers can be cancelled.
 */
export async function cancelDeliveries(
  deps: Pick<ReplayDeps, "db" | "now" | "request_id">,
  input: { destination: string; reason?: string },
): Promise<{ ok: true; cancelled: number; more: boolean }> {
  const cancelled = await cancelPending(deps.db, {
    destination: input.destination,
    reason: input.reason ?? CANCELLED_BY_OPERATOR,
    at: deps.now().toISOString(),
  });
  log("info", "deliveries.cancelled", { request_id: deps.request_id, destination: input.destination, cancelled });
  return { ok: true, cancelled, more: cancelled === CANCEL_LIMIT };
}
