/** Unit tests of the pure payload module: schema and normalisation. */
import { describe, expect, it } from "vitest";
import { KNOWN_SCREEN_TYPES, parsePayload, scoreOf } from "../src/ingest/payload";
import { EXAMPLE, EXAMPLE_STORED } from "./fixtures";

function withScreens(screens: unknown[]): Record<string, unknown> {
  return { ...structuredClone(EXAMPLE), survey_info: { name: "S", screens } };
}

function parseOk(json: unknown) {
  const result = parsePayload(json);
  if (!result.ok) throw new Error(`expected valid, got ${JSON.stringify(result.issues)}`);
  return result;
}

function issuePaths(json: unknown): string[] {
  const result = parsePayload(json);
  if (result.ok) throw new Error("expected invalid");
  return result.issues.map((i) => i.path);
}

describe("parsePayload: the documented example", () => {
  it("normalises every field", () => {
    const { alert, unknown_types } = parseOk(EXAMPLE);
    expect(unknown_types).toEqual([]);
    expect(alert).toEqual({
      ...EXAMPLE_STORED,
      user_parameters: '{"firstName":"John","lastName":"Wick"}',
      trigger_event_parameters: '{"content_id":"1234abcdef56","session_id":"4abcdef56"}',
      answers: [
        {
          position: 0,
          title: "How likely are you to recommend us to a friend or co-worker?",
          type: "nps",
          answer: "10",
          value: 10,
        },
        { position: 1, title: "What's the reason for this score?", type: "text", answer: "best user experience", value: null },
      ],
    });
  });
});

describe("parsePayload: screen types", () => {
  it.each([
    ["text", "great", "great", null],
    ["short-text", "ok", "ok", null],
    ["nps", "0", "0", 0],
    ["nps", "7", "7", 7],
    ["mcq", "Option B", "Option B", null],
    ["checkbox", "A,B", "A,B", null],
    ["rating-numerical", "8", "8", 8],
    ["rating-5-star", "4", "4", 4],
    ["rating-emojis", "5", "5", 5],
    ["rating", "3", "3", 3],
    ["thank_you", null, null, null],
    ["welcome-screen", undefined, null, null],
    ["end-screen", null, null, null],
  ])("%s with answer %j is stored as %j with value %j", (type, answer, text, value) => {
    const screen = answer === undefined ? { title: "Q", type } : { title: "Q", type, answer };
    const { alert, unknown_types } = parseOk(withScreens([screen]));
    expect(KNOWN_SCREEN_TYPES.has(type)).toBe(true);
    expect(unknown_types).toEqual([]);
    expect(alert.answers[0]).toEqual({ position: 0, title: "Q", type, answer: text, value });
  });

  it("keeps an unknown type as it came and reports it", () => {
    const { alert, unknown_types } = parseOk(withScreens([{ title: "Q", type: "matrix-grid", answer: "x" }]));
    expect(alert.answers[0]).toMatchObject({ type: "matrix-grid", answer: "x", value: null });
    expect(unknown_types).toEqual(["matrix-grid"]);
  });

  it.each([
    ["a number", 9, "9", 9],
    ["an array of strings", ["A", "B", "C"], "A, B, C", null],
    ["an empty array", [], "", null],
    ["null", null, null, null],
    ["a boolean", true, "true", null],
  ])("an nps answer as %s", (_, answer, text, value) => {
    const { alert } = parseOk(withScreens([{ title: "Q", type: "nps", answer }]));
    expect(alert.answers[0]).toMatchObject({ answer: text, value });
  });

  it("answers with an object or an array of numbers are invalid", () => {
    expect(issuePaths(withScreens([{ title: "Q", type: "text", answer: { a: 1 } }]))).toEqual(["survey_info.screens.0.answer"]);
    expect(issuePaths(withScreens([{ title: "Q", type: "text", answer: [1, 2] }]))).toEqual(["survey_info.screens.0.answer"]);
  });

  it("a missing title is stored as null; an empty or missing type is invalid", () => {
    expect(parseOk(withScreens([{ type: "text", answer: "a" }])).alert.answers[0]?.title).toBeNull();
    expect(issuePaths(withScreens([{ title: "Q", type: "" }]))).toEqual(["survey_info.screens.0.type"]);
    expect(issuePaths(withScreens([{ title: "Q" }, { title: "R", type: 3 }]))).toEqual([
      "survey_info.screens.0.type",
      "survey_info.screens.1.type",
    ]);
  });

  it("an empty screens array is valid", () => {
    expect(parseOk(withScreens([])).alert.answers).toEqual([]);
  });
});

