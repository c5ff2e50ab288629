/** Reading an admin request's JSON body or query string through a schema: a clear 400 otherwise. */
import type { Context } from "hono";
import type * as v from "valibot";
import { validate } from "../validation";
import type { AppEnv } from "./app-env";
import { errorResponse } from "./responses";

export type ReadResult<T> = { ok: true; value: T } | { ok: false; response: Response };

function checked<S extends v.GenericSchema>(c: Context<AppEnv>, schema: S, input: unknown): ReadResult<v.InferOutput<S>> {
  const result = validate(schema, input);
  if (result.ok) return result;
  return { ok: false, response: errorResponse(c, 400, "invalid_request", { issues: result.issues }) };
}

/** Parses and validates a JSON body; an empty body is `{}` when `optional`. */
export async function readJson<S extends v.GenericSchema>(
  c: Context<AppEnv>,
  schema: S,
  { optional }: { optional: boolean },
): Promise<ReadResult<v.InferOutput<S>>> {
  const text = await c.req.text();
  if (text.trim() === "" && optional) return checked(c, schema, {});
  try {
    return checked(c, schema, JSON.parse(text));
  } catch {
    return { ok: false, response: errorResponse(c, 400, "invalid_json") };
  }
}

/** Validates the query string. */
export function readQuery<S extends v.GenericSchema>(c: Context<AppEnv>, schema: S): ReadResult<v.InferOutput<S>> {
  return checked(c, schema, c.req.query());
}
