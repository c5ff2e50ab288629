/**
 * `/dashboard`: the operator's pages, server-rendered with hono/jsx, no script at
 * all. Sign-in takes ADMIN_TOKEN once and keeps a signed HttpOnly, Secure,
 * SameSite=Strict cookie; a strict Content-Security-Policy allows only this page's
 * own style. Actions (reprocess, replay) go through the `/api` routes themselves.
 */
import { Hono, type Context, type MiddlewareHandler } from "hono";
import { deleteCookie, getSignedCookie, setSignedCookie } from "hono/cookie";
import type { Child, FC } from "hono/jsx";
import { raw } from "hono/html";
import { NONCE, secureHeaders } from "hono/secure-headers";
import { listRejected } from "../store/rejected";
import { destinationCounts, getAlert, listAlerts, listSurveys, npsSeries, totalsSince, undeliveredDeliveries, type DestinationCounts } from "../store/reads";
import { readerOf } from "./reader";
import type { AppEnv } from "./app-env";
import { tokenMatches } from "./auth";

const COOKIE = "oneflow_session";
const SESSION_IN_SECONDS = 12 * 3600;

export const dashboard = new Hono<AppEnv>({ strict: false });

dashboard.use(
  "/dashboard/*",
  secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'none'"],
      styleSrc: [NONCE],
      imgSrc: ["'self'", "data:"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
      baseUri: ["'none'"],
    },
  }),
);

const STYLE = `body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fff}main{padding:1rem;max-width:60rem;margin:auto}table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e3e6eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
.cards{display:flex;flex-wrap:wrap;gap:.75rem}.card{background:#fff;padding:.75rem 1rem;border-radius:.5rem;min-width:9rem}
.card b{display:block;font-size:1.6rem}.error{color:#b42318}.ok{color:#067647}button{cursor:pointer}
form.inline{display:inline}pre{white-space:pre-wrap;word-break:break-all;background:#fff;padding:.5rem}
@media (max-width:40rem){td,th{display:block;border:0}tr{display:block;border-bottom:1px solid #e3e6eb}}`;

const Page: FC<{ title: string; nonce: string; signedIn?: boolean; children?: Child }> = ({ title, nonce, signedIn = true, children }) => (
  <>
  {raw("<!doctype html>")}
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>{title} · oneflow-webhooks</title>
      <style nonce={nonce}>{STYLE}</style>
    </head>
    <body>
      <header>
        <strong>oneflow-webhooks</strong>
        {signedIn && (
          <>
            <a href="/dashboard">Overview</a>
            <a href="/dashboard/responses">Responses</a>
            <a href="/dashboard/quarantine">Quarantine</a>
            <a href="/dashboard/deliveries">Undelivered</a>
            <form class="inline" method="post" action="/dashboard/logout">
              <button type="submit">Sign out</button>
            </form>
          </>
        )}
      </header>
      <main>
        <h1>{title}</h1>
        {children}
      </main>
    </body>
  </html>
  </>
);

function nonceOf(c: Context<AppEnv>): string {
  return c.get("secureHeadersNonce") ?? "";
}

/** A signed session cookie whose key is ADMIN_TOKEN: rotating the token signs everyone out. */
const requireSession: MiddlewareHandler<AppEnv> = async function requireSession(c, next) {
  const admin = c.env.ADMIN_TOKEN;
  if (!admin) return c.text("Not found", 404);
  const path = new URL(c.req.url).pathname;
  if (path === "/dashboard/login") return next();
  const session = await getSignedCookie(c, admin, COOKIE);
  if (session !== "admin") return c.redirect("/dashboard/login", 303);
  return next();
};

dashboard.use("/dashboard", requireSession);
dashboard.use("/dashboard/*", requireSession);

