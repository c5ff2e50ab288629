/**
 * The simulated world the simulation drives the real code in: a clock, the two Queues (as
 * messages with attempts, delays, acks and a dead-letter queue), the destinations' receivers
 * (in-process fakes behind a `fetch` stub), two isolates (each its own destinations cache and
 * enqueue buffer), and the bindings the code is given: the real local D1 and R2 of the vitest
 * plugin, wrapped so that every call is a point where the scheduler chooses who runs next and
 * where a fault can be injected (before the call reaches D1 or R2, after it did, or an
 * invocation killed there, its later steps never run).
 */
import { vi } from "vitest";
import type fc from "fast-check";
import type { QueueMessage } from "../../src/alert";
import { type DestinationsCache, newDestinationsCache } from "../../src/fanout/configured";
import type { EnqueueBuffer } from "../../src/ingest/enqueue-buffer";

export type Binding = "d1" | "r2" | "queue" | "fetch" | "timer";
/** What a fault counts: every call to a binding, or only D1 batches (the commits). */
export type FaultTarget = Binding | "any" | "batch";
export type InvocationKind = "webhook" | "consumer" | "dlq" | "cron" | "archive" | "erase" | "manage";
export type FaultMode = "before" | "after" | "kill";

export interface Isolate {
  name: "A" | "B";
  cache: DestinationsCache;
  buffer: EnqueueBuffer;
}

export interface Invocation {
  id: number;
  kind: InvocationKind;
  label: string;
  /** Subrequests it made (D1 calls, R2 operations, Queue sends, fetches). */
  calls: number;
  d1_calls: number;
  /** JSONata evaluations it ran (the modelled CPU). */
  evaluations: number;
  killed: boolean;
  /** A fault was injected into it, or it was killed: what it sent may not be recorded. */
  faulted: boolean;
  done: boolean;
  /** Work after the reply (`waitUntil`). */
  pending: Promise<unknown>[];
  onKill: (() => void)[];
  fault: { binding: FaultTarget; nth: number; mode: FaultMode; span: number; seen: number } | null;
}

export interface SimMessage {
  id: string;
  queue: "alerts" | "dlq";
  body: QueueMessage;
  attempts: number;
  visible_at: number;
  leased: boolean;
}

export type ReceiverMode = "ok" | "fail" | "slow-down" | "hang";

export interface Received {
  /** The destination's name (its receiver's host, without a URL change's suffix). */
  host: string;
  alert_id: string | null;
  body: string;
  at: number;
  /** The receiver answered 2xx. */
  acked: boolean;
  invocation: Invocation | null;
  user: string | null;
  submitted_at: string | null;
}

/** Queue settings of the simulation (the alerts queue gives up sooner than wrangler.toml's 10, so dead letters come). */
export const MAX_RETRIES = { alerts: 3, dlq: 100 } as const;
export const MAX_BATCH = 10;
export const START_TIME = Date.parse("2026-03-02T08:00:00.000Z");

class SimulatedFault extends Error {
  override readonly name = "SimulatedFault";
}

/** Counts JSONata evaluations of the current invocation (set when a wrapped call resumes it). */
export const cpu = { current: null as Invocation | null };

export class World {
  now = START_TIME;
  sched: fc.Scheduler | null = null;
  invocations: Invocation[] = [];
  messages: SimMessage[] = [];
  /** Every message ever sent, for redelivery (the Queue delivers at least once). */
  sent: SimMessage[] = [];
  receivers = new Map<string, ReceiverMode>();
  received: Received[] = [];
  notifications: string[] = [];
  logs: string[] = [];
  /** Every binding call (with its fault), receiver hit and log line, in order: `npm run sim -- --trace` prints it. */
  journal: string[] = [];
  /** How each invocation ended (its value or its error), for a failing run's report. */
  outcomes: string[] = [];
  isolates: Record<"A" | "B", Isolate> = {
    A: { name: "A", cache: newDestinationsCache(), buffer: { ids: [], wait: (ms) => this.timer(ms) } },
    B: { name: "B", cache: newDestinationsCache(), buffer: { ids: [], wait: (ms) => this.timer(ms) } },
  };
  /** How the last archive tick of its own schedule ended. */
  lastArchiveTick: "ok" | "failed" | null = null;
  /** Faults armed on the next invocation of a kind. */
  armed = new Map<InvocationKind, NonNullable<Invocation["fault"]>>();
  /** D1 calls that fail (before reaching D1) from now on, whoever makes them. */
  outage = 0;
  /** A flaky D1: each of the next `calls` D1 calls fails with probability `rate`, before or after it took effect. */
  flaky: { calls: number; rate: number; mode: "before" | "after" } | null = null;
  /** The run's seeded random numbers (faults of a flaky D1). */
  random: () => number = Math.random;
  private nextMessage = 0;
  private nextInvocation = 0;

