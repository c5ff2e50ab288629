/**
 * Backfill: a destination is sent the stored responses of a range that it wants and has no
 * ledger row for. The API starts one (a row in `backfills`, and the first page's message); the
 * consumer reads a page of the range at a time (BACKFILL_PAGE responses, in submission order),
 * creates a pending ledger row for each response the destination wants (never where it has a
 * row: a response is never sent twice to a destination that has it), enqueues each as an
 * ordinary alert message restricted to that destination, moves the cursor and enqueues the
 * next page. The deliveries then go as any other (the breaker, the claims, the retries). The
 * cron sends again the page message of a backfill that stopped moving (a lost message).
 *
 * A page read twice (its message retried) creates nothing twice and enqueues its pending rows
 * again (a repeat message finds them delivered, or claimed). Responses that retention removed
 * from D1 are not read back from the archive: `archived_only` counts them (see docs/backfill.md).
 */
import type { BackfillMessage, QueueMessage } from "./alert";
import { errorMessage, log } from "./log";
import { sendAlerts } from "./queue";
import {
  advanceBackfill,
  backfillPage,
  BACKFILL_PAGE,
  type Backfill,
  backfillById,
  cancelBackfill,
  createDeliveriesStatement,
  latestBackfill,
  startBackfill,
  stalledBackfills,
  touchBackfill,
  unfinishedCancel,
} from "./store/backfills";
import { DESTINATIONS_CACHE_IN_MS } from "./fanout/configured";
import { type Destination, wants } from "./fanout/destinations";
import type { EvaluationBudget } from "./fanout/jsonata";

/** A page that found this isolate's destinations older than D1's is read again after the cache's life. */
export const STALE_LIST_DELAY_SECONDS = Math.ceil(DESTINATIONS_CACHE_IN_MS / 1000) + 1;

/** A running backfill whose cursor has not moved for this long is started again by the cron. */
export const BACKFILL_STALLED_IN_MS = 5 * 60_000;

export function backfillMessage(id: number): { body: BackfillMessage; contentType: "json" } {
  return { body: { v: 1, kind: "backfill", backfill: id }, contentType: "json" };
}

export interface BackfillContext {
  db: D1Database;
  queue: Queue<QueueMessage>;
  destinations: Destination[];
  /** The version of the stored destinations `destinations` was read at (a page is read only against the current one). */
  version?: string;
  now: () => Date;
  evaluation?: EvaluationBudget;
}

/**
 * Reads one page of a backfill and enqueues what its destination wants. Returns what happened;
 * throws when D1 or the Queue failed (the message is retried: the page is read again).
 */
export async function backfillStep(ctx: BackfillContext, id: number): Promise<"page" | "finished" | "stopped" | "stale"> {
  const backfill = await backfillById(ctx.db, id);
  if (backfill === null || backfill.state !== "running") return "stopped";
  if (ctx.version !== undefined && backfill.destinations_version !== ctx.version) {
    // This isolate's list is older than D1's: the destination may be new, or its filters
    // changed. The page is read once the list was checked again (DESTINATIONS_CACHE_IN_MS).
    await ctx.queue.send(backfillMessage(id).body, { contentType: "json", delaySeconds: STALE_LIST_DELAY_SECONDS });
    log("info", "backfill.stale_destinations", { backfill: id, version: ctx.version, current: backfill.destinations_version });
    return "stale";
  }
  const at = ctx.now().toISOString();
  const destination = ctx.destinations.find((d) => d.name === backfill.destination);
  if (destination === undefined) {
    // Removed meanwhile (its pending rows were cancelled with it): nothing more to send.
    await cancelBackfill(ctx.db, { backfill, now: at, limit: 500 });
    log("info", "backfill.stopped", { backfill: id, destination: backfill.destination, reason: "destination removed" });
    return "stopped";
  }
  const rows = await backfillPage(ctx.db, backfill);
  const wanted: string[] = [];
  const again: string[] = [];
  let decided = 0;
  for (const row of rows) {
    if (row.status !== null) {
      // Its row exists: sent already, or by this backfill on an earlier read of the page.
      if (row.backfill === backfill.id && row.status === "pending") again.push(row.alert.alert_id);
    } else {
      const w = await wants(destination, row.alert, ctx.evaluation);
      // Past the evaluation budget: the page stops here, and the next read goes on from it.
      if (w.deferred) break;
      if (w.error !== undefined) log("warn", "backfill.filter_failed", { backfill: id, alert_id: row.alert.alert_id, error: w.error });
      else if (w.wanted) wanted.push(row.alert.alert_id);
    }
    decided += 1;
  }
  if (wanted.length > 0) await createDeliveriesStatement(ctx.db, { backfill, alert_ids: wanted, now: at }).run();
  const toSend = [...wanted, ...again];
  if (toSend.length > 0) await sendAlerts(ctx.queue, toSend, new Map(toSend.map((a) => [a, new Set([destination.name])])));
  const last = decided === rows.length && rows.length < BACKFILL_PAGE;
  const lastRow = decided > 0 ? rows[decided - 1] : undefined;
  const to = lastRow === undefined ? { submitted_at: backfill.cursor_submitted_at, alert_id: backfill.cursor_alert_id } : { submitted_at: lastRow.alert.submitted_at, alert_id: lastRow.alert.alert_id };
  const archived = rows.slice(0, decided).filter((r) => r.archived).map((r) => r.alert.alert_id);
  const moved = await advanceBackfill(ctx.db, { backfill, to, last, archived, now: at });
  if (!moved) return "stopped"; // another read of this page moved it, or it was cancelled
  log("info", "backfill.page", { backfill: id, destination: backfill.destination, read: decided, sent: wanted.length, last });
  if (last) return "finished";
  await ctx.queue.send(backfillMessage(id).body, { contentType: "json" });
  return "page";
}

