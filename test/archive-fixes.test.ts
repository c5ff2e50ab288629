/**
 * Issue 25's archive paths: a spool redelivery after the archive took its response (path 1),
 * a commit that succeeded but reported an error (path 2), erasure without the ARCHIVE binding
 * (path 13) and within a request's subrequests (path 8); and the audit's missing tests: a
 * backlog of more days than a tick writes, an R2 delete that fails during erasure, two ticks
 * at once.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpoolMessage } from "../src/alert";
import { type ArchiveTickResult, archiveTick, eraseUserFromArchive, PART_COMMIT_GRACE_IN_MINUTES } from "../src/archive/archive";
import { readParquet } from "../src/archive/parquet";
import { runArchiveCron } from "../src/cron";
import type { Env } from "../src/env";
import { sha256Hex } from "../src/hash";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId, post, storedRow } from "./fixtures";
import { bucket, objectKeys, objectsNaming } from "./archive-fixtures";
import { runQueue, stubDestinations } from "./fanout-fixtures";
import { meterD1, zeroCost } from "./meter";

afterEach(() => {
  vi.restoreAllMocks();
});


const inHours = (hours: number) => new Date(Date.now() + hours * 3_600_000);
const afterGrace = (from: Date) => new Date(from.getTime() + (PART_COMMIT_GRACE_IN_MINUTES + 1) * 60_000);

async function tick(now: Date, over: Partial<Parameters<typeof archiveTick>[0]> = {}): Promise<ArchiveTickResult> {
  return archiveTick({ db: env.DB, bucket: bucket(), now, delay_minutes: 60, rows_per_tick: 500, ...over });
}

async function archiveAll(now: Date): Promise<void> {
  for (let i = 0; i < 20; i++) if (!(await tick(now)).more) return;
  throw new Error("the archive did not catch up in 20 ticks");
}

/** The manifest, straight from D1 (every live part). */
async function listed(): Promise<{ key: string; table: string; date: string }[]> {
  const { results } = await env.DB.prepare("SELECT key, table_name AS \"table\", date FROM archive_parts ORDER BY id").all<{ key: string; table: string; date: string }>();
  return results;
}


/** How many rows of every listed responses part name each alert; a listed key missing from R2 fails. */
async function timesListed(alert_ids: string[]): Promise<Record<string, number>> {
  const counts = Object.fromEntries(alert_ids.map((id) => [id, 0]));
  for (const part of (await listed()).filter((p) => p.table === "responses")) {
    const object = await bucket().get(part.key);
    if (object === null) throw new Error(`listed part ${part.key} is not in R2`);
    for (const row of await readParquet("responses", await object.arrayBuffer())) if (row.alert_id in counts) counts[row.alert_id] = (counts[row.alert_id] ?? 0) + 1;
  }
  return counts;
}

const once = (alert_ids: string[]) => Object.fromEntries(alert_ids.map((id) => [id, 1]));


