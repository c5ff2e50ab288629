/** Deliveries not delivered, with a Replay button (the same operation as POST /api/alerts/:id/replay). */
import { Hono } from "hono";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { replayAlert } from "../../../operations";
import { undeliveredDeliveries } from "../../../store/reads";
import { replayDeps } from "../../api";
import { destinationsOf } from "../../../fanout/configured";

export const deliveries = new Hono<AppEnv>({ strict: false });

deliveries.get("/dashboard/deliveries", async (c) => {
  const reader = readerOf(c.env, c.req.query("result") !== undefined);
  const [rows, { config }] = await Promise.all([undeliveredDeliveries(reader, 100), destinationsOf(c.env)]);
  const none = config.ok && config.destinations.length === 0;
  return c.html(
    <Page title="Undelivered" nonce={nonceOf(c)}>
      {c.req.query("result") && <p id="result">{c.req.query("result")}</p>}
      {none ? (
        <p id="no-destinations">
          No destination exists yet, so nothing is delivered anywhere. <a href="/dashboard/destinations">Add a destination</a>.
        </p>
      ) : (
        rows.length === 0 && <p>Every delivery has arrived.</p>
      )}
      {rows.length > 0 && (
        <table id="undelivered">
          <tr class="head">
            <th>alert_id</th>
            <th>Destination</th>
            <th>Status</th>
            <th>Attempts</th>
            <th>Last error</th>
            <th>Action</th>
          </tr>
          {rows.map((d) => (
            <tr class="delivery">
              <td data-label="alert_id">
                <code>{d.alert_id}</code>
              </td>
              <td data-label="Destination">{d.destination}</td>
              <td data-label="Status" class="status">
                {d.status}
              </td>
              <td data-label="Attempts">{d.attempts}</td>
              <td data-label="Last error">{d.last_error ?? ""}</td>
              <td data-label="Action">
                {d.status !== "pending" ? (
                  <form method="post" action={`/dashboard/alerts/${encodeURIComponent(d.alert_id)}/replay`}>
                    <input type="hidden" name="destination" value={d.destination} />
                    <button type="submit">Replay</button>
                  </form>
                ) : (
                  "—"
                )}
              </td>
            </tr>
          ))}
        </table>
      )}
    </Page>,
  );
});

deliveries.post("/dashboard/alerts/:alert_id/replay", async (c) => {
  const form = await c.req.parseBody();
  const destination = typeof form.destination === "string" ? form.destination : undefined;
  const result = await replayAlert(await replayDeps(c), { alert_id: c.req.param("alert_id"), destination, force: false });
  const text = result.ok ? "Replayed: back to pending and enqueued." : `Replay failed: ${result.error}`;
  return c.redirect(`/dashboard/deliveries?result=${encodeURIComponent(text)}`, 303);
});
