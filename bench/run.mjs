// npm run bench [-- --connections 10 --duration 5 --rounds 3]
//
// Runs the bundled Worker inside Miniflare (the real workerd, local D1 and Queue)
// and drives it with autocannon. In the same run it measures four baselines on
// the same runtime: floor-200, floor-d1, floor-schema and naive (bench/baselines). Every
// workload runs once per round, rounds interleaved so that a slow minute of a
// shared machine hits all rows alike; each figure is the median over the rounds.
// Prints one table of ratios and writes it to bench/results/latest.json.
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { dirname, isAbsolute, join } from "node:path";
import { parseArgs } from "node:util";
import { gzipSync } from "node:zlib";
import autocannon from "autocannon";
import { bundle, EXAMPLE, newAlertBody, ROOT, schemaStatements, SECRET, startWorker, workerdCpuMs, workerdRssMiB } from "./lib.mjs";

// --profile: a CPU profile of the request path instead (bench/profile.mjs writes bench/results/profile.md).
if (process.argv.includes("--profile")) {
  await import("./profile.mjs");
  process.exit(0);
}
// --latency: delivery latency and pacing instead (bench/latency.mjs writes bench/results/latency.md).
if (process.argv.includes("--latency")) {
  await import("./latency.mjs");
  process.exit(0);
}

const { values } = parseArgs({
  options: {
    profile: { type: "boolean" },
    latency: { type: "boolean" },
    connections: { type: "string", default: "10" },
    duration: { type: "string", default: "5" },
    rounds: { type: "string", default: "3" },
    // Comma-separated workload names to run (floor-d1, floor-schema and naive always run: the ratios need them).
    only: { type: "string" },
    // Comma-separated checkouts of this project (git worktrees) whose Worker runs as one more
    // workload each, "variant <dir>: new alerts", in the same rounds: a candidate or a removal
    // measured against this checkout and the baselines of the same run.
    variants: { type: "string" },
    out: { type: "string", default: "bench/results/latest.json" },
  },
});
const connections = Number(values.connections);
const duration = Number(values.duration);
const rounds = Number(values.rounds);
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
  const cpuBefore = workerdCpuMs();
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
  // What was still running for these requests after the last reply (the enqueue, the consumer) counts too.
  await new Promise((r) => setTimeout(r, 1_500));
  const cpuMs = workerdCpuMs() - cpuBefore;
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
    cpu_ms_per_request: result.requests.total > 0 ? cpuMs / result.requests.total : Number.NaN,
  };
}

const runId = Date.now().toString(36);
/** Every round's figures, by workload name. */
const samples = new Map();
let round = 0;
async function measure(name, worker, workload) {
  log(`round ${round + 1}/${rounds} ${name}: ${connections} connections for ${duration} s`);
  const sample = await drive(worker.url, workload);
  log(`  ${Math.round(sample.requests_per_second)} req/s, p50 ${sample.p50_ms} ms, p99 ${sample.p99_ms} ms, errors ${sample.errors}, ${sample.cpu_ms_per_request.toFixed(2)} ms of workerd CPU a request`);
  samples.set(name, [...(samples.get(name) ?? []), sample]);
}

function median(values) {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
}

log("bundling with wrangler deploy --dry-run ...");
const oursScript = bundle(join(build, "oneflow"));
const naiveScript = bundle(join(build, "naive"), ["--config", "bench/baselines/wrangler.naive.toml"], "naive.js");
const bundleGzipBytes = gzipSync(readFileSync(oursScript)).byteLength;

