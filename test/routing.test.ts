/**
 * Routing: each filter alone and combined, the header guards, and the `json` format, whose
 * real bodies are checked against the schema GET /api/openapi.json publishes for them.
 */
import { Validator } from "@cfworker/json-schema";
import { Webhook } from "standardwebhooks";
import { beforeAll, describe, expect, it } from "vitest";
import type { Answer } from "../src/alert";
import { type Destination, parseDestinations, wantsStatically as wants } from "../src/fanout/destinations";
import { deliveryRequest } from "../src/fanout/deliver";
import type { StoredAlert } from "../src/store/deliveries";
import { deliveries, FANOUT_ENV, message, runQueue, SECRET, storedAlert, stubDestinations } from "./fanout-fixtures";
import { callWorker, examplePayload } from "./fixtures";

function destination(fields: Record<string, unknown>): Destination {
  const config = parseDestinations(JSON.stringify([{ name: "d", url: "https://d.test/hook", ...fields }]));
  if (!config.ok) throw new Error(config.error);
  const [d] = config.destinations;
  if (!d) throw new Error("no destination");
  return d;
}

const nps = (value: number | null): Answer => ({ position: 0, title: "Score?", type: "nps", answer: value === null ? null : String(value), value });

const alert = (fields: Partial<StoredAlert> = {}): StoredAlert => ({
  alert_id: "a1",
  alert_name: "submitted_survey",
  project_name: "P",
  survey_id: "s1",
  survey_name: "NPS",
  platform: "ios",
  user_system_id: "u1",
  user_parameters: '{"plan":"pro"}',
  trigger_event_name: "checkout",
  trigger_event_parameters: null,
  submitted_at: "2026-11-27T10:00:00.000Z",
  received_at: "2026-11-27T10:00:01.000Z",
  payload: "{}",
  answers: [nps(3), { position: 1, title: "Why?", type: "text", answer: "slow", value: null }],
  ...fields,
});

describe("filters", () => {
  it.each([
    ["platforms", { platforms: ["ios", "android"] }, { platform: "ios" }, { platform: "web" }],
    ["platforms, none given", { platforms: ["ios"] }, { platform: "ios" }, { platform: null }],
    ["alert_names", { alert_names: ["submitted_survey"] }, {}, { alert_name: "viewed_survey" }],
    ["event_names", { event_names: ["checkout"] }, {}, { trigger_event_name: "login" }],
    ["event_names, no trigger event", { event_names: ["checkout"] }, {}, { trigger_event_name: null }],
    ["score: detractors", { score: { type: "nps", min: 0, max: 6 } }, { answers: [nps(6)] }, { answers: [nps(7)] }],
    ["score: the bounds are inclusive", { score: { type: "nps", min: 9, max: 10 } }, { answers: [nps(9)] }, { answers: [nps(8)] }],
    ["score: an answer without a value", { score: { type: "nps", min: 0, max: 10 } }, { answers: [nps(0)] }, { answers: [nps(null)] }],
    ["score: another type", { score: { type: "rating-5-star", min: 1, max: 2 } }, { answers: [{ ...nps(2), type: "rating-5-star" }] }, { answers: [nps(2)] }],
  ])("%s: the alert that matches is wanted, the other is not", (_, filter, match, miss) => {
    const d = destination({ filter });
    expect(wants(d, alert(match as Partial<StoredAlert>))).toBe(true);
    expect(wants(d, alert(miss as Partial<StoredAlert>))).toBe(false);
  });

  it("combined: every given condition must hold (detractors on iOS after checkout, of one survey)", () => {
    const d = destination({ survey_ids: ["s1"], filter: { platforms: ["ios"], event_names: ["checkout"], score: { type: "nps", min: 0, max: 6 } } });
    expect(wants(d, alert())).toBe(true);
    expect(wants(d, alert({ platform: "android" }))).toBe(false);
    expect(wants(d, alert({ trigger_event_name: "login" }))).toBe(false);
    expect(wants(d, alert({ answers: [nps(10)] }))).toBe(false);
    expect(wants(d, alert({ survey_id: "s2" }))).toBe(false);
  });

  it("no filter: every alert", () => {
    expect(wants(destination({}), alert({ platform: null, trigger_event_name: null, answers: [] }))).toBe(true);
  });

  it.each([
    ["an unknown condition", { filter: { countries: ["fr"] } }, "0.filter.countries"],
    ["a score without bounds", { filter: { score: { type: "nps" } } }, "0.filter.score.min"],
    ["a score with min above max", { filter: { score: { type: "nps", min: 9, max: 6 } } }, "min must not be above max"],
    ["platforms not strings", { filter: { platforms: [1] } }, "0.filter.platforms.0"],
  ])("refuses %s with the exact reason", (_, fields, reason) => {
    const config = parseDestinations(JSON.stringify([{ name: "d", url: "https://d.test/x", ...fields }]));
    expect(config.ok).toBe(false);
    if (!config.ok) expect(config.error).toContain(reason);
  });
});

