/**
 * The simulation's commands: each starts an invocation of the real code (or changes the world:
 * the clock, a receiver, a fault) and returns at once, so that invocations run side by side and
 * the scheduler interleaves their calls. `toString` is what a failing run prints.
 */
import { createExecutionContext } from "cloudflare:test";
import fc from "fast-check";
import { env } from "cloudflare:workers";
import type { Env } from "../../src/env";
import { runArchiveCron, runCron } from "../../src/cron";
import { breakerSettings } from "../../src/fanout/breaker";
import { beginBackfill, endBackfill } from "../../src/backfill";
import { destinationsOf, newDestinationsCache } from "../../src/fanout/configured";
import { consumeAlerts } from "../../src/fanout/consumer";
import { consumeDeadLetters } from "../../src/fanout/dead-letters";
import { compile } from "../../src/fanout/jsonata";
import { app } from "../../src/http/app";
import { ingest } from "../../src/ingest/ingest";
import { type ManageDeps, patchDestinationEntry, putDestinationEntry, removeDestination } from "../../src/manage-destinations";
import { secretKeys } from "../../src/secrets";
import { cpu, type FaultTarget, type FaultMode, type Invocation, type InvocationKind, MAX_BATCH, type ReceiverMode, type World } from "./world";

/** The simulation's settings (its Worker variables). */
export const SIM_VARS = {
  RETENTION_DAYS: "1",
  ARCHIVE_DELAY_MINUTES: "10",
  NOTIFY_URL: "https://notify.sim.test/hook",
  RETRY_BASE_SECONDS: "2",
  PAUSE_AFTER_FAILURES: "4",
  PAUSE_SECONDS: "120",
  ADMIN_TOKEN: "sim-admin-token",
} as const;
export const SUBREQUEST_LIMIT = 50;
/** Real milliseconds a receiver that hangs is given (the delivery timeout, shortened). */
export const SIM_DELIVERY_TIMEOUT_MS = 25;
/** The modelled CPU: JSONata evaluations one invocation may run (10 alerts × 3 destinations × 2 expressions). */
export const MAX_EVALUATIONS = 60;

export const USERS = ["usr-7f3a9c01", "usr-2b8e4d02", "usr-91c6aa03"] as const;
export type User = (typeof USERS)[number];
/** A user's parameters: their values are personal data too. */
export function userParameters(user: string): { email: string; plan: string } {
  return { email: `${user}.mail@example.org`, plan: user.endsWith("1") ? "pro" : "free" };
}

export type BodyKind = "valid" | "invalid" | "nonjson";
export interface SentBody {
  text: string;
  user: string;
  alert_id: string;
  kind: BodyKind;
  submitted_at: string;
}

export const NAMES = ["d1", "d2", "d3"] as const;
export const TEMPLATES = ["raw", "json-ios", "jsonata", "jsonata-cast", "identify", "expression"] as const;
export type Template = (typeof TEMPLATES)[number];

export function destinationBody(name: string, template: Template, generation = 0): Record<string, unknown> {
  const url = `https://${name}${generation === 0 ? "" : `-v${generation}`}.sim.test/hook`;
  switch (template) {
    case "raw":
      return { url };
    case "json-ios":
      return { url, format: "json", filter: { platforms: ["ios"] } };
    case "jsonata":
      return { url, format: "jsonata", transform: "{ 'id': alert_id, 'survey': survey.id, 'nps': answers[type='nps'].value }" };
    case "jsonata-cast":
      // Fails on every response whose plan is not a number: the error names the value.
      return { url, format: "jsonata", transform: "{ 'id': alert_id, 'plan': $number(user.parameters.email) }" };
    case "identify":
      return { url, format: "1flow-identify" };
    case "expression":
      return { url, format: "json", filter: { expression: "user.parameters.plan = 'pro'" } };
  }
}