// Our Worker, with every guarantee on and its queue consumer running (no destinations).
function startOurs() {
  return startWorker({
    scriptPath: oursScript,
    bindings: { WEBHOOK_SECRET: SECRET, MAX_BODY_BYTES: "65536" },
    // NO_CONSUMER=1: without its queue consumer, to measure the consumer's share (docs/cost-and-performance.md).
    consumers: process.env.NO_CONSUMER ? {} : { "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1 } },
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

/** Every workload: how to start its runtime, and what to send. Each gets a fresh runtime and database. */
const workloads = [
  {
    name: "floor-200",
    start: () => startWorker({ scriptPath: join(ROOT, "bench/baselines/floor-200.js") }),
    body: (i) => newAlertBody(`f200-${runId}-${round}-${i}`),
  },
  {
    name: "floor-d1",
    start: () =>
      startWorker({
        scriptPath: join(ROOT, "bench/baselines/floor-d1.js"),
        setupSql: ["CREATE TABLE floor (alert_id TEXT PRIMARY KEY, payload TEXT NOT NULL)"],
      }),
    body: (i) => newAlertBody(`fd1-${runId}-${round}-${i}`),
  },
  {
    // The D1 work the contract needs (this project's alerts table and indexes, the survey's day), nothing else.
    name: "floor-schema",
    start: () => startWorker({ scriptPath: join(ROOT, "bench/baselines/floor-schema.js"), setupSql: schemaStatements() }),
    body: (i) => newAlertBody(`fsc-${runId}-${round}-${i}`),
  },
  {
    name: "naive",
    start: () =>
      startWorker({
        scriptPath: naiveScript,
        setupSql: ["CREATE TABLE naive_alerts (alert_id TEXT PRIMARY KEY, payload TEXT NOT NULL)"],
      }),
    body: (i) => newAlertBody(`naive-${runId}-${round}-${i}`),
  },
  { name: "ours: new alerts", start: startOurs, body: (i) => newAlertBody(`new-${runId}-${round}-${i}`) },
  { name: "ours: duplicates", start: startOurs, duplicates: true, body: (i) => dupBodies[i % DUPLICATES] },
  { name: "ours: invalid (422)", start: startOurs, body: invalid, expected: [422] },
  {
    name: "ours: 50/50 new+dup",
    start: startOurs,
    duplicates: true,
    body: (i) => (i % 2 === 0 ? newAlertBody(`mix-${runId}-${round}-${i}`) : dupBodies[i % DUPLICATES]),
  },
];

for (const dir of values.variants?.split(",").map((s) => s.trim()).filter(Boolean) ?? []) {
  const root = isAbsolute(dir) ? dir : join(ROOT, dir);
  const name = root.split("/").filter(Boolean).at(-1);
  log(`bundling the variant ${name} ...`);
  const scriptPath = bundle(join(build, `variant-${name}`), [], "index.js", root);
  workloads.push({
    name: `variant ${name}: new alerts`,
    start: () =>
      startWorker({
        scriptPath,
        bindings: { WEBHOOK_SECRET: SECRET, MAX_BODY_BYTES: "65536" },
        // A checkout named …-noconsumer runs without its queue consumer (the consumer's share, by removal).
        consumers: process.env.NO_CONSUMER || name.endsWith("-noconsumer") ? {} : { "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1 } },
        setupSql: schemaStatements(root),
      }),
    body: (i) => newAlertBody(`var-${name}-${runId}-${round}-${i}`),
  });
}

const only = values.only?.split(",").map((s) => s.trim());
const BASELINES = ["floor-d1", "floor-schema", "naive"];
const selected = workloads.filter((w) => !only || only.includes(w.name) || BASELINES.includes(w.name) || w.name.startsWith("variant "));
for (round = 0; round < rounds; round++) {
  for (const workload of selected) {
    const worker = await workload.start();
    if (workload.duplicates) await storeDuplicates(worker);
    await measure(workload.name, worker, workload);
    await worker.mf.dispose();
  }
}

const rows = selected.map(({ name }) => {
  const runs = samples.get(name);
  const pick = (key) => median(runs.map((r) => r[key]));
  return {
    name,
    requests_per_second: pick("requests_per_second"),
    p50_ms: pick("p50_ms"),
    p99_ms: pick("p99_ms"),
    max_ms: Math.max(...runs.map((r) => r.max_ms)),
    errors: runs.reduce((n, r) => n + r.errors, 0),
    requests: runs.reduce((n, r) => n + r.requests, 0),
    peak_rss_mib: Math.max(...runs.map((r) => r.peak_rss_mib)),
    cpu_ms_per_request: pick("cpu_ms_per_request"),
    rounds: runs,
  };
});

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

// CPU cost of one JSONata evaluation (the recipes' transforms over the example), in this Node:
// the free plan allows 10 ms of CPU per invocation, a consumer batch may evaluate dozens.
const { evaluate } = await import("../src/fanout/jsonata.ts");
const { normalisedAlert } = await import("../src/fanout/json-format.ts");
const parsedExample = parsePayload(JSON.parse(sample));
const input = normalisedAlert({ ...parsedExample.alert, received_at: new Date().toISOString(), payload: sample });
const transformMicros = {};
for (const recipe of ["discord", "teams", "hubspot", "linear", "intercom"]) {
  const { transform } = JSON.parse(readFileSync(join(ROOT, `examples/recipes/${recipe}.json`), "utf8"));
  for (let i = 0; i < 500; i++) await evaluate(transform, input); // warm up, and compile once
  const t0 = performance.now();
  const N = 5_000;
  for (let i = 0; i < N; i++) await evaluate(transform, input);
  transformMicros[recipe] = ((performance.now() - t0) * 1000) / N;
}
// A runaway expression, stopped at its step bound: the most one evaluation can cost.
const RUNAWAY = "( $f := function($n) { $f($n + 1) }; $f(0) )";
for (let i = 0; i < 30; i++) await evaluate(RUNAWAY, input);
let t1 = performance.now();
for (let i = 0; i < 50; i++) await evaluate(RUNAWAY, input);
const runawayMs = (performance.now() - t1) / 50;

// CPU of the archive's tick per 1,000 responses (three screens each): rows built from what
// D1 returns (with the user's SHA-256 that ingest stored), and both Parquet parts encoded (hyparquet-writer, snappy);
// and of one erasure rewrite (a 500-row part read, filtered and written again). The default
// ARCHIVE_ROWS_PER_TICK is chosen from this against the free plan's 10 ms.
const { answerRows, answersParquet, responseRow, responsesParquet, withoutAlerts } = await import("../src/archive/parquet.ts");
const { sha256Hex } = await import("../src/hash.ts");
const archiveSources = await Promise.all(Array.from({ length: 1_000 }, async (_, i) => {
  const body = JSON.stringify({ ...JSON.parse(sample), alert_id: `archive-${i}` });
  const alert = parsePayload(JSON.parse(body)).alert;
  const answers = [...alert.answers, { position: 2, title: "Which platform?", type: "mcq", answer: "ios", value: null }];
  return {
    ...alert,
    received_at: alert.submitted_at,
    payload: body,
    answers_json: JSON.stringify(answers.map(({ title, type, answer, value }) => ({ title, type, answer, value }))),
    // As D1 returns it: ingest stored the hash it computed for the erased-user check.
    user_sha256: alert.user_system_id === null ? null : await sha256Hex(alert.user_system_id),
  };
}));
const encodeArchive = async (sources) => {
  const responses = [];
  const answers = [];
  for (const source of sources) {
    const rows = answerRows(source);
    responses.push(responseRow(source, rows));
    answers.push(...rows);
    if (source.user_system_id !== null && source.user_sha256 === null) await sha256Hex(source.user_system_id);
  }
  return [responsesParquet(responses), answersParquet(answers)];
};
for (let i = 0; i < 5; i++) await encodeArchive(archiveSources); // warm up
let t2 = performance.now();
const ARCHIVE_ROUNDS = 20;
let archiveBytes = 0;
for (let i = 0; i < ARCHIVE_ROUNDS; i++) archiveBytes = (await encodeArchive(archiveSources)).reduce((n, b) => n + b.byteLength, 0);
const archiveMsPer1000 = (performance.now() - t2) / ARCHIVE_ROUNDS;
const [part500] = await encodeArchive(archiveSources.slice(0, 500));
const drop = new Set(["archive-7", "archive-77"]);
for (let i = 0; i < 5; i++) await withoutAlerts("responses", part500.buffer, drop);
t2 = performance.now();
for (let i = 0; i < ARCHIVE_ROUNDS; i++) await withoutAlerts("responses", part500.buffer, drop);
const rewriteMs = (performance.now() - t2) / ARCHIVE_ROUNDS;

const byName = Object.fromEntries(rows.map((r) => [r.name, r]));
const floorD1 = byName["floor-d1"];
const naive = byName.naive;
const floorSchema = byName["floor-schema"];
/** The median, lowest and highest of the per-round ratios of `key` (rounds ran interleaved, so each pair shared its minute). */
function perRound(row, base, key) {
  const ratios = row.rounds.map((r, i) => r[key] / Math.max(base.rounds[i]?.[key] ?? Number.NaN, key === "p99_ms" ? 1 : 0));
  return { median: median(ratios), min: Math.min(...ratios), max: Math.max(...ratios) };
}
for (const row of rows) {
  const vsFloorSchema = perRound(row, floorSchema, "requests_per_second");
  row.rps_vs_floor_d1 = perRound(row, floorD1, "requests_per_second").median;
  row.rps_vs_floor_schema = vsFloorSchema.median;
  row.rps_vs_floor_schema_range = [vsFloorSchema.min, vsFloorSchema.max];
  row.p99_vs_floor_d1 = perRound(row, floorD1, "p99_ms").median;
  row.rps_vs_naive = perRound(row, naive, "requests_per_second").median;
  // floor-schema's CPU a request over this workload's: the throughput ratio on cores it had to itself.
  const cpu = perRound(floorSchema, row, "cpu_ms_per_request");
  row.cpu_floor_schema_over_this = cpu.median;
  row.cpu_floor_schema_over_this_range = [cpu.min, cpu.max];
}

const fmt = (n, digits = 2) => (Number.isFinite(n) ? n.toFixed(digits) : "-");
const header = ["workload", "req/s", "p50 ms", "p99 ms", "max ms", "errors", "rss MiB", "req/s ×floor-d1", "req/s ×floor-schema", "p99 ×floor-d1", "req/s ×naive", "CPU ms/req", "floor-schema CPU ÷ this"];
const table = rows.map((r) => [
  r.name,
  fmt(r.requests_per_second, 0),
  fmt(r.p50_ms, 0),
  fmt(r.p99_ms, 0),
  fmt(r.max_ms, 0),
  String(r.errors),
  String(r.peak_rss_mib),
  fmt(r.rps_vs_floor_d1),
  fmt(r.rps_vs_floor_schema),
  fmt(r.p99_vs_floor_d1),
  fmt(r.rps_vs_naive),
  fmt(r.cpu_ms_per_request),
  fmt(r.cpu_floor_schema_over_this),
]);
const widths = header.map((h, i) => Math.max(h.length, ...table.map((row) => row[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(" | ")} |`;
console.log(line(header));
console.log(`|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`);
for (const row of table) console.log(line(row));
console.log("");
console.log("ratios: medians of the per-round ratios");
console.log(`bundle: ${(bundleGzipBytes / 1024).toFixed(1)} KiB gzipped`);
console.log(`validate+normalise: ${validateMicros.toFixed(2)} µs per payload (JSON.parse alone: ${parseMicros.toFixed(2)} µs)`);
console.log(
  `JSONata transform, one evaluation: ${Object.entries(transformMicros).map(([name, us]) => `${name} ${us.toFixed(1)} µs`).join(", ")} (the free plan: 10 ms of CPU per invocation); a runaway stopped at its bound: ${runawayMs.toFixed(2)} ms`,
);
console.log(
  `archive: ${archiveMsPer1000.toFixed(2)} ms of CPU per 1,000 responses (rows and both parts; ${(archiveBytes / 1024).toFixed(0)} KiB of Parquet), so ${Math.floor((10 / archiveMsPer1000) * 1000)} fit the free plan's 10 ms; an erasure rewrite of a 500-row part: ${rewriteMs.toFixed(2)} ms`,
);
console.log(
  `median of ${rounds} rounds, ${connections} connections, ${duration} s per workload and round, Node ${process.version}, ${new Date().toISOString()}`,
);

const out = isAbsolute(values.out) ? values.out : join(ROOT, values.out);
mkdirSync(dirname(out), { recursive: true });
writeFileSync(
  out,
  `${JSON.stringify(
    {
      at: new Date().toISOString(),
      connections,
      duration_s: duration,
      rounds,
      node: process.version,
      bundle_gzip_bytes: bundleGzipBytes,
      validate_normalise_us: validateMicros,
      json_parse_us: parseMicros,
      jsonata_transform_us: transformMicros,
      jsonata_runaway_ms: runawayMs,
      archive_ms_per_1000_responses: archiveMsPer1000,
      archive_bytes_per_1000_responses: archiveBytes,
      archive_rewrite_500_row_part_ms: rewriteMs,
      rows,
    },
    null,
    2,
  )}\n`,
);
