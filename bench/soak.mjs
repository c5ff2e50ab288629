// npm run soak [-- --alerts 10000 --concurrency 50] [-- --d1-outage 20]
//
// --d1-outage S takes D1 away (its alerts table renamed, as an operator could with
// `wrangler d1 execute`) for S seconds in the middle of the sending: valid alerts must
// still be answered 200 (through the spool) and end stored and delivered exactly once;
// invalid bodies answered 503 then are sent again afterwards, as 1Flow's retry would.
// --destination-down S makes the healthy destination answer 503 for S seconds: its breaker
// must pause it and resume it, and every alert still ends delivered exactly once, none dead.
// The cron runs every 2 s during the run (Miniflare does not tick it).
//
// Runs the bundled Worker in Miniflare with two local destinations (one healthy,
// one that fails a third of its requests and sometimes hangs past the delivery
// timeout), sends the alerts with duplicates (some concurrent), invalid and
// oversize bodies, waits for the Queue to drain, and checks that nothing was lost
// and nothing duplicated. Exits non-zero when any figure is off.
import { createHash, randomUUID } from "node:crypto";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bundle, EXAMPLE, ROOT, schemaStatements, SECRET, spawnDestination, startWorker } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    alerts: { type: "string", default: "10000" },
    concurrency: { type: "string", default: "50" },
    "drain-timeout": { type: "string", default: "200" },
    "d1-outage": { type: "string", default: "0" },
    "destination-down": { type: "string", default: "0" },
  },
});
const ALERTS = Number(values.alerts);
const CONCURRENCY = Number(values.concurrency);
const DRAIN_TIMEOUT_S = Number(values["drain-timeout"]);
const OUTAGE_S = Number(values["d1-outage"]);
const DOWN_S = Number(values["destination-down"]);
const DUPLICATE_SHARE = 0.3;
const INVALID_SHARE = 0.05;
const OVERSIZE = Math.max(3, Math.round(ALERTS / 2000));
const DELIVERY_TIMEOUT_MS = 2_000;
const DESTINATION_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const runId = randomUUID().slice(0, 8);

const log = (line) => process.stderr.write(`${line}\n`);
const sha256 = (text) => createHash("sha256").update(text).digest("hex");

// A seeded generator, so that a run's workload can be repeated.
let seed = 20261127;
const random = () => {
  seed = (seed * 1_103_515_245 + 12_345) % 2 ** 31;
  return seed / 2 ** 31;
};

// The workload: every valid alert once, 30% of them again (half of those at the same
// moment), 5% invalid bodies (bad JSON and schema failures), a few oversize ones.
const valid = Array.from({ length: ALERTS }, (_, i) => {
  const screens = [
    { ...EXAMPLE.survey_info.screens[0], answer: String(i % 11) },
    { ...EXAMPLE.survey_info.screens[1], answer: `reason ${i}` },
  ];
  return JSON.stringify({ ...EXAMPLE, alert_id: `soak-${runId}-${i}`, survey_info: { ...EXAMPLE.survey_info, screens } });
});
const invalidCount = Math.round(ALERTS * INVALID_SHARE);
const invalid = Array.from({ length: invalidCount }, (_, i) =>
  i % 2 === 0
    ? `{"alert_id":"broken-${runId}-${i}", "survey_id":`
    : JSON.stringify({ ...EXAMPLE, alert_id: `invalid-${runId}-${i}`, timestamp: "not a time" }),
);
const oversize = Array.from({ length: OVERSIZE }, (_, i) =>
  JSON.stringify({ ...EXAMPLE, alert_id: `big-${runId}-${i}`, padding: "x".repeat(70_000 + i) }),
);

/** Jobs: each sends one body, or two copies of one body at the same moment. */
const jobs = [];
for (const body of valid) jobs.push({ bodies: [body] });
for (const body of valid) {
  if (random() >= DUPLICATE_SHARE) continue;
  jobs.push({ bodies: random() < 0.5 ? [body, body] : [body] });
}
for (const body of invalid) jobs.push({ bodies: [body] });
for (const body of oversize) jobs.push({ bodies: [body] });
for (let i = jobs.length - 1; i > 0; i--) {
  const j = Math.floor(random() * (i + 1));
  [jobs[i], jobs[j]] = [jobs[j], jobs[i]];
}

