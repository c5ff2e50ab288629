// Baseline "floor-schema": the D1 work the contract needs and nothing else. It parses the
// JSON and, in one batch, inserts the alert into this project's `alerts` table (its columns,
// its primary key and its four secondary indexes) and upserts the survey's day. No
// validation, no hashing, no queue: what remains between it and the project is our code.
const INSERT_ALERT = `INSERT INTO alerts (alert_id, alert_name, project_name, survey_id, survey_name, platform,
  user_system_id, user_parameters, trigger_event_name, trigger_event_parameters, submitted_at, received_at,
  payload, payload_sha256, answers_json)
VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, '', ?14) ON CONFLICT (alert_id) DO NOTHING`;
const COUNT_DAY = `INSERT INTO survey_daily (survey_id, day, survey_name, responses, last_response_at)
VALUES (?1, ?2, ?3, 1, ?4)
ON CONFLICT (survey_id, day) DO UPDATE SET responses = responses + 1,
  last_response_at = MAX(COALESCE(last_response_at, ''), excluded.last_response_at)`;

export default {
  async fetch(request, env) {
    const text = await request.text();
    const a = JSON.parse(text);
    const submitted_at = new Date(a.timestamp).toISOString();
    await env.DB.batch([
      env.DB.prepare(INSERT_ALERT).bind(
        a.alert_id,
        a.alert_name,
        a.project_name ?? null,
        a.survey_id,
        a.survey_info?.name ?? null,
        a.platform ?? null,
        a.user?.user_system_id ?? null,
        a.user?.parameters === undefined ? null : JSON.stringify(a.user.parameters),
        a.trigger_event?.event_name ?? null,
        a.trigger_event?.parameters === undefined ? null : JSON.stringify(a.trigger_event.parameters),
        submitted_at,
        new Date().toISOString(),
        text,
        JSON.stringify(a.survey_info?.screens ?? []),
      ),
      env.DB.prepare(COUNT_DAY).bind(a.survey_id, submitted_at.slice(0, 10), a.survey_info?.name ?? null, submitted_at),
    ]);
    return new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
  },
};