/** What the model keeps beside the real system: what was sent, done, and changed when. */
export interface Model {
  world: World;
  bodies: SentBody[];
  erased: Map<string, number>;
  /** Users whose erasure answered ok with `more: false`. */
  confirmed: Set<string>;
  /** Destinations' last change (PUT, PATCH, DELETE), by name. */
  changed: Map<string, number>;
  deleted: Set<string>;
  refiltered: Set<string>;
  templates: Map<string, Template>;
  generation: Map<string, number>;
  counter: number;
  random: () => number;
}

export function simEnv(world: World, inv: Invocation): Env {
  return {
    ...(env as unknown as Env),
    DB: world.db(inv),
    ALERTS_QUEUE: world.queue(inv),
    ARCHIVE: world.bucket(inv),
    DESTINATIONS: "",
    ...SIM_VARS,
  };
}

/** Counts every JSONata evaluation against the invocation running it (the modelled CPU). */
const counted = new WeakSet<object>();
function countEvaluations(source: string | undefined): void {
  if (source === undefined) return;
  const c = compile(source);
  if (!c.ok || counted.has(c.expression)) return;
  counted.add(c.expression);
  const original = c.expression.evaluate.bind(c.expression);
  c.expression.evaluate = ((input: unknown, bindings?: Record<string, unknown>, callback?: unknown) => {
    if (cpu.current !== null) cpu.current.evaluations += 1;
    return (original as (...args: unknown[]) => unknown)(input, bindings, callback);
  }) as typeof c.expression.evaluate;
}

type Cmd = fc.AsyncCommand<Model, Model, false>;

function payload(m: Model, user: string, kind: BodyKind): SentBody {
  m.counter += 1;
  const alert_id = `alert-${String(m.counter).padStart(3, "0")}`;
  const submitted_at = new Date(m.world.now - (m.counter % 7) * 60_000).toISOString();
  const nps = Math.floor(m.random() * 11);
  const body = {
    alert_name: "submitted_survey",
    alert_id,
    project_name: "Sim",
    survey_id: m.counter % 2 === 0 ? "survey-a" : "survey-b",
    platform: m.counter % 3 === 0 ? "ios" : "android",
    survey_info: {
      name: "NPS",
      screens:
        kind === "invalid"
          ? "not screens"
          : [
              { title: "How likely?", answer: String(nps), type: "nps" },
              { title: "Why?", answer: "fine", type: "text" },
            ],
    },
    user: { user_system_id: user, parameters: userParameters(user) },
    timestamp: submitted_at,
    trigger_event: { event_name: "done", parameters: { step: "3" } },
  };
  const text = kind === "nonjson" ? `${JSON.stringify(body).slice(0, -1)},,` : JSON.stringify(body);
  return { text, user, alert_id, kind, submitted_at };
}

/** A webhook POST: a new body, or one sent before (1Flow's retry, a duplicate), or a conflicting one. */
export class Post implements Cmd {
  constructor(
    readonly isolate: "A" | "B",
    readonly what: { kind: "new"; user: number; body: BodyKind } | { kind: "again"; index: number } | { kind: "conflict"; index: number },
  ) {}
  check(m: Readonly<Model>): boolean {
    if (this.what.kind === "new") return !m.erased.has(USERS[this.what.user % USERS.length] ?? "");
    return m.bodies.length > 0;
  }
  async run(m: Model): Promise<void> {
    let sent: SentBody;
    if (this.what.kind === "new") {
      sent = payload(m, USERS[this.what.user % USERS.length] ?? USERS[0], this.what.body);
      m.bodies.push(sent);
    } else {
      // Counted back from the latest body: 1Flow retries what it sent recently most.
      const earlier = m.bodies[m.bodies.length - 1 - (this.what.index % m.bodies.length)];
      if (earlier === undefined) return;
      sent = earlier;
      if (this.what.kind === "conflict" && earlier.kind === "valid") {
        const json = JSON.parse(earlier.text) as { survey_info: { name: string } };
        json.survey_info.name = "NPS (edited)";
        sent = { ...earlier, text: JSON.stringify(json) };
      }
    }
    const world = m.world;
    const isolate = world.isolates[this.isolate];
    world.start("webhook", `webhook#${sent.alert_id}@${this.isolate}`, async (inv) => {
      return ingest(new TextEncoder().encode(sent.text).buffer as ArrayBuffer, {
        db: world.db(inv),
        queue: world.queue(inv),
        waitUntil: (p) => inv.pending.push(p.catch(() => undefined)),
        now: () => world.date(),
        deadline_at: Date.now() + 1_000_000_000,
        request_id: `req-${inv.id}`,
        spool: true,
        enqueue_buffer: isolate.buffer,
      });
    });
  }
  toString(): string {
    const w = this.what;
    return w.kind === "new" ? `Post(${this.isolate}, new ${w.body} of user ${w.user})` : `Post(${this.isolate}, ${w.kind} of the ${w.index === 0 ? "latest body" : `body ${w.index} before the latest`})`;
  }
}