log("bundling with wrangler deploy --dry-run ...");
// With the outage switch (bench/soak-worker.ts) around the real Worker.
const scriptPath = bundle(join(ROOT, "bench/.build/soak"), ["bench/soak-worker.ts"], "soak-worker.js");
const healthy = await spawnDestination(["--secret", DESTINATION_SECRET]);
const flaky = await spawnDestination([
  "--secret", DESTINATION_SECRET,
  "--fail-rate", String(1 / 3),
  "--hang-rate", "0.003",
  "--hang-ms", String(DELIVERY_TIMEOUT_MS + 1_500),
]);
const worker = await startWorker({
  scriptPath,
  bindings: {
    WEBHOOK_SECRET: SECRET,
    // Short backoff so that a run ends in minutes; the delays still double per attempt.
    RETRY_BASE_SECONDS: "0.1",
    DELIVERY_TIMEOUT_MS: String(DELIVERY_TIMEOUT_MS),
    // A short pause, so that the breaker's whole cycle fits in the run.
    PAUSE_AFTER_FAILURES: "10",
    PAUSE_SECONDS: "2",
    NOTIFY_URL: `http://127.0.0.1:${healthy.port}/notify`,
    DESTINATIONS: JSON.stringify([
      { name: "healthy", url: `http://127.0.0.1:${healthy.port}/hook`, secret: DESTINATION_SECRET },
      { name: "flaky", url: `http://127.0.0.1:${flaky.port}/hook`, secret: DESTINATION_SECRET },
    ]),
  },
  consumers: {
    // More retries than wrangler.toml's 10: a third of the flaky destination's answers
    // fail, and this run is about losing nothing, not about dead letters.
    "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 30, deadLetterQueue: "oneflow-alerts-dlq" },
    "oneflow-alerts-dlq": { maxBatchSize: 100, maxBatchTimeout: 1 },
  },
  setupSql: schemaStatements(),
});

const url = `${worker.url}/webhooks/1flow/${SECRET}`;
const statuses = new Map();
const latencies = [];
let slowest = 0;
let next = 0;
const started = performance.now();

const validBodies = new Set(valid);
/** Bodies answered 503 (D1 down, their quarantine needs it): 1Flow would send them again. */
const retryLater = [];
let spooled = 0;
let validNot200 = 0;

async function send(body) {
  const t = performance.now();
  const res = await fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body,
    signal: AbortSignal.timeout(15_000),
  }).catch((error) => ({ status: `error: ${error.name}`, text: async () => "" }));
  const text = await res.text();
  if (validBodies.has(body)) {
    if (res.status !== 200) validNot200++;
    else if (text.includes('"spooled":true')) spooled++;
  } else if (res.status === 503) retryLater.push(body);
  const ms = performance.now() - t;
  latencies.push(ms);
  slowest = Math.max(slowest, ms);
  statuses.set(res.status, (statuses.get(res.status) ?? 0) + 1);
}

async function client() {
  while (next < jobs.length) {
    const job = jobs[next++];
    await Promise.all(job.bodies.map(send));
    if (next % 2000 === 0) log(`  ${next} of ${jobs.length} jobs sent`);
  }
}

const requestsTotal = jobs.reduce((n, j) => n + j.bodies.length, 0);
log(`sending ${requestsTotal} requests (${ALERTS} alerts) at concurrency ${CONCURRENCY} ...`);
/** The outage: from a few seconds into the sending, for OUTAGE_S seconds. */
async function outage() {
  if (OUTAGE_S <= 0) return;
  await new Promise((r) => setTimeout(r, 3_000));
  log(`D1 down for ${OUTAGE_S} s (alerts renamed) ...`);
  const toggle = async (down) => (await fetch(`${worker.url}/__d1-outage?down=${down ? 1 : 0}`, { method: "POST" })).json();
  await toggle(true);
  await new Promise((r) => setTimeout(r, OUTAGE_S * 1000));
  await toggle(false);
  log("D1 back");
}
const down = outage();
/**
 * The healthy destination down for a stretch, from a few seconds into the sending, or after
 * D1 is back when it goes down too (nothing is delivered while D1 is down, so a stretch
 * inside the outage would see no request).
 */
