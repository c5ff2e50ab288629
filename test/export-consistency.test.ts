/**
 * A CSV export in parts stays exact while responses arrive or are erased: each part ends at
 * the row its `Link` cursor names, so a row inserted or deleted inside a part neither skips
 * nor repeats one.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import type { Env } from "../src/env";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId, post } from "./fixtures";

/** D1 whose read sessions run `change` once, just before the export's first page is read. */
function changingDuringFirstPage(change: () => Promise<void>): D1Database {
  let done = false;
  const wrap = (statement: D1PreparedStatement, sql: string): D1PreparedStatement =>
    new Proxy(statement, {
      get(target, prop) {
        if (prop === "bind") return (...values: unknown[]) => wrap(target.bind(...values), sql);
        if (prop === "all" && sql.includes("answers_json FROM alerts")) {
          return async () => {
            if (!done) {
              done = true;
              await change();
            }
            return target.all();
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
  return new Proxy(env.DB, {
    get(target, prop) {
      if (prop === "withSession") {
        return (constraint?: string) => {
          const session = target.withSession(constraint);
          return { prepare: (sql: string) => wrap(session.prepare(sql), sql), batch: session.batch.bind(session), getBookmark: () => session.getBookmark() };
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}

/** Every part of an export of one survey, following Link rel="next"; the alert_ids in order. */
async function exportAll(survey_id: string, environment: Env): Promise<string[]> {
  const ids: string[] = [];
  let path: string | null = `/api/export.csv?survey_id=${survey_id}`;
  for (let part = 0; path !== null && part < 20; part++) {
    const res = await callWorker(path, {}, environment);
    expect(res.status).toBe(200);
    const lines = (await res.text()).split("\r\n").filter((l) => l !== "");
    ids.push(...lines.slice(1).map((l) => l.split(",")[0] ?? ""));
    path = res.headers.get("link")?.match(/^<([^>]+)>; rel="next"$/)?.[1] ?? null;
  }
  return ids;
}

async function responses(survey_id: string, days: number[]): Promise<string[]> {
  const ids: string[] = [];
  for (const day of days) {
    const p = examplePayload({ survey_id, timestamp: `2026-05-${String(day).padStart(2, "0")}T10:00:00.000Z` });
    expect((await post(p)).status).toBe(200);
    ids.push(p.alert_id);
  }
  return ids;
}

describe("export parts while the data changes", () => {
  it("a response inserted inside the first part is exported once, and none is skipped", async () => {
    const survey_id = freshId("export-insert");
    const ids = await responses(survey_id, [1, 3, 5, 7, 9, 11, 13]);
    let inserted = "";
    const DB = changingDuringFirstPage(async () => {
      const p = examplePayload({ survey_id, timestamp: "2026-05-02T10:00:00.000Z" });
      await post(p);
      inserted = p.alert_id;
    });
    const exported = await exportAll(survey_id, { ...env, ADMIN_TOKEN, EXPORT_PART_ROWS: "3", DB });
    expect(inserted).not.toBe("");
    expect([...exported].sort()).toEqual([...ids, inserted].sort());
    expect(new Set(exported).size).toBe(exported.length);
  });

  it("a response erased inside the first part: the others are exported once each", async () => {
    const survey_id = freshId("export-delete");
    const ids = await responses(survey_id, [1, 3, 5, 7, 9, 11, 13]);
    const erased = ids[1] ?? "";
    const DB = changingDuringFirstPage(async () => {
      await env.DB.prepare("DELETE FROM alerts WHERE alert_id = ?").bind(erased).run();
    });
    const exported = await exportAll(survey_id, { ...env, ADMIN_TOKEN, EXPORT_PART_ROWS: "3", DB });
    expect(exported).toEqual(ids.filter((id) => id !== erased));
  });
});