describe("scoreOf", () => {
  it.each([
    ["nps", "11", null],
    ["nps", "-1", null],
    ["nps", "7.5", null],
    ["nps", "ten", null],
    ["nps", " 9 ", 9],
    ["nps", "", null],
    ["nps", "0x0A", null],
    ["nps", "1e1", null],
    ["nps", "-5", null],
    ["nps", "+9", null],
    ["nps", "9.5", null],
    ["nps", "Infinity", null],
    ["rating-numerical", "0x05", null],
    ["rating-numerical", "7.25", 7.25],
    ["rating-5-star", "6", null],
    ["rating-5-star", "4.5", 4.5],
    ["rating-numerical", "10", 10],
    ["text", "5", null],
    ["constructor", "5", null],
  ])("%s %j -> %j", (type, answer, value) => {
    expect(scoreOf(type, answer)).toBe(value);
  });
});

describe("parsePayload: required and optional fields", () => {
  it.each(["alert_id", "alert_name", "survey_id", "timestamp", "survey_info"])("%s is required", (field) => {
    const json: Record<string, unknown> = structuredClone(EXAMPLE);
    delete json[field];
    expect(issuePaths(json)).toEqual([field]);
  });

  it("survey_info.screens is required and must be an array", () => {
    expect(issuePaths({ ...EXAMPLE, survey_info: { name: "x" } })).toEqual(["survey_info.screens"]);
    expect(issuePaths({ ...EXAMPLE, survey_info: { screens: {} } })).toEqual(["survey_info.screens"]);
  });

  it.each([
    ["empty", ""],
    ["129 characters", "a".repeat(129)],
    ["with a space", "abc def"],
    ["with a control character", "abc\u0000"],
    ["a number", 42],
  ])("alert_id %s is invalid", (_, alert_id) => {
    expect(issuePaths({ ...EXAMPLE, alert_id })).toEqual(["alert_id"]);
  });

  it("alert_id of 128 printable characters is valid", () => {
    expect(parseOk({ ...EXAMPLE, alert_id: "~".repeat(128) }).alert.alert_id).toHaveLength(128);
  });

  it.each([
    ["no zone", "2022-09-30T03:26:24.894"],
    ["a date only", "2022-09-30"],
    ["not a date", "yesterday"],
    ["a number", 1664508384894],
    ["month 13", "2022-13-30T03:26:24Z"],
  ])("timestamp with %s is invalid", (_, timestamp) => {
    expect(issuePaths({ ...EXAMPLE, timestamp })).toEqual(["timestamp"]);
  });

  it("a timestamp with an offset is stored in UTC", () => {
    expect(parseOk({ ...EXAMPLE, timestamp: "2022-09-30T08:56:24+05:30" }).alert.submitted_at).toBe("2022-09-30T03:26:24.000Z");
  });

  it("optional fields may be absent or null", () => {
    const minimal = {
      alert_id: "a1",
      alert_name: "submitted_survey",
      survey_id: "s1",
      timestamp: "2022-09-30T03:26:24Z",
      survey_info: { screens: [] },
    };
    expect(parseOk(minimal).alert).toMatchObject({
      project_name: null,
      platform: null,
      survey_name: null,
      user_system_id: null,
      user_parameters: null,
      trigger_event_name: null,
      trigger_event_parameters: null,
    });
    const nulls = { ...minimal, project_name: null, platform: null, user: null, trigger_event: null, survey_info: { name: null, screens: [] } };
    expect(parseOk(nulls).alert.user_system_id).toBeNull();
  });

  it("a user without parameters and a trigger event without parameters are valid", () => {
    const { alert } = parseOk({ ...EXAMPLE, user: { user_system_id: "u" }, trigger_event: { event_name: "e" } });
    expect(alert).toMatchObject({ user_system_id: "u", user_parameters: null, trigger_event_name: "e", trigger_event_parameters: null });
  });

  it("a user_system_id or event_name that is not a string is invalid", () => {
    expect(issuePaths({ ...EXAMPLE, user: { user_system_id: 5 } })).toEqual(["user.user_system_id"]);
    expect(issuePaths({ ...EXAMPLE, user: {} })).toEqual(["user.user_system_id"]);
    expect(issuePaths({ ...EXAMPLE, trigger_event: { event_name: null } })).toEqual(["trigger_event.event_name"]);
  });

  it("unknown fields, including older ones, are allowed", () => {
    const older = {
      ...EXAMPLE,
      trigger_event_name: "legacy",
      brand_new: { nested: true },
      survey_info: { ...EXAMPLE.survey_info, description: "d", platforms: ["ios"] },
    };
    expect(parseOk(older).alert.alert_id).toBe(EXAMPLE.alert_id);
  });

  it.each([[null], [[]], ["string"], [3]])("a body of %j is invalid at the root", (json) => {
    expect(parsePayload(json).ok).toBe(false);
  });
});
