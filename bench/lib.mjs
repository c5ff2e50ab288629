// Shared by the benchmark and the soak: bundling, starting workers in Miniflare, payloads.
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";

export const ROOT = new URL("..", import.meta.url).pathname;
export const COMPATIBILITY_DATE = "2026-10-01";
export const SECRET = "bench-secret";
export const EXAMPLE = JSON.parse(readFileSync(join(ROOT, "examples/1flow-example.json"), "utf8"));

/** Bundles a Worker with wrangler exactly as `wrangler deploy` would; returns the script path. */
export function bundle(outdir, args = [], script = "index.js", cwd = ROOT) {
  execFileSync("npx", ["wrangler", "deploy", "--dry-run", "--outdir", outdir, ...args], {
    cwd,
    stdio: ["ignore", "ignore", "inherit"],
    env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
  });
  return join(outdir, script);
}

/** The statements of schema.sql, split on the semicolons that end them (a trigger ends at its END;). */
export function schemaStatements(root = ROOT) {
  const statements = [];
  let current = "";
  for (const line of readFileSync(join(root, "schema.sql"), "utf8").split("\n")) {
    if (line.trim().startsWith("--") || line.trim() === "") continue;
    current += `${line}\n`;
    const inTrigger = /^\s*CREATE TRIGGER/i.test(current) && !/\bEND;\s*$/i.test(current);
    if (/;\s*$/.test(line) && !inTrigger) {
      statements.push(current.trim().replace(/;$/, ""));
      current = "";
    }
  }
  return statements;
}

/**
 * Starts a destination (bench/destination-server.mjs) in its own process: Miniflare's
 * proxy to D1 blocks this process's event loop while it waits, and a destination served
 * from here would then stall the Worker that calls it.
 */
export function spawnDestination(args = []) {
  const child = spawn(process.execPath, [join(ROOT, "bench/destination-server.mjs"), "--port", "0", "--quiet", ...args], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  return new Promise((resolve, reject) => {
    child.stdout.once("data", (chunk) => {
      const port = Number(/:(\d+)/.exec(String(chunk))?.[1]);
      const stats = async () => (await fetch(`http://127.0.0.1:${port}/stats`)).json();
      resolve({ child, port, stats });
    });
    child.once("exit", (code) => reject(new Error(`destination exited with ${code}`)));
  });
}

/** Starts one Worker in Miniflare (the real workerd) with a fresh local D1 and Queue. */
/**
 * Miniflare's modules for a `wrangler deploy --dry-run` bundle: its index.js, and what
 * wrangler.toml's [[rules]] bundled beside it as text (the dashboard's chart library).
 */
export function bundleModules(scriptPath) {
  return {
    modulesRoot: dirname(scriptPath),
    modules: [
      { type: "ESModule", path: scriptPath },
      ...readdirSync(dirname(scriptPath))
        .filter((f) => /-uPlot\.(iife\.min\.js|min\.css)$/.test(f))
        .map((f) => ({ type: "Text", path: join(dirname(scriptPath), f) })),
    ],
  };
}

export async function startWorker({ scriptPath, bindings = {}, consumers = {}, setupSql = [], inspectorPort = undefined, r2Buckets = undefined }) {
  // Miniflare 5 takes a new options shape; the converter accepts the familiar v4 one.
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      host: "127.0.0.1",
      port: 0,
      // Open for `npm run bench -- --profile` (the DevTools protocol), closed otherwise.
      inspectorPort,
      // The Worker's log lines are not what is measured; printing them would be.
      // BENCH_LOG=path appends them to that file instead (to trace a soak's failure).
      handleStructuredLogs: process.env.BENCH_LOG ? ({ timestamp, message }) => appendFileSync(process.env.BENCH_LOG, `${timestamp} ${message}\n`) : () => {},
      ...bundleModules(scriptPath),
      compatibilityDate: COMPATIBILITY_DATE,
      d1Databases: { DB: "bench" },
      queueProducers: { ALERTS_QUEUE: { queueName: "oneflow-alerts" } },
      queueConsumers: consumers,
      r2Buckets,
      bindings,
    }),
  );
  const url = await mf.ready;
  const db = await mf.getD1Database("DB");
  for (const sql of setupSql) await db.prepare(sql).run();
  return { mf, url: url.origin, db };
}

/** The documented example with a fresh alert_id. */
export function newAlertBody(id) {
  return JSON.stringify({ ...EXAMPLE, alert_id: id });
}

/** Peak resident memory of the workerd processes this Node process started, in MiB. */
/**
 * CPU time (user + system, ms) the workerd processes this one started have used so far: the
 * Worker, its consumer and the local D1 together. Read before and after a workload, per request
 * it is what the workload costs the machine, and it moves far less than req/s when another
 * process shares the cores.
 */
