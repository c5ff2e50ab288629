/**
 * Destinations as data: managed with PUT/PATCH/DELETE /api/destinations/{name}, their
 * secrets and header values sealed in D1, the jsonata format, filter expressions, preview
 * and test send, and no cap: more destinations than one invocation's subrequests reach.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { ingest } from "../src/ingest/ingest";
import { callWorker, examplePayload, freshId } from "./fixtures";
import { deliveries, message, runQueue, SECRET, statusByDestination, stubDestinations, watchSendBatch } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const QUEUE = "oneflow-alerts";
/** One destination in DESTINATIONS, read-only from the API. */
const CONFIG = JSON.stringify([{ name: "from-config", url: "https://from-config.test/hook" }]);
const ENV: Env = { ...env, DESTINATIONS: CONFIG, RETRY_BASE_SECONDS: "30", PAUSE_AFTER_FAILURES: "100000" };

const api = (path: string, method: string, body?: unknown) =>
  callWorker(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }) }, { ...ENV, ADMIN_TOKEN: "admin-token-for-tests" });

/** Stores an alert without sending it to the Queue (no consumer in the background sees it). */
async function quietAlert(overrides: Record<string, unknown> = {}) {
  const payload = examplePayload(overrides);
  const body = JSON.stringify(payload);
  await ingest(new TextEncoder().encode(body).buffer as ArrayBuffer, {
    db: env.DB,
    queue: env.ALERTS_QUEUE,
    waitUntil: () => {},
    now: () => new Date(),
    deadline_at: Date.now() + 5_000,
    request_id: "quiet",
    enqueue: false,
  });
  return { payload, body, alert_id: payload.alert_id };
}

async function put(name: string, entry: Record<string, unknown>) {
  const res = await api(`/api/destinations/${name}`, "PUT", entry);
  if (res.status !== 201 && res.status !== 200) throw new Error(`PUT ${name}: ${res.status} ${await res.text()}`);
  return res;
}

async function remove(name: string) {
  await api(`/api/destinations/${name}`, "DELETE");
}

