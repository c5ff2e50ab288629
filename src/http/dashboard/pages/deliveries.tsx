/** Deliveries not delivered, with a Replay button (the same operation as POST /api/alerts/:id/replay). */
import { Hono } from "hono";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { replayAlert } from "../../../operations";
import { undeliveredDeliveries } from "../../../store/reads";
import { replayDeps } from "../../api";

export const deliveries = new Hono<AppEnv>({ strict: false });

deliveries.get("/dashboard/deliveries", async (c) => {
  const rows = await undeliveredDeliveries(readerOf(c.env, c.req.query("result") !== undefined), 100);
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

deliveries.post("/dashboard/alerts/:alert_id/replay", async (c) => {
  const form = await c.req.parseBody();
  const destination = typeof form.destination === "string" ? form.destination : undefined;
  const result = await replayAlert(await replayDeps(c), { alert_id: c.req.param("alert_id"), destination, force: false });
  const text = result.ok ? "Replayed: back to pending and enqueued." : `Replay failed: ${result.error}`;
  return c.redirect(`/dashboard/deliveries?result=${encodeURIComponent(text)}`, 303);
});