/**
 * A burst of one user's new responses (a survey answered again and again), then a consumer in
 * each isolate, one message each: the same user's responses in flight side by side (identify's lease).
 */
export class Burst implements Cmd {
  constructor(
    readonly user: number,
    readonly n: number,
  ) {}
  check(m: Readonly<Model>): boolean {
    return !m.erased.has(USERS[this.user % USERS.length] ?? "");
  }
  async run(m: Model): Promise<void> {
    // An identify destination to race for: d3 becomes one when none is (and the caches expire).
    if (![...m.templates.values()].includes("identify")) {
      await new Manage("d3", { kind: "put", template: "identify" }).run(m);
      m.world.advance(31_000);
    }
    for (let i = 0; i < this.n; i++) await new Post(i % 2 === 0 ? "A" : "B", { kind: "new", user: this.user, body: "valid" }).run(m);
    // Each polls until the webhooks' messages are on the Queue.
    startConsumer(m, "A", 1, true, 40);
    startConsumer(m, "B", 1, true, 40);
  }
  toString(): string {
    return `Burst(${this.n} new valid of user ${this.user}, then Consume(A, 1) and Consume(B, 1))`;
  }
}

/** A consumer invocation in isolate A or B, on up to `max` visible messages of the alerts queue. */
export class Consume implements Cmd {
  constructor(
    readonly isolate: "A" | "B",
    readonly max: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    startConsumer(m, this.isolate, this.max, true);
  }
  toString(): string {
    return `Consume(${this.isolate}, ${this.max})`;
  }
}

/**
 * A consumer invocation. From a command it polls: when nothing is visible yet it waits (a
 * scheduled point, up to four times) for what other invocations are about to send, as the
 * runtime hands a batch over once there is one. From the quiescence loop it only takes what is
 * visible (null when nothing is).
 */
export function startConsumer(m: Model, isolateName: "A" | "B", max: number, poll = false, polls = 4): Invocation | null {
  const world = m.world;
  if (!poll && !world.messages.some((x) => x.queue === "alerts" && !x.leased && x.visible_at <= world.now)) return null;
  const isolate = world.isolates[isolateName];
  return world.start("consumer", `consumer@${isolateName}`, async (inv) => {
    let leased = world.lease("alerts", max);
    for (let i = 0; poll && leased.length === 0 && i < polls; i++) {
      await world.timer(0, inv);
      leased = world.lease("alerts", max);
    }
    if (leased.length === 0) return;
    inv.label = `consumer@${isolateName}[${leased.map((l) => l.id).join(",")}]`;
    const { batch, finish } = world.batchOf("alerts", leased);
    inv.onKill.push(() => finish("threw"));
    try {
      const db = world.db(inv);
      const { config, calls } = await destinationsOf({ DB: db, DESTINATIONS: "", ENCRYPTION_KEY: env.ENCRYPTION_KEY }, { cache: isolate.cache, now: world.now });
      await consumeAlerts(batch, {
        db,
        queue: world.queue(inv),
        destinations: config,
        retry_base_seconds: Number(SIM_VARS.RETRY_BASE_SECONDS),
        delivery_timeout_ms: SIM_DELIVERY_TIMEOUT_MS,
        breaker: breakerSettings(SIM_VARS),
        now: () => world.date(),
        random: m.random,
        subrequest_budget: SUBREQUEST_LIMIT - calls,
      });
      finish("returned");
    } catch (error) {
      finish("threw");
      throw error;
    }
  });
}

