/**
 * The `json` format: the normalised alert, a stable shape for receivers that would rather
 * not parse 1Flow's own. Its valibot schema is the one GET /api/openapi.json publishes as a
 * `webhooks` entry. Pure.
 */
import * as v from "valibot";
import type { StoredAlert } from "../store/deliveries";

const json = v.unknown();
const text = v.nullable(v.string());

export const normalisedAlertSchema = v.strictObject({
  v: v.literal(1),
  alert_id: v.string(),
  alert_name: v.string(),
  project_name: text,
  survey: v.strictObject({ id: v.string(), name: text }),
  platform: text,
  user: v.nullable(v.strictObject({ id: v.string(), parameters: json })),
  trigger_event: v.nullable(v.strictObject({ name: v.string(), parameters: json })),
  submitted_at: v.pipe(v.string(), v.isoTimestamp()),
  received_at: v.pipe(v.string(), v.isoTimestamp()),
  answers: v.array(
    v.strictObject({
      position: v.pipe(v.number(), v.integer(), v.minValue(0)),
      title: text,
      type: v.string(),
      answer: text,
      value: v.nullable(v.number()),
    }),
  ),
});

export type NormalisedAlert = v.InferOutput<typeof normalisedAlertSchema>;

const parsed = (text: string | null): unknown => (text === null ? null : (JSON.parse(text) as unknown));

/** The body a `json` destination receives for an alert. */
export function normalisedAlert(alert: StoredAlert): NormalisedAlert {
  return {
    v: 1,
    alert_id: alert.alert_id,
    alert_name: alert.alert_name,
    project_name: alert.project_name,
    survey: { id: alert.survey_id, name: alert.survey_name },
    platform: alert.platform,
    user: alert.user_system_id === null ? null : { id: alert.user_system_id, parameters: parsed(alert.user_parameters) },
    trigger_event:
      alert.trigger_event_name === null ? null : { name: alert.trigger_event_name, parameters: parsed(alert.trigger_event_parameters) },
    submitted_at: alert.submitted_at,
    received_at: alert.received_at,
    answers: alert.answers.map(({ position, title, type, answer, value }) => ({ position, title, type, answer, value })),
  };
}
