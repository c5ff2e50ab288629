// npm run bench [-- --connections 10 --duration 10]
//
// Runs the bundled Worker inside Miniflare (the real workerd, local D1 and Queue)
// and drives it with autocannon. In the same run it measures three baselines on
// the same runtime: floor-200, floor-d1 and naive (bench/baselines). Prints one
// table of ratios and writes it to bench/results/latest.json.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { bundle, EXAMPLE, newAlertBody, ROOT, schemaStatements, SECRET, startWorker, workerdRssMiB } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    connections: { type: "string", default: "10" },
    duration: { type: "string", default: "10" },
  },
});
const connections = Number(values.connections);
const duration = Number(values.duration);
const build = join(ROOT, "bench/.build");
const PATH = `/webhooks/1flow/${SECRET}`;

function log(line) {
  process.stderr.write(`${line}\n`);
}

/** Drives one workload; `body(i)` makes the i-th request body; `expected` are the statuses that count as success. */
async function drive(url, { body, expected = [200] }) {
  const statuses = new Map();
  let counter = 0;
  const rssSamples = [];
  const sampler = setInterval(() => rssSamples.push(workerdRssMiB()), 250);
  const instance = autocannon({
    url: `${url}${PATH}`,
    connections,
    duration,
    method: "POST",
    headers: { "content-type": "application/json" },
    requests: [
      {
        setupRequest: (req) => ({ ...req, body: body(counter++) }),
      },
    ],
  });
  instance.on("response", (_client, status) => statuses.set(status, (statuses.get(status) ?? 0) + 1));
  const result = await instance;
  clearInterval(sampler);
  let unexpected = result.errors + result.timeouts;
  for (const [status, n] of statuses) if (!expected.includes(status)) unexpected += n;
  return {
    requests_per_second: result.requests.average,
    p50_ms: result.latency.p50,
    p99_ms: result.latency.p99,
    max_ms: result.latency.max,
    requests: result.requests.total,
    errors: unexpected,
    statuses: Object.fromEntries(statuses),
    peak_rss_mib: Math.round(Math.max(0, ...rssSamples)),
  };
}

const runId = Date.now().toString(36);
const rows = [];
async function measure(name, worker, workload) {
  log(`${name}: ${connections} connections for ${duration} s`);
  const row = { name, ...(await drive(worker.url, workload)) };
  log(`  ${Math.round(row.requests_per_second)} req/s, p50 ${row.p50_ms} ms, p99 ${row.p99_ms} ms, errors ${row.errors}`);
  rows.push(row);
}

log("bundling with wrangler deploy --dry-run ...");
const oursScript = bundle(join(build, "oneflow"));
const naiveScript = bundle(join(build, "naive"), ["--config", "bench/baselines/wrangler.naive.toml"], "naive.js");
const bundleGzipBytes = gzipSync(readFileSync(oursScript)).byteLength;

// Baselines first, each in a fresh runtime with a fresh database.
{
  const floor200 = await startWorker({ scriptPath: join(ROOT, "bench/baselines/floor-200.js") });
  await measure("floor-200", floor200, { body: (i) => newAlertBody(`f200-${runId}-${i}`) });
  await floor200.mf.dispose();

  const floorD1 = await startWorker({
    scriptPath: join(ROOT, "bench/baselines/floor-d1.js"),
    setupSql: ["CREATE TABLE floor (alert_id TEXT PRIMARY KEY, payload TEXT NOT NULL)"],
  });
  await measure("floor-d1", floorD1, { body: (i) => newAlertBody(`fd1-${runId}-${i}`) });
  await floorD1.mf.dispose();

  const naive = await startWorker({
    scriptPath: naiveScript,
    setupSql: ["CREATE TABLE naive_alerts (alert_id TEXT PRIMARY KEY, payload TEXT NOT NULL)"],
  });
  await measure("naive", naive, { body: (i) => newAlertBody(`naive-${runId}-${i}`) });
  await naive.mf.dispose();
}

