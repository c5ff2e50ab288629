/**
 * One simulation run: a fresh D1 and R2, a command sequence run under fast-check's scheduler
 * (`scheduledModelRun`), then the world driven to quiescence (faults off, receivers answering,
 * queues drained, crons ticked past every delay) and the invariants checked.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { vi } from "vitest";
import { STALE_PENDING_IN_SECONDS } from "../../src/outbox";
import { commandArbitraries, Manage, type Model, startConsumer, startReenable, startCron, startDeadLetters, startErase, SIM_VARS } from "./commands";
import { checkArchive, checkDeliveries, checkErasure, checkLimits, checkNoDuplicate, checkRetention, checkRollups, type Violation } from "./invariants";
import { START_TIME, World } from "./world";

export const MAX_COMMANDS = 40;
export const MIN_COMMANDS = 12;

/** Empties every table and the bucket (the migrations' one seeded row put back). */
export async function resetStorage(): Promise<void> {
  const db = env.DB;
  const { results } = await db
    .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'")
    .all<{ name: string }>();
  await db.batch([...results.map((t) => db.prepare(`DELETE FROM "${t.name}"`)), db.prepare("INSERT INTO archive_state (id) VALUES (1)")]);
  const bucket = env.ARCHIVE as R2Bucket;
  for (;;) {
    const page = await bucket.list();
    if (page.objects.length === 0) break;
    await bucket.delete(page.objects.map((o) => o.key));
  }
}

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

/** The console as it was before any run captured it. */
const print = console.log.bind(console);
let current: World | null = null;

const CONSOLE = ["log", "info", "warn", "error", "debug"] as const;

/** Captures every console line of the run into `world.logs` (and prints none: a failing run prints its own report). */
function captureConsole(world: World): () => void {
  const saved = CONSOLE.map((k) => console[k]);
  for (const k of CONSOLE) {
    console[k] = (...args: unknown[]) => {
      const line = args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" ");
      world.logs.push(line);
      world.journal.push(line);
    };
  }
  return () => CONSOLE.forEach((k, i) => (console[k] = saved[i] as (typeof console)[typeof k]));
}

async function setupDestination(m: Model): Promise<void> {
  await new Manage("d1", { kind: "put", template: "raw" }).run(m);
  await m.world.idle();
  m.changed.set("d1", m.world.now - 60_000);
}

async function drain(m: Model, isolate: "A" | "B"): Promise<void> {
  const world = m.world;
  for (let i = 0; i < 40; i++) {
    const a = startConsumer(m, isolate, 10);
    const d = startDeadLetters(m);
    if (a === null && d === null) return;
    await world.idle();
  }
}

async function tick(m: Model, archive: boolean): Promise<void> {
  startCron(m, archive);
  await m.world.idle();
}

async function pendingWork(m: Model): Promise<boolean> {
  const db = m.world.realDb;
  const row = await db
    .prepare(
      `SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending') + (SELECT COUNT(*) FROM alerts WHERE enqueued_at IS NULL)
            + (SELECT COUNT(*) FROM alerts a WHERE NOT EXISTS (SELECT 1 FROM archived_alerts x WHERE x.alert_id = a.alert_id))
            + (SELECT COUNT(*) FROM archive_late) AS n`,
    )
    .first<{ n: number }>();
  return (row?.n ?? 0) > 0 || m.world.messages.length > 0;
}

/** Faults off, receivers answering, then queues drained and crons ticked until nothing is left (bounded). */
async function quiesce(m: Model): Promise<void> {
  const world = m.world;
  world.armed.clear();
  world.outage = 0;
  world.flaky = null;
  for (const name of world.receivers.keys()) world.receivers.set(name, "ok");
  await world.idle();
  // An erasure that failed (D1 down) is called again by the operator, until it answers done.
  for (let i = 0; i < 5; i++) {
    const open = [...m.erased.keys()].filter((u) => !m.confirmed.has(u));
    if (open.length === 0) break;
    for (const user of open) startErase(m, user, 0);
    await world.idle();
  }
  // Destinations disabled by hand are enabled again, so that what waited for them is checked too.
  const disabled = await world.realDb.prepare("SELECT name FROM destinations WHERE config ->> 'enabled' = 0").all<{ name: string }>();
  if (disabled.results.length > 0) {
    startReenable(m, disabled.results.map((r) => r.name));
    await world.idle();
  }
  // Consumers in both isolates keep running while the clock moves: a few seconds at first (retries
  // come back within a cache's 30 s), then by the archive's delay.
  const steps = [5_000, 10_000, 15_000, 60_000];
  for (let round = 0; round < 16; round++) {
    const isolate = round % 2 === 0 ? "A" : "B";
    await drain(m, isolate);
    await tick(m, false);
    await drain(m, isolate);
    await tick(m, true);
    if (!(await pendingWork(m))) break;
    // Past the rounds of retries and the archive's delays: once past the sweep of stale pending
    // rows (two hours), which sends again what a lost message left.
    const step = round === 13 ? (STALE_PENDING_IN_SECONDS + 60) * 1000 : (steps[round] ?? Number(SIM_VARS.ARCHIVE_DELAY_MINUTES) * 60_000);
    world.setClock(world.now + step);
  }
}

/** Where the runs' time went (ms), for `npm run sim`. */
export const timing = { commands: 0, quiesce: 0, checks: 0 };

export interface RunResult {
  violations: Violation[];
  model: Model;
}