export function workerdCpuMs() {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (Number(fields[1]) !== process.pid || !comm.startsWith("workerd")) continue;
      // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 a second on Linux).
      total += ((Number(fields[11]) + Number(fields[12])) * 1000) / 100;
    } catch {
      // the process went away between the listing and the read
    }
  }
  return total;
}

export function workerdRssMiB() {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (Number(fields[1]) !== process.pid || !comm.startsWith("workerd")) continue;
      const status = readFileSync(`/proc/${pid}/status`, "utf8");
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? 0);
      total += kb / 1024;
    } catch {
      // the process went away between the listing and the read
    }
  }
  return total;
}

/**
 * Starts `wrangler dev` as `npm run dev` runs it, with its own state directory (the user's local
 * data is untouched), `.dev.vars.example` plus `extraVars` as its variables, and the local
 * migrations applied. `log()` is what it printed; `stop()` ends it and its workerd.
 */
export function startWranglerDev({ port, extraVars = "", prefix = "dev-" }) {
  const state = mkdtempSync(join(tmpdir(), prefix));
  const vars = join(state, ".dev.vars");
  if (!existsSync(join(ROOT, ".dev.vars.example"))) throw new Error(".dev.vars.example is missing");
  copyFileSync(join(ROOT, ".dev.vars.example"), vars);
  writeFileSync(vars, `\n${extraVars}\n`, { flag: "a" });
  const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" };
  const migrate = spawnSync("npx", ["wrangler", "d1", "migrations", "apply", "DB", "--local", "--persist-to", state], { cwd: ROOT, env, encoding: "utf8" });
  if (migrate.status !== 0) throw new Error(`migrations: ${migrate.stderr}`);
  const dev = spawn("npx", ["wrangler", "dev", "--port", String(port), "--ip", "127.0.0.1", "--persist-to", state, "--env-file", vars, "--test-scheduled"], {
    cwd: ROOT,
    env,
    stdio: ["ignore", "pipe", "pipe"],
    // Its own process group: stopping it stops wrangler's workerd too.
    detached: true,
  });
  let output = "";
  dev.stdout.on("data", (d) => (output += d));
  dev.stderr.on("data", (d) => (output += d));
  let stopped = false;
  return {
    state,
    env,
    log: () => output,
    stop: () => {
      if (stopped) return;
      stopped = true;
      try {
        process.kill(-dev.pid, "SIGTERM");
      } catch {
        // Already gone.
      }
    },
  };
}

/**
 * A CPU profiler on a Worker started with `inspectorPort` (workerd's inspector, the Chrome
 * DevTools protocol's Profiler domain). `busy(run)` samples every 100 µs while `run` runs and
 * returns the Worker isolate's sampled time that is not idle, in µs: `js` (its JavaScript, the
 * bindings' JS and GC) and `program` (native work with no JS frame). Sampling slows the Worker
 * a little, and a busy machine inflates both: an upper bound of what the platform bills.
 */
export async function cpuProfiler(inspectorPort) {
  const { send, close } = await devtools(inspectorPort);
  await send("Profiler.enable");
  await send("Profiler.setSamplingInterval", { interval: 100 });
  return {
    async busy(run) {
      await send("Profiler.start");
      await run();
      const { result } = await send("Profiler.stop");
      const { nodes, samples, timeDeltas } = result.profile;
      // "(program)" is native work on the isolate's thread that no JS frame called: locally that
      // includes workerd serving the local D1, which the platform runs elsewhere. It is kept apart.
      const kind = new Map(nodes.map((n) => [n.id, n.callFrame.functionName]));
      const out = { js: 0, program: 0 };
      for (let i = 0; i < samples.length; i++) {
        const name = kind.get(samples[i]);
        if (name === "(idle)" || name === "(root)") continue;
        if (name === "(program)") out.program += timeDeltas[i] ?? 0;
        else out.js += timeDeltas[i] ?? 0;
      }
      return out;
    },
    close,
  };
}

/** A Chrome DevTools protocol session on the first target of workerd's inspector: `send(method, params)` answers its reply. */
export async function devtools(inspectorPort) {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl) ?? targets[0];
  const ws = new WebSocket(target.webSocketDebuggerUrl);
  await new Promise((resolve, reject) => {
    ws.onopen = resolve;
    ws.onerror = reject;
  });
  let nextId = 0;
  const pending = new Map();
  ws.onmessage = (event) => {
    const message = JSON.parse(String(event.data));
    if (message.id !== undefined && pending.has(message.id)) {
      pending.get(message.id)(message);
      pending.delete(message.id);
    }
  };
  const send = (method, params = {}) =>
    new Promise((resolve) => {
      nextId += 1;
      pending.set(nextId, resolve);
      ws.send(JSON.stringify({ id: nextId, method, params }));
    });
  return { send, close: () => ws.close() };
}
