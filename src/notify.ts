/**
 * Notifications to the operator, sent by the cron (never on the request path) to
 * NOTIFY_URL as `{"text", "event", "data"}`: Slack shows `text`, a program reads `event`
 * and `data`. Deduplicated: `destination.paused` and `destination.resumed` once per
 * transition, `delivery.dead` at most once per destination per hour (with the count),
 * `quarantine.new` at most once per hour, `ingest.silent` once per silence. A failing
 * NOTIFY_URL is logged and tried again next tick (an hour at most); it blocks nothing.
 */
import type { Budget } from "./budget";
import { errorMessage, log } from "./log";
import {
  deleteNotifications,
  failedNotifications,
  newestResponse,
  newQuarantineRows,
  type NotificationRow,
  notifyState,
  pendingNotifications,
  setNotifyState,
} from "./store/notifications";

export const NOTIFY_TIMEOUT_IN_MS = 5_000;
/** A notification not delivered after this many ticks (an hour of them) is dropped, with a log line. */
export const NOTIFY_MAX_ATTEMPTS = 12;
const HOUR_MS = 3_600_000;

export interface Notification {
  text: string;
  event: "destination.paused" | "destination.resumed" | "delivery.dead" | "quarantine.new" | "ingest.silent";
  data: Record<string, unknown>;
}

export interface NotifyContext {
  db: D1Database;
  url: string | undefined;
  silence_hours: number | null;
  now: Date;
  /** The dashboard's address, for the links in the text. */
  origin?: string;
  /** The subrequests this step may make (its share of the cron's); unlimited when absent. */
  budget?: Budget;
}

/**
 * Subrequests kept after the notifications the consumers left: their delete and attempt
 * count (2), then the quarantine check and the silence check (4 each, a POST included).
 */
const NOTIFY_RESERVE = 10;

/** Sends one notification; false when NOTIFY_URL did not take it (logged). */
async function post(url: string, notification: Notification): Promise<boolean> {
  try {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json", "user-agent": "oneflow-webhooks" },
      body: JSON.stringify(notification),
      redirect: "manual",
      signal: AbortSignal.timeout(NOTIFY_TIMEOUT_IN_MS),
    });
    await res.body?.cancel();
    if (res.ok) return true;
    log("warn", "notify.failed", { notification: notification.event, http_status: res.status });
  } catch (error) {
    log("warn", "notify.failed", { notification: notification.event, error: errorMessage(error) });
  }
  return false;
}

function textOf(row: NotificationRow, data: Record<string, unknown>): string {
  const destination = String(data.destination ?? row.key);
  if (row.event === "destination.paused") {
    const last = data.last_status ? `HTTP ${data.last_status}` : (data.last_error ?? "no answer");
    return `Destination ${destination} paused after repeated failures (last: ${last}); its deliveries wait, none is lost. Next try at ${data.paused_until}.`;
  }
  if (row.event === "destination.resumed") return `Destination ${destination} resumed (${data.after}); the deliveries that waited are being sent.`;
  return `${data.count} deliveries to ${destination} ran out of retries (dead); replay them from the dashboard.`;
}

/** One tick: the notifications the consumers left, then the quarantine and silence checks. */
export async function sendNotifications(ctx: NotifyContext): Promise<{ sent: number; failed: number }> {
  const result = { sent: 0, failed: 0 };
  const rows = await pendingNotifications(ctx.db);
  if (!ctx.url) {
    // Nobody to tell: do not let them pile up.
    if (rows.length > 0) await deleteNotifications(ctx.db, rows.map((r) => r.id));
    return result;
  }
  const url = ctx.url;
  const now = ctx.now.toISOString();
  // Whether the share leaves room for one more POST and the bookkeeping after it; what is
  // not sent now waits for the next tick, with no attempt spent.
  const canSend = (cost: number) => (ctx.budget?.left() ?? Number.POSITIVE_INFINITY) - cost >= NOTIFY_RESERVE;
  const send = async (notification: Notification) => {
    ctx.budget?.take();
    const ok = await post(url, notification);
    if (ok) result.sent += 1;
    else result.failed += 1;
    return ok;
  };

  // Transitions: each once. Dead deliveries: merged per destination, at most one an hour.
  const done: number[] = [];
  const failed: number[] = [];
  const dead = new Map<string, NotificationRow[]>();
  for (const row of rows) {
    if (row.event === "delivery.dead") {
      dead.set(row.key, [...(dead.get(row.key) ?? []), row]);
      continue;
    }
    if (!canSend(1)) continue;
    const data = JSON.parse(row.data) as Record<string, unknown>;
    const event = row.event as Notification["event"];
    ((await send({ text: textOf(row, data), event, data })) ? done : failed).push(row.id);
  }
  for (const [destination, list] of dead) {
    // Its state, the POST and the new state.
    if (!canSend(3)) break;
    const last = await notifyState(ctx.db, `delivery.dead:${destination}`);
    if (last !== null && ctx.now.getTime() - Date.parse(last) < HOUR_MS) continue;
    const count = list.reduce((n, r) => n + Number((JSON.parse(r.data) as { count?: number }).count ?? 0), 0);
    const data = { destination, count };
    if (await send({ text: textOf(list[0] as NotificationRow, data), event: "delivery.dead", data })) {
      await setNotifyState(ctx.db, `delivery.dead:${destination}`, now);
      done.push(...list.map((r) => r.id));
    } else failed.push(...list.map((r) => r.id));
  }
  if (done.length > 0) await deleteNotifications(ctx.db, done);
  if (failed.length > 0) {
    const dropped = await failedNotifications(ctx.db, failed, NOTIFY_MAX_ATTEMPTS);
    if (dropped > 0) log("error", "notify.dropped", { notifications: dropped, attempts: NOTIFY_MAX_ATTEMPTS });
  }

  // New quarantine rows since the last time, at most once an hour.
  const lastQuarantine = await notifyState(ctx.db, "quarantine.new");
  if (lastQuarantine === null || ctx.now.getTime() - Date.parse(lastQuarantine) >= HOUR_MS) {
    const since = lastQuarantine ?? new Date(ctx.now.getTime() - HOUR_MS).toISOString();
    const count = await newQuarantineRows(ctx.db, since);
    if (count > 0) {
      const link = ctx.origin ? ` ${ctx.origin}/dashboard/quarantine` : "";
      const text = `${count} new ${count === 1 ? "body" : "bodies"} in the quarantine: refused, kept, reprocessable.${link}`;
      if (await send({ text, event: "quarantine.new", data: { count, since } })) await setNotifyState(ctx.db, "quarantine.new", now);
    }
  }

  // Silence: nothing received for SILENCE_HOURS, told once per silence.
  if (ctx.silence_hours !== null) {
    const newest = await newestResponse(ctx.db);
    if (newest !== null && ctx.now.getTime() - Date.parse(newest.submitted_at) >= ctx.silence_hours * HOUR_MS) {
      if ((await notifyState(ctx.db, "ingest.silent")) !== newest.alert_id) {
        const text = `No survey response received for ${ctx.silence_hours} hours (the last was submitted at ${newest.submitted_at}). Is the webhook still enabled in 1Flow?`;
        const data = { hours: ctx.silence_hours, last_submitted_at: newest.submitted_at };
        if (await send({ text, event: "ingest.silent", data })) await setNotifyState(ctx.db, "ingest.silent", newest.alert_id);
      }
    }
  }
  if (result.sent + result.failed > 0) log(result.failed > 0 ? "warn" : "info", "notify.sent", result);
  return result;
}
