/**
 * Backfill: a destination added after responses were stored is sent them, each exactly once,
 * whatever comes in between (live traffic, a second backfill, a page read twice); its progress
 * is one row; a cancel stops what was not sent. The Queue is driven by hand: every message the
 * Worker sends is collected and handed to its consumer until none is left.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { BackfillMessage, QueueMessage } from "../src/alert";
import { backfillStep, restartStalledBackfills } from "../src/backfill";
import type { Destination } from "../src/fanout/destinations";
import { destinationsVersion } from "../src/store/destinations";
import { type Backfill, cancelBackfill } from "../src/store/backfills";
import { eraseUser } from "../src/store/erasure";
import { archiveTick, eraseUserFromArchive } from "../src/archive/archive";
import type { Env } from "../src/env";
import { applyRetention } from "../src/retention";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId, post } from "./fixtures";
import { FANOUT_ENV, message, runQueue, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const QUEUE = "oneflow-alerts";

/** A Worker with one destination of its own, added after the responses below were stored. */
function withDestination(name: string, entry: Record<string, unknown> = {}): Env {
  return { ...FANOUT_ENV, ADMIN_TOKEN, DESTINATIONS: JSON.stringify([{ name, url: `https://${name}.test/hook`, ...entry }]) };
}

/** Collects what the Worker puts on the Queue (instead of the local Queue taking it). */
function captureQueue() {
  const queued: QueueMessage[] = [];
  vi.spyOn(env.ALERTS_QUEUE, "send").mockImplementation(async (body) => {
    queued.push(body as QueueMessage);
    return undefined as unknown as QueueSendResponse;
  });
  vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockImplementation(async (messages) => {
    for (const m of messages) queued.push(m.body as QueueMessage);
    return undefined as unknown as QueueSendBatchResponse;
  });
  return queued;
}

let nextMessage = 0;
/** Hands every queued message to the consumer, again and again, until the Queue is empty (or `only` says which kind). */
async function drain(queued: QueueMessage[], environment: Env, only: (m: QueueMessage) => boolean = () => true): Promise<number> {
  let handled = 0;
  for (let round = 0; round < 100; round++) {
    const take = queued.filter(only);
    if (take.length === 0) return handled;
    for (const m of take) queued.splice(queued.indexOf(m), 1);
    const batch = take.map((body) => ({ id: `bf-${(nextMessage += 1)}`, timestamp: new Date(), attempts: 1, body }));
    for (let i = 0; i < batch.length; i += 10) await runQueue(QUEUE, batch.slice(i, i + 10), environment);
    handled += take.length;
  }
  throw new Error("the Queue never drained");
}

const isBackfill = (m: QueueMessage) => "kind" in m && m.kind === "backfill";

/** Runs `action` (another actor's write) right before a backfill's page creates its rows: the race, forced at that statement. */
function beforeRowsCreated(action: (prepare: D1Database["prepare"]) => Promise<unknown>) {
  const prepare = env.DB.prepare.bind(env.DB);
  vi.spyOn(env.DB, "prepare").mockImplementation((sql) => {
    const statement = prepare(sql);
    if (!sql.includes("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, backfill)")) return statement;
    const bind = statement.bind.bind(statement);
    statement.bind = (...values: unknown[]) => {
      const bound = bind(...values);
      const run = bound.run.bind(bound);
      bound.run = async <T,>() => {
        await action(prepare);
        return run<T>();
      };
      return bound;
    };
    return statement;
  });
}

/**
 * Stores `n` responses submitted on one day (a range no other test uses) and fans them out live
 * while no destination exists: the history a destination added later has missed.
 */
async function storeResponses(n: number, day: string, extra: Record<string, unknown> = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < n; i++) {
    const p = examplePayload({ timestamp: `${day}T10:${String(i % 60).padStart(2, "0")}:00.000Z`, ...extra });
    expect((await post(p)).status).toBe(200);
    ids.push(p.alert_id);
  }
  const result = await runQueue(QUEUE, ids.map((id) => message(id)), { ...FANOUT_ENV, DESTINATIONS: "[]" });
  expect(result.explicitAcks).toHaveLength(n);
  return ids;
}

