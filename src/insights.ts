/**
 * Survey insights (`GET /api/surveys/{survey_id}/insights`, DESIGN.md "Insights"): what a
 * survey's responses say over a window, from the rows the cron folded for its finished days
 * (`survey_facets`) and the responses of the days it has not folded (today, the window's
 * partial edge days). Both go through `facetsOf`, so a folded day and a live one count alike.
 */
import { type NpsCategory, npsCategory } from "./alert";

/** One counted thing of one day: what `survey_facets` keeps, and what a live day yields. */
export interface Facet {
  day: string;
  /** all | platform | event | answer:<position> | answered:<position> | text:<position> */
  facet: string;
  value: string;
  responses: number;
  nps_responses: number;
  promoters: number;
  passives: number;
  detractors: number;
  detail: string | null;
}

/** A stored response as the insights read it. */
export interface InsightSource {
  alert_id: string;
  submitted_at: string;
  platform: string | null;
  trigger_event_name: string | null;
  answers_json: string;
}

interface StoredAnswer {
  title: string | null;
  type: string;
  answer: string | null;
  value: number | null;
}

/** Text answers a day keeps per position, and the page shows: detractors first, then newest. */
export const LATEST_TEXTS = 20;

/** Screen types whose answers are free text: their latest answers, no distribution. */
const TEXT_TYPES = new Set(["text", "short-text"]);

/** Screen types whose answers are counted as options (the survey's own choices, not free text). */
const OPTION_TYPES = new Set(["mcq", "checkbox"]);

/** Screens that ask nothing: not questions. */
const NOT_QUESTIONS = new Set(["thank_you", "welcome-screen", "end-screen"]);

/**
 * Scored screen types, and the integers their distribution always lists (the normalisation's
 * `value`): 0–10 for nps and the numerical ratings, 1–5 for stars and emojis.
 */
const SCALES: ReadonlyMap<string, readonly [number, number]> = new Map([
  ["nps", [0, 10]],
  ["rating-numerical", [0, 10]],
  ["rating", [0, 10]],
  ["rating-5-star", [1, 5]],
  ["rating-emojis", [1, 5]],
]);

/**
 * The options of a checkbox answer: the normalisation joins the chosen options with ", "
 * (an option that itself holds ", " is therefore split too).
 */
export function checkboxOptions(answer: string): string[] {
  return answer
    .split(", ")
    .map((o) => o.trim())
    .filter((o) => o !== "");
}

/** The category of a response: its first nps answer with a score, or null without one. */
export function responseCategory(answers: readonly StoredAnswer[]): NpsCategory | null {
  const nps = answers.find((a) => a.type === "nps" && a.value !== null);
  return nps?.value === undefined || nps.value === null ? null : npsCategory(nps.value);
}

const RANK: Record<NpsCategory | "none", number> = { detractor: 0, passive: 1, promoter: 1, none: 1 };

type TextEntry = Pick<TextRow, "alert_id" | "answer" | "category" | "submitted_at">;

/** Detractors first, then the newest. */
function byRankThenNewest(a: TextEntry, b: TextEntry): number {
  return RANK[a.category ?? "none"] - RANK[b.category ?? "none"] || (a.submitted_at < b.submitted_at ? 1 : a.submitted_at > b.submitted_at ? -1 : a.alert_id < b.alert_id ? -1 : 1);
}

/** A text answer as survey_texts keeps it (rank 0: a detractor's; 1: any other). */
export interface TextRow {
  day: string;
  position: number;
  alert_id: string;
  rank: number;
  submitted_at: string;
  category: NpsCategory | null;
  answer: string;
}

/** A category's counter in a Facet. */
const CATEGORY_COUNT = { promoter: "promoters", passive: "passives", detractor: "detractors" } as const;

/** `answered:<position>` and `answer:<position>`, made once: a page counts them for every answer of every live response. */
const positionFacets: { answered: string[]; answer: string[] } = { answered: [], answer: [] };
function facetName(kind: "answered" | "answer", position: number): string {
  const names = positionFacets[kind];
  for (let p = names.length; p <= position; p++) names.push(`${kind}:${p}`);
  return names[position] as string;
}

/**
 * Every facet of these responses, per day of submission (what the cron folds, and what a live
 * day counts), and their text answers: per day and position the LATEST_TEXTS newest of each rank.
 * The facets come in the order each was first counted.
 */
