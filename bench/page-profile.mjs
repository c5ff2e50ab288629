// node bench/page-profile.mjs [path]: the self time per request of one dashboard page (default: a survey page, 90
// days folded, 1,000 stored), through workerd's inspector (IV=µs sets the sampling interval). Needs
// `npm run bench:cost` to have built bench/.build/cost first. Locally D1 runs in the same process, so its
// work shows up as busy time: compare pages with /healthz, not with the platform's 10 ms.
import { join } from "node:path";
import { devtools, EXAMPLE, ROOT, schemaStatements, SECRET, startWorker } from "./lib.mjs";
const scriptPath = join(ROOT, "bench/.build/cost/cost-worker.js");
const PORT = 9251;
const { mf, url } = await startWorker({ scriptPath, bindings: { WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: "a", DESTINATIONS: "[]" }, consumers: { "oneflow-alerts": { maxBatchSize: 100, maxBatchTimeout: 1 } }, setupSql: schemaStatements(), inspectorPort: PORT });
const now = Date.now();
let next = 0;
await Promise.all(Array.from({ length: 20 }, async () => { while (next < 1000) { const i = next++; const screens = [{ ...EXAMPLE.survey_info.screens[0], answer: String(i % 11) }, { ...EXAMPLE.survey_info.screens[1], answer: `reason ${i}` }, { title: "Which platform?", type: "mcq", answer: ["ios","android","web"][i % 3] }]; await (await fetch(`${url}/webhooks/1flow/${SECRET}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify({ ...EXAMPLE, alert_id: `p-${i}`, timestamp: new Date(now - (i % 60) * 86400000).toISOString(), survey_info: { ...EXAMPLE.survey_info, screens } }) })).arrayBuffer(); } }));
for (let i = 0; i < 40; i++) await (await fetch(`${url}/__cron`, { method: "POST" })).arrayBuffer();
const login = await fetch(`${url}/dashboard/login`, { method: "POST", redirect: "manual", headers: { "content-type": "application/x-www-form-urlencoded", origin: url }, body: "token=a" });
const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0];
const path = process.argv[2] ?? `/dashboard/surveys/${EXAMPLE.survey_id}?days=90`;
const get = async () => { const r = await fetch(`${url}${path}`, { headers: { cookie } }); await r.text(); if (r.status !== 200) throw new Error(String(r.status)); };
for (let i = 0; i < 5; i++) await get();
const { send, close } = await devtools(PORT);
await send("Profiler.enable"); await send("Profiler.setSamplingInterval", { interval: Number(process.env.IV ?? 100) });
await send("Profiler.start");
const t0 = performance.now();
for (let i = 0; i < 30; i++) await get();
const wall = performance.now() - t0;
const { result } = await send("Profiler.stop");
const { nodes, samples, timeDeltas } = result.profile;
const byId = new Map(nodes.map((n) => [n.id, n]));
const self = new Map();
let busy = 0;
for (let i = 0; i < samples.length; i++) { const n = byId.get(samples[i]); const name = n.callFrame.functionName || "(anon)"; if (name === "(idle)") continue; busy += timeDeltas[i]; const key = `${name} ${n.callFrame.url.split("/").pop()}:${n.callFrame.lineNumber}`; self.set(key, (self.get(key) ?? 0) + timeDeltas[i]); }
console.log(`busy per request ${(busy / 30 / 1000).toFixed(2)} ms, wall per request ${(wall / 30).toFixed(1)} ms`);
for (const [k, v] of [...self].sort((a, b) => b[1] - a[1]).slice(0, 25)) console.log(`${(v / 30 / 1000).toFixed(2)} ms  ${k}`);
close(); await mf.dispose();
