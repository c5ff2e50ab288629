/**
 * SQL of the insights: the cron folds each finished day of a survey into `survey_facets`
 * (its responses read once, in that tick), and a page reads the folded days' rows and the
 * responses of the days not folded (today, the window's partial edges). See src/insights.ts.
 */
import { type Facet, facetsOf, type InsightSource, isTextType, LATEST_TEXTS, type TextRow } from "../insights";
import type { D1Reader } from "./d1";

const SOURCE_COLUMNS = "alert_id, submitted_at, platform, trigger_event_name, answers_json";

/** The day `days` after `day` (YYYY-MM-DD); before it when negative. */
export function nextDay(day: string, days = 1): string {
  return new Date(Date.parse(`${day}T00:00:00.000Z`) + days * 86_400_000).toISOString().slice(0, 10);
}

/** Days one fold reads at once (one read of their responses, one batch). */
export const FOLD_DAYS = 7;
/** Responses past which a fold takes one day only (a busy survey). */
export const FOLD_ROWS = 5_000;

/**
 * Folds into survey_facets, for up to `max_surveys` surveys whose facets lag their folded days,
 * the next FOLD_DAYS days from the first day with responses after `facets_through` (one read of
 * those days' responses, one batch each). The days' rows are replaced whole; `facets_through`
 * moves on only while `facets_version` is the one read (a late response or an erasure since
 * then moved it back: folded again later). Returns the surveys folded.
 */
export async function foldFacets(db: D1Database, max_surveys: number): Promise<number> {
  // One round trip: the surveys with no response after their folded facets move on at once
  // (the day-boundary tick of a survey nobody answered yesterday costs nothing more), then the
  // ones with days to fold, picked at random: one whose fold keeps failing never holds up the others.
  const [, listed] = await db.batch([
    db.prepare(
      `UPDATE surveys SET facets_through = folded_through, facets_hour = CASE WHEN substr(facets_hour, 1, 10) <= folded_through THEN '' ELSE facets_hour END
       WHERE facets_through < folded_through
         AND NOT EXISTS (SELECT 1 FROM survey_daily AS d WHERE d.survey_id = surveys.survey_id AND d.day > surveys.facets_through AND d.day <= surveys.folded_through)`,
    ),
    db
      .prepare(
        `SELECT s.survey_id AS survey_id, s.facets_version AS facets_version, s.folded_through AS folded_through,
                (SELECT MIN(d.day) FROM survey_daily AS d WHERE d.survey_id = s.survey_id AND d.day > s.facets_through AND d.day <= s.folded_through) AS next
         FROM surveys AS s WHERE s.facets_through < s.folded_through ORDER BY random() LIMIT ?1`,
      )
      .bind(max_surveys),
  ]);
  const results = (listed?.results ?? []) as { survey_id: string; facets_version: number; folded_through: string; next: string | null }[];
  let folded = 0;
  // Whole days that reach the hourly fold's day take its place (a late response could move facets_through back before it).
  const advance = db.prepare(
    "UPDATE surveys SET facets_through = ?3, facets_hour = CASE WHEN substr(facets_hour, 1, 10) <= ?3 THEN '' ELSE facets_hour END WHERE survey_id = ?1 AND facets_version = ?2 AND facets_through < ?3",
  );
  for (const s of results) {
    if (s.next === null) continue;
    // [next, last]: FOLD_DAYS days, never past the survey's folded days.
    let last = s.next;
    for (let i = 1; i < FOLD_DAYS && nextDay(last) <= s.folded_through; i++) last = nextDay(last);
    let { results: sources } = await db
      .prepare(`SELECT ${SOURCE_COLUMNS} FROM alerts WHERE survey_id = ?1 AND submitted_at >= ?2 AND submitted_at < ?3 LIMIT ?4`)
      .bind(s.survey_id, s.next, nextDay(last), FOLD_ROWS + 1)
      .all<InsightSource>();
    // A busy survey: its first day alone (read whole, however many responses it has).
    if (sources.length > FOLD_ROWS) {
      last = s.next;
      sources = (
        await db
          .prepare(`SELECT ${SOURCE_COLUMNS} FROM alerts WHERE survey_id = ?1 AND submitted_at >= ?2 AND submitted_at < ?3`)
          .bind(s.survey_id, s.next, nextDay(last))
          .all<InsightSource>()
      ).results;
    }
    await db.batch([...replaceDays(db, { survey_id: s.survey_id, version: s.facets_version, hourly: null, from: s.next, to: nextDay(last) }, sources), advance.bind(s.survey_id, s.facets_version, last)]);
    folded += 1;
  }
  return folded;
}

/**
 * The statements that replace a survey's rows of days [from, to) by the facets and texts of
 * these responses. Every write holds only while no late response or erasure came since the
 * read (`version`), and the caller's last statement (which moves the survey's mark on) too.
 */
