/**
 * A survey's page: what its responses say over a period (7, 30 or 90 days, or dates of one's
 * own), from the same insights as `GET /api/surveys/{id}/insights`. Three charts drawn in the
 * browser by uPlot (the NPS trend with its margin as a band and a zero line, the volume, the
 * score distribution by category), each with its table beside it (for screen readers and for
 * copying), a table per question and the latest reasons, linked to their responses. The Worker
 * only reads the insights and writes HTML; the charts' data travels as JSON in the page.
 */
import { Hono } from "hono";
import { raw } from "hono/html";
import type { FC } from "hono/jsx";
import * as v from "valibot";
import { bucketBands, type Insights, insightsOf } from "../../../insights";
import { surveyOf, windowFacets } from "../../../store/facets";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { UPLOT_CSS, UPLOT_JS } from "../assets";
import { nonceOf, Page } from "../layout";
import { Table } from "../table";

export const survey = new Hono<AppEnv>({ strict: false });

const PERIODS = [7, 30, 90] as const;
const day = v.pipe(v.string(), v.regex(/^\d{4}-\d{2}-\d{2}$/));
const periodQuery = v.object({
  days: v.optional(v.picklist(["7", "30", "90"])),
  since: v.optional(day),
  until: v.optional(day),
});

/** The period a page shows: the last 7, 30 or 90 days (up to now), or whole days of one's choosing. */
function periodOf(query: Record<string, string>, now: Date): { since: string; until: string; label: string; days: number | null } {
  const parsed = v.safeParse(periodQuery, query);
  const q = parsed.success ? parsed.output : {};
  const real = (d: string | undefined) => d !== undefined && Number.isFinite(Date.parse(`${d}T00:00:00.000Z`)) && new Date(`${d}T00:00:00.000Z`).toISOString().startsWith(d);
  // Dates of one's own: real ones, in order, at most about three years apart (else the last 90 days).
  if (real(q.since) && real(q.until) && q.since !== undefined && q.until !== undefined && q.since <= q.until && Date.parse(q.until) - Date.parse(q.since) <= 1_095 * 86_400_000) {
    const until = new Date(Date.parse(`${q.until}T00:00:00.000Z`) + 86_400_000).toISOString();
    return { since: `${q.since}T00:00:00.000Z`, until, label: `${q.since} to ${q.until}`, days: null };
  }
  const days = Number(q.days ?? 90);
  return { since: new Date(now.getTime() - days * 86_400_000).toISOString(), until: now.toISOString(), label: `the last ${days} days`, days };
}

const CATEGORY_COLOUR = { detractor: "#f04438", passive: "#98a2b3", promoter: "#12b76a" } as const;
const categoryOf = (score: number) => (score >= 9 ? "promoter" : score >= 7 ? "passive" : "detractor");

/** Draws the charts from the page's JSON with uPlot; the tables beside them hold the same numbers. */
const DRAW = `(() => {
  const data = JSON.parse(document.getElementById("insights-data").textContent);
  const width = (el) => Math.max(280, el.clientWidth);
  const secs = data.series.map((b) => Date.parse(b.bucket + "T00:00:00Z") / 1000);
  const charts = {};
  const band = (u) => [{ series: [2, 3], fill: "rgba(70,110,230,0.15)" }];
  const trendEl = document.getElementById("nps-chart");
  charts.trend = new uPlot({
    title: "NPS", width: width(trendEl), height: 220,
    scales: { y: { range: [-100, 100] } },
    axes: [{}, { label: "NPS" }],
    series: [{ label: data.bucket === "week" ? "Week of" : "Day" },
      { label: "NPS", stroke: "#2e5bd8", width: 2, points: { show: true } },
      { label: "margin, high", stroke: "transparent", points: { show: false } },
      { label: "margin, low", stroke: "transparent", points: { show: false } },
      { label: "zero", stroke: "#667085", dash: [4, 4], points: { show: false } }],
    bands: band(),
  }, [secs, data.bands.map((b) => b.nps), data.bands.map((b) => b.high), data.bands.map((b) => b.low), secs.map(() => 0)], trendEl);
  const volumeEl = document.getElementById("volume-chart");
  charts.volume = new uPlot({
    title: "Responses", width: width(volumeEl), height: 160,
    axes: [{}, { label: "responses" }],
    series: [{ label: data.bucket === "week" ? "Week of" : "Day" },
      { label: "responses", stroke: "#2e5bd8", fill: "rgba(46,91,216,0.35)", paths: uPlot.paths.bars({ size: [0.8] }), points: { show: false } }],
  }, [secs, data.series.map((b) => b.responses)], volumeEl);
  const scoresEl = document.getElementById("scores-chart");
  if (scoresEl && data.scores.length > 0) {
    const xs = data.scores.map((s) => Number(s.answer));
    const only = (cat) => data.scores.map((s) => (s.category === cat ? s.count : null));
    const bars = (cat, colour) => ({ label: cat + "s", stroke: colour, fill: colour, paths: uPlot.paths.bars({ size: [0.8], align: 0 }), points: { show: false } });
    charts.scores = new uPlot({
      title: "Scores", width: width(scoresEl), height: 180,
      scales: { x: { time: false, range: [-0.5, 10.5] } },
      axes: [{ label: "score", splits: () => xs }, { label: "responses" }],
      series: [{ label: "score" }, bars("detractor", ${JSON.stringify(CATEGORY_COLOUR.detractor)}), bars("passive", ${JSON.stringify(CATEGORY_COLOUR.passive)}), bars("promoter", ${JSON.stringify(CATEGORY_COLOUR.promoter)})],
    }, [xs, only("detractor"), only("passive"), only("promoter")], scoresEl);
  }
  window.insightsCharts = charts;
})();`;

