// npm run bench -- --profile [--duration 10 --connections 10]: where the request path's CPU goes.
//
// Runs the bundled Worker in Miniflare (the real workerd) with its inspector open, records a
// CPU profile over the Chrome DevTools protocol (Profiler domain) while autocannon posts new
// responses, and splits the sampled time into parts by the innermost function of each sample
// that belongs to one: routing and middleware, body read, hashing, validation, the D1 batch,
// the log line, the enqueue after the reply, the consumer's share; the rest is the runtime.
// Writes the table to bench/results/profile.md.
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import autocannon from "autocannon";
import { attributeProfile, bundle, devtools, EXAMPLE, ROOT, schemaStatements, SECRET, startWorker } from "./lib.mjs";

const { values } = parseArgs({
  options: {
    profile: { type: "boolean", default: true },
    duration: { type: "string", default: "10" },
    connections: { type: "string", default: "10" },
    rounds: { type: "string" },
    out: { type: "string" },
  },
  strict: false,
});
const DURATION = Number(values.duration);
const CONNECTIONS = Number(values.connections);
const INSPECTOR_PORT = 9239;

/** Parts of the request path, by the names of the functions that do them (first match wins, innermost frame first). */
const PARTS = [
  ["hashing", /^(sha256Hex|digest)$/],
  ["validation", /^(parsePayload|normalise|normalize|validate|safeParse|jsonDepthExceeds|_run|~run|decodeUtf8|parseJson|answersJson|rowBytes)$/],
  ["log line", /^(log|redact|errorMessage)$/],
  ["enqueue after the reply", /^(bufferEnqueue|enqueue|sendAlerts|markEnqueued|take)$/],
  ["D1 batch (store)", /^(storeAlert|withDeadline|batch|prepare|bind)$/],
  ["consumer's share", /^(consumeAlerts|consumeDeadLetters|record|recordOutcomes|claimAlerts|deliver|buildRequest|leaseIdentify|fairShare|wants|queue)$/],
  ["body read", /^(arrayBuffer|readBody|readLimited|text|json)$/],
  ["routing and middleware", /^(dispatch|compose|match|requestId|bodyLimit|secureHeaders|csrf|fetch|handle|route|getPath|logger|webhook)$/],
];

const log = (line) => process.stderr.write(`${line}\n`);

log("bundling with wrangler deploy --dry-run ...");
const scriptPath = bundle(join(ROOT, "bench/.build/profile"));
const { mf, url } = await startWorker({
  scriptPath,
  inspectorPort: INSPECTOR_PORT,
  bindings: { WEBHOOK_SECRET: SECRET },
  consumers: { "oneflow-alerts": { maxBatchSize: 10, maxBatchTimeout: 1 } },
  setupSql: schemaStatements(),
});

// The inspector: one target per Worker (ours, Miniflare's own, the D1 simulator); devtools() picks ours.
const { send, close } = await devtools(INSPECTOR_PORT);

await send("Profiler.enable");
await send("Profiler.setSamplingInterval", { interval: 100 });
let counter = 0;
const run = (duration) =>
  new Promise((resolve) => {
    autocannon(
      {
        url: `${url}/webhooks/1flow/${SECRET}`,
        method: "POST",
        connections: CONNECTIONS,
        duration,
        headers: { "content-type": "application/json" },
        requests: [{ setupRequest: (req) => ({ ...req, body: JSON.stringify({ ...EXAMPLE, alert_id: `profile-${process.pid}-${(counter += 1)}` }) }) }],
      },
      (_, result) => resolve(result),
    );
  });
log("warming up for 2 s ...");
await run(2);
log(`profiling ${DURATION} s of new responses at ${CONNECTIONS} connections ...`);
await send("Profiler.start");
const result = await run(DURATION);
const { result: stopped } = await send("Profiler.stop");
close();
await mf.dispose();

const { profile } = stopped;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of profile.nodes) for (const child of n.children ?? []) parent.set(child, n.id);
const partOf = new Map();
const classify = (id) => {
  if (partOf.has(id)) return partOf.get(id);
  const node = byId.get(id);
  const name = node.callFrame.functionName;
  const own = PARTS.find(([, pattern]) => pattern.test(name))?.[0];
  let part = own;
  if (part === undefined) {
    const up = parent.get(id);
    part = up === undefined ? (name === "(idle)" ? "idle" : "runtime (GC, the event loop, bindings' JS)") : classify(up);
  }
  partOf.set(id, part);
  return part;
};
// Each sample counts for one sampling period, never for the gap before it: workerd runs the D1
// simulator in turns with our isolate on one thread, and that gap holds the simulator's turns
// (bench/lib.mjs attributeProfile says why; page-profile and bench:cost count the same way).
const { period } = attributeProfile(profile, 100);
const totals = new Map();
for (const id of profile.samples) {
  const part = classify(id);
  totals.set(part, (totals.get(part) ?? 0) + period);
}
// The functions with the most self time, whatever their part: where to look next.
const self = new Map();
for (const id of profile.samples) {
  const { functionName, url: file, lineNumber } = byId.get(id).callFrame;
  const key = `${functionName || "(anonymous)"} ${file ? `${file.split("/").pop()}:${lineNumber + 1}` : ""}`.trim();
  self.set(key, (self.get(key) ?? 0) + period);
}
const busy = [...totals].filter(([part]) => part !== "idle").reduce((n, [, us]) => n + us, 0);
const requests = result.requests.total;
const rows = [...totals]
  .filter(([part]) => part !== "idle")
  .sort((a, b) => b[1] - a[1])
  .map(([part, us]) => `| ${part} | ${((100 * us) / busy).toFixed(1)} % | ${(us / requests).toFixed(1)} |`);
const table = [
  "# Where the request path's CPU goes",
  "",
  `\`npm run bench -- --profile\`, ${new Date().toISOString()}: ${requests} new responses in ${DURATION} s at ${CONNECTIONS} connections`,
  `(${(requests / DURATION).toFixed(0)} req/s, p99 ${result.latency.p99} ms), Worker CPU sampled every 100 µs through workerd's inspector. The`,
  "consumer runs in the same isolate and its share is listed; D1 itself runs outside the isolate (its wait is idle time, not here).",
  "",
  "| part | share of the Worker's busy CPU | µs per request |",
  "|---|---|---|",
  ...rows,
  "",
  `busy: ${(busy / 1000).toFixed(0)} ms of CPU over ${DURATION} s; idle: ${((totals.get("idle") ?? 0) / 1000).toFixed(0)} ms.`,
  "",
  "The 15 functions with the most self time:",
  "",
  "| function | self time | µs per request |",
  "|---|---|---|",
  ...[...self]
    .filter(([key]) => !key.startsWith("(idle)"))
    .sort((a, b) => b[1] - a[1])
    .slice(0, 15)
    .map(([key, us]) => `| \`${key}\` | ${((100 * us) / busy).toFixed(1)} % | ${(us / requests).toFixed(1)} |`),
  "",
  "Sampling slows the Worker: compare parts within one run, not with `npm run bench`'s throughput.",
  "",
].join("\n");
writeFileSync(join(ROOT, "bench/results/profile.md"), table);
console.log(table);