function replaceDays(
  db: D1Database,
  range: { survey_id: string; version: number; hourly: { through: string; mark: string } | null; from: string; to: string },
  sources: readonly InsightSource[],
): D1PreparedStatement[] {
  const { facets, texts } = facetsOf(sources);
  // ?1 the survey, ?2 the version read; for an hourly fold, ?3 the whole days' fold and ?4 the
  // mark it read (a whole-day fold of the same day since then, or a later hour's fold, keeps its
  // rows); then each statement's own parameters.
  const current = `(SELECT facets_version FROM surveys WHERE survey_id = ?1) = ?2
    AND (?3 IS NULL OR (SELECT facets_through = ?3 AND facets_mark = ?4 FROM surveys WHERE survey_id = ?1))`;
  const guard = [range.survey_id, range.version, range.hourly?.through ?? null, range.hourly?.mark ?? null] as const;
  return [
    db.prepare(`DELETE FROM survey_facets WHERE survey_id = ?1 AND day >= ?5 AND day < ?6 AND ${current}`).bind(...guard, range.from, range.to),
    db.prepare(`DELETE FROM survey_texts WHERE survey_id = ?1 AND day >= ?5 AND day < ?6 AND ${current}`).bind(...guard, range.from, range.to),
    db
      .prepare(
        `INSERT INTO survey_facets (survey_id, day, facet, value, responses, nps_responses, promoters, passives, detractors, detail)
         SELECT ?1, value ->> 'day', value ->> 'facet', value ->> 'value', value ->> 'responses', value ->> 'nps_responses',
                value ->> 'promoters', value ->> 'passives', value ->> 'detractors', value ->> 'detail'
         FROM json_each(?5) WHERE ${current}
         ON CONFLICT (survey_id, day, facet, value) DO NOTHING`,
      )
      .bind(...guard, JSON.stringify(facets)),
    db
      .prepare(
        `INSERT INTO survey_texts (survey_id, day, position, alert_id, rank, submitted_at, category, answer)
         SELECT ?1, value ->> 'day', value ->> 'position', value ->> 'alert_id', value ->> 'rank', value ->> 'submitted_at', value ->> 'category', value ->> 'answer'
         FROM json_each(?5) WHERE ${current}
         ON CONFLICT (survey_id, day, position, alert_id) DO NOTHING`,
      )
      .bind(...guard, JSON.stringify(texts)),
  ];
}

/**
 * Responses of today from which a survey's hours are folded. Below it, a page counts today live
 * for well under a millisecond of CPU, and each hourly fold would rewrite the day's rows (D1
 * bills rows written): a quiet survey's day is written once, when it is whole.
 */
export const TODAY_FOLD_FROM = 200;

/**
 * Folds today up to the start of this hour (`now`'s), for up to `max_surveys` surveys whose
 * whole days are folded through yesterday, with at least `min_responses` responses today, one
 * of them submitted since their last hourly fold and before this hour (migrations/0021). First
 * the mark, in the same statement that picks them:
 * from then on a new response submitted before this hour moves facets_version on, so the fold
 * below, which read before it came, writes nothing (the next tick folds again). Then, per
 * survey, one read of today's responses before the hour and one batch. Returns the surveys folded.
 */
export async function foldToday(db: D1Database, now: Date, max_surveys: number, min_responses = TODAY_FOLD_FROM): Promise<number> {
  const today = now.toISOString().slice(0, 10);
  const hour = `${now.toISOString().slice(0, 13)}:00:00.000Z`;
  if (hour === `${today}T00:00:00.000Z`) return 0;
  const yesterday = nextDay(today, -1);
  const { results: marked } = await db
    .prepare(
      `UPDATE surveys SET facets_mark = ?3
       WHERE survey_id IN (SELECT s.survey_id FROM surveys AS s CROSS JOIN survey_daily AS d ON d.survey_id = s.survey_id AND d.day = ?1
                           WHERE s.facets_through = ?2 AND s.facets_hour < ?3 AND d.responses >= ?5
                             -- A response of today since its last fold and before this hour (one probe of the index; a
                             -- response dated in the future, the day's last_response_at, brings no fold every hour).
                             AND EXISTS (SELECT 1 FROM alerts AS a WHERE a.survey_id = s.survey_id AND a.submitted_at >= MAX(s.facets_hour, ?1 || 'T00:00:00.000Z') AND a.submitted_at < ?3)
                           ORDER BY random() LIMIT ?4)
       RETURNING survey_id, facets_version`,
    )
    .bind(today, yesterday, hour, max_surveys, min_responses)
    .all<{ survey_id: string; facets_version: number }>();
  const read = db.prepare(`SELECT ${SOURCE_COLUMNS} FROM alerts WHERE survey_id = ?1 AND submitted_at >= ?2 AND submitted_at < ?3`);
  const settle = db.prepare("UPDATE surveys SET facets_hour = ?3 WHERE survey_id = ?1 AND facets_version = ?2 AND facets_through = ?4 AND facets_mark = ?3");
  for (const s of marked) {
    const { results: sources } = await read.bind(s.survey_id, `${today}T00:00:00.000Z`, hour).all<InsightSource>();
    const hourly = { through: yesterday, mark: hour };
    await db.batch([...replaceDays(db, { survey_id: s.survey_id, version: s.facets_version, hourly, from: today, to: nextDay(today) }, sources), settle.bind(s.survey_id, s.facets_version, hour, yesterday)]);
  }
  return marked.length;
}

