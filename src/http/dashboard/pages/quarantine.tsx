/** The quarantine, with a Reprocess button per body (the same operation as POST /api/rejected/:id/reprocess). */
import { Hono } from "hono";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { reprocessRejected } from "../../../operations";
import { listRejected } from "../../../store/rejected";
import { ingestContext } from "../../webhook";

export const quarantine = new Hono<AppEnv>({ strict: false });

quarantine.get("/dashboard/quarantine", async (c) => {
  const rows = await listRejected(readerOf(c.env, c.req.query("result") !== undefined), { limit: 50, after: null });
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

quarantine.post("/dashboard/rejected/:id/reprocess", async (c) => {
  const result = await reprocessRejected(ingestContext(c), c.req.param("id"));
  const text = result.ok
    ? "Reprocessed: stored and enqueued."
    : result.error === "refused"
      ? `Still refused: ${result.outcome.outcome}${"issues" in result.outcome ? ` (${result.outcome.issues.map((i) => `${i.path}: ${i.message}`).join("; ")})` : ""}`
      : `Not reprocessed: ${result.error === "too_large" ? "the body was too large to keep" : "no such body"}`;
  return c.redirect(`/dashboard/quarantine?result=${encodeURIComponent(text)}`, 303);
});
