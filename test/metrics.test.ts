/** The optional Workers Analytics Engine binding METRICS: one data point per webhook outcome and per delivery attempt; none without it. */
import { createExecutionContext, waitOnExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterEach, expect, it, vi } from "vitest";
import worker from "../src/index";
import { FANOUT_ENV, message, runQueue, storedAlert, stubDestinations } from "./fanout-fixtures";
import { examplePayload, webhookRequest } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

/** A stand-in for the dataset binding (Analytics Engine has no local store): it records what is written. */
function dataset() {
  const points: AnalyticsEngineDataPoint[] = [];
  return { points, binding: { writeDataPoint: (point?: AnalyticsEngineDataPoint) => void points.push(point ?? {}) } as AnalyticsEngineDataset };
}

it("one data point per webhook outcome: route, outcome, status and duration", async () => {
  const { points, binding } = dataset();
  for (const body of [JSON.stringify(examplePayload()), "{oops"]) {
    const ctx = createExecutionContext();
    await worker.fetch(webhookRequest(body), { ...env, METRICS: binding }, ctx);
    await waitOnExecutionContext(ctx);
  }
  expect(points.map((p) => [p.indexes, p.blobs, p.doubles?.[0]])).toEqual([
    [["webhook"], ["webhook", "stored"], 200],
    [["webhook"], ["webhook", "invalid_json"], 400],
  ]);
  expect(points.every((p) => typeof p.doubles?.[1] === "number")).toBe(true);
});

it("one data point per delivery attempt: destination, outcome, HTTP status, latency", async () => {
  stubDestinations({ "warehouse.test": () => new Response("no", { status: 503 }) });
  const { points, binding } = dataset();
  const { alert_id } = await storedAlert();
  await runQueue("oneflow-alerts", [message(alert_id)], { ...FANOUT_ENV, METRICS: binding });
  const byDestination = Object.fromEntries(points.map((p) => [p.blobs?.[0], p]));
  expect(byDestination.crm).toMatchObject({ indexes: ["crm"], blobs: ["crm", "delivered", "200"] });
  expect(byDestination.warehouse).toMatchObject({ indexes: ["warehouse"], blobs: ["warehouse", "retry", "503"] });
  expect(byDestination.crm?.doubles?.[0]).toBe(200);
  expect(typeof byDestination.crm?.doubles?.[1]).toBe("number");
});

it("without the binding, deliveries go on as usual", async () => {
  stubDestinations();
  const { alert_id } = await storedAlert();
  const result = await runQueue("oneflow-alerts", [message(alert_id)], { ...FANOUT_ENV, METRICS: undefined });
  expect(result.explicitAcks).toHaveLength(1);
});
