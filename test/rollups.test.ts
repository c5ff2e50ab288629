/**
 * The survey rollups the pages read instead of the responses: kept in the ingest batch,
 * folded by the cron into each survey's totals, right for a response that arrives for a
 * day already folded, and lowered by erasure.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
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