export function facetsOf(sources: readonly InsightSource[]): { facets: Facet[]; texts: TextRow[] } {
  const facets: Facet[] = [];
  // day → facet → value → its row: no key is built per count (a page counts ~10 a response).
  const byDay = new Map<string, Map<string, Map<string, Facet>>>();
  const latestTitles = new Map<string, ({ at: string; title: string | null; type: string } | undefined)[]>();
  const texts = new Map<string, TextRow[]>();
  // Made once, not per response: a closure per response costs (the bundle names each one it makes).
  const add = (dayRows: Map<string, Map<string, Facet>>, day: string, facet: string, value: string, category: NpsCategory | null, count = 1) => {
    let values = dayRows.get(facet);
    if (values === undefined) {
      values = new Map();
      dayRows.set(facet, values);
    }
    let row = values.get(value);
    if (row === undefined) {
      row = { day, facet, value, responses: 0, nps_responses: 0, promoters: 0, passives: 0, detractors: 0, detail: null };
      values.set(value, row);
      facets.push(row);
    }
    row.responses += count;
    if (category !== null) {
      row.nps_responses += 1;
      row[CATEGORY_COUNT[category]] += 1;
    }
  };
  for (const s of sources) {
    const day = s.submitted_at.slice(0, 10);
    const dayRows = byDay.get(day) ?? new Map<string, Map<string, Facet>>();
    byDay.set(day, dayRows);
    const answers = JSON.parse(s.answers_json) as StoredAnswer[];
    const category = responseCategory(answers);
    add(dayRows, day, "all", "", category);
    add(dayRows, day, "platform", s.platform ?? "", category);
    add(dayRows, day, "event", s.trigger_event_name ?? "", category);
    const titles = latestTitles.get(day) ?? [];
    latestTitles.set(day, titles);
    for (let position = 0; position < answers.length; position++) {
      const a = answers[position] as StoredAnswer;
      const answered = a.answer !== null && a.answer.trim() !== "";
      const seen = titles[position];
      if (seen === undefined || s.submitted_at >= seen.at) titles[position] = { at: s.submitted_at, title: a.title, type: a.type };
      add(dayRows, day, facetName("answered", position), "", null, answered ? 1 : 0);
      if (!answered) continue;
      if (NOT_QUESTIONS.has(a.type)) continue;
      // Free text, and any type this Worker does not know (it may be free text too): listed, kept deletable.
      if (isTextType(a.type)) {
        const rank = RANK[category ?? "none"];
        const key = `${day}\u0000${position}\u0000${rank}`;
        const list = texts.get(key) ?? [];
        list.push({ day, position, alert_id: s.alert_id, rank, submitted_at: s.submitted_at, category, answer: a.answer as string });
        texts.set(key, list);
      } else if (SCALES.has(a.type)) {
        if (a.value !== null) add(dayRows, day, facetName("answer", position), String(a.value), null);
      } else if (a.type === "checkbox") {
        for (const option of checkboxOptions(a.answer as string)) add(dayRows, day, facetName("answer", position), option, null);
      } else add(dayRows, day, facetName("answer", position), a.answer as string, null);
    }
  }
  for (const [day, titles] of latestTitles) {
    titles.forEach((seen, position) => {
      const row = byDay.get(day)?.get(facetName("answered", position))?.get("");
      if (row !== undefined && seen !== undefined) row.detail = JSON.stringify({ title: seen.title, type: seen.type, at: seen.at });
    });
  }
  return { facets, texts: [...texts.values()].flatMap((list) => list.sort(byRankThenNewest).slice(0, LATEST_TEXTS)) };
}

interface Counts {
  responses: number;
  nps_responses: number;
  promoters: number;
  passives: number;
  detractors: number;
}

/** Rounds to the nearest integer, halves away from zero (as SQL's ROUND, which /api/surveys uses). */
function roundHalfAway(x: number): number {
  return Math.sign(x) * Math.round(Math.abs(x));
}

/** The NPS of these counts: round(100 × (promoters − detractors) / n), null without NPS answers. */
export function npsScore(c: Pick<Counts, "nps_responses" | "promoters" | "detractors">): number | null {
  return c.nps_responses === 0 ? null : roundHalfAway((100 * (c.promoters - c.detractors)) / c.nps_responses);
}

/** The 95 % margin of error of an NPS, in points, to one decimal; null under two NPS answers. */
export function marginOfError(c: Pick<Counts, "nps_responses" | "promoters" | "detractors">): number | null {
  const n = c.nps_responses;
  if (n < 2) return null;
  const p = c.promoters / n;
  const d = c.detractors / n;
  return Math.round(1960 * Math.sqrt((p + d - (p - d) ** 2) / n)) / 10;
}

