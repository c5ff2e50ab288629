/** The overview: today's and the month's totals, the destinations' day, and the surveys, all from rollups. */
import { Hono } from "hono";
import type { FC } from "hono/jsx";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { destinationCounts, type DestinationCounts, listSurveys, totalsSince } from "../../../store/reads";
import { type ArchiveState, archiveState } from "../../../store/archive";

export const overview = new Hono<AppEnv>({ strict: false });

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
      <div class="card">
        <b>{totals.spooled}</b>through the spool
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

/** The archive in R2: how far it reaches, and its last error; a line on how to turn it on when unbound. */
const Archive: FC<{ state: ArchiveState | null }> = ({ state }) => (
  <section id="archive">
    <h2>Archive (Parquet in R2)</h2>
    {state === null ? (
      <p>Not bound: add the ARCHIVE R2 binding (bucket oneflow-archive) to keep every response as Parquet. See docs/archive.md.</p>
    ) : (
      <>
        <div class="cards">
          <div class="card">
            <b>{state.files}</b>archive files
          </div>
          <div class="card">
            <b>{state.responses}</b>archived responses ({state.answers} answers)
          </div>
          <div class="card">
            <b>{state.newest_submitted_at ?? "–"}</b>newest archived response
          </div>
          <div class="card">
            <b>{state.cursor_submitted_at === "" ? "–" : state.cursor_submitted_at}</b>archived through
          </div>
        </div>
        {state.last_error === null ? (
          <p>Last run: {state.last_run_at ?? "not yet"}.</p>
        ) : (
          <p class="error" id="archive-error">
            Last error ({state.last_error_at}): {state.last_error}
          </p>
        )}
      </>
    )}
  </section>
);

overview.get("/dashboard", async (c) => {
  const db = readerOf(c.env);
  const now = Date.now();
  const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
  const [today, month, surveys, destinations, archive] = await Promise.all([
    totalsSince(db, day(now)),
    totalsSince(db, day(now - 29 * 86_400_000)),
    listSurveys(db),
    destinationCounts(db, new Date(now - 23 * 3_600_000).toISOString().slice(0, 13)),
    c.env.ARCHIVE ? archiveState(db) : Promise.resolve(null),
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
      <Archive state={archive} />
      <h2>Surveys</h2>
      <table>
        <tr class="head">
          <th>Survey</th>
          <th>Responses</th>
          <th>Last response</th>
          <th>NPS</th>
        </tr>
        {surveys.map((s) => (
          <tr>
            <td data-label="Survey">
              <a href={`/dashboard/surveys/${encodeURIComponent(s.survey_id)}`}>{s.survey_name ?? s.survey_id}</a>
            </td>
            <td data-label="Responses">{s.responses}</td>
            <td data-label="Last response">{s.last_response_at}</td>
            <td data-label="NPS">{s.nps ?? "–"}</td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