describe("PUT /api/destinations/{name}", () => {
  it("creates (201) then replaces (200); answers and lists it masked; D1 holds no secret or header value in the clear", async () => {
    const name = freshId("crm");
    const entry = { url: "https://crm-api.test/hook", secret: SECRET, headers: { authorization: "Bearer very-secret-token" }, survey_ids: ["s1"] };
    const created = await api(`/api/destinations/${name}`, "PUT", entry);
    expect(created.status).toBe(201);
    const answer = (await created.json()) as { ok: boolean; destination: Record<string, unknown> };
    expect(answer).toMatchObject({ ok: true, destination: { name, source: "api", enabled: true, format: "raw", has_secret: true, headers: { authorization: "••••" } } });
    expect(JSON.stringify(answer)).not.toContain("very-secret-token");
    expect(JSON.stringify(answer)).not.toContain(SECRET);

    const replaced = await api(`/api/destinations/${name}`, "PUT", { ...entry, survey_ids: ["s2"] });
    expect(replaced.status).toBe(200);

    const list = (await (await api("/api/destinations", "GET")).json()) as { destinations: Record<string, unknown>[] };
    const listed = list.destinations.find((d) => d.name === name);
    expect(listed).toMatchObject({ source: "api", survey_ids: ["s2"], has_secret: true, headers: { authorization: "••••" }, state: "active", pending: 0 });
    expect(list.destinations.find((d) => d.name === "from-config")).toMatchObject({ source: "config" });
    expect(JSON.stringify(list)).not.toContain("very-secret-token");

    const row = await env.DB.prepare("SELECT * FROM destinations WHERE name = ?").bind(name).first<Record<string, string>>();
    expect(row).not.toBeNull();
    expect(JSON.stringify(row)).not.toContain("very-secret-token");
    expect(JSON.stringify(row)).not.toContain(SECRET.slice(6));
    expect(row?.secret).toMatch(/^v1\./);
    await remove(name);
  });

  it("a DESTINATIONS name is read-only: 409 managed_by_config for PUT, PATCH and DELETE", async () => {
    for (const [method, body] of [["PUT", { url: "https://x.test/h" }], ["PATCH", { enabled: false }], ["DELETE", undefined]] as const) {
      const res = await api("/api/destinations/from-config", method, body);
      expect(res.status).toBe(409);
      expect(await res.json()).toMatchObject({ ok: false, error: "managed_by_config" });
    }
  });

  it.each([
    ["a JSONata syntax error names its position", { url: "https://x.test/h", format: "jsonata", transform: "{ 'a': }" }, "transform", /position \d+/],
    ["jsonata without a transform", { url: "https://x.test/h", format: "jsonata" }, "", /transform: is required/],
    ["a transform on another format", { url: "https://x.test/h", transform: "$" }, "", /transform: is only for format jsonata/],
    ["a bad filter expression", { url: "https://x.test/h", filter: { expression: "answers[" } }, "filter.expression", /position/],
    ["plain http to another host", { url: "http://example.com/h" }, "url", /https/],
    ["a reserved header", { url: "https://x.test/h", headers: { "webhook-id": "x" } }, "headers", /webhook-/],
  ])("400 invalid_request: %s", async (_, entry, path, message) => {
    const res = await api(`/api/destinations/${freshId("bad")}`, "PUT", entry);
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { error: string; issues: { path: string; message: string }[] };
    expect(answer.error).toBe("invalid_request");
    expect(answer.issues[0]?.path).toBe(path);
    expect(answer.issues[0]?.message).toMatch(message);
  });

  it("400 for a name that breaks the rules; 404 for PATCH or DELETE of an unknown one", async () => {
    expect((await api("/api/destinations/bad%20name", "PUT", { url: "https://x.test/h" })).status).toBe(400);
    expect((await api(`/api/destinations/${freshId("none")}`, "PATCH", { enabled: false })).status).toBe(404);
    expect((await api(`/api/destinations/${freshId("none")}`, "DELETE")).status).toBe(404);
  });

  it("a secret needs ENCRYPTION_KEY: without it, 503 not_configured and nothing stored", async () => {
    const name = freshId("nokey");
    const res = await callWorker(
      `/api/destinations/${name}`,
      { method: "PUT", body: JSON.stringify({ url: "https://x.test/h", secret: SECRET }), headers: { "content-type": "application/json" } },
      { ...ENV, ADMIN_TOKEN: "admin-token-for-tests", ENCRYPTION_KEY: "" },
    );
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ ok: false, error: "not_configured" });
    expect(await env.DB.prepare("SELECT 1 FROM destinations WHERE name = ?").bind(name).first()).toBeNull();
  });
});

