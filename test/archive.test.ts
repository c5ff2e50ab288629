/**
 * The Parquet archive in R2: every stored response in exactly one listed part, with its
 * columns as D1 holds them; late and spooled responses too; faults at the R2 put and at the
 * D1 commit; erasure rewriting the parts; retention deleting only what is archived.
 * The parts are read back with hyparquet here; test/node/archive-duckdb.test.ts reads them
 * with DuckDB.
 */
import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { parquetMetadata } from "hyparquet";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpoolMessage } from "../src/alert";
import { type ArchiveTickResult, archiveTick, eraseUserFromArchive, PART_COMMIT_GRACE_IN_MINUTES } from "../src/archive/archive";
import { type AnswerRow, type ArchiveTable, readParquet, type ResponseRow } from "../src/archive/parquet";
import type { Env } from "../src/env";
import { sha256Hex } from "../src/hash";
import worker from "../src/index";
import { ARCHIVE_CRON } from "../src/schedules";
import { alertRow, answerRows, callWorker, examplePayload, freshId, post, storedRow } from "./fixtures";
import { bucket, objectKeys, objectsNaming } from "./archive-fixtures";
import { failBatchesWith, runQueue } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});


/** Hours from now: ticks run in the future so that ARCHIVE_DELAY_MINUTES (60) has passed. */
const inHours = (hours: number) => new Date(Date.now() + hours * 3_600_000);

async function tick(now: Date, over: Partial<Parameters<typeof archiveTick>[0]> = {}): Promise<ArchiveTickResult> {
  return archiveTick({ db: env.DB, bucket: bucket(), now, delay_minutes: 60, rows_per_tick: 500, ...over });
}

/** Ticks until nothing more is waiting. */
async function archiveAll(now: Date): Promise<void> {
  for (let i = 0; i < 20; i++) if (!(await tick(now)).more) return;
  throw new Error("the archive did not catch up in 20 ticks");
}

interface ListedFile {
  key: string;
  table: ArchiveTable;
  date: string;
  rows: number;
  bytes: number;
  created_at: string;
}

/** Every page of GET /api/archive. */
async function manifest(limit?: number): Promise<{ files: ListedFile[]; archived_through: string | null; pages: number }> {
  const files: ListedFile[] = [];
  let cursor: string | null = null;
  let archived_through: string | null = null;
  let pages = 0;
  do {
    const query = new URLSearchParams();
    if (cursor !== null) query.set("cursor", cursor);
    if (limit !== undefined) query.set("limit", String(limit));
    const res = await callWorker(`/api/archive?${query}`);
    expect(res.status).toBe(200);
    const page = (await res.json()) as { files: ListedFile[]; next_cursor: string | null; archived_through: string | null };
    files.push(...page.files);
    cursor = page.next_cursor;
    archived_through = page.archived_through;
    pages++;
  } while (cursor !== null);
  return { files, archived_through, pages };
}

/** The rows of every listed part of a table, each with the key of its part. */
async function listedRows(table: "responses"): Promise<(ResponseRow & { key: string })[]>;
async function listedRows(table: "answers"): Promise<(AnswerRow & { key: string })[]>;
async function listedRows(table: ArchiveTable): Promise<((ResponseRow | AnswerRow) & { key: string })[]> {
  const rows: ((ResponseRow | AnswerRow) & { key: string })[] = [];
  for (const file of (await manifest()).files.filter((f) => f.table === table)) {
    const object = await bucket().get(file.key);
    if (object === null) throw new Error(`listed part ${file.key} is not in R2`);
    const bytes = await object.arrayBuffer();
    const read = table === "responses" ? await readParquet("responses", bytes) : await readParquet("answers", bytes);
    expect(read).toHaveLength(file.rows);
    expect(bytes.byteLength).toBe(file.bytes);
    rows.push(...read.map((r) => ({ ...r, key: file.key })));
  }
  return rows;
}


/** How many listed responses rows each of these alerts has. */
async function timesListed(alert_ids: string[]): Promise<Record<string, number>> {
  const rows = await listedRows("responses");
  return Object.fromEntries(alert_ids.map((id) => [id, rows.filter((r) => r.alert_id === id).length]));
}

const once = (alert_ids: string[]) => Object.fromEntries(alert_ids.map((id) => [id, 1]));