/** The consumer's share: each backfill message of the batch, acknowledged once its page is done. */
export async function consumeBackfills(messages: Message<unknown>[], ctx: BackfillContext | null, backoff: (m: Message<unknown>) => void): Promise<void> {
  for (const message of messages) {
    if (ctx === null) {
      backoff(message);
      continue;
    }
    try {
      await backfillStep(ctx, (message.body as BackfillMessage).backfill);
      message.ack();
    } catch (error) {
      log("warn", "backfill.page_failed", { backfill: (message.body as BackfillMessage).backfill, error: errorMessage(error) });
      backoff(message);
    }
  }
}

/**
 * The cron's share (three subrequests at most): a running backfill whose cursor stopped moving
 * gets its page message again; else a cancelled one whose untried rows a DELETE did not all
 * reach has the next 500 of them cancelled.
 */
export async function restartStalledBackfills(db: D1Database, queue: Queue<QueueMessage>, now: Date): Promise<number> {
  const stalled = await stalledBackfills(db, new Date(now.getTime() - BACKFILL_STALLED_IN_MS).toISOString(), 1);
  for (const { id } of stalled) {
    await queue.send(backfillMessage(id).body, { contentType: "json" });
    await touchBackfill(db, id, now.toISOString());
  }
  if (stalled.length > 0) {
    log("info", "backfill.restarted", { backfills: stalled.length });
    return stalled.length;
  }
  const cancelled = await unfinishedCancel(db);
  if (cancelled !== null) {
    const round = await cancelBackfill(db, { backfill: cancelled, now: now.toISOString(), limit: 500 });
    if (round.cancelled > 0) log("info", "backfill.cancelled_more", { backfill: cancelled.id, cancelled: round.cancelled });
  }
  return 0;
}

export type { Backfill };

/** What `GET /api/destinations/{name}/backfill` shows of one. */
export function backfillView(b: Backfill) {
  return {
    destination: b.destination,
    since: b.since,
    until: b.until,
    state: b.state,
    total: b.total,
    sent: b.sent,
    delivered: b.delivered,
    failed: b.failed,
    started_at: b.started_at,
    finished_at: b.finished_at,
    /** Responses of the range that only the archive holds (retention removed them from D1): not sent. Known once the range is read. */
    archived_not_sent: b.total === null ? null : (b.archived_only ?? 0),
  };
}

export type BackfillStart =
  | { ok: true; backfill: Backfill }
  | { ok: false; error: "not_found" | "backfill_running" | "invalid_request"; issues?: { path: string; message: string }[] };

/** Starts a backfill of a destination the Worker has (from DESTINATIONS or the API) and enqueues its first page. */
export async function beginBackfill(
  deps: { db: D1Database; queue: Queue<QueueMessage>; destinations: Destination[]; now: () => Date },
  input: { name: string; since: string; until?: string },
): Promise<BackfillStart> {
  if (!deps.destinations.some((d) => d.name === input.name)) return { ok: false, error: "not_found" };
  const now = deps.now().toISOString();
  const since = new Date(input.since).toISOString();
  const until = input.until === undefined ? now : new Date(input.until).toISOString();
  if (until <= since) return { ok: false, error: "invalid_request", issues: [{ path: "until", message: "must be after since" }] };
  const backfill = await startBackfill(deps.db, { destination: input.name, since, until, now });
  if (backfill === null) return { ok: false, error: "backfill_running" };
  try {
    await deps.queue.send(backfillMessage(backfill.id).body, { contentType: "json" });
  } catch (error) {
    // The cron starts a backfill whose pages do not move (BACKFILL_STALLED_IN_MS).
    log("warn", "backfill.enqueue_failed", { backfill: backfill.id, error: errorMessage(error) });
  }
  log("info", "backfill.started", { backfill: backfill.id, destination: input.name, since, until });
  return { ok: true, backfill };
}

/** Cancels a destination's running backfill: what it has not sent yet (up to `chunks` × 500 rows now). */
export async function endBackfill(db: D1Database, name: string, now: Date, chunks = 10): Promise<{ ok: true; cancelled: number } | { ok: false; error: "not_found" }> {
  const backfill = await latestBackfill(db, name);
  if (backfill === null) return { ok: false, error: "not_found" };
  let cancelled = 0;
  // The first round ends the backfill (no page creates a row after it); the next ones only its rows.
  for (let i = 0; i < chunks; i++) {
    const round = await cancelBackfill(db, { backfill, now: now.toISOString(), limit: 500 });
    cancelled += round.cancelled;
    if (!round.more) break;
  }
  if (backfill.state === "running") log("info", "backfill.cancelled", { backfill: backfill.id, destination: name, cancelled });
  return { ok: true, cancelled };
}