// Our Worker, with every guarantee on and its queue consumer running (no destinations).
// Each workload gets a fresh runtime and database, as each baseline does.
async function startOurs() {
  return startWorker({
    scriptPath: oursScript,
    bindings: { WEBHOOK_SECRET: SECRET, MAX_BODY_BYTES: "65536" },
    consumers: { "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1 } },
    setupSql: schemaStatements(),
  });
}
const DUPLICATES = 200;
const dupBodies = Array.from({ length: DUPLICATES }, (_, i) => newAlertBody(`dup-${runId}-${i}`));
async function storeDuplicates(worker) {
  for (const body of dupBodies) {
    await fetch(`${worker.url}${PATH}`, { method: "POST", headers: { "content-type": "application/json" }, body });
  }
  await new Promise((r) => setTimeout(r, 2_000)); // let the consumer take their messages
}
const invalid = (i) => JSON.stringify({ ...EXAMPLE, alert_id: `bad-${runId}-${i}`, timestamp: "yesterday" });
const ourWorkloads = [
  ["ours: new alerts", { body: (i) => newAlertBody(`new-${runId}-${i}`) }, false],
  ["ours: duplicates", { body: (i) => dupBodies[i % DUPLICATES] }, true],
  ["ours: invalid (422)", { body: invalid, expected: [422] }, false],
  ["ours: 50/50 new+dup", { body: (i) => (i % 2 === 0 ? newAlertBody(`mix-${runId}-${i}`) : dupBodies[i % DUPLICATES]) }, true],
];
for (const [name, workload, needsDuplicates] of ourWorkloads) {
  const ours = await startOurs();
  if (needsDuplicates) await storeDuplicates(ours);
  await measure(name, ours, workload);
  await ours.mf.dispose();
}

// CPU cost of validate + normalise per payload, in this Node (same V8 as workerd).
const { parsePayload } = await import("../src/ingest/payload.ts");
const sample = JSON.stringify(EXAMPLE);
const ITERATIONS = 50_000;
for (let i = 0; i < 5_000; i++) parsePayload(JSON.parse(sample)); // warm up
let started = performance.now();
for (let i = 0; i < ITERATIONS; i++) JSON.parse(sample);
const parseMicros = ((performance.now() - started) * 1000) / ITERATIONS;
started = performance.now();
for (let i = 0; i < ITERATIONS; i++) parsePayload(JSON.parse(sample));
const validateMicros = ((performance.now() - started) * 1000) / ITERATIONS - parseMicros;

const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
const floorD1 = byName["floor-d1"];
const naive = byName.naive;
for (const row of rows) {
  row.rps_vs_floor_d1 = row.requests_per_second / floorD1.requests_per_second;
  row.p99_vs_floor_d1 = row.p99_ms / Math.max(floorD1.p99_ms, 1);
  row.rps_vs_naive = row.requests_per_second / naive.requests_per_second;
}

const fmt = (n, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
const header = ["workload", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "rss MiB", "req/s ×floor-d1", "p99 ×floor-d1", "req/s ×naive"];
const table = rows.map((r) => [
  r.name,
  fmt(r.requests_per_second, 0),
  fmt(r.p50_ms, 0),
  fmt(r.p99_ms, 0),
  fmt(r.max_ms, 0),
  String(r.errors),
  String(r.peak_rss_mib),
  fmt(r.rps_vs_floor_d1),
  fmt(r.p99_vs_floor_d1),
  fmt(r.rps_vs_naive),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const row of table) console.log(line(row));
console.log("");
console.log(`bundle: ${(bundleGzipBytes / 1024).toFixed(1)} KiB gzipped`);
console.log(`validate+normalise: ${validateMicros.toFixed(2)} µs per payload (JSON.parse alone: ${parseMicros.toFixed(2)} µs)`);
console.log(`${connections} connections, ${duration} s per workload, Node ${process.version}, ${new Date().toISOString()}`);

mkdirSync(join(ROOT, "bench/results"), { recursive: true });
writeFileSync(
  join(ROOT, "bench/results/latest.json"),
  `${JSON.stringify(
    {
      at: new Date().toISOString(),
      connections,
      duration_s: duration,
      node: process.version,
      bundle_gzip_bytes: bundleGzipBytes,
      validate_normalise_us: validateMicros,
      json_parse_us: parseMicros,
      rows,
    },
    null,
    2,
  )}\n`,
);