dashboard.get("/dashboard/login", (c) =>
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

dashboard.post("/dashboard/login", async (c) => {
  const admin = c.env.ADMIN_TOKEN ?? "";
  const form = await c.req.parseBody();
  const token = typeof form.token === "string" ? form.token : "";
  if (!(await tokenMatches(token, [admin]))) return c.redirect("/dashboard/login?error=1", 303);
  await setSignedCookie(c, COOKIE, "admin", admin, {
    httpOnly: true,
    secure: true,
    sameSite: "Strict",
    path: "/dashboard",
    maxAge: SESSION_IN_SECONDS,
  });
  return c.redirect("/dashboard", 303);
});

dashboard.post("/dashboard/logout", (c) => {
  deleteCookie(c, COOKIE, { path: "/dashboard", secure: true });
  return c.redirect("/dashboard/login", 303);
});

const Totals: FC<{ label: string; totals: Awaited<ReturnType<typeof totalsSince>> }> = ({ label, totals }) => (
  <section>
    <h2>{label}</h2>
    <div class="cards">
      <div class="card">
        <b>{totals.responses}</b>responses
      </div>
      <div class="card">
        <b>{totals.duplicates}</b>duplicates
      </div>
      <div class="card">
        <b>{totals.rejected}</b>rejected
      </div>
    </div>
  </section>
);

const Deliveries: FC<{ counts: DestinationCounts[] }> = ({ counts }) => (
  <section>
    <h2>Deliveries, last 24 hours</h2>
    <div class="cards">
      {counts.map((d) => (
        <div class="card">
          <b>{d.delivered_24h}</b>
          {d.destination}: delivered · {d.failed_24h} failed · {d.pending} pending
        </div>
      ))}
    </div>
  </section>
);

dashboard.get("/dashboard", async (c) => {
  const db = readerOf(c.env);
  const now = Date.now();
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const [today, month, surveys, destinations] = await Promise.all([
    totalsSince(db, day(now)),
    totalsSince(db, day(now - 29 * 86_400_000)),
    listSurveys(db),
    destinationCounts(db, new Date(now - 23 * 3_600_000).toISOString().slice(0, 13)),
  ]);
  const origin = new URL(c.req.url).origin;
  return c.html(
    <Page title="Overview" nonce={nonceOf(c)}>
      {surveys.length === 0 ? (
        <section id="empty">
          <p>No survey response has arrived yet. To receive them, in 1Flow open Settings → Project Settings →
            Project webhook alerts, enter</p>
          <pre>{origin}/webhooks/1flow/&lt;WEBHOOK_SECRET&gt;</pre>
          <p>tick the checkbox that enables alerts, and Save.</p>
        </section>
      ) : null}
      <Totals label="Today (UTC)" totals={today} />
      <Totals label="Last 30 days" totals={month} />
      <Deliveries counts={destinations} />
      <h2>Surveys</h2>
      <table>
        <tr>
          <th>Survey</th>
          <th>Responses</th>
          <th>Last response</th>
          <th>NPS</th>
        </tr>
        {surveys.map((s) => (
          <tr>
            <td>
              <a href={`/dashboard/surveys/${encodeURIComponent(s.survey_id)}`}>{s.survey_name ?? s.survey_id}</a>
            </td>
            <td>{s.responses}</td>
            <td>{s.last_response_at}</td>
            <td>{s.nps ?? "–"}</td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

/** The NPS trend as an SVG bar chart: one bar a week, from -100 to 100. */
const NpsChart: FC<{ series: Awaited<ReturnType<typeof npsSeries>> }> = ({ series }) => {
  const width = 600;
  const height = 200;
  const bar = series.length > 0 ? width / series.length : width;
  const y = (nps: number) => height / 2 - (nps / 100) * (height / 2);
  return (
    <svg id="nps-chart" viewBox={`0 0 ${width} ${height}`} width="100%" role="img" aria-label="NPS per week">
      <line x1="0" x2={width} y1={height / 2} y2={height / 2} stroke="#98a2b3" />
      {series.map((b, i) => (
        <rect
          x={i * bar + 2}
          width={Math.max(bar - 4, 1)}
          y={Math.min(y(b.nps), height / 2)}
          height={Math.max(Math.abs(y(b.nps) - height / 2), 1)}
          fill={b.nps >= 0 ? "#12b76a" : "#f04438"}
        >
          <title>{`${b.bucket}: NPS ${b.nps} (${b.responses} responses)`}</title>
        </rect>
      ))}
    </svg>
  );
};

dashboard.get("/dashboard/surveys/:survey_id", async (c) => {
  const survey_id = c.req.param("survey_id");
  const series = await npsSeries(readerOf(c.env), { survey_id, bucket: "week", since: null, until: null });
  return c.html(
    <Page title={`NPS of ${survey_id}`} nonce={nonceOf(c)}>
      {series.length === 0 ? <p>No NPS answers for this survey yet.</p> : <NpsChart series={series} />}
      <table>
        <tr>
          <th>Week</th>
          <th>Responses</th>
          <th>Promoters</th>
          <th>Passives</th>
          <th>Detractors</th>
          <th>NPS</th>
        </tr>
        {series.map((b) => (
          <tr>
            <td>{b.bucket}</td>
            <td>{b.responses}</td>
            <td>{b.promoters}</td>
            <td>{b.passives}</td>
            <td>{b.detractors}</td>
            <td>{b.nps}</td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

dashboard.get("/dashboard/responses", async (c) => {
  const { alerts } = await listAlerts(readerOf(c.env), {
    survey_id: null,
    user_system_id: null,
    since: null,
    until: null,
    after: null,
    limit: 50,
  });
  return c.html(
    <Page title="Latest responses" nonce={nonceOf(c)}>
      {alerts.length === 0 && <p>No responses yet.</p>}
      {alerts.map((a) => (
        <article class="response" id={`alert-${a.alert_id}`}>
          <h3>
            <a href={`/dashboard/responses/${encodeURIComponent(a.alert_id)}`}>
              {a.survey_name ?? a.survey_id} · {a.user_system_id ?? "anonymous"} · {a.submitted_at}
            </a>
          </h3>
          <table>
            {a.answers.map((n) => (
              <tr>
                <th>{n.title ?? `Question ${n.position + 1}`}</th>
                <td>{n.answer ?? "—"}</td>
              </tr>
            ))}
          </table>
          <p>
            {a.deliveries.map((d) => `${d.destination}: ${d.status}`).join(" · ") || "no deliveries"} ·{" "}
            <code>{a.alert_id}</code>
          </p>
        </article>
      ))}
    </Page>,
  );
});

dashboard.get("/dashboard/responses/:alert_id", async (c) => {
  const alert = await getAlert(readerOf(c.env), c.req.param("alert_id"));
  if (!alert) return c.html(<Page title="Not found" nonce={nonceOf(c)}><p>No response with that alert_id.</p></Page>, 404);
  return c.html(
    <Page title={alert.survey_name ?? alert.survey_id} nonce={nonceOf(c)}>
      <p id="response-meta">
        {alert.user_system_id ?? "anonymous"} · {alert.platform ?? "unknown platform"} · submitted {alert.submitted_at} ·{" "}
        <code>{alert.alert_id}</code>
      </p>
      <table id="answers">
        {alert.answers.map((n) => (
          <tr>
            <th>{n.title ?? `Question ${n.position + 1}`}</th>
            <td>{n.answer ?? "—"}</td>
          </tr>
        ))}
      </table>
      <h2>Deliveries</h2>
      <ul>
        {alert.deliveries.map((d) => (
          <li>
            {d.destination}: {d.status} ({d.attempts} attempts)
          </li>
        ))}
      </ul>
      <h2>Payload as received</h2>
      <pre>{alert.payload}</pre>
    </Page>,
  );
});

dashboard.get("/dashboard/quarantine", async (c) => {
  const rows = await listRejected(readerOf(c.env), { limit: 50, after: null });
  return c.html(
    <Page title="Quarantine" nonce={nonceOf(c)}>
      {c.req.query("result") && <p id="result">{c.req.query("result")}</p>}
      {rows.length === 0 && <p>Nothing in the quarantine: every body sent was accepted.</p>}
      <table>
        {rows.map((r) => (
          <tr>
            <td>{r.reason}</td>
            <td>{r.alert_id ?? "—"}</td>
            <td>
              {r.attempts}× · last {r.last_seen_at}
            </td>
            <td>
              <form method="post" action={`/dashboard/rejected/${r.id}/reprocess`}>
                <button type="submit">Reprocess</button>
              </form>
            </td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

dashboard.get("/dashboard/deliveries", async (c) => {
  const rows = await undeliveredDeliveries(readerOf(c.env), 100);
  return c.html(
    <Page title="Undelivered" nonce={nonceOf(c)}>
      {c.req.query("result") && <p id="result">{c.req.query("result")}</p>}
      {rows.length === 0 && <p>Every delivery has arrived.</p>}
      <table>
        {rows.map((d) => (
          <tr class="delivery">
            <td>
              <code>{d.alert_id}</code>
            </td>
            <td>{d.destination}</td>
            <td class="status">{d.status}</td>
            <td>
              {d.attempts} attempts · {d.last_error ?? ""}
            </td>
            <td>
              {d.status !== "pending" && (
                <form method="post" action={`/dashboard/alerts/${encodeURIComponent(d.alert_id)}/replay`}>
                  <input type="hidden" name="destination" value={d.destination} />
                  <button type="submit">Replay</button>
                </form>
              )}
            </td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

/** Runs an action through the `/api` route itself, so the dashboard adds no second implementation. */
async function callApi(c: Context<AppEnv>, path: string, body?: unknown): Promise<{ status: number; text: string }> {
  const { app } = await import("./app");
  const res = await app.fetch(
    new Request(new URL(path, c.req.url), {
      method: "POST",
      headers: { authorization: `Bearer ${c.env.ADMIN_TOKEN ?? ""}`, "content-type": "application/json" },
      body: body === undefined ? null : JSON.stringify(body),
    }),
    c.env,
    c.executionCtx,
  );
  return { status: res.status, text: await res.text() };
}

dashboard.post("/dashboard/rejected/:id/reprocess", async (c) => {
  const { status, text } = await callApi(c, `/api/rejected/${encodeURIComponent(c.req.param("id"))}/reprocess`);
  const result = status === 200 ? "Reprocessed: stored and enqueued." : `Still refused (${status}): ${text}`;
  return c.redirect(`/dashboard/quarantine?result=${encodeURIComponent(result)}`, 303);
});

dashboard.post("/dashboard/alerts/:alert_id/replay", async (c) => {
  const form = await c.req.parseBody();
  const destination = typeof form.destination === "string" ? form.destination : undefined;
  const { status, text } = await callApi(c, `/api/alerts/${encodeURIComponent(c.req.param("alert_id"))}/replay`, { destination });
  const result = status === 200 ? "Replayed: back to pending and enqueued." : `Replay failed (${status}): ${text}`;
  return c.redirect(`/dashboard/deliveries?result=${encodeURIComponent(result)}`, 303);
});
