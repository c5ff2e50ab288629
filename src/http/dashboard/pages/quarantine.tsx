/**
 * The quarantine: what was refused, with a page per body (its issues and the body as kept) and
 * a Reprocess button where reprocessing can succeed (the same operation as
 * POST /api/rejected/:id/reprocess).
 */
import { Hono } from "hono";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { reprocessRejected } from "../../../operations";
import { getRejected, listRejected, type RejectedRow } from "../../../store/rejected";
import { ingestContext } from "../../webhook";

export const quarantine = new Hono<AppEnv>({ strict: false });

/** What each refusal means, in a line a newcomer understands. */
const REASONS: Record<string, string> = {
  invalid_payload: "JSON that is not a 1Flow response",
  invalid_json: "not JSON",
  unsupported_media_type: "not sent as JSON",
  payload_too_large: "too large to keep",
  alert_id_conflict: "a different body under a stored alert_id",
};

/**
 * Whether Reprocess can store this body: it was kept, it is JSON, and it was refused for its
 * shape or its content type (a changed schema may take it now). A conflict stays a conflict,
 * and a body that is not JSON never parses.
 */
export function canReprocess(row: Pick<RejectedRow, "reason" | "body">): boolean {
  if (typeof row.body !== "string" || (row.reason !== "invalid_payload" && row.reason !== "unsupported_media_type")) return false;
  try {
    JSON.parse(row.body);
    return true;
  } catch {
    return false;
  }
}

/** The issues a refusal recorded, as "path: message" lines. */
function issuesOf(detail: string | null): string[] {
  try {
    const parsed = JSON.parse(detail ?? "null") as { issues?: { path: string; message: string }[]; message?: string } | null;
    if (parsed?.issues) return parsed.issues.map((i) => `${i.path || "(root)"}: ${i.message}`);
    return parsed?.message ? [parsed.message] : [];
  } catch {
    return [];
  }
}

const ReprocessButton = ({ id }: { id: string }) => (
  <form method="post" action={`/dashboard/rejected/${id}/reprocess`}>
    <button type="submit">Reprocess</button>
  </form>
);

quarantine.get("/dashboard/quarantine", async (c) => {
  const rows = await listRejected(readerOf(c.env, c.req.query("result") !== undefined), { limit: 50, after: null });
  return c.html(
    <Page title="Quarantine" nonce={nonceOf(c)}>
      {c.req.query("result") && <p id="result">{c.req.query("result")}</p>}
      {rows.length === 0 && <p>Nothing in the quarantine: every body sent was accepted.</p>}
      {rows.length > 0 && (
        <table id="quarantine">
          <tr class="head">
            <th>Reason</th>
            <th>alert_id</th>
            <th>Attempts</th>
            <th>Last seen</th>
            <th>Body</th>
            <th>Action</th>
          </tr>
          {rows.map((r) => (
            <tr>
              <td data-label="Reason">
                {r.reason} <small>({REASONS[r.reason] ?? "refused"})</small>
              </td>
              <td data-label="alert_id">{r.alert_id ?? "—"}</td>
              <td data-label="Attempts">{r.attempts}</td>
              <td data-label="Last seen">{r.last_seen_at}</td>
              <td data-label="Body">
                <a href={`/dashboard/quarantine/${r.id}`}>body and issues</a>
              </td>
              <td data-label="Action">{canReprocess(r) ? <ReprocessButton id={r.id} /> : "—"}</td>
            </tr>
          ))}
        </table>
      )}
    </Page>,
  );
});

quarantine.get("/dashboard/quarantine/:id", async (c) => {
  const row = await getRejected(readerOf(c.env), c.req.param("id"));
  if (!row) return c.html(<Page title="Not found" nonce={nonceOf(c)}><p>No quarantined body with that id.</p></Page>, 404);
  const issues = issuesOf(row.detail);
  return c.html(
    <Page title={`Quarantined: ${row.reason}`} nonce={nonceOf(c)}>
      <p id="quarantine-meta">
        {REASONS[row.reason] ?? "refused"} · {row.attempts} attempts · first {row.first_seen_at} · last {row.last_seen_at} · {row.size} bytes
      </p>
      <h2>Issues</h2>
      {issues.length === 0 ? <p>None recorded.</p> : (
        <ul id="issues">
          {issues.map((i) => (
            <li>{i}</li>
          ))}
        </ul>
      )}
      <h2>Body as received</h2>
      {row.body === null ? <p>Not kept: it was over the size limit.</p> : typeof row.body === "string" ? <pre id="body">{row.body}</pre> : <p>Binary, {row.size} bytes.</p>}
      {canReprocess(row) && <ReprocessButton id={row.id} />}
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
