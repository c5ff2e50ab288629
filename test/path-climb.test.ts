/**
 * Issue 25, path 11: a jsonata destination's `path` cannot climb out of its URL. A segment
 * that is `.` or `..` once decoded (`%2e%2e` too) fails the delivery permanently, unsent, and
 * the resolved URL stays under the destination URL's path, not only its origin.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { deliver } from "../src/fanout/deliver";
import type { Destination } from "../src/fanout/destinations";
import { ingest } from "../src/ingest/ingest";
import { exampleAlert } from "../src/manage-destinations";
import { callWorker, examplePayload, freshId } from "./fixtures";
import { deliveries, message, runQueue, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const jsonata = (path: string, url = "https://api.path.test/v1/hooks"): Destination => ({
  name: "climb",
  enabled: true,
  url,
  format: "jsonata",
  transform: `{ "id": alert_id }`,
  path,
});

describe("a transform's path", () => {
  it.each([
    ["..", `"/../../admin"`],
    ["a single dot", `"/./x"`],
    ["%2e%2e", `"/%2e%2e/admin"`],
    ["%2E%2E in capitals", `"/%2E%2E/admin"`],
    ["%2e.", `"/%2e./admin"`],
    ["a backslash", `"\\\\..\\\\admin"`],
    ["..%2f", `"/..%2f..%2fadmin"`],
    ["$encodeUrlComponent of ..", `"/" & $encodeUrlComponent("..") & "/admin"`],
    ["a newline inside the dots (the URL parser drops it, so only the resolved path shows the climb)", `"/.\\n./admin"`],
    ["a respondent's answer of ..", `"/" & $encodeUrlComponent(answers[1].answer)`],
    ["no slash, so that the url's last segment grows (/v1/hooks-admin)", `"-admin"`],
  ])("with %s fails permanently, nothing sent", async (_, path) => {
    const received = stubDestinations();
    const alert = exampleAlert(new Date());
    const climbing = { ...alert, answers: alert.answers.map((a, i) => (i === 1 ? { ...a, answer: ".." } : a)) };
    const attempt = await deliver(jsonata(path), climbing, new Date());
    expect(attempt).toMatchObject({ ok: false, permanent: true, status: null });
    expect(attempt.error).toMatch(/^path: /);
    expect(received).toEqual([]);
  });

  it.each([
    ["a sub-path", `"/items/" & alert_id`, "https://api.path.test/v1/hooks/items/6425124d1b026625c189cac0"],
    ["a query with dots", `"?next=../x"`, "https://api.path.test/v1/hooks?next=../x"],
    ["a name with dots in it", `"/a..b/...c"`, "https://api.path.test/v1/hooks/a..b/...c"],
  ])("with %s is sent under the url", async (_, path, url) => {
    const received: string[] = [];
    vi.spyOn(globalThis, "fetch").mockImplementation(async (input, init) => {
      received.push(new Request(input, init).url);
      return new Response("ok");
    });
    const attempt = await deliver(jsonata(path), exampleAlert(new Date()), new Date());
    expect(attempt.ok).toBe(true);
    expect(received).toEqual([url]);
  });

  it("through the consumer: the delivery is failed with the reason, and the receiver got nothing", async () => {
    const name = freshId("climb");
    const ENV: Env = { ...env, DESTINATIONS: "", RETRY_BASE_SECONDS: "30", PAUSE_AFTER_FAILURES: "100000", ADMIN_TOKEN: "admin-token-for-tests" };
    const put = await callWorker(
      `/api/destinations/${name}`,
      {
        method: "PUT",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ url: "https://climb.path.test/tenant/42/hook", format: "jsonata", transform: `{ "id": alert_id }`, path: `"/../../../admin/" & alert_id`, force: true }),
      },
      ENV,
    );
    expect(put.status).toBe(201);
    try {
      const received = stubDestinations();
      const payload = examplePayload();
      await ingest(new TextEncoder().encode(JSON.stringify(payload)).buffer as ArrayBuffer, {
        db: env.DB,
        queue: env.ALERTS_QUEUE,
        waitUntil: () => {},
        now: () => new Date(),
        deadline_at: Date.now() + 5_000,
        request_id: "climb",
        enqueue: false,
      });
      const m = message(payload.alert_id);
      const result = await runQueue("oneflow-alerts", [m], ENV);
      expect(result.explicitAcks).toEqual([m.id]);
      expect(received.filter((r) => r.host === "climb.path.test")).toEqual([]);
      const [row] = (await deliveries(payload.alert_id)).filter((d) => d.destination === name);
      expect(row?.status).toBe("failed");
      expect(row?.last_error).toMatch(/^path: /);
    } finally {
      await callWorker(`/api/destinations/${name}`, { method: "DELETE" }, ENV);
    }
  });
});