/** POST /api/destinations/{name}/backfill with a range, as the dashboard's Send history… does. */
const postBackfill = (name: string, range: { since: string; until?: string }, environment: Env) =>
  callWorker(`/api/destinations/${name}/backfill`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(range) }, environment);

/** The alert ids destination `name`'s receiver got, in order. */
const arrivedAt = (received: { host: string; body: string }[], name: string) => received.filter((r) => r.host === `${name}.test`).map((r) => (JSON.parse(r.body) as { alert_id: string }).alert_id);

const backfillOf = async (name: string, environment: Env) => (await (await callWorker(`/api/destinations/${name}/backfill`, {}, environment)).json()) as { ok: boolean; backfill: Record<string, unknown> };

describe("backfill", () => {
  it("30 responses stored before the destination existed: each arrives exactly once, and the progress reaches done with total 30; a second backfill sends nothing new", async () => {
    const ids = await storeResponses(30, "2019-03-04");
    const name = freshId("hist");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    const res = await postBackfill(name, { since: "2019-03-04T00:00:00Z", until: "2019-03-05T00:00:00Z" }, ENV);
    expect(res.status).toBe(202);
    expect(await res.json()).toMatchObject({ ok: true, backfill: { destination: name, state: "running", total: null, sent: 0 } });
    await drain(queued, ENV);
    const got = arrivedAt(received, name);
    expect(got.sort()).toEqual([...ids].sort());
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 30, sent: 30, delivered: 30, failed: 0, archived_not_sent: 0 });
    expect((await backfillOf(name, ENV)).backfill.finished_at).toEqual(expect.any(String));

    // Again: every response has its row, so nothing is created or sent.
    const again = await postBackfill(name, { since: "2019-03-04T00:00:00Z", until: "2019-03-05T00:00:00Z" }, ENV);
    expect(again.status).toBe(202);
    await drain(queued, ENV);
    expect(received.filter((r) => r.host === `${name}.test`)).toHaveLength(30);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 0, sent: 0 });
  });

  it("only what the destination's filters want, in the range by submission time", async () => {
    const wanted = await storeResponses(3, "2019-04-01", { survey_id: "survey-wanted" });
    await storeResponses(2, "2019-04-01", { survey_id: "survey-other" });
    await storeResponses(2, "2019-04-02", { survey_id: "survey-wanted" }); // past `until`
    const name = freshId("filtered");
    const ENV = withDestination(name, { survey_ids: ["survey-wanted"] });
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-04-01T00:00:00Z", until: "2019-04-02T00:00:00Z" }, ENV);
    await drain(queued, ENV);
    const got = arrivedAt(received, name);
    expect(got.sort()).toEqual([...wanted].sort());
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 3 });
  });

  it("responses of the range delivered live meanwhile arrive once, in either order; a page read twice sends nothing twice", async () => {
    const stored = await storeResponses(4, "2019-05-06");
    const name = freshId("live");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    // One delivered live before the backfill reads it.
    expect((await runQueue(QUEUE, [message(stored[0] as string)], ENV)).explicitAcks).toHaveLength(1);
    await postBackfill(name, { since: "2019-05-06T00:00:00Z", until: "2019-05-07T00:00:00Z" }, ENV);
    // The page message, read twice (a redelivery): its rows are created once.
    const page = queued.find(isBackfill);
    expect(page).toBeDefined();
    queued.push(page as QueueMessage);
    await drain(queued, ENV, isBackfill);
    // Another delivered live after the backfill created its row, before the backfill's message.
    expect((await runQueue(QUEUE, [message(stored[1] as string)], ENV)).explicitAcks).toHaveLength(1);
    await drain(queued, ENV);
    const got = arrivedAt(received, name);
    expect(got.sort()).toEqual([...stored].sort());
    // Three were the backfill's rows (the one delivered before it started was not).
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 3, sent: 3, delivered: 3 });
  });

  it("a response delivered live between the page's read and its rows' creation: the backfill leaves its row alone and does not send it again", async () => {
    const [first, second] = await storeResponses(2, "2019-05-20");
    const name = freshId("race");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-05-20T00:00:00Z", until: "2019-05-21T00:00:00Z" }, ENV);
    // Right before the backfill creates its rows, the live consumer records `first` as delivered.
    beforeRowsCreated((prepare) =>
      prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, delivered_at) VALUES (?1, ?2, 'delivered', 1, ?3, ?3)")
        .bind(first, name, new Date().toISOString())
        .run(),
    );
    await drain(queued, ENV);
    const got = arrivedAt(received, name);
    expect(got).toEqual([second]);
    expect(await env.DB.prepare("SELECT status, backfill FROM deliveries WHERE alert_id = ? AND destination = ?").bind(first, name).first()).toEqual({ status: "delivered", backfill: null });
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 1, delivered: 1 });
  });

  it("a response whose live message is still on the Queue is left to it: no backfill row, so a DELETE cannot cancel its live delivery", async () => {
    const name = freshId("inflight");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    const p = examplePayload({ timestamp: "2019-09-10T10:00:00.000Z" });
    expect((await post(p)).status).toBe(200); // its live message waits in `queued`
    await postBackfill(name, { since: "2019-09-10T00:00:00Z", until: "2019-09-11T00:00:00Z" }, ENV);
    await drain(queued, ENV, isBackfill);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE alert_id = ?").bind(p.alert_id).first()).toEqual({ n: 0 });
    expect(await (await callWorker(`/api/destinations/${name}/backfill`, { method: "DELETE" }, ENV)).json()).toEqual({ ok: true, cancelled: 0 });
    await drain(queued, ENV);
    expect(arrivedAt(received, name)).toEqual([p.alert_id]);
    expect(await env.DB.prepare("SELECT status, backfill FROM deliveries WHERE alert_id = ?").bind(p.alert_id).first()).toEqual({ status: "delivered", backfill: null });
  });

  it("a response erased between the page's read and its row: no row for it, and the backfill still finishes", async () => {
    const [kept, gone] = await storeResponses(2, "2019-10-11", { user: { user_system_id: `erased-${freshId()}` } });
    const name = freshId("erased");
    const ENV = withDestination(name);
    const queued = captureQueue();
    stubDestinations();
    await postBackfill(name, { since: "2019-10-11T00:00:00Z", until: "2019-10-12T00:00:00Z" }, ENV);
    beforeRowsCreated((prepare) => prepare("DELETE FROM alerts WHERE alert_id = ?").bind(gone).run()); // as an erasure's chunk does
    await drain(queued, ENV);
    const rows = await env.DB.prepare("SELECT alert_id FROM deliveries WHERE destination = ?").bind(name).all<{ alert_id: string }>();
    expect(rows.results.map((r) => r.alert_id)).toEqual([kept]);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 1, delivered: 1 });
  });

  it("a backfill's message leaves every other destination alone", async () => {
    const [id] = await storeResponses(1, "2019-06-07");
    const name = freshId("alone");
    const other = freshId("other");
    const ENV = { ...withDestination(name), DESTINATIONS: JSON.stringify([{ name, url: `https://${name}.test/hook` }, { name: other, url: `https://${other}.test/hook` }]) };
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-06-07T00:00:00Z", until: "2019-06-08T00:00:00Z" }, ENV);
    await drain(queued, ENV);
    expect(received.map((r) => r.host)).toEqual([`${name}.test`]);
    const rows = await env.DB.prepare("SELECT destination FROM deliveries WHERE alert_id = ?").bind(id).all<{ destination: string }>();
    expect(rows.results.map((r) => r.destination)).toEqual([name]);
  });

  it("DELETE cancels what was not sent: nothing more arrives, and its rows are cancelled, not failed", async () => {
    await storeResponses(5, "2019-07-08");
    const name = freshId("cancel");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-07-08T00:00:00Z", until: "2019-07-09T00:00:00Z" }, ENV);
    await drain(queued, ENV, isBackfill); // its rows exist, its alerts' messages wait on the Queue
    const del = await callWorker(`/api/destinations/${name}/backfill`, { method: "DELETE" }, ENV);
    expect(await del.json()).toEqual({ ok: true, cancelled: 5 });
    await drain(queued, ENV);
    expect(received.filter((r) => r.host === `${name}.test`)).toEqual([]);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "cancelled", sent: 5, delivered: 0, failed: 0 });
    const statuses = await env.DB.prepare("SELECT DISTINCT status, last_error FROM deliveries WHERE destination = ?").bind(name).all();
    expect(statuses.results).toEqual([{ status: "cancelled", last_error: "backfill cancelled" }]);
  });

  it("a consumer whose list of destinations is older than D1's (another isolate's cache): the page waits for the list; it never cancels the backfill nor skips what the new filter wants", async () => {
    const ids = await storeResponses(2, "2019-11-12", { survey_id: "survey-stale" });
    const name = freshId("stale");
    const ENV: Env = { ...FANOUT_ENV, ADMIN_TOKEN, DESTINATIONS: "[]" };
    const queued = captureQueue();
    const received = stubDestinations();
    const before = await destinationsVersion(env.DB);
    // Created through the API: this isolate forgets its list; a consumer elsewhere still has the old one.
    const put = await callWorker(`/api/destinations/${name}`, { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ url: `https://${name}.test/hook`, survey_ids: ["another-survey"] }) }, ENV);
    expect(put.status).toBe(201);
    const afterPut = await destinationsVersion(env.DB);
    const patch = await callWorker(`/api/destinations/${name}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ survey_ids: ["survey-stale"] }) }, ENV);
    expect(patch.status).toBe(200);
    await postBackfill(name, { since: "2019-11-12T00:00:00Z", until: "2019-11-13T00:00:00Z" }, ENV);
    const page = queued.find(isBackfill) as BackfillMessage;
    queued.splice(queued.indexOf(page), 1);
    const stale = (destinations: Destination[], version: string) => ({ db: env.DB, queue: env.ALERTS_QUEUE, destinations, version, now: () => new Date() });
    // The list from before the PUT (no such destination), then the one between the PUT and the PATCH (the old filter).
    expect(await backfillStep(stale([], before), page.backfill)).toBe("stale");
    const between = { name, url: `https://${name}.test/hook`, survey_ids: ["another-survey"], source: "api" } as Destination;
    expect(await backfillStep(stale([between], afterPut), page.backfill)).toBe("stale");
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "running", sent: 0 });
    // Each time the page is sent again, later (by then the consumer's list is checked against D1).
    const again = queued.filter(isBackfill);
    expect(again).toEqual([page, page]);
    expect(vi.mocked(env.ALERTS_QUEUE.send).mock.calls.filter(([body]) => isBackfill(body as QueueMessage)).slice(-2).map(([, options]) => options?.delaySeconds)).toEqual([31, 31]);
    await drain(queued, ENV);
    const got = arrivedAt(received, name);
    expect(got.sort()).toEqual([...ids].sort());
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 2, delivered: 2 });
  });

  it("a replayed delivery of a backfill counts once: its first outcome is taken back, and the backfill is not done before its last delivery", async () => {
    const [first, second] = await storeResponses(2, "2019-11-20");
    const name = freshId("replayed");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-11-20T00:00:00Z", until: "2019-11-21T00:00:00Z" }, ENV);
    await drain(queued, ENV, isBackfill); // both rows exist, total known
    // `first` dies (as the consumer records it after its last retry), then is replayed.
    await env.DB.prepare("UPDATE deliveries SET status = 'dead', attempts = 10, last_error = 'HTTP 500', updated_at = ?3 WHERE alert_id = ?1 AND destination = ?2").bind(first, name, new Date().toISOString()).run();
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "running", failed: 1 });
    const replay = await callWorker(`/api/alerts/${first}/replay`, { method: "POST" }, ENV);
    expect(replay.status).toBe(200);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "running", total: 2, delivered: 0, failed: 0 });
    await drain(queued, ENV, (m) => "alert_id" in m && m.alert_id === first);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "running", total: 2, delivered: 1, failed: 0 });
    await drain(queued, ENV);
    expect(arrivedAt(received, name).sort()).toEqual([first, second].sort());
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 2, delivered: 2, failed: 0 });
  });

  it("the cron cancels on the next cancelled backfill whose untried rows are left, past one whose rows left are all being retried", async () => {
    const [tried, untried] = await storeResponses(2, "2019-11-25");
    const names = [freshId("retrying"), freshId("untried")];
    const at = "2019-11-26T00:00:00.000Z";
    const [older, newer] = await Promise.all(
      names.map(async (name, i) => {
        const row = await env.DB.prepare(
          `INSERT INTO backfills (destination, since, until, state, cursor_submitted_at, cursor_alert_id, started_at, updated_at, finished_at, total)
           VALUES (?1, '2019-11-25', '2019-11-26', 'cancelled', '2019-11-26', '', ?2, ?2, ?2, 1) RETURNING id`,
        ).bind(name, `2019-11-26T00:00:0${i}.000Z`).first<{ id: number }>();
        return row?.id as number;
      }),
    );
    // The older one's last row was tried before the cancel (a DELETE leaves it to its retries); the newer one's was never reached.
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, backfill) VALUES (?1, ?2, 'pending', 1, ?3, ?4), (?5, ?6, 'pending', 0, ?3, ?7)")
      .bind(tried, names[0], at, older, untried, names[1], newer).run();
    const queue = { send: async () => undefined } as unknown as Queue<QueueMessage>;
    await restartStalledBackfills(env.DB, queue, new Date());
    const row = (destination: string | undefined) => env.DB.prepare("SELECT status, attempts FROM deliveries WHERE destination = ?").bind(destination).first();
    expect(await row(names[1])).toEqual({ status: "cancelled", attempts: 0 });
    expect(await row(names[0])).toEqual({ status: "pending", attempts: 1 });
  });

  it("a delivery of a cancelled backfill that the operator replays after the cancel is the operator's: the cron's cancel leaves it to be sent, and goes on to the next cancelled backfill", async () => {
    const [id, untried, left] = await storeResponses(3, "2019-11-27");
    const name = freshId("replay-after-cancel");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    const cancelled_at = "2019-11-28T00:00:00.000Z";
    const backfill = await env.DB.prepare(
      `INSERT INTO backfills (destination, since, until, state, cursor_submitted_at, cursor_alert_id, started_at, updated_at, finished_at, total)
       VALUES (?1, '2019-11-27', '2019-11-28', 'cancelled', '2019-11-28', '', ?2, ?2, ?2, 1) RETURNING id`,
    ).bind(name, cancelled_at).first<{ id: number }>();
    // Delivered before the cancel without an attempt of its own (a delivery that another message made: attempts 0).
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, delivered_at, backfill) VALUES (?1, ?2, 'delivered', 0, ?3, ?3, ?4)")
      .bind(id, name, cancelled_at, backfill?.id).run();
    // And one of its rows the DELETE did not reach: the cron cancels it, beside the replayed one.
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, backfill) VALUES (?1, ?2, 'pending', 0, ?3, ?4)").bind(left, name, cancelled_at, backfill?.id).run();
    // A later cancelled backfill (another destination) with an untried row the DELETE did not reach.
    const other = freshId("cancelled-later");
    const later = await env.DB.prepare(
      `INSERT INTO backfills (destination, since, until, state, cursor_submitted_at, cursor_alert_id, started_at, updated_at, finished_at, total)
       VALUES (?1, '2019-11-27', '2019-11-28', 'cancelled', '2019-11-28', '', ?2, ?2, ?2, 1) RETURNING id`,
    ).bind(other, "2019-11-28T00:00:01.000Z").first<{ id: number }>();
    await env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, backfill) VALUES (?1, ?2, 'pending', 0, ?3, ?4)").bind(untried, other, cancelled_at, later?.id).run();
    const replay = await callWorker(`/api/alerts/${id}/replay`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ destination: name, force: true }) }, ENV);
    expect(replay.status).toBe(200);
    // One cancelled backfill a tick: this one (its untried row), then the later one.
    await restartStalledBackfills(env.DB, env.ALERTS_QUEUE, new Date());
    await restartStalledBackfills(env.DB, env.ALERTS_QUEUE, new Date());
    const status = async (alert_id: string | undefined, destination: string) => env.DB.prepare("SELECT status FROM deliveries WHERE alert_id = ? AND destination = ?").bind(alert_id, destination).first();
    expect(await status(left, name)).toEqual({ status: "cancelled" });
    expect(await status(id, name)).toEqual({ status: "pending" });
    expect(await status(untried, other)).toEqual({ status: "cancelled" });
    await drain(queued, ENV);
    expect(arrivedAt(received, name)).toEqual([id]);
  });

  it("a cancel reaches the untried rows written while it ran, and rows the outbox sweep touched after it: only an operator's replay is spared", async () => {
    const ids = await storeResponses(3, "2019-10-03");
    const name = freshId("cancel-late-rows");
    const started = "2019-10-04T00:00:00.000Z";
    const inserted = await env.DB.prepare(
      `INSERT INTO backfills (destination, since, until, state, cursor_submitted_at, cursor_alert_id, started_at, updated_at, total)
       VALUES (?1, '2019-10-03', '2019-10-04', 'running', '2019-10-04', '', ?2, ?2, 3) RETURNING *`,
    ).bind(name, started).first<Backfill>();
    if (inserted === null) throw new Error("no backfill");
    const pending = env.DB.prepare("INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at, backfill) VALUES (?1, ?2, 'pending', 0, ?3, ?4)");
    // A consumer's page wrote its rows at 00:00:05, after the DELETE request took its time (00:00:01).
    await pending.bind(ids[0], name, "2019-10-04T00:00:05.000Z", inserted.id).run();
    // One the cancel leaves for the cron (limit 1), touched by the outbox sweep's re-enqueue before the cron gets to it.
    await pending.bind(ids[1], name, started, inserted.id).run();
    await pending.bind(ids[2], name, started, inserted.id).run();
    const first = await cancelBackfill(env.DB, { backfill: inserted, now: "2019-10-04T00:00:01.000Z", limit: 1 });
    expect(first).toEqual({ cancelled: 1, more: true });
    await env.DB.prepare("UPDATE deliveries SET updated_at = '2019-10-04T03:00:00.000Z' WHERE backfill = ?1 AND status = 'pending'").bind(inserted.id).run();
    for (let i = 0; i < 3; i++) await restartStalledBackfills(env.DB, env.ALERTS_QUEUE, new Date("2019-10-04T03:05:00.000Z"));
    const statuses = await env.DB.prepare("SELECT status FROM deliveries WHERE backfill = ?1").bind(inserted.id).all<{ status: string }>();
    expect(statuses.results.map((r) => r.status)).toEqual(["cancelled", "cancelled", "cancelled"]);
  });

  it("answers 404 for an unknown destination, 409 while one runs, 400 for a bad range", async () => {
    const name = freshId("codes");
    const ENV = withDestination(name);
    captureQueue();
    const start = (who: string, body: unknown) => callWorker(`/api/destinations/${who}/backfill`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) }, ENV);
    expect((await start("nobody", { since: "2020-01-01T00:00:00Z" })).status).toBe(404);
    expect((await callWorker("/api/destinations/nobody/backfill", {}, ENV)).status).toBe(404);
    expect((await start(name, { since: "yesterday" })).status).toBe(400);
    expect((await start(name, { since: "2020-01-02T00:00:00Z", until: "2020-01-01T00:00:00Z" })).status).toBe(400);
    expect((await start(name, { since: "2020-01-01T00:00:00Z" })).status).toBe(202);
    const running = await start(name, { since: "2020-01-01T00:00:00Z" });
    expect(running.status).toBe(409);
    expect(await running.json()).toMatchObject({ ok: false, error: "backfill_running" });
  });
});

