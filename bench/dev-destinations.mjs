// npm run check:dev-destinations: destinations as data against `npm run dev`, as a user would.
//
// Starts `wrangler dev` (local D1 and Queue, SUBREQUEST_BUDGET=20) and a local receiver, then:
//   1. adds 12 destinations through the API and posts one response: each receives it once,
//      and nothing reaches the dead-letter queue (no `dead` row);
//   2. adds a jsonata destination, previews a response, and checks the body it receives is
//      exactly the preview's;
//   3. makes a destination's receiver answer 503, deletes the destination: its pending rows
//      are cancelled and it receives no further request;
//   4. reads D1 (while the 12 exist) and every API answer of the run for the secrets: none
//      appears in plain text.
// Exits non-zero when any check fails. Bounded: every wait has a deadline.
import { spawnSync } from "node:child_process";
import { randomUUID } from "node:crypto";
import { createServer } from "node:http";
import { EXAMPLE, ROOT, startWranglerDev } from "./lib.mjs";

const PORT = 8797;
const BASE = `http://127.0.0.1:${PORT}`;
const ADMIN = "dev-admin";
const SECRET_VALUE = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const HEADER_VALUE = `Bearer header-secret-${randomUUID()}`;
const failures = [];
const check = (ok, text) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${text}`);
  if (!ok) failures.push(text);
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The receiver: records every request; /down/* answers 503.
const received = [];
const receiver = createServer((req, res) => {
  let body = "";
  req.on("data", (c) => (body += c));
  req.on("end", () => {
    received.push({ url: req.url, method: req.method, body, headers: req.headers });
    res.writeHead(req.url.startsWith("/down/") ? 503 : 200).end("ok");
  });
});
await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
const hook = (path) => `http://127.0.0.1:${receiver.address().port}${path}`;

