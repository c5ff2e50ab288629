/**
 * A transform, path or filter that fails on the latest matching response (or on 1Flow's example
 * when none matches) is refused at save, with the error, its position and how to save it
 * anyway; `"force": true` saves it.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { callWorker, examplePayload, freshId, post } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const ENV: Env = { ...env, DESTINATIONS: "", ADMIN_TOKEN: "admin-token-for-tests" };
const api = (path: string, method: string, body?: unknown) =>
  callWorker(path, { method, ...(body === undefined ? {} : { body: JSON.stringify(body), headers: { "content-type": "application/json" } }) }, ENV);

type Answer = { ok: boolean; error?: string; issues?: { path: string; message: string }[] };

describe("save refuses what fails on the latest matching response", () => {
  it("a transform that fails everywhere ($nosuchfn()): 400 with the code and position, saved with force: true", async () => {
    const name = freshId("nosuchfn");
    const entry = { url: "https://nosuchfn.test/hook", format: "jsonata", transform: `{ "a": $nosuchfn() }` };
    const res = await api(`/api/destinations/${name}`, "PUT", entry);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Answer;
    expect(body.error).toBe("invalid_request");
    expect(body.issues?.[0]?.path).toBe("transform");
    expect(body.issues?.[0]?.message).toMatch(/T1006|position/);
    expect(body.issues?.[0]?.message).toMatch(/"force": true/);
    // Nothing was stored.
    expect((await api(`/api/destinations/${name}`, "PATCH", { enabled: false })).status).toBe(404);
    expect((await api(`/api/destinations/${name}`, "PUT", { ...entry, force: true })).status).toBe(201);
    // force is not kept in the destination.
    const listed = (await (await api("/api/destinations", "GET")).json()) as { destinations: Record<string, unknown>[] };
    expect(listed.destinations.find((d) => d.name === name)).not.toHaveProperty("force");
    await api(`/api/destinations/${name}`, "DELETE");
  });

  it("tried on the latest response the destination matches: a transform that fails on it is refused (naming no value of it), one that works is saved", async () => {
    const survey_id = freshId("survey");
    await post(examplePayload({ survey_id, user: { user_system_id: "u-1", parameters: {} } }));
    const name = freshId("email");
    // The latest response of that survey has a user id that is not a number: the cast fails on it.
    const failing = { url: "https://email.test/hook", format: "jsonata", survey_ids: [survey_id], transform: `{ "n": $number(user.id) }` };
    const res = await api(`/api/destinations/${name}`, "PUT", failing);
    expect(res.status).toBe(400);
    const body = (await res.json()) as Answer;
    expect(body.issues?.[0]?.message).toMatch(/latest matching response/);
    // The message names the error, never the respondent's value.
    expect(body.issues?.[0]?.message).not.toContain("u-1");
    const working = { ...failing, transform: `{ "id": user.id }` };
    expect((await api(`/api/destinations/${name}`, "PUT", working)).status).toBe(201);
    // A PATCH that breaks it is refused too; with force it is saved.
    expect((await api(`/api/destinations/${name}`, "PATCH", { transform: `$nosuchfn()` })).status).toBe(400);
    expect((await api(`/api/destinations/${name}`, "PATCH", { transform: `$nosuchfn()`, force: true })).status).toBe(200);
    await api(`/api/destinations/${name}`, "DELETE");
  });

  it("force must be a boolean", async () => {
    const res = await api(`/api/destinations/${freshId("f")}`, "PUT", { url: "https://f.test/hook", force: "yes" });
    expect(res.status).toBe(400);
    expect(((await res.json()) as Answer).issues?.[0]?.path).toBe("force");
  });
});
