/**
 * Issue 25, the secrets the audit found untested: no secret, header value, ENCRYPTION_KEY or
 * token reaches a log line or an answer; a stored secret that no key opens stops the fan-out
 * without dropping anything (the messages stay, /healthz says so); a key rotation end to end;
 * and the token comparisons are the runtime's constant-time one.
 */
import { env } from "cloudflare:workers";
import { Webhook } from "standardwebhooks";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { forgetDestinations } from "../src/fanout/configured";
import { ingest } from "../src/ingest/ingest";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId, post } from "./fixtures";
import { deliveries, message, runQueue, SECRET, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
  forgetDestinations();
});

const QUEUE = "oneflow-alerts";
/** The tests' ENCRYPTION_KEY (vitest.config.ts), and another one. */
const KEY_A = env.ENCRYPTION_KEY ?? "";
const KEY_B = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=";
const HEADER_VALUE = "Bearer header-value-that-must-stay-sealed-4711";
const ENV: Env = { ...env, ADMIN_TOKEN, DESTINATIONS: "", RETRY_BASE_SECONDS: "30", PAUSE_AFTER_FAILURES: "100000" };
const ROTATING: Env = { ...ENV, ENCRYPTION_KEY: KEY_B, ENCRYPTION_KEY_PREVIOUS: KEY_A };

const api = (path: string, method: string, body?: unknown, environment: Env = ENV) =>
  callWorker(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }) }, environment);

function captureLogs(): () => string {
  const lines: string[] = [];
  for (const method of ["log", "info", "warn", "error", "debug"] as const) {
    vi.spyOn(console, method).mockImplementation((...args: unknown[]) => {
      lines.push(args.map(String).join(" "));
    });
  }
  return () => lines.join("\n");
}

/** A stored destination with a signing secret and an authorization header, under `environment`'s key. */
async function sealedDestination(host: string, environment: Env = ENV): Promise<string> {
  const name = freshId("audit");
  const res = await api(`/api/destinations/${name}`, "PUT", { url: `https://${host}/hook`, format: "json", secret: SECRET, headers: { authorization: HEADER_VALUE } }, environment);
  expect(res.status).toBe(201);
  return name;
}

/** Stores an alert without a Queue message (the test runs the consumer itself). */
async function quietAlert(): Promise<string> {
  const payload = examplePayload();
  await ingest(new TextEncoder().encode(JSON.stringify(payload)).buffer as ArrayBuffer, {
    db: env.DB,
    queue: env.ALERTS_QUEUE,
    waitUntil: () => {},
    now: () => new Date(),
    deadline_at: Date.now() + 5_000,
    request_id: "audit",
    enqueue: false,
  });
  return payload.alert_id;
}

async function storedRow(name: string) {
  const row = await env.DB.prepare("SELECT secret, headers FROM destinations WHERE name = ?1").bind(name).first<{ secret: string | null; headers: string | null }>();
  if (row === null) throw new Error(`no destination ${name}`);
  return row;
}

describe("the log-leak list: secrets", () => {
  it("no header value, signing secret, ENCRYPTION_KEY or token in any log line or answer, through every destination operation", async () => {
    const logs = captureLogs();
    const answers: string[] = [];
    const keep = async (res: Response) => {
      answers.push(await res.text());
      return res;
    };
    const name = await sealedDestination("leak-ok.audit.test");
    const failing = await sealedDestination("leak-fails.audit.test");
    stubDestinations({ "leak-fails.audit.test": () => new Response("no", { status: 500 }) });
    const alert_id = await quietAlert();
    await runQueue(QUEUE, [message(alert_id)], ENV);
    await keep(await api(`/api/destinations/${name}/test`, "POST"));
    await keep(await api(`/api/destinations/${failing}/test`, "POST"));
    await keep(await api(`/api/destinations/${name}/preview`, "POST", { alert_id }));
    await keep(await api("/api/destinations", "GET"));
    await keep(await api(`/api/destinations/${name}`, "PATCH", { url: "https://elsewhere.audit.test/hook" }));
    await keep(await api(`/api/destinations/${name}`, "PATCH", { secret: "not-a-whsec-value" }));
    await keep(await api(`/api/alerts/${alert_id}/deliveries`, "GET"));
    // With a key that opens nothing: the errors are logged, without the key or any value.
    forgetDestinations();
    await keep(await callWorker("/healthz", { token: null }, { ...ENV, ENCRYPTION_KEY: KEY_B }));
    await runQueue(QUEUE, [message(alert_id)], { ...ENV, ENCRYPTION_KEY: KEY_B });
    forgetDestinations();
    await post("{", { token: "test-secret" });

    const text = `${logs()}\n${answers.join("\n")}`;
    expect(logs().length).toBeGreaterThan(0);
    for (const leak of [HEADER_VALUE, "header-value-that-must-stay-sealed", SECRET, SECRET.slice("whsec_".length), KEY_A, KEY_B, ADMIN_TOKEN, "test-secret"]) {
      expect(text).not.toContain(leak);
    }
    await api(`/api/destinations/${name}`, "DELETE");
    await api(`/api/destinations/${failing}`, "DELETE");
  });
});

