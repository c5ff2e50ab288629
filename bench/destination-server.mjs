// A local webhook destination for trying the fan-out and for the soak test.
// It records every request, verifies Standard Webhooks signatures when given
// the secret, and can fail on purpose.
//
//   node bench/destination-server.mjs --port 9000 [--secret whsec_...]
//        [--fail-first 2] [--fail-rate 0.33] [--hang-rate 0.05] [--hang-ms 12000]
//
// GET /stats answers {requests, by_id: {<webhook-id>: deliveries that got a 2xx}, first_at: {<webhook-id>: epoch ms of
// its first 2xx}, per_second: {<epoch second>: requests}, bad_signatures, notifications}.
// POST /control/down?seconds=S answers 503 to every delivery for S seconds (a destination down for a stretch).
// POST /notify records an operator notification (NOTIFY_URL) in stats.notifications, not as a delivery.
// --port 0 picks a free port; the first line printed names it.
import { createServer } from "node:http";
import { parseArgs } from "node:util";
import { Webhook } from "standardwebhooks";

export function startDestination({
  port = 9000,
  secret,
  failFirst = 0,
  failRate = 0,
  hangRate = 0,
  hangMs = 12_000,
  random = Math.random,
  quiet = false,
} = {}) {
  const verifier = secret ? new Webhook(secret) : null;
  const seen = new Map(); // webhook-id -> attempts
  const delivered = new Map(); // webhook-id -> 2xx answers
  const firstAt = new Map(); // webhook-id -> epoch ms of its first 2xx
  const perSecond = new Map(); // epoch second -> requests received
  const stats = { requests: 0, bad_signatures: 0, failed_on_purpose: 0, hung_on_purpose: 0, down_answers: 0, notifications: [] };
  let downUntil = 0;

  const server = createServer((req, res) => {
    if (req.method === "GET" && req.url === "/stats") {
      res.setHeader("content-type", "application/json");
      res.end(JSON.stringify({ ...stats, by_id: Object.fromEntries(delivered), first_at: Object.fromEntries(firstAt), per_second: Object.fromEntries(perSecond) }));
      return;
    }
    if (req.method === "POST" && req.url?.startsWith("/control/down")) {
      const seconds = Number(new URL(req.url, "http://x").searchParams.get("seconds") ?? "0");
      downUntil = Date.now() + seconds * 1000;
      res.end("down");
      return;
    }
    const chunks = [];
    req.on("data", (c) => chunks.push(c));
    req.on("end", () => {
      const body = Buffer.concat(chunks).toString("utf8");
      if (req.url === "/notify") {
        stats.notifications.push(JSON.parse(body));
        res.end("ok");
        return;
      }
      stats.requests += 1;
      const second = Math.floor(Date.now() / 1000);
      perSecond.set(second, (perSecond.get(second) ?? 0) + 1);
      if (Date.now() < downUntil) {
        stats.down_answers += 1;
        res.statusCode = 503;
        res.end("down for a stretch");
        return;
      }
      const id = req.headers["webhook-id"] ?? "(none)";
      const attempt = (seen.get(id) ?? 0) + 1;
      seen.set(id, attempt);
      if (verifier) {
        try {
          verifier.verify(body, req.headers);
        } catch {
          stats.bad_signatures += 1;
        }
      }
      if (attempt <= failFirst || random() < failRate) {
        stats.failed_on_purpose += 1;
        if (!quiet) console.log(`500 ${id} attempt ${attempt}`);
        res.statusCode = 500;
        res.end("failing on purpose");
        return;
      }
      if (random() < hangRate) {
        stats.hung_on_purpose += 1;
        setTimeout(() => res.destroy(), hangMs);
        return;
      }
      delivered.set(id, (delivered.get(id) ?? 0) + 1);
      if (!firstAt.has(id)) firstAt.set(id, Date.now());
      if (!quiet) console.log(`200 ${id} attempt ${attempt} signed=${Boolean(req.headers["webhook-signature"])}`);
      res.end("ok");
    });
  });
  return new Promise((resolve) =>
    server.listen(port, "127.0.0.1", () => resolve({ server, stats, delivered, port: server.address().port })),
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const { values } = parseArgs({
    options: {
      port: { type: "string", default: "9000" },
      secret: { type: "string" },
      "fail-first": { type: "string", default: "0" },
      "fail-rate": { type: "string", default: "0" },
      "hang-rate": { type: "string", default: "0" },
      "hang-ms": { type: "string", default: "12000" },
      quiet: { type: "boolean", default: false },
    },
  });
  const { port } = await startDestination({
    port: Number(values.port),
    secret: values.secret,
    failFirst: Number(values["fail-first"]),
    failRate: Number(values["fail-rate"]),
    hangRate: Number(values["hang-rate"]),
    hangMs: Number(values["hang-ms"]),
    quiet: values.quiet,
  });
  console.log(`destination listening on http://127.0.0.1:${port}`);
}