describe("the consumer with destinations from D1", () => {
  it("delivers to an API destination, signed with its secret and with its header", async () => {
    const name = freshId("signed");
    await put(name, { url: "https://signed-api.test/hook", secret: SECRET, headers: { "x-api-key": "k-123" } });
    const received = stubDestinations();
    const { alert_id, body } = await quietAlert();
    const m = message(alert_id);
    expect((await runQueue(QUEUE, [m], ENV)).explicitAcks).toEqual([m.id]);
    const call = received.find((r) => r.host === "signed-api.test");
    expect(call?.body).toBe(body);
    expect(call?.headers["x-api-key"]).toBe("k-123");
    expect(() => new Webhook(SECRET).verify(call?.body ?? "", call?.headers ?? {})).not.toThrow();
    // Its preview shows the request with the header's value masked.
    const preview = (await (await api(`/api/destinations/${name}/preview`, "POST", { alert_id })).json()) as { request: { headers: Record<string, string>; body: string } };
    expect(preview.request.headers["x-api-key"]).toBe("••••");
    expect(preview.request.body).toBe(body);
    expect(JSON.stringify(preview)).not.toContain("k-123");
    await remove(name);
  });

  it("PATCH changes the transform and removes a filter (null); the secret stays; the next delivery uses them", async () => {
    const name = freshId("patched");
    await put(name, { url: "https://patched.test/h", format: "jsonata", transform: `{ "v": 1 }`, secret: SECRET, filter: { platforms: ["nowhere"] } });
    const res = await api(`/api/destinations/${name}`, "PATCH", { transform: `{ "v": 2, "survey": survey.id }`, filter: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ ok: true, destination: { transform: `{ "v": 2, "survey": survey.id }`, filter: null, has_secret: true } });
    const received = stubDestinations();
    const { alert_id, payload } = await quietAlert();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    const call = received.find((r) => r.host === "patched.test");
    expect(JSON.parse(call?.body ?? "{}")).toEqual({ v: 2, survey: payload.survey_id });
    expect(() => new Webhook(SECRET).verify(call?.body ?? "", call?.headers ?? {})).not.toThrow();
    expect((await api(`/api/destinations/${name}`, "PATCH", { format: "raw" })).status).toBe(400);
    await remove(name);
  });

  it("PATCH enabled:false holds new responses pending, nothing sent; enabled:true sends them", async () => {
    const name = freshId("toggle");
    await put(name, { url: "https://toggle.test/hook" });
    expect(await (await api(`/api/destinations/${name}`, "PATCH", { enabled: false })).json()).toMatchObject({ ok: true, destination: { enabled: false } });
    const received = stubDestinations();
    const { alert_id } = await quietAlert();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(received.filter((r) => r.host === "toggle.test")).toEqual([]);
    expect(statusByDestination(await deliveries(alert_id))).toMatchObject({ [name]: "pending" });

    const sent = watchSendBatch();
    expect((await api(`/api/destinations/${name}`, "PATCH", { enabled: true })).status).toBe(200);
    // What waited is sent again at once.
    expect(sent.ids()).toContain(alert_id);
    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(received.filter((r) => r.host === "toggle.test")).toHaveLength(1);
    expect(statusByDestination(await deliveries(alert_id))).toMatchObject({ [name]: "delivered" });
    await remove(name);
  });

  it("a PUT that enables a disabled destination sends what waited, as a PATCH does (a simulation seed found it)", async () => {
    const name = freshId("reput");
    await put(name, { url: "https://reput.test/hook", enabled: false });
    const received = stubDestinations();
    const { alert_id } = await quietAlert();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(statusByDestination(await deliveries(alert_id))).toMatchObject({ [name]: "pending" });
    const sent = watchSendBatch();
    await put(name, { url: "https://reput.test/hook" });
    expect(sent.ids()).toContain(alert_id);
    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(received.filter((r) => r.host === "reput.test")).toHaveLength(1);
    expect(statusByDestination(await deliveries(alert_id))).toMatchObject({ [name]: "delivered" });
    await remove(name);
  });

  it("DELETE cancels its pending deliveries and reports how many; nothing more is sent to it", async () => {
    const name = freshId("down");
    await put(name, { url: "https://down.test/hook" });
    const received = stubDestinations({ "down.test": () => new Response("down", { status: 503 }) });
    const alerts = [await quietAlert(), await quietAlert()];
    await runQueue(QUEUE, alerts.map((a) => message(a.alert_id)), ENV);
    expect(received.filter((r) => r.host === "down.test")).toHaveLength(2);
    const res = await api(`/api/destinations/${name}`, "DELETE");
    expect(await res.json()).toEqual({ ok: true, cancelled: 2, more: false });
    for (const a of alerts) {
      expect((await deliveries(a.alert_id)).filter((d) => d.destination === name)).toMatchObject([{ status: "cancelled", last_error: "destination removed" }]);
    }
    const retried = await runQueue(QUEUE, alerts.map((a) => message(a.alert_id, 2)), ENV);
    expect(retried.explicitAcks).toHaveLength(2);
    expect(received.filter((r) => r.host === "down.test")).toHaveLength(2);
  });
});