describe("a stored secret that no key opens", () => {
  it("stops the fan-out: the messages stay on the Queue, no delivery is written or dropped, /healthz answers 503; the right key delivers it", async () => {
    const name = await sealedDestination("no-key.audit.test");
    const received = stubDestinations();
    const alert_id = await quietAlert();
    const wrong: Env = { ...ENV, ENCRYPTION_KEY: KEY_B };
    forgetDestinations();
    const m = message(alert_id);
    const result = await runQueue(QUEUE, [m], wrong);
    expect(result.explicitAcks).toEqual([]);
    expect(result.retryMessages.map((r) => r.msgId)).toEqual([m.id]);
    expect(await deliveries(alert_id)).toEqual([]);
    expect(received).toEqual([]);
    const health = await callWorker("/healthz", { token: null }, wrong);
    expect(health.status).toBe(503);
    expect(await health.json()).toMatchObject({ ok: false, error: "bad_destinations" });

    forgetDestinations();
    expect((await callWorker("/healthz", { token: null }, ENV)).status).toBe(200);
    const again = await runQueue(QUEUE, [message(alert_id, 2)], ENV);
    expect(again.explicitAcks).toHaveLength(1);
    expect((await deliveries(alert_id)).find((d) => d.destination === name)?.status).toBe("delivered");
    expect(received.filter((r) => r.host === "no-key.audit.test")).toHaveLength(1);
    await api(`/api/destinations/${name}`, "DELETE");
  });
});

describe("a key rotation, end to end", () => {
  it("ENCRYPTION_KEY_PREVIOUS: a value sealed under the old key still delivers, signed and with its header; a new write is sealed under the new key", async () => {
    const name = await sealedDestination("rotation.audit.test");
    const before = await storedRow(name);
    const received = stubDestinations();
    const alert_id = await quietAlert();
    forgetDestinations();
    const result = await runQueue(QUEUE, [message(alert_id)], ROTATING);
    expect(result.explicitAcks).toHaveLength(1);
    const [got] = received.filter((r) => r.host === "rotation.audit.test");
    expect(got?.headers.authorization).toBe(HEADER_VALUE);
    expect(() => new Webhook(SECRET).verify(got?.body ?? "", got?.headers ?? {})).not.toThrow();

    // The test send too.
    const sent = await api(`/api/destinations/${name}/test`, "POST", undefined, ROTATING);
    expect(await sent.json()).toMatchObject({ ok: true, status: 200 });

    // A new write (a PATCH, a PUT of another destination) is sealed under the new key only: once
    // every value is written again, the new key alone delivers them, and the old key alone opens nothing.
    const OTHER = "whsec_cm90YXRlZC1zZWNyZXQtdW5kZXItdGhlLW5ldy1rZXk=";
    expect((await api(`/api/destinations/${name}`, "PATCH", { secret: OTHER, headers: { authorization: HEADER_VALUE } }, ROTATING)).status).toBe(200);
    expect((await storedRow(name)).secret).not.toBe(before.secret);
    const other = await sealedDestination("rotation-new.audit.test", ROTATING);
    forgetDestinations();
    const newKeyOnly: Env = { ...ENV, ENCRYPTION_KEY: KEY_B };
    expect((await callWorker("/healthz", { token: null }, newKeyOnly)).status).toBe(200);
    const after = await quietAlert();
    const done = await runQueue(QUEUE, [message(after)], newKeyOnly);
    expect(done.explicitAcks).toHaveLength(1);
    const signed = received.filter((r) => r.host === "rotation.audit.test").at(-1);
    expect(signed?.headers.authorization).toBe(HEADER_VALUE);
    expect(() => new Webhook(OTHER).verify(signed?.body ?? "", signed?.headers ?? {})).not.toThrow();
    expect(received.filter((r) => r.host === "rotation-new.audit.test").map((r) => r.headers.authorization)).toEqual([HEADER_VALUE]);
    forgetDestinations();
    const oldKeyOnly = await callWorker("/healthz", { token: null }, { ...ENV, ENCRYPTION_KEY: KEY_A });
    expect(oldKeyOnly.status).toBe(503);
    forgetDestinations();
    await api(`/api/destinations/${name}`, "DELETE");
    await api(`/api/destinations/${other}`, "DELETE");
  });
});

describe("the token comparisons", () => {
  const decode = (b: unknown) => new TextDecoder().decode(b as ArrayBufferView);

  it("the webhook's path token and the admin bearer token are compared with crypto.subtle.timingSafeEqual, byte for byte", async () => {
    const spy = vi.spyOn(crypto.subtle, "timingSafeEqual");
    expect((await post(examplePayload(), { token: "test-secret" })).status).toBe(200);
    expect((await post(examplePayload(), { token: "test-secreX" })).status).toBe(401);
    expect((await callWorker("/api/destinations", {}, ENV)).status).toBe(200);
    const pairs = spy.mock.calls.map(([a, b]) => [decode(a), decode(b)]);
    expect(pairs).toContainEqual(["test-secret", "test-secret"]);
    expect(pairs).toContainEqual(["test-secreX", "test-secret"]);
    expect(pairs).toContainEqual([ADMIN_TOKEN, ADMIN_TOKEN]);
  });
});
