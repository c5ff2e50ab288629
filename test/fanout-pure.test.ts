/** Unit tests of the pure fan-out modules: backoff, destinations, signing, Slack. */
import { Webhook } from "standardwebhooks";
import { describe, expect, it } from "vitest";
import { MAX_RETRY_DELAY_IN_SECONDS, parseRetryAfter, retryDelaySeconds } from "../src/fanout/backoff";
import { fairShare } from "../src/fanout/consumer";
import { parseDestinations, wantsStatically } from "../src/fanout/destinations";
import { sign } from "../src/fanout/signing";
import { npsCategory } from "../src/alert";
import { slackMessage } from "../src/fanout/slack";
import type { StoredAlert } from "../src/store/deliveries";

describe("retryDelaySeconds", () => {
  it("doubles per attempt between half and the whole step", () => {
    for (const [attempts, step] of [[1, 30], [2, 60], [3, 120], [4, 240]] as const) {
      expect(retryDelaySeconds({ attempts, base_seconds: 30, random: 0 })).toBe(step / 2);
      expect(retryDelaySeconds({ attempts, base_seconds: 30, random: 1 })).toBe(step);
    }
  });

  it("is capped at one hour", () => {
    expect(retryDelaySeconds({ attempts: 50, base_seconds: 30, random: 1 })).toBe(MAX_RETRY_DELAY_IN_SECONDS);
    expect(retryDelaySeconds({ attempts: 1, base_seconds: 30, random: 0, retry_after_seconds: 86_400 })).toBe(3_600);
  });

  it("never comes back sooner than a Retry-After", () => {
    expect(retryDelaySeconds({ attempts: 1, base_seconds: 30, random: 0, retry_after_seconds: 500 })).toBe(500);
    expect(retryDelaySeconds({ attempts: 1, base_seconds: 30, random: 0, retry_after_seconds: 5 })).toBe(15);
  });

  it("parses Retry-After as seconds or an HTTP date", () => {
    const now = new Date("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("120", now)).toBe(120);
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:02:00 GMT", now)).toBe(120);
    expect(parseRetryAfter("soon", now)).toBeNull();
    expect(parseRetryAfter(null, now)).toBeNull();
  });
});

describe("parseDestinations", () => {
  it("unset or blank is no destinations", () => {
    expect(parseDestinations(undefined)).toEqual({ ok: true, destinations: [] });
    expect(parseDestinations("  ")).toEqual({ ok: true, destinations: [] });
    expect(parseDestinations("[]")).toEqual({ ok: true, destinations: [] });
  });

  it("defaults the format to raw", () => {
    const config = parseDestinations('[{"name":"a","url":"https://a.example/x"}]');
    expect(config).toEqual({ ok: true, destinations: [{ name: "a", url: "https://a.example/x", format: "raw", enabled: true, source: "config" }] });
  });

  it.each([
    ["not JSON", "[{", "not valid JSON"],
    ["not an array", '{"name":"a"}', "invalid"],
    ["an ftp url", '[{"name":"a","url":"ftp://x"}]', "0.url"],
    ["plain http to a public host", '[{"name":"a","url":"http://crm.example.com/hook"}]', "0.url: must be https://"],
    ["plain http to a private, not loopback, address", '[{"name":"a","url":"http://10.0.0.5/hook"}]', "0.url"],
    ["a bad secret", '[{"name":"a","url":"https://x","secret":"plain"}]', "0.secret"],
    ["an unknown format", '[{"name":"a","url":"https://x","format":"xml"}]', "0.format"],
    ["duplicate names", '[{"name":"a","url":"https://x"},{"name":"a","url":"https://y"}]', "unique"],
    ["an unknown key", '[{"name":"a","url":"https://x","sekret":"s"}]', "sekret"],
    ["survey_ids not strings", '[{"name":"a","url":"https://x","survey_ids":[1]}]', "0.survey_ids.0"],
  ])("refuses %s with a clear error", (_, raw, fragment) => {
    const config = parseDestinations(raw);
    expect(config.ok).toBe(false);
    if (!config.ok) expect(config.error).toContain(fragment);
  });

  it.each(["https://crm.example.com/hook", "http://127.0.0.1:9000/hook", "http://127.8.9.10/x", "http://localhost:9000/hook", "http://[::1]:9000/hook"])(
    "accepts %s",
    (url) => {
      expect(parseDestinations(JSON.stringify([{ name: "a", url }])).ok).toBe(true);
    },
  );

  it("the survey_ids filter", () => {
    const config = parseDestinations('[{"name":"a","url":"https://x","survey_ids":["s1"]},{"name":"b","url":"https://y"}]');
    if (!config.ok) throw new Error(config.error);
    const [a, b] = config.destinations;
    const of = (survey_id: string) => ({ survey_id, platform: null, project_name: null, alert_name: "a", trigger_event_name: null, user_system_id: null, answers: [] });
    expect(wantsStatically(a!, of("s1"))).toBe(true);
    expect(wantsStatically(a!, of("s2"))).toBe(false);
    expect(wantsStatically(b!, of("s2"))).toBe(true);
  });
});

describe("sign", () => {
  it("produces signatures the standardwebhooks library verifies", async () => {
    const secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const body = '{"alert_id":"a1","x":"ünïcödé"}';
    const timestamp = Math.floor(Date.now() / 1000);
    const signature = await sign(secret, "a1", timestamp, body);
    const headers = { "webhook-id": "a1", "webhook-timestamp": String(timestamp), "webhook-signature": signature };
    expect(new Webhook(secret).verify(body, headers)).toEqual({ alert_id: "a1", x: "ünïcödé" });
    expect(signature).toBe(new Webhook(secret).sign("a1", new Date(timestamp * 1000), body));
    expect(() => new Webhook(secret).verify(body, { ...headers, "webhook-id": "a2" })).toThrow();
  });
});

describe("slackMessage", () => {
  const alert: StoredAlert = {
    alert_id: "a1",
    alert_name: "submitted_survey",
    project_name: null,
    survey_id: "s1",
    survey_name: "NPS <Q3> & more",
    user_system_id: "u1",
    user_parameters: null,
    platform: "ios",
    trigger_event_name: null,
    trigger_event_parameters: null,
    submitted_at: "2022-09-30T03:26:24.894Z",
    received_at: "2022-09-30T03:26:25.000Z",
    payload: "{}",
    answers: [
      { position: 0, title: "How likely?", type: "nps", answer: "6", value: 6 },
      { position: 1, title: null, type: "text", answer: null, value: null },
    ],
  };

  it("summarises survey, user and NPS, escaping Slack markup", () => {
    const message = slackMessage(alert);
    expect(message.text).toBe("New response to NPS &lt;Q3&gt; &amp; more from u1 · NPS 6 (detractor)");
    const blocks = JSON.stringify(message.blocks);
    expect(blocks).toContain("*How likely?*\\n*6* (detractor)");
    expect(blocks).toContain("*Question 2*\\n_no answer_");
    expect(blocks).toContain("*Platform*\\nios");
  });

  it("cuts every field to Slack's limits, so a long user id is no permanent 400", () => {
    const long = { ...alert, user_system_id: "u".repeat(5_000), survey_name: "s".repeat(500), platform: "p".repeat(3_000) };
    const message = slackMessage(long);
    expect(message.text.length).toBeLessThanOrEqual(3_000);
    for (const block of message.blocks) {
      if (block.type === "header") expect(block.text.text.length).toBeLessThanOrEqual(150);
      if (block.type === "section") {
        for (const field of block.fields ?? []) expect(field.text.length).toBeLessThanOrEqual(2_000);
        if (block.text) expect(block.text.text.length).toBeLessThanOrEqual(3_000);
      }
      if (block.type === "context") for (const e of block.elements) expect(e.text.length).toBeLessThanOrEqual(2_000);
    }
  });

  it("stays within Slack's 50 blocks", () => {
    const many = { ...alert, answers: Array.from({ length: 80 }, (_, i) => ({ position: i, title: `q${i}`, type: "text", answer: "x", value: null })) };
    expect(slackMessage(many).blocks.length).toBeLessThanOrEqual(50);
  });

  it("categorises NPS scores", () => {
    expect([0, 6, 7, 8, 9, 10].map(npsCategory)).toEqual(["detractor", "detractor", "passive", "passive", "promoter", "promoter"]);
  });
});

describe("fairShare: what one invocation's budget sends", () => {
  const key = (alert: number, destination: string) => ({ key: { alert_id: `a${alert}`, destination } });
  const names = Array.from({ length: 12 }, (_, i) => `d${i}`);
  const jobs = [0, 1, 2].flatMap((alert) => names.map((d) => key(alert, d)));

  it("every destination's first job before any destination's second", () => {
    const sent = fairShare(jobs, names, 15, 0);
    expect(new Set(sent.map((j) => j.key.destination)).size).toBe(12);
    expect(sent).toHaveLength(15);
  });

  it("the starting destination rotates, so a budget smaller than the destinations still reaches each of them", () => {
    const first = new Set<string>();
    for (let i = 0; i < 12; i++) for (const job of fairShare(jobs, names, 5, i / 12)) first.add(job.key.destination);
    expect(first.size).toBe(12);
  });

  it("never more than the limit, and nothing when there is no room", () => {
    expect(fairShare(jobs, names, 0, 0.5)).toEqual([]);
    expect(fairShare(jobs, names, 100, 0.5)).toHaveLength(36);
  });
});
