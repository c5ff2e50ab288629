#!/usr/bin/env node
/**
 * Breaks each guarantee once and checks that its test fails: for every entry below, the
 * source is changed as the entry says (the guarantee removed), the named test is run, and the
 * change is undone. A guarantee whose test still passes without it is reported, and the
 * script exits 1. Results go to bench/results/break-check.md.
 *
 *   npm run test:break                 every entry
 *   npm run test:break -- claim spool  the entries whose id holds one of these words
 */
import { spawnSync } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";

const BREAKS = [
  // Issue 24: the simulation catches each guard's removal by itself, from its default seeds
  // (test/sim/sim.test.ts, project "sim"; a run of about 3 minutes, hence the longer timeout).
  { id: "24-sim-archive-guard", project: "sim", timeout: 600_000, file: "migrations/0013_archive.sql", from: "CHECK (guard = 1)", to: "CHECK (guard = 1 OR 1)", test: "test/sim/sim.test.ts", name: "simulation" },
  { id: "24-sim-user-tombstone", project: "sim", timeout: 600_000, file: "src/store/alerts.ts", from: "  AND NOT EXISTS (SELECT 1 FROM erased_users WHERE user_sha256 = ?16 AND erased_at >= ?11)\n", to: "", test: "test/sim/sim.test.ts", name: "simulation" },
  { id: "24-sim-claim", project: "sim", timeout: 600_000, file: "src/store/deliveries.ts", from: "AND (fanout_claimed_until IS NULL OR fanout_claimed_until <= ?1)", to: "AND (fanout_claimed_until IS NULL OR 1)", test: "test/sim/sim.test.ts", name: "simulation" },
  { id: "24-sim-ledger-before-ack", project: "sim", timeout: 600_000, file: "src/fanout/consumer.ts", from: "      if (!recorded) {\n        backoff(message);\n        continue;\n      }\n", to: "", test: "test/sim/sim.test.ts", name: "simulation" },
  { id: "24-sim-identify-lease", project: "sim", timeout: 600_000, file: "src/store/identify.ts", from: "WHERE identify_latest.lease_until IS NULL OR identify_latest.lease_until <= ?5", to: "WHERE true", test: "test/sim/sim.test.ts", name: "simulation" },
  // Issue 16's holes.
  { id: "1-ack-needs-ledger", file: "src/fanout/consumer.ts", from: "      if (!recorded) {\n        backoff(message);\n        continue;\n      }\n", to: "", test: "test/delivery-guarantees.test.ts", name: "every destination paused and the ledger write failing" },
  { id: "2-cancel-orphans", file: "src/fanout/consumer.ts", from: 'if (status !== "pending") continue;', to: "continue;", test: "test/delivery-guarantees.test.ts", name: "a removed destination and a narrowed filter" },
  { id: "2-cancel-api", file: "src/store/deliveries.ts", from: "WHERE destination = ?1 AND status = 'pending' ORDER BY updated_at LIMIT ?4)", to: "WHERE destination = ?1 AND status = 'none' ORDER BY updated_at LIMIT ?4)", test: "test/delivery-guarantees.test.ts", name: "POST /api/deliveries/cancel cancels" },
  { id: "3-probe-superseded", file: "src/fanout/consumer.ts", from: 'if (job.mode !== "send" && !job.may_probe) continue;', to: 'if (job.mode !== "send") continue;', test: "test/delivery-guarantees.test.ts", name: "a probe never sends" },
  { id: "3-newest-in-batch", file: "src/fanout/consumer.ts", from: "const pair = pairKey(job.key.destination, job.alert.user_system_id);", to: "const pair = job.alert.alert_id;", test: "test/delivery-guarantees.test.ts", name: "two responses of one user in one batch" },
  { id: "3-lease", file: "src/store/identify.ts", from: "WHERE identify_latest.lease_until IS NULL OR identify_latest.lease_until <= ?5", to: "WHERE true", test: "test/delivery-guarantees.test.ts", name: "another consumer sending to the same user" },
  { id: "4-identify-rows", file: "src/store/erasure.ts", from: 'db.prepare("DELETE FROM identify_latest WHERE user_system_id = ?1")', to: 'db.prepare("DELETE FROM identify_latest WHERE user_system_id = ?1 AND 0")', test: "test/erasure-complete.test.ts", name: "leaves no row in any table" },
  { id: "4-user-tombstone", file: "src/store/alerts.ts", from: "  AND NOT EXISTS (SELECT 1 FROM erased_users WHERE user_sha256 = ?16 AND erased_at >= ?11)\n", to: "", test: "test/erasure-complete.test.ts", name: "leaves no row in any table" },
  { id: "4-in-flight-ledger", file: "src/store/deliveries.ts", from: "CASE WHEN ?3 = 'delivered' THEN ?6 END WHERE EXISTS (SELECT 1 FROM alerts WHERE alert_id = ?1)", to: "CASE WHEN ?3 = 'delivered' THEN ?6 END WHERE true", test: "test/erasure-complete.test.ts", name: "leaves no row in any table" },
  { id: "4-unparsed-quarantine", file: "src/store/erasure.ts", from: "AND instr(CAST(body AS TEXT), ?1) > 0", to: "AND instr(CAST(body AS TEXT), ?1) > 0 AND 0", test: "test/erasure-complete.test.ts", name: "leaves no row in any table" },
  { id: "5-claim-sized", file: "src/fanout/consumer.ts", from: "Math.ceil(Math.max(1, jobs) / OUTBOUND_CONNECTIONS) * delivery_timeout_ms", to: "delivery_timeout_ms", test: "test/delivery-guarantees.test.ts", name: "the last request is in flight" },
  { id: "5-replay-keeps-claim", file: "src/store/deliveries.ts", from: "  return results.map((r) => r.destination);", to: '  await db.prepare("UPDATE alerts SET fanout_claimed_until = NULL WHERE alert_id = ?1").bind(input.alert_id).run();\n  return results.map((r) => r.destination);', test: "test/delivery-guarantees.test.ts", name: "a replay never clears" },
  { id: "6-dlq-claims", file: "src/fanout/dead-letters.ts", from: "await claimAlerts(ctx.db, alert_ids, now.toISOString(), claimed_until)", to: 'await claimAlerts(ctx.db, alert_ids, "9999", claimed_until)', test: "test/delivery-guarantees.test.ts", name: "leaves an alert that a consumer is still delivering" },
  { id: "6-dlq-held", file: "src/store/deliveries.ts", from: "WHERE deliveries.status = 'pending' AND deliveries.attempts > 0", to: "WHERE deliveries.status = 'pending'", test: "test/delivery-guarantees.test.ts", name: "never makes dead a delivery that a pause held" },
  { id: "7-retention-queued", file: "src/store/erasure.ts", from: "\n               OR (a.fanned_out_at IS NULL AND NOT EXISTS (SELECT 1 FROM deliveries AS d WHERE d.alert_id = a.alert_id))", to: "", test: "test/delivery-guarantees.test.ts", name: "keeps an alert that is on the Queue" },
  { id: "8-spool-size", file: "src/spool.ts", from: "if (serialisedBytes(plain) <= MAX_SPOOL_MESSAGE_BYTES) return plain;", to: "return plain;", test: "test/spool-limits.test.ts", name: "made of escaped quotes" },
  { id: "9-issues-capped", file: "src/ingest/ingest.ts", from: "const issues = all.slice(0, MAX_ISSUES_KEPT);", to: "const issues = all;", test: "test/spool-limits.test.ts", name: "20,000 empty screens" },
  { id: "10-export-boundary", file: "src/http/api-data.ts", from: "through: next,", to: "through: null,", test: "test/export-consistency.test.ts", name: "inserted inside the first part" },
  { id: "11-cron-shares", file: "src/cron.ts", from: "const share = budget.share(CRON_SHARES[step]);", to: "const share = new Budget(1_000);", test: "test/cron-budget.test.ts", name: "every step at its worst case" },
  { id: "11-probe-once", file: "src/fanout/consumer.ts", from: "      probeAsked.add(job.key.destination);\n", to: "", test: "test/cron-budget.test.ts", name: "asked for once per batch" },
  // Issue 17: destinations as data.
  { id: "17-budget", file: "src/fanout/consumer.ts", from: "Math.max(0, budget.left() - AFTER_DELIVERIES),", to: "Number.POSITIVE_INFINITY,", test: "test/destinations-api.test.ts", name: "12 destinations with SUBREQUEST_BUDGET=20" },
  { id: "17-path-origin", file: "src/fanout/deliver.ts", from: "if (url.origin !== new URL(destination.url).origin) return", to: "if (false) return", test: "test/destinations-api.test.ts", name: "a path that leaves the url's origin" },
  { id: "17-step-bound", file: "src/fanout/jsonata.ts", from: "if (steps > MAX_STEPS) throw", to: "if (steps < 0) throw", test: "test/destinations-api.test.ts", name: "a tail-recursive loop" },
  { id: "17-secrets-sealed", file: "src/manage-destinations.ts", from: "if (entry.secret !== undefined) secret = await seal(deps.keys, entry.secret);", to: "if (entry.secret !== undefined) secret = entry.secret;", test: "test/destinations-api.test.ts", name: "then replaces" },
  { id: "17-disabled-holds", file: "src/fanout/consumer.ts", from: 'const breaker = destination.enabled === false ? "paused"', to: 'const breaker = false ? "paused"', test: "test/destinations-api.test.ts", name: "PATCH enabled:false holds" },
  { id: "17-config-read-only", file: "src/manage-destinations.ts", from: "return config.ok && config.destinations.some((d) => d.name === name);", to: "return false;", test: "test/destinations-api.test.ts", name: "read-only: 409" },
  { id: "17-delete-cancels", file: "src/manage-destinations.ts", from: "for (let i = 0; i < REMOVE_CANCEL_CALLS; i++) {", to: "for (let i = 0; i < 0; i++) {", test: "test/destinations-api.test.ts", name: "DELETE cancels its pending deliveries" },
  // Issue 18: the archive.
  { id: "18-late-note", file: "src/store/alerts.ts", from: "SELECT ?1, ?2 WHERE ?3 <= (SELECT read_through FROM archive_state WHERE id = 1)", to: "SELECT ?1, ?2 WHERE 0 AND ?3 <= (SELECT read_through FROM archive_state WHERE id = 1)", test: "test/archive.test.ts", name: "1Flow's late retry" },
  { id: "18-read-mark", file: "src/store/archive.ts", from: "UPDATE archive_state SET read_through = MAX(read_through, ?1) WHERE id = 1", to: "UPDATE archive_state SET read_through = MAX(read_through, ?1) WHERE 0", test: "test/archive.test.ts", name: "1Flow's late retry" },
  { id: "18-skip-late", file: "src/store/archive.ts", from: "   OR EXISTS (SELECT 1 FROM archive_late AS l WHERE l.alert_id = a.alert_id)) AS skip", to: "   OR 0) AS skip", test: "test/archive.test.ts", name: "part-way through what it marked" },
  { id: "18-defer", file: "src/archive/archive.ts", from: "if (row.received_at > through) defer.push", to: "if (false) defer.push", test: "test/archive.test.ts", name: "1Flow sent late" },
  { id: "18-commit-guard", file: "src/store/archive.ts", from: "guard = ((SELECT COUNT(*) FROM alerts WHERE alert_id IN (SELECT value FROM json_each(?9))) = ?10)", to: "guard = (?9 IS NOT NULL OR ?10)", test: "test/archive.test.ts", name: "an erasure between the tick's read and its commit" },
  { id: "18-rewrite-guard", file: "src/store/archive.ts", from: "guard = ((SELECT key FROM archive_parts WHERE id = ?1) IS ?2)", to: "guard = (?1 IS NOT NULL OR ?2)", test: "test/archive.test.ts", name: "a part rewritten by another erasure" },
  { id: "18-put-cleanup", file: "src/archive/archive.ts", from: "if (written.length > 0) await bucket.delete(written)", to: "if (false) await bucket.delete(written)", test: "test/archive.test.ts", name: "the R2 put fails, then the D1 commit fails" },
  { id: "18-garbage", file: "src/archive/archive.ts", from: "  if (keys.length === 0) return 0;\n  take(input.budget);", to: "  if (keys.length >= 0) return 0;\n  take(input.budget);", test: "test/archive.test.ts", name: "a crash after the puts" },
  { id: "18-retention-archived", file: "src/store/erasure.ts", from: "\n               OR (?6 AND NOT EXISTS (SELECT 1 FROM archived_alerts AS x WHERE x.alert_id = a.alert_id))", to: "", test: "test/archive.test.ts", name: "deletes only archived responses" },
  { id: "18-erasure-rewrites", file: "src/http/api-data.ts", from: "d1.more || !c.env.ARCHIVE", to: "d1.more || true", test: "test/archive.test.ts", name: "rewrites every part that holds the user" },
  { id: "18-404-archived", file: "src/http/api-data.ts", from: "return key === null ? errorResponse", to: "return true ? errorResponse", test: "test/archive.test.ts", name: "deletes only archived responses" },
  { id: "18-once", file: "src/store/archive.ts", from: "(EXISTS (SELECT 1 FROM archived_alerts AS x WHERE x.alert_id = a.alert_id)\n", to: "(0\n", test: "test/archive.test.ts", name: "part-way through what it marked" },
  { id: "18-tick-bytes", file: "src/archive/archive.ts", from: "if (picked.length > 0 && bytes + row.size > (input.max_bytes ?? ARCHIVE_TICK_BYTES)) return false;", to: "if (false) return false;", test: "test/archive.test.ts", name: "reads only the bodies that fit" },
  // Issue 20: the request path.
  { id: "20-token-no-digest", file: "src/http/auth.ts", from: "  const a = encoder.encode(given);\n", to: '  const a = encoder.encode(given);\n  void crypto.subtle.digest("SHA-256", a);\n', test: "test/auth.test.ts", name: "compares without a digest" },
  // The tests issue 16 tightened.
  { id: "t-one-deadline", file: "src/ingest/ingest.ts", from: "seen_at: ctx.now().toISOString() }), remaining(ctx));", to: "seen_at: ctx.now().toISOString() }), 400);", test: "test/faults.test.ts", name: "one deadline for the whole request" },
  { id: "t-one-probe-two-consumers", file: "src/store/health.ts", from: " AND (probe_until IS NULL OR probe_until <= ?2)", to: "", test: "test/breaker.test.ts", name: "two concurrent batches" },
  { id: "t-cost-survey-index", file: "src/store/reads.ts", from: 'index: input.survey_id === null ? "alerts_by_time" : "alerts_by_survey_time",', to: 'index: "alerts_by_time",', test: "test/cost.test.ts", name: "export of one survey" },
  { id: "t-reliability-delay", file: "src/fanout/consumer.ts", from: '    log("error", "fanout.batch_failed", { error: errorMessage(error), messages: messages.length });\n    for (const { message } of messages) backoff(message);', to: '    log("error", "fanout.batch_failed", { error: errorMessage(error), messages: messages.length });\n    for (const { message } of messages) message.retry();', test: "test/reliability.test.ts", name: "claiming fails" },
  { id: "t-until", file: "src/store/deliveries.ts", from: "AND (?4 IS NULL OR updated_at < ?4)", to: "AND (?4 IS NULL OR 1)", test: "test/dead-letters-and-replay.test.ts", name: "honours since and until" },
  { id: "t-one-sendbatch", file: "src/ingest/enqueue-buffer.ts", from: "if (buffered.length >= ENQUEUE_BATCH_SIZE) return send(take());", to: "return send(take());", test: "test/ingest-storage.test.ts", name: "one sendBatch" },
  { id: "t-property-oracle", file: "src/ingest/payload.ts", from: "  type: nonEmptyString,\n  answer: answerSchema,", to: "  type: v.string(),\n  answer: answerSchema,", test: "test/property.test.ts", name: "near the valid shape" },
];