const dev = startWranglerDev({ port: PORT, extraVars: "SUBREQUEST_BUDGET=20\nRETRY_BASE_SECONDS=1", prefix: "dev-destinations-" });
const { state, env } = dev;
const stop = () => {
  dev.stop();
  receiver.close();
};
try {
  // A Worker already on the port would answer for this one: refuse to start over it.
  if ((await fetch(`${BASE}/healthz`).catch(() => null)) !== null) throw new Error(`something already listens on ${BASE}`);
  const ready = Date.now();
  while (Date.now() - ready < 60_000) {
    if ((await fetch(`${BASE}/healthz`).catch(() => null))?.status === 200) break;
    await sleep(500);
  }
  const answers = [];
  const api = async (method, path, body) => {
    const res = await fetch(`${BASE}${path}`, {
      method,
      headers: { authorization: `Bearer ${ADMIN}`, "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, json: text ? JSON.parse(text) : null };
  };
  const post = async (payload) =>
    (await fetch(`${BASE}/webhooks/1flow/dev-secret`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(payload) })).json();
  const waitFor = async (what, done, ms = 60_000) => {
    const t = Date.now();
    while (Date.now() - t < ms) {
      if (await done()) return true;
      await sleep(500);
    }
    check(false, `${what} (timed out)`);
    return false;
  };

  // 1. Twelve destinations, a budget of 20 subrequests per invocation.
  const names = Array.from({ length: 12 }, (_, i) => `team-${i}`);
  for (const name of names) {
    const res = await api("PUT", `/api/destinations/${name}`, { url: hook(`/many/${name}`), secret: SECRET_VALUE, headers: { authorization: HEADER_VALUE } });
    if (res.status !== 201) check(false, `PUT ${name}: ${res.status}`);
  }
  // Three responses: 36 deliveries, more than one invocation's 20 subrequests carry.
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const payload = { ...EXAMPLE, alert_id: `dev-many-${i}-${randomUUID()}` };
    ids.push(payload.alert_id);
    check((await post(payload)).ok === true, `response ${i + 1} is answered 200`);
  }
  const pairs = () => new Set(received.filter((r) => r.url.startsWith("/many/")).map((r) => `${r.url} ${r.headers["webhook-id"]}`));
  await waitFor("each of the 12 destinations receives the 3 responses", async () => pairs().size === 36);
  let list = [];
  const settled = await waitFor("the ledger says delivered for all 12, none pending", async () => {
    list = (await api("GET", "/api/destinations")).json.destinations;
    return list.filter((d) => names.includes(d.name)).every((d) => d.delivered_24h === 3 && d.pending === 0);
  });
  if (!settled) console.log(JSON.stringify(list.filter((d) => names.includes(d.name)).map((d) => [d.name, d.delivered_24h, d.pending, d.last_error])));
  await sleep(3_000);
  const many = received.filter((r) => r.url.startsWith("/many/"));
  check(many.length === 36 && pairs().size === 36, `12 destinations × 3 responses, ${many.length} requests: each received each once`);
  check(ids.every((id) => many.filter((r) => r.headers["webhook-id"] === id).length === 12), "every response reached all 12");
  const dead = list.filter((d) => names.includes(d.name)).reduce((n, d) => n + (d.failed_24h ?? 0), 0);
  check(dead === 0, `no failed or dead delivery (${dead})`);
  for (const name of names) await api("DELETE", `/api/destinations/${name}`);

  // 2. A jsonata destination receives exactly what its preview showed.
  const transform = '{ "text": "NPS " & $string(answers[type = "nps"].value) & " from " & user.id, "survey": survey.id }';
  await api("PUT", "/api/destinations/jsonata-hook", { url: hook("/jsonata"), format: "jsonata", transform, method: "PUT", path: '"/" & survey.id' });
  const second = { ...EXAMPLE, alert_id: `dev-jsonata-${randomUUID()}` };
  // Stored but not yet delivered: the preview reads the stored response.
  await post(second);
  const preview = await api("POST", "/api/destinations/jsonata-hook/preview", { alert_id: second.alert_id });
  await waitFor("the jsonata destination receives the response", async () => received.some((r) => r.url.startsWith("/jsonata")));
  const got = received.find((r) => r.url.startsWith("/jsonata"));
  check(preview.status === 200 && got?.body === preview.json.request.body, `the jsonata body is the preview's: ${got?.body}`);
  check(got?.method === "PUT" && got?.url === `/jsonata/${EXAMPLE.survey_id}`, `its method and path: ${got?.method} ${got?.url}`);
  await api("DELETE", "/api/destinations/jsonata-hook");

  // 3. A destination whose receiver is down: deleting it cancels its pending rows, and its requests stop.
  await api("PUT", "/api/destinations/down-hook", { url: hook("/down/") });
  for (let i = 0; i < 3; i++) await post({ ...EXAMPLE, alert_id: `dev-down-${i}-${randomUUID()}` });
  await waitFor("the down receiver is tried", async () => received.filter((r) => r.url.startsWith("/down/")).length >= 3);
  const removed = await api("DELETE", "/api/destinations/down-hook");
  check(removed.status === 200 && removed.json.cancelled === 3, `DELETE cancels its pending deliveries: ${JSON.stringify(removed.json)}`);
  const before = received.filter((r) => r.url.startsWith("/down/")).length;
  await sleep(8_000); // past the retries' first backoff (RETRY_BASE_SECONDS=1)
  await fetch(`${BASE}/__scheduled?cron=*/5+*+*+*+*`);
  await sleep(2_000);
  const after = received.filter((r) => r.url.startsWith("/down/")).length;
  check(after === before, `no request to it after the delete (${before} before, ${after} after)`);

  // 4. No secret in plain text in any API answer, nor in D1 (read once wrangler dev has stopped).
  await api("PUT", "/api/destinations/sealed", { url: hook("/sealed"), secret: SECRET_VALUE, headers: { authorization: HEADER_VALUE } });
  check(answers.every((a) => !a.includes(SECRET_VALUE.slice(6)) && !a.includes(HEADER_VALUE)), `no secret in any of ${answers.length} API answers`);
  stop();
  await sleep(2_000);
  const stored = spawnSync(
    "npx",
    ["wrangler", "d1", "execute", "oneflow", "--local", "--persist-to", state, "--json", "--command", "SELECT name, config, secret, headers FROM destinations"],
    { cwd: ROOT, env, encoding: "utf8" },
  );
  let rows = [];
  try {
    rows = JSON.parse(stored.stdout.slice(stored.stdout.indexOf("[")))[0]?.results ?? [];
  } catch {
    console.log(`wrangler d1 execute: ${stored.status} ${stored.stdout.slice(0, 300)} ${stored.stderr.slice(0, 300)}`);
  }
  check(rows.length === 1 && rows[0].secret?.startsWith("v1.") && rows[0].headers?.startsWith("v1."), `D1 holds the destination with its secret and headers sealed: ${JSON.stringify(rows).slice(0, 160)}`);
  check(!JSON.stringify(rows).includes(SECRET_VALUE.slice(6)) && !JSON.stringify(rows).includes(HEADER_VALUE), "no secret or header value in plain text in D1");
} catch (error) {
  check(false, `error: ${error instanceof Error ? error.message : error}`);
  console.log(dev.log().slice(-3_000));
} finally {
  stop();
}
console.log(`consumer invocations that carried jobs over (log fanout.carried_over): ${(dev.log().match(/fanout\.carried_over/g) ?? []).length}`);
console.log(failures.length === 0 ? "dev destinations: all checks passed" : `dev destinations: ${failures.length} failed`);
process.exit(failures.length === 0 ? 0 : 1);