describe("the Destinations page", () => {
  it("Send history… starts a backfill; its progress bar shows while it runs (the page refreshes itself), its outcome after", async () => {
    const ids = await storeResponses(3, "2024-12-30");
    const name = freshId("page");
    const ENV = withDestination(name);
    const queued = captureQueue();
    stubDestinations();
    const headers = (cookie = "") => ({ origin: "https://worker.test", cookie });
    const login = await callWorker("/dashboard/login", { token: null, method: "POST", headers: { ...headers(), "content-type": "application/x-www-form-urlencoded" }, body: `token=${ADMIN_TOKEN}` }, ENV);
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const page = async () => (await callWorker("/dashboard/destinations", { token: null, headers: headers(cookie) }, ENV)).text();
    expect(await page()).toContain(`action="/dashboard/destinations/${name}/backfill"`);
    const form = (path: string, body: string) => callWorker(path, { token: null, method: "POST", headers: { ...headers(cookie), "content-type": "application/x-www-form-urlencoded" }, body }, ENV);
    expect((await form(`/dashboard/destinations/${name}/backfill`, "since=2024-12-30")).status).toBe(303);
    const running = await page();
    expect(running).toContain('<meta http-equiv="refresh" content="5"/>');
    expect(running).toMatch(/Sending history since 2024-12-30: 0 of 0\+ delivered <progress/);
    expect(running).toContain(`action="/dashboard/destinations/${name}/backfill/cancel"`);
    await drain(queued, ENV);
    const done = await page();
    expect(done).toContain(`History since 2024-12-30: done, ${ids.length} of ${ids.length} delivered`);
    expect(done).not.toContain(`action="/dashboard/destinations/${name}/backfill/cancel"`);
  });
});

