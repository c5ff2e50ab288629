/**
 * The archive: every stored response, once, in Parquet parts in R2 (binding ARCHIVE),
 * `responses/date=YYYY-MM-DD/<part>.parquet` and `answers/date=YYYY-MM-DD/<part>.parquet`
 * by the UTC day of submission, written by the archive's cron tick ARCHIVE_DELAY_MINUTES
 * after a response was stored; and erasure of a user from the parts that hold them.
 *
 * A tick: delete what a crash left (due garbage), read (the cursor's next rows and the late
 * ones), note the new keys as garbage, put the parts, then commit the manifest and the cursor
 * in one batch. Until that commit nothing lists the parts: a failed put deletes what was written
 * (or leaves it to the garbage step); after a commit attempt nothing is deleted here (it may
 * have committed), and the garbage step, which checks the manifest, removes what it does not
 * list. A response is in exactly one listed part.
 */
import type { Budget } from "../budget";
import { positiveWholeNumber } from "../config";
import { DEFAULT_ARCHIVE_DELAY_MINUTES, DEFAULT_ARCHIVE_ROWS_PER_TICK, MAX_ARCHIVE_ROWS_PER_TICK } from "../limits";
import { sha256Hex } from "../hash";
import { errorMessage, log } from "../log";
import {
  type ArchivedEntry,
  type ArchiveKey,
  type ArchiveSource,
  archiveSources,
  archiveState,
  commitArchive,
  commitRewrite,
  dueGarbage,
  forgetGarbage,
  moveCursor,
  type NewPart,
  noteGarbage,
  partsOfUser,
  readForArchive,
  recordArchiveError,
} from "../store/archive";
import { type AnswerRow, answerRows, answersParquet, type ArchiveTable, type ResponseRow, responseRow, responsesParquet, withoutAlerts } from "./parquet";

/** Bodies a tick reads at most (bytes): past it the tick stops early and the next goes on. */
export const ARCHIVE_TICK_BYTES = 8_000_000;
/** Days a tick writes at most: two puts each, inside the tick's subrequests. */
export const ARCHIVE_DAYS_PER_TICK = 16;
/** Subrequests a tick makes besides its puts: garbage (3), state, keys, bodies, note, commit, and a failure's cleanup and record (2). */
export const ARCHIVE_FIXED_SUBREQUESTS = 10;
/** The error of a commit that its guard refused: SQLite rolled the whole batch back. */
const GUARD_REFUSED = /CHECK constraint failed/;

/** A part noted before its put is garbage if its commit has not come this long after. */
export const PART_COMMIT_GRACE_IN_MINUTES = 30;
/** Leftover objects one tick deletes at most. */
export const GARBAGE_PER_TICK = 100;
/** Parts one erasure request rewrites at most (each a get, a put, a commit and a delete; about 2 ms of CPU for 300 rows). */
export const REWRITES_PER_REQUEST = 2;

/** ARCHIVE_DELAY_MINUTES: a whole number of minutes, 0 or more; else the default. */
export function archiveDelayMinutes(raw: string | undefined): number {
  return raw === "0" || raw?.trim() === "0" ? 0 : (positiveWholeNumber(raw) ?? DEFAULT_ARCHIVE_DELAY_MINUTES);
}

export function archiveRowsPerTick(raw: string | undefined): number {
  return Math.min(positiveWholeNumber(raw) ?? DEFAULT_ARCHIVE_ROWS_PER_TICK, MAX_ARCHIVE_ROWS_PER_TICK);
}

export interface ArchiveTickInput {
  db: D1Database;
  bucket: R2Bucket;
  now: Date;
  delay_minutes: number;
  rows_per_tick: number;
  /** Spent by every D1 call and R2 operation; the tick stops before it runs out. */
  budget?: Budget;
  /** Days (two puts each) this tick may write; default ARCHIVE_DAYS_PER_TICK. */
  max_days?: number;
  /** Bodies (characters) this tick may read and hold; default ARCHIVE_TICK_BYTES. */
  max_bytes?: number;
  random?: () => number;
}

export interface ArchiveTickResult {
  responses: number;
  answers: number;
  parts: string[];
  deferred: number;
  garbage_deleted: number;
  /** The tick read a full batch: more is waiting. */
  more: boolean;
}