describe("format jsonata", () => {
  const TRANSFORM = `{ "content": "NPS " & $string(answers[type = "nps"].value) & " from " & user.id, "survey": survey.id }`;

  it("sends the transform's result with its method and path, signed; exactly what the preview showed", async () => {
    const name = freshId("discordish");
    await put(name, {
      url: "https://jsonata-target.test/api",
      format: "jsonata",
      transform: TRANSFORM,
      method: "PUT",
      path: `"/surveys/" & survey.id & "?user=" & $encodeUrlComponent(user.id)`,
      secret: SECRET,
    });
    const { alert_id, payload } = await quietAlert({ user: { user_system_id: "user 1" } });
    const preview = await api(`/api/destinations/${name}/preview`, "POST", { alert_id });
    expect(preview.status).toBe(200);
    const shown = ((await preview.json()) as { request: { method: string; url: string; headers: Record<string, string>; body: string } }).request;
    expect(shown.method).toBe("PUT");
    expect(shown.url).toBe(`https://jsonata-target.test/api/surveys/${payload.survey_id}?user=user%201`);
    expect(JSON.parse(shown.body)).toEqual({ content: "NPS 10 from user 1", survey: payload.survey_id });
    expect(await deliveries(alert_id)).toEqual([]); // a preview writes nothing

    const received = stubDestinations();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    const call = received.find((r) => r.host === "jsonata-target.test");
    expect(call?.body).toBe(shown.body);
    expect(() => new Webhook(SECRET).verify(call?.body ?? "", call?.headers ?? {})).not.toThrow();
    expect(statusByDestination(await deliveries(alert_id))).toMatchObject({ [name]: "delivered" });
    await remove(name);
  });

  it.each([
    ["a path that leaves the url's origin", "leave", { path: `".evil.test/steal"` }, /path: leaves/],
    ["a runaway transform (stopped at its bound)", "loop", { transform: `( $f := function($n) { $n + $f($n + 1) }; $f(0) )` }, /transform: /],
    ["a tail-recursive loop (stopped by its steps)", "tail", { transform: `( $f := function($n) { $f($n + 1) }; $f(0) )` }, /transform: /],
    ["a huge range", "range", { transform: `[1..100000000]` }, /transform: /],
  ])("%s: failed permanently with the reason, nothing sent", async (_, host, fields, reason) => {
    const name = freshId("runaway");
    // Refused at save without "force" (it fails on every response); saved with it, to see the delivery fail.
    const refused = await api(`/api/destinations/${name}`, "PUT", { url: `https://${host}.runaway.test`, format: "jsonata", transform: TRANSFORM, ...fields });
    expect(refused.status).toBe(400);
    expect(JSON.stringify(await refused.json())).toMatch(/force/);
    await put(name, { url: `https://${host}.runaway.test`, format: "jsonata", transform: TRANSFORM, ...fields, force: true });
    try {
      const received = stubDestinations();
      const { alert_id } = await quietAlert();
      const m = message(alert_id);
      const result = await runQueue(QUEUE, [m], ENV);
      expect(result.explicitAcks).toEqual([m.id]);
      expect(received.filter((r) => r.host.includes(host))).toEqual([]);
      const [row] = (await deliveries(alert_id)).filter((d) => d.destination === name);
      expect(row?.status).toBe("failed");
      expect(row?.last_error).toMatch(reason);
    } finally {
      await remove(name);
    }
  });

  it("filter.expression: true sends, false does not, and one that fails is a failed delivery with the reason", async () => {
    const yes = freshId("yes");
    const no = freshId("no");
    const broken = freshId("broken");
    await put(yes, { url: "https://expr-yes.test/h", filter: { expression: `answers[type = "nps"].value >= 9` } });
    await put(no, { url: "https://expr-no.test/h", filter: { expression: `answers[type = "nps"].value <= 6`, project_names: ["Sample"] } });
    await put(broken, { url: "https://expr-broken.test/h", filter: { expression: `$count([1..100000000]) > 0` }, force: true });
    const received = stubDestinations();
    const { alert_id } = await quietAlert();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    expect(received.map((r) => r.host).filter((h) => h.startsWith("expr-"))).toEqual(["expr-yes.test"]);
    const rows = await deliveries(alert_id);
    expect(rows.find((r) => r.destination === no)).toBeUndefined();
    expect(rows.find((r) => r.destination === broken)).toMatchObject({ status: "failed", last_error: expect.stringMatching(/^filter.expression: /) });
    for (const n of [yes, no, broken]) await remove(n);
  });
});

describe("POST /api/destinations/{name}/test", () => {
  it("sends 1Flow's example payload now: status, time, the answer's first 2 KB; no ledger row, the breaker untouched", async () => {
    const name = freshId("tested");
    await put(name, { url: "https://tested.test/hook" });
    const received = stubDestinations({ "tested.test": () => new Response("x".repeat(5_000), { status: 202 }) });
    const res = await api(`/api/destinations/${name}/test`, "POST");
    expect(res.status).toBe(200);
    const answer = (await res.json()) as { ok: boolean; status: number; duration_ms: number; response: string };
    expect(answer).toMatchObject({ ok: true, status: 202 });
    expect(answer.duration_ms).toBeGreaterThanOrEqual(0);
    expect(answer.response).toHaveLength(2_048);
    expect(received.filter((r) => r.host === "tested.test")).toHaveLength(1);
    expect(JSON.parse(received[0]?.body ?? "{}")).toMatchObject({ alert_id: "6425124d1b026625c189cac0" });
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM deliveries WHERE destination = ?").bind(name).first()).toEqual({ n: 0 });
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM destination_health WHERE destination = ?").bind(name).first()).toEqual({ n: 0 });
    await remove(name);
  });

  it("404 for an unknown destination or alert", async () => {
    expect((await api(`/api/destinations/${freshId("none")}/test`, "POST")).status).toBe(404);
    expect((await api("/api/destinations/from-config/preview", "POST", { alert_id: "no-such-alert" })).status).toBe(404);
  });
});