/** Runs one sequence and returns what the invariants found. */
export async function simulate(s: fc.Scheduler, cmds: Iterable<fc.AsyncCommand<Model, Model, false>>, seed: number): Promise<RunResult> {
  await resetStorage();
  vi.useRealTimers();
  const world = new World(env.DB, env.ARCHIVE as R2Bucket);
  current = world;
  world.setClock(START_TIME);
  const model: Model = {
    world,
    bodies: [],
    erased: new Map(),
    confirmed: new Set(),
    changed: new Map(),
    deleted: new Set(),
    refiltered: new Set(),
    templates: new Map(),
    generation: new Map(),
    counter: 0,
    random: mulberry32(seed),
  };
  world.random = mulberry32(seed ^ 0x5eed);
  const restoreConsole = captureConsole(world);
  const realFetch = globalThis.fetch;
  globalThis.fetch = world.fetch as typeof fetch;
  const violations: Violation[] = [];
  const t0 = performance.now();
  let t1 = t0;
  let t2 = t0;
  try {
    // Every run starts with one destination (raw, d1) that the API put before anything else.
    await setupDestination(model);
    world.sched = s;
    await fc.scheduledModelRun(s, () => ({ model, real: model }), cmds);
    world.sched = null;
    // Tasks a timer registered after the run: released in order, as without a scheduler.
    while (s.count() > 0 || world.running().length > 0) {
      if (s.count() > 0) await s.waitAll();
      else await new Promise((r) => setTimeout(r, 1));
    }
    t1 = performance.now();
    world.applyDeferred();
    await quiesce(model);
    t2 = performance.now();
    violations.push(...(await checkArchive(world, { garbage_due: false })));
    violations.push(...(await checkDeliveries(model)));
    violations.push(...checkNoDuplicate(world));
    violations.push(...(await checkErasure(model)));
    violations.push(...(await checkRollups(world)));
    // Past the garbage delay (one archive tick), then past retention: a bounded number of main ticks.
    world.setClock(world.now + 31 * 60_000);
    await tick(model, true);
    violations.push(...(await checkArchive(world, { garbage_due: true })));
    world.setClock(world.now + (Number(SIM_VARS.RETENTION_DAYS) + 1) * 86_400_000);
    const RETENTION_TICKS = 2;
    for (let i = 0; i < RETENTION_TICKS; i++) {
      await tick(model, false);
      world.setClock(world.now + 5 * 60_000);
    }
    violations.push(...(await checkRetention(world, RETENTION_TICKS)));
    violations.push(...checkLimits(world));
    timing.commands += t1 - t0;
    timing.quiesce += t2 - t1;
    timing.checks += performance.now() - t2;
  } finally {
    world.sched = null;
    globalThis.fetch = realFetch;
    restoreConsole();
    vi.useRealTimers();
  }
  return { violations: dedupe(violations), model };
}

function dedupe(violations: Violation[]): Violation[] {
  const seen = new Set<string>();
  return violations.filter((v) => (seen.has(v.message) ? false : (seen.add(v.message), true)));
}

export interface SimOptions {
  seed: number;
  runs: number;
  path?: string;
  maxCommands?: number;
  /** Only these violation kinds fail the property (the explorer shrinks one kind at a time). */
  only?: (kind: string) => boolean;
  /** Called with each run's violations (the explorer records them). */
  onRun?: (violations: Violation[], cmds: string, logs: string[]) => void;
  /**
   * Past this time (performance.now()), runs pass without running: a shrink stops there and
   * reports the smallest failing sequence so far (fast-check's own time limit would abandon a
   * run halfway, leaving it running against the next one's storage).
   */
  deadline?: number;
  /** Prints a progress line every this many runs (npm run sim). */
  progressEvery?: number;
  /** The commands' generator version (GENERATOR unless a kept seed was found with an older one). */
  generator?: number;
}

let runsDone = 0;

/** The property: `npm test` and `npm run sim` both run it. */
export function simProperty(options: SimOptions) {
  return fc.asyncProperty(
    fc.scheduler(),
    // A sequence of 10 to 36 commands (fc.commands would mostly make short ones); shrinking drops commands down to 10.
    fc.array(fc.oneof(...commandArbitraries(options.generator)), { minLength: MIN_COMMANDS, maxLength: options.maxCommands ?? MAX_COMMANDS }),
    fc.integer({ min: 1, max: 0x7fff_ffff }),
    async (s, cmds, seed) => {
      if (options.deadline !== undefined && performance.now() > options.deadline) return;
      const watchdog = setTimeout(() => print(`SIM watchdog: a run is taking over 20 s: ${String(cmds)}\nrunning: ${current?.running().map((i) => i.label).join(", ")}\nscheduled: ${s.count()}`), 20_000);
      let result: RunResult;
      try {
        result = await simulate(s, cmds, seed);
      } finally {
        clearTimeout(watchdog);
      }
      const { violations } = result;
      runsDone += 1;
      if (options.progressEvery !== undefined && runsDone % options.progressEvery === 0) console.log(`SIM progress: ${runsDone} runs (last: ${[...cmds].length} commands, ${result.model.world.invocations.length} invocations, ${result.model.world.received.length} deliveries, ${violations.length} violations)`);
      options.onRun?.(violations, String(cmds), result.model.world.journal);
      const failing = violations.filter((v) => options.only?.(v.kind) ?? true);
      if (failing.length > 0) throw new Error(`invariants broken:\n${failing.map((v) => `  ${v.invariant} [${v.kind}] ${v.message}`).join("\n")}`);
    },
  );
}

export function simParameters(options: SimOptions): fc.Parameters<[fc.Scheduler, Iterable<fc.AsyncCommand<Model, Model, false>>, number]> {
  return {
    seed: options.seed,
    numRuns: options.runs,
    ...(options.path === undefined ? {} : { path: options.path }),
    // A run that never ends (a deadlock in the harness) fails with its commands, not the whole file.
    timeout: 60_000,
    verbose: 1,
  };
}