export interface Insights {
  responses: number;
  nps: { score: number | null; responses: number; promoters: number; passives: number; detractors: number; margin_of_error: number | null };
  series: { bucket: string; responses: number; nps: number | null }[];
  questions: {
    position: number;
    title: string | null;
    type: string;
    answered: number;
    distribution?: { answer: string; count: number }[];
    latest?: { alert_id: string; answer: string; category: NpsCategory | null; submitted_at: string }[];
  }[];
  by_platform: { platform: string | null; responses: number; nps: number | null }[];
  by_trigger_event: { event: string | null; responses: number; nps: number | null }[];
}

/** The bucket a day falls in: itself, or the Monday that starts its week (UTC). */
export function bucketOf(day: string, bucket: "day" | "week"): string {
  if (bucket === "day") return day;
  const d = new Date(`${day}T00:00:00.000Z`);
  const back = (d.getUTCDay() + 6) % 7;
  return new Date(d.getTime() - back * 86_400_000).toISOString().slice(0, 10);
}

/** Every bucket from the one holding `since` to the one holding the last instant before `until`. */
export function bucketsOf(since: string, until: string, bucket: "day" | "week"): string[] {
  const out: string[] = [];
  const last = bucketOf(new Date(Date.parse(until) - 1).toISOString().slice(0, 10), bucket);
  const step = bucket === "day" ? 86_400_000 : 7 * 86_400_000;
  for (let b = bucketOf(since.slice(0, 10), bucket); b <= last; b = new Date(Date.parse(`${b}T00:00:00.000Z`) + step).toISOString().slice(0, 10)) out.push(b);
  return out;
}

const zero = (): Counts => ({ responses: 0, nps_responses: 0, promoters: 0, passives: 0, detractors: 0 });

/** Adds `f`'s counts into `c`, in place rather than into a new object: a page folds a facet row per day, option and question. */
function addCounts(c: Counts, f: Counts): void {
  c.responses += f.responses;
  c.nps_responses += f.nps_responses;
  c.promoters += f.promoters;
  c.passives += f.passives;
  c.detractors += f.detractors;
}

/** Adds `f`'s counts into the counts of `key` in `m` (created at zero). */
function addTo<K>(m: Map<K, Counts>, key: K, f: Counts): void {
  let c = m.get(key);
  if (c === undefined) {
    c = zero();
    m.set(key, c);
  }
  addCounts(c, f);
}

/** bucketOf, computed once per day of a window (it builds a Date: a page asks it for every day's row). */
function bucketsByDay(bucket: "day" | "week"): (day: string) => string {
  const known = new Map<string, string>();
  return (day) => {
    let b = known.get(day);
    if (b === undefined) {
      b = bucketOf(day, bucket);
      known.set(day, b);
    }
    return b;
  };
}