export class DeadLetters implements Cmd {
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    startDeadLetters(m);
  }
  toString(): string {
    return "DeadLetters";
  }
}

export function startDeadLetters(m: Model): Invocation | null {
  const world = m.world;
  const leased = world.lease("dlq", MAX_BATCH);
  if (leased.length === 0) return null;
  const { batch, finish } = world.batchOf("dlq", leased);
  return world.start("dlq", `dead-letters[${leased.map((l) => l.id).join(",")}]`, async (inv) => {
    inv.onKill.push(() => finish("threw"));
    try {
      const db = world.db(inv);
      const { config } = await destinationsOf({ DB: db, DESTINATIONS: "", ENCRYPTION_KEY: env.ENCRYPTION_KEY }, { cache: world.isolates.A.cache, now: world.now });
      await consumeDeadLetters(batch, { db, queue: world.queue(inv), destinations: config, now: () => world.date(), random: m.random });
      finish("returned");
    } catch (error) {
      finish("threw");
      throw error;
    }
  });
}

export class Cron implements Cmd {
  constructor(readonly archive: boolean) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    startCron(m, this.archive);
  }
  toString(): string {
    return this.archive ? "ArchiveTick" : "CronTick";
  }
}

export function startCron(m: Model, archive: boolean): Invocation {
  const world = m.world;
  return world.start(archive ? "archive" : "cron", archive ? "archive-cron" : "main-cron", async (inv) => {
    if (archive) world.lastArchiveTick = (await runArchiveCron(simEnv(world, inv), world.date())) === null ? "failed" : "ok";
    else await runCron(simEnv(world, inv), world.date());
  });
}

/** The clock moves on (once what runs has finished: no invocation lasts minutes). */
export class Advance implements Cmd {
  constructor(readonly ms: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    m.world.advance(this.ms);
  }
  toString(): string {
    const s = this.ms / 1000;
    return s >= 86_400 ? `Advance(${s / 86_400} d)` : s >= 60 ? `Advance(${s / 60} min)` : `Advance(${s} s)`;
  }
}

/** DELETE /api/users/{id}, called again while `more` is true. */
export class Erase implements Cmd {
  constructor(readonly user: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    const user = USERS[this.user % USERS.length] ?? USERS[0];
    if (!m.erased.has(user)) m.erased.set(user, m.world.now);
    startErase(m, user, 0);
  }
  toString(): string {
    return `Erase(user ${this.user})`;
  }
}

export function startErase(m: Model, user: string, round: number): Invocation {
  const world = m.world;
  return world.start("erase", `erase ${user} #${round}`, async (inv) => {
    const ctx = createExecutionContext();
    const res = await app.fetch(
      new Request(`https://worker.sim.test/api/users/${encodeURIComponent(user)}`, { method: "DELETE", headers: { authorization: `Bearer ${SIM_VARS.ADMIN_TOKEN}` } }),
      simEnv(world, inv),
      ctx,
    );
    const json = (await res.json()) as { more?: boolean };
    if (res.ok && json.more === true && round < 10) startErase(m, user, round + 1);
    // An erasure answered "done": the operator stops here. One that failed is called again at quiescence.
    if (res.ok && json.more !== true) m.confirmed.add(user);
  });
}

/** The operator API's dependencies for one invocation. */
export async function manageDeps(world: World, inv: Invocation): Promise<ManageDeps> {
  return { db: world.db(inv), queue: world.queue(inv), config: "", keys: await secretKeys(env), now: () => world.date(), request_id: `req-${inv.id}` };
}

/**
 * At quiescence the operator enables again every destination disabled by hand (PATCH enabled
 * true), so that what waited for it is checked too (I2): re-enabling sends what waited.
 */
