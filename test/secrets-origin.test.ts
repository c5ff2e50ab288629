/**
 * Issue 25, path 10: sealed values never reach an origin they were not given for. A PATCH
 * of `url` to another origin, or an edit on the dashboard that changes it, must supply the
 * secret and header values again in the same request (null removes them); otherwise 400
 * invalid_request naming them, and nothing changes. The same origin keeps them.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { ADMIN_TOKEN, callWorker, freshId } from "./fixtures";
import { SECRET, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const ENV: Env = { ...env, DESTINATIONS: "", ADMIN_TOKEN };
const OTHER_SECRET = "whsec_b3RoZXItc2VjcmV0LWZvci10aGUtbmV3LW9yaWdpbg==";

const api = (path: string, method: string, body?: unknown) =>
  callWorker(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }) }, ENV);

/** A stored destination at https://old-origin.test with a secret and an authorization header. */
async function sealedDestination(): Promise<string> {
  const name = freshId("sealed");
  const res = await api(`/api/destinations/${name}`, "PUT", {
    url: "https://old-origin.test/hook",
    format: "json",
    secret: SECRET,
    headers: { authorization: "Bearer old-origin-token" },
  });
  expect(res.status).toBe(201);
  return name;
}

async function row(name: string) {
  return env.DB.prepare("SELECT config, secret, headers FROM destinations WHERE name = ?1").bind(name).first<{ config: string; secret: string | null; headers: string | null }>();
}

/** What a test send carries to the destination, as its receiver saw it. */
async function testSend(name: string) {
  const received = stubDestinations();
  const res = await api(`/api/destinations/${name}/test`, "POST");
  expect(res.status).toBe(200);
  expect(received).toHaveLength(1);
  return received[0] ?? { host: "", headers: {} as Record<string, string> };
}

describe("PATCH of url", () => {
  it("to another origin without the secret and headers: 400 invalid_request naming both, nothing changed, nothing sent there", async () => {
    const name = await sealedDestination();
    const before = await row(name);
    const res = await api(`/api/destinations/${name}`, "PATCH", { url: "https://new-origin.test/hook" });
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { error: string; issues: { path: string; message: string }[] };
    expect(answer.error).toBe("invalid_request");
    expect(answer.issues.map((i) => i.path).sort()).toEqual(["headers", "secret"]);
    expect(answer.issues[0]?.message).toMatch(/origin/);
    expect(await row(name)).toEqual(before);
    const seen = await testSend(name);
    expect(seen.host).toBe("old-origin.test");
  });

  it("to another origin with only the secret supplied: still 400 for the headers", async () => {
    const name = await sealedDestination();
    const res = await api(`/api/destinations/${name}`, "PATCH", { url: "https://new-origin.test/hook", secret: OTHER_SECRET });
    expect(res.status).toBe(400);
    const answer = (await res.json()) as { issues: { path: string }[] };
    expect(answer.issues.map((i) => i.path)).toEqual(["headers"]);
  });

  it("to another origin with both supplied again: the new origin gets the new values, never the old", async () => {
    const name = await sealedDestination();
    const res = await api(`/api/destinations/${name}`, "PATCH", {
      url: "https://new-origin.test/hook",
      secret: OTHER_SECRET,
      headers: { authorization: "Bearer new-origin-token" },
    });
    expect(res.status).toBe(200);
    const seen = await testSend(name);
    expect(seen.host).toBe("new-origin.test");
    expect(seen.headers.authorization).toBe("Bearer new-origin-token");
    expect(JSON.stringify(seen)).not.toContain("old-origin-token");
  });

  it("to another origin with null for both: they are removed, and the new origin gets no signature and no header", async () => {
    const name = await sealedDestination();
    const res = await api(`/api/destinations/${name}`, "PATCH", { url: "https://new-origin.test/hook", secret: null, headers: null });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ destination: { has_secret: false, headers: {} } });
    const stored = await row(name);
    expect(stored?.secret).toBeNull();
    expect(stored?.headers).toBeNull();
    const seen = await testSend(name);
    expect(seen.headers.authorization).toBeUndefined();
    expect(seen.headers["webhook-signature"]).toBeUndefined();
  });

  it("on the same origin (another path): the sealed values stay and are sent", async () => {
    const name = await sealedDestination();
    const res = await api(`/api/destinations/${name}`, "PATCH", { url: "https://old-origin.test/other-hook" });
    expect(res.status).toBe(200);
    const seen = await testSend(name);
    expect(seen.headers.authorization).toBe("Bearer old-origin-token");
    expect(seen.headers["webhook-signature"]).toMatch(/^v1,/);
  });

  it("a destination without sealed values moves freely", async () => {
    const name = freshId("plain");
    expect((await api(`/api/destinations/${name}`, "PUT", { url: "https://old-origin.test/hook" })).status).toBe(201);
    expect((await api(`/api/destinations/${name}`, "PATCH", { url: "https://new-origin.test/hook" })).status).toBe(200);
  });
});

