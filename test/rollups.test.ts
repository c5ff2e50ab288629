/**
 * The survey rollups the pages read instead of the responses: kept in the ingest batch,
 * folded by the cron into each survey's totals, right for a response that arrives for a
 * day already folded, and lowered by erasure.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import { foldSurveys } from "../src/store/rollups";
import { callWorker, examplePayload, post } from "./fixtures";

const survey = async (survey_id: string) => {
  const { surveys } = (await (await callWorker("/api/surveys")).json()) as { surveys: { survey_id: string; responses: number; nps: number | null }[] };
  return surveys.find((s) => s.survey_id === survey_id);
};

const response = (survey_id: string, timestamp: string, score: string, user = "u") => {
  const p = examplePayload({ survey_id, timestamp, user: { user_system_id: user } });
  p.survey_info.screens[0]!.answer = score;
  return p;
};

describe("survey rollups", () => {
  it("fold finished days, count a late response for a folded day, and lose what erasure takes", async () => {
    const id = `roll-${crypto.randomUUID()}`;
    const today = new Date().toISOString();
    const old = "2026-01-10T10:00:00.000Z";
    await post(response(id, old, "10"));
    await post(response(id, old, "2", `gone-${id}`));
    await post(response(id, today, "9"));
    expect(await survey(id)).toMatchObject({ responses: 3, nps: 33 });

    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    await foldSurveys(env.DB, yesterday);
    const folded = await env.DB.prepare("SELECT responses, promoters, detractors, folded_through FROM surveys WHERE survey_id = ?").bind(id).first();
    expect(folded).toEqual({ responses: 2, promoters: 1, detractors: 1, folded_through: yesterday });
    // Folding twice adds nothing; the list still reads 3.
    await foldSurveys(env.DB, yesterday);
    expect(await survey(id)).toMatchObject({ responses: 3, nps: 33 });

    // 1Flow's retry delivers a response of a folded day late: counted in the totals and the day.
    await post(response(id, old, "8"));
    expect(await survey(id)).toMatchObject({ responses: 4, nps: 25 });
    const { series } = (await (await callWorker(`/api/surveys/${id}/nps?bucket=day`)).json()) as { series: { bucket: string; responses: number }[] };
    expect(series).toContainEqual(expect.objectContaining({ bucket: "2026-01-10", responses: 3 }));

    // Erasing the detractor takes it out of the folded totals and of its day.
    await callWorker(`/api/users/gone-${id}`, { method: "DELETE" });
    expect(await survey(id)).toMatchObject({ responses: 3, nps: 67 });
    const day = await env.DB.prepare("SELECT responses, detractors FROM survey_daily WHERE survey_id = ? AND day = '2026-01-10'").bind(id).first();
    expect(day).toEqual({ responses: 2, detractors: 0 });
  });
});

describe("arrivals and the destinations' days (the overview's counts and sparklines)", () => {
  const arrivedToday = async () => {
    const { arrivalsByDay } = await import("../src/store/reads");
    const today = new Date().toISOString().slice(0, 10);
    return (await arrivalsByDay(env.DB, today)).find((d) => d.day === today)?.responses ?? 0;
  };

  it("a response counts on the day it arrived, whatever its submission date; a repeat does not; erasure takes it out; today's writes no extra row", async () => {
    const id = `arrive-${crypto.randomUUID()}`;
    const before = await arrivedToday();
    const old = response(id, "2022-03-01T10:00:00.000Z", "10", `old-${id}`); // the README's example is from 2022
    await post(old);
    await post(old); // 1Flow's retry: a duplicate
    expect(await arrivedToday(), "the old one and its retry").toBe(before + 1);
    // A response of today: counted once, and its batch writes no ingest_daily row.
    const spy = vi.spyOn(env.DB, "batch");
    await post(response(id, new Date().toISOString(), "9", `new-${id}`));
    const stored = spy.mock.calls.findIndex(([statements]) => statements.length === 6); // the ingest batch
    const results = (await spy.mock.results[stored]?.value) as D1Result[];
    vi.restoreAllMocks();
    expect(results[1]?.meta.rows_written).toBe(1); // its survey's day
    expect(results[4]?.meta.rows_written).toBe(0); // COUNT_ARRIVAL
    expect(await arrivedToday(), "and today's").toBe(before + 2);
    // Erasure takes the old one out of what arrived today (and the survey's day of 2022).
    await callWorker(`/api/users/old-${id}`, { method: "DELETE" });
    expect(await arrivedToday(), "after the erasure").toBe(before + 1);
    const day = await env.DB.prepare("SELECT responses, arrived_later FROM survey_daily WHERE survey_id = ? AND day = '2022-03-01'").bind(id).first();
    expect(day).toEqual({ responses: 0, arrived_later: 0 });
  });

  it("a response submitted yesterday that arrives today counts once, today, over the two days", async () => {
    const { arrivalsByDay } = await import("../src/store/reads");
    const id = `late-${crypto.randomUUID()}`;
    const yesterday = new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
    const days = async () => new Map((await arrivalsByDay(env.DB, yesterday)).map((d) => [d.day, d.responses]));
    const before = await days();
    await post(response(id, `${yesterday}T12:00:00.000Z`, "7", `late-${id}`));
    const after = await days();
    const today = new Date().toISOString().slice(0, 10);
    expect([(after.get(yesterday) ?? 0) - (before.get(yesterday) ?? 0), (after.get(today) ?? 0) - (before.get(today) ?? 0)]).toEqual([0, 1]);
  });

  it("the cron folds each whole day of destination_hourly into destination_daily once, and reads one row on the other ticks", async () => {
    const { pruneHourly, destinationDaysThrough, HOURLY_KEPT_IN_HOURS } = await import("../src/store/rollups");
    const { destinationDays } = await import("../src/store/reads");
    const name = `days-${crypto.randomUUID()}`;
    const now = new Date();
    const through = destinationDaysThrough(now);
    const hours = [`${through}T05`, `${through}T17`, `${now.toISOString().slice(0, 13)}`];
    for (const [i, hour] of hours.entries()) {
      await env.DB.prepare("INSERT INTO destination_hourly (destination, hour, delivered, failed, dead) VALUES (?, ?, ?, ?, ?)").bind(name, hour, 10 + i, i, 1).run();
    }
    // Not folded yet: the page reads the hourly rows.
    await env.DB.prepare("DELETE FROM settings WHERE key = 'destination_days_through'").run();
    const before = new Date(now.getTime() - HOURLY_KEPT_IN_HOURS * 3_600_000).toISOString().slice(0, 13);
    const since = new Date(now.getTime() - 29 * 86_400_000).toISOString().slice(0, 10);
    const expected = [
      { destination: name, day: through, delivered: 21, failed: 1, dead: 2 },
      { destination: name, day: now.toISOString().slice(0, 10), delivered: 12, failed: 2, dead: 1 },
    ];
    const mine = async () => (await destinationDays(env.DB, since)).filter((d) => d.destination === name);
    expect(await mine()).toEqual(expected);
    await pruneHourly(env.DB, before, now);
    expect(await env.DB.prepare("SELECT delivered, failed, dead FROM destination_daily WHERE destination = ? AND day = ?").bind(name, through).first()).toEqual({ delivered: 21, failed: 1, dead: 2 });
    expect(await mine()).toEqual(expected);
    // A later tick of the same day folds nothing again (no double count) and reads no hourly row for it.
    const spy = vi.spyOn(env.DB, "batch");
    await pruneHourly(env.DB, before, now);
    const results = (await spy.mock.results[0]?.value) as D1Result[];
    vi.restoreAllMocks();
    expect(results.slice(0, 3).map((r) => r.meta.rows_written)).toEqual([0, 0, 0]);
    expect(results[1]?.meta.rows_read).toBeLessThanOrEqual(2);
    expect(await mine()).toEqual(expected);
  });
});