export function startReenable(m: Model, names: string[]): Invocation {
  const world = m.world;
  return world.start("manage", `manage re-enable ${names.join(",")}`, async (inv) => {
    const deps = await manageDeps(world, inv);
    for (const name of names) await patchDestinationEntry(deps, name, { enabled: true });
  });
}

export type DestinationChange =
  | { kind: "put"; template: Template }
  | { kind: "patch-url" }
  | { kind: "patch-filter"; platforms: string[] | null }
  | { kind: "patch-enabled"; enabled: boolean }
  | { kind: "delete" };

/** The operator API on destinations: PUT, PATCH of url, filter or enabled, DELETE. */
export class Manage implements Cmd {
  constructor(
    readonly name: string,
    readonly change: DestinationChange,
  ) {}
  check(m: Readonly<Model>): boolean {
    return this.change.kind === "put" || m.templates.has(this.name);
  }
  async run(m: Model): Promise<void> {
    const world = m.world;
    const { name, change } = this;
    // Only what changes which responses a destination wants (a PUT, a filter, a DELETE) opens the
    // propagation window of I2; a URL or enabled change leaves every wanted delivery wanted.
    const rewants = change.kind === "put" || change.kind === "patch-filter" || change.kind === "delete";
    world.start("manage", `manage ${name} ${change.kind}`, async (inv) => {
      const deps = await manageDeps(world, inv);
      if (rewants) m.changed.set(name, world.now);
      try {
      switch (change.kind) {
        case "put": {
          const body = destinationBody(name, change.template, m.generation.get(name) ?? 0);
          countEvaluations(body.transform as string | undefined);
          countEvaluations((body.filter as { expression?: string } | undefined)?.expression);
          m.refiltered.add(name);
          const r = await putDestinationEntry(deps, name, body);
          if (r.ok) m.templates.set(name, change.template);
          break;
        }
        case "patch-url": {
          const generation = (m.generation.get(name) ?? 0) + 1;
          m.generation.set(name, generation);
          await patchDestinationEntry(deps, name, { url: `https://${name}-v${generation}.sim.test/hook` });
          break;
        }
        case "patch-filter":
          m.refiltered.add(name);
          await patchDestinationEntry(deps, name, { filter: change.platforms === null ? null : { platforms: change.platforms } });
          break;
        case "patch-enabled":
          await patchDestinationEntry(deps, name, { enabled: change.enabled });
          break;
        case "delete": {
          m.deleted.add(name);
          const r = await removeDestination(deps, name);
          if (r.ok) m.templates.delete(name);
          break;
        }
      }
      } finally {
        // Changed from the request on, whether or not it answered (a commit may have happened).
        if (rewants) m.changed.set(name, world.now);
      }
    });
  }
  toString(): string {
    const c = this.change;
    const detail = c.kind === "put" ? c.template : c.kind === "patch-filter" ? JSON.stringify(c.platforms) : c.kind === "patch-enabled" ? String(c.enabled) : "";
    return `Manage(${this.name}, ${c.kind}${detail ? ` ${detail}` : ""})`;
  }
}

/**
 * The operator sends a destination its history (POST …/backfill since the epoch, as the
 * dashboard's *Send history…*), or cancels what it has not sent (DELETE …/backfill): beside live
 * traffic, replays of dead letters and other backfills, every response still reaches a
 * destination at most once (I3) and none that it wants is lost (I1, I2).
 */
export class Backfill implements Cmd {
  constructor(
    readonly name: string,
    readonly cancel: boolean,
  ) {}
  check(m: Readonly<Model>): boolean {
    return m.templates.has(this.name);
  }
  async run(m: Model): Promise<void> {
    const world = m.world;
    const { name, cancel } = this;
    world.start("manage", `backfill ${name}${cancel ? " cancel" : ""}`, async (inv) => {
      const db = world.db(inv);
      if (cancel) {
        await endBackfill(db, name, world.date());
        return;
      }
      // The API isolate reads the list fresh (it serves the operator who just changed it).
      const { config } = await destinationsOf({ DB: db, DESTINATIONS: "", ENCRYPTION_KEY: env.ENCRYPTION_KEY }, { cache: newDestinationsCache(), now: world.now });
      if (!config.ok) return;
      await beginBackfill({ db, queue: world.queue(inv), destinations: config.destinations, now: () => world.date() }, { name, since: "2000-01-01T00:00:00.000Z" });
    });
  }
  toString(): string {
    return `Backfill(${this.name}${this.cancel ? ", cancel" : ""})`;
  }
}