describe("cost", () => {
  it("a page seeks its range from the cursor through alerts_by_time: no scan, no sort, whatever the cursor", async () => {
    const { backfillPage } = await import("../src/store/backfills");
    const prepare = env.DB.prepare.bind(env.DB);
    let sql = "";
    vi.spyOn(env.DB, "prepare").mockImplementation((text) => {
      if (text.includes("FROM alerts AS a INDEXED BY alerts_by_time")) sql = text;
      return prepare(text);
    });
    const backfill = { id: 0, destination: "x", since: "2019-01-01T00:00:00.000Z", until: "2020-01-01T00:00:00.000Z", cursor_submitted_at: "2019-06-01T00:00:00.000Z", cursor_alert_id: "m" };
    await backfillPage(env.DB, backfill as Parameters<typeof backfillPage>[1]);
    vi.restoreAllMocks();
    const detail = (await env.DB.prepare(`EXPLAIN QUERY PLAN ${sql}`).bind(backfill.since, backfill.until, backfill.cursor_submitted_at, backfill.cursor_alert_id, "x", 100, 1).all<{ detail: string }>()).results.map((r) => r.detail).join(" | ");
    expect(detail).toContain("SEARCH a USING INDEX alerts_by_time ((submitted_at,alert_id)>(?,?)");
    expect(detail).not.toMatch(/SCAN a\b|TEMP B-TREE/);
  });
});