/** Part keys: unique within their folder, sortable by when they were written. */
export function partKey(table: ArchiveTable, date: string, now: Date, random: () => number): string {
  const stamp = now.toISOString().replace(/[-:]/g, "").replace(/\.\d+Z$/, "Z");
  const suffix = Math.floor(random() * 0x1_0000_0000).toString(16).padStart(8, "0");
  return `${table}/date=${date}/${stamp}-${suffix}.parquet`;
}

function take(budget: Budget | undefined, n = 1): void {
  budget?.take(n);
}

/**
 * Deletes due leftovers from R2 (and, for an erasure, the unlisted ones that hold its user),
 * then forgets them (never a key the manifest lists).
 */
async function collectGarbage(input: { db: D1Database; bucket: R2Bucket; now: Date; budget?: Budget; user_sha256?: string }): Promise<{ deleted: number; rewrites_waiting: boolean }> {
  const noted_before = new Date(input.now.getTime() + PART_COMMIT_GRACE_IN_MINUTES * 60_000).toISOString();
  const user = input.user_sha256 === undefined ? null : { sha256: input.user_sha256, noted_before };
  const { keys, rewrites_waiting } = await dueGarbage(input.db, input.now.toISOString(), GARBAGE_PER_TICK, user);
  if (keys.length === 0) return { deleted: 0, rewrites_waiting };
  take(input.budget);
  await input.bucket.delete(keys);
  await forgetGarbage(input.db, keys);
  return { deleted: keys.length, rewrites_waiting };
}

/**
 * One archive tick. Throws when D1 or R2 fails; what it wrote is then deleted (a failed put)
 * or left to a later tick's garbage step (a failed commit), and the next tick goes on from
 * the same cursor.
 */