  constructor(
    readonly realDb: D1Database,
    readonly realBucket: R2Bucket,
  ) {}

  setClock(ms: number): void {
    this.now = ms;
    vi.setSystemTime(ms);
  }

  date(): Date {
    return new Date(this.now);
  }

  /** Starts an invocation in the background; `run` gets its bindings. */
  start(kind: InvocationKind, label: string, run: (inv: Invocation) => Promise<unknown>): Invocation {
    const inv: Invocation = {
      id: ++this.nextInvocation,
      kind,
      label,
      calls: 0,
      d1_calls: 0,
      evaluations: 0,
      killed: false,
      faulted: false,
      done: false,
      pending: [],
      onKill: [],
      fault: this.armed.get(kind) ?? null,
    };
    this.armed.delete(kind);
    this.invocations.push(inv);
    const main = Promise.resolve()
      .then(() => run(inv))
      .then(
        (value) => void this.outcomes.push(`${inv.label}: ${JSON.stringify(value)?.slice(0, 120)}`),
        (error: unknown) => void this.outcomes.push(`${inv.label}: threw ${error instanceof Error ? error.message : String(error)}`),
      );
    inv.pending.push(main);
    void this.settle(inv);
    return inv;
  }

  private async settle(inv: Invocation): Promise<void> {
    // Its waitUntil work may be added while it runs: wait until none is left.
    let seen = 0;
    while (seen < inv.pending.length) {
      seen = inv.pending.length;
      await Promise.all(inv.pending);
    }
    inv.done = true;
    this.applyDeferred();
  }

  /** Invocations neither finished nor killed. */
  running(): Invocation[] {
    return this.invocations.filter((i) => !i.done && !i.killed);
  }

