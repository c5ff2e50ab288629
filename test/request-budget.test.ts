/**
 * Issue 25, path 8 (destinations): a request stays within the 50 subrequests of an
 * invocation, whatever else waits. Enabling a destination, or its Resume now, with many
 * other destinations paused or being resumed, sends the first pages of its own waiting
 * deliveries at once and leaves the rest to the cron (its cursor is kept).
 */
import { env } from "cloudflare:workers";
import { afterEach, beforeAll, beforeEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { sweepDestinations } from "../src/outbox";
import { ADMIN_TOKEN, callWorker, freshId } from "./fixtures";
import { stubDestinations } from "./fanout-fixtures";
import { meterD1, zeroCost } from "./meter";

afterEach(() => {
  vi.restoreAllMocks();
});

/** A Queue producer that counts its calls. */
function countingQueue(queue: Queue, counter: { calls: number }): Queue {
  return {
    send: (body, options) => {
      counter.calls += 1;
      return queue.send(body, options);
    },
    sendBatch: (messages, options) => {
      counter.calls += 1;
      return queue.sendBatch(messages, options);
    },
  } as Queue;
}

const OLD = "2020-01-01T00:00:00.000Z";
/** The subrequests of one invocation on the free plan. */
const INVOCATION_LIMIT = 50;

/** `n` pending deliveries to `destination` (of alerts that need not exist: only their keys are sent). */
async function pending(destination: string, n: number) {
  await env.DB.prepare(
    `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2)
     INSERT INTO deliveries (alert_id, destination, status, attempts, updated_at) SELECT ?1 || '-a-' || i, ?1, 'pending', 0, ?3 FROM seq`,
  )
    .bind(destination, n, OLD)
    .run();
}

const BUSY = "busy";

beforeAll(async () => {
  // 15 destinations paused whose pause has run out (each would get a probe), and 15 part-way
  // through a resume of 150 waiting deliveries each.
  for (let i = 0; i < 15; i++) {
    await pending(`${BUSY}-paused-${i}`, 3);
    await env.DB.prepare("UPDATE destination_health SET state = 'paused', consecutive_failures = 10, paused_until = ?2 WHERE destination = ?1").bind(`${BUSY}-paused-${i}`, OLD).run();
    await pending(`${BUSY}-resuming-${i}`, 150);
    await env.DB.prepare(`UPDATE destination_health SET resume_after = '["",""]' WHERE destination = ?1`).bind(`${BUSY}-resuming-${i}`).run();
  }
});

beforeEach(async () => {
  // The busy destinations stay busy for every test: a cron tick run by an earlier one moved their resumes on.
  await env.DB.prepare(`UPDATE destination_health SET resume_after = '["",""]' WHERE destination LIKE ?1`).bind(`${BUSY}-resuming-%`).run();
});

/** Runs `request` against a Worker whose D1 and Queue count their calls; answers the subrequests. */
async function measured(request: (environment: Env) => Promise<Response>): Promise<{ res: Response; subrequests: number; sends: number }> {
  const cost = zeroCost();
  const queue = { calls: 0 };
  const environment: Env = { ...env, ADMIN_TOKEN, DESTINATIONS: "", DB: meterD1(env.DB, cost), ALERTS_QUEUE: countingQueue(env.ALERTS_QUEUE, queue) };
  const res = await request(environment);
  return { res, subrequests: cost.calls + queue.calls, sends: queue.calls };
}

async function putDestination(name: string, enabled: boolean) {
  const res = await callWorker(
    `/api/destinations/${name}`,
    { method: "PUT", headers: { "content-type": "application/json" }, body: JSON.stringify({ url: `https://${name}.budget.test/hook`, enabled }) },
    { ...env, ADMIN_TOKEN, DESTINATIONS: "" },
  );
  expect([200, 201]).toContain(res.status);
}

async function resumeCursor(name: string): Promise<string | null> {
  const row = await env.DB.prepare("SELECT resume_after FROM destination_health WHERE destination = ?1").bind(name).first<{ resume_after: string | null }>();
  return row?.resume_after ?? null;
}

/** Cron ticks until the destination's resume is done; answers how many ticks it took. */
async function cronFinishes(name: string): Promise<number> {
  for (let tick = 1; tick <= 50; tick++) {
    await sweepDestinations({ db: env.DB, queue: env.ALERTS_QUEUE, now: new Date() });
    if ((await resumeCursor(name)) === null) return tick;
  }
  throw new Error("the cron never finished the resume");
}

describe("subrequests of one request", () => {
  it("PATCH enabled:true with 3,000 waiting and 30 other destinations busy: at most 50, the first pages sent, the rest left to the cron", async () => {
    stubDestinations();
    const name = freshId("enable");
    await putDestination(name, false);
    await pending(name, 3_000);
    const { res, subrequests, sends } = await measured((e) =>
      callWorker(`/api/destinations/${name}`, { method: "PATCH", headers: { "content-type": "application/json" }, body: JSON.stringify({ enabled: true }) }, e),
    );
    expect(res.status).toBe(200);
    expect(subrequests).toBeLessThanOrEqual(INVOCATION_LIMIT);
    expect(sends).toBeGreaterThan(0);
    expect(await resumeCursor(name)).not.toBeNull();
    expect(await cronFinishes(name)).toBeGreaterThan(0);
  });

  it("Resume now (API) with 30 other destinations busy: at most 50, the rest left to the cron", async () => {
    stubDestinations();
    const name = freshId("resume");
    await putDestination(name, true);
    await pending(name, 3_000);
    await env.DB.prepare("UPDATE destination_health SET state = 'paused', consecutive_failures = 10, paused_until = ?2 WHERE destination = ?1").bind(name, OLD).run();
    const { res, subrequests, sends } = await measured((e) => callWorker(`/api/destinations/${name}/resume`, { method: "POST" }, e));
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, resumed: true });
    expect(subrequests).toBeLessThanOrEqual(INVOCATION_LIMIT);
    expect(sends).toBeGreaterThan(0);
    expect(await resumeCursor(name)).not.toBeNull();
    expect(await cronFinishes(name)).toBeGreaterThan(0);
  });

  it("Resume now and enable on the dashboard: at most 50 each", async () => {
    stubDestinations();
    const login = await callWorker(
      "/dashboard/login",
      { token: null, method: "POST", headers: { origin: "https://worker.test", "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token: ADMIN_TOKEN }).toString() },
      { ...env, ADMIN_TOKEN, DESTINATIONS: "" },
    );
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const form = { token: null, method: "POST", headers: { origin: "https://worker.test", cookie } };

    const paused = freshId("dash-resume");
    await putDestination(paused, true);
    await pending(paused, 500);
    await env.DB.prepare("UPDATE destination_health SET state = 'paused', consecutive_failures = 10, paused_until = ?2 WHERE destination = ?1").bind(paused, OLD).run();
    const resumed = await measured((e) => callWorker(`/dashboard/destinations/${paused}/resume`, form, e));
    expect(resumed.res.status).toBe(303);
    expect(resumed.subrequests).toBeLessThanOrEqual(INVOCATION_LIMIT);

    const disabled = freshId("dash-enable");
    await putDestination(disabled, false);
    await pending(disabled, 500);
    const enabled = await measured((e) => callWorker(`/dashboard/destinations/${disabled}/enable`, form, e));
    expect(enabled.res.status).toBe(303);
    expect(enabled.subrequests).toBeLessThanOrEqual(INVOCATION_LIMIT);
  });
});
