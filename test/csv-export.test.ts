/** Surveys, the NPS series and the CSV export. */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { csvCell, csvLine } from "../src/http/csv";
import { callWorker, examplePayload, post } from "./fixtures";

const api = (path: string) => callWorker(path);

/** Parses RFC 4180 CSV (quoted fields, doubled quotes, CRLF records). */
function parseCsv(text: string): string[][] {
  const rows: string[][] = [];
  let row: string[] = [];
  let cell = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        cell += '"';
        i++;
      } else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === ",") {
      row.push(cell);
      cell = "";
    } else if (ch === "\r" && text[i + 1] === "\n") {
      row.push(cell);
      rows.push(row);
      row = [];
      cell = "";
      i++;
    } else cell += ch;
  }
  return rows;
}

describe("csvCell", () => {
  it.each([
    ["plain", "plain"],
    ["a,b", '"a,b"'],
    ['say "hi"', '"say ""hi"""'],
    ["two\nlines", '"two\nlines"'],
    ["=SUM(A1:A2)", "'=SUM(A1:A2)"],
    ["+1", "'+1"],
    ["-cmd", "'-cmd"],
    ["@import", "'@import"],
    ["＝SUM(A1)", "'＝SUM(A1)"],
    ["＋1", "'＋1"],
    ["－1", "'－1"],
    ["＠x", "'＠x"],
    ['=HYPERLINK("http://x","y")', `"'=HYPERLINK(""http://x"",""y"")"`],
    [null, ""],
  ])("%j -> %s", (value, cell) => {
    expect(csvCell(value)).toBe(cell);
  });

  it("ends records with CRLF", () => {
    expect(csvLine(["a", null, "b c"])).toBe("a,,b c\r\n");
  });
});

describe("surveys and NPS", () => {
  it("GET /api/surveys lists each survey with responses, last response time and NPS", async () => {
    const survey_id = `s-${crypto.randomUUID()}`;
    for (const [score, ts] of [["10", "2024-03-01T10:00:00Z"], ["3", "2024-03-02T10:00:00Z"]] as const) {
      const p = examplePayload({ survey_id, timestamp: ts });
      p.survey_info.screens[0]!.answer = score;
      await post(p);
    }
    const { surveys } = (await (await api("/api/surveys")).json()) as { surveys: Record<string, unknown>[] };
    expect(surveys.find((s) => s.survey_id === survey_id)).toEqual({
      survey_id,
      survey_name: "Net Promoter Score (NPS)",
      responses: 2,
      last_response_at: "2024-03-02T10:00:00.000Z",
      nps: 0,
    });
  });

  it("GET /api/surveys/:id/nps buckets by day and by week", async () => {
    const survey_id = `n-${crypto.randomUUID()}`;
    const answers: [string, string][] = [
      ["10", "2024-04-01T08:00:00Z"], // Monday
      ["9", "2024-04-01T09:00:00Z"],
      ["5", "2024-04-03T09:00:00Z"], // Wednesday, same week
      ["8", "2024-04-08T09:00:00Z"], // next Monday
    ];
    for (const [score, ts] of answers) {
      const p = examplePayload({ survey_id, timestamp: ts });
      p.survey_info.screens[0]!.answer = score;
      await post(p);
    }
    const day = (await (await api(`/api/surveys/${survey_id}/nps?bucket=day`)).json()) as { series: unknown[] };
    expect(day.series).toEqual([
      { bucket: "2024-04-01", responses: 2, promoters: 2, passives: 0, detractors: 0, nps: 100 },
      { bucket: "2024-04-03", responses: 1, promoters: 0, passives: 0, detractors: 1, nps: -100 },
      { bucket: "2024-04-08", responses: 1, promoters: 0, passives: 1, detractors: 0, nps: 0 },
    ]);
    const week = (await (await api(`/api/surveys/${survey_id}/nps?bucket=week&until=2024-04-05T00:00:00Z`)).json()) as {
      series: unknown[];
    };
    expect(week.series).toEqual([{ bucket: "2024-04-01", responses: 3, promoters: 2, passives: 0, detractors: 1, nps: 33 }]);
    expect((await api(`/api/surveys/${survey_id}/nps?bucket=month`)).status).toBe(400);
  });
});