  /** Waits until every live invocation is done (outside the scheduled phase: a command never waits on another). */
  async idle(): Promise<void> {
    const give_up = performance.now() + 20_000;
    while (this.running().length > 0) {
      if (performance.now() > give_up) throw new Error(`invocations never finished: ${this.running().map((i) => i.label).join(", ")}`);
      await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** Clock time still to pass once the invocations in flight have ended (no invocation lasts minutes). */
  deferred = 0;

  /** Moves the clock on now, or as soon as nothing runs. */
  advance(ms: number): void {
    this.deferred += ms;
    this.applyDeferred();
  }

  applyDeferred(): void {
    if (this.deferred === 0 || this.running().length > 0) return;
    const ms = this.deferred;
    this.deferred = 0;
    this.setClock(this.now + ms);
  }

  kill(inv: Invocation): void {
    if (inv.killed) return;
    inv.killed = true;
    inv.faulted = true;
    for (const f of inv.onKill) f();
    this.applyDeferred();
  }

  /**
   * One call to a binding: scheduled (it starts when the scheduler picks it, and the scheduler
   * waits for it), counted, and faulted when a fault is armed for it. A killed invocation's
   * call never settles.
   */
  point<T>(inv: Invocation | null, binding: Binding, label: string, call: () => Promise<T>): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      const exec = async (): Promise<void> => {
        if (inv?.killed) return;
        let mode: FaultMode | null = null;
        if (inv !== null && binding !== "timer") {
          inv.calls += 1;
          if (binding === "d1") inv.d1_calls += 1;
          const f = inv.fault;
          const isBatch = binding === "d1" && label.startsWith("batch");
          if (f !== null && (f.binding === "any" || f.binding === binding || (f.binding === "batch" && isBatch))) {
            if (f.seen >= f.nth && f.seen < f.nth + f.span) mode = f.mode;
            f.seen += 1;
          }
        }
        if (mode === null && binding === "d1" && this.outage > 0) {
          this.outage -= 1;
          mode = "before";
        }
        if (mode === null && binding === "d1" && this.flaky !== null && this.flaky.calls > 0) {
          this.flaky.calls -= 1;
          if (this.random() < this.flaky.rate) mode = this.flaky.mode;
        }
        if (mode !== null && inv !== null) inv.faulted = true;
        if (binding !== "timer") this.journal.push(`@${new Date(this.now).toISOString().slice(11, 19)} ${inv?.label ?? "?"} ${binding}:${label}${mode === null ? "" : ` FAULT ${mode}`}`);
        if (mode === "kill" && inv !== null) {
          this.kill(inv);
          return;
        }
        if (mode === "before") {
          reject(new SimulatedFault(`D1_ERROR: simulated ${binding} failure before the call (${label})`));
          return;
        }
        try {
          const value = await call();
          if (mode === "after") reject(new SimulatedFault(`D1_ERROR: simulated ${binding} failure after the call took effect (${label})`));
          else {
            cpu.current = inv;
            resolve(value);
          }
        } catch (error) {
          cpu.current = inv;
          reject(error);
        }
      };
      if (this.sched !== null) this.sched.scheduleSequence([{ label: `${inv?.label ?? "?"} ${binding}:${label}`, builder: exec }]);
      else void exec();
    });
  }

  /** A timer of the code (the enqueue window): it fires when the scheduler picks it. */
  timer(ms: number, inv: Invocation | null = cpu.current): Promise<void> {
    return this.point(inv, "timer", `timer ${ms} ms`, async () => undefined);
  }

  // ----- D1 -----

  db(inv: Invocation): D1Database {
    return wrapDb(this, this.realDb, inv);
  }

  // ----- R2 -----

  bucket(inv: Invocation): R2Bucket {
    const real = this.realBucket;
    const w = this;
    const wrapped = {
      put: (key: string, value: Parameters<R2Bucket["put"]>[1], options?: R2PutOptions) => w.point(inv, "r2", `put ${key}`, () => real.put(key, value, options)),
      get: (key: string, options?: R2GetOptions) => w.point(inv, "r2", `get ${key}`, () => real.get(key, options)),
      head: (key: string) => w.point(inv, "r2", `head ${key}`, () => real.head(key)),
      delete: (keys: string | string[]) => w.point(inv, "r2", `delete ${String(keys)}`, () => real.delete(keys)),
      list: (options?: R2ListOptions) => w.point(inv, "r2", "list", () => real.list(options)),
    };
    return wrapped as unknown as R2Bucket;
  }

  // ----- Queue -----

  queue(inv: Invocation): Queue<QueueMessage> {
    const w = this;
    const q = {
      send: (body: QueueMessage, options?: QueueSendOptions) =>
        w.point(inv, "queue", "send", async () => {
          w.enqueue("alerts", body, options?.delaySeconds ?? 0);
        }),
      sendBatch: (batch: Iterable<MessageSendRequest<QueueMessage>>, options?: QueueSendBatchOptions) =>
        w.point(inv, "queue", "sendBatch", async () => {
          for (const m of batch) w.enqueue("alerts", m.body, m.delaySeconds ?? options?.delaySeconds ?? 0);
        }),
      metrics: async () => ({ backlogCount: 0, backlogBytes: 0 }),
    };
    return q as unknown as Queue<QueueMessage>;
  }

  enqueue(queue: "alerts" | "dlq", body: QueueMessage, delaySeconds: number, attempts = 0): SimMessage {
    const m: SimMessage = {
      id: `m${++this.nextMessage}`,
      queue,
      body: structuredClone(body),
      attempts,
      visible_at: this.now + delaySeconds * 1000,
      leased: false,
    };
    this.messages.push(m);
    if (queue === "alerts") this.sent.push(m);
    return m;
  }

  /** Up to `max` messages of `queue` that are visible now, leased to a consumer. */
  lease(queue: "alerts" | "dlq", max: number): SimMessage[] {
    const batch = this.messages.filter((m) => m.queue === queue && !m.leased && m.visible_at <= this.now).slice(0, max);
    for (const m of batch) m.leased = true;
    return batch;
  }

  /**
   * A consumer's batch as the runtime gives it, and what to do once its invocation ends:
   * acknowledged ones go, retried ones come back after their delay (or to the dead-letter queue
   * past max_retries); the rest are acknowledged when the handler returned, retried when it threw
   * or was killed.
   */
  batchOf(queue: "alerts" | "dlq", leased: SimMessage[]): { batch: MessageBatch<unknown>; finish: (outcome: "returned" | "threw") => void } {
    const decided = new Map<string, { ack: true } | { ack: false; delay: number }>();
    const messages: Message<unknown>[] = leased.map((m) => ({
      id: m.id,
      timestamp: new Date(this.now),
      body: structuredClone(m.body),
      attempts: m.attempts + 1,
      ack: () => {
        if (!decided.has(m.id)) decided.set(m.id, { ack: true });
      },
      retry: (options?: QueueRetryOptions) => {
        if (!decided.has(m.id)) decided.set(m.id, { ack: false, delay: options?.delaySeconds ?? 0 });
      },
    }));
    const batch = {
      queue: queue === "alerts" ? "oneflow-alerts" : "oneflow-alerts-dlq",
      messages,
      ackAll: () => {
        for (const m of messages) m.ack();
      },
      retryAll: (options?: QueueRetryOptions) => {
        for (const m of messages) m.retry(options);
      },
    } as unknown as MessageBatch<unknown>;
    let finished = false;
    const finish = (outcome: "returned" | "threw") => {
      if (finished) return;
      finished = true;
      for (const m of leased) {
        const d = decided.get(m.id) ?? (outcome === "returned" ? { ack: true as const } : { ack: false as const, delay: 0 });
        m.leased = false;
        if (d.ack) {
          this.messages = this.messages.filter((x) => x !== m);
          continue;
        }
        m.attempts += 1;
        if (m.attempts > MAX_RETRIES[queue]) {
          this.messages = this.messages.filter((x) => x !== m);
          if (queue === "alerts") this.enqueue("dlq", m.body, 0);
          continue;
        }
        m.visible_at = this.now + d.delay * 1000;
      }
    };
    return { batch, finish };
  }

  // ----- fetch -----

  /** The outbound fetch: destinations' receivers, and NOTIFY_URL. */
  fetch = async (input: RequestInfo | URL, init?: RequestInit): Promise<Response> => {
    const request = new Request(input as RequestInfo, init);
    const inv = cpu.current;
    const url = new URL(request.url);
    const body = await request.text();
    const signal = init?.signal ?? request.signal;
    return this.point(inv, "fetch", `${request.method} ${url.host}`, async () => {
      if (url.host === "notify.sim.test") {
        this.notifications.push(body);
        return new Response("ok");
      }
      const destination = url.host.split(".")[0]?.split("-")[0] ?? url.host;
      const mode = this.receivers.get(destination) ?? "ok";
      let alert_id: string | null = null;
      let user: string | null = null;
      let submitted_at: string | null = null;
      try {
        const json = JSON.parse(body) as Record<string, unknown>;
        const a = json.alert_id;
        alert_id = typeof a === "string" ? a : (request.headers.get("webhook-id") ?? null);
        const u = (json.user as { user_system_id?: unknown; id?: unknown } | undefined) ?? undefined;
        const uid = json.user_id ?? u?.user_system_id ?? u?.id;
        user = typeof uid === "string" ? uid : null;
        submitted_at = typeof json.timestamp === "string" ? json.timestamp : typeof json.submitted_at === "string" ? json.submitted_at : null;
      } catch {
        alert_id = request.headers.get("webhook-id");
      }
      const entry: Received = { host: destination, alert_id: alert_id ?? request.headers.get("webhook-id"), body, at: this.now, acked: false, invocation: inv, user, submitted_at };
      this.received.push(entry);
      this.journal.push(`@${new Date(this.now).toISOString().slice(11, 19)} ${inv?.label ?? "?"} RECEIVER ${destination} got ${entry.alert_id ?? `${user}@${submitted_at}`} (${mode})`);
      if (mode === "hang") {
        // No answer: the caller's timeout ends it.
        await new Promise<void>((_, reject) => {
          const abort = () => reject(signal?.reason ?? new DOMException("timed out", "TimeoutError"));
          if (signal?.aborted) abort();
          signal?.addEventListener("abort", abort);
        });
      }
      if (mode === "fail") return new Response("down", { status: 500 });
      if (mode === "slow-down") return new Response("slow down", { status: 429, headers: { "retry-after": "2" } });
      entry.acked = true;
      return new Response("ok", { status: 200 });
    });
  };
}

