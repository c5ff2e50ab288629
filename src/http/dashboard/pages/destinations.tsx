/** Each destination's health: breaker state, last error, what waits, its last 24 hours; Resume now for a paused one. */
import { Hono } from "hono";
import { destinationsOf } from "../../../fanout/configured";
import { cancelDeliveries, destinationsReport, resumeDestination } from "../../../operations";
import { replayDeps } from "../../api";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";

export const destinations = new Hono<AppEnv>({ strict: false });

destinations.get("/dashboard/destinations", async (c) => {
  const { config } = await destinationsOf(c.env);
  const rows = await destinationsReport(readerOf(c.env, c.req.query("result") !== undefined), config, new Date());
  return c.html(
    <Page title="Destinations" nonce={nonceOf(c)}>
      {c.req.query("result") && <p id="result">{c.req.query("result")}</p>}
      {!config.ok && <p class="error">DESTINATIONS is malformed: {config.error}</p>}
      {config.ok && rows.length === 0 && <p>No destination is configured (DESTINATIONS).</p>}
      <table>
        <tr>
          <th>Destination</th>
          <th>State</th>
          <th>Last error</th>
          <th>Pending</th>
          <th>Delivered 24 h</th>
          <th>Failed 24 h</th>
          <th />
        </tr>
        {rows.map((d) => (
          <tr class="destination" id={`destination-${d.name}`}>
            <td>{d.name}</td>
            <td class={`state ${d.state === "paused" ? "error" : "ok"}`}>
              {d.state}
              {d.state === "paused" && d.paused_until ? ` (next try ${d.paused_until})` : ""}
              {d.consecutive_failures > 0 ? ` · ${d.consecutive_failures} failures in a row` : ""}
            </td>
            <td>{d.last_error ?? "—"}</td>
            <td class="pending">{d.pending}</td>
            <td>{d.delivered_24h}</td>
            <td>{d.failed_24h}</td>
            <td>
              {d.state === "paused" && (
                <form method="post" action={`/dashboard/destinations/${encodeURIComponent(d.name)}/resume`}>
                  <button type="submit">Resume now</button>
                </form>
              )}
              {d.pending > 0 && (
                <form method="post" action={`/dashboard/destinations/${encodeURIComponent(d.name)}/cancel`}>
                  <button type="submit" class="cancel">Cancel pending</button>
                </form>
              )}
            </td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

destinations.post("/dashboard/destinations/:name/resume", async (c) => {
  const result = await resumeDestination(await replayDeps(c), c.req.param("name"));
  const text = !result.ok ? "No destination of that name." : result.resumed ? "Resumed: what waited is being sent." : "It was not paused.";
  return c.redirect(`/dashboard/destinations?result=${encodeURIComponent(text)}`, 303);
});

destinations.post("/dashboard/destinations/:name/cancel", async (c) => {
  const result = await cancelDeliveries(await replayDeps(c), { destination: c.req.param("name") });
  const text = `Cancelled ${result.cancelled} pending ${result.cancelled === 1 ? "delivery" : "deliveries"}${result.more ? "; more are left, cancel again" : ""}.`;
  return c.redirect(`/dashboard/destinations?result=${encodeURIComponent(text)}`, 303);
});