/** The workerd processes running now, by pid. */
function workerds() {
  const listed = spawnSync("pgrep", ["-f", "workerd serve"], { encoding: "utf8" }).stdout ?? "";
  return new Set(listed.split("\n").filter((pid) => pid !== ""));
}

const only = process.argv.slice(2);
const chosen = BREAKS.filter((b) => only.length === 0 || only.some((w) => b.id.includes(w)));
const rows = [];
let survived = 0;
for (const b of chosen) {
  const original = readFileSync(b.file, "utf8");
  if (!original.includes(b.from)) {
    rows.push(`| ${b.id} | ${b.file} | — | the code to break is not there (update this entry) |`);
    survived += 1;
    continue;
  }
  writeFileSync(b.file, original.replace(b.from, b.to));
  const workerdBefore = workerds();
  let result;
  try {
    result = spawnSync(process.execPath, ["node_modules/vitest/vitest.mjs", "run", "--project", b.project ?? "worker", b.test, "-t", b.name], {
      encoding: "utf8",
      env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
      // A guarantee whose removal makes its test hang (a runaway expression) is caught too.
      timeout: b.timeout ?? 90_000,
      killSignal: "SIGKILL",
    });
  } finally {
    writeFileSync(b.file, original);
    // A hung run leaves its workerd behind, still running the loop: end what this run started.
    spawnSync("pkill", ["-f", `vitest/vitest.mjs run --project ${b.project ?? "worker"}`]);
    for (const pid of workerds()) if (!workerdBefore.has(pid)) spawnSync("kill", ["-9", pid]);
  }
  const hung = result.error !== undefined && /ETIMEDOUT/.test(String(result.error));
  const ran = /Tests\s+.*?(\d+) (failed|passed)/.test(result.stdout ?? "");
  const failed = hung || (result.status !== 0 && /\d+ failed/.test(result.stdout ?? ""));
  if (!failed) survived += 1;
  const verdict = hung ? `hangs past ${(b.timeout ?? 90_000) / 1000} s (caught)` : failed ? "fails (caught)" : ran ? "PASSES: not caught" : "did not run";
  rows.push(`| ${b.id} | ${b.file} | ${b.test} › ${b.name} | ${verdict} |`);
  console.log(`${b.id}: ${verdict}`);
}
const report = [
  "# Break check",
  "",
  `Each guarantee removed once from the source, and its test run (\`npm run test:break\`, ${new Date().toISOString().slice(0, 10)}).`,
  "",
  "| break | file changed | test | with the guarantee removed |",
  "|---|---|---|---|",
  ...rows,
  "",
].join("\n");
if (only.length === 0) writeFileSync("bench/results/break-check.md", report);
console.log(`${chosen.length - survived} of ${chosen.length} breaks caught`);
process.exit(survived === 0 ? 0 : 1);