const unwrapped = new WeakMap<object, D1PreparedStatement>();

function wrapStatement(w: World, real: D1PreparedStatement, inv: Invocation, sql: string): D1PreparedStatement {
  const short = sql.replace(/\s+/g, " ").slice(0, 60);
  const s = {
    bind: (...values: unknown[]) => wrapStatement(w, real.bind(...values), inv, sql),
    first: (column?: string) => w.point(inv, "d1", `first ${short}`, () => (column === undefined ? real.first() : real.first(column))),
    run: () => w.point(inv, "d1", `run ${short}`, () => real.run()),
    all: () => w.point(inv, "d1", `all ${short}`, () => real.all()),
    raw: (options?: { columnNames?: boolean }) => w.point(inv, "d1", `raw ${short}`, () => real.raw(options as { columnNames: true })),
  };
  unwrapped.set(s, real);
  return s as unknown as D1PreparedStatement;
}

export function wrapDb(w: World, real: D1Database, inv: Invocation): D1Database {
  const db = {
    prepare: (sql: string) => wrapStatement(w, real.prepare(sql), inv, sql),
    batch: (statements: D1PreparedStatement[]) =>
      w.point(inv, "d1", `batch(${statements.length})`, () => real.batch(statements.map((s) => unwrapped.get(s) ?? s))),
    exec: (sql: string) => w.point(inv, "d1", "exec", () => real.exec(sql)),
    withSession: () => db,
    dump: () => real.dump(),
  };
  return db as unknown as D1Database;
}