/** How far a survey's insights are folded: its whole days, and the hours of the day after them. */
export interface FoldedThrough {
  facets_through: string;
  facets_hour: string;
}

/** A survey as its insights name it, with how far its days are folded; null when it has no response stored or folded. */
export async function surveyOf(db: D1Reader, survey_id: string): Promise<({ name: string | null } & FoldedThrough) | null> {
  const row = await db
    .prepare(
      `SELECT s.facets_through AS facets_through, s.facets_hour AS facets_hour,
              COALESCE((SELECT d.survey_name FROM survey_daily AS d WHERE d.survey_id = s.survey_id ORDER BY d.day DESC LIMIT 1), s.survey_name) AS name,
              s.responses + COALESCE((SELECT SUM(u.responses) FROM survey_daily AS u WHERE u.survey_id = s.survey_id AND u.day > s.folded_through), 0) AS responses
       FROM surveys AS s WHERE s.survey_id = ?1`,
    )
    .bind(survey_id)
    .first<{ name: string | null; responses: number } & FoldedThrough>();
  // A survey retention emptied still has its folded days.
  return row === null || (row.responses <= 0 && row.facets_through === "") ? null : { name: row.name, facets_through: row.facets_through, facets_hour: row.facets_hour };
}

/**
 * The folded facets of a survey's days ?2 to ?3, one row per day (see windowFacets). Walks the
 * primary key (survey_id, day, …) in its order: no sorter, so no rows read beyond the range.
 */
export const FOLDED_FACETS_SQL = `SELECT day, json_group_array(json_array(facet, value, responses, nps_responses, promoters, passives, detractors, detail)) AS facets
  FROM survey_facets WHERE survey_id = ?1 AND day >= ?2 AND day <= ?3 GROUP BY day`;

/** A folded facet as its day's JSON array holds it: facet, value, the five counts, detail. */
type FacetCells = [string, string, number, number, number, number, number, string | null];

/** What a window reads: its folded days [firstWhole, lastFolded] (the last one up to `foldedEnd`), and the ranges counted live. */
interface WindowPlan {
  firstWhole: string;
  lastFolded: string | null;
  foldedEnd: string;
  live: [string, string][];
}

/**
 * The window against how far the survey is folded: its whole days up to `facets_through`; the
 * day after them up to `facets_hour` (the hourly fold) when the window takes that day from its
 * start and reaches past that hour; the rest counted live (at most the window's partial first
 * day, the hour under way, and the days the cron has not folded yet).
 */
function planWindow(input: { since: string; until: string }, through: FoldedThrough, use_hours = true): WindowPlan {
  const firstWhole = input.since.slice(11) === "00:00:00.000Z" ? input.since.slice(0, 10) : nextDay(input.since.slice(0, 10));
  // The last whole day ends at or before `until`.
  const lastWhole = nextDay(input.until.slice(0, 10), -1);
  const foldedTo = lastWhole < through.facets_through ? lastWhole : through.facets_through;
  const partialDay = through.facets_through === "" ? "" : nextDay(through.facets_through);
  // Taking that day from its start and reaching past the hour, the window takes every whole day before it too.
  const hours = use_hours && partialDay !== "" && through.facets_hour.slice(0, 10) === partialDay && firstWhole <= partialDay && through.facets_hour <= input.until;
  const lastFolded = hours ? partialDay : foldedTo;
  if (firstWhole > lastFolded) return { firstWhole, lastFolded: null, foldedEnd: "", live: [[input.since, input.until]] };
  const foldedEnd = hours ? through.facets_hour : `${nextDay(foldedTo)}T00:00:00.000Z`;
  const live: [string, string][] = [
    [input.since, `${firstWhole}T00:00:00.000Z`],
    [foldedEnd, input.until],
  ];
  return { firstWhole, lastFolded, foldedEnd, live: live.filter(([from, to]) => from < to) };
}

/** Reads of a window, tried again when a fold committed between the survey's read and the window's. */
const WINDOW_READS = 3;