export class Receiver implements Cmd {
  constructor(
    readonly name: string,
    readonly mode: ReceiverMode,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    m.world.receivers.set(this.name, this.mode);
  }
  toString(): string {
    return `Receiver(${this.name}, ${this.mode})`;
  }
}

/** Arms a fault on the next invocation of a kind: its nth call to a binding fails (before or after it took effect), or kills it there. */
export class Fault implements Cmd {
  constructor(
    readonly on: InvocationKind,
    readonly binding: FaultTarget,
    readonly nth: number,
    readonly mode: FaultMode,
    readonly span: number,
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    m.world.armed.set(this.on, { binding: this.binding, nth: this.nth, mode: this.mode, span: this.span, seen: 0 });
  }
  toString(): string {
    return `Fault(next ${this.on}: ${this.binding} call ${this.nth}${this.span > 1 ? `..${this.nth + this.span - 1}` : ""} ${this.mode})`;
  }
}

/** A D1 outage: the next `calls` D1 calls, whoever makes them, fail before reaching D1. */
export class Outage implements Cmd {
  constructor(readonly calls: number) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    m.world.outage = this.calls;
  }
  toString(): string {
    return `Outage(${this.calls} D1 calls)`;
  }
}

/** A flaky D1: each of the next `calls` D1 calls (whoever makes them) fails with probability `rate`, before or after it took effect. */
export class Flaky implements Cmd {
  constructor(
    readonly calls: number,
    readonly rate: number,
    readonly mode: "before" | "after",
  ) {}
  check(): boolean {
    return true;
  }
  async run(m: Model): Promise<void> {
    m.world.flaky = { calls: this.calls, rate: this.rate, mode: this.mode };
  }
  toString(): string {
    return `Flaky(next ${this.calls} D1 calls, ${Math.round(this.rate * 100)}% fail ${this.mode})`;
  }
}

/** The Queue delivers at least once: a copy of an earlier message comes again. */
export class Redeliver implements Cmd {
  constructor(readonly index: number) {}
  check(m: Readonly<Model>): boolean {
    return m.world.sent.length > 0;
  }
  async run(m: Model): Promise<void> {
    const earlier = m.world.sent[this.index % m.world.sent.length];
    if (earlier !== undefined) m.world.enqueue("alerts", earlier.body, 0, earlier.attempts);
  }
  toString(): string {
    return `Redeliver(message #${this.index})`;
  }
}

const isolate = fc.constantFrom<"A" | "B">("A", "B");
const name = fc.constantFrom(...NAMES);

/**
 * The generators' versions: a kept seed's path replays only the commands of the version it was
 * found with (a new command changes every draw after it). 1: 0.5.0's first commands; 2: Burst
 * and a fault aimed at a consumer's record batch; 3: Backfill (start or cancel).
 */
export const GENERATOR = 3;

