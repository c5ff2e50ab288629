// npm run bench -- --latency [--responses 200 --rate 20]: the time from the webhook's 200 to the
// destination receiving the request, with wrangler.toml's queue settings (max_batch_size 10,
// max_batch_timeout 2 s). Then the same burst to a destination limited to 5 requests a second
// (rate_limit), counting what it receives in each second. Writes bench/results/latency.md.
//
// What sets the latency: the enqueue's coalescing window (requests that arrive together share one
// sendBatch, ENQUEUE_WINDOW_MS after the first), the Queue's batching (a batch starts when 10
// messages wait or max_batch_timeout passed), and the consumer (claim, send, record).
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bundle, EXAMPLE, ROOT, schemaStatements, SECRET, spawnDestination, startWorker } from "./lib.mjs";

const { values } = parseArgs({
  options: { latency: { type: "boolean" }, responses: { type: "string", default: "200" }, rate: { type: "string", default: "20" } },
  strict: false,
});
const RESPONSES = Number(values.responses);
const RATE = Number(values.rate);
const log = (line) => process.stderr.write(`${line}\n`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const quantile = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];

log("bundling with wrangler deploy --dry-run ...");
const scriptPath = bundle(join(ROOT, "bench/.build/latency"));

/** Posts RESPONSES at RATE a second to a Worker whose one destination is `entry`; returns when each got its 200, and the receiver's stats once all arrived. */
async function burst(name, entry) {
  const destination = await spawnDestination(["--quiet"]);
  const worker = await startWorker({
    scriptPath,
    bindings: { WEBHOOK_SECRET: SECRET, DESTINATIONS: JSON.stringify([{ name, url: `http://127.0.0.1:${destination.port}/hook`, ...entry }]) },
    consumers: { "oneflow-alerts": { maxBatchSize: 10, maxBatchTimeout: 2, maxRetries: 10 } },
    setupSql: schemaStatements(),
  });
  const acked = new Map();
  const started = Date.now();
  const posts = [];
  for (let i = 0; i < RESPONSES; i++) {
    const due = started + (i * 1000) / RATE;
    await sleep(Math.max(0, due - Date.now()));
    const alert_id = `latency-${name}-${i}`;
    posts.push(
      fetch(`${worker.url}/webhooks/1flow/${SECRET}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...EXAMPLE, alert_id, timestamp: new Date().toISOString() }) }).then(async (res) => {
        await res.arrayBuffer();
        if (res.status === 200) acked.set(alert_id, Date.now());
      }),
    );
  }
  await Promise.all(posts);
  let stats;
  for (let waited = 0; waited < 600; waited++) {
    stats = await destination.stats();
    if (Object.keys(stats.by_id).length >= RESPONSES) break;
    await sleep(1000);
  }
  await worker.mf.dispose();
  destination.child.kill();
  return { acked, stats };
}

const live = await burst("live", {});
const latencies = [...live.acked].map(([id, at]) => (live.stats.first_at[id] ?? Number.NaN) - at).filter(Number.isFinite).sort((a, b) => a - b);
log(`live: ${latencies.length} of ${RESPONSES} delivered`);
const paced = await burst("paced", { rate_limit: { requests: 5, per_seconds: 1 } });
const seconds = Object.values(paced.stats.per_second);
const received = Object.keys(paced.stats.by_id).length;

const table = [
  "# Delivery latency and pacing",
  "",
  `\`npm run bench -- --latency\`, ${new Date().toISOString()}: ${RESPONSES} responses posted at ${RATE} a second to the`,
  "Worker in Miniflare, its queue consumer with wrangler.toml's settings (max_batch_size 10, max_batch_timeout 2 s), one local destination.",
  "",
  "| from the webhook's 200 to the destination | ms |",
  "|---|---|",
  `| p50 | ${quantile(latencies, 0.5)} |`,
  `| p90 | ${quantile(latencies, 0.9)} |`,
  `| p99 | ${quantile(latencies, 0.99)} |`,
  `| max | ${latencies.at(-1)} |`,
  `| delivered | ${latencies.length} of ${RESPONSES} |`,
  "",
  "What sets it: the enqueue's coalescing window (up to 100 ms after a request), the Queue's batching (a batch starts",
  "when 10 messages wait or after max_batch_timeout, 2 s), and the consumer's claim, send and record (three D1 round",
  "trips and the request).",
  "",
  `The same burst to a destination with \`rate_limit: {"requests": 5, "per_seconds": 1}\`: ${received} of ${RESPONSES} arrived,`,
  `the busiest second had ${Math.max(...seconds)} requests (limit 5, 1 of slack allowed), over ${seconds.length} seconds.`,
  "",
].join("\n");
writeFileSync(join(ROOT, "bench/results/latency.md"), table);
console.log(table);