describe("what only the archive holds", () => {
  const bucket = (): R2Bucket => {
    if (!env.ARCHIVE) throw new Error("wrangler.toml binds ARCHIVE");
    return env.ARCHIVE;
  };
  /** Archives every stored response now (no delay). */
  async function archiveNow(): Promise<void> {
    for (let i = 0; i < 20; i++) if (!(await archiveTick({ db: env.DB, bucket: bucket(), now: new Date(), delay_minutes: 0, rows_per_tick: 500 })).more) return;
    throw new Error("the archive did not catch up");
  }
  /** Retention (with the archive) of what was submitted before `before`, as the cron runs it. */
  const retainBefore = (before: string) => applyRetention(env.DB, 1, new Date(new Date(before).getTime() + 86_400_000), undefined, { archive: true });

  it("archived_not_sent counts each response of the range that only the archive held when the backfill reached it: before the start, removed during it, or removed between its page's read and its rows", async () => {
    const [a] = await storeResponses(1, "2019-12-01", { timestamp: "2019-12-01T01:00:00.000Z" });
    const [b] = await storeResponses(1, "2019-12-02", { timestamp: "2019-12-02T01:00:00.000Z" });
    const [c] = await storeResponses(1, "2019-12-02", { timestamp: "2019-12-02T20:00:00.000Z" });
    const [d] = await storeResponses(1, "2019-12-03", { timestamp: "2019-12-03T10:00:00.000Z" });
    await archiveNow();
    await retainBefore("2019-12-02T00:00:00.000Z"); // `a` is only in the archive now
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE alert_id = ?").bind(a).first()).toEqual({ n: 0 });
    const name = freshId("archived");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-12-01T00:00:00Z", until: "2019-12-04T00:00:00Z" }, ENV);
    // After the start: `e` is stored and archived (still in D1: sent); `f` is stored, archived and removed before the page reaches it.
    const [e] = await storeResponses(1, "2019-12-03", { timestamp: "2019-12-03T12:00:00.000Z" });
    const [f] = await storeResponses(1, "2019-12-01", { timestamp: "2019-12-01T12:00:00.000Z" });
    await archiveNow();
    await retainBefore("2019-12-02T00:00:00.000Z");
    // Between the page's read and its rows, retention removes `b` (read from D1, gone before its row).
    beforeRowsCreated(() => retainBefore("2019-12-02T12:00:00.000Z"));
    await drain(queued, ENV);
    const got = arrivedAt(received, name);
    expect(got.sort()).toEqual([c, d, e].sort());
    expect([a, b, f].every((id) => !got.includes(id as string))).toBe(true);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 3, delivered: 3, archived_not_sent: 3 });
  });

  it("a response retention read as finished, then the backfill's page gave a pending row, then retention erased: not sent, and counted in archived_not_sent", async () => {
    await archiveNow();
    await retainBefore("2019-12-14T00:00:00.000Z"); // only what this test stores is left before 2019-12-16
    const [x] = await storeResponses(1, "2019-12-15");
    await archiveNow();
    const name = freshId("retained");
    const ENV = withDestination(name);
    const queued = captureQueue();
    const received = stubDestinations();
    await postBackfill(name, { since: "2019-12-15T00:00:00Z", until: "2019-12-16T00:00:00Z" }, ENV);
    // Retention has read `x` (finished); before its erase batch, the backfill's page creates x's row and passes it.
    const prepare = env.DB.prepare.bind(env.DB);
    const batch = env.DB.batch.bind(env.DB);
    let erasing = false;
    vi.spyOn(env.DB, "prepare").mockImplementation((sql) => {
      if (sql.includes("RETURNING json_array_length(answers_json)")) erasing = true;
      return prepare(sql);
    });
    vi.spyOn(env.DB, "batch").mockImplementation(async (statements) => {
      if (erasing) {
        erasing = false;
        await drain(queued, ENV, isBackfill);
        expect(await env.DB.prepare("SELECT status FROM deliveries WHERE alert_id = ? AND destination = ?").bind(x, name).first()).toEqual({ status: "pending" });
      }
      return batch(statements);
    });
    await retainBefore("2019-12-16T00:00:00.000Z");
    vi.restoreAllMocks();
    captureQueue();
    await drain(queued, ENV);
    expect(received.filter((r) => r.host === `${name}.test`)).toEqual([]);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 1, delivered: 0, failed: 0, archived_not_sent: 1 });
  });

  it("a part written after a backfill started has a higher id than its mark, even once an erasure removed the newest parts", async () => {
    const user = freshId("erased-user");
    await storeResponses(1, "2019-12-20", { user: { user_system_id: user } });
    await archiveNow();
    const name = freshId("marked");
    const ENV = withDestination(name);
    const queued = captureQueue();
    stubDestinations();
    await postBackfill(name, { since: "2019-12-20T00:00:00Z", until: "2019-12-22T00:00:00Z" }, ENV);
    const mark = (await env.DB.prepare("SELECT archive_parts_through AS n FROM backfills WHERE destination = ?").bind(name).first<{ n: number }>())?.n as number;
    expect(mark).toBeGreaterThan(0);
    // The user's erasure empties the newest parts: their manifest rows go.
    await eraseUser(env.DB, user, 10, new Date().toISOString());
    for (let i = 0; i < 10 && (await eraseUserFromArchive({ db: env.DB, bucket: bucket(), user_system_id: user, now: new Date(), max_parts: 4 })).more; i++);
    expect((await env.DB.prepare("SELECT MAX(id) AS n FROM archive_parts").first<{ n: number | null }>())?.n ?? 0).toBeLessThan(mark);
    const [q] = await storeResponses(1, "2019-12-21");
    await archiveNow();
    const part = await env.DB.prepare("SELECT responses_part AS n FROM archived_alerts WHERE alert_id = ?").bind(q).first<{ n: number }>();
    expect(part?.n).toBeGreaterThan(mark);
    await drain(queued, ENV);
    expect((await backfillOf(name, ENV)).backfill).toMatchObject({ state: "done", total: 1, delivered: 1 });
  });
});
