// npm run bench:cost [-- --sizes 1000,50000 --out bench/results/cost.json]
//
// What every operation costs in D1, as the platform bills it: the Worker runs in
// Miniflare (workerd, local D1 and Queue) with a meter around its DB binding
// (bench/cost-worker.ts) that sums D1 calls, statements, meta.rows_read and
// meta.rows_written. For each size it seeds responses through the webhook (three
// surveys, about 1,000 users, submitted over 60 days, three screens each), lets the
// consumer deliver them to one local destination, then measures each operation on its
// own and checks it against its budget. For every page and GET it also samples the Worker's CPU
// through workerd's inspector (CPU_REQUESTS requests after a warm-up; the free plan allows 10 ms
// an invocation): our isolate's, apart from Miniflare's D1 simulator's (bench/lib.mjs, cpuProfiler).
// Prints a table; writes the figures as JSON.
import { writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { bundle, cpuProfiler, EXAMPLE, ROOT, schemaStatements, SECRET, spawnDestination, startWorker } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "1000,50000" },
    concurrency: { type: "string", default: "20" },
    out: { type: "string", default: join(ROOT, "bench/results/cost.json") },
  },
});
const SIZES = values.sizes.split(",").map(Number);
const CONCURRENCY = Number(values.concurrency);
const ADMIN = "bench-admin";
const SURVEYS = ["30cc805f1f0c541d4dcfccef", "survey-b", "survey-c"];
const USERS = 1_000;
const DAY_MS = 86_400_000;
const log = (line) => process.stderr.write(`${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Budgets from the cost issue: rows read and written, per operation (per exported row for the export). */
const READ_PAGE = { read: 2_000 };
const BUDGETS = {
  "new alert, webhook + consumer": { written: 10, read: 60 },
  duplicate: { written: 2, read: 20 },
  "cron tick, idle": { read: 1_000 },
  "cron tick, RETENTION_DAYS set, nothing to delete": { read: 1_000 },
  "export, per exported row": { read: 6 },
  "archive tick (300 of the backlog), per archived response": { read: 12, written: 3 },
  "archive tick, idle": { read: 10 },
  "GET /api/surveys/:id/insights, 90 days folded": { read: 2_000 },
};
const MAX_CALLS_PER_INVOCATION = 45;
/** Requests of each GET whose CPU is sampled, after three unsampled ones. */
const CPU_REQUESTS = 20;
const INSPECTOR_PORT = 9241;

function body(i, now, overrides = {}) {
  const screens = [
    { ...EXAMPLE.survey_info.screens[0], answer: String(i % 11) },
    { ...EXAMPLE.survey_info.screens[1], answer: `reason ${i}` },
    { title: "Which platform do you use most?", type: "mcq", answer: ["ios", "android", "web"][i % 3] },
  ];
  return JSON.stringify({
    ...EXAMPLE,
    alert_id: `cost-${i}`,
    survey_id: SURVEYS[i % SURVEYS.length],
    timestamp: new Date(now - (i % 60) * DAY_MS - (i % 86_400) * 1000).toISOString(),
    user: { user_system_id: `user-${i % USERS}`, parameters: { plan: i % 2 ? "pro" : "free" } },
    survey_info: { ...EXAMPLE.survey_info, screens },
    ...overrides,
  });
}

async function measureSize(size, scriptPath) {
  const destination = await spawnDestination();
  const worker = await startWorker({
    scriptPath,
    bindings: {
      WEBHOOK_SECRET: SECRET,
      ADMIN_TOKEN: ADMIN,
      RETRY_BASE_SECONDS: "1",
      ARCHIVE_DELAY_MINUTES: "0",
      DESTINATIONS: JSON.stringify([{ name: "local", url: `http://127.0.0.1:${destination.port}/hook` }]),
    },
    consumers: {
      // Larger batches than wrangler.toml's 10 only to seed faster; the measured alert travels alone.
      "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1, maxRetries: 10, deadLetterQueue: "oneflow-alerts-dlq" },
      "oneflow-alerts-dlq": { maxBatchSize: 10, maxBatchTimeout: 1 },
    },
    setupSql: schemaStatements(),
    r2Buckets: { ARCHIVE: "oneflow-archive" },
    inspectorPort: INSPECTOR_PORT,
  });
  const profiler = await cpuProfiler(INSPECTOR_PORT, { scriptName: basename(scriptPath) });
  const base = worker.url;
  const hook = `${base}/webhooks/1flow/${SECRET}`;
  const post = (text) => fetch(hook, { method: "POST", headers: { "content-type": "application/json" }, body: text });
  const now = Date.now();

  log(`[${size}] seeding ${size} responses through the webhook ...`);
  let next = 0;
  await Promise.all(
    Array.from({ length: CONCURRENCY }, async () => {
      while (next < size) {
        const i = next++;
        const res = await post(body(i, now));
        if (res.status !== 200) throw new Error(`seed ${i}: ${res.status}`);
        await res.arrayBuffer();
        if (i > 0 && i % 10_000 === 0) log(`  ${i} sent`);
      }
    }),
  );
  log(`[${size}] waiting for the consumer to deliver them ...`);
  for (let waited = 0; ; waited++) {
    const delivered = Object.keys((await destination.stats()).by_id).length;
    if (delivered >= size) break;
    if (waited % 10 === 9) log(`  ${delivered} of ${size} delivered`);
    await sleep(1_000);
  }

  const meter = async (method = "GET") => (await fetch(`${base}/__meter`, { method })).json();
  /** Waits until D1 has been quiet for a while (the Queue and the consumer are done). */
  const settle = async () => {
    let last = -1;
    for (;;) {
      const { calls } = await meter();
      if (calls === last) return;
      last = calls;
      await sleep(1_500);
    }
  };
  await settle();
  const results = [];
  /** Measures one operation's D1 cost; with `cpu` (a request to repeat), its CPU per request too. */
  const measure = async (name, run, per = null, cpu = null) => {
    await meter("DELETE");
    const extra = await run();
    await settle();
    const cost = await meter();
    const divisor = per === null ? 1 : extra;
    // Where the reads went, for the operations that read the most.
    const top = Object.entries(cost.by_sql ?? {}).sort((a, b) => b[1] - a[1]).slice(0, 3);
    const row = {
      operation: name,
      calls: cost.calls,
      statements: cost.statements,
      rows_read: Math.round((cost.rows_read / divisor) * 10) / 10,
      rows_written: Math.round((cost.rows_written / divisor) * 10) / 10,
      max_calls_per_invocation: cost.max_calls_per_invocation,
      top_reads: top.map(([sql, rows]) => ({ sql, rows })),
    };
    if (cpu !== null) {
      for (let i = 0; i < 3; i++) await cpu();
      await settle();
      const us = await profiler.busy(async () => {
        for (let i = 0; i < CPU_REQUESTS; i++) await cpu();
      });
      const ms = (x) => Math.round(x / CPU_REQUESTS / 10) / 100;
      // Our Worker's isolate (what the platform bills), and apart the D1 simulator, which it does not.
      row.cpu_ms = ms(us.worker.total);
      row.script_ms = ms(us.worker.script);
      row.runtime_ms = ms(us.worker.runtime);
      row.native_ms = ms(us.worker.native + us.worker.other);
      row.simulator_ms = ms(us.simulator);
    }
    const budget = BUDGETS[name] ?? (name.startsWith("GET ") ? READ_PAGE : {});
    row.within_budget =
      (budget.read === undefined || row.rows_read <= budget.read) &&
      (budget.written === undefined || row.rows_written <= budget.written) &&
      row.max_calls_per_invocation <= MAX_CALLS_PER_INVOCATION;
    results.push(row);
  };
  const waitDelivered = async (id, times = 1) => {
    for (;;) {
      if (((await destination.stats()).by_id[id] ?? 0) >= times) return;
      await sleep(200);
    }
  };

  const fresh = body(size + 1, now, { alert_id: `cost-new-${size}`, timestamp: new Date().toISOString() });
  await measure("new alert, webhook + consumer", async () => {
    await (await post(fresh)).arrayBuffer();
    await waitDelivered(`cost-new-${size}`);
  });
  await measure("duplicate", async () => void (await (await post(fresh)).arrayBuffer()));
  await measure("conflict", async () => void (await (await post(fresh.replace('"windows"', '"ios"'))).arrayBuffer()));
  await measure("invalid", async () => void (await (await post(`{"alert_id":"broken-${size}"`)).arrayBuffer()));
  await measure("cron tick, idle", async () => void (await fetch(`${base}/__cron`, { method: "POST" })).arrayBuffer());
  await measure("cron tick, RETENTION_DAYS set, nothing to delete", async () =>
    void (await fetch(`${base}/__cron?retention_days=365`, { method: "POST" })).arrayBuffer(),
  );

  const auth = { authorization: `Bearer ${ADMIN}` };
  const login = await fetch(`${base}/dashboard/login`, {
    method: "POST",
    redirect: "manual",
    headers: { "content-type": "application/x-www-form-urlencoded", origin: base },
    body: new URLSearchParams({ token: ADMIN }).toString(),
  });
  const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0];
  if (!cookie) throw new Error(`dashboard sign-in failed: ${login.status}`);
  const get = (path, headers) => async () => {
    const res = await fetch(`${base}${path}`, { headers, redirect: "manual" });
    if (res.status !== 200) throw new Error(`${path}: ${res.status}`);
    return res.text();
  };
  const firstPage = await (await fetch(`${base}/api/alerts`, { headers: auth })).json();
  const id = firstPage.alerts[0].alert_id;
  for (const [path, headers] of [
    ["/healthz", {}], // the baseline of the CPU column: the Worker's routing and one D1 call
    ["/dashboard", { cookie }],
    ["/dashboard/responses", { cookie }],
    [`/dashboard/responses/${id}`, { cookie }],
    [`/dashboard/surveys/${SURVEYS[0]}`, { cookie }],
    ["/dashboard/quarantine", { cookie }],
    ["/dashboard/deliveries", { cookie }],
    ["/dashboard/destinations", { cookie }],
    ["/api/destinations", auth],
    ["/api/alerts", auth],
    [`/api/alerts?cursor=${firstPage.next_cursor}`, auth],
    [`/api/alerts?survey_id=${SURVEYS[1]}`, auth],
    ["/api/alerts?user_system_id=user-7", auth],
    [`/api/alerts/${id}`, auth],
    ["/api/surveys", auth],
    [`/api/surveys/${SURVEYS[0]}/nps?bucket=week`, auth],
    ["/api/rejected", auth],
  ]) {
    await measure(`GET ${path.replace(/cursor=[^&]+/, "cursor=…").replace(id, ":alert_id")}`, get(path, headers), null, get(path, headers));
  }
  // Insights of 90 days: counted live before the cron has folded any day, then from the folded days.
  const insights = get(`/api/surveys/${SURVEYS[0]}/insights`, auth);
  await measure("GET /api/surveys/:id/insights, 90 days, no day folded yet", insights);
  for (let i = 0; i < 40; i++) await (await fetch(`${base}/__cron`, { method: "POST" })).arrayBuffer();
  await measure("GET /api/surveys/:id/insights, 90 days folded", insights, null, insights);
  for (const days of [90, 7]) {
    const page = get(`/dashboard/surveys/${SURVEYS[0]}?days=${days}`, { cookie });
    await measure(`GET /dashboard/surveys/:id?days=${days}, folded`, page, null, page);
  }
  await measure(
    "export, per exported row",
    async () => {
      let rows = 0;
      let path = `/api/export.csv?survey_id=${SURVEYS[0]}`;
      while (path) {
        const res = await fetch(`${base}${path}`, { headers: auth });
        rows += (await res.text()).split("\r\n").length - 2;
        path = /<([^>]+)>; rel="next"/.exec(res.headers.get("link") ?? "")?.[1] ?? null;
      }
      return rows;
    },
    "row",
  );
  // Destinations as data: what managing one costs (the list is read from D1 at most every 30 s).
  const json = { ...auth, "content-type": "application/json" };
  const dest = `${base}/api/destinations/bench-managed`;
  const entry = { url: "https://bench.invalid/hook", format: "jsonata", transform: '{ "text": "NPS " & $string(answers[type="nps"].value) }' };
  await measure("PUT /api/destinations/:name (create)", async () => void (await fetch(dest, { method: "PUT", headers: json, body: JSON.stringify(entry) })).arrayBuffer());
  await measure("POST /api/destinations/:name/preview", async () =>
    void (await fetch(`${dest}/preview`, { method: "POST", headers: json, body: JSON.stringify({ alert_id: id }) })).arrayBuffer(),
  );
  await measure("PATCH /api/destinations/:name", async () => void (await fetch(dest, { method: "PATCH", headers: json, body: '{"enabled":false}' })).arrayBuffer());
  await measure("DELETE /api/destinations/:name", async () => void (await fetch(dest, { method: "DELETE", headers: auth })).arrayBuffer());
  // The archive: one tick of the backlog (default 300 a tick), per archived response; then the
  // rest caught up unmeasured (10,000 a tick), an idle tick, the manifest, and the erasure below
  // rewrites the user's parts.
  const archive = async (rows) => (await fetch(`${base}/__archive${rows ? `?rows=${rows}` : ""}`, { method: "POST" })).json();
  await measure("archive tick (300 of the backlog), per archived response", async () => (await archive()).archived, "response");
  for (let i = 0; i < 100 && (await archive(10_000)).more; i++);
  await settle();
  await measure("archive tick, idle", async () => void (await archive()));
  await measure("GET /api/archive (a page of the manifest)", get("/api/archive", auth));
  await measure("one user's erasure", async () => void (await fetch(`${base}/api/users/user-7`, { method: "DELETE", headers: auth })).arrayBuffer());
  await measure("one replay (forced), API + consumer", async () => {
    await (await fetch(`${base}/api/alerts/${id}/replay`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: '{"force":true}' })).arrayBuffer();
    await waitDelivered(id, 2);
  });

  // Backfill: a destination added now is sent the whole history, through the Queue, at the
  // consumer's pace; per backfilled response (its page, its row, its delivery, its counters).
  await measure(
    "backfill, per backfilled response",
    async () => {
      const put = await fetch(`${base}/api/destinations/bench-history`, { method: "PUT", headers: json, body: JSON.stringify({ url: `http://127.0.0.1:${destination.port}/history` }) });
      if (put.status !== 201) throw new Error(`backfill destination: ${put.status}`);
      await sleep(31_000); // every isolate's destinations cache has it
      const started = await fetch(`${base}/api/destinations/bench-history/backfill`, { method: "POST", headers: json, body: '{"since":"1970-01-01T00:00:00Z"}' });
      if (started.status !== 202) throw new Error(`backfill: ${started.status}`);
      for (let waited = 0; ; waited++) {
        const { backfill } = await (await fetch(`${base}/api/destinations/bench-history/backfill`, { headers: auth })).json();
        if (backfill.state !== "running") return backfill.total;
        if (waited % 30 === 29) log(`  backfill: ${backfill.delivered} of ${backfill.total ?? `${backfill.sent}+`} delivered`);
        await sleep(1_000);
      }
    },
    "response",
  );
  profiler.close();
  await worker.mf.dispose();
  destination.child.kill();
  return results;
}

