/**
 * Notifications to the operator, sent by the cron: Slack-compatible `text` with a
 * machine-readable `event` and `data`, each deduplicated, and a failing NOTIFY_URL that
 * changes nothing but a log line.
 */
import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import worker from "../src/index";
import { sendNotifications } from "../src/notify";
import { stubDestinations, watchSendBatch } from "./fanout-fixtures";
import { examplePayload, post } from "./fixtures";

const URL = "https://notify.test/hook";

beforeEach(async () => {
  await env.DB.batch([env.DB.prepare("DELETE FROM notifications"), env.DB.prepare("DELETE FROM notify_state")]);
});

afterEach(() => {
  vi.restoreAllMocks();
});

function sent(received: ReturnType<typeof stubDestinations>) {
  return received.filter((r) => r.host === "notify.test").map((r) => JSON.parse(r.body) as { text: string; event: string; data: Record<string, unknown> });
}

async function leave(event: string, key: string, data: Record<string, unknown>) {
  await env.DB.prepare("INSERT INTO notifications (event, key, data, created_at) VALUES (?, ?, ?, ?)").bind(event, key, JSON.stringify(data), new Date().toISOString()).run();
}

const tick = (now: Date, extra: { silence_hours?: number | null; url?: string } = {}) =>
  sendNotifications({ db: env.DB, url: extra.url ?? URL, silence_hours: extra.silence_hours ?? null, now });

describe("notifications", () => {
  it("a pause and a resume: each told once, Slack-compatible and machine-readable", async () => {
    const received = stubDestinations();
    await leave("destination.paused", "crm", { destination: "crm", paused_until: "2026-11-27T12:05:00.000Z", last_status: 503, last_error: "HTTP 503" });
    await leave("destination.resumed", "crm", { destination: "crm", after: "probe" });
    await tick(new Date());
    await tick(new Date());
    const bodies = sent(received);
    expect(bodies.map((b) => b.event)).toEqual(["destination.paused", "destination.resumed"]);
    expect(bodies[0]).toMatchObject({ event: "destination.paused", data: { destination: "crm", last_status: 503 } });
    expect(bodies[0]?.text).toContain("Destination crm paused");
    expect(bodies[0]?.text).toContain("HTTP 503");
    expect(received[0]?.headers["content-type"]).toBe("application/json");
  });

  it("dead deliveries: one notification per destination with the count, at most one an hour", async () => {
    const received = stubDestinations();
    const now = Date.now();
    await leave("delivery.dead", "crm", { destination: "crm", count: 2 });
    await leave("delivery.dead", "crm", { destination: "crm", count: 3 });
    await leave("delivery.dead", "slack", { destination: "slack", count: 1 });
    await tick(new Date(now));
    expect(sent(received).map((b) => [b.event, b.data])).toEqual([
      ["delivery.dead", { destination: "crm", count: 5 }],
      ["delivery.dead", { destination: "slack", count: 1 }],
    ]);
    // More die within the hour: they wait; after the hour, one notification with their count.
    await leave("delivery.dead", "crm", { destination: "crm", count: 4 });
    await tick(new Date(now + 30 * 60_000));
    expect(sent(received)).toHaveLength(2);
    await tick(new Date(now + 61 * 60_000));
    expect(sent(received).at(-1)).toMatchObject({ event: "delivery.dead", data: { destination: "crm", count: 4 } });
    expect(sent(received)).toHaveLength(3);
  });

  it("new quarantine rows: at most one notification an hour, with the count", async () => {
    const received = stubDestinations();
    await post(`{"broken": "${crypto.randomUUID()}"`);
    await post(`{"broken": "${crypto.randomUUID()}"`);
    const now = Date.now();
    await tick(new Date(now));
    const first = sent(received).filter((b) => b.event === "quarantine.new");
    expect(first).toHaveLength(1);
    expect(first[0]?.data.count).toBeGreaterThanOrEqual(2);
    await post(`{"broken": "${crypto.randomUUID()}"`);
    await tick(new Date(now + 10 * 60_000));
    expect(sent(received).filter((b) => b.event === "quarantine.new")).toHaveLength(1);
    await tick(new Date(now + 61 * 60_000));
    const later = sent(received).filter((b) => b.event === "quarantine.new");
    expect(later).toHaveLength(2);
    expect(later[1]?.data.count).toBe(1);
  });

  it("silence: told once per silence, and again after the next silence", async () => {
    const received = stubDestinations();
    const p = examplePayload({ timestamp: new Date().toISOString() });
    await post(p);
    const now = Date.now();
    await tick(new Date(now + 30 * 60_000), { silence_hours: 2 });
    expect(sent(received).filter((b) => b.event === "ingest.silent")).toHaveLength(0);
    await tick(new Date(now + 3 * 3_600_000), { silence_hours: 2 });
    await tick(new Date(now + 4 * 3_600_000), { silence_hours: 2 });
    const silent = sent(received).filter((b) => b.event === "ingest.silent");
    expect(silent).toHaveLength(1);
    expect(silent[0]).toMatchObject({ data: { hours: 2, last_submitted_at: p.timestamp } });
    await post(examplePayload({ timestamp: new Date(now + 5 * 3_600_000).toISOString() }));
    await tick(new Date(now + 8 * 3_600_000), { silence_hours: 2 });
    expect(sent(received).filter((b) => b.event === "ingest.silent")).toHaveLength(2);
  });

  it("a failing NOTIFY_URL changes nothing: logged, kept for the next tick, dropped after an hour of tries", async () => {
    await leave("destination.paused", "crm", { destination: "crm" });
    // The whole cron still runs: the sweep enqueues an alert the Queue never got.
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockRejectedValueOnce(new Error("Queue send failed"));
    const p = examplePayload();
    await post(p);
    vi.restoreAllMocks();
    stubDestinations({ "notify.test": () => new Response("no", { status: 500 }) });
    const warnings = vi.spyOn(console, "warn");
    const batches = watchSendBatch();
    await worker.scheduled(createScheduledController({ scheduledTime: Date.now() + 120_000, cron: "*/5 * * * *" }), { ...env, NOTIFY_URL: URL });
    expect(batches.ids()).toContain(p.alert_id);
    expect(warnings.mock.calls.some(([line]) => String(line).includes("notify.failed"))).toBe(true);
    const row = await env.DB.prepare("SELECT attempts FROM notifications WHERE key = 'crm'").first<{ attempts: number }>();
    expect(row?.attempts).toBe(1);
    for (let i = 0; i < 11; i++) await tick(new Date());
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM notifications").first()).toEqual({ n: 0 });
  });

  it("with NOTIFY_URL unset nothing is sent and nothing piles up", async () => {
    const received = stubDestinations();
    await leave("destination.paused", "crm", { destination: "crm" });
    await sendNotifications({ db: env.DB, url: undefined, silence_hours: null, now: new Date() });
    expect(sent(received)).toHaveLength(0);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM notifications").first()).toEqual({ n: 0 });
  });
});