/** The page's answer from the facets of every day of the window (folded and live alike). */
export function insightsOf(facets: readonly Facet[], textRows: readonly TextRow[], window: { since: string; until: string; bucket: "day" | "week" }): Insights {
  const total = zero();
  const byBucket = new Map<string, Counts>();
  const bucketOfDay = bucketsByDay(window.bucket);
  const platforms = new Map<string, Counts>();
  const events = new Map<string, Counts>();
  const answered = new Map<number, { count: number; title: string | null; type: string; at: string }>();
  const answers = new Map<number, Map<string, number>>();
  const texts = new Map<number, TextEntry[]>();
  for (const f of facets) {
    const colon = f.facet.indexOf(":");
    const kind = colon === -1 ? f.facet : f.facet.slice(0, colon);
    const position = colon === -1 ? Number.NaN : Number(f.facet.slice(colon + 1));
    if (kind === "all") {
      addCounts(total, f);
      addTo(byBucket, bucketOfDay(f.day), f);
    } else if (kind === "platform") addTo(platforms, f.value, f);
    else if (kind === "event") addTo(events, f.value, f);
    else if (kind === "answered") {
      const detail = JSON.parse(f.detail ?? "{}") as { title?: string | null; type?: string; at?: string };
      const q = answered.get(position) ?? { count: 0, title: null, type: detail.type ?? "", at: "" };
      q.count += f.responses;
      if ((detail.at ?? "") >= q.at) Object.assign(q, { title: detail.title ?? null, type: detail.type ?? q.type, at: detail.at ?? "" });
      answered.set(position, q);
    } else if (kind === "answer") {
      let dist = answers.get(position);
      if (dist === undefined) {
        dist = new Map<string, number>();
        answers.set(position, dist);
      }
      dist.set(f.value, (dist.get(f.value) ?? 0) + f.responses);
    }
  }
  for (const t of textRows) {
    const list = texts.get(t.position) ?? [];
    list.push({ alert_id: t.alert_id, answer: t.answer, category: t.category, submitted_at: t.submitted_at });
    texts.set(t.position, list);
  }
  const questions: Insights["questions"] = [...answered.entries()]
    .filter(([, q]) => !NOT_QUESTIONS.has(q.type))
    .sort(([a], [b]) => a - b)
    .map(([position, q]) => {
      const base = { position, title: q.title, type: q.type, answered: q.count };
      if (isTextType(q.type)) {
        const latest = (texts.get(position) ?? []).sort(byRankThenNewest).slice(0, LATEST_TEXTS);
        return { ...base, latest: latest.map(({ alert_id, answer, category, submitted_at }) => ({ alert_id, answer, category, submitted_at })) };
      }
      return { ...base, distribution: distributionOf(q.type, answers.get(position) ?? new Map()) };
    });
  // Most responses first; ties by name, the responses without one (null) last.
  const segment = (m: Map<string, Counts>) =>
    [...m.entries()]
      .sort(([ka, a], [kb, b]) => b.responses - a.responses || (ka === "" ? 1 : kb === "" ? -1 : ka < kb ? -1 : 1))
      .map(([key, c]) => ({ key: key === "" ? null : key, responses: c.responses, nps: npsScore(c) }));
  return {
    responses: total.responses,
    nps: {
      score: npsScore(total),
      responses: total.nps_responses,
      promoters: total.promoters,
      passives: total.passives,
      detractors: total.detractors,
      margin_of_error: marginOfError(total),
    },
    series: bucketsOf(window.since, window.until, window.bucket).map((bucket) => {
      const c = byBucket.get(bucket) ?? zero();
      return { bucket, responses: c.responses, nps: npsScore(c) };
    }),
    questions,
    by_platform: segment(platforms).map(({ key, ...rest }) => ({ platform: key, ...rest })),
    by_trigger_event: segment(events).map(({ key, ...rest }) => ({ event: key, ...rest })),
  };
}

/**
 * A question's distribution: a scale lists each of its integers (with 0 where none), then any
 * other score given; options are sorted by count, most first (then by text).
 */
function distributionOf(type: string, counts: Map<string, number>): { answer: string; count: number }[] {
  const scale = SCALES.get(type);
  if (scale === undefined) {
    return [...counts.entries()].sort(([a, x], [b, y]) => y - x || (a < b ? -1 : 1)).map(([answer, count]) => ({ answer, count }));
  }
  const all = new Map(counts);
  for (let i = scale[0]; i <= scale[1]; i++) if (!all.has(String(i))) all.set(String(i), 0);
  // Scores ascending; an answer that is not a number (a position whose type changed) after them.
  const key = (a: string) => (Number.isNaN(Number(a)) ? Number.POSITIVE_INFINITY : Number(a));
  return [...all.entries()].sort(([a], [b]) => key(a) - key(b) || (a < b ? -1 : a > b ? 1 : 0)).map(([answer, count]) => ({ answer, count }));
}

/** Each bucket's NPS with its 95 % margin (for the page's band): null where it has under two NPS answers. */
export function bucketBands(facets: readonly Facet[], window: { since: string; until: string; bucket: "day" | "week" }): { bucket: string; nps: number | null; low: number | null; high: number | null }[] {
  const byBucket = new Map<string, Counts>();
  const bucketOfDay = bucketsByDay(window.bucket);
  for (const f of facets) if (f.facet === "all") addTo(byBucket, bucketOfDay(f.day), f);
  return bucketsOf(window.since, window.until, window.bucket).map((bucket) => {
    const c = byBucket.get(bucket) ?? zero();
    const nps = npsScore(c);
    const margin = marginOfError(c);
    return { bucket, nps, low: nps === null || margin === null ? null : Math.max(-100, nps - margin), high: nps === null || margin === null ? null : Math.min(100, nps + margin) };
  });
}

/** Whether answers of this screen type are listed (free text, or a type not known here), not counted. */
export function isTextType(type: string): boolean {
  return TEXT_TYPES.has(type) || (!SCALES.has(type) && !OPTION_TYPES.has(type) && !NOT_QUESTIONS.has(type));
}