describe("GET /api/export.csv", () => {
  it("one row per response, one column per screen position named by its latest title, quoted and neutralised", async () => {
    const survey_id = `x-${crypto.randomUUID()}`;
    const first = examplePayload({ survey_id, timestamp: "2024-05-01T00:00:00Z" });
    first.survey_info.screens[1]!.answer = '=HYPERLINK("http://evil","click"), "quoted"\nnext line';
    const second = examplePayload({
      survey_id,
      timestamp: "2024-05-02T00:00:00Z",
      survey_info: { name: "N", screens: [{ title: "How likely are you to recommend us to a friend or co-worker?", type: "nps", answer: "7" }, { title: "Anything else?", type: "text", answer: "no" }] },
    });
    await post(first);
    await post(second);
    const res = await api(`/api/export.csv?survey_id=${survey_id}`);
    expect(res.headers.get("content-type")).toBe("text/csv; charset=utf-8");
    expect(res.headers.get("content-disposition")).toContain("attachment");
    expect(res.headers.get("link")).toBeNull();
    const rows = parseCsv(await res.text());
    expect(rows[0]).toEqual([
      "alert_id",
      "submitted_at",
      "user_system_id",
      "platform",
      "How likely are you to recommend us to a friend or co-worker?",
      "Anything else?",
    ]);
    expect(rows.slice(1)).toEqual([
      [first.alert_id, "2024-05-01T00:00:00.000Z", "sdk_system_id_1680151080658", "windows", "10", `'=HYPERLINK("http://evil","click"), "quoted"\nnext line`],
      [second.alert_id, "2024-05-02T00:00:00.000Z", "sdk_system_id_1680151080658", "windows", "7", "no"],
    ]);
  });

  it("keeps every answer when two questions share a title: columns go by position", async () => {
    const survey_id = `dup-${crypto.randomUUID()}`;
    const p = examplePayload({
      survey_id,
      survey_info: { name: "N", screens: [{ title: "Why?", type: "text", answer: "first" }, { title: "Why?", type: "text", answer: "second" }] },
    });
    await post(p);
    const rows = parseCsv(await (await api(`/api/export.csv?survey_id=${survey_id}`)).text());
    expect(rows[0]?.slice(4)).toEqual(["Why?", "Why?"]);
    expect(rows[1]?.slice(4)).toEqual(["first", "second"]);
  });

  it("an export larger than a part continues at Link rel=next, each part with the header, each row once", async () => {
    const survey_id = `big-${crypto.randomUUID()}`;
    const ids = Array.from({ length: 1_203 }, (_, i) => `big-${String(i).padStart(4, "0")}-${crypto.randomUUID()}`);
    for (let i = 0; i < ids.length; i += 200) {
      const values = ids.slice(i, i + 200).map((id) => `('${id}')`).join(",");
      await env.DB.prepare(
        `INSERT INTO alerts (alert_id, alert_name, survey_id, submitted_at, received_at, payload, payload_sha256, answers_json)
         SELECT column1, 'submitted_survey', '${survey_id}', '2024-06-01T00:00:00.000Z', '2024-06-01T00:00:00.000Z', '{}', 'x',
                '[{"title":"Q","type":"text","answer":"a","value":null}]'
         FROM (VALUES ${values})`,
      ).run();
    }
    await env.DB.prepare("INSERT INTO survey_daily (survey_id, day, responses, screens, titles) VALUES (?, '2024-06-01', 1203, 1, '[\"Q\"]')")
      .bind(survey_id)
      .run();
    const seen: string[] = [];
    let path: string | null = `/api/export.csv?survey_id=${survey_id}`;
    let parts = 0;
    while (path !== null) {
      const res = await callWorker(path, {}, { ...env, ADMIN_TOKEN: "admin-token-for-tests", EXPORT_PART_ROWS: "500" });
      const rows = parseCsv(await res.text());
      expect(rows[0]).toEqual(["alert_id", "submitted_at", "user_system_id", "platform", "Q"]);
      seen.push(...rows.slice(1).map((r) => r[0] ?? ""));
      path = /<([^>]+)>; rel="next"/.exec(res.headers.get("link") ?? "")?.[1] ?? null;
      parts += 1;
    }
    expect(parts).toBe(3);
    expect(seen).toEqual([...ids].sort());
  });

  it("bad parameters: 400", async () => {
    expect((await api("/api/export.csv?since=soon")).status).toBe(400);
    expect((await api("/api/export.csv?cursor=nope")).status).toBe(400);
  });
});