async function destinationDown() {
  if (DOWN_S <= 0) return;
  await new Promise((r) => setTimeout(r, OUTAGE_S > 0 ? (OUTAGE_S + 6) * 1000 : 3_000));
  log(`healthy destination down for ${DOWN_S} s ...`);
  await fetch(`http://127.0.0.1:${healthy.port}/control/down?seconds=${DOWN_S}`, { method: "POST" });
}
const stretch = destinationDown();
let ticking = true;
const cron = (async () => {
  while (ticking) {
    await new Promise((r) => setTimeout(r, 2_000));
    await fetch(`${worker.url}/__scheduled`, { method: "POST" }).catch(() => undefined);
  }
})();
await Promise.all(Array.from({ length: CONCURRENCY }, client));
await down;
await stretch;
// 1Flow's retry of what was refused with a 503 while D1 was down.
const retried = retryLater.splice(0);
for (const body of retried) await send(body);
const sendSeconds = (performance.now() - started) / 1000;
latencies.sort((a, b) => a - b);
log(`sent in ${sendSeconds.toFixed(1)} s; waiting for the Queue to drain ...`);

const db = worker.db;
const count = async (sql, ...params) => (await db.prepare(sql).bind(...params).first()).n;
const drainStarted = performance.now();
let delivered = 0;
// Progress is read from the destinations, not from D1, while the Worker is busy.
while ((performance.now() - drainStarted) / 1000 < DRAIN_TIMEOUT_S) {
  const [h, f] = await Promise.all([healthy.stats(), flaky.stats()]);
  delivered = Object.keys(h.by_id).length + Object.keys(f.by_id).length;
  if (delivered >= ALERTS * 2) break;
  const waited = Math.round((performance.now() - drainStarted) / 1000);
  if (waited % 10 === 0) log(`  ${waited} s: ${delivered} of ${ALERTS * 2} deliveries done`);
  await new Promise((r) => setTimeout(r, 1_000));
}
const drainSeconds = (performance.now() - drainStarted) / 1000;
ticking = false;
await cron;

// The figures.
const checks = [];
const check = (name, ok, figure) => checks.push({ name, ok, figure });
const q = (p) => latencies[Math.min(latencies.length - 1, Math.floor(p * latencies.length))] ?? 0;

check("every request answered within 10 s", slowest < 10_000, `max ${slowest.toFixed(0)} ms, p50 ${q(0.5).toFixed(0)} ms, p99 ${q(0.99).toFixed(0)} ms`);
const fiveHundreds = [...statuses].filter(([s]) => typeof s !== "number" || s >= 500).reduce((n, [, c]) => n + c, 0);
if (OUTAGE_S > 0) {
  check("every valid alert answered 200, through the spool while D1 was down", validNot200 === 0, `${spooled} spooled, ${validNot200} valid requests not 200`);
  check("5xx only for invalid bodies during the outage, and those stored when sent again", fiveHundreds === retried.length + retryLater.length && retryLater.length === 0, `${retried.length} answered 503 and sent again, ${retryLater.length} still refused; ${JSON.stringify(Object.fromEntries(statuses))}`);
} else {
  check("zero 5xx (and no transport errors)", fiveHundreds === 0, JSON.stringify(Object.fromEntries(statuses)));
}

const validIds = new Set(valid.map((b) => JSON.parse(b).alert_id));
const { results: stored } = await db.prepare("SELECT alert_id FROM alerts").all();
const storedIds = new Set(stored.map((r) => r.alert_id));
const missing = [...validIds].filter((id) => !storedIds.has(id)).length;
const extra = [...storedIds].filter((id) => !validIds.has(id)).length;
check("alerts holds exactly the distinct valid alert_ids", missing === 0 && extra === 0 && stored.length === validIds.size, `${stored.length} rows, ${validIds.size} expected, ${missing} missing, ${extra} unexpected`);

