/**
 * What a new user meets first through the API: a 401 that says which credential was wrong,
 * and a test send to a dead URL that says nothing answered.
 */
import { afterEach, describe, expect, it, vi } from "vitest";
import { callWorker, freshId } from "./fixtures";
import { stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("401 from /api", () => {
  it("says which credential was wrong: none, not a bearer header, or the wrong token; the error string stays unauthorized", async () => {
    const none = await callWorker("/api/alerts", { token: null });
    const malformed = await callWorker("/api/alerts", { token: null, headers: { authorization: "Basic YWRtaW46eA==" } });
    const wrong = await callWorker("/api/alerts", { token: "not-the-admin-token" });
    const bodies = await Promise.all([none, malformed, wrong].map(async (r) => ({ status: r.status, ...((await r.json()) as { error: string; message: string }) })));
    for (const b of bodies) expect(b).toMatchObject({ status: 401, ok: false, error: "unauthorized" });
    expect(bodies[0]?.message).toMatch(/needs an `Authorization: Bearer <ADMIN_TOKEN>` header/);
    expect(bodies[1]?.message).toMatch(/is not `Bearer <ADMIN_TOKEN>`/);
    expect(bodies[2]?.message).toMatch(/not this Worker's ADMIN_TOKEN/);
    // None of them speaks of the webhook's URL token.
    for (const b of bodies) expect(b.message).not.toMatch(/URL/);
  });
});

describe("test send to a URL where nothing answers", () => {
  it("answers 502 ok:false no_answer with why, not ok:true with a null status", async () => {
    const name = freshId("dead");
    const put = await callWorker(`/api/destinations/${name}`, {
      method: "PUT",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ url: "https://dead.test/hook" }),
    });
    expect(put.status).toBe(201);
    stubDestinations({ "dead.test": () => Promise.reject(new TypeError("connect ECONNREFUSED")) });
    const res = await callWorker(`/api/destinations/${name}/test`, { method: "POST" });
    expect(res.status).toBe(502);
    const body = (await res.json()) as Record<string, unknown>;
    expect(body).toMatchObject({ ok: false, error: "no_answer", status: null, detail: "connect ECONNREFUSED" });
    expect(typeof body.duration_ms).toBe("number");
    // A receiver that answers, even with an error, is an answer.
    vi.restoreAllMocks();
    stubDestinations({ "dead.test": () => new Response("down", { status: 503 }) });
    const answered = await callWorker(`/api/destinations/${name}/test`, { method: "POST" });
    expect(answered.status).toBe(200);
    expect(await answered.json()).toMatchObject({ ok: true, status: 503, response: "down" });
    await callWorker(`/api/destinations/${name}`, { method: "DELETE" });
  });
});
