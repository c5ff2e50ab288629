/**
 * The invariants, in one place, checked against the real D1 and R2 once a run is driven to
 * quiescence (see docs/simulation.md for their statement against docs/lifecycle.md's table).
 * Each check returns every violation it sees, each with a `kind` (a short stable key: the
 * explorer keeps the first seed of each kind).
 */
import { destinationsOf, newDestinationsCache } from "../../src/fanout/configured";
import { wantsStatically } from "../../src/fanout/destinations";
import { parseAnswers } from "../../src/store/deliveries";
import { env } from "cloudflare:workers";
import { MAX_EVALUATIONS, type Model, SIM_VARS, SUBREQUEST_LIMIT, userParameters } from "./commands";
import type { World } from "./world";

export interface Violation {
  invariant: "I1" | "I2" | "I3" | "I4" | "I5" | "I6" | "I7";
  kind: string;
  message: string;
}

const DESTINATION_PROPAGATION_MS = 30_000;
const CRON_BUDGET = 45;

async function all<T>(db: D1Database, sql: string, ...binds: unknown[]): Promise<T[]> {
  return (await db.prepare(sql).bind(...binds).all<T>()).results;
}

/** I1 archive: every stored response past the delay is in exactly one listed part; every listed key exists; no unlisted object outlives the garbage delay; ticks succeed. */
export async function checkArchive(world: World, options: { garbage_due: boolean }): Promise<Violation[]> {
  const db = world.realDb;
  const out: Violation[] = [];
  const delay = Number(SIM_VARS.ARCHIVE_DELAY_MINUTES) * 60_000;
  const through = new Date(world.now - delay).toISOString();
  const unarchived = await all<{ alert_id: string }>(
    db,
    `SELECT a.alert_id FROM alerts a WHERE a.received_at <= ?1 AND NOT EXISTS (SELECT 1 FROM archived_alerts x JOIN archive_parts p ON p.id = x.responses_part WHERE x.alert_id = a.alert_id)`,
    through,
  );
  for (const r of unarchived) out.push({ invariant: "I1", kind: "I1-unarchived", message: `stored response ${r.alert_id} is in no listed part` });
  const state = await db.prepare("SELECT last_error, responses, files FROM archive_state WHERE id = 1").first<{ last_error: string | null; responses: number; files: number }>();
  if (world.lastArchiveTick === "failed" && state?.last_error) {
    const kind = /archived_alerts/.test(state.last_error) ? "I1-archive-wedged-on-archived_alerts" : "I1-archive-tick-fails";
    out.push({ invariant: "I1", kind, message: `the archive tick fails at quiescence: ${state.last_error}` });
  }
  const listed = await all<{ key: string }>(db, "SELECT key FROM archive_parts");
  const objects = new Set<string>();
  let cursor: string | undefined;
  do {
    const page = await world.realBucket.list(cursor === undefined ? {} : { cursor });
    for (const o of page.objects) objects.add(o.key);
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
  for (const { key } of listed) if (!objects.has(key)) out.push({ invariant: "I1", kind: "I1-listed-part-missing", message: `the manifest lists ${key}, which R2 does not hold` });
  if (options.garbage_due) {
    const keys = new Set(listed.map((l) => l.key));
    for (const key of objects) if (!keys.has(key)) out.push({ invariant: "I1", kind: "I1-unlisted-object", message: `R2 holds ${key}, which no manifest row lists, past the garbage delay` });
  }
  const doubles = await all<{ alert_id: string }>(db, "SELECT alert_id FROM archive_late WHERE alert_id IN (SELECT alert_id FROM archived_alerts)");
  for (const r of doubles) out.push({ invariant: "I1", kind: "I1-archived-and-late", message: `${r.alert_id} is archived and waits in archive_late to be archived again` });
  return out;
}

/** I2 deliveries: every delivery ends final; `cancelled` only after a DELETE or a filter change; every wanted delivery has its row. */
export async function checkDeliveries(m: Model): Promise<Violation[]> {
  const db = m.world.realDb;
  const out: Violation[] = [];
  const { config } = await destinationsOf({ DB: db, DESTINATIONS: "", ENCRYPTION_KEY: env.ENCRYPTION_KEY }, { cache: newDestinationsCache(), now: m.world.now });
  const destinations = config.ok ? config.destinations : [];
  const health = new Map((await all<{ destination: string; state: string }>(db, "SELECT destination, state FROM destination_health")).map((h) => [h.destination, h.state]));
  const rows = await all<{ alert_id: string; destination: string; status: string; last_error: string | null }>(db, "SELECT alert_id, destination, status, last_error FROM deliveries");
  for (const r of rows) {
    const d = destinations.find((x) => x.name === r.destination);
    if (r.status === "pending" && d !== undefined && d.enabled !== false && health.get(r.destination) !== "paused") {
      out.push({ invariant: "I2", kind: "I2-stuck-pending", message: `${r.alert_id} → ${r.destination} is still pending at quiescence (${r.last_error ?? ""})` });
    }
    if (r.status === "cancelled" && r.last_error === "destination removed" && !m.deleted.has(r.destination)) {
      out.push({ invariant: "I2", kind: "I2-cancelled-by-stale-view", message: `${r.alert_id} → ${r.destination} cancelled as "destination removed", but ${r.destination} was never deleted` });
    }
    if (r.status === "cancelled" && r.last_error === "no longer matches its filter" && !m.refiltered.has(r.destination)) {
      out.push({ invariant: "I2", kind: "I2-cancelled-unwanted-without-change", message: `${r.alert_id} → ${r.destination} cancelled as unwanted, but its filter never changed` });
    }
  }
  const ledger = new Set(rows.map((r) => `${r.alert_id}\u0000${r.destination}`));
  const delivered = new Set(m.world.received.filter((r) => r.acked).map((r) => `${r.alert_id}\u0000${r.host}`));
  const alerts = await all<{
    alert_id: string;
    survey_id: string;
    platform: string | null;
    project_name: string | null;
    alert_name: string;
    trigger_event_name: string | null;
    user_system_id: string | null;
    answers_json: string;
    received_at: string;
  }>(db, "SELECT alert_id, survey_id, platform, project_name, alert_name, trigger_event_name, user_system_id, answers_json, received_at FROM alerts");
  for (const a of alerts) {
    for (const d of destinations) {
      const since = m.changed.get(d.name) ?? 0;
      if (d.enabled === false || d.filter?.expression !== undefined || d.format === "jsonata") continue;
      if (since + DESTINATION_PROPAGATION_MS >= Date.parse(a.received_at)) continue;
      if (!wantsStatically(d, { ...a, answers: parseAnswers(a.answers_json) })) continue;
      const key = `${a.alert_id}\u0000${d.name}`;
      if (!ledger.has(key) && !delivered.has(key)) {
        out.push({ invariant: "I2", kind: "I2-wanted-never-delivered", message: `${d.name} wants ${a.alert_id} and has no ledger row for it, nor received it` });
      }
    }
  }
  return out;
}

/** I3 no duplicate: a destination never acknowledges a response twice, unless the first ack's invocation failed before it could record it; identify never goes back in time. */
export function checkNoDuplicate(world: World): Violation[] {
  const out: Violation[] = [];
  const acked = new Map<string, { faulted: boolean; at: number }[]>();
  for (const r of world.received) {
    if (!r.acked || r.alert_id === null) continue;
    const key = `${r.host} ${r.alert_id}`;
    const earlier = acked.get(key) ?? [];
    if (earlier.length > 0 && earlier.every((e) => !e.faulted)) {
      out.push({ invariant: "I3", kind: "I3-duplicate-delivery", message: `${r.host} acknowledged ${r.alert_id} again at ${new Date(r.at).toISOString()} (first at ${new Date(earlier[0]?.at ?? 0).toISOString()})` });
    }
    earlier.push({ faulted: r.invocation?.faulted ?? true, at: r.at });
    acked.set(key, earlier);
  }
  const newest = new Map<string, string>();
  for (const r of world.received) {
    if (!r.acked || r.user === null || r.submitted_at === null || !r.body.includes('"traits"')) continue;
    const key = `${r.host} ${r.user}`;
    const before = newest.get(key);
    if (before !== undefined && r.submitted_at < before) {
      out.push({ invariant: "I3", kind: "I3-identify-older-after-newer", message: `${r.host} got ${r.user}'s response of ${r.submitted_at} after one of ${before}` });
    }
    if (before === undefined || r.submitted_at > before) newest.set(key, r.submitted_at);
  }
  return out;
}

/** I4 erasure: nothing of an erased user in D1, R2, notifications, health text or logs. */
export async function checkErasure(m: Model): Promise<Violation[]> {
  const world = m.world;
  const out: Violation[] = [];
  if (m.erased.size === 0) return out;
  const needles = [...m.erased.keys()].flatMap((u) => [u, userParameters(u).email]);
  const tables = await all<{ name: string }>(
    world.realDb,
    "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name NOT LIKE 'd1_%'",
  );
  for (const { name } of tables) {
    const rows = await all<Record<string, unknown>>(world.realDb, `SELECT * FROM "${name}"`);
    for (const row of rows) {
      const text = JSON.stringify(row);
      const hit = needles.find((n) => text.includes(n));
      if (hit === undefined) continue;
      const kind =
        name === "rejected_payloads" ? "I4-erased-user-in-quarantine" : name === "destination_health" || name === "notifications" ? "I4-erased-user-in-health-or-notification" : `I4-erased-user-in-${name}`;
      out.push({ invariant: "I4", kind, message: `${name} holds ${hit}: ${text.slice(0, 300)}` });
    }
  }
  const listed = await world.realBucket.list();
  for (const o of listed.objects) {
    const object = await world.realBucket.get(o.key);
    if (object === null) continue;
    const bytes = new Uint8Array(await object.arrayBuffer());
    let text = "";
    for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
    const hit = needles.find((n) => text.includes(n));
    if (hit !== undefined) out.push({ invariant: "I4", kind: "I4-erased-user-in-r2", message: `R2 object ${o.key} holds ${hit}` });
  }
  for (const n of world.notifications) {
    const hit = needles.find((x) => n.includes(x));
    if (hit !== undefined) out.push({ invariant: "I4", kind: "I4-erased-user-in-health-or-notification", message: `a notification posted to NOTIFY_URL holds ${hit}: ${n.slice(0, 200)}` });
  }
  for (const line of world.logs) {
    const hit = needles.find((x) => line.includes(x));
    if (hit !== undefined) out.push({ invariant: "I4", kind: "I4-erased-user-in-logs", message: `a log line holds ${hit}: ${line.slice(0, 300)}` });
  }
  return out;
}

/** I5 retention: a response past RETENTION_DAYS, finished and archived, is gone (checked after a bounded number of ticks). */
export async function checkRetention(world: World, ticks: number): Promise<Violation[]> {
  const before = new Date(world.now - Number(SIM_VARS.RETENTION_DAYS) * 86_400_000).toISOString();
  const now = world.date().toISOString();
  const left = await all<{ alert_id: string }>(
    world.realDb,
    `SELECT a.alert_id FROM alerts a WHERE a.submitted_at < ?1
       AND a.enqueued_at IS NOT NULL AND (a.fanout_claimed_until IS NULL OR a.fanout_claimed_until <= ?2)
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.alert_id AND d.status = 'pending')
       AND (a.fanned_out_at IS NOT NULL OR EXISTS (SELECT 1 FROM deliveries d WHERE d.alert_id = a.alert_id))
       AND EXISTS (SELECT 1 FROM archived_alerts x WHERE x.alert_id = a.alert_id)`,
    before,
    now,
  );
  return left.map((r) => ({ invariant: "I5" as const, kind: "I5-retention-stalled", message: `${r.alert_id} is finished, archived and past retention, still stored after ${ticks} ticks` }));
}

/** I6 limits: subrequests and JSONata evaluations per invocation. */
export function checkLimits(world: World): Violation[] {
  const out: Violation[] = [];
  for (const inv of world.invocations) {
    const limit = inv.kind === "cron" || inv.kind === "archive" ? CRON_BUDGET : SUBREQUEST_LIMIT;
    if (inv.calls > limit) out.push({ invariant: "I6", kind: `I6-subrequests-${inv.kind}`, message: `${inv.label} made ${inv.calls} subrequests (at most ${limit})` });
    if (inv.evaluations > MAX_EVALUATIONS) out.push({ invariant: "I6", kind: `I6-cpu-${inv.kind}`, message: `${inv.label} ran ${inv.evaluations} JSONata evaluations (at most ${MAX_EVALUATIONS})` });
  }
  return out;
}

/** I7 rollups: the counters equal a recount. */
export async function checkRollups(world: World): Promise<Violation[]> {
  const db = world.realDb;
  const out: Violation[] = [];
  const daily = await all<{ survey_id: string; day: string; responses: number; counted: number }>(
    db,
    `SELECT s.survey_id, s.day, s.responses, (SELECT COUNT(*) FROM alerts a WHERE a.survey_id = s.survey_id AND substr(a.submitted_at, 1, 10) = s.day) AS counted
     FROM survey_daily s`,
  );
  for (const d of daily) if (d.responses !== d.counted) out.push({ invariant: "I7", kind: "I7-survey-daily", message: `survey_daily ${d.survey_id} ${d.day} says ${d.responses}, recount ${d.counted}` });
  const missing = await all<{ survey_id: string; day: string }>(
    db,
    `SELECT a.survey_id, substr(a.submitted_at, 1, 10) AS day FROM alerts a
     WHERE NOT EXISTS (SELECT 1 FROM survey_daily s WHERE s.survey_id = a.survey_id AND s.day = substr(a.submitted_at, 1, 10)) GROUP BY 1, 2`,
  );
  for (const d of missing) out.push({ invariant: "I7", kind: "I7-survey-daily", message: `no survey_daily row for ${d.survey_id} ${d.day}` });
  const pending = await all<{ destination: string; pending: number; counted: number }>(
    db,
    `SELECT h.destination, h.pending, (SELECT COUNT(*) FROM deliveries d WHERE d.destination = h.destination AND d.status = 'pending') AS counted FROM destination_health h`,
  );
  for (const p of pending) if (p.pending !== p.counted) out.push({ invariant: "I7", kind: "I7-pending-counter", message: `destination_health ${p.destination}.pending says ${p.pending}, recount ${p.counted}` });
  const archive = await db
    .prepare(
      `SELECT s.files, s.responses, (SELECT COUNT(*) FROM archive_parts) AS parts,
              (SELECT COUNT(*) FROM archived_alerts WHERE responses_part IS NOT NULL) AS archived FROM archive_state s WHERE id = 1`,
    )
    .first<{ files: number; responses: number; parts: number; archived: number }>();
  if (archive && archive.files !== archive.parts) out.push({ invariant: "I7", kind: "I7-archive-files", message: `archive_state.files says ${archive.files}, manifest has ${archive.parts}` });
  if (archive && archive.responses !== archive.archived) out.push({ invariant: "I7", kind: "I7-archive-responses", message: `archive_state.responses says ${archive.responses}, archived_alerts has ${archive.archived}` });
  return out;
}