log("bundling the metered Worker with wrangler deploy --dry-run ...");
const scriptPath = bundle(join(ROOT, "bench/.build/cost"), ["bench/cost-worker.ts"], "cost-worker.js");
const report = { date: new Date().toISOString(), budgets: { ...BUDGETS, "every GET": READ_PAGE, max_calls_per_invocation: MAX_CALLS_PER_INVOCATION }, sizes: {} };
for (const size of SIZES) report.sizes[size] = await measureSize(size, scriptPath);

const header = ["operation", ...SIZES.flatMap((s) => [`read @${s}`, `written @${s}`, `CPU ms @${s}`]), "calls (max/inv.)", "budget"];
const lines = [header.join(" | "), header.map(() => "---").join(" | ")];
const names = report.sizes[SIZES[0]].map((r) => r.operation);
for (const name of names) {
  const rows = SIZES.map((s) => report.sizes[s].find((r) => r.operation === name));
  const ok = rows.every((r) => r?.within_budget);
  lines.push(
    [
      name,
      ...rows.flatMap((r) => [r?.rows_read ?? "–", r?.rows_written ?? "–", r?.cpu_ms ?? "–"]),
      `${rows.at(-1)?.calls ?? "–"} (${rows.at(-1)?.max_calls_per_invocation ?? "–"})`,
      ok ? "ok" : "OVER",
    ].join(" | "),
  );
}
console.log(lines.map((l) => `| ${l} |`).join("\n"));
writeFileSync(values.out, `${JSON.stringify(report, null, 2)}\n`);
log(`wrote ${values.out}`);
const over = names.filter((name) => SIZES.some((s) => !report.sizes[s].find((r) => r.operation === name)?.within_budget));
if (over.length > 0) log(`over budget: ${over.join("; ")}`);
