/**
 * Talking back to 1Flow: a `1flow-identify` destination writes each respondent's last
 * answer to their 1Flow profile. A local stand-in for 1Flow's API records what it gets.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { MAX_SURVEY_NAME_CHARS } from "../src/fanout/identify";
import type { Env } from "../src/env";
import { deliveries, FANOUT_ENV, message, runQueue, storedAlert, stubDestinations, watchSendBatch } from "./fanout-fixtures";
import { examplePayload } from "./fixtures";

const HOST = "api.1flow.test";
const ENV: Env = {
  ...FANOUT_ENV,
  DESTINATIONS: JSON.stringify([{ name: "oneflow", url: `https://${HOST}/v1/identify`, format: "1flow-identify", headers: { api_key: "1flow-key" } }]),
};

function response(user: string | null, overrides: { score?: string; timestamp?: string; survey_name?: string } = {}) {
  const p = examplePayload({
    user: user === null ? null : { user_system_id: user },
    timestamp: overrides.timestamp ?? "2026-11-01T10:00:00.000Z",
  });
  if (overrides.score !== undefined) p.survey_info.screens[0]!.answer = overrides.score;
  if (overrides.survey_name !== undefined) p.survey_info.name = overrides.survey_name;
  return p;
}

const to1Flow = (received: ReturnType<typeof stubDestinations>) => received.filter((r) => r.host === HOST);

describe("format 1flow-identify", () => {
  it("POSTs {user_id, traits, timestamp} with the api_key header, and no webhook headers", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response("user-a", { score: "10" }));
    await runQueue("oneflow-alerts", [message(alert_id)], ENV);
    const [call] = to1Flow(received);
    expect(call?.headers.api_key).toBe("1flow-key");
    expect(call?.headers["content-type"]).toBe("application/json");
    expect(call?.headers["webhook-id"]).toBeUndefined();
    expect(JSON.parse(call?.body ?? "{}")).toEqual({
      user_id: "user-a",
      traits: {
        oneflow_last_survey_id: "30cc805f1f0c541d4dcfccef",
        oneflow_last_survey_name: "Net Promoter Score (NPS)",
        oneflow_last_response_at: "2026-11-01T10:00:00.000Z",
        oneflow_last_nps: 10,
        oneflow_last_nps_category: "promoter",
      },
      timestamp: "2026-11-01T10:00:00.000Z",
    });
    expect((await deliveries(alert_id)).map((d) => d.status)).toEqual(["delivered"]);
  });

  it("takes the score from an nps answer given as a string: \"3\" is 3, a detractor", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response("user-b", { score: "3" }));
    await runQueue("oneflow-alerts", [message(alert_id)], ENV);
    const traits = (JSON.parse(to1Flow(received)[0]?.body ?? "{}") as { traits: Record<string, unknown> }).traits;
    expect(traits.oneflow_last_nps).toBe(3);
    expect(traits.oneflow_last_nps_category).toBe("detractor");
  });

  it("a response without an NPS score carries no NPS traits", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response("user-c", { score: "ten" }));
    await runQueue("oneflow-alerts", [message(alert_id)], ENV);
    const traits = (JSON.parse(to1Flow(received)[0]?.body ?? "{}") as { traits: Record<string, unknown> }).traits;
    expect(Object.keys(traits).sort()).toEqual(["oneflow_last_response_at", "oneflow_last_survey_id", "oneflow_last_survey_name"]);
  });

  it("a response without user.user_system_id is not sent to it, as if filtered out", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response(null));
    const result = await runQueue("oneflow-alerts", [message(alert_id)], ENV);
    expect(result.explicitAcks).toHaveLength(1);
    expect(to1Flow(received)).toHaveLength(0);
    expect(await deliveries(alert_id)).toEqual([]);
  });

  it("an older response after a newer one is not sent, and its ledger row says so without a failure", async () => {
    const received = stubDestinations();
    const newer = await storedAlert(response("user-d", { score: "9", timestamp: "2026-11-02T10:00:00.000Z" }));
    const older = await storedAlert(response("user-d", { score: "2", timestamp: "2026-11-01T10:00:00.000Z" }));
    await runQueue("oneflow-alerts", [message(newer.alert_id)], ENV);
    const result = await runQueue("oneflow-alerts", [message(older.alert_id)], ENV);
    expect(result.explicitAcks).toHaveLength(1);
    expect(to1Flow(received).map((r) => (JSON.parse(r.body) as { traits: { oneflow_last_nps: number } }).traits.oneflow_last_nps)).toEqual([9]);
    expect(await deliveries(older.alert_id)).toMatchObject([
      { status: "delivered", attempts: 0, last_status: null, last_error: "superseded by a newer response" },
    ]);
  });

  it("a newer response after an older one is sent", async () => {
    const received = stubDestinations();
    const older = await storedAlert(response("user-e", { score: "2", timestamp: "2026-11-01T10:00:00.000Z" }));
    const newer = await storedAlert(response("user-e", { score: "9", timestamp: "2026-11-02T10:00:00.000Z" }));
    await runQueue("oneflow-alerts", [message(older.alert_id)], ENV);
    await runQueue("oneflow-alerts", [message(newer.alert_id)], ENV);
    expect(to1Flow(received).map((r) => (JSON.parse(r.body) as { traits: { oneflow_last_nps: number } }).traits.oneflow_last_nps)).toEqual([2, 9]);
  });

  it("a 429 holds 1Flow's deliveries, never sent again sooner than its Retry-After (and no try spent)", async () => {
    stubDestinations({ [HOST]: () => new Response("slow down", { status: 429, headers: { "retry-after": "120" } }) });
    const { alert_id } = await storedAlert(response("user-f"));
    const m = message(alert_id);
    const sent = watchSendBatch();
    const result = await runQueue("oneflow-alerts", [m], ENV);
    expect(result.explicitAcks).toEqual([m.id]);
    const again = sent.batches.flat().find((x) => x.body.alert_id === alert_id) as { delaySeconds?: number } | undefined;
    expect(again?.delaySeconds).toBeGreaterThanOrEqual(120);
    expect(await deliveries(alert_id)).toMatchObject([{ status: "pending", last_status: 429 }]);
    // The hold ends here: the file's other tests send to the same destination.
    await env.DB.prepare("UPDATE destination_health SET held_until = NULL WHERE destination = 'oneflow'").run();
  });

  it("stays under 1Flow's 32 KB: the survey name is cut to a bound, and nothing else is free text", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response("user-g", { survey_name: "n".repeat(50_000) }));
    await runQueue("oneflow-alerts", [message(alert_id)], ENV);
    const body = to1Flow(received)[0]?.body ?? "";
    expect(new TextEncoder().encode(body).byteLength).toBeLessThan(32 * 1024);
    expect((JSON.parse(body) as { traits: { oneflow_last_survey_name: string } }).traits.oneflow_last_survey_name).toHaveLength(MAX_SURVEY_NAME_CHARS);
  });

  it("a user id too long for 32 KB is failed (a permanent 4xx would follow), never sent", async () => {
    const received = stubDestinations();
    const { alert_id } = await storedAlert(response("u".repeat(40_000)));
    const result = await runQueue("oneflow-alerts", [message(alert_id)], ENV);
    expect(result.explicitAcks).toHaveLength(1);
    expect(to1Flow(received)).toHaveLength(0);
    expect(await deliveries(alert_id)).toMatchObject([{ status: "failed", last_error: "body over 1Flow's 32 KB limit" }]);
  });
});
