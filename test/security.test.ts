/**
 * The operator surfaces under attack: server-side sessions that end at sign-out, on a new
 * ADMIN_TOKEN and after 12 hours; cross-origin posts; oversized bodies; guessing the token;
 * forged request ids.
 */
import { env } from "cloudflare:workers";
import { describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { sha256Hex } from "../src/hash";
import { ADMIN_TOKEN, callWorker, examplePayload, post } from "./fixtures";

const ORIGIN = "https://worker.test";

function dashboard(path: string, init: RequestInit = {}, environment?: Env): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has("origin")) headers.set("origin", ORIGIN);
  return callWorker(path, { token: null, ...init, headers }, environment);
}

function signIn(token = ADMIN_TOKEN, client = "203.0.113.1", environment?: Env): Promise<Response> {
  return dashboard(
    "/dashboard/login",
    {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded", "cf-connecting-ip": client },
      body: new URLSearchParams({ token }).toString(),
    },
    environment,
  );
}

async function cookieOf(res: Response): Promise<string> {
  return (res.headers.get("set-cookie") ?? "").split(";")[0] ?? "";
}

const signedIn = async (cookie: string, environment?: Env) => (await dashboard("/dashboard", { headers: { cookie } }, environment)).status === 200;

describe("sessions", () => {
  it("are server-side: the cookie is a random id, the row keeps only its hash and the token's", async () => {
    const a = await cookieOf(await signIn());
    const b = await cookieOf(await signIn());
    expect(a).not.toBe(b);
    const id = a.split("=")[1] ?? "";
    expect(id).toMatch(/^[A-Za-z0-9_-]{43}$/);
    const row = await env.DB.prepare("SELECT * FROM sessions WHERE id_sha256 = ?").bind(await sha256Hex(id)).first<Record<string, string>>();
    expect(row?.token_sha256).toBe(await sha256Hex(ADMIN_TOKEN));
    expect(JSON.stringify(row)).not.toContain(id);
    expect(Date.parse(row?.expires_at ?? "") - Date.parse(row?.created_at ?? "")).toBe(12 * 3600 * 1000);
  });

  it("a copied cookie stops working after sign-out", async () => {
    const cookie = await cookieOf(await signIn());
    expect(await signedIn(cookie)).toBe(true);
    const out = await dashboard("/dashboard/logout", { method: "POST", headers: { cookie } });
    expect(out.status).toBe(303);
    expect(await signedIn(cookie)).toBe(false);
  });

  it("a new ADMIN_TOKEN ends every session", async () => {
    const cookie = await cookieOf(await signIn());
    expect(await signedIn(cookie)).toBe(true);
    expect(await signedIn(cookie, { ...env, ADMIN_TOKEN: "a-rotated-admin-token" })).toBe(false);
  });

  it("a session ends after 12 hours", async () => {
    const cookie = await cookieOf(await signIn());
    const id = cookie.split("=")[1] ?? "";
    await env.DB.prepare("UPDATE sessions SET expires_at = ? WHERE id_sha256 = ?")
      .bind(new Date(Date.now() - 1000).toISOString(), await sha256Hex(id))
      .run();
    expect(await signedIn(cookie)).toBe(false);
  });

  it("a made-up cookie signs nobody in", async () => {
    expect(await signedIn("oneflow_session=made-up")).toBe(false);
    expect(await signedIn("oneflow_session=admin")).toBe(false);
  });
});

describe("request limits", () => {
  it("a dashboard POST from another origin: 403 (csrf)", async () => {
    const cookie = await cookieOf(await signIn());
    const res = await dashboard("/dashboard/logout", {
      method: "POST",
      headers: { cookie, origin: "https://evil.example", "content-type": "application/x-www-form-urlencoded" },
      body: "",
    });
    expect(res.status).toBe(403);
    expect(await signedIn(cookie)).toBe(true);
  });

  it("a sign-in body over 4 KiB: 413", async () => {
    const res = await dashboard("/dashboard/login", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: "x".repeat(5_000) }).toString(),
    });
    expect(res.status).toBe(413);
  });

  it("more than 10 sign-in attempts a minute from one client: 429, even for the right token", async () => {
    const client = "198.51.100.7";
    const statuses: number[] = [];
    for (let i = 0; i < 10; i++) statuses.push((await signIn(`wrong-${i}`, client)).status);
    expect(statuses.every((s) => s === 303)).toBe(true);
    const eleventh = await signIn(ADMIN_TOKEN, client);
    expect(eleventh.status).toBe(429);
    expect(eleventh.headers.get("set-cookie")).toBeNull();
    // Another client is not held back.
    expect((await signIn(ADMIN_TOKEN, "198.51.100.8")).status).toBe(303);
  });

  it("an /api body over 16 KiB: 413 payload_too_large", async () => {
    const res = await callWorker("/api/replay", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ status: "dead", destination: "x".repeat(17_000) }),
    });
    expect(res.status).toBe(413);
    expect(await res.json()).toMatchObject({ ok: false, error: "payload_too_large" });
  });
});

describe("x-request-id", () => {
  it("is always the Worker's own: a client's header is neither echoed nor logged", async () => {
    const lines: string[] = [];
    vi.spyOn(console, "log").mockImplementation((line: string) => void lines.push(line));
    const res = await post(examplePayload(), { headers: { "x-request-id": "forged-id-123" } });
    vi.restoreAllMocks();
    const id = res.headers.get("x-request-id") ?? "";
    expect(id).not.toBe("forged-id-123");
    expect(id).toMatch(/^[0-9a-f-]{36}$/);
    expect(lines.join("\n")).not.toContain("forged-id-123");
    expect(lines.some((l) => l.includes(id))).toBe(true);
  });
});