const Period: FC<{ base: string; period: ReturnType<typeof periodOf> }> = ({ base, period }) => (
  <nav class="period" aria-label="Period">
    {PERIODS.map((d) => (period.days === d ? <strong>{d} days</strong> : <a href={`${base}?days=${d}`}>{d} days</a>))}
    <form method="get" action={base}>
      <label>
        from <input type="date" name="since" value={period.since.slice(0, 10)} required />
      </label>{" "}
      <label>
        to <input type="date" name="until" value={new Date(Date.parse(period.until) - 1).toISOString().slice(0, 10)} required />
      </label>{" "}
      <button type="submit">Show</button>
    </form>
  </nav>
);

/** A question's answers with their counts and shares. */
const Distribution: FC<{ rows: { answer: string; count: number }[] }> = ({ rows }) => {
  const total = rows.reduce((n, x) => n + x.count, 0);
  const share = (count: number) => (total === 0 ? 0 : Math.round((100 * count) / total));
  return (
    <Table
      rows={rows}
      columns={[
        { label: "Answer", cell: (d) => d.answer },
        { label: "Responses", cell: (d) => d.count },
        { label: "Share", cell: (d) => <><meter min={0} max={100} value={share(d.count)} /> {share(d.count)} %</> },
      ]}
    />
  );
};

const Questions: FC<{ questions: Insights["questions"] }> = ({ questions }) => (
  <>
    {questions.map((q) => (
      <section class="question">
        <h3>
          {q.position + 1}. {q.title ?? "(untitled)"} <small>({q.type}, {q.answered} answered)</small>
        </h3>
        {q.latest !== undefined ? (
          q.latest.length === 0 ? (
            <p>No answers in this period.</p>
          ) : (
            <Table
              rows={q.latest}
              columns={[
                { label: "Answer", cell: (t) => <a href={`/dashboard/responses/${encodeURIComponent(t.alert_id)}`}>{t.answer}</a> },
                { label: "Category", cell: (t) => t.category ?? "no NPS" },
                { label: "Submitted", cell: (t) => t.submitted_at },
              ]}
            />
          )
        ) : (
          <Distribution rows={q.distribution ?? []} />
        )}
      </section>
    ))}
  </>
);