describe("a PATCH racing another write", () => {
  it("a PUT to another origin lands between the PATCH's read and its write: the PATCH never pairs that origin's secret with its own url", async () => {
    const name = await sealedDestination();
    const NEW_ORIGIN_SECRET = "whsec_c2VjcmV0LWdpdmVuLWZvci10aGUtbmV3LW9yaWdpbg==";
    let raced = false;
    // Another request's PUT (the destination moved, with a secret given for its new origin) runs
    // just before the PATCH's write reaches D1.
    const racing = new Proxy(env.DB, {
      get(target, prop) {
        if (prop !== "prepare") return Reflect.get(target, prop, target);
        return (sql: string) => {
          const statement = target.prepare(sql);
          if (!sql.startsWith("UPDATE destinations SET config")) return statement;
          return new Proxy(statement, {
            get(st, p) {
              if (p !== "bind") return Reflect.get(st, p, st);
              return (...values: unknown[]) => {
                const bound = st.bind(...values);
                return new Proxy(bound, {
                  get(b, q) {
                    if (q !== "first") return Reflect.get(b, q, b);
                    return async () => {
                      if (!raced) {
                        raced = true;
                        const put = await api(`/api/destinations/${name}`, "PUT", { url: "https://moved-origin.test/hook", format: "json", secret: NEW_ORIGIN_SECRET });
                        expect(put.status).toBe(200);
                      }
                      return b.first();
                    };
                  },
                });
              };
            },
          });
        };
      },
    });
    const res = await callWorker(
      `/api/destinations/${name}`,
      { method: "PATCH", body: JSON.stringify({ url: "https://old-origin.test/other-hook" }), headers: { "content-type": "application/json" } },
      { ...ENV, DB: racing },
    );
    expect(raced).toBe(true);
    // Read again after the race, the PATCH moves the url off the PUT's origin without its secret.
    expect(res.status).toBe(400);
    expect(JSON.parse((await row(name))?.config ?? "{}")).toMatchObject({ url: "https://moved-origin.test/hook" });
    const seen = await testSend(name);
    expect(seen.host).toBe("moved-origin.test");
  });
});

describe("PUT", () => {
  it("replaces the whole entry: no old sealed value is kept for the new url", async () => {
    const name = await sealedDestination();
    expect((await api(`/api/destinations/${name}`, "PUT", { url: "https://new-origin.test/hook", format: "json" })).status).toBe(200);
    const stored = await row(name);
    expect(stored?.secret).toBeNull();
    expect(stored?.headers).toBeNull();
    const seen = await testSend(name);
    expect(seen.headers.authorization).toBeUndefined();
  });
});

describe("the dashboard's edit", () => {
  /** Dashboard requests: the session cookie, from the Worker's own origin. */
  async function dashboard(path: string, init: RequestInit = {}): Promise<Response> {
    const login = await callWorker(
      "/dashboard/login",
      { token: null, method: "POST", headers: { origin: "https://worker.test", "content-type": "application/x-www-form-urlencoded" }, body: new URLSearchParams({ token: ADMIN_TOKEN }).toString() },
      ENV,
    );
    const cookie = (login.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
    const headers = new Headers(init.headers);
    headers.set("origin", "https://worker.test");
    headers.set("cookie", cookie);
    return callWorker(path, { token: null, ...init, headers }, ENV);
  }

  const save = (fields: Record<string, string>) =>
    dashboard("/dashboard/destinations/save", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ format: "json", enabled: "on", secret: "", headers: "", ...fields }).toString(),
    });

  it("another origin with the secret fields left empty: 400, the page says why, nothing changed", async () => {
    const name = await sealedDestination();
    const before = await row(name);
    const res = await save({ name, url: "https://new-origin.test/hook" });
    expect(res.status).toBe(400);
    expect(await res.text()).toMatch(/origin/);
    expect(await row(name)).toEqual(before);
  });

  it("the same origin with the secret fields left empty: they stay", async () => {
    const name = await sealedDestination();
    const res = await save({ name, url: "https://old-origin.test/elsewhere" });
    expect(res.status).toBe(303);
    const seen = await testSend(name);
    expect(seen.headers.authorization).toBe("Bearer old-origin-token");
    expect(JSON.parse((await row(name))?.config ?? "{}")).toMatchObject({ url: "https://old-origin.test/elsewhere" });
  });

  it("another origin with both given again: saved, and the new values go there", async () => {
    const name = await sealedDestination();
    const res = await save({ name, url: "https://new-origin.test/hook", secret: OTHER_SECRET, headers: "authorization: Bearer new-origin-token" });
    expect(res.status).toBe(303);
    const seen = await testSend(name);
    expect(seen.host).toBe("new-origin.test");
    expect(seen.headers.authorization).toBe("Bearer new-origin-token");
  });
});