const answers = await count("SELECT COUNT(*) AS n FROM answers");
const duplicateAnswers = await count("SELECT COUNT(*) AS n FROM (SELECT alert_id, position FROM answers GROUP BY 1, 2 HAVING COUNT(*) > 1)");
check("answers has no duplicates", duplicateAnswers === 0 && answers === ALERTS * 2, `${answers} rows for ${ALERTS * 2} screens, ${duplicateAnswers} duplicated`);

for (const [name, destination] of [["healthy", healthy], ["flaky", flaky]]) {
  const stats = await destination.stats();
  const byId = new Map(Object.entries(stats.by_id));
  const never = [...validIds].filter((id) => !byId.has(id)).length;
  const twice = [...byId.values()].filter((n) => n > 1).length;
  check(
    `every alert delivered to ${name} exactly once (by webhook-id)`,
    never === 0 && twice === 0 && stats.bad_signatures === 0,
    `${byId.size} ids, ${never} never, ${twice} more than once${twice > 0 ? ` (${[...byId].filter(([, n]) => n > 1).slice(0, 5).map(([id]) => id).join(", ")}${twice > 5 ? ", …" : ""})` : ""}, ${stats.requests} requests, ${stats.failed_on_purpose} failed and ${stats.hung_on_purpose} hung on purpose, ${stats.bad_signatures} bad signatures`,
  );
}
if (DOWN_S > 0) {
  const { notifications, down_answers } = await healthy.stats();
  const events = notifications.filter((n) => n.data?.destination === "healthy").map((n) => n.event);
  check(
    "the healthy destination, down for a stretch, paused and resumed (notified)",
    events.includes("destination.paused") && events.includes("destination.resumed"),
    `${down_answers} answers 503 while down; notifications: ${events.join(", ") || "none"}`,
  );
}
const ledger = await count("SELECT COUNT(*) AS n FROM deliveries WHERE status = 'delivered'");
const notDelivered = await count("SELECT COUNT(*) AS n FROM deliveries WHERE status <> 'delivered'");
check("the deliveries ledger says delivered for both", ledger === ALERTS * 2 && notDelivered === 0, `${ledger} delivered, ${notDelivered} other, drained in ${drainSeconds.toFixed(1)} s`);

let quarantined = 0;
for (const body of invalid) if (await db.prepare("SELECT 1 FROM rejected_payloads WHERE id = ?").bind(sha256(body)).first()) quarantined++;
check("every invalid body is in rejected_payloads", quarantined === invalid.length, `${quarantined} of ${invalid.length}`);
let tooLarge = 0;
for (const body of oversize) {
  const id = sha256(`payload_too_large:${Buffer.byteLength(body)}`);
  if (await db.prepare("SELECT 1 FROM rejected_payloads WHERE id = ? AND body IS NULL").bind(id).first()) tooLarge++;
}
check("every oversize body is quarantined by size", tooLarge === oversize.length, `${tooLarge} of ${oversize.length}`);

console.log(`soak: ${requestsTotal} requests for ${ALERTS} alerts at concurrency ${CONCURRENCY}, sent in ${sendSeconds.toFixed(1)} s (${(requestsTotal / sendSeconds).toFixed(0)} req/s)${OUTAGE_S > 0 ? `; D1 down for ${OUTAGE_S} s: ${spooled} requests answered 200 spooled` : ""}`);
for (const c of checks) console.log(`${c.ok ? "ok  " : "FAIL"} ${c.name}: ${c.figure}`);

await worker.mf.dispose();
healthy.child.kill();
flaky.child.kill();
const failed = checks.filter((c) => !c.ok).length;
console.log(failed === 0 ? "soak passed" : `soak FAILED: ${failed} figure(s) off`);
process.exit(failed === 0 ? 0 : 1);