/** An R2 bucket that counts its operations (each a subrequest), and can make one method reject. */
function countingBucket(counter: { calls: number }, failing?: "delete" | "put"): R2Bucket {
  return new Proxy(bucket(), {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (typeof value !== "function") return value;
      return (...args: unknown[]) => {
        if (["put", "get", "delete", "list", "head"].includes(String(prop))) counter.calls += 1;
        if (prop === failing) return Promise.reject(new Error(`R2 ${String(prop)} failed (injected)`));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
}

/**
 * A D1 whose batches holding `fragment` commit and then report an error (the first `times`
 * of them): the caller sees a failure although the transaction happened.
 */
function committingThenFailing(db: D1Database, fragment: string, times = 1): { db: D1Database; hit: () => number } {
  const marked = new WeakSet<D1PreparedStatement>();
  let hit = 0;
  const mark = (statement: D1PreparedStatement): D1PreparedStatement => {
    const bind = statement.bind.bind(statement);
    statement.bind = (...values: unknown[]) => mark(bind(...values));
    marked.add(statement);
    return statement;
  };
  const proxy = new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => (sql.includes(fragment) ? mark(target.prepare(sql)) : target.prepare(sql));
      if (prop === "batch") {
        return async (statements: D1PreparedStatement[]) => {
          const results = await target.batch(statements);
          if (hit < times && statements.some((s) => marked.has(s))) {
            hit += 1;
            throw new Error("D1_ERROR: Network connection lost (after the commit)");
          }
          return results;
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
  return { db: proxy, hit: () => hit };
}

/** A D1 whose batch with `fragment` rejects before it reaches D1 (nothing of it committed). */
function failingBefore(db: D1Database, fragment: string): D1Database {
  const marked = new WeakSet<D1PreparedStatement>();
  const mark = (statement: D1PreparedStatement): D1PreparedStatement => {
    const bind = statement.bind.bind(statement);
    statement.bind = (...values: unknown[]) => mark(bind(...values));
    marked.add(statement);
    return statement;
  };
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => (sql.includes(fragment) ? mark(target.prepare(sql)) : target.prepare(sql));
      if (prop === "batch") {
        return async (statements: D1PreparedStatement[]) => {
          if (statements.some((s) => marked.has(s))) throw new Error("D1_ERROR: Network connection lost (before the commit)");
          return target.batch(statements);
        };
      }
      const value = Reflect.get(target, prop, target) as unknown;
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

describe("an archive tick over a backlog", () => {
  // First in the file: the archive has nothing yet.
  it("of 22 days stays within 45 subrequests (R2 counted), lists 16 days, and finishes on the next tick", async () => {
    const days = Array.from({ length: 22 }, (_, i) => `2025-01-${String(i + 1).padStart(2, "0")}`);
    const payloads = days.map((day) => examplePayload({ timestamp: `${day}T10:00:00.000Z` }));
    for (const p of payloads) expect((await post(p)).status).toBe(200);
    const run = async () => {
      const cost = zeroCost();
      const r2 = { calls: 0 };
      const result = await runArchiveCron({ ...env, DB: meterD1(env.DB, cost), ARCHIVE: countingBucket(r2) } as Env, inHours(2));
      return { result, subrequests: cost.calls + r2.calls, puts: r2.calls };
    };
    const first = await run();
    expect(first.result).toMatchObject({ responses: 16, more: true });
    expect(first.subrequests).toBeLessThanOrEqual(45);
    expect(first.puts).toBe(32);
    expect(new Set((await listed()).map((p) => p.date))).toEqual(new Set(days.slice(0, 16)));
    const second = await run();
    expect(second.result).toMatchObject({ responses: 6, more: false });
    expect(second.subrequests).toBeLessThanOrEqual(45);
    expect(new Set((await listed()).map((p) => p.date))).toEqual(new Set(days));
    expect(await timesListed(payloads.map((p) => p.alert_id))).toEqual(once(payloads.map((p) => p.alert_id)));
  });
});

describe("path 1: a spool redelivery after the archive took its response", () => {
  async function spooled(timestamp: string) {
    const body = JSON.stringify(examplePayload({ timestamp }));
    const alert_id = (JSON.parse(body) as { alert_id: string }).alert_id;
    const spool: SpoolMessage = { v: 1, kind: "spool", body, received_at: timestamp, sha256: await sha256Hex(body) };
    return { alert_id, message: () => ({ id: freshId("spool"), timestamp: new Date(), attempts: 1, body: spool }) };
  }
  const lateRows = (alert_id: string) => env.DB.prepare("SELECT COUNT(*) AS n FROM archive_late WHERE alert_id = ?").bind(alert_id).first<number>("n");

  it("is never marked late, and every later tick goes on", async () => {
    await archiveAll(inHours(2));
    const host = freshId("spool-503").toLowerCase();
    const ENV: Env = { ...env, DESTINATIONS: JSON.stringify([{ name: host, url: `https://${host}.test/hook` }]), RETRY_BASE_SECONDS: "1" };
    const { alert_id, message } = await spooled("2026-02-10T10:00:00.000Z");
    // Stored from the spool; the destination's 503 makes the message come back later.
    stubDestinations({ [`${host}.test`]: () => new Response("busy", { status: 503 }) });
    const first = await runQueue("oneflow-alerts", [message()], ENV);
    expect(first.retryMessages).toHaveLength(1);
    await storedRow(alert_id);
    await archiveAll(inHours(2));
    expect(await timesListed([alert_id])).toEqual(once([alert_id]));

    // The redelivery: the spool body again, a duplicate of an archived response.
    vi.restoreAllMocks();
    stubDestinations();
    const again = await runQueue("oneflow-alerts", [message()], ENV);
    expect(again.explicitAcks).toHaveLength(1);
    expect(await lateRows(alert_id)).toBe(0);

    // The archive goes on: ticks succeed, and a response stored afterwards is archived.
    const next = examplePayload({ timestamp: "2026-02-11T10:00:00.000Z" });
    await post(next);
    await archiveAll(inHours(3));
    expect(await timesListed([alert_id, next.alert_id])).toEqual(once([alert_id, next.alert_id]));
  });

  it("noted late while a tick was archiving it: the late pass drops it instead of archiving it again", async () => {
    await archiveAll(inHours(2));
    const { alert_id, message } = await spooled("2026-02-12T10:00:00.000Z");
    const ENV: Env = { ...env, DESTINATIONS: "" };
    await runQueue("oneflow-alerts", [message()], ENV);
    // The redelivery lands between the tick's read and its commit (during its put).
    let raced = false;
    const racing = new Proxy(bucket(), {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === "put" && typeof value === "function") {
          return async (...args: unknown[]) => {
            if (!raced) {
              raced = true;
              // The mark of this tick (+ 2 h - 1 h) is past the body's submission: the duplicate would be late.
              await runQueue("oneflow-alerts", [message()], ENV);
            }
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    await tick(inHours(2), { bucket: racing });
    expect(raced).toBe(true);
    // Whether or not the race left a late row, the next ticks go on and take it nowhere twice.
    for (const at of [inHours(3), inHours(4)]) await expect(tick(at)).resolves.toBeDefined();
    expect(await lateRows(alert_id)).toBe(0);
    expect(await timesListed([alert_id])).toEqual(once([alert_id]));
  });

  it("a late row left by 0.4.0 for an archived response is dropped, and the archive is unwedged", async () => {
    await archiveAll(inHours(2));
    const p = examplePayload({ timestamp: "2026-02-13T10:00:00.000Z" });
    await post(p);
    await archiveAll(inHours(2));
    await env.DB.prepare("INSERT INTO archive_late (alert_id, stored_at) VALUES (?, ?)").bind(p.alert_id, new Date().toISOString()).run();
    await expect(tick(inHours(2))).resolves.toBeDefined();
    expect(await lateRows(p.alert_id)).toBe(0);
    expect(await timesListed([p.alert_id])).toEqual(once([p.alert_id]));
  });
});

describe("path 2: a commit that succeeded but reported an error", () => {
  it("deletes nothing: each response in exactly one listed part, every listed key in R2; the garbage step removes only unlisted leftovers", async () => {
    await archiveAll(inHours(2));
    const payloads = ["2026-02-20", "2026-02-21"].map((day) => examplePayload({ timestamp: `${day}T10:00:00.000Z` }));
    for (const p of payloads) await post(p);
    const ids = payloads.map((p) => p.alert_id);
    const faulty = committingThenFailing(env.DB, "INSERT INTO archived_alerts");
    await expect(tick(inHours(2), { db: faulty.db })).rejects.toThrow("after the commit");
    expect(faulty.hit()).toBe(1);
    expect(await timesListed(ids)).toEqual(once(ids));
    // Later ticks, past the garbage delay, keep every listed part and leave nothing else.
    await archiveAll(inHours(2));
    await tick(afterGrace(inHours(2)));
    expect(await timesListed(ids)).toEqual(once(ids));
    expect(await objectKeys()).toEqual((await listed()).map((p) => p.key).sort());
  });
});

describe("two archive ticks at once", () => {
  it("each response ends in exactly one listed part, and no unlisted object outlives the garbage delay", async () => {
    await archiveAll(inHours(2));
    const payloads = ["2026-02-24", "2026-02-25", "2026-02-26"].map((day) => examplePayload({ timestamp: `${day}T10:00:00.000Z` }));
    for (const p of payloads) await post(p);
    const ids = payloads.map((p) => p.alert_id);
    const outcomes = await Promise.allSettled([tick(inHours(2)), tick(inHours(2))]);
    expect(outcomes.some((o) => o.status === "fulfilled")).toBe(true);
    await archiveAll(inHours(2));
    expect(await timesListed(ids)).toEqual(once(ids));
    await tick(afterGrace(inHours(2)));
    expect(await objectKeys()).toEqual((await listed()).map((p) => p.key).sort());
  });
});

describe("erasure and the archive", () => {
  async function archivedUser(days: string[]) {
    const user = freshId("user");
    const payloads = days.map((day) => examplePayload({ timestamp: `${day}T10:00:00.000Z`, user: { user_system_id: user, user_parameters: {} } }));
    const others = days.map((day) => examplePayload({ timestamp: `${day}T11:00:00.000Z` }));
    for (const p of [...payloads, ...others]) await post(p);
    await archiveAll(inHours(2));
    expect(await objectsNaming(user)).not.toEqual([]);
    return { user, payloads, others };
  }
  const erase = async (user: string, environment: Env = { ...env, ADMIN_TOKEN }) =>
    (await (await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" }, environment)).json()) as {
      ok: boolean;
      erased: { alerts: number; archive_parts: number };
      more: boolean;
    };

  it("path 13: with parts listed and no ARCHIVE binding, it does not report itself complete", async () => {
    const { user } = await archivedUser(["2026-03-10"]);
    const unbound = await erase(user, { ...env, ADMIN_TOKEN, ARCHIVE: undefined } as Env);
    expect(unbound).toMatchObject({ ok: true, more: true });
    expect(await erase(user, { ...env, ADMIN_TOKEN, ARCHIVE: undefined } as Env)).toMatchObject({ more: true });
    // Bound again: the parts are rewritten, and only then is it complete.
    let answer = await erase(user);
    for (let i = 0; i < 5 && answer.more; i++) answer = await erase(user);
    expect(answer.more).toBe(false);
    expect(await objectsNaming(user)).toEqual([]);
  });

  it("the R2 delete of a replaced part fails: the user is in no listed part, more stays true until the old object is gone", async () => {
    const { user, others } = await archivedUser(["2026-03-12"]);
    const r2 = { calls: 0 };
    const noDelete = { ...env, ADMIN_TOKEN, ARCHIVE: countingBucket(r2, "delete") } as Env;
    const first = await erase(user, noDelete);
    expect(first.ok).toBe(true);
    expect(first.more).toBe(true);
    // Nothing listed holds them; the replaced objects wait in R2 for the garbage step.
    for (const part of (await listed()).filter((p) => p.table === "responses")) {
      const object = await bucket().get(part.key);
      expect(JSON.stringify(await readParquet("responses", await (object as R2ObjectBody).arrayBuffer()))).not.toContain(user);
    }
    expect(await objectsNaming(user)).not.toEqual([]);
    let answer = await erase(user);
    for (let i = 0; i < 5 && answer.more; i++) answer = await erase(user);
    expect(answer.more).toBe(false);
    expect(await objectsNaming(user)).toEqual([]);
    expect(await timesListed(others.map((p) => p.alert_id))).toEqual(once(others.map((p) => p.alert_id)));
  });

  it("a tick whose commit failed left unlisted objects holding the user: the erasure deletes them, not the garbage step 30 minutes later", async () => {
    await archiveAll(inHours(2));
    const user = freshId("user");
    const mine = examplePayload({ timestamp: "2026-03-16T10:00:00.000Z", user: { user_system_id: user, user_parameters: {} } });
    const other = examplePayload({ timestamp: "2026-03-16T11:00:00.000Z" });
    for (const p of [mine, other]) await post(p);
    // The tick runs now (no delay), before the erasure: its parts were noted before the erasure began.
    await expect(tick(new Date(), { db: failingBefore(env.DB, "INSERT INTO archived_alerts"), delay_minutes: 0 })).rejects.toThrow("before the commit");
    // The tick's objects are in R2, unlisted, noted as garbage due in 30 minutes.
    expect(await objectsNaming(user)).not.toEqual([]);
    const answer = await erase(user);
    expect(answer).toMatchObject({ ok: true, more: false });
    expect(await objectsNaming(user)).toEqual([]);
    // The other response is archived by the next tick, once, in a listed part.
    await archiveAll(inHours(2));
    expect(await timesListed([other.alert_id])).toEqual(once([other.alert_id]));
    expect(await objectKeys()).toEqual(expect.arrayContaining((await listed()).map((p) => p.key)));
  });

  it("a rewrite whose commit never came (D1 failed) left an unlisted object holding another user: that user's erasure is not complete until it is gone", async () => {
    await archiveAll(inHours(2));
    const [a, b] = [freshId("user-a"), freshId("user-b")];
    const day = "2026-03-18";
    for (const [user, hour] of [[a, 10], [b, 11]] as const) await post(examplePayload({ timestamp: `${day}T${hour}:00:00.000Z`, user: { user_system_id: user, user_parameters: {} } }));
    await archiveAll(inHours(2));
    // A's rewrite of the day's parts: the new objects are written, their commit fails before D1 (nothing listed).
    const now = new Date();
    await expect(eraseUserFromArchive({ db: failingBefore(env.DB, "UPDATE archive_parts SET key = ?2"), bucket: bucket(), user_system_id: a, now, max_parts: 4 })).rejects.toThrow("before the commit");
    const listedKeys = new Set((await listed()).map((p) => p.key));
    expect((await objectsNaming(b)).filter((key) => !listedKeys.has(key))).not.toEqual([]);
    // B's erasure: while an object that may hold B waits for its commit's grace, it answers more.
    const answer = await erase(b);
    expect(answer).toMatchObject({ ok: true, more: true });
    // Past the grace, the garbage step deletes it, and B's erasure is complete with nothing of B left.
    await eraseUserFromArchive({ db: env.DB, bucket: bucket(), user_system_id: b, now: afterGrace(now), max_parts: 4 });
    expect(await objectsNaming(b)).toEqual([]);
    expect((await eraseUserFromArchive({ db: env.DB, bucket: bucket(), user_system_id: b, now: afterGrace(now), max_parts: 4 })).more).toBe(false);
  });

  it("an erasure leaves alone the parts a tick noted after it began (they may hold a response of the user submitted since)", async () => {
    await archiveAll(inHours(2));
    const user = freshId("user");
    const began = new Date();
    await post(examplePayload({ timestamp: new Date(began.getTime() + 1_000).toISOString(), user: { user_system_id: user, user_parameters: {} } }));
    // A tick a minute after the erasure began, whose commit fails: its parts stay unlisted.
    await expect(tick(new Date(began.getTime() + 60_000), { db: failingBefore(env.DB, "INSERT INTO archived_alerts"), delay_minutes: 0 })).rejects.toThrow("before the commit");
    const noted = await objectsNaming(user);
    expect(noted).not.toEqual([]);
    await eraseUserFromArchive({ db: env.DB, bucket: bucket(), user_system_id: user, now: began, max_parts: 4 });
    expect(await objectsNaming(user)).toEqual(noted);
    await archiveAll(inHours(2));
    await tick(afterGrace(inHours(2)));
  });

  it("path 8: a user with 1,950 responses and archived parts: every call within 45 subrequests (D1 calls and R2 operations), until done", async () => {
    const { user } = await archivedUser(["2026-03-14", "2026-03-15"]);
    const user_sha256 = await sha256Hex(user);
    await env.DB.prepare(
      `WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 1950)
       INSERT INTO alerts (alert_id, alert_name, survey_id, submitted_at, received_at, payload, payload_sha256, user_system_id, user_sha256)
       SELECT ?1 || '-' || i, 'a', 's', '2026-03-16T00:00:00.000Z', '2026-03-16T00:00:00.000Z', '{}', 'x', ?2, ?3 FROM seq`,
    )
      .bind(freshId("bulk"), user, user_sha256)
      .run();
    const calls: { subrequests: number; more: boolean; alerts: number; parts: number }[] = [];
    for (let i = 0; i < 10 && calls.at(-1)?.more !== false; i++) {
      const cost = zeroCost();
      const r2 = { calls: 0 };
      const answer = await erase(user, { ...env, ADMIN_TOKEN, DB: meterD1(env.DB, cost), ARCHIVE: countingBucket(r2) } as Env);
      calls.push({ subrequests: cost.calls + r2.calls, more: answer.more, alerts: answer.erased.alerts, parts: answer.erased.archive_parts });
    }
    expect(calls.at(-1)?.more).toBe(false);
    for (const call of calls) expect(call.subrequests).toBeLessThanOrEqual(45);
    expect(calls.reduce((n, c) => n + c.alerts, 0)).toBe(1952);
    expect(calls.reduce((n, c) => n + c.parts, 0)).toBe(4);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts WHERE user_system_id = ?").bind(user).first<number>("n")).toBe(0);
    expect(await objectsNaming(user)).toEqual([]);
  });
});