export async function archiveTick(input: ArchiveTickInput): Promise<ArchiveTickResult> {
  const { db, bucket, now } = input;
  const random = input.random ?? Math.random;
  const { deleted: garbage_deleted } = await collectGarbage({ db, bucket, now, budget: input.budget });
  const state = await archiveState(db);
  const through = new Date(now.getTime() - input.delay_minutes * 60_000).toISOString();
  const { range, late } = await readForArchive(db, {
    cursor: { submitted_at: state.cursor_submitted_at, alert_id: state.cursor_alert_id },
    through,
    late_before: through,
    limit: input.rows_per_tick,
  });

  // The cursor moves over the range rows taken, skipped or deferred, and stops at the first
  // row that would pass the tick's days or bytes. Bodies are read only for the rows taken.
  const picked: { key: ArchiveKey; late: boolean }[] = [];
  const defer: { alert_id: string; stored_at: string }[] = [];
  const days = new Set<string>();
  let bytes = 0;
  let cursor = { submitted_at: state.cursor_submitted_at, alert_id: state.cursor_alert_id };
  const fits = (row: ArchiveKey) => {
    const day = row.submitted_at.slice(0, 10);
    if (!days.has(day) && days.size >= (input.max_days ?? ARCHIVE_DAYS_PER_TICK)) return false;
    if (picked.length > 0 && bytes + row.size > (input.max_bytes ?? ARCHIVE_TICK_BYTES)) return false;
    days.add(day);
    bytes += row.size;
    return true;
  };
  let stopped = false;
  for (const row of range) {
    if (row.skip === 0) {
      // Received less than the delay ago (1Flow sent it late): it waits in archive_late.
      if (row.received_at > through) defer.push({ alert_id: row.alert_id, stored_at: row.received_at });
      else if (!fits(row)) {
        stopped = true;
        break;
      } else picked.push({ key: row, late: false });
    }
    cursor = { submitted_at: row.submitted_at, alert_id: row.alert_id };
  }
  // A late row whose response the archive holds already (or that is gone) is dropped, not taken.
  const drop = late.filter((row) => row.drop === 1).map((row) => row.alert_id);
  for (const row of late) {
    if (row.drop === 1) continue;
    if (!fits(row)) {
      stopped = true;
      break;
    }
    picked.push({ key: row, late: true });
  }
  const more = stopped || range.length === input.rows_per_tick || late.length === input.rows_per_tick;
  const moved = cursor.submitted_at !== state.cursor_submitted_at || cursor.alert_id !== state.cursor_alert_id;
  // A response erased since the keys were read is missing here, and not archived.
  const sources = await archiveSources(db, picked.map((p) => p.key.alert_id));
  const chosen: (ArchiveSource & { late: boolean })[] = [];
  for (const { key, late: isLate } of picked) {
    const source = sources.get(key.alert_id);
    if (source) chosen.push({ ...source, late: isLate });
  }
  if (chosen.length === 0) {
    if (moved || defer.length > 0 || drop.length > 0) await moveCursor(db, { cursor, defer, drop, now: now.toISOString() });
    return { responses: 0, answers: 0, parts: [], deferred: defer.length, garbage_deleted, more };
  }

  // One responses part and one answers part per day.
  const byDay = new Map<string, { responses: ResponseRow[]; answers: AnswerRow[]; sources: (ArchiveSource & { late: boolean })[] }>();
  for (const source of chosen) {
    const day = source.submitted_at.slice(0, 10);
    const group = byDay.get(day) ?? { responses: [], answers: [], sources: [] };
    const answers = answerRows(source);
    group.responses.push(responseRow(source, answers));
    group.answers.push(...answers);
    group.sources.push(source);
    byDay.set(day, group);
  }
  const objects: { part: NewPart; body: Uint8Array }[] = [];
  const entries: ArchivedEntry[] = [];
  for (const [date, group] of byDay) {
    const responsesKey = partKey("responses", date, now, random);
    const body = responsesParquet(group.responses);
    objects.push({ part: { key: responsesKey, table: "responses", date, rows: group.responses.length, bytes: body.byteLength }, body });
    let answersKey: string | null = null;
    if (group.answers.length > 0) {
      answersKey = partKey("answers", date, now, random);
      const answersBody = answersParquet(group.answers);
      objects.push({ part: { key: answersKey, table: "answers", date, rows: group.answers.length, bytes: answersBody.byteLength }, body: answersBody });
    }
    for (const source of group.sources) {
      const hasAnswers = source.answers_json !== "[]";
      entries.push({
        alert_id: source.alert_id,
        user_sha256: source.user_system_id === null ? null : (source.user_sha256 ?? (await sha256Hex(source.user_system_id))),
        responses_key: responsesKey,
        answers_key: hasAnswers ? answersKey : null,
        late: source.late,
      });
    }
  }

  const keys = objects.map((o) => o.part.key);
  const grace = new Date(now.getTime() + PART_COMMIT_GRACE_IN_MINUTES * 60_000).toISOString();
  // Each part with the users it holds: an erasure deletes it at once if its commit never comes.
  const users: Record<string, string[]> = {};
  for (const e of entries) {
    if (e.user_sha256 === null) continue;
    for (const key of [e.responses_key, e.answers_key]) if (key !== null && !(users[key] ??= []).includes(e.user_sha256)) users[key].push(e.user_sha256);
  }
  await noteGarbage(db, keys, grace, users);
  const written: string[] = [];
  try {
    for (const { part, body } of objects) {
      take(input.budget);
      await bucket.put(part.key, body, { httpMetadata: { contentType: "application/vnd.apache.parquet" } });
      written.push(part.key);
    }
  } catch (error) {
    // No commit was attempted, so nothing lists these parts: delete them now if R2 lets us;
    // else the garbage step will.
    if (written.length > 0) await bucket.delete(written).catch(() => undefined);
    throw error;
  }
  // From here on nothing is deleted on an error that may hide a commit (the manifest then lists
  // these parts): the garbage step deletes them after PART_COMMIT_GRACE_IN_MINUTES if not, and
  // never a key the manifest lists. One error is certain: the guard's CHECK refused the batch
  // (an erasure came between the read and the commit), so nothing committed and the parts,
  // which may hold the erased user, are deleted now.
  await commitArchive(db, {
    parts: objects.map((o) => o.part),
    entries,
    defer,
    drop,
    cursor,
    first_part_id: state.last_part_id + 1,
    newest_submitted_at: chosen.reduce((max, s) => (s.submitted_at > max ? s.submitted_at : max), ""),
    now: now.toISOString(),
  }).catch(async (error: unknown) => {
    if (GUARD_REFUSED.test(errorMessage(error))) await bucket.delete(keys).catch(() => undefined);
    throw error;
  });
  const answers = objects.filter((o) => o.part.table === "answers").reduce((n, o) => n + o.part.rows, 0);
  return { responses: entries.length, answers, parts: keys, deferred: defer.length, garbage_deleted, more };
}