describe("headers", () => {
  it("are sent, and the Worker's own come after them", async () => {
    const d = destination({ headers: { Authorization: "Bearer abc", "X-Team": "cx" } });
    const request = await deliveryRequest(d, alert(), new Date());
    expect(request.headers.get("authorization")).toBe("Bearer abc");
    expect(request.headers.get("x-team")).toBe("cx");
    expect(request.headers.get("content-type")).toBe("application/json");
  });

  it.each(["content-type", "Content-Type", "webhook-id", "Webhook-Signature", "host", "connection", "transfer-encoding", "upgrade", "te", "keep-alive", "bad header", "x\nbad"])(
    "refuses %j",
    (name) => {
      const config = parseDestinations(JSON.stringify([{ name: "d", url: "https://d.test/x", headers: { [name]: "v" } }]));
      expect(config.ok).toBe(false);
      if (!config.ok) expect(config.error).toContain("0.headers");
    },
  );

  it("refuses a value on two lines, and a value that is not a string", () => {
    for (const headers of [{ "x-a": "one\r\ntwo" }, { "x-a": 1 }]) {
      expect(parseDestinations(JSON.stringify([{ name: "d", url: "https://d.test/x", headers }])).ok).toBe(false);
    }
  });
});

describe("format json", () => {
  type Doc = { openapi: string; components: { schemas: { NormalisedAlert: Record<string, unknown> } }; webhooks: Record<string, { post: { requestBody: unknown } }> };
  let doc: Doc;
  let validator: Validator;
  beforeAll(async () => {
    // The document GET /api/openapi.json serves, generated from the routes.
    doc = (await (await callWorker("/api/openapi.json")).json()) as Doc;
    validator = new Validator(doc.components.schemas.NormalisedAlert as never, "2020-12", false);
  });

  it("is described as an OpenAPI 3.1 webhooks entry", () => {
    expect(doc.openapi).toBe("3.1.0");
    expect(doc.webhooks["alert.json"]?.post.requestBody).toEqual({
      required: true,
      content: { "application/json": { schema: { $ref: "#/components/schemas/NormalisedAlert" } } },
    });
    // The schema is strict enough to refuse a wrong body.
    expect(validator.validate({ v: 1, alert_id: 5 }).valid).toBe(false);
  });

  it("real bodies, through the consumer, match that schema and carry the Standard Webhooks signature", async () => {
    const received = stubDestinations();
    const env = { ...FANOUT_ENV, DESTINATIONS: JSON.stringify([{ name: "warehouse", url: "https://warehouse.test/in", format: "json", secret: SECRET }]) };
    const bodies = [examplePayload(), examplePayload({ user: null, trigger_event: null, project_name: null, platform: null, survey_info: { screens: [] } })];
    for (const p of bodies) {
      const { alert_id } = await storedAlert(p);
      await runQueue("oneflow-alerts", [message(alert_id)], env);
      expect((await deliveries(alert_id)).map((d) => d.status)).toEqual(["delivered"]);
    }
    expect(received).toHaveLength(2);
    for (const r of received) {
      const body = JSON.parse(r.body) as Record<string, unknown>;
      const result = validator.validate(body);
      expect(result.errors).toEqual([]);
      expect(result.valid).toBe(true);
      expect(new Webhook(SECRET).verify(r.body, r.headers)).toEqual(body);
      expect(r.headers["webhook-id"]).toBe(body.alert_id);
    }
    const first = JSON.parse(received[0]?.body ?? "{}") as Record<string, unknown>;
    expect(first).toMatchObject({
      v: 1,
      survey: { id: "30cc805f1f0c541d4dcfccef", name: "Net Promoter Score (NPS)" },
      user: { id: "sdk_system_id_1680151080658" },
      trigger_event: { name: "complete_meditation" },
      answers: [{ position: 0, type: "nps", answer: "10", value: 10 }, { position: 1, type: "text", value: null }],
    });
  });

  it("GET /api/openapi.json serves it", async () => {
    const doc = (await (await callWorker("/api/openapi.json")).json()) as { webhooks: Record<string, unknown> };
    expect(Object.keys(doc.webhooks)).toEqual(["alert.json"]);
  });
});

describe("routing through the consumer", () => {
  it("detractors to the CX channel, everything to the warehouse", async () => {
    const received = stubDestinations();
    const env = {
      ...FANOUT_ENV,
      DESTINATIONS: JSON.stringify([
        { name: "cx", url: "https://cx.test/slack", format: "slack", filter: { score: { type: "nps", min: 0, max: 6 } } },
        { name: "warehouse", url: "https://warehouse.test/in", format: "json" },
      ]),
    };
    const promoter = await storedAlert();
    const detractor = examplePayload();
    detractor.survey_info.screens[0]!.answer = "3";
    const stored = await storedAlert(detractor);
    await runQueue("oneflow-alerts", [message(promoter.alert_id), message(stored.alert_id)], env);
    expect(received.filter((r) => r.host === "cx.test")).toHaveLength(1);
    expect(received.find((r) => r.host === "cx.test")?.body).toContain("(detractor)");
    expect(received.filter((r) => r.host === "warehouse.test")).toHaveLength(2);
    // Filtered out: no ledger row, as if the destination did not exist for that alert.
    expect((await deliveries(promoter.alert_id)).map((d) => d.destination)).toEqual(["warehouse"]);
  });
});
