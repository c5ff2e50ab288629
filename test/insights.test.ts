/**
 * GET /api/surveys/{survey_id}/insights (issue 26, DESIGN.md "Insights"): every number computed
 * by hand from the responses posted, the same before and after the cron folds their days; an
 * empty week in the series; a scale listing each of its integers; detractors' reasons first;
 * a late response and an erasure folded again; and what a page reads, counted in rows.
 */
import { createScheduledController } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import worker from "../src/index";
import { FOLDED_FACETS_SQL, foldFacets, foldToday, surveyOf, TODAY_FOLD_FROM, windowFacets } from "../src/store/facets";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId, post } from "./fixtures";
import { meterD1, zeroCost } from "./meter";

interface Screen {
  title: string;
  type: string;
  answer: string | string[] | null;
}

function response(survey_id: string, timestamp: string, screens: Screen[], more: Record<string, unknown> = {}) {
  return examplePayload({ survey_id, timestamp, survey_info: { name: "Onboarding NPS", screens }, ...more });
}

function screens(nps: string, reason: string | null, stars: string, plan: string, features: string[]): Screen[] {
  return [
    { title: "How likely are you to recommend us?", type: "nps", answer: nps },
    { title: "Why?", type: "text", answer: reason },
    { title: "Rate the setup", type: "rating-5-star", answer: stars },
    { title: "Your plan", type: "mcq", answer: plan },
    { title: "What do you use?", type: "checkbox", answer: features },
  ];
}