survey.get("/dashboard/surveys/:survey_id", async (c) => {
  const survey_id = c.req.param("survey_id");
  const base = `/dashboard/surveys/${encodeURIComponent(survey_id)}`;
  const db = readerOf(c.env);
  const found = await surveyOf(db, survey_id);
  const nonce = nonceOf(c);
  if (found === null) {
    c.status(404);
    return c.html(
      <Page title="Survey not found" nonce={nonce}>
        <p>No response of this survey is stored. <a href="/dashboard">Back to the overview</a>.</p>
      </Page>,
    );
  }
  const period = periodOf(c.req.query(), new Date());
  const window = { since: period.since, until: period.until, bucket: period.days !== null && period.days <= 30 ? ("day" as const) : ("week" as const) };
  const { facets, texts } = await windowFacets(db, { survey_id, since: window.since, until: window.until, facets_through: found.facets_through, facets_hour: found.facets_hour });
  const insights = insightsOf(facets, texts, window);
  const nps = insights.questions.find((q) => q.type === "nps");
  const scores = (nps?.distribution ?? []).map((d) => ({ ...d, category: categoryOf(Number(d.answer)) }));
  const data = { bucket: window.bucket, series: insights.series, bands: bucketBands(facets, window), scores };
  const title = found.name ?? survey_id;
  const moe = insights.nps.margin_of_error;
  return c.html(
    <Page
      title={title}
      nonce={nonce}
      head={
        <>
          <link rel="stylesheet" href={UPLOT_CSS} nonce={nonce} />
          <style nonce={nonce}>{`.period{display:flex;flex-wrap:wrap;gap:.75rem;align-items:center;margin:.5rem 0}.period form{display:inline}
.chart{background:#fff;margin:.75rem 0;padding:.5rem;overflow:hidden}.pair{display:grid;grid-template-columns:2fr 1fr;gap:.75rem;align-items:start}
@media (max-width:40rem){.pair{grid-template-columns:1fr}}details{margin:.25rem 0 1rem}meter{width:6rem}
#nps-chart .u-legend .u-series:nth-child(n+3){display:none}`}</style>
        </>
      }
    >
      <p>
        Survey <code>{survey_id}</code>, {period.label}. <a href={`/api/surveys/${encodeURIComponent(survey_id)}/insights?since=${period.since}&until=${period.until}&bucket=${window.bucket}`}>As JSON</a> ·{" "}
        <a href={`/api/export.csv?survey_id=${encodeURIComponent(survey_id)}&since=${period.since}&until=${period.until}`}>Export CSV</a>
      </p>
      <Period base={base} period={period} />
      <div class="cards">
        <div class="card">
          <b id="responses-total">{insights.responses}</b>responses
        </div>
        <div class="card">
          <b id="nps-score">{insights.nps.score ?? "–"}</b>NPS{moe === null ? "" : ` ± ${moe}`}
        </div>
        <div class="card">
          <b>{insights.nps.promoters}</b>promoters
        </div>
        <div class="card">
          <b>{insights.nps.passives}</b>passives
        </div>
        <div class="card">
          <b>{insights.nps.detractors}</b>detractors
        </div>
      </div>
      <h2>NPS and responses by {window.bucket}</h2>
      <div class="pair">
        <div>
          <div class="chart" id="nps-chart" role="img" aria-label={`NPS by ${window.bucket}, with its 95 % margin as a band`} />
          <div class="chart" id="volume-chart" role="img" aria-label={`Responses by ${window.bucket}`} />
        </div>
        <Table id="series-table" rows={insights.series} columns={[{ label: window.bucket === "week" ? "Week of" : "Day", cell: (b) => b.bucket }, { label: "Responses", cell: (b) => b.responses }, { label: "NPS", cell: (b) => b.nps ?? "–" }]} />
      </div>
      {scores.length > 0 && (
        <>
          <h2>Scores</h2>
          <div class="pair">
            <div class="chart" id="scores-chart" role="img" aria-label="Responses by score, coloured by category" />
            <Table id="scores-table" rows={scores} columns={[{ label: "Score", cell: (r) => r.answer }, { label: "Responses", cell: (r) => r.count }, { label: "Category", cell: (r) => r.category }]} />
          </div>
        </>
      )}
      <h2>Questions</h2>
      <Questions questions={insights.questions} />
      <h2>By platform and trigger event</h2>
      <div class="pair">
        <Table id="platform-table" rows={insights.by_platform} columns={[{ label: "Platform", cell: (p) => p.platform ?? "(none)" }, { label: "Responses", cell: (p) => p.responses }, { label: "NPS", cell: (p) => p.nps ?? "–" }]} />
        <Table id="event-table" rows={insights.by_trigger_event} columns={[{ label: "Trigger event", cell: (e) => e.event ?? "(none)" }, { label: "Responses", cell: (e) => e.responses }, { label: "NPS", cell: (e) => e.nps ?? "–" }]} />
      </div>
      <script type="application/json" id="insights-data" nonce={nonce}>
        {raw(JSON.stringify(data).replace(/</g, "\\u003c"))}
      </script>
      <script src={UPLOT_JS} nonce={nonce} />
      <script nonce={nonce}>{raw(DRAW)}</script>
    </Page>,
  );
});
