/** Structured logs: one JSON object per line, with the fields operators search by, never the token. */
import { exports } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import { examplePayload, post } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

function captureLogs(): () => Record<string, unknown>[] {
  const lines: string[] = [];
  for (const method of ["log", "warn", "error"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      lines.push(args.map(String).join(" "));
    });
  }
  return () => lines.map((line) => JSON.parse(line) as Record<string, unknown>);
}

describe("request log lines", () => {
  it("a stored alert writes one http.request line with request_id, alert_id, outcome and duration", async () => {
    const logs = captureLogs();
    const payload = examplePayload();
    const res = await post(payload);
    const lines = logs();
    const request = lines.filter((l) => l.event === "http.request");
    expect(request).toHaveLength(1);
    expect(request[0]).toMatchObject({
      level: "info",
      request_id: res.headers.get("x-request-id"),
      alert_id: payload.alert_id,
      method: "POST",
      route: "/webhooks/1flow/:token?",
      status: 200,
      outcome: "stored",
    });
    expect(typeof request[0]?.duration_ms).toBe("number");
  });

  it("rejections and warnings carry an event and the request_id", async () => {
    const logs = captureLogs();
    const payload = examplePayload();
    payload.survey_info.screens.push({ title: "x", type: "brand-new-type", answer: "1" });
    await post(payload);
    await post("{broken");
    const lines = logs();
    for (const line of lines) {
      expect(typeof line.event).toBe("string");
      expect(typeof line.request_id).toBe("string");
    }
    expect(lines.find((l) => l.event === "payload.unknown_screen_type")).toMatchObject({
      alert_id: payload.alert_id,
      types: "brand-new-type",
    });
    expect(lines.find((l) => l.event === "payload.quarantined")).toMatchObject({ reason: "invalid_json" });
  });

  it("the token never appears in a log line, right or wrong", async () => {
    const logs = captureLogs();
    await post(examplePayload(), { token: "test-secret" });
    await post(examplePayload(), { token: "a-wrong-guess-4711" });
    await post("{", { token: "test-secret" });
    await exports.default.fetch("https://worker.test/webhooks/1flow/test-secret");
    const raw = JSON.stringify(logs());
    expect(logs().length).toBeGreaterThanOrEqual(4);
    expect(raw).not.toContain("test-secret");
    expect(raw).not.toContain("a-wrong-guess-4711");
  });
});
