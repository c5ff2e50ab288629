/**
 * The overview: what arrived today and in 30 days, 30-day sparklines of the responses and of each
 * destination's deliveries (uPlot, each with its table), the destinations' day, the archive, and
 * the surveys, all from rollups: rows that grow with days, surveys and destinations, never with
 * the responses stored.
 */
import { Hono } from "hono";
import { raw } from "hono/html";
import type { FC } from "hono/jsx";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { arrivalsByDay, destinationCounts, type DestinationCounts, destinationDays, ingestSince, listSurveys, type Totals } from "../../../store/reads";
import { UPLOT_CSS, UPLOT_JS } from "../assets";
import { Table } from "../table";
import { type ArchiveState, archiveState } from "../../../store/archive";

export const overview = new Hono<AppEnv>({ strict: false });

const TotalCards: FC<{ label: string; totals: Totals }> = ({ label, totals }) => (
  <section>
    <h2>{label}</h2>
    <div class="cards">
      <div class="card">
        <b>{totals.responses}</b>responses arrived
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

const SPARK_DAYS = 30;

/** One sparkline: a day per point over the last 30 days, drawn by uPlot, with its numbers in a table. */
interface Spark {
  id: string;
  label: string;
  days: string[];
  series: { label: string; colour: string; values: number[] }[];
}

/** The last SPARK_DAYS UTC days, oldest first, ending today. */
function lastDays(now: number): string[] {
  return Array.from({ length: SPARK_DAYS }, (_, i) => new Date(now - (SPARK_DAYS - 1 - i) * 86_400_000).toISOString().slice(0, 10));
}

/** Draws every sparkline of the page from its JSON: no axes, a day per point. */
const DRAW_SPARKS = `(() => {
  const sparks = JSON.parse(document.getElementById("sparks-data").textContent);
  window.overviewCharts = sparks.map((s) => {
    const el = document.getElementById(s.id);
    const xs = s.days.map((d) => Date.parse(d + "T00:00:00Z") / 1000);
    return new uPlot({
      width: Math.min(320, Math.max(200, el.clientWidth)), height: 56, legend: { show: false }, cursor: { show: false },
      axes: [{ show: false }, { show: false }], scales: { x: { time: true }, y: { range: (u, min, max) => [-0.05 * Math.max(1, max), Math.max(1, max) * 1.1] } },
      series: [{}].concat(s.series.map((x) => ({ label: x.label, stroke: x.colour, width: 1.5, fill: x.colour + "22", points: { show: false } }))),
    }, [xs].concat(s.series.map((x) => x.values)), el);
  });
})();`;

const Sparkline: FC<{ spark: Spark }> = ({ spark }) => {
  const total = (i: number) => spark.series[i]?.values.reduce((n, v) => n + v, 0) ?? 0;
  const rows = spark.days.map((day, i) => ({ day, values: spark.series.map((s) => s.values[i] ?? 0) }));
  return (
    <div class="card spark-card">
      <b>{total(0)}</b>
      {spark.label}, last {SPARK_DAYS} days{spark.series.length > 1 ? ` · ${total(1)} ${spark.series[1]?.label}` : ""}
      <div class="spark" id={spark.id} role="img" aria-label={`${spark.label} per day, last ${SPARK_DAYS} days`} />
      <details>
        <summary>As a table</summary>
        <Table rows={rows} columns={[{ label: "Day", cell: (r) => r.day }, ...spark.series.map((s, i) => ({ label: s.label, cell: (r: (typeof rows)[number]) => r.values[i] ?? 0 }))]} />
      </details>
    </div>
  );
};

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
  const days = lastDays(now);
  const first = days[0] ?? day(now);
  const [ingest, surveys, destinations, archive, arrivals, destinationDaily] = await Promise.all([
    ingestSince(db, first),
    listSurveys(db),
    destinationCounts(db, new Date(now - 23 * 3_600_000).toISOString().slice(0, 13)),
    c.env.ARCHIVE ? archiveState(db) : Promise.resolve(null),
    arrivalsByDay(db, first),
    destinationDays(db, first),
  ]);
  // Today's and the 30 days' totals, from the same day rows as the sparkline.
  const totalsFrom = (since: string): Totals => {
    const sum = <T extends { day: string }>(rows: T[], value: (row: T) => number) => rows.filter((r) => r.day >= since).reduce((n, r) => n + value(r), 0);
    return {
      responses: sum(arrivals, (r) => r.responses),
      duplicates: sum(ingest, (r) => r.duplicates),
      rejected: sum(ingest, (r) => r.rejected),
      spooled: sum(ingest, (r) => r.spooled),
    };
  };
  const today = totalsFrom(day(now));
  const month = totalsFrom(first);
  const byDay = <T extends { day: string }>(rows: T[], value: (row: T) => number) => {
    const values = new Map(rows.map((r) => [r.day, value(r)]));
    return days.map((d) => values.get(d) ?? 0);
  };
  const names = [...new Set([...destinations.map((d) => d.destination), ...destinationDaily.map((d) => d.destination)])].sort();
  const sparks: Spark[] = [
    { id: "spark-responses", label: "responses arrived", days, series: [{ label: "responses", colour: "#2e5bd8", values: byDay(arrivals, (r) => r.responses) }] },
    ...names.map((name, i) => {
      const rows = destinationDaily.filter((d) => d.destination === name);
      return {
        id: `spark-destination-${i}`,
        label: `${name}: delivered`,
        days,
        series: [
          { label: "delivered", colour: "#12b76a", values: byDay(rows, (r) => r.delivered) },
          { label: "failed attempts", colour: "#f04438", values: byDay(rows, (r) => r.failed) },
        ],
      };
    }),
  ];
  const origin = new URL(c.req.url).origin;
  const nonce = nonceOf(c);
  return c.html(
    <Page
      title="Overview"
      nonce={nonce}
      head={
        <>
          <link rel="stylesheet" href={UPLOT_CSS} nonce={nonce} />
          <style nonce={nonce}>{`.spark-card{min-width:14rem;flex:1 1 14rem}.spark{height:56px;margin:.25rem 0}details summary{cursor:pointer;color:#475467}`}</style>
        </>
      }
    >
      {surveys.length === 0 ? (
        <section id="empty">
          <p>No survey response has arrived yet. To receive them, in 1Flow open Settings → Project Settings →
            Project webhook alerts, enter</p>
          <pre>{origin}/webhooks/1flow/&lt;WEBHOOK_SECRET&gt;</pre>
          <p>tick the checkbox that enables alerts, and Save.</p>
        </section>
      ) : null}
      <TotalCards label="Today (UTC)" totals={today} />
      <TotalCards label="Last 30 days" totals={month} />
      <section id="sparklines">
        <h2>Last 30 days, by day (UTC)</h2>
        <div class="cards">
          {sparks.map((spark) => (
            <Sparkline spark={spark} />
          ))}
        </div>
      </section>
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
      <script type="application/json" id="sparks-data" nonce={nonce}>
        {raw(JSON.stringify(sparks).replace(/</g, "\\u003c"))}
      </script>
      <script src={UPLOT_JS} nonce={nonce} />
      <script nonce={nonce}>{raw(DRAW_SPARKS)}</script>
    </Page>,
  );
});

