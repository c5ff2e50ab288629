/**
 * The 1Flow webhook payload: its valibot schema and its normalisation into an
 * `Alert`. Pure: values in, values out.
 *
 * Strict where the data would be unusable (ids, timestamp, screens), lenient
 * where 1Flow may vary (unknown fields, unknown screen types, answer shapes).
 */
import * as v from "valibot";
import type { Alert, Answer } from "../alert";
// With its extension: the benchmark imports this module straight into Node (type stripping).
import { type Issue, validate } from "../validation.ts";

/** Screen types the sender documents or its public SDKs show. */
export const KNOWN_SCREEN_TYPES: ReadonlySet<string> = new Set([
  "text",
  "short-text",
  "nps",
  "mcq",
  "checkbox",
  "rating",
  "rating-numerical",
  "rating-5-star",
  "rating-emojis",
  "thank_you",
  "welcome-screen",
  "end-screen",
]);

/** Inclusive range of the numeric score per scored screen type. */
const SCORE_RANGES: ReadonlyMap<string, { min: number; max: number; integer: boolean }> = new Map([
  ["nps", { min: 0, max: 10, integer: true }],
  ["rating-numerical", { min: 0, max: 10, integer: false }],
  ["rating-5-star", { min: 0, max: 5, integer: false }],
  ["rating-emojis", { min: 0, max: 5, integer: false }],
  ["rating", { min: 0, max: 10, integer: false }],
]);

const MAX_ALERT_ID_LENGTH = 128;

const nonEmptyString = v.pipe(v.string(), v.minLength(1, "must not be empty"));
const optionalString = v.nullish(v.string());
/** Free-form key/value parameters: any JSON, stored as JSON text. */
const parameters = v.nullish(v.unknown());

const answerSchema = v.nullish(
  v.union(
    [v.string(), v.number(), v.boolean(), v.array(v.string())],
    "must be a string, number, boolean, array of strings or null",
  ),
);

const screenSchema = v.looseObject({
  title: optionalString,
  type: nonEmptyString,
  answer: answerSchema,
});

export const payloadSchema = v.looseObject({
  alert_id: v.pipe(
    v.string(),
    v.regex(
      new RegExp(`^[\\x21-\\x7e]{1,${MAX_ALERT_ID_LENGTH}}$`),
      `must be 1-${MAX_ALERT_ID_LENGTH} printable characters`,
    ),
  ),
  alert_name: nonEmptyString,
  survey_id: nonEmptyString,
  timestamp: v.pipe(
    v.string(),
    v.isoTimestamp("must be an ISO 8601 timestamp with a time zone"),
    v.check((s) => !Number.isNaN(Date.parse(s)), "must be a real point in time"),
  ),
  project_name: optionalString,
  platform: optionalString,
  survey_info: v.looseObject({
    name: optionalString,
    screens: v.array(screenSchema),
  }),
  user: v.nullish(
    v.looseObject({
      user_system_id: v.string("must be a string"),
      parameters,
    }),
  ),
  trigger_event: v.nullish(
    v.looseObject({
      event_name: v.string("must be a string"),
      parameters,
    }),
  ),
});

export type Payload = v.InferOutput<typeof payloadSchema>;

export type PayloadIssue = Issue;

export type ParseResult =
  | { ok: true; alert: Alert; unknown_types: string[] }
  | { ok: false; issues: PayloadIssue[] };

/** Validates parsed JSON and, when it passes, normalises it into an `Alert`. */
export function parsePayload(json: unknown): ParseResult {
  const result = validate(payloadSchema, json);
  if (!result.ok) return result;
  const alert = normalise(result.value);
  const unknown_types = alert.answers
    .map((a) => a.type)
    .filter((type) => !KNOWN_SCREEN_TYPES.has(type));
  return { ok: true, alert, unknown_types };
}

/** Maps a valid payload onto the stored shape. */
export function normalise(payload: Payload): Alert {
  return {
    alert_id: payload.alert_id,
    alert_name: payload.alert_name,
    project_name: payload.project_name ?? null,
    survey_id: payload.survey_id,
    survey_name: payload.survey_info.name ?? null,
    platform: payload.platform ?? null,
    user_system_id: payload.user?.user_system_id ?? null,
    user_parameters: toJsonText(payload.user?.parameters),
    trigger_event_name: payload.trigger_event?.event_name ?? null,
    trigger_event_parameters: toJsonText(payload.trigger_event?.parameters),
    submitted_at: new Date(payload.timestamp).toISOString(),
    answers: payload.survey_info.screens.map(
      (screen, position): Answer => {
        const answer = answerText(screen.answer);
        return {
          position,
          title: screen.title ?? null,
          type: screen.type,
          answer,
          value: scoreOf(screen.type, answer),
        };
      },
    ),
  };
}

function toJsonText(value: unknown): string | null {
  return value === undefined || value === null ? null : JSON.stringify(value);
}

function answerText(answer: string | number | boolean | string[] | null | undefined): string | null {
  if (answer === undefined || answer === null) return null;
  if (Array.isArray(answer)) return answer.join(", ");
  return String(answer);
}

/** Decimal digits with an optional fractional part: no sign, exponent, hex or words. */
const DECIMAL = /^\d+(\.\d+)?$/;

/** The numeric score of a scored screen, or null when absent, not a decimal number, or out of range. */
export function scoreOf(type: string, answer: string | null): number | null {
  const range = SCORE_RANGES.get(type);
  if (!range || answer === null || !DECIMAL.test(answer.trim())) return null;
  const score = Number(answer.trim());
  if (!Number.isFinite(score) || score < range.min || score > range.max) return null;
  if (range.integer && !Number.isInteger(score)) return null;
  return score;
}

/**
 * Whether JSON text nests arrays and objects deeper than `max` levels. One pass over
 * the text, outside strings; the text is valid JSON already.
 */
export function jsonDepthExceeds(text: string, max: number): boolean {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    if (inString) {
      if (ch === 0x5c) i++; // backslash: skip the escaped character
      else if (ch === 0x22) inString = false;
    } else if (ch === 0x22) inString = true;
    else if (ch === 0x5b || ch === 0x7b) {
      if (++depth > max) return true;
    } else if (ch === 0x5d || ch === 0x7d) depth--;
  }
  return false;
}
