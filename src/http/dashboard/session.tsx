/**
 * Dashboard sessions: sign-in with ADMIN_TOKEN creates a server-side session and sets a
 * cookie holding its random id; every page checks the row. A session ends when it
 * expires (12 h), at sign-out (revoked), or when ADMIN_TOKEN changes (the row keeps the
 * token's hash). The cookie is the id alone: signing it with a key made from the token
 * would hand whoever holds a cookie a way to test guesses of the token offline.
 */
import { Hono, type MiddlewareHandler } from "hono";
import { bodyLimit } from "hono/body-limit";
import { deleteCookie, getCookie, setCookie } from "hono/cookie";
import { sha256Hex } from "../../hash";
import { log } from "../../log";
import { createSession, revokeSession, sessionIsLive } from "../../store/sessions";
import type { AppEnv } from "../app-env";
import { tokenMatches } from "../auth";
import { nonceOf, Page } from "./layout";

export const SESSION_COOKIE = "oneflow_session";
export const SESSION_IN_SECONDS = 12 * 3600;
/** Sign-in bodies larger than this are refused. */
export const LOGIN_BODY_LIMIT_IN_BYTES = 4 * 1024;

const COOKIE_OPTIONS = { httpOnly: true, secure: true, sameSite: "Strict", path: "/dashboard" } as const;

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(32));
  return btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

/** Every dashboard page but the sign-in form needs a live session; without ADMIN_TOKEN the dashboard does not exist. */
export const requireSession: MiddlewareHandler<AppEnv> = async function requireSession(c, next) {
  const admin = c.env.ADMIN_TOKEN;
  if (!admin) return c.text("Not found", 404);
  if (new URL(c.req.url).pathname === "/dashboard/login") return next();
  const id = getCookie(c, SESSION_COOKIE);
  const live =
    id !== undefined &&
    (await sessionIsLive(c.env.DB, { id_sha256: await sha256Hex(id), token_sha256: await sha256Hex(admin), now: new Date().toISOString() }));
  if (!live) return c.redirect("/dashboard/login", 303);
  return next();
};

export const session = new Hono<AppEnv>({ strict: false });

session.get("/dashboard/login", (c) =>
  c.html(
    <Page title="Sign in" nonce={nonceOf(c)} signedIn={false}>
      {c.req.query("error") && <p class="error" id="error">That token is not this Worker's ADMIN_TOKEN.</p>}
      <form method="post" action="/dashboard/login">
        <label>
          Admin token <input type="password" name="token" autocomplete="current-password" required />
        </label>{" "}
        <button type="submit">Sign in</button>
      </form>
    </Page>,
  ),
);

session.post(
  "/dashboard/login",
  bodyLimit({ maxSize: LOGIN_BODY_LIMIT_IN_BYTES, onError: (c) => c.text("The sign-in form is larger than 4 KiB.", 413) }),
  async (c) => {
    // Every attempt from one client counts: past 10 a minute, guessing stops (simulated locally).
    const client = c.req.header("cf-connecting-ip") ?? "local";
    const limiter = c.env.LOGIN_LIMITER;
    if (limiter && !(await limiter.limit({ key: client })).success) {
      log("warn", "dashboard.login_limited", { request_id: c.get("requestId") });
      return c.text("Too many sign-in attempts; wait a minute.", 429, { "Retry-After": "60" });
    }
    const admin = c.env.ADMIN_TOKEN ?? "";
    const form = await c.req.parseBody();
    const token = typeof form.token === "string" ? form.token : "";
    if (!(await tokenMatches(token, [admin]))) return c.redirect("/dashboard/login?error=1", 303);
    const id = randomId();
    const now = Date.now();
    await createSession(c.env.DB, {
      id_sha256: await sha256Hex(id),
      token_sha256: await sha256Hex(admin),
      created_at: new Date(now).toISOString(),
      expires_at: new Date(now + SESSION_IN_SECONDS * 1000).toISOString(),
    });
    setCookie(c, SESSION_COOKIE, id, { ...COOKIE_OPTIONS, maxAge: SESSION_IN_SECONDS });
    return c.redirect("/dashboard", 303);
  },
);

session.post("/dashboard/logout", async (c) => {
  const id = getCookie(c, SESSION_COOKIE);
  if (id !== undefined) await revokeSession(c.env.DB, await sha256Hex(id), new Date().toISOString());
  deleteCookie(c, SESSION_COOKIE, { path: "/dashboard", secure: true });
  return c.redirect("/dashboard/login", 303);
});
