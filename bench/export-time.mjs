// npm run bench:export [-- --responses 10000]
// Times GET /api/export.csv for N stored responses on the local runtime (Miniflare).
import { join } from "node:path";
import { parseArgs } from "node:util";
import { bundle, ROOT, schemaStatements, SECRET, startWorker } from "./lib.mjs";

const { values } = parseArgs({ options: { responses: { type: "string", default: "10000" } } });
const N = Number(values.responses);
const ADMIN = "export-admin";
const worker = await startWorker({
  scriptPath: bundle(join(ROOT, "bench/.build/export")),
  bindings: { WEBHOOK_SECRET: SECRET, ADMIN_TOKEN: ADMIN },
  setupSql: schemaStatements(),
});
for (let i = 0; i < N; i += 500) {
  const ids = Array.from({ length: Math.min(500, N - i) }, (_, k) => `('export-${i + k}')`).join(",");
  await worker.db
    .prepare(
      `INSERT INTO alerts (alert_id, alert_name, survey_id, user_system_id, platform, submitted_at, received_at, payload, payload_sha256)
       SELECT column1, 'submitted_survey', 's1', 'user-' || column1, 'ios', '2026-11-01T00:00:00.000Z', '2026-11-01T00:00:00.000Z', '{}', 'x'
       FROM (VALUES ${ids})`,
    )
    .run();
  await worker.db
    .prepare(
      `INSERT INTO answers (alert_id, position, title, type, answer, value)
       SELECT column1, 0, 'How likely are you to recommend us?', 'nps', '9', 9 FROM (VALUES ${ids})
       UNION ALL SELECT column1, 1, 'Why?', 'text', 'because, "quoted"', NULL FROM (VALUES ${ids})`,
    )
    .run();
}
const started = performance.now();
const res = await fetch(`${worker.url}/api/export.csv?survey_id=s1`, { headers: { authorization: `Bearer ${ADMIN}` } });
const text = await res.text();
const ms = performance.now() - started;
const rows = text.split("\r\n").filter(Boolean).length - 1;
console.log(`export of ${rows} responses: ${ms.toFixed(0)} ms, ${(text.length / 1024).toFixed(0)} KiB, status ${res.status}`);
await worker.mf.dispose();
process.exit(rows === N && res.status === 200 ? 0 : 1);
