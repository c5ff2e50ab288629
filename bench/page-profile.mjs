// node bench/page-profile.mjs [--rounds 3] [--requests 20] [--top 0] [--script path ...] [path ...]: the CPU per
// request of dashboard pages (default: /healthz, /dashboard and a survey page, 90 days folded, --stored 1000),
// sampled through workerd's inspector (IV=µs sets the sampling interval) and attributed by isolate and script
// (bench/lib.mjs, cpuProfiler): our Worker's isolate (what the platform bills) as its bundle's own JS, workerd's
// JS in it (the D1 binding, tracing) and native work; Miniflare's D1 simulator and entry Worker apart (on the
// platform they are not the Worker's CPU). Each round profiles `requests` requests of every path in turn; the
// figures are the rounds' medians, with their range. Given --script more than once (a bundle before and after a
// change), the bundles run side by side and take turns each round, so a busy machine weighs on both alike.
// --top N lists each path's N functions with the most self time. Needs a bundle: `npm run bench:cost` builds
// bench/.build/cost, or only its first step: `npx wrangler deploy --dry-run --outdir bench/.build/cost bench/cost-worker.ts`.
import { basename, join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { cpuProfiler, EXAMPLE, ROOT, schemaStatements, SECRET, startWorker } from "./lib.mjs";

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    rounds: { type: "string", default: "3" },
    requests: { type: "string", default: "20" },
    top: { type: "string", default: "0" },
    stored: { type: "string", default: "1000" },
    script: { type: "string", multiple: true, default: [join(ROOT, "bench/.build/cost/cost-worker.js")] },
  },
});
const ROUNDS = Number(values.rounds);
const REQUESTS = Number(values.requests);
const PORT = 9251;
const STORED = Number(values.stored);
const paths = positionals.length > 0 ? positionals : ["/healthz", "/dashboard", `/dashboard/surveys/${EXAMPLE.survey_id}?days=90`];

/**
 * One Worker (a bundle) in its own Miniflare, seeded alike: `--stored` responses (1,000) of one survey over
 * 60 days, 1/60 of them today (spread over its hours so far: folded up to this hour, the rest counted live), the
 * other days folded; then signed in.
 */
async function start(scriptPath, port) {
  const { mf, url } = await startWorker({ scriptPath, bindings: { WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: "a", DESTINATIONS: "[]" }, consumers: { "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1 } }, setupSql: schemaStatements(), inspectorPort: port });
  const now = Date.now();
  // Today's responses spread over the hours gone by (the cron folds them up to this hour; the rest is counted live).
  const today = now - (now % 86_400_000);
  let next = 0;
  await Promise.all(Array.from({ length: 20 }, async () => { while (next < STORED) { const i = next++; const screens = [{ ...EXAMPLE.survey_info.screens[0], answer: String(i % 11) }, { ...EXAMPLE.survey_info.screens[1], answer: `reason ${i}` }, { title: "Which platform?", type: "mcq", answer: ["ios","android","web"][i % 3] }]; await (await fetch(`${url}/webhooks/1flow/${SECRET}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...EXAMPLE, alert_id: `p-${i}`, timestamp: new Date(i % 60 === 0 ? today + ((i / 60) * 7_919_000) % Math.max(1, now - today) : now - (i % 60) * 86400000).toISOString(), survey_info: { ...EXAMPLE.survey_info, screens } }) })).arrayBuffer(); } }));
  // A tick folds up to 7 days of up to 5,000 responses, else one day.
  for (let i = 0; i < 40 + Math.ceil(STORED / 1000); i++) await (await fetch(`${url}/__cron`, { method: "POST" })).arrayBuffer();
  const login = await fetch(`${url}/dashboard/login`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", origin: url }, body: "token=a" });
  const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0];
  const get = (path) => async () => { const r = await fetch(`${url}${path}`, { headers: { cookie } }); await r.text(); if (r.status !== 200) throw new Error(`${path}: ${r.status}`); };
  for (const path of paths) for (let i = 0; i < 5; i++) await get(path)();
  const profiler = await cpuProfiler(port, { scriptName: basename(scriptPath), interval: Number(process.env.IV ?? 100) });
  return { mf, get, profiler, name: values.script.length > 1 ? scriptPath.split("/").slice(-2).join("/") : "", rounds: new Map(paths.map((p) => [p, []])), functions: new Map(paths.map((p) => [p, new Map()])) };
}
// Several bundles (--script a --script b) run side by side and take turns each round: compared under the same load.
const workers = [];
for (const [i, script] of values.script.entries()) workers.push(await start(resolve(script), PORT + i));
const ms = (us) => us / REQUESTS / 1000;
for (let round = 0; round < ROUNDS; round++) {
  for (const w of workers) {
    for (const path of paths) {
      const run = w.get(path);
      const t0 = performance.now();
      const b = await w.profiler.busy(async () => { for (let i = 0; i < REQUESTS; i++) await run(); });
      const wall = (performance.now() - t0) / REQUESTS;
      w.rounds.get(path).push({ wall, total: ms(b.worker.total), script: ms(b.worker.script), runtime: ms(b.worker.runtime), native: ms(b.worker.native + b.worker.other), simulator: ms(b.simulator), entry: ms(b.entry), period: b.period });
      for (const [k, us] of b.functions) w.functions.get(path).set(k, (w.functions.get(path).get(k) ?? 0) + us / ROUNDS);
    }
  }
}
for (const w of workers) {
  w.profiler.close();
  await w.mf.dispose();
}
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const cell = (xs) => (xs.length === 1 ? xs[0].toFixed(2) : `${median(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}–${Math.max(...xs).toFixed(2)})`);
const columns = [["total", "Worker isolate"], ["script", "its bundle's JS"], ["runtime", "workerd's JS in it (D1 binding)"], ["native", "native, GC"], ["simulator", "D1 simulator"], ["entry", "Miniflare entry"], ["wall", "wall"]];
const periods = workers.flatMap((w) => [...w.rounds.values()].flat().map((r) => r.period));
console.log(`ms per request, median of ${ROUNDS} rounds of ${REQUESTS} requests (range); sampling period ${median(periods)} µs`);
console.log(`| path | ${columns.map(([, label]) => label).join(" | ")} |`);
console.log(`| --- | ${columns.map(() => "---").join(" | ")} |`);
for (const w of workers) for (const [path, rs] of w.rounds) console.log(`| ${w.name ? `${w.name} ` : ""}${path} | ${columns.map(([key]) => cell(rs.map((r) => r[key]))).join(" | ")} |`);
for (const w of Number(values.top) > 0 ? workers : []) {
  for (const path of paths) {
    console.log(`\n${w.name ? `${w.name} ` : ""}${path}: the ${values.top} functions of our isolate with the most self time, ms per request`);
    for (const [k, us] of [...w.functions.get(path)].sort((a, b) => b[1] - a[1]).slice(0, Number(values.top))) console.log(`${ms(us).toFixed(2)}  ${k}`);
  }
}
