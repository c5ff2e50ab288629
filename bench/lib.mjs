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

/**
 * Sums `measure(pid, fields)` over the workerd processes this Node process started (fields: those
 * of /proc/<pid>/stat after the command's name, from the state on).
 */
function sumOverWorkerd(measure) {
  let total = 0;
  for (const pid of readdirSync("/proc").filter((p) => /^\d+$/.test(p))) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const comm = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      if (Number(fields[1]) !== process.pid || !comm.startsWith("workerd")) continue;
      total += measure(pid, fields);
    } catch {
      // the process went away between the listing and the read
    }
  }
  return total;
}

/**
 * CPU time (user + system, ms) the workerd processes this one started have used so far: the
 * Worker, its consumer and the local D1 together. Read before and after a workload, per request
 * it is what the workload costs the machine, and it moves far less than req/s when another
 * process shares the cores.
 */
export function workerdCpuMs() {
  // utime and stime, fields 14 and 15 of /proc/<pid>/stat, in clock ticks (100 a second on Linux).
  return sumOverWorkerd((_pid, fields) => ((Number(fields[11]) + Number(fields[12])) * 1000) / 100);
}

/** Resident memory of the workerd processes this Node process started, in MiB (sampled for the peak). */
export function workerdRssMiB() {
  return sumOverWorkerd((pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, "utf8"))?.[1] ?? 0) / 1024);
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

/** The inspector's target of the Worker under test: Miniflare names it `core:user:<name>` (ours has no name). */
export const WORKER_TARGET = /^core:user:/;
/** Miniflare's D1 simulator: its entry Worker and the Durable Object that runs SQLite (on the platform, D1's own servers). */
const SIMULATOR_TARGET = /^d1:/;
/** Miniflare's own entry Worker, which every request passes through before ours (not on the platform either). */
const ENTRY_TARGET = /^core:entry$/;

/**
 * Attributes one isolate's CPU profile. V8 samples an isolate only while its thread holds it, and
 * workerd runs our Worker, Miniflare's entry and the D1 simulator in turns on one thread; a sample's
 * `timeDelta` is then the time since the isolate's previous sample, which includes whatever ran in
 * between (the D1 simulator answering, the machine's other work). Each non-idle sample therefore
 * counts for one sampling period (the median gap between consecutive samples, those under 5
 * intervals: the requested interval plus the sampler's own delay), never for the gap before it.
 * `part(url)` names the script of a sample: the nearest frame with a URL (a native function
 * counts for the script that called it); `(program)` (native work with no JS on the stack) and
 * `(garbage collector)` are parts of their own.
 */
export function attributeProfile(profile, interval, part = (url) => url) {
  const { nodes, samples, timeDeltas } = profile;
  const byId = new Map(nodes.map((n) => [n.id, n]));
  const parent = new Map();
  for (const n of nodes) for (const child of n.children ?? []) parent.set(child, n.id);
  const steps = timeDeltas.filter((d) => d > 0 && d < 5 * interval).sort((a, b) => a - b);
  const period = steps.length === 0 ? interval : steps[Math.floor(steps.length / 2)];
  const partOf = (id) => {
    const name = byId.get(id).callFrame.functionName;
    if (name === "(program)" || name === "(garbage collector)") return name;
    for (let at = id; at !== undefined; at = parent.get(at)) {
      const url = byId.get(at).callFrame.url;
      if (url) return part(url);
    }
    return "(native)";
  };
  const parts = {};
  const functions = new Map();
  let busy = 0;
  for (const id of samples) {
    const { functionName, url, lineNumber } = byId.get(id).callFrame;
    if (functionName === "(idle)" || functionName === "(root)") continue;
    busy += period;
    const p = partOf(id);
    parts[p] = (parts[p] ?? 0) + period;
    const key = `${functionName || "(anonymous)"} ${url ? `${url.split("/").pop()}:${lineNumber + 1}` : ""}`.trim();
    functions.set(key, (functions.get(key) ?? 0) + period);
  }
  return { busy, parts, functions, period, samples: samples.length };
}

/**
 * A CPU profiler on a Worker started with `inspectorPort` (workerd's inspector, the Chrome
 * DevTools protocol's Profiler domain), sampling every `interval` µs. `busy(run)` profiles, while
 * `run` runs, our Worker's isolate and, apart, Miniflare's D1 simulator and entry Worker, and
 * returns the sampled time in µs (see `attributeProfile`): `worker` (our isolate, billed on the
 * platform) split into `script` (the bundle's own JS, `scriptName`), `runtime` (workerd's JS in
 * our isolate: the D1 binding, which parses D1's answer, and tracing) and `native` (`(program)`
 * and the garbage collector); `simulator` (the D1 simulator's isolates: D1's own servers on the
 * platform, not billed to the Worker) and `entry` (Miniflare's entry Worker). Sampling slows the
 * isolates, and a busy machine inflates every figure.
 */
export async function cpuProfiler(inspectorPort, { scriptName, interval = 100 } = {}) {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const sessions = [];
  for (const [role, pattern] of [["worker", WORKER_TARGET], ["simulator", SIMULATOR_TARGET], ["entry", ENTRY_TARGET]]) {
    for (const t of targets.filter((x) => pattern.test(x.id))) sessions.push({ role, ...(await devtools(inspectorPort, t.id)) });
  }
  if (!sessions.some((s) => s.role === "worker")) throw new Error(`no Worker among the inspector's targets: ${targets.map((t) => t.id).join(", ")}`);
  for (const s of sessions) {
    await s.send("Profiler.enable");
    await s.send("Profiler.setSamplingInterval", { interval });
  }
  const scriptPart = (url) => (scriptName !== undefined && (url === scriptName || url.endsWith(`/${scriptName}`)) ? "script" : /^(cloudflare|node)-internal:/.test(url) ? "runtime" : url);
  return {
    async busy(run) {
      for (const s of sessions) await s.send("Profiler.start");
      await run();
      const out = { worker: { total: 0, script: 0, runtime: 0, native: 0, other: 0 }, simulator: 0, entry: 0, period: 0, functions: new Map() };
      for (const s of sessions) {
        const { result } = await s.send("Profiler.stop");
        if (s.role !== "worker") {
          out[s.role] += attributeProfile(result.profile, interval).busy;
          continue;
        }
        const a = attributeProfile(result.profile, interval, scriptPart);
        out.period = a.period;
        out.functions = a.functions;
        out.worker.total += a.busy;
        for (const [p, us] of Object.entries(a.parts)) {
          const key = p === "script" || p === "runtime" ? p : p.startsWith("(") ? "native" : "other";
          out.worker[key] += us;
        }
      }
      return out;
    },
    close: () => {
      for (const s of sessions) s.close();
    },
  };
}

/** A Chrome DevTools protocol session on one target of workerd's inspector (by default our Worker): `send(method, params)` answers its reply. */
export async function devtools(inspectorPort, targetId = WORKER_TARGET) {
  const targets = await (await fetch(`http://127.0.0.1:${inspectorPort}/json`)).json();
  const target = targets.find((t) => t.webSocketDebuggerUrl && (typeof targetId === "string" ? t.id === targetId : targetId.test(t.id)));
  if (target === undefined) throw new Error(`no inspector target ${targetId} among ${targets.map((t) => t.id).join(", ")}`);
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
