// npm run check:dev-archive: the Parquet archive against `npm run dev`, as a user would.
//
// Starts `wrangler dev` (local D1, Queue and R2) with ARCHIVE_DELAY_MINUTES=0 and
// RETENTION_DAYS=30, then:
//   1. posts responses from four different days (40 to 37 days ago), three of one user, and
//      runs the archive's cron: every response is in exactly one part that GET /api/archive
//      lists, under the folder of its UTC day; DuckDB reads them with TIMESTAMP, INTEGER and
//      DOUBLE columns and the bodies byte for byte;
//   2. runs the main cron (retention): D1 no longer holds them (GET /api/alerts/{id} answers
//      404 archived with the part's key), and the archive still does;
//   3. erases the user: no listed part holds them, the others are all still there once, and
//      the bucket holds only listed parts.
// Exits non-zero when any check fails. Bounded: every wait has a deadline.
import { join } from "node:path";
import { pullArchive, queryArchive } from "../scripts/archive-query.mjs";
import { EXAMPLE, startWranglerDev } from "./lib.mjs";

const PORT = 8798;
const BASE = `http://127.0.0.1:${PORT}`;
const ADMIN = "dev-admin";
const failures = [];
const check = (ok, text) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${text}`);
  if (!ok) failures.push(text);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const dev = startWranglerDev({ port: PORT, extraVars: "ARCHIVE_DELAY_MINUTES=0\nRETENTION_DAYS=30", prefix: "dev-archive-" });
const { state } = dev;
const stop = () => dev.stop();

const api = async (method, path) => {
  const res = await fetch(`${BASE}${path}`, { method, headers: { authorization: `Bearer ${ADMIN}` } });
  return { status: res.status, json: await res.json() };
};
const cron = (expression) => fetch(`${BASE}/__scheduled?cron=${encodeURIComponent(expression)}`);
const listed = async () => {
  const files = [];
  let cursor = null;
  do {
    const page = (await api("GET", `/api/archive${cursor ? `?cursor=${cursor}` : ""}`)).json;
    files.push(...page.files);
    cursor = page.next_cursor;
  } while (cursor);
  return files;
};
/** The listed parts' rows, read with DuckDB from a copy of the local bucket. */
const archived = async (files) => {
  const out = join(state, "pulled");
  await pullArchive(state, out);
  const keys = files.filter((f) => f.table === "responses").map((f) => `'${join(out, f.key)}'`);
  const answerKeys = files.filter((f) => f.table === "answers").map((f) => `'${join(out, f.key)}'`);
  const responses = keys.length === 0 ? [] : (await queryArchive(out, `SELECT *, filename FROM read_parquet([${keys.join(",")}], hive_partitioning = true, filename = true)`)).rows;
  const answers = answerKeys.length === 0 ? [] : (await queryArchive(out, `SELECT * FROM read_parquet([${answerKeys.join(",")}])`)).rows;
  return { out, responses, answers };
};

try {
  const ready = Date.now();
  while (Date.now() - ready < 60_000) {
    if ((await fetch(`${BASE}/healthz`).catch(() => null))?.status === 200) break;
    await sleep(500);
  }
  const user = `archive-user-${Date.now()}`;
  const day = (n) => new Date(Date.now() - n * 86_400_000).toISOString().slice(0, 10);
  const sent = {};
  let i = 0;
  for (const n of [40, 39, 38, 37]) {
    for (const mine of [true, false]) {
      if (!mine || n !== 37) {
        i++;
        const body = JSON.stringify({
          ...EXAMPLE,
          alert_id: `dev-archive-${Date.now()}-${i}`,
          timestamp: `${day(n)}T${mine ? "08" : "20"}:00:00.500Z`,
          user: mine ? { user_system_id: user, user_parameters: { email: "x@example.com" } } : EXAMPLE.user,
        });
        const res = await fetch(`${BASE}/webhooks/1flow/dev-secret`, { method: "POST", headers: { "content-type": "application/json" }, body });
        sent[JSON.parse(body).alert_id] = { body, mine, day: day(n) };
        check(res.status === 200, `POST a response of ${day(n)}${mine ? " (the user's)" : ""}: ${res.status}`);
      }
    }
  }
  const ids = Object.keys(sent);

  // 1. The archive's schedule.
  check((await cron("2-59/5 * * * *")).status === 200, "the archive's cron ran");
  let files = await listed();
  let read = await archived(files);
  const times = (id) => read.responses.filter((r) => r.alert_id === id).length;
  check(ids.every((id) => times(id) === 1), `each of the ${ids.length} responses is in exactly one listed part (${files.length} parts)`);
  check(new Set(files.map((f) => f.date)).size === 4, `parts of four days: ${[...new Set(files.map((f) => f.date))].join(", ")}`);
  check(read.responses.every((r) => r.filename.includes(`/responses/date=${sent[r.alert_id]?.day}/`)), "every response sits in the folder of its UTC day");
  check(read.responses.every((r) => r.payload === sent[r.alert_id]?.body), "payload holds each original body byte for byte");
  const types = (await queryArchive(read.out, "SELECT column_name, column_type FROM (DESCRIBE responses)")).rows;
  const answerTypes = (await queryArchive(read.out, "SELECT column_name, column_type FROM (DESCRIBE answers)")).rows;
  const typeOf = (rows, name) => rows.find((r) => r.column_name === name)?.column_type;
  check(
    typeOf(types, "submitted_at") === "TIMESTAMP" && typeOf(types, "received_at") === "TIMESTAMP" && typeOf(types, "nps") === "INTEGER",
    `responses types: submitted_at ${typeOf(types, "submitted_at")}, received_at ${typeOf(types, "received_at")}, nps ${typeOf(types, "nps")}`,
  );
  check(typeOf(answerTypes, "value") === "DOUBLE" && typeOf(answerTypes, "position") === "INTEGER", `answers types: value ${typeOf(answerTypes, "value")}, position ${typeOf(answerTypes, "position")}`);

  // 2. Retention (the main cron) once the consumer has fanned them out (no destination: at once).
  let gone = false;
  for (let t = Date.now(); Date.now() - t < 60_000 && !gone; await sleep(1_000)) {
    await cron("*/5 * * * *");
    gone = (await Promise.all(ids.map((id) => api("GET", `/api/alerts/${id}`)))).every((r) => r.status === 404);
  }
  check(gone, "retention emptied D1 of them");
  const first = await api("GET", `/api/alerts/${ids[0]}`);
  check(first.json.error === "archived" && files.some((f) => f.key === first.json.key), `GET /api/alerts/{id}: 404 ${first.json.error}, key ${first.json.key}`);
  files = await listed();
  read = await archived(files);
  check(ids.every((id) => times(id) === 1), "the archive still holds each of them once");

  // 3. Erasure of the user.
  let erasure;
  for (let k = 0; k < 10; k++) {
    erasure = await api("DELETE", `/api/users/${encodeURIComponent(user)}`);
    if (!erasure.json.more) break;
  }
  check(erasure.json.ok === true && erasure.json.more === false, `DELETE /api/users/{id}: ${JSON.stringify(erasure.json)}`);
  files = await listed();
  read = await archived(files);
  const mine = ids.filter((id) => sent[id].mine);
  const others = ids.filter((id) => !sent[id].mine);
  check(read.responses.every((r) => r.user_system_id !== user) && mine.every((id) => times(id) === 0), `no listed part holds the user's ${mine.length} responses`);
  check(read.answers.every((a) => !mine.includes(a.alert_id)), "nor their answers");
  check(others.every((id) => times(id) === 1), `the other ${others.length} are each still there once`);
  const all = await (async () => {
    const out = join(state, "all");
    await pullArchive(state, out);
    return (await queryArchive(out, "SELECT COUNT(*) AS n FROM responses")).rows[0].n;
  })();
  check(Number(all) === others.length, `the bucket holds only listed parts: ${all} responses rows in all of it`);
} catch (error) {
  check(false, `error: ${error instanceof Error ? error.stack : error}`);
  console.log(dev.log().slice(-3_000));
} finally {
  stop();
}
console.log(failures.length === 0 ? "dev archive: all checks passed" : `dev archive: ${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
