/**
 * Destinations: each one's health (breaker state, last error, what waits, its last 24 hours)
 * with Resume now and Cancel pending; and the ones managed here (not DESTINATIONS) added,
 * edited, enabled or disabled, deleted after a confirmation, and sent a test. The form's
 * transform box previews its body live against the latest matching response.
 */
import type { Context } from "hono";
import type { FC } from "hono/jsx";
import { Hono } from "hono";
import { raw } from "hono/html";
import { destinationsOf } from "../../../fanout/configured";
import { buildRequest } from "../../../fanout/deliver";
import { type Destination, entrySchema, FORMATS, METHODS, wantsStatically } from "../../../fanout/destinations";
import { deliveryTimeoutMs } from "../../../fanout/deliver";
import {
  MASK,
  patchDestinationEntry,
  putDestinationEntry,
  removeDestination,
  testDelivery,
} from "../../../manage-destinations";
import { cancelDeliveries, destinationsReport, resumeDestination } from "../../../operations";
import { latestAlerts } from "../../../store/deliveries";
import { type Backfill, latestBackfills } from "../../../store/backfills";
import { beginBackfill, endBackfill } from "../../../backfill";
import { validate, type Issue } from "../../../validation";
import { manageDeps, replayDeps } from "../../api";
import type { AppEnv } from "../../app-env";
import { readerOf } from "../../reader";
import { nonceOf, Page } from "../layout";
import { RECIPES, recipeFields } from "../recipes";

export const destinations = new Hono<AppEnv>({ strict: false });

const back = (c: Context<AppEnv>, text: string) => c.redirect(`/dashboard/destinations?result=${encodeURIComponent(text)}`, 303);

/** A destination's latest backfill: a progress bar while it runs, its outcome after. */
const BackfillProgress: FC<{ backfill: Backfill | undefined }> = ({ backfill }) => {
  if (backfill === undefined) return null;
  const since = backfill.since.slice(0, 10);
  if (backfill.state !== "running") {
    return (
      <small class="backfill">
        History since {since}: {backfill.state}, {backfill.delivered} of {backfill.total ?? backfill.sent} delivered
        {backfill.failed > 0 ? `, ${backfill.failed} failed` : ""}
        {(backfill.archived_only ?? 0) > 0 && backfill.total !== null ? `, ${backfill.archived_only} only in the archive (not sent)` : ""}.
      </small>
    );
  }
  return (
    <div class="backfill">
      <label>
        Sending history since {since}: {backfill.delivered} of {backfill.total ?? `${backfill.sent}+`} delivered{" "}
        <progress max={Math.max(1, backfill.total ?? backfill.sent)} value={backfill.delivered} />
      </label>
    </div>
  );
};