/** A bucket whose `method` rejects on the calls `failing` names (1-based); the rest go through. */
function faultyBucket(method: "put" | "delete", failing: (call: number) => boolean): { bucket: R2Bucket; calls: () => number } {
  let calls = 0;
  const real = bucket();
  const proxy = new Proxy(real, {
    get(target, prop) {
      const value = Reflect.get(target, prop, target) as unknown;
      if (prop !== method || typeof value !== "function") return typeof value === "function" ? value.bind(target) : value;
      return (...args: unknown[]) => {
        calls++;
        if (failing(calls)) return Promise.reject(new Error(`R2 ${method} failed (injected)`));
        return (value as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  });
  return { bucket: proxy, calls: () => calls };
}

/** Responses on four different days, two of them of one user, with varied answers. */
async function fourDays(user = freshId("user")) {
  const payloads = [
    examplePayload({ timestamp: "2026-03-01T08:15:00.123Z", user: { user_system_id: user, user_parameters: { plan: "pro" } } }),
    examplePayload({ timestamp: "2026-03-02T23:59:59.999Z" }),
    examplePayload({ timestamp: "2026-03-03T00:00:00.000Z", user: { user_system_id: user, user_parameters: {} } }),
    examplePayload({ timestamp: "2026-03-04T12:00:00.000Z" }),
  ];
  for (const p of payloads) expect((await post(p)).status).toBe(200);
  return { user, payloads, ids: payloads.map((p) => p.alert_id) };
}

describe("the archive tick", () => {
  it("writes each response once, in the part of its UTC day, with every column as D1 holds it", async () => {
    const { payloads, ids } = await fourDays();
    await archiveAll(inHours(2));

    const responses = await listedRows("responses");
    expect(await timesListed(ids)).toEqual(once(ids));
    for (const p of payloads) {
      const stored = await storedRow(p.alert_id);
      const row = responses.find((r) => r.alert_id === p.alert_id);
      expect(row?.key).toMatch(new RegExp(`^responses/date=${stored.submitted_at.slice(0, 10)}/[^/]+\\.parquet$`));
      const answers = await answerRows(p.alert_id);
      const nps = answers.find((a) => a.type === "nps")?.value ?? null;
      expect({ ...row, key: undefined }).toEqual({
        key: undefined,
        alert_id: stored.alert_id,
        alert_name: stored.alert_name,
        project_name: stored.project_name,
        survey_id: stored.survey_id,
        survey_name: stored.survey_name,
        platform: stored.platform,
        user_system_id: stored.user_system_id,
        user_parameters: stored.user_parameters,
        trigger_event_name: stored.trigger_event_name,
        trigger_event_parameters: stored.trigger_event_parameters,
        submitted_at: stored.submitted_at,
        received_at: stored.received_at,
        nps,
        payload: JSON.stringify(p),
      });
      const archivedAnswers = (await listedRows("answers")).filter((a) => a.alert_id === p.alert_id).sort((a, b) => a.position - b.position);
      expect(archivedAnswers.length).toBeGreaterThan(0);
      expect(archivedAnswers.map(({ key, ...a }) => a)).toEqual(
        answers.map((a) => ({ alert_id: a.alert_id, survey_id: stored.survey_id, submitted_at: stored.submitted_at, position: a.position, title: a.title, type: a.type, answer: a.answer, value: a.value })),
      );
      expect(new Set(archivedAnswers.map((a) => a.key)).size).toBe(1);
      expect(archivedAnswers[0]?.key).toMatch(new RegExp(`^answers/date=${stored.submitted_at.slice(0, 10)}/`));
    }
    // The manifest lists every object in the bucket, and nothing else.
    expect(await objectKeys()).toEqual((await manifest()).files.map((f) => f.key).sort());
  });

  it("types the columns: TIMESTAMP (milliseconds, UTC), INTEGER and DOUBLE, not strings", async () => {
    await fourDays();
    await archiveAll(inHours(2));
    const files = (await manifest()).files;
    const types = async (table: ArchiveTable) => {
      const file = files.find((f) => f.table === table);
      const object = file && (await bucket().get(file.key));
      if (!object) throw new Error(`no ${table} part`);
      const meta = parquetMetadata(await object.arrayBuffer());
      return Object.fromEntries(meta.schema.slice(1).map((s) => [s.name, `${s.type}${s.converted_type ? `/${s.converted_type}` : ""}`]));
    };
    expect(await types("responses")).toMatchObject({
      submitted_at: "INT64/TIMESTAMP_MILLIS",
      received_at: "INT64/TIMESTAMP_MILLIS",
      nps: "INT32",
      payload: "BYTE_ARRAY/UTF8",
      user_parameters: "BYTE_ARRAY/UTF8",
    });
    expect(await types("answers")).toMatchObject({ submitted_at: "INT64/TIMESTAMP_MILLIS", position: "INT32", value: "DOUBLE", answer: "BYTE_ARRAY/UTF8" });
  });

  it("waits ARCHIVE_DELAY_MINUTES after a response was stored", async () => {
    const p = examplePayload({ timestamp: new Date().toISOString() });
    await post(p);
    await archiveAll(new Date(Date.now() + 30 * 60_000));
    expect(await timesListed([p.alert_id])).toEqual({ [p.alert_id]: 0 });
    await archiveAll(new Date(Date.now() + 61 * 60_000));
    expect(await timesListed([p.alert_id])).toEqual(once([p.alert_id]));
  });

  it("archives a response stored after the archive passed its day (1Flow's late retry), in a new part of that day, after the delay", async () => {
    const first = examplePayload({ timestamp: "2026-04-10T10:00:00.000Z" });
    await post(first);
    await archiveAll(inHours(2));
    const late = examplePayload({ timestamp: "2026-04-10T09:00:00.000Z" });
    await post(late);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM archive_late WHERE alert_id = ?").bind(late.alert_id).first("n")).toBe(1);
    // Stored just now: it waits its delay like any other.
    await archiveAll(new Date(Date.now() + 30 * 60_000));
    expect(await timesListed([late.alert_id])).toEqual({ [late.alert_id]: 0 });
    await archiveAll(inHours(2));
    const rows = await listedRows("responses");
    expect(await timesListed([first.alert_id, late.alert_id])).toEqual(once([first.alert_id, late.alert_id]));
    const keys = [first, late].map((p) => rows.find((r) => r.alert_id === p.alert_id)?.key);
    expect(keys[0]).toMatch(/^responses\/date=2026-04-10\//);
    expect(keys[1]).toMatch(/^responses\/date=2026-04-10\//);
    expect(keys[0]).not.toBe(keys[1]);
  });

  it("archives a response that 1Flow sent late (received after its submission plus the delay)", async () => {
    // An archive that has not read past its submission yet (a cursor back at the start also
    // shows that reading archived responses again writes none of them twice).
    await env.DB.prepare("UPDATE archive_state SET cursor_submitted_at = '', cursor_alert_id = '', read_through = '' WHERE id = 1").run();
    // Submitted three hours ago, received now.
    const p = examplePayload({ timestamp: new Date(Date.now() - 3 * 3_600_000).toISOString() });
    await post(p);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM archive_late WHERE alert_id = ?").bind(p.alert_id).first("n")).toBe(0);
    // The tick reads past it while it is too recently stored: it waits in archive_late.
    const result = await tick(new Date(Date.now() + 10 * 60_000));
    expect(result.deferred).toBeGreaterThanOrEqual(1);
    expect(await timesListed([p.alert_id])).toEqual({ [p.alert_id]: 0 });
    await archiveAll(inHours(2));
    expect(await timesListed([p.alert_id])).toEqual(once([p.alert_id]));
    const all = await listedRows("responses");
    expect(new Set(all.map((r) => r.alert_id)).size).toBe(all.length);
  });

  it("a response stored while the cursor is part-way through what it marked is archived once, whichever path reaches it first", async () => {
    await archiveAll(inHours(2));
    // After the mark of the ticks so far (now + 1 h), and inside that of a tick at + 3 h.
    const at = (minutes: number) => new Date(Date.now() + minutes * 60_000).toISOString();
    const first = [70, 71, 72, 73].map((m) => examplePayload({ timestamp: at(m) }));
    for (const p of first) await post(p);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM archive_late").first("n")).toBe(0);
    // Two a tick: the cursor stops after the second, the mark is at now + 2 h.
    expect(await tick(inHours(3), { rows_per_tick: 2 })).toMatchObject({ responses: 2, more: true });
    const inside = examplePayload({ timestamp: at(80) });
    await post(inside);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM archive_late WHERE alert_id = ?").bind(inside.alert_id).first("n")).toBe(1);
    // The late path takes it first (with the third range row).
    expect(await tick(inHours(3), { rows_per_tick: 1 })).toMatchObject({ responses: 2 });
    // Another, before it: the next tick's range reads the fourth row, this one (late, not yet
    // archived) and the first (archived by the late path): each is taken by exactly one path.
    const before = examplePayload({ timestamp: at(75) });
    await post(before);
    expect(await tick(inHours(3), { rows_per_tick: 3 })).toMatchObject({ responses: 2 });
    await archiveAll(inHours(3));
    const ids = [...first, inside, before].map((p) => p.alert_id);
    expect(await timesListed(ids)).toEqual(once(ids));
  });

  it("reads only the bodies that fit the tick's bytes (keys first); the rest waits for the next tick", async () => {
    await archiveAll(inHours(2));
    const payloads = [1, 2, 3, 4].map((i) => examplePayload({ timestamp: `2026-09-0${i}T10:00:00.000Z` }));
    for (const p of payloads) await post(p);
    const size = JSON.stringify(payloads[0]).length;
    const ids = payloads.map((p) => p.alert_id);
    // Room for two bodies and a half: two are taken, and the cursor stops before the third.
    const first = await tick(inHours(2), { max_bytes: Math.floor(size * 2.5) });
    expect(first).toMatchObject({ responses: 2, more: true });
    expect(Object.values(await timesListed(ids))).toEqual([1, 1, 0, 0]);
    await archiveAll(inHours(2));
    expect(await timesListed(ids)).toEqual(once(ids));
  });

  it("archives a response stored from the spool (D1 was down when it arrived)", async () => {
    await archiveAll(inHours(2));
    const body = JSON.stringify(examplePayload({ timestamp: "2026-05-01T10:00:00.000Z" }));
    const alert_id = (JSON.parse(body) as { alert_id: string }).alert_id;
    const spool: SpoolMessage = { v: 1, kind: "spool", body, received_at: "2026-05-01T10:00:01.000Z", sha256: await sha256Hex(body) };
    const result = await runQueue("oneflow-alerts", [{ id: freshId("spool"), timestamp: new Date(), attempts: 1, body: spool }], { ...env, DESTINATIONS: "" });
    expect(result.explicitAcks).toHaveLength(1);
    expect((await storedRow(alert_id)).received_at).toBe("2026-05-01T10:00:01.000Z");
    await archiveAll(inHours(2));
    expect(await timesListed([alert_id])).toEqual(once([alert_id]));
    const row = (await listedRows("responses")).find((r) => r.alert_id === alert_id);
    expect(row?.payload).toBe(body);
  });

  it("the R2 put fails, then the D1 commit fails: afterwards each response is in exactly one listed part, and R2 holds only listed parts", async () => {
    await archiveAll(inHours(2));
    const before = (await manifest()).files.length;
    const { ids } = await fourDays();

    // The third put fails: two objects were written, and nothing lists them.
    const put = faultyBucket("put", (n) => n === 3);
    await expect(tick(inHours(2), { bucket: put.bucket })).rejects.toThrow("R2 put failed");
    expect(put.calls()).toBe(3);
    expect((await manifest()).files).toHaveLength(before);
    expect(await timesListed(ids)).toEqual(Object.fromEntries(ids.map((id) => [id, 0])));
    expect(await objectKeys()).toEqual((await manifest()).files.map((f) => f.key).sort());

    // Every put succeeds, then the commit batch fails: nothing listed; after a commit attempt the
    // objects are left to the garbage step (the commit may have happened), which deletes them
    // once their grace has passed.
    const fault = failBatchesWith("INSERT INTO archived_alerts");
    await expect(tick(inHours(2))).rejects.toThrow("disk I/O error");
    expect(fault.hit).toBe(1);
    vi.restoreAllMocks();
    expect((await manifest()).files).toHaveLength(before);

    await archiveAll(inHours(2));
    expect(await timesListed(ids)).toEqual(once(ids));
    await tick(new Date(inHours(2).getTime() + (PART_COMMIT_GRACE_IN_MINUTES + 1) * 60_000));
    expect(await objectKeys()).toEqual((await manifest()).files.map((f) => f.key).sort());
  });

  it("a crash after the puts, before the commit, that cannot delete what it wrote: the leftovers are never listed, and a later tick deletes them", async () => {
    await archiveAll(inHours(2));
    const { ids } = await fourDays();
    failBatchesWith("INSERT INTO archived_alerts");
    const noDelete = faultyBucket("delete", () => true);
    await expect(tick(inHours(2), { bucket: noDelete.bucket })).rejects.toThrow("disk I/O error");
    vi.restoreAllMocks();
    const listed = (await manifest()).files.map((f) => f.key);
    const leftovers = (await objectKeys()).filter((k) => !listed.includes(k));
    expect(leftovers.length).toBeGreaterThanOrEqual(8);

    // The next tick archives them again (new parts); the leftovers wait for their grace.
    await archiveAll(inHours(2));
    expect(await timesListed(ids)).toEqual(once(ids));
    expect((await objectKeys()).filter((k) => leftovers.includes(k))).toEqual(leftovers);
    const later = await tick(new Date(inHours(2).getTime() + (PART_COMMIT_GRACE_IN_MINUTES + 1) * 60_000));
    expect(later.garbage_deleted).toBeGreaterThanOrEqual(leftovers.length);
    expect(await objectKeys()).toEqual((await manifest()).files.map((f) => f.key).sort());
    expect(await timesListed(ids)).toEqual(once(ids));
  });

  it("an erasure between the tick's read and its commit: the commit fails, and the user is in no part", async () => {
    await archiveAll(inHours(2));
    const { user, ids } = await fourDays();
    let erased = false;
    const racing = new Proxy(bucket(), {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === "put" && typeof value === "function") {
          return async (...args: unknown[]) => {
            if (!erased) {
              erased = true;
              const res = await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" });
              expect(await res.json()).toMatchObject({ ok: true, more: false });
            }
            return (value as (...a: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    await expect(tick(inHours(2), { bucket: racing })).rejects.toThrow(/CHECK constraint failed/);
    // The guard refused the commit: nothing committed, so its parts (which hold the erased user)
    // are deleted at once, not left for the garbage step's 30 minutes.
    expect(await objectKeys()).toEqual((await manifest()).files.map((f) => f.key).sort());
    await archiveAll(inHours(2));
    const rows = await listedRows("responses");
    expect(rows.filter((r) => r.user_system_id === user)).toEqual([]);
    const others = ids.filter((_, i) => i === 1 || i === 3);
    expect(await timesListed(others)).toEqual(once(others));
    // The failed commit's objects (unlisted) are deleted by the garbage step after their grace.
    await tick(new Date(inHours(2).getTime() + (PART_COMMIT_GRACE_IN_MINUTES + 1) * 60_000));
    expect(await objectKeys()).toEqual((await manifest()).files.map((f) => f.key).sort());
  });

  it("the cron's archive schedule runs a tick; without the ARCHIVE binding nothing is written", async () => {
    const p = examplePayload({ timestamp: "2026-06-01T10:00:00.000Z" });
    await post(p);
    const keys = await objectKeys();
    await worker.scheduled(createScheduledController({ scheduledTime: inHours(2), cron: ARCHIVE_CRON }), { ...env, ARCHIVE: undefined } as Env);
    expect(await objectKeys()).toEqual(keys);
    expect(await timesListed([p.alert_id])).toEqual({ [p.alert_id]: 0 });
    await worker.scheduled(createScheduledController({ scheduledTime: inHours(2), cron: ARCHIVE_CRON }), env);
    expect(await timesListed([p.alert_id])).toEqual(once([p.alert_id]));
  });

  it("the main schedule ends with an archive tick too (where only it fires), with the subrequests its steps left", async () => {
    const p = examplePayload({ timestamp: "2026-06-02T10:00:00.000Z" });
    await post(p);
    await worker.scheduled(createScheduledController({ scheduledTime: inHours(2), cron: "*/5 * * * *" }), env);
    expect(await timesListed([p.alert_id])).toEqual(once([p.alert_id]));
  });
});

describe("GET /api/archive", () => {
  it("pages through the manifest with next_cursor, every part once; archived_through is the cursor's submission time", async () => {
    await fourDays();
    await archiveAll(inHours(2));
    const whole = await manifest();
    const paged = await manifest(3);
    expect(paged.pages).toBeGreaterThan(1);
    expect(paged.files).toEqual(whole.files);
    expect(new Set(whole.files.map((f) => f.key)).size).toBe(whole.files.length);
    // How far it reaches: the cursor, and every response submitted by then is archived.
    const state = await env.DB.prepare("SELECT cursor_submitted_at AS t FROM archive_state").first<string>("t");
    expect(whole.archived_through).toBe(state);
    const missing = await env.DB.prepare("SELECT COUNT(*) AS n FROM alerts AS a WHERE submitted_at <= ? AND NOT EXISTS (SELECT 1 FROM archived_alerts AS x WHERE x.alert_id = a.alert_id)")
      .bind(whole.archived_through)
      .first<number>("n");
    expect(missing).toBe(0);
    for (const f of whole.files) {
      expect(f.key.startsWith(`${f.table}/date=${f.date}/`)).toBe(true);
      expect(new Date(f.created_at).toISOString()).toBe(f.created_at);
      expect(f.rows).toBeGreaterThan(0);
    }
  });

  it("archived_through is null while the archive has read nothing", async () => {
    const saved = await env.DB.prepare("SELECT cursor_submitted_at AS t, cursor_alert_id AS id FROM archive_state").first<{ t: string; id: string }>();
    await env.DB.prepare("UPDATE archive_state SET cursor_submitted_at = '', cursor_alert_id = ''").run();
    const body = (await (await callWorker("/api/archive")).json()) as { archived_through: string | null };
    await env.DB.prepare("UPDATE archive_state SET cursor_submitted_at = ?1, cursor_alert_id = ?2").bind(saved?.t ?? "", saved?.id ?? "").run();
    expect(body.archived_through).toBeNull();
  });

  it("answers 503 not_configured without the ARCHIVE binding, and 400 for a cursor it never gave", async () => {
    const res = await callWorker("/api/archive", {}, { ...env, ADMIN_TOKEN: "admin-token-for-tests", ARCHIVE: undefined } as Env);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "not_configured" });
    expect((await callWorker("/api/archive?cursor=abc")).status).toBe(400);
  });
});

describe("retention with the archive", () => {
  it("deletes only archived responses; GET /api/alerts/{id} then answers 404 archived with its part, which still holds it", async () => {
    const old = examplePayload({ timestamp: "2020-02-02T10:00:00.000Z" });
    await post(old);
    await env.DB.prepare("UPDATE alerts SET enqueued_at = ?1, fanned_out_at = ?1 WHERE alert_id = ?2").bind("2020-02-02T10:00:00.000Z", old.alert_id).run();
    const retention = { ...env, RETENTION_DAYS: "30" };
    await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: "*/5 * * * *" }), retention);
    expect(await alertRow(old.alert_id)).not.toBeNull();

    await archiveAll(inHours(2));
    await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: "*/5 * * * *" }), retention);
    expect(await alertRow(old.alert_id)).toBeNull();

    const res = await callWorker(`/api/alerts/${old.alert_id}`);
    expect(res.status).toBe(404);
    const body = (await res.json()) as { ok: boolean; error: string; key: string };
    expect(body).toMatchObject({ ok: false, error: "archived" });
    const row = (await listedRows("responses")).find((r) => r.alert_id === old.alert_id);
    expect(row?.key).toBe(body.key);
    expect(row?.payload).toBe(JSON.stringify(old));
    // A response never stored is still plain not_found.
    expect(await (await callWorker(`/api/alerts/${freshId()}`)).json()).toMatchObject({ error: "not_found" });
  });
});

describe("erasure in the archive", () => {
  it("DELETE /api/users/{id} rewrites every part that holds the user (new object, manifest, old object deleted); more until none does", async () => {
    await archiveAll(inHours(2));
    const user = freshId("user");
    const mine = ["2026-07-01", "2026-07-02", "2026-07-03"].map((day) =>
      examplePayload({ timestamp: `${day}T10:00:00.000Z`, user: { user_system_id: user, user_parameters: {} } }),
    );
    const others = ["2026-07-01", "2026-07-02", "2026-07-03"].map((day) => examplePayload({ timestamp: `${day}T11:00:00.000Z` }));
    // A day where the user is alone: that part goes from the manifest altogether.
    const alone = examplePayload({ timestamp: "2026-07-04T10:00:00.000Z", user: { user_system_id: user, user_parameters: {} } });
    for (const p of [...mine, ...others, alone]) await post(p);
    await archiveAll(inHours(2));
    const beforeKeys = (await listedRows("responses")).filter((r) => r.user_system_id === user).map((r) => r.key);
    expect(beforeKeys).toHaveLength(4);

    // 4 responses parts and 4 answers parts hold the user: REWRITES_PER_REQUEST (2) a request,
    // `more` true until the last.
    const calls: { erased: { alerts: number; archive_parts: number }; more: boolean }[] = [];
    for (let i = 0; i < 10 && calls.at(-1)?.more !== false; i++) {
      calls.push((await (await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" })).json()) as (typeof calls)[number]);
    }
    expect(calls.map((a) => [a.erased.alerts, a.erased.archive_parts, a.more])).toEqual([
      [4, 2, true],
      [0, 2, true],
      [0, 2, true],
      [0, 2, false],
    ]);

    const responses = await listedRows("responses");
    const answers = await listedRows("answers");
    const theirs = new Set([...mine, alone].map((p) => p.alert_id));
    expect(responses.filter((r) => r.user_system_id === user || theirs.has(r.alert_id))).toEqual([]);
    expect(answers.filter((a) => theirs.has(a.alert_id))).toEqual([]);
    expect(await timesListed(others.map((p) => p.alert_id))).toEqual(once(others.map((p) => p.alert_id)));
    expect((await manifest()).files.some((f) => f.date === "2026-07-04")).toBe(false);
    // The replaced objects are gone from R2; what is left is what the manifest lists.
    const keys = await objectKeys();
    for (const key of beforeKeys) expect(keys).not.toContain(key);
    expect(keys).toEqual((await manifest()).files.map((f) => f.key).sort());
    const left = await env.DB.prepare("SELECT COUNT(*) AS n FROM archived_alerts WHERE user_sha256 = ?").bind(await sha256Hex(user)).first("n");
    expect(left).toBe(0);
    const third = await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" });
    expect(await third.json()).toMatchObject({ erased: { archive_parts: 0 }, more: false });
  });

  it("a part rewritten by another erasure meanwhile is not overwritten: the commit fails, and the next call goes on from the new part", async () => {
    await archiveAll(inHours(2));
    const [a, b] = [freshId("user"), freshId("user")];
    const day = "2026-08-01";
    const pa = examplePayload({ timestamp: `${day}T10:00:00.000Z`, user: { user_system_id: a, user_parameters: {} } });
    const pb = examplePayload({ timestamp: `${day}T10:00:01.000Z`, user: { user_system_id: b, user_parameters: {} } });
    const other = examplePayload({ timestamp: `${day}T10:00:02.000Z` });
    for (const p of [pa, pb, other]) await post(p);
    await archiveAll(inHours(2));
    // While a's rewrite puts its new object (which still holds b), b's erasure rewrites the same part.
    let raced = false;
    const racing = new Proxy(bucket(), {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop === "put" && typeof value === "function") {
          return async (...args: unknown[]) => {
            if (!raced) {
              raced = true;
              const res = await callWorker(`/api/users/${encodeURIComponent(b)}`, { method: "DELETE" });
              // Not complete yet: a's new object, noted and not yet committed, may still hold b.
              expect(await res.json()).toMatchObject({ ok: true, more: true });
            }
            return (value as (...x: unknown[]) => unknown).apply(target, args);
          };
        }
        return typeof value === "function" ? value.bind(target) : value;
      },
    });
    await expect(eraseUserFromArchive({ db: env.DB, bucket: racing, user_system_id: a, now: new Date(), max_parts: 10 })).rejects.toThrow(/CHECK constraint failed/);
    expect(raced).toBe(true);
    // a's refused commit deleted its new object: b's erasure is complete now, with nothing of b left.
    expect(await (await callWorker(`/api/users/${encodeURIComponent(b)}`, { method: "DELETE" })).json()).toMatchObject({ ok: true, more: false });
    expect(await objectsNaming(b)).toEqual([]);
    // b stayed erased; a is still listed, and the next call takes a out.
    let rows = await listedRows("responses");
    expect(rows.filter((r) => r.alert_id === pb.alert_id)).toEqual([]);
    expect(rows.filter((r) => r.alert_id === pa.alert_id)).toHaveLength(1);
    expect(await eraseUserFromArchive({ db: env.DB, bucket: bucket(), user_system_id: a, now: new Date(), max_parts: 10 })).toMatchObject({ more: false });
    rows = await listedRows("responses");
    expect(rows.filter((r) => r.alert_id === pa.alert_id || r.alert_id === pb.alert_id)).toEqual([]);
    expect(await timesListed([other.alert_id])).toEqual(once([other.alert_id]));
  });
});