/** The archive's cron tick: one `archiveTick`, its failure recorded for the dashboard. */
export async function runArchiveTick(input: ArchiveTickInput): Promise<ArchiveTickResult | null> {
  try {
    const result = await archiveTick(input);
    log("info", "archive.tick", { responses: result.responses, answers: result.answers, parts: result.parts.length, deferred: result.deferred, more: result.more });
    return result;
  } catch (error) {
    const message = errorMessage(error);
    log("error", "archive.failed", { error: message });
    await recordArchiveError(input.db, message, input.now.toISOString()).catch(() => undefined);
    return null;
  }
}

/** Subrequests of one part's rewrite: its get, the note of its new key, the put, the commit. */
const REWRITE_SUBREQUESTS = 4;
/** Subrequests of the garbage step: the due keys, their delete, forgetting them. */
const GARBAGE_SUBREQUESTS = 3;

/**
 * Takes a user's archived responses out of up to `max_parts` parts (fewer when `budget` has not
 * room for them): each part is read, written again without them under a new key, and the
 * manifest updated; the old objects, garbage due at once, are then deleted with the other due
 * garbage. `more` is true while a listed part still holds them, or a replaced object could not
 * be deleted yet (the R2 delete failed, or the budget ran short): call again.
 */
export async function eraseUserFromArchive(input: {
  db: D1Database;
  bucket: R2Bucket;
  user_system_id: string;
  now: Date;
  max_parts: number;
  budget?: Budget;
  random?: () => number;
}): Promise<{ parts_rewritten: number; more: boolean }> {
  const { db, bucket, now, budget } = input;
  const random = input.random ?? Math.random;
  const left = () => budget?.left() ?? Number.POSITIVE_INFINITY;
  if (left() < 1 + GARBAGE_SUBREQUESTS) return { parts_rewritten: 0, more: true };
  const room = Math.floor((left() - 1 - GARBAGE_SUBREQUESTS) / REWRITE_SUBREQUESTS);
  const user_sha256 = await sha256Hex(input.user_system_id);
  const { parts, more } = await partsOfUser(db, user_sha256, Math.max(0, Math.min(input.max_parts, room)));
  let parts_rewritten = 0;
  for (const part of parts) {
    take(budget);
    const object = await bucket.get(part.key);
    if (object === null) throw new Error(`archive part ${part.key} is listed but missing from R2`);
    const rewritten = await withoutAlerts(part.table, await object.arrayBuffer(), new Set(part.alert_ids));
    let new_key: string | null = null;
    if (rewritten.rows > 0) {
      new_key = partKey(part.table, part.date, now, random);
      // Noted without users: another erasure must never delete it at once while this commit may
      // still list it (a refused commit deletes it below; a crash leaves it to the grace).
      await noteGarbage(db, [new_key], new Date(now.getTime() + PART_COMMIT_GRACE_IN_MINUTES * 60_000).toISOString());
      take(budget);
      await bucket.put(new_key, rewritten.bytes, { httpMetadata: { contentType: "application/vnd.apache.parquet" } });
    }
    // The old object becomes garbage due now, deleted below (or by the next call or tick).
    // Another erasure that rewrote the part first makes the guard refuse this commit: nothing
    // committed, and the new object (which still holds that erasure's user) is deleted now.
    await commitRewrite(db, {
      part,
      new_key,
      rows: rewritten.rows,
      bytes: new_key === null ? 0 : rewritten.bytes.byteLength,
      removed: rewritten.removed,
      now: now.toISOString(),
    }).catch(async (error: unknown) => {
      if (new_key !== null && GUARD_REFUSED.test(errorMessage(error))) {
        // Gone, so no other erasure has to wait for it (see collectGarbage's rewrites_waiting).
        const deleted = await bucket.delete(new_key).then(() => true, () => false);
        if (deleted) await forgetGarbage(db, [new_key]).catch(() => undefined);
      }
      throw error;
    });
    parts_rewritten++;
  }
  // The replaced objects still hold the user, and so may a rewrite's new object whose commit
  // never came (another erasure's, D1 failed or its isolate died): the answer is not complete
  // until they are gone (the latter once its grace passes and the garbage step deletes it).
  let garbage_left = left() < GARBAGE_SUBREQUESTS;
  if (!garbage_left) {
    try {
      const collected = await collectGarbage({ db, bucket, now, budget, user_sha256 });
      garbage_left = collected.deleted === GARBAGE_PER_TICK || collected.rewrites_waiting;
    } catch (error) {
      log("warn", "archive.garbage_failed", { error: errorMessage(error) });
      garbage_left = true;
    }
  }
  return { parts_rewritten, more: more || garbage_left };
}