destinations.get("/dashboard/destinations", async (c) => {
  const { config } = await destinationsOf(c.env);
  const db = readerOf(c.env, c.req.query("result") !== undefined);
  const [rows, backfills] = await Promise.all([destinationsReport(db, config, new Date()), latestBackfills(db)]);
  const list = config.ok ? config.destinations : [];
  const running = backfills.some((b) => b.state === "running");
  return c.html(
    <Page title="Destinations" nonce={nonceOf(c)} head={running ? <meta http-equiv="refresh" content="5" /> : undefined}>
      {c.req.query("result") && <p id="result">{c.req.query("result")}</p>}
      {!config.ok && <p class="error">The destinations are malformed: {config.error}</p>}
      {config.ok && rows.length === 0 && <p>No destination yet.</p>}
      <p>
        <a href="/dashboard/destinations/new" id="add-destination">Add a destination</a>
      </p>
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
        {rows.map((d, i) => {
          const dest = list[i];
          const managed = dest?.source === "api";
          const path = encodeURIComponent(d.name);
          return (
            <tr class="destination" id={`destination-${d.name}`}>
              <td>
                {d.name}
                <br />
                <small>
                  {dest?.format} · {managed ? "managed here" : "DESTINATIONS"}
                </small>
              </td>
              <td class={`state ${d.state === "paused" || dest?.enabled === false ? "error" : "ok"}`}>
                {dest?.enabled === false ? "disabled" : d.state}
                {d.state === "paused" && d.paused_until ? ` (next try ${d.paused_until})` : ""}
                {d.consecutive_failures > 0 ? ` · ${d.consecutive_failures} failures in a row` : ""}
                {d.held_until !== null ? ` · held until ${d.held_until} (it asked to wait)` : ""}
                {dest?.rate_limit ? ` · at most ${dest.rate_limit.requests} per ${dest.rate_limit.per_seconds} s` : ""}
              </td>
              <td>{d.last_error ?? "—"}</td>
              <td class="pending">{d.pending}</td>
              <td>{d.delivered_24h}</td>
              <td>{d.failed_24h}</td>
              <td>
                {d.state === "paused" && (
                  <form method="post" action={`/dashboard/destinations/${path}/resume`}>
                    <button type="submit">Resume now</button>
                  </form>
                )}
                {d.pending > 0 && (
                  <form method="post" action={`/dashboard/destinations/${path}/cancel`}>
                    <button type="submit" class="cancel">Cancel pending</button>
                  </form>
                )}
                <form method="post" action={`/dashboard/destinations/${path}/test`}>
                  <button type="submit">Send test</button>
                </form>
                <BackfillProgress backfill={backfills.find((b) => b.destination === d.name)} />
                {backfills.find((b) => b.destination === d.name && b.state === "running") ? (
                  <form method="post" action={`/dashboard/destinations/${path}/backfill/cancel`}>
                    <button type="submit" class="cancel">Stop sending history</button>
                  </form>
                ) : (
                  <form method="post" action={`/dashboard/destinations/${path}/backfill`} class="send-history">
                    <label>
                      since <input type="date" name="since" required />
                    </label>{" "}
                    <button type="submit">Send history…</button>
                  </form>
                )}
                {managed && (
                  <>
                    <a href={`/dashboard/destinations/${path}/edit`}>Edit</a>
                    <form method="post" action={`/dashboard/destinations/${path}/${dest?.enabled === false ? "enable" : "disable"}`}>
                      <button type="submit">{dest?.enabled === false ? "Enable" : "Disable"}</button>
                    </form>
                    <a href={`/dashboard/destinations/${path}/delete`}>Delete</a>
                  </>
                )}
              </td>
            </tr>
          );
        })}
      </table>
    </Page>,
  );
});

destinations.post("/dashboard/destinations/:name/backfill", async (c) => {
  const name = c.req.param("name");
  const since = String((await c.req.parseBody()).since ?? "");
  if (!/^\d{4}-\d{2}-\d{2}$/.test(since) || !Number.isFinite(Date.parse(`${since}T00:00:00Z`))) return back(c, "Send history: pick a date.");
  const { config } = await destinationsOf(c.env);
  if (!config.ok) return back(c, "The destinations are malformed.");
  const result = await beginBackfill({ db: c.env.DB, queue: c.env.ALERTS_QUEUE, destinations: config.destinations, now: () => new Date() }, { name, since: `${since}T00:00:00.000Z` });
  if (!result.ok) return back(c, result.error === "backfill_running" ? `${name} is already being sent its history.` : result.error === "not_found" ? `No destination ${name}.` : "Send history: the date is after today.");
  return back(c, `Sending ${name} every stored response since ${since} that it wants and does not have.`);
});

destinations.post("/dashboard/destinations/:name/backfill/cancel", async (c) => {
  const name = c.req.param("name");
  const result = await endBackfill(c.env.DB, name, new Date());
  return back(c, result.ok ? `Stopped sending ${name} its history: ${result.cancelled} not sent.` : `No history is being sent to ${name}.`);
});

destinations.post("/dashboard/destinations/:name/resume", async (c) => {
  const result = await resumeDestination(await replayDeps(c), c.req.param("name"));
  return back(c, !result.ok ? "No destination of that name." : result.resumed ? "Resumed: what waited is being sent." : "It was not paused.");
});

destinations.post("/dashboard/destinations/:name/cancel", async (c) => {
  const result = await cancelDeliveries(await replayDeps(c), { destination: c.req.param("name") });
  return back(c, `Cancelled ${result.cancelled} pending ${result.cancelled === 1 ? "delivery" : "deliveries"}${result.more ? "; more are left, cancel again" : ""}.`);
});

destinations.post("/dashboard/destinations/:name/test", async (c) => {
  const { config } = await destinationsOf(c.env);
  const name = c.req.param("name");
  const result = await testDelivery(c.env.DB, config, { name, now: new Date(), timeout_ms: deliveryTimeoutMs(c.env.DELIVERY_TIMEOUT_MS) });
  if (!result.ok && result.error === "no_answer") return back(c, `Test send to ${name}: no answer (${result.detail}) after ${result.duration_ms} ms.`);
  if (!result.ok) return back(c, result.error === "invalid_request" ? `Test send to ${name}: ${result.issues.map((i) => i.message).join("; ")}` : `No destination ${name}.`);
  return back(c, `Test send to ${name}: HTTP ${result.status} in ${result.duration_ms} ms.`);
});