const samePlan = (a: WindowPlan, b: WindowPlan) => a.lastFolded === b.lastFolded && a.foldedEnd === b.foldedEnd && JSON.stringify(a.live) === JSON.stringify(b.live);

/**
 * The facets and text answers of a window (see planWindow): the folded rows of its days (and,
 * for each text question, at most LATEST_TEXTS of each rank, newest first, through
 * survey_texts_latest), and the responses of the rest counted live. `through` is how far the
 * caller saw the survey folded; the window's batch reads it again (one transaction): when a fold
 * committed in between, its rows and the live ranges planned before it could overlap or leave a
 * gap, and the window is read again as that batch saw the survey. The last read plans without
 * today's folded hours, which a fold committing meanwhile could change again.
 */
export async function windowFacets(db: D1Reader, input: { survey_id: string; since: string; until: string } & FoldedThrough): Promise<{ facets: Facet[]; texts: TextRow[] }> {
  const state = db.prepare("SELECT facets_through, facets_hour FROM surveys WHERE survey_id = ?1").bind(input.survey_id);
  const liveRead = db.prepare(`SELECT ${SOURCE_COLUMNS} FROM alerts WHERE survey_id = ?1 AND submitted_at >= ?2 AND submitted_at < ?3`);
  let through: FoldedThrough = { facets_through: input.facets_through, facets_hour: input.facets_hour };
  for (let attempt = 1; ; attempt++) {
    // The last read leaves today's folded hours out: whole days folded since cannot overlap it.
    const plan = planWindow(input, through, attempt < WINDOW_READS);
    // The folded days and the live ones in one round trip: each call costs the Worker a request
    // through the binding and the parsing of its answer, whatever it returns.
    const read = await db.batch([
      state,
      ...(plan.lastFolded === null ? [] : [db.prepare(FOLDED_FACETS_SQL).bind(input.survey_id, plan.firstWhole, plan.lastFolded)]),
      ...plan.live.map(([from, to]) => liveRead.bind(input.survey_id, from, to)),
    ]);
    const seen = read[0]?.results[0] as FoldedThrough | undefined;
    // Read again only when the survey as the batch saw it would plan the window otherwise.
    if (seen !== undefined && attempt < WINDOW_READS && !samePlan(plan, planWindow(input, seen))) {
      through = seen;
      continue;
    }
    return countWindow(db, input.survey_id, plan, read.slice(1));
  }
}

/** The facets and texts of a window's read (windowFacets): its folded rows first when it has folded days, then its live ranges. */
async function countWindow(db: D1Reader, survey_id: string, plan: WindowPlan, read: D1Result[]): Promise<{ facets: Facet[]; texts: TextRow[] }> {
  const facets: Facet[] = [];
  const texts: TextRow[] = [];
  if (plan.lastFolded !== null) {
    // One row per day, its facets as one JSON array: the binding turns each row it returns into
    // an object, which cost the Worker more CPU than anything the page does with the rows. The
    // rows read are the same (grouped in the primary key's order, SQLite needs no sorter).
    for (const { day, facets: cells } of (read[0]?.results ?? []) as { day: string; facets: string }[]) {
      for (const [facet, value, responses, nps_responses, promoters, passives, detractors, detail] of JSON.parse(cells) as FacetCells[]) {
        facets.push({ day, facet, value, responses, nps_responses, promoters, passives, detractors, detail });
      }
    }
    // The text questions of those days: the newest of each rank, through the index.
    const positions = new Set<number>();
    for (const f of facets) {
      if (!f.facet.startsWith("answered:") || f.detail === null) continue;
      if (isTextType((JSON.parse(f.detail) as { type?: string }).type ?? "")) positions.add(Number(f.facet.slice("answered:".length)));
    }
    if (positions.size > 0) {
      const latest = db.prepare(
        `SELECT day, position, alert_id, rank, submitted_at, category, answer FROM survey_texts INDEXED BY survey_texts_latest
         WHERE survey_id = ?1 AND position = ?2 AND rank = ?3 AND submitted_at >= ?4 AND submitted_at < ?5
         ORDER BY submitted_at DESC, alert_id LIMIT ?6`,
      );
      const from = `${plan.firstWhole}T00:00:00.000Z`;
      const latestRead = await db.batch([...positions].flatMap((p) => [0, 1].map((rank) => latest.bind(survey_id, p, rank, from, plan.foldedEnd, LATEST_TEXTS))));
      for (const r of latestRead) texts.push(...(r.results as TextRow[]));
    }
  }
  for (const r of plan.lastFolded === null ? read : read.slice(1)) {
    const counted = facetsOf(r.results as InsightSource[]);
    facets.push(...counted.facets);
    texts.push(...counted.texts);
  }
  return { facets, texts };
}
