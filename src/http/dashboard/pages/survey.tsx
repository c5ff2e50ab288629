/** A survey's page: its NPS per week, as an SVG chart and a table. */
import { Hono } from "hono";
import type { FC } from "hono/jsx";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { npsSeries } from "../../../store/reads";

export const survey = new Hono<AppEnv>({ strict: false });

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

survey.get("/dashboard/surveys/:survey_id", async (c) => {
  const survey_id = c.req.param("survey_id");
  const series = await npsSeries(readerOf(c.env), { survey_id, bucket: "week", since: null, until: null });
  return c.html(
    <Page title={`NPS of ${survey_id}`} nonce={nonceOf(c)}>
      {series.length === 0 ? <p>No NPS answers for this survey yet.</p> : <NpsChart series={series} />}
      <table>
        <tr class="head">
          <th>Week</th>
          <th>Responses</th>
          <th>Promoters</th>
          <th>Passives</th>
          <th>Detractors</th>
          <th>NPS</th>
        </tr>
        {series.map((b) => (
          <tr>
            <td data-label="Week">{b.bucket}</td>
            <td data-label="Responses">{b.responses}</td>
            <td data-label="Promoters">{b.promoters}</td>
            <td data-label="Passives">{b.passives}</td>
            <td data-label="Detractors">{b.detractors}</td>
            <td data-label="NPS">{b.nps}</td>
          </tr>
        ))}
      </table>
    </Page>,
  );
});