for (const [action, enabled] of [["enable", true], ["disable", false]] as const) {
  destinations.post(`/dashboard/destinations/:name/${action}`, async (c) => {
    const name = c.req.param("name");
    const result = await patchDestinationEntry(await manageDeps(c), name, { enabled });
    return back(c, result.ok ? `${name} ${enabled ? "enabled: what waited is being sent" : "disabled: new responses wait for it"}.` : `${name}: ${result.error}.`);
  });
}

destinations.get("/dashboard/destinations/:name/delete", async (c) => {
  const name = c.req.param("name");
  return c.html(
    <Page title={`Delete ${name}?`} nonce={nonceOf(c)}>
      <p>Its pending deliveries are cancelled, and nothing more is sent to it. This cannot be undone.</p>
      <form method="post" action={`/dashboard/destinations/${encodeURIComponent(name)}/delete`}>
        <button type="submit" id="confirm-delete">Delete {name}</button> <a href="/dashboard/destinations">Keep it</a>
      </form>
    </Page>,
  );
});

destinations.post("/dashboard/destinations/:name/delete", async (c) => {
  const name = c.req.param("name");
  const result = await removeDestination(await manageDeps(c), name);
  return back(c, result.ok ? `Deleted ${name}; ${result.cancelled} pending cancelled${result.more ? "; more are left, cancel them from the API (POST /api/deliveries/cancel)" : ""}.` : `${name}: ${result.error}.`);
});