async function insights(survey_id: string, query: string, environment: Env = { ...(env as Env), ADMIN_TOKEN }) {
  const res = await callWorker(`/api/surveys/${survey_id}/insights?${query}`, {}, environment);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

const cron = (at: Date) => worker.scheduled(createScheduledController({ scheduledTime: at, cron: "*/5 * * * *" }), env as Env);

/** A D1 whose read of a fold's responses lets `meanwhile` run right after it, before the fold writes. */
function racingRead(meanwhile: () => Promise<unknown>): D1Database {
  return new Proxy(env.DB, {
    get(target, prop) {
      if (prop !== "prepare") {
        const value = Reflect.get(target, prop, target) as unknown;
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      }
      return (sql: string) => {
        const statement = target.prepare(sql);
        if (!sql.startsWith("SELECT alert_id, submitted_at")) return statement;
        const bind = statement.bind.bind(statement);
        statement.bind = (...values: unknown[]) => {
          const bound = bind(...values);
          const all = bound.all.bind(bound);
          bound.all = (async () => {
            const result = await all();
            await meanwhile();
            return result;
          }) as typeof bound.all;
          return bound;
        };
        return statement;
      };
    },
  });
}

/**
 * `count` responses of a survey made by SQL, not through the webhook (`submitted` and `answers`
 * are SQL of the row number i), with the `surveys` and `survey_daily` rows ingest would leave.
 */
async function seedBySql(survey: string, count: number, submitted: string, answers: string): Promise<void> {
  await env.DB.prepare(
    `WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?2 - 1)
     INSERT INTO alerts (alert_id, alert_name, survey_id, submitted_at, received_at, payload, payload_sha256, platform, answers_json)
     SELECT ?1 || '-' || i, 'a', ?1, ${submitted}, '2026-09-01T00:00:00.000Z', '{}', 'x', 'ios', ${answers}
     FROM seq`,
  )
    .bind(survey, count)
    .run();
  await env.DB.batch([
    env.DB.prepare("INSERT INTO surveys (survey_id, survey_name) VALUES (?1, 'Generated')").bind(survey),
    env.DB.prepare(
      "INSERT INTO survey_daily (survey_id, day, responses, last_response_at) SELECT survey_id, substr(submitted_at, 1, 10), COUNT(*), MAX(submitted_at) FROM alerts WHERE survey_id = ?1 GROUP BY 2",
    ).bind(survey),
  ]);
}

/** Runs the cron until the insights have folded every finished day (a bounded number of ticks). */
async function foldAll(at: Date) {
  for (let i = 0; i < 20; i++) await cron(at);
}

describe("insights", () => {
  it("every number from the responses posted, the same live and once the cron folded their days", async () => {
    const survey = freshId("survey");
    const posted = [
      // Week of Monday 2026-06-01: a promoter, a detractor, a passive.
      response(survey, "2026-06-01T09:00:00.000Z", screens("10", "love it", "5", "Pro", ["Export", "API"]), { platform: "ios" }),
      response(survey, "2026-06-02T10:00:00.000Z", screens("3", "too slow", "2", "Free", ["API"]), { platform: "android" }),
      response(survey, "2026-06-03T11:00:00.000Z", screens("8", "fine", "4", "Pro", []), { platform: "ios", trigger_event: { event_name: "checkout" } }),
      // The week of 2026-06-08 has none. Week of 2026-06-15: a detractor with no reason, a promoter.
      response(survey, "2026-06-15T08:00:00.000Z", screens("6", null, "3", "Team", ["Export"]), { platform: "ios" }),
      response(survey, "2026-06-16T08:30:00.000Z", screens("9", "support", "5", "Pro", ["Export", "Slack"]), { platform: null }),
    ];
    for (const p of posted) expect((await post(p)).status).toBe(200);
    const query = "since=2026-06-01T00:00:00.000Z&until=2026-06-22T00:00:00.000Z&bucket=week";
    const expected = {
      ok: true,
      survey: { id: survey, name: "Onboarding NPS" },
      since: "2026-06-01T00:00:00.000Z",
      until: "2026-06-22T00:00:00.000Z",
      responses: 5,
      // 2 promoters, 1 passive, 2 detractors of 5: score 0; p = d = 0.4, 196 × sqrt(0.8 / 5) = 78.4.
      nps: { score: 0, responses: 5, promoters: 2, passives: 1, detractors: 2, margin_of_error: 78.4 },
      series: [
        { bucket: "2026-06-01", responses: 3, nps: 0 },
        { bucket: "2026-06-08", responses: 0, nps: null },
        { bucket: "2026-06-15", responses: 2, nps: 0 },
      ],
      questions: [
        {
          position: 0,
          title: "How likely are you to recommend us?",
          type: "nps",
          answered: 5,
          distribution: ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10"].map((answer) => ({ answer, count: ["3", "6", "8", "9", "10"].includes(answer) ? 1 : 0 })),
        },
        {
          position: 1,
          title: "Why?",
          type: "text",
          answered: 4,
          latest: [
            { alert_id: posted[1]?.alert_id, answer: "too slow", category: "detractor", submitted_at: "2026-06-02T10:00:00.000Z" },
            { alert_id: posted[4]?.alert_id, answer: "support", category: "promoter", submitted_at: "2026-06-16T08:30:00.000Z" },
            { alert_id: posted[2]?.alert_id, answer: "fine", category: "passive", submitted_at: "2026-06-03T11:00:00.000Z" },
            { alert_id: posted[0]?.alert_id, answer: "love it", category: "promoter", submitted_at: "2026-06-01T09:00:00.000Z" },
          ],
        },
        {
          position: 2,
          title: "Rate the setup",
          type: "rating-5-star",
          answered: 5,
          distribution: [
            { answer: "1", count: 0 },
            { answer: "2", count: 1 },
            { answer: "3", count: 1 },
            { answer: "4", count: 1 },
            { answer: "5", count: 2 },
          ],
        },
        {
          position: 3,
          title: "Your plan",
          type: "mcq",
          answered: 5,
          distribution: [
            { answer: "Pro", count: 3 },
            { answer: "Free", count: 1 },
            { answer: "Team", count: 1 },
          ],
        },
        {
          position: 4,
          title: "What do you use?",
          type: "checkbox",
          answered: 4,
          distribution: [
            { answer: "Export", count: 3 },
            { answer: "API", count: 2 },
            { answer: "Slack", count: 1 },
          ],
        },
      ],
      by_platform: [
        { platform: "ios", responses: 3, nps: 0 },
        { platform: "android", responses: 1, nps: -100 },
        { platform: null, responses: 1, nps: 100 },
      ],
      by_trigger_event: [
        { event: "complete_meditation", responses: 4, nps: 0 },
        { event: "checkout", responses: 1, nps: 0 },
      ],
    };
    const live = await insights(survey, query);
    expect(live).toEqual({ status: 200, body: expected });
    // The cron folds the finished days; the answer is the same.
    await foldAll(new Date("2026-06-30T00:00:00.000Z"));
    const folded = await env.DB.prepare("SELECT facets_through FROM surveys WHERE survey_id = ?").bind(survey).first<string>("facets_through");
    // Folded through the cron's yesterday: every day with responses is in survey_facets.
    expect(folded).toBe("2026-06-29");
    expect(await insights(survey, query)).toEqual({ status: 200, body: expected });
    // A window whose edges cut days: only what is inside counts.
    const cut = await insights(survey, "since=2026-06-01T10:00:00.000Z&until=2026-06-16T08:00:00.000Z&bucket=day");
    expect(cut.body.responses).toBe(3);
    expect((cut.body.series as unknown[]).length).toBe(16);
  });

  it("a late response for a folded day and an erasure: the day is folded again, the erased user's reasons go at once", async () => {
    const survey = freshId("survey");
    const user = freshId("user");
    const mine = response(survey, "2026-07-01T09:00:00.000Z", screens("2", "my own words", "1", "Pro", []), { user: { user_system_id: user, parameters: {} } });
    await post(mine);
    await post(response(survey, "2026-07-02T09:00:00.000Z", screens("10", "great", "5", "Pro", [])));
    await foldAll(new Date("2026-07-10T00:00:00.000Z"));
    const query = "since=2026-07-01T00:00:00.000Z&until=2026-07-08T00:00:00.000Z&bucket=week";
    expect((await insights(survey, query)).body.responses).toBe(2);
    // A late response for 2026-07-01 (1Flow's retry of one this Worker never got).
    await post(response(survey, "2026-07-01T12:00:00.000Z", screens("9", "late", "4", "Free", [])));
    expect((await insights(survey, query)).body.responses).toBe(3);
    await foldAll(new Date("2026-07-10T00:00:00.000Z"));
    expect((await insights(survey, query)).body.responses).toBe(3);
    // The erasure: the reasons of the user leave survey_texts in the same batch.
    const texts = () => env.DB.prepare("SELECT COUNT(*) AS n FROM survey_texts WHERE answer = 'my own words'").first<number>("n");
    expect(await texts()).toBe(1);
    expect((await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" })).status).toBe(200);
    expect(await texts()).toBe(0);
    const after = await insights(survey, query);
    expect(after.body.responses).toBe(2);
    expect(after.body.nps).toMatchObject({ detractors: 0, promoters: 2 });
    await foldAll(new Date("2026-07-10T00:00:00.000Z"));
    expect((await insights(survey, query)).body).toEqual(after.body);
  });

  it("a fold that read before a late response does not move past its day: the next tick folds it again", async () => {
    const survey = freshId("survey");
    await post(response(survey, "2026-10-01T09:00:00.000Z", screens("10", "first", "5", "Pro", [])));
    // The survey's days are folded into its totals (foldSurveys), not yet into its facets.
    await env.DB.prepare("UPDATE surveys SET folded_through = '2026-10-05' WHERE survey_id = ?").bind(survey).run();
    const late = response(survey, "2026-10-01T12:00:00.000Z", screens("0", "late", "1", "Free", []));
    await foldFacets(racingRead(() => post(late)), 10);
    const through = () => env.DB.prepare("SELECT facets_through FROM surveys WHERE survey_id = ?").bind(survey).first<string>("facets_through");
    expect(await through()).toBe("");
    const query = "since=2026-10-01T00:00:00.000Z&until=2026-10-02T00:00:00.000Z";
    expect((await insights(survey, query)).body.responses).toBe(2);
    for (let i = 0; i < 5 && (await foldFacets(env.DB, 10)) > 0; i++);
    expect(await through()).toBe("2026-10-05");
    expect((await insights(survey, query)).body).toMatchObject({ responses: 2, nps: { promoters: 1, detractors: 1 } });
  });

  it("today is folded up to its last whole hour: the page counts only the hour since live, with the same numbers; a late response for a folded hour counts once and is folded again", async () => {
    const survey = freshId("survey");
    const user = freshId("user");
    const at = (time: string) => `2026-08-10T${time}:00.000Z`;
    await post(response(survey, "2026-08-09T12:00:00.000Z", screens("7", "yesterday", "3", "Free", [])));
    await post(response(survey, at("01:10"), screens("10", "early", "5", "Pro", ["API"]), { platform: "ios" }));
    await post(response(survey, at("05:00"), screens("3", "slow", "2", "Free", []), { user: { user_system_id: user, parameters: {} } }));
    await post(response(survey, at("09:59"), screens("8", null, "4", "Team", ["Export"])));
    await post(response(survey, at("10:20"), screens("0", "broken", "1", "Free", []), { platform: "android" }));
    const query = `since=2026-08-09T00:00:00.000Z&until=${encodeURIComponent(at("10:40"))}&bucket=day`;
    const surveyRow = () => env.DB.prepare("SELECT facets_through, facets_hour FROM surveys WHERE survey_id = ?").bind(survey).first<{ facets_through: string; facets_hour: string }>();
    const live = await insights(survey, query);
    expect(live.body).toMatchObject({ responses: 5, nps: { responses: 5, promoters: 1, passives: 2, detractors: 2 } });

    // A quiet survey (under TODAY_FOLD_FROM responses today) keeps today live; folded here from one response.
    const foldHours = async (time: string) => {
      await foldAll(new Date(at(time)));
      await foldToday(env.DB, new Date(at(time)), 10, 1);
    };
    await foldAll(new Date(at("10:30")));
    expect(await surveyRow()).toEqual({ facets_through: "2026-08-09", facets_hour: "" });
    await foldHours("10:30");
    expect(await surveyRow()).toEqual({ facets_through: "2026-08-09", facets_hour: at("10:00") });
    // The hours before 10:00 are in the day's rows: the three responses of 01:10 to 09:59.
    expect(await env.DB.prepare("SELECT responses FROM survey_facets WHERE survey_id = ? AND day = '2026-08-10' AND facet = 'all'").bind(survey).first<number>("responses")).toBe(3);
    expect((await insights(survey, query)).body).toEqual(live.body);

    // 1Flow's retry of a response submitted at 09:30, after the fold: the folded hours are taken back, counted once.
    await post(response(survey, at("09:30"), screens("9", "late one", "5", "Pro", [])));
    expect((await surveyRow())?.facets_hour).toBe("");
    const withLate = await insights(survey, query);
    expect(withLate.body).toMatchObject({ responses: 6, nps: { responses: 6, promoters: 2, passives: 2, detractors: 2 } });
    await foldHours("10:35");
    expect((await surveyRow())?.facets_hour).toBe(at("10:00"));
    expect((await insights(survey, query)).body).toEqual(withLate.body);

    // An erasure takes the folded hours back too; the user's reason leaves at once.
    expect((await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" })).status).toBe(200);
    expect((await surveyRow())?.facets_hour).toBe("");
    const erased = await insights(survey, query);
    expect(erased.body).toMatchObject({ responses: 5, nps: { responses: 5, promoters: 2, passives: 2, detractors: 1 } });
    expect(JSON.stringify(erased.body)).not.toContain("slow");
    await foldHours("10:35");
    expect((await surveyRow())?.facets_hour).toBe(at("10:00"));
    expect((await insights(survey, query)).body).toEqual(erased.body);

    // The next day's first ticks fold 2026-08-10 whole: the same numbers.
    await foldAll(new Date("2026-08-11T00:10:00.000Z"));
    expect((await surveyRow())?.facets_through).toBe("2026-08-10");
    expect((await insights(survey, query)).body).toEqual(erased.body);
  });

  it("an hourly fold that read before a late response, or before the day was folded whole, writes nothing", async () => {
    const survey = freshId("survey");
    const at = (time: string) => `2026-08-25T${time}:00.000Z`;
    await post(response(survey, at("00:40"), screens("10", "first", "5", "Pro", [])));
    await foldAll(new Date(at("01:30")));
    await foldToday(env.DB, new Date(at("01:30")), 10, 1);
    const surveyRow = () => env.DB.prepare("SELECT facets_through, facets_hour FROM surveys WHERE survey_id = ?").bind(survey).first<{ facets_through: string; facets_hour: string }>();
    expect(await surveyRow()).toEqual({ facets_through: "2026-08-24", facets_hour: at("01:00") });
    await post(response(survey, at("02:10"), screens("9", "second", "5", "Pro", [])));
    const query = `since=2026-08-24T00:00:00.000Z&until=${encodeURIComponent(at("23:30"))}`;
    // A response submitted at 02:30 comes while the 03:05 fold (up to 03:00) is between its read and its write.
    await foldToday(racingRead(() => post(response(survey, at("02:30"), screens("0", "late", "1", "Free", [])))), new Date(at("03:05")), 10, 1);
    expect((await surveyRow())?.facets_hour).toBe(at("01:00"));
    expect((await insights(survey, query)).body).toMatchObject({ responses: 3, nps: { promoters: 2, detractors: 1 } });
    // The 23:05 fold is slow: the next day's first tick folds 2026-08-25 whole before it writes.
    await post(response(survey, at("23:10"), screens("8", "last", "4", "Team", [])));
    await foldToday(racingRead(() => foldAll(new Date("2026-08-26T00:10:00.000Z"))), new Date(at("23:05")), 10, 1);
    // Its write refused: the day stays folded whole, and its folded hours are forgotten.
    expect(await surveyRow()).toEqual({ facets_through: "2026-08-25", facets_hour: "" });
    expect(await env.DB.prepare("SELECT responses FROM survey_facets WHERE survey_id = ? AND day = '2026-08-25' AND facet = 'all'").bind(survey).first<number>("responses")).toBe(4);
    expect((await insights(survey, query)).body).toMatchObject({ responses: 4, nps: { promoters: 2, passives: 1, detractors: 1 } });
  });

  it("a day folded whole after its hours, then a late response for it: no hour of it counted twice", async () => {
    const survey = freshId("survey");
    const at = (time: string) => `2026-09-14T${time}:00.000Z`;
    await post(response(survey, at("08:00"), screens("10", "morning", "5", "Pro", [])));
    await foldAll(new Date(at("22:30")));
    await foldToday(env.DB, new Date(at("22:30")), 10, 1);
    await post(response(survey, at("22:40"), screens("9", "evening", "5", "Pro", [])));
    await foldAll(new Date("2026-09-15T00:10:00.000Z"));
    // Folded whole, the day's hours are forgotten (a late response could move the whole days back before them).
    expect(await env.DB.prepare("SELECT facets_through, facets_hour FROM surveys WHERE survey_id = ?").bind(survey).first()).toEqual({ facets_through: "2026-09-14", facets_hour: "" });
    // 1Flow's retry of a response submitted at 23:30, the next morning.
    await post(response(survey, at("23:30"), screens("2", "night", "1", "Free", [])));
    const query = `since=2026-09-01T00:00:00.000Z&until=${encodeURIComponent("2026-09-15T09:00:00.000Z")}`;
    expect((await insights(survey, query)).body).toMatchObject({ responses: 3, nps: { promoters: 2, detractors: 1 } });
  });

  it("two hourly folds overlapping (a slow tick's and the next hour's): the older writes nothing, no hour lost or counted twice", async () => {
    const survey = freshId("survey");
    const at = (time: string) => `2026-09-28T${time}:00.000Z`;
    for (const time of ["01:00", "04:30"]) await post(response(survey, at(time), screens("10", time, "5", "Pro", [])));
    await foldAll(new Date(at("04:10")));
    // The 04:10 fold reads; the 05:10 fold marks, reads and writes before it writes.
    await foldToday(racingRead(() => foldToday(env.DB, new Date(at("05:10")), 10, 1)), new Date(at("04:10")), 10, 1);
    expect(await env.DB.prepare("SELECT facets_hour FROM surveys WHERE survey_id = ?").bind(survey).first<string>("facets_hour")).toBe(at("05:00"));
    const query = `since=2026-09-27T00:00:00.000Z&until=${encodeURIComponent(at("05:30"))}`;
    expect((await insights(survey, query)).body).toMatchObject({ responses: 2, nps: { promoters: 2 } });
  });

  it("the hourly fold folds again only for a response since its last fold (not for one dated later today), and the hour's first tick folds today before whole days", async () => {
    const busy = freshId("survey");
    const at = (time: string) => `2026-10-12T${time}:00.000Z`;
    await seedBySql(busy, TODAY_FOLD_FROM, "'2026-10-12T0' || (i % 9) || ':00:00.000Z'", "json_array(json_object('title', 'NPS', 'type', 'nps', 'answer', '9', 'value', 9))");
    await foldAll(new Date(at("10:30")));
    const hourOf = (survey: string) => env.DB.prepare("SELECT facets_hour FROM surveys WHERE survey_id = ?").bind(survey).first<string>("facets_hour");
    expect(await hourOf(busy)).toBe(at("10:00"));
    // Dated 23:50 today (a device's clock): no response came before 11:00 since the 10:00 fold.
    await post(response(busy, at("23:50"), screens("9", "skewed", "5", "Pro", [])));
    await cron(new Date(at("11:05")));
    expect(await hourOf(busy)).toBe(at("10:00"));
    // Another survey's late response gives the whole days' fold work on every tick; the 12:00 tick folds today first.
    const other = freshId("survey");
    await post(response(other, "2026-10-11T09:00:00.000Z", screens("5", null, "3", "Free", [])));
    await foldAll(new Date(at("11:30")));
    await post(response(busy, at("11:20"), screens("9", "new", "5", "Pro", [])));
    await post(response(other, "2026-10-11T10:00:00.000Z", screens("6", null, "3", "Free", [])));
    await cron(new Date(at("12:02")));
    expect(await hourOf(busy)).toBe(at("12:00"));
  });

  it("a window read again twice, a fold committing before each read: the last read leaves today's hours out, counted once", async () => {
    const survey = freshId("survey");
    const at = (time: string) => `2026-10-19T${time}:00.000Z`;
    for (const time of ["01:00", "04:30", "05:30", "06:30"]) await post(response(survey, at(time), screens("10", time, "5", "Pro", [])));
    await foldAll(new Date(at("03:10")));
    await foldToday(env.DB, new Date(at("03:10")), 10, 1);
    const hours = ["05:00", "06:00", "07:00"];
    const racing = new Proxy(env.DB, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        const next = hours.shift();
        if (prop !== "batch" || next === undefined) {
          if (next !== undefined) hours.unshift(next);
          return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        }
        return async (statements: D1PreparedStatement[]) => {
          await foldToday(env.DB, new Date(at(next)), 10, 1);
          return target.batch(statements);
        };
      },
    });
    const { facets } = await windowFacets(racing, { survey_id: survey, since: "2026-10-18T00:00:00.000Z", until: at("07:30"), facets_through: "2026-10-18", facets_hour: at("03:00") });
    expect(hours).toEqual([]);
    expect(facets.filter((f) => f.facet === "all").reduce((n, f) => n + f.responses, 0)).toBe(4);
  });

  it("a fold that commits between the page's read of the survey and its window's: read again, counted once", async () => {
    const survey = freshId("survey");
    const at = (time: string) => `2026-09-21T${time}:00.000Z`;
    for (const time of ["01:00", "02:00", "04:30"]) await post(response(survey, at(time), screens("10", time, "5", "Pro", [])));
    await foldAll(new Date(at("03:10")));
    await foldToday(env.DB, new Date(at("03:10")), 10, 1);
    // The page read the survey folded to 03:00; the 05:00 fold commits before its window's batch.
    const seen = await surveyOf(env.DB, survey);
    expect(seen).toMatchObject({ facets_through: "2026-09-20", facets_hour: at("03:00") });
    let folded = false;
    const racing = new Proxy(env.DB, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target) as unknown;
        if (prop !== "batch" || folded) return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
        return async (statements: D1PreparedStatement[]) => {
          folded = true;
          await foldToday(env.DB, new Date(at("05:00")), 10, 1);
          return target.batch(statements);
        };
      },
    });
    const { facets } = await windowFacets(racing, { survey_id: survey, since: "2026-09-20T00:00:00.000Z", until: at("05:00"), facets_through: "2026-09-20", facets_hour: at("03:00") });
    expect(folded).toBe(true);
    expect(await env.DB.prepare("SELECT facets_hour FROM surveys WHERE survey_id = ?").bind(survey).first<string>("facets_hour")).toBe(at("05:00"));
    expect(facets.filter((f) => f.facet === "all").reduce((n, f) => n + f.responses, 0)).toBe(3);
  });

  it("a busy survey's page of today reads rows that do not grow with the responses of its folded hours", async () => {
    /** `n` responses of today before 09:00 and one at 10:20, the cron at 10:30; the page's rows read. */
    const readsFor = async (n: number) => {
      const survey = freshId("survey");
      await seedBySql(survey, n, "'2026-08-20T0' || (i % 9) || ':00:00.000Z'", "json_array(json_object('title', 'NPS', 'type', 'nps', 'answer', CAST(i % 11 AS TEXT), 'value', i % 11))");
      expect((await post(response(survey, "2026-08-20T10:20:00.000Z", screens("10", "now", "5", "Pro", [])))).status).toBe(200);
      await foldAll(new Date("2026-08-20T10:30:00.000Z"));
      // A window of days, and one of today alone.
      const read = async (since: string) => {
        const cost = zeroCost();
        const res = await insights(survey, `since=${since}&until=2026-08-20T10:40:00.000Z`, { ...(env as Env), ADMIN_TOKEN, DB: meterD1(env.DB, cost) });
        expect(res.status).toBe(200);
        return { reads: cost.rows_read, responses: res.body.responses };
      };
      return [await read("2026-08-19T00:00:00.000Z"), await read("2026-08-20T00:00:00.000Z")];
    };
    // Both over TODAY_FOLD_FROM: the cron folds their hours.
    const small = await readsFor(TODAY_FOLD_FROM);
    const large = await readsFor(4 * TODAY_FOLD_FROM);
    expect(small.map((r) => r.responses)).toEqual([TODAY_FOLD_FROM + 1, TODAY_FOLD_FROM + 1]);
    expect(large.map((r) => r.responses)).toEqual([4 * TODAY_FOLD_FROM + 1, 4 * TODAY_FOLD_FROM + 1]);
    expect(large.map((r) => r.reads)).toEqual(small.map((r) => r.reads));
  }, 60_000);

  it("a page of folded days reads rows that grow with its days and answers, never with the responses stored", async () => {
    /** `per_day` responses on each of 28 days, made by SQL (an NPS and a reason each), folded by the cron. */
    const readsFor = async (per_day: number) => {
      const survey = freshId("survey");
      await seedBySql(
        survey,
        per_day * 28,
        "'2026-08-' || printf('%02d', 1 + (i % 28)) || 'T10:00:00.000Z'",
        `json_array(json_object('title', 'NPS', 'type', 'nps', 'answer', CAST(i % 11 AS TEXT), 'value', i % 11),
                    json_object('title', 'Why?', 'type', 'text', 'answer', 'reason ' || i, 'value', NULL))`,
      );
      await foldAll(new Date("2026-09-10T00:00:00.000Z"));
      const cost = zeroCost();
      const res = await insights(survey, "since=2026-08-01T00:00:00.000Z&until=2026-09-01T00:00:00.000Z", { ...(env as Env), ADMIN_TOKEN, DB: meterD1(env.DB, cost) });
      expect(res.status).toBe(200);
      return { reads: cost.rows_read, responses: res.body.responses };
    };
    const small = await readsFor(30);
    const large = await readsFor(120);
    expect(small.responses).toBe(840);
    expect(large.responses).toBe(3_360);
    // Four times the responses, the same rows: per day its counts and 11 scores, and at most 20 reasons of each rank in all.
    expect(large.reads).toBe(small.reads);
    // 28 days × 16 facet rows (the day, its platform and event, 2 answered, 11 scores), 40 reasons and the survey.
    expect(large.reads).toBeLessThanOrEqual(740); // measured 491
  }, 60_000);

  it("the folded days are read in the primary key's order, one row a day, with no sorter (which D1 would bill as rows read again)", async () => {
    const plan = (await env.DB.prepare(`EXPLAIN QUERY PLAN ${FOLDED_FACETS_SQL}`).bind("s", "2026-08-01", "2026-08-31").all<{ detail: string }>()).results.map((r) => r.detail).join(" | ");
    expect(plan).toContain("SEARCH survey_facets USING PRIMARY KEY (survey_id=? AND day>? AND day<?)");
    expect(plan).not.toContain("TEMP B-TREE");
  });

  it("retention takes the text answers of what it removes (counts stay folded); an unknown screen type is listed, not counted; a thank-you screen is no question", async () => {
    const survey = freshId("survey");
    const old = response(survey, "2026-05-01T09:00:00.000Z", [
      { title: "How likely?", type: "nps", answer: "9" },
      { title: "Anything else?", type: "free-form", answer: "jane@example.org" },
      { title: "Thanks!", type: "thank_you", answer: null },
    ]);
    await post(old);
    await env.DB.prepare("UPDATE alerts SET enqueued_at = received_at, fanned_out_at = received_at WHERE alert_id = ?").bind(old.alert_id).run();
    await foldAll(new Date("2026-05-10T00:00:00.000Z"));
    const query = "since=2026-05-01T00:00:00.000Z&until=2026-05-02T00:00:00.000Z";
    const before = await insights(survey, query);
    expect(before.body.questions).toEqual([
      { position: 0, title: "How likely?", type: "nps", answered: 1, distribution: expect.any(Array) },
      { position: 1, title: "Anything else?", type: "free-form", answered: 1, latest: [{ alert_id: old.alert_id, answer: "jane@example.org", category: "promoter", submitted_at: "2026-05-01T09:00:00.000Z" }] },
    ]);
    const stored = () => env.DB.prepare("SELECT COUNT(*) AS n FROM survey_texts WHERE alert_id = ?").bind(old.alert_id).first<number>("n");
    expect(await stored()).toBe(1);
    // Retention (30 days, no archive) removes the response: its text goes, its folded counts stay.
    await worker.scheduled(createScheduledController({ scheduledTime: new Date(), cron: "*/5 * * * *" }), { ...(env as Env), ARCHIVE: undefined, RETENTION_DAYS: "30" });
    expect(await stored()).toBe(0);
    const after = await insights(survey, query);
    expect(after.body.responses).toBe(1);
    expect((after.body.questions as { latest?: unknown[] }[])[1]?.latest).toEqual([]);
  });

  it("404 for a survey with no response; 400 for since after until, and for a window of over 1,100 buckets", async () => {
    expect((await insights(freshId("nothing"), "")).status).toBe(404);
    const survey = freshId("survey");
    await post(response(survey, "2026-06-01T09:00:00.000Z", screens("10", "ok", "5", "Pro", [])));
    expect((await insights(survey, "since=2026-06-02T00:00:00.000Z&until=2026-06-01T00:00:00.000Z")).status).toBe(400);
    expect((await insights(survey, "since=0001-01-01T00:00:00.000Z&until=2026-06-01T00:00:00.000Z&bucket=day")).status).toBe(400);
  });
});
