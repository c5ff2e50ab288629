/** Validation with valibot, reported the same way everywhere: one issue per field, dotted paths. */
import * as v from "valibot";

/** One validation problem, with a dotted path such as `survey_info.screens.0.type`. */
export interface Issue {
  path: string;
  message: string;
}

export type Validated<T> = { ok: true; value: T } | { ok: false; issues: Issue[] };

/**
 * Validates `input` against `schema`, stopping at a field's first problem.
 *
 * @example
 * const result = validate(payloadSchema, JSON.parse(text));
 * if (!result.ok) console.log(result.issues); // [{ path: "timestamp", message: "…" }]
 */
export function validate<S extends v.GenericSchema>(schema: S, input: unknown): Validated<v.InferOutput<S>> {
  const result = v.safeParse(schema, input, { abortPipeEarly: true });
  if (result.success) return { ok: true, value: result.output };
  return { ok: false, issues: result.issues.map((i) => ({ path: v.getDotPath(i) ?? "", message: i.message })) };
}