/** The form's fields as a destination entry (lists comma-separated, headers one `Name: value` a line). */
function entryOfForm(form: Record<string, string>): Record<string, unknown> {
  const list = (text: string | undefined) => {
    const items = (text ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
    return items.length > 0 ? items : undefined;
  };
  const text = (value: string | undefined) => (value === undefined || value.trim() === "" ? undefined : value.trim());
  const filter: Record<string, unknown> = {
    platforms: list(form.platforms),
    project_names: list(form.project_names),
    alert_names: list(form.alert_names),
    event_names: list(form.event_names),
    expression: text(form.expression),
  };
  if (text(form.score_type) !== undefined) filter.score = { type: text(form.score_type), min: Number(form.score_min ?? 0), max: Number(form.score_max ?? 10) };
  const cleanFilter = Object.fromEntries(Object.entries(filter).filter(([, v]) => v !== undefined));
  const headerLines = (form.headers ?? "").split("\n").map((l) => l.trim()).filter((l) => l !== "");
  const headers = Object.fromEntries(headerLines.map((l) => [l.slice(0, l.indexOf(":")).trim(), l.slice(l.indexOf(":") + 1).trim()]));
  const jsonata = form.format === "jsonata";
  return {
    url: text(form.url),
    format: form.format,
    survey_ids: list(form.survey_ids),
    filter: Object.keys(cleanFilter).length > 0 ? cleanFilter : undefined,
    transform: jsonata ? text(form.transform) : undefined,
    method: jsonata ? text(form.method) : undefined,
    path: jsonata ? text(form.path) : undefined,
    // Left empty on an edit: the stored secret and headers stay (putDestinationEntry's keep_sealed),
    // and only while the url keeps its origin.
    secret: text(form.secret),
    headers: headerLines.length > 0 ? headers : undefined,
    enabled: form.enabled === "on",
    // Both or neither: a number each (the schema says what is wrong with it).
    rate_limit:
      text(form.rate_requests) === undefined && text(form.rate_per_seconds) === undefined
        ? undefined
        : { requests: Number(form.rate_requests), per_seconds: Number(form.rate_per_seconds ?? 1) },
  };
}

const Select = (props: { name: string; options: readonly string[]; selected: string }) => (
  <select name={props.name}>
    {props.options.map((option) => (
      <option value={option} selected={props.selected === option}>
        {option}
      </option>
    ))}
  </select>
);

const Form = (props: { nonce: string; name?: string; d?: Destination; form?: Record<string, string>; issues?: Issue[] }) => {
  const { d, form, issues } = props;
  const value = (field: string, fallback: string | undefined) => form?.[field] ?? fallback ?? "";
  const f = d?.filter;
  return (
    <form method="post" action="/dashboard/destinations/save" id="destination-form">
      {issues && issues.length > 0 && (
        <ul id="issues" class="error">
          {issues.map((i) => (
            <li>
              {i.path ? `${i.path}: ` : ""}
              {i.message}
            </li>
          ))}
        </ul>
      )}
      <p>
        <label>
          Name <input name="name" required value={value("name", props.name)} readonly={props.name !== undefined} />
        </label>
      </p>
      <p>
        <label>
          URL <input name="url" required size={60} value={value("url", d?.url)} />
        </label>
      </p>
      <p>
        <label>
          Format <Select name="format" options={FORMATS} selected={value("format", d?.format ?? "raw")} />
        </label>{" "}
        <label>
          <input type="checkbox" name="enabled" checked={form ? form.enabled === "on" : d?.enabled !== false} /> enabled
        </label>
      </p>
      <p>
        <label>
          At most <input name="rate_requests" type="number" min={1} size={5} value={value("rate_requests", d?.rate_limit?.requests?.toString())} /> requests
        </label>{" "}
        <label>
          per <input name="rate_per_seconds" type="number" min={1} max={3600} size={5} value={value("rate_per_seconds", d?.rate_limit?.per_seconds?.toString())} /> seconds
        </label>{" "}
        <small>(optional: a rate limit, shared by live deliveries, replays and backfills)</small>
      </p>
      <fieldset>
        <legend>Which responses (every condition given must hold; lists are comma-separated)</legend>
        <p>
          <label>
            Survey ids <input name="survey_ids" value={value("survey_ids", d?.survey_ids?.join(", "))} />
          </label>{" "}
          <label>
            Platforms <input name="platforms" value={value("platforms", f?.platforms?.join(", "))} />
          </label>{" "}
          <label>
            Projects <input name="project_names" value={value("project_names", f?.project_names?.join(", "))} />
          </label>
        </p>
        <p>
          <label>
            Alert names <input name="alert_names" value={value("alert_names", f?.alert_names?.join(", "))} />
          </label>{" "}
          <label>
            Trigger events <input name="event_names" value={value("event_names", f?.event_names?.join(", "))} />
          </label>
        </p>
        <p>
          <label>
            Score of answer type <input name="score_type" size={10} value={value("score_type", f?.score?.type)} />
          </label>{" "}
          <label>
            from <input name="score_min" size={3} value={value("score_min", f?.score?.min?.toString())} />
          </label>{" "}
          <label>
            to <input name="score_max" size={3} value={value("score_max", f?.score?.max?.toString())} />
          </label>
        </p>
        <p>
          <label>
            JSONata condition <input name="expression" size={60} value={value("expression", f?.expression)} placeholder='answers[type="nps"].value <= 6' />
          </label>
        </p>
      </fieldset>
      <fieldset>
        <legend>Format jsonata: the body, the method and the path</legend>
        <p>
          <label>
            Transform (JSONata over the normalised alert)
            <br />
            <textarea name="transform" id="transform" rows={6} cols={70}>
              {value("transform", d?.transform)}
            </textarea>
          </label>
        </p>
        <p>
          <label>
            Method <Select name="method" options={METHODS} selected={value("method", d?.method ?? "POST")} />
          </label>{" "}
          <label>
            Path (JSONata, appended to the URL) <input name="path" size={40} value={value("path", d?.path)} />
          </label>
        </p>
        <p>
          Preview against the latest matching response <button type="button" id="preview-now">Preview</button>
        </p>
        <pre id="preview">—</pre>
      </fieldset>
      <fieldset>
        <legend>Secrets (stored encrypted; left empty on an edit, they stay as they are while the URL keeps its origin: a new origin needs them given again)</legend>
        <p>
          <label>
            Signing secret <input name="secret" type="password" size={50} placeholder={d?.secret ? MASK : "whsec_…"} autocomplete="off" />
          </label>
        </p>
        <p>
          <label>
            Headers, one <code>Name: value</code> a line
            <br />
            <textarea name="headers" rows={3} cols={70} placeholder={Object.keys(d?.headers ?? {}).map((h) => `${h}: ${MASK}`).join("\n")} />
          </label>
        </p>
      </fieldset>
      <p>
        <button type="submit" id="save">Save</button> <a href="/dashboard/destinations">Cancel</a>
      </p>
      <p>
        <label>
          <input type="checkbox" name="force" /> save even if the transform or filter fails on the latest matching response
        </label>
      </p>
      <script nonce={props.nonce}>{raw(PREVIEW_SCRIPT)}</script>
    </form>
  );
};

/** The live preview: the form, posted as it is typed, answered with the body it would send. */
const PREVIEW_SCRIPT = `(() => {
  const form = document.getElementById("destination-form");
  const out = document.getElementById("preview");
  let timer;
  const run = async () => {
    const res = await fetch("/dashboard/destinations/preview", { method: "POST", body: new FormData(form) });
    const answer = await res.json();
    out.textContent = answer.ok ? answer.method + " " + answer.url + "\\n\\n" + answer.body + "\\n\\n(response " + answer.alert_id + ")" : answer.message;
  };
  form.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(run, 300); });
  document.getElementById("preview-now").addEventListener("click", run);
})();`;

/** *Start from a recipe*: a plain GET form, so that it works without the page's script. */
const RecipePicker = ({ chosen }: { chosen: string | undefined }) => (
  <form method="get" action="/dashboard/destinations/new" id="recipe-picker">
    <label>
      Start from a recipe{" "}
      <select name="recipe">
        <option value="">(none)</option>
        {Object.keys(RECIPES).map((r) => (
          <option value={r} selected={r === chosen}>
            {r}
          </option>
        ))}
      </select>
    </label>{" "}
    <button type="submit">Load</button> <small>then replace the &lt;placeholders&gt; in the URL and headers</small>
  </form>
);

destinations.get("/dashboard/destinations/new", async (c) => {
  const chosen = c.req.query("recipe") || undefined;
  const fields = chosen === undefined ? undefined : recipeFields(chosen);
  return c.html(
    <Page title="Add a destination" nonce={nonceOf(c)}>
      <RecipePicker chosen={chosen} />
      {chosen !== undefined && fields === undefined && <p class="error">No recipe named {chosen}.</p>}
      <Form nonce={nonceOf(c)} form={fields} />
    </Page>,
  );
});

destinations.get("/dashboard/destinations/:name/edit", async (c) => {
  const { config } = await destinationsOf(c.env);
  const d = config.ok ? config.destinations.find((x) => x.name === c.req.param("name") && x.source === "api") : undefined;
  if (d === undefined) return back(c, "Only destinations added here can be edited here.");
  return c.html(
    <Page title={`Edit ${d.name}`} nonce={nonceOf(c)}>
      <Form nonce={nonceOf(c)} name={d.name} d={d} />
    </Page>,
  );
});

destinations.post("/dashboard/destinations/save", async (c) => {
  const form = (await c.req.parseBody()) as Record<string, string>;
  const name = (form.name ?? "").trim();
  const { config } = await destinationsOf(c.env);
  const kept = config.ok ? config.destinations.find((d) => d.name === name && d.source === "api") : undefined;
  const result = await putDestinationEntry(await manageDeps(c), name, entryOfForm(form), { keep_sealed: true, force: form.force === "on" });
  if (result.ok) return back(c, `${result.created ? "Added" : "Saved"} ${name}.`);
  const issues = result.error === "invalid_request" ? result.issues : [{ path: "", message: result.error === "not_configured" ? result.message : `${result.error}` }];
  return c.html(
    <Page title={kept ? `Edit ${name}` : "Add a destination"} nonce={nonceOf(c)}>
      <Form nonce={nonceOf(c)} name={kept ? name : undefined} d={kept} form={form} issues={issues} />
    </Page>,
    400,
  );
});

/** Responses looked at for the preview's "latest matching" one (alerts_by_time). */
const PREVIEW_CANDIDATES = 20;

/** What the form would send for the latest response it matches: the body, or why not. */
destinations.post("/dashboard/destinations/preview", async (c) => {
  const form = (await c.req.parseBody()) as Record<string, string>;
  const entry = validate(entrySchema, entryOfForm(form));
  if (!entry.ok) return c.json({ ok: false, message: entry.issues.map((i) => `${i.path ? `${i.path}: ` : ""}${i.message}`).join("; ") });
  const destination: Destination = { ...entry.value, name: (form.name ?? "").trim() || "preview" };
  const alerts = await latestAlerts(c.env.DB, PREVIEW_CANDIDATES);
  const alert = alerts.find((a) => wantsStatically(destination, a));
  if (alert === undefined) return c.json({ ok: false, message: `None of the latest ${PREVIEW_CANDIDATES} responses matches.` });
  const built = await buildRequest(destination, alert, new Date());
  if (!built.ok) return c.json({ ok: false, message: built.error });
  return c.json({ ok: true, method: built.value.method, url: built.value.url, body: await built.value.text(), alert_id: alert.alert_id });
});