describe("no cap on the count", () => {
  it("12 destinations with SUBREQUEST_BUDGET=20: each receives the response once, the rest carried over with no attempt spent", async () => {
    const names = Array.from({ length: 12 }, (_, i) => freshId(`many${i}`));
    for (const [i, name] of names.entries()) await put(name, { url: `https://many${i}.test/hook` });
    const received = stubDestinations();
    const sent: string[] = [];
    // Held here (not sent to the real Queue): the test hands them to the consumer itself.
    vi.spyOn(env.ALERTS_QUEUE, "sendBatch").mockImplementation(async (messages) => {
      for (const m of messages) sent.push((m.body as { alert_id: string }).alert_id);
      return { metadata: { metrics: { backlogCount: 0, backlogBytes: 0 } } } as QueueSendBatchResponse;
    });
    const alerts = [await quietAlert(), await quietAlert()];
    const small: Env = { ...ENV, DESTINATIONS: "", SUBREQUEST_BUDGET: "20" };
    let round = 1;
    let pendingIds = alerts.map((a) => a.alert_id);
    while (pendingIds.length > 0 && round <= 5) {
      sent.length = 0;
      const result = await runQueue(QUEUE, pendingIds.map((id) => message(id)), small);
      expect(result.retryMessages).toEqual([]);
      // Those with jobs left went back as new messages (attempts start again at 1).
      pendingIds = [...new Set(sent)];
      round += 1;
    }
    expect(pendingIds).toEqual([]);
    expect(round).toBeGreaterThan(2);
    for (const [i] of names.entries()) {
      const got = received.filter((r) => r.host === `many${i}.test`).map((r) => (JSON.parse(r.body) as { alert_id: string }).alert_id);
      expect(got.sort()).toEqual(alerts.map((a) => a.alert_id).sort());
    }
    for (const a of alerts) {
      const rows = (await deliveries(a.alert_id)).filter((d) => names.includes(d.destination));
      expect(rows).toHaveLength(12);
      for (const row of rows) expect(row).toMatchObject({ status: "delivered", attempts: 1 });
    }
    for (const name of names) await remove(name);
  });
});

describe("what reading the destinations costs", () => {
  it("a consumer batch reads at most one row for them on average: none within 30 s, then the one-row version, the list only after a change", async () => {
    const { destinationsInForce, forgetDestinations } = await import("../src/fanout/configured");
    const { secretKeys } = await import("../src/secrets");
    const { meterD1, zeroCost } = await import("./meter");
    const names = Array.from({ length: 5 }, (_, i) => freshId(`cost${i}`));
    for (const name of names) await put(name, { url: "https://cost.test/h" });
    forgetDestinations();
    const keys = await secretKeys(env);
    const read = async (now: number) => {
      const cost = zeroCost();
      const { config } = await destinationsInForce({ raw: "", db: meterD1(env.DB, cost), keys, now });
      expect(config.ok).toBe(true);
      return cost;
    };
    const t = Date.now();
    const first = await read(t);
    expect(first.calls).toBe(1);
    // Within 30 s: nothing read at all.
    for (const dt of [1_000, 10_000, 29_000]) expect(await read(t + dt)).toMatchObject({ calls: 0, rows_read: 0 });
    // After 30 s: the version, one row.
    expect(await read(t + 31_000)).toMatchObject({ calls: 1, rows_read: 1 });
    // A change made elsewhere (another isolate): the version differs, and the list is read again.
    await env.DB.prepare("UPDATE destinations SET updated_at = ? WHERE name = ?").bind(new Date().toISOString(), names[0]).run();
    expect(await read(t + 40_000)).toMatchObject({ calls: 0 });
    const changed = await read(t + 62_000);
    expect(changed.calls).toBe(2);
    expect(changed.rows_read).toBeGreaterThanOrEqual(names.length);
    for (const name of names) await remove(name);
  });
});
