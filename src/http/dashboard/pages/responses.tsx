/** The latest responses, and one response's page with its deliveries and raw payload. */
import { Hono } from "hono";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { getAlert, listAlerts } from "../../../store/reads";

export const responses = new Hono<AppEnv>({ strict: false });

responses.get("/dashboard/responses", async (c) => {
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

responses.get("/dashboard/responses/:alert_id", async (c) => {
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