/** The commands, weighted toward what makes interleavings: posts and consumers. */
export function commandArbitraries(generator: number = GENERATOR): fc.WeightedArbitrary<Cmd>[] {
  const newPost = fc
    .record({ isolate, user: fc.nat(2), body: fc.constantFrom<BodyKind>("valid", "valid", "valid", "valid", "invalid", "nonjson") })
    .map((r) => new Post(r.isolate, { kind: "new", user: r.user, body: r.body }));
  const again = fc.record({ isolate, index: fc.nat(6) }).map((r) => new Post(r.isolate, { kind: "again", index: r.index }));
  const conflict = fc.record({ isolate, index: fc.nat(6) }).map((r) => new Post(r.isolate, { kind: "conflict", index: r.index }));
  const consume = fc.record({ isolate, max: fc.integer({ min: 1, max: MAX_BATCH }) }).map((r) => new Consume(r.isolate, r.max));
  const change = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom<Template>("raw", "raw", "json-ios", "jsonata", "jsonata-cast", "jsonata-cast", "identify", "identify", "expression").map((template): DestinationChange => ({ kind: "put", template })) },
    { weight: 1, arbitrary: fc.constant<DestinationChange>({ kind: "patch-url" }) },
    { weight: 1, arbitrary: fc.constantFrom<string[] | null>(null, ["ios"], ["android"]).map((platforms): DestinationChange => ({ kind: "patch-filter", platforms })) },
    { weight: 1, arbitrary: fc.boolean().map((enabled): DestinationChange => ({ kind: "patch-enabled", enabled })) },
    { weight: 1, arbitrary: fc.constant<DestinationChange>({ kind: "delete" }) },
  );
  const cron = fc.boolean().map((archive) => new Cron(archive));
  const advance = fc.oneof(
    { weight: 3, arbitrary: fc.integer({ min: 1, max: 25 }).map((s) => new Advance(s * 1000)) },
    { weight: 3, arbitrary: fc.integer({ min: 5, max: 90 }).map((min) => new Advance(min * 60_000)) },
    { weight: 1, arbitrary: fc.integer({ min: 1, max: 3 }).map((d) => new Advance(d * 86_400_000)) },
  );
  const erase = fc.nat(2).map((u) => new Erase(u));
  const manage = fc.record({ name, change }).map((r) => new Manage(r.name, r.change));
  const receiver = fc.record({ name, mode: fc.constantFrom<ReceiverMode>("ok", "fail", "slow-down", "hang") }).map((r) => new Receiver(r.name, r.mode));
  const fault = fc
    .record({
      on: fc.constantFrom<InvocationKind>("webhook", "consumer", "dlq", "cron", "archive", "erase", "manage"),
      binding: fc.constantFrom<FaultTarget>("batch", "batch", "d1", "r2", "queue", "any"),
      nth: fc.nat(4),
      mode: fc.constantFrom<FaultMode>("before", "after", "kill"),
      span: fc.integer({ min: 1, max: 2 }),
    })
    .map((r) => new Fault(r.on, r.binding, r.nth, r.mode, r.span));
  const outage = fc.integer({ min: 1, max: 6 }).map((n) => new Outage(n));
  const flaky = fc
    .record({ calls: fc.integer({ min: 5, max: 40 }), rate: fc.constantFrom(0.2, 0.35, 0.5), mode: fc.constantFrom<"before" | "after">("before", "after") })
    .map((r) => new Flaky(r.calls, r.rate, r.mode));
  const redeliver = fc.nat(30).map((i) => new Redeliver(i));
  const burst = fc.record({ user: fc.nat(2), n: fc.integer({ min: 2, max: 3 }) }).map((r) => new Burst(r.user, r.n));
  // A consumer's record batch (its ledger write) failing before it took effect: the claim is
  // its first batch, the record its last (an identify destination's leases come in between).
  const recordFault = fc.constantFrom(1, 2).map((nth) => new Fault("consumer", "batch", nth, "before", 1));
  const backfill = fc.record({ name, cancel: fc.boolean() }).map((r) => new Backfill(r.name, r.cancel));
  const weighted: [number, fc.Arbitrary<Cmd>][] = [
    [10, newPost],
    [5, again],
    [1, conflict],
    [7, consume],
    [1, fc.constant(new DeadLetters())],
    [3, cron],
    [4, advance],
    [2, erase],
    [3, manage],
    [2, receiver],
    [2, fault],
    [1, outage],
    [2, flaky],
    [1, redeliver],
    ...(generator >= 2 ? ([[2, burst], [2, recordFault]] as [number, fc.Arbitrary<Cmd>][]) : []),
    ...(generator >= 3 ? ([[3, backfill]] as [number, fc.Arbitrary<Cmd>][]) : []),
  ];
  return weighted.map(([weight, arbitrary]) => ({ weight, arbitrary }));
}
