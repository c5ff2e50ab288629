/** The dashboard, through the Worker: sign-in, CSP, pages, and the replay and reprocess buttons. */
import { env } from "cloudflare:workers";
import { beforeAll, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { RECIPES, recipeFields } from "../src/http/dashboard/recipes";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId, post, quarantinedValidBody, rejectedRow } from "./fixtures";

/** Dashboard requests carry no bearer token (only the session cookie signs them in) and come from the Worker's own origin, as a browser's form posts do. */
function request(path: string, init: RequestInit = {}, environment?: Env): Promise<Response> {
  const headers = new Headers(init.headers);
  if (!headers.has("origin")) headers.set("origin", "https://worker.test");
  return callWorker(path, { token: null, ...init, headers }, environment);
}

async function signIn(token = ADMIN_TOKEN): Promise<Response> {
  return request("/dashboard/login", {
    method: "POST",
    headers: { "content-type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token }).toString(),
  });
}

// One session for the file's pages: sign-in is limited to 10 a minute (LOGIN_LIMITER).
let signedIn: string | undefined;
async function session(): Promise<string> {
  if (signedIn !== undefined) return signedIn;
  const cookie = (await signIn()).headers.get("set-cookie") ?? "";
  signedIn = cookie.split(";")[0] ?? "";
  return signedIn;
}

describe("sign-in", () => {
  it("a wrong token shows an error and sets no cookie", async () => {
    const res = await signIn("wrong");
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard/login?error=1");
    expect(res.headers.get("set-cookie")).toBeNull();
    const page = await (await request("/dashboard/login?error=1")).text();
    expect(page).toMatch(/<p class="error" id="error">That token is not this Worker&#39;s ADMIN_TOKEN/);
  });

  it("the right token sets an HttpOnly, Secure, SameSite=Strict session cookie; logout clears it", async () => {
    const res = await signIn();
    expect(res.headers.get("location")).toBe("/dashboard");
    const cookie = res.headers.get("set-cookie") ?? "";
    expect(cookie).toMatch(/HttpOnly/);
    expect(cookie).toMatch(/Secure/);
    expect(cookie).toMatch(/SameSite=Strict/);
    expect(cookie).not.toContain(ADMIN_TOKEN);
    const out = await request("/dashboard/logout", { method: "POST", headers: { cookie: cookie.split(";")[0] ?? "" } });
    expect(out.headers.get("set-cookie")).toMatch(/Max-Age=0/);
  });

  it("pages need a session; without ADMIN_TOKEN the dashboard does not exist", async () => {
    const res = await request("/dashboard");
    expect(res.status).toBe(303);
    expect(res.headers.get("location")).toBe("/dashboard/login");
    expect((await request("/dashboard", {}, { ...env, ADMIN_TOKEN: "" })).status).toBe(404);
    const forged = await request("/dashboard", { headers: { cookie: "oneflow_session=admin" } });
    expect(forged.status).toBe(303);
  });

  it("every page carries a strict Content-Security-Policy", async () => {
    const res = await request("/dashboard/login");
    const csp = res.headers.get("content-security-policy") ?? "";
    expect(csp).toContain("default-src 'none'");
    expect(csp).toMatch(/style-src 'nonce-[^']+'/);
    expect(csp).toContain("frame-ancestors 'none'");
    // Scripts only by this response's nonce (the destination form's preview): no inline or remote script.
    expect(csp).toMatch(/script-src 'nonce-[^']+'(;|$)/);
    expect(csp).toContain("connect-src 'self'");
    expect(csp).not.toContain("unsafe-inline");
  });
});

describe("read replicas", () => {
  it("pages read through a D1 session; right after an action, its first read goes to the primary", async () => {
    const cookie = await session();
    const sessions = vi.spyOn(env.DB, "withSession");
    await request("/dashboard/deliveries", { headers: { cookie } });
    await request("/dashboard/deliveries?result=Replayed", { headers: { cookie } });
    expect(sessions.mock.calls.map((c) => c[0])).toEqual(["first-unconstrained", "first-primary"]);
    vi.restoreAllMocks();
  });
});

describe("pages", () => {
  it("the overview says how to point 1Flow at the Worker while empty, then shows totals and surveys", async () => {
    const cookie = await session();
    const empty = await (await request("/dashboard", { headers: { cookie } })).text();
    expect(empty).toContain("Project webhook alerts");
    expect(empty).toContain("https://worker.test/webhooks/1flow/&lt;WEBHOOK_SECRET&gt;");
    const p = examplePayload({ timestamp: new Date().toISOString() });
    await post(p);
    await post(p);
    await post(p);
    const full = await (await request("/dashboard", { headers: { cookie } })).text();
    expect(full).not.toContain('id="empty"');
    expect(full).toMatch(/<b>1<\/b>responses/);
    expect(full).toMatch(/<b>2<\/b>duplicates/);
    expect(full).toMatch(/<b>\d+<\/b>through the spool/);
    expect(full).toContain("Net Promoter Score (NPS)");
  });

  it("the overview counts what arrived today, the README's example of 2022 too, and draws 30-day sparklines of responses and of each destination's deliveries", async () => {
    const cookie = await session();
    const sparks = async () => {
      const page = await (await request("/dashboard", { headers: { cookie } })).text();
      const json = /<script type="application\/json" id="sparks-data"[^>]*>([^<]*)<\/script>/.exec(page)?.[1] ?? "[]";
      const today = Number(/<h2>Today \(UTC\)<\/h2><div class="cards"><div class="card"><b>(\d+)<\/b>responses arrived/.exec(page)?.[1]);
      return { page, today, data: JSON.parse(json) as { id: string; label: string; days: string[]; series: { label: string; values: number[] }[] }[] };
    };
    const before = await sparks();
    await post(examplePayload()); // submitted in 2022, as the README's curl sends it
    const name = freshId("spark");
    const hour = new Date().toISOString().slice(0, 13);
    await env.DB.prepare("INSERT INTO destination_hourly (destination, hour, delivered, failed) VALUES (?, ?, 7, 2)").bind(name, hour).run();
    const after = await sparks();
    expect(after.today).toBe(before.today + 1);
    const responses = after.data.find((s) => s.id === "spark-responses");
    expect(responses?.days).toHaveLength(30);
    expect(responses?.days.at(-1)).toBe(new Date().toISOString().slice(0, 10));
    expect(responses?.series[0]?.values.at(-1)).toBe((before.data.find((s) => s.id === "spark-responses")?.series[0]?.values.at(-1) ?? 0) + 1);
    const destination = after.data.find((s) => s.label === `${name}: delivered`);
    expect(destination?.series.map((x) => [x.label, x.values.at(-1), x.values.slice(0, -1).reduce((n, v) => n + v, 0)])).toEqual([
      ["delivered", 7, 0],
      ["failed attempts", 2, 0],
    ]);
    // Each sparkline is drawn by uPlot, with its numbers in a table beside it.
    expect(after.page).toContain('<script src="/dashboard/assets/uplot-');
    expect(after.page).toMatch(/<div class="spark" id="spark-responses" role="img"/);
    expect(after.page).toContain("<summary>As a table</summary>");
  });

  it("the overview shows the archive: files, rows, the newest archived response, and the last error; without ARCHIVE, how to turn it on", async () => {
    const cookie = await session();
    const p = examplePayload({ timestamp: "2026-01-15T10:00:00.000Z" });
    await post(p);
    const { archiveTick } = await import("../src/archive/archive");
    await archiveTick({ db: env.DB, bucket: env.ARCHIVE as R2Bucket, now: new Date(Date.now() + 2 * 3_600_000), delay_minutes: 60, rows_per_tick: 500 });
    const state = await env.DB.prepare("SELECT files, responses, newest_submitted_at FROM archive_state").first<{ files: number; responses: number; newest_submitted_at: string }>();
    expect(state?.files).toBeGreaterThanOrEqual(2);
    const page = await (await request("/dashboard", { headers: { cookie } })).text();
    expect(page).toContain(`<b>${state?.files}</b>archive files`);
    expect(page).toContain(`<b>${state?.responses}</b>archived responses`);
    expect(page).toContain(`<b>${state?.newest_submitted_at}</b>newest archived response`);
    expect(page).not.toContain('id="archive-error"');
    await env.DB.prepare("UPDATE archive_state SET last_error = 'R2 put failed (test)', last_error_at = '2026-01-15T11:00:00.000Z'").run();
    const failing = await (await request("/dashboard", { headers: { cookie } })).text();
    expect(failing).toMatch(/id="archive-error"[^>]*>\s*Last error \(2026-01-15T11:00:00.000Z\): R2 put failed \(test\)/);
    await env.DB.prepare("UPDATE archive_state SET last_error = NULL, last_error_at = NULL").run();
    const unbound = await (await request("/dashboard", { headers: { cookie } }, { ...env, ADMIN_TOKEN, ARCHIVE: undefined })).text();
    expect(unbound).toContain("Not bound: add the ARCHIVE R2 binding");
  });

  it("a survey's page: its name, the insights' numbers in its tables and its charts' data, uPlot served from the Worker", async () => {
    const cookie = await session();
    const survey_id = `dash-${crypto.randomUUID()}`;
    const recent = new Date(Date.now() - 2 * 86_400_000).toISOString();
    await post(examplePayload({ survey_id, timestamp: recent }));
    const res = await request(`/dashboard/surveys/${survey_id}?days=30`, { headers: { cookie } });
    expect(res.status).toBe(200);
    const page = await res.text();
    expect(page).toContain("<title>Net Promoter Score (NPS) · oneflow-webhooks</title>");
    for (const id of ["nps-chart", "volume-chart", "scores-chart", "series-table", "scores-table", "platform-table"]) expect(page).toContain(`id="${id}"`);
    const data = JSON.parse(/<script type="application\/json" id="insights-data"[^>]*>([^<]*)<\/script>/.exec(page)?.[1] ?? "null") as {
      bucket: string;
      series: { bucket: string; responses: number; nps: number | null }[];
    };
    expect(data.bucket).toBe("day");
    expect(data.series).toHaveLength(31);
    expect(data.series.find((b) => b.bucket === recent.slice(0, 10))).toEqual({ bucket: recent.slice(0, 10), responses: 1, nps: 100 });
    expect(page).toContain('<b id="responses-total">1</b>');
    // The reason links to its response.
    expect(page).toContain("best user experience");
    const script = /<script src="([^"]+)" nonce="[^"]+"><\/script>/.exec(page)?.[1] ?? "";
    expect(script).toMatch(/^\/dashboard\/assets\/uplot-1\.6\.32\.js$/);
    const asset = await request(script, { headers: { cookie } });
    expect(asset.status).toBe(200);
    expect(asset.headers.get("cache-control")).toContain("immutable");
    expect(await asset.text()).toContain("uPlot");
    // Dates that are not real fall back to the last 90 days, never an error.
    expect((await request(`/dashboard/surveys/${survey_id}?since=2024-13-01&until=2024-13-02`, { headers: { cookie } })).status).toBe(200);
    // An unknown survey: the dashboard's 404.
    expect((await request(`/dashboard/surveys/no-such-${crypto.randomUUID()}`, { headers: { cookie } })).status).toBe(404);
  });

  it("latest responses show their answers", async () => {
    const cookie = await session();
    const p = examplePayload();
    await post(p);
    const page = await (await request("/dashboard/responses", { headers: { cookie } })).text();
    expect(page).toContain(`id="alert-${p.alert_id}"`);
    expect(page.startsWith("<!doctype html>")).toBe(true);
    expect(page).toContain("best user experience");
    const detail = await (await request(`/dashboard/responses/${p.alert_id}`, { headers: { cookie } })).text();
    expect(detail).toContain('id="answers"');
    expect(detail).toContain("sdk_system_id_1680151080658");
  });

  it("the reprocess button takes a body out of the quarantine once it passes", async () => {
    const cookie = await session();
    const { id } = await quarantinedValidBody();
    const list = await (await request("/dashboard/quarantine", { headers: { cookie } })).text();
    expect(list).toContain(`/dashboard/rejected/${id}/reprocess`);
    const res = await request(`/dashboard/rejected/${id}/reprocess`, { method: "POST", headers: { cookie } });
    expect(res.status).toBe(303);
    expect(decodeURIComponent(res.headers.get("location") ?? "")).toContain("Reprocessed");
    expect(await rejectedRow(id)).toBeNull();
  });

  it("the replay button turns a dead delivery back to pending", async () => {
    const cookie = await session();
    const p = examplePayload();
    await post(p);
    await env.DB.prepare(
      "INSERT INTO deliveries (alert_id, destination, status, attempts, last_error, updated_at) VALUES (?, 'crm', 'dead', 10, 'HTTP 503', ?)",
    )
      .bind(p.alert_id, new Date().toISOString())
      .run();
    const before = await (await request("/dashboard/deliveries", { headers: { cookie } })).text();
    expect(before).toContain(p.alert_id);
    const environment = { ...env, ADMIN_TOKEN, DESTINATIONS: JSON.stringify([{ name: "crm", url: "https://crm.test/x" }]) };
    const res = await request(
      `/dashboard/alerts/${p.alert_id}/replay`,
      { method: "POST", headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: "destination=crm" },
      environment,
    );
    expect(decodeURIComponent(res.headers.get("location") ?? "")).toContain("Replayed");
    const row = await env.DB.prepare("SELECT status FROM deliveries WHERE alert_id = ?").bind(p.alert_id).first();
    expect(row).toEqual({ status: "pending" });
    const after = await (await request("/dashboard/deliveries", { headers: { cookie } })).text();
    expect(after).toMatch(new RegExp(`${p.alert_id}</code></td><td data-label="Destination">crm</td><td data-label="Status" class="status">pending`));
  });
});

describe("first contact", () => {
  // One sign-in for the block: sign-ins are rate limited (10 a minute per client).
  let cookie = "";
  beforeAll(async () => {
    cookie = await session();
  });

  it("the quarantine has column headers, labels that stay on a phone, and a page per body with its issues", async () => {
    const invalid = { ...examplePayload(), survey_id: 42 };
    expect((await post(invalid)).status).toBe(422);
    const list = await (await request("/dashboard/quarantine", { headers: { cookie } })).text();
    expect(list).toMatch(/<tr class="head"><th>Reason<\/th><th>alert_id<\/th><th>Attempts<\/th><th>Last seen<\/th><th>Body<\/th><th>Action<\/th><\/tr>/);
    expect(list).toContain('<td data-label="Reason">');
    // The phone layout hides the header row and shows each cell's label before it.
    expect(list).toContain('td[data-label]::before{content:attr(data-label)');
    const id = /href="\/dashboard\/quarantine\/([0-9a-f]{64})"/.exec(list)?.[1];
    expect(id).toBeDefined();
    const page = await request(`/dashboard/quarantine/${id}`, { headers: { cookie } });
    expect(page.status).toBe(200);
    const html = await page.text();
    expect(html).toMatch(/<ul id="issues"><li>survey_id: [^<]+<\/li>/);
    expect(html).toContain(invalid.alert_id);
  });

  it("Reprocess is offered only where it can succeed: never for a body that is not JSON", async () => {
    const notJson = `{"alert_id": "${crypto.randomUUID()}", oops`;
    expect((await post(notJson)).status).toBe(400);
    const { id: valid } = await quarantinedValidBody();
    const list = await (await request("/dashboard/quarantine", { headers: { cookie } })).text();
    const rows = list.split("<tr>").slice(1);
    const notJsonRow = rows.find((r) => r.includes("invalid_json"));
    expect(notJsonRow).toBeDefined();
    expect(notJsonRow).not.toContain("Reprocess");
    expect(list).toContain(`/dashboard/rejected/${valid}/reprocess`);
  });

  it("with no destination, the Undelivered page says so instead of 'every delivery has arrived'", async () => {
    const html = await (await request("/dashboard/deliveries", { headers: { cookie } }, { ...env, ADMIN_TOKEN, DESTINATIONS: "" })).text();
    expect(html).toContain('id="no-destinations"');
    expect(html).not.toContain("Every delivery has arrived");
    const withOne = { ...env, ADMIN_TOKEN, DESTINATIONS: JSON.stringify([{ name: "crm", url: "https://crm.test/x" }]) };
    const other = await (await request("/dashboard/deliveries", { headers: { cookie } }, withOne)).text();
    expect(other).not.toContain('id="no-destinations"');
  });

  it("an unknown dashboard URL is an HTML page that says so, not the API's JSON", async () => {
    const res = await request("/dashboard/no-such-page", { headers: { cookie } });
    expect(res.status).toBe(404);
    expect(res.headers.get("content-type")).toMatch(/^text\/html/);
    expect(await res.text()).toContain('id="not-found"');
  });

  it("Start from a recipe loads each shipped recipe into the Add form unescaped, and the form saves as it is", async () => {
    const page = await (await request("/dashboard/destinations/new", { headers: { cookie } })).text();
    expect(page).toContain('id="recipe-picker"');
    for (const recipe of Object.keys(RECIPES)) {
      const html = await (await request(`/dashboard/destinations/new?recipe=${recipe}`, { headers: { cookie } })).text();
      const fields = recipeFields(recipe) ?? {};
      // The transform as JSONata, as one would type it (the page escapes it as HTML text, never as a JSON string).
      if (fields.transform !== undefined) {
        const shown = /<textarea name="transform"[^>]*>([\s\S]*?)<\/textarea>/.exec(html)?.[1] ?? "";
        const text = shown.replaceAll("&quot;", '"').replaceAll("&lt;", "<").replaceAll("&gt;", ">").replaceAll("&#39;", "'").replaceAll("&amp;", "&");
        expect(text.trim()).toBe(fields.transform);
        expect(text).not.toContain('\\"');
      }
      // Saved as loaded (with the placeholders replaced by a reachable URL): accepted.
      const name = freshId(recipe);
      const body = new URLSearchParams({ ...fields, name, url: `https://${recipe}.test/hook` });
      const saved = await request("/dashboard/destinations/save", { method: "POST", headers: { cookie, "content-type": "application/x-www-form-urlencoded" }, body: body.toString() });
      expect(saved.status, `${recipe}: ${saved.status === 400 ? await saved.text() : ""}`).toBe(303);
    }
    expect(recipeFields("nosuch")).toBeUndefined();
  });

  it("the Add form takes a rate limit, shows it again on Edit, and refuses one out of bounds", async () => {
    const cookie = await session();
    const name = freshId("paced-form");
    const save = (extra: Record<string, string>) =>
      request("/dashboard/destinations/save", {
        method: "POST",
        headers: { cookie, "content-type": "application/x-www-form-urlencoded" },
        body: new URLSearchParams({ name, url: `https://${name}.test/hook`, format: "raw", enabled: "on", ...extra }).toString(),
      });
    expect((await save({ rate_requests: "5", rate_per_seconds: "9999" })).status).toBe(400);
    expect((await save({ rate_requests: "5", rate_per_seconds: "1" })).status).toBe(303);
    const list = (await (await callWorker("/api/destinations")).json()) as { destinations: { name: string; rate_limit: unknown }[] };
    expect(list.destinations.find((d) => d.name === name)?.rate_limit).toEqual({ requests: 5, per_seconds: 1 });
    const edit = await (await request(`/dashboard/destinations/${name}/edit`, { headers: { cookie } })).text();
    expect(edit).toMatch(/name="rate_requests"[^>]*value="5"/);
  });
});

