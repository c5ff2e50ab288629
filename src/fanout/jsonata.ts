/**
 * JSONata for destinations: `transform`, `path` and `filter.expression`. Compiled once per
 * isolate per expression, and evaluated within bounds of steps, depth and sequence length,
 * never of wall time: a Worker's clock does not move while it computes, so a timeout could
 * not stop a runaway expression. One that passes a bound fails with a reason.
 */
import jsonata from "jsonata";

/** Evaluation steps (expression nodes entered) one evaluation may take: a runaway stops in about 2 ms of CPU (npm run bench), a recipe takes a few hundred. */
export const MAX_STEPS = 5_000;
/** Nesting of evaluation (recursion included) one evaluation may reach. */
export const MAX_DEPTH = 200;
/** Items one sequence may hold (a range like [1..1e9] stops here). */
export const MAX_SEQUENCE = 10_000;

type Expression = ReturnType<typeof jsonata>;

export type Compiled = { ok: true; expression: Expression } | { ok: false; message: string; position: number | null };

const cache = new Map<string, Compiled>();
/** Entries kept per isolate: destinations are at most 100, each with at most three expressions. */
const CACHE_LIMIT = 500;

const STEPS = Symbol("oneflow.steps");

interface JsonataError {
  code?: string;
  message?: string;
  position?: number;
  token?: string;
}

function describe(error: unknown): { message: string; position: number | null } {
  const e = (typeof error === "object" && error !== null ? error : { message: String(error) }) as JsonataError;
  return { message: `${e.code ? `${e.code}: ` : ""}${e.message ?? "invalid expression"}`, position: typeof e.position === "number" ? e.position : null };
}

/**
 * Compiles an expression (cached per isolate). A syntax error says where.
 *
 * @example
 * const c = compile("{ 'content': 'NPS ' & $string(answers[type='nps'].value) }");
 * if (!c.ok) console.log(c.message, c.position);
 */
export function compile(source: string): Compiled {
  const hit = cache.get(source);
  if (hit !== undefined) return hit;
  let compiled: Compiled;
  try {
    const expression = jsonata(source, { stack: MAX_DEPTH, sequence: MAX_SEQUENCE } as Parameters<typeof jsonata>[1]);
    // Counts the steps of each evaluation on its own frame (`base`), so concurrent evaluations never share a count.
    expression.assign(Symbol.for("jsonata.__evaluate_entry") as unknown as string, (_expr: unknown, _input: unknown, environment: { base: Record<symbol, number> }) => {
      const steps = (environment.base[STEPS] ?? 0) + 1;
      environment.base[STEPS] = steps;
      if (steps > MAX_STEPS) throw { code: "steps", message: `stopped after ${MAX_STEPS} evaluation steps` };
    });
    compiled = { ok: true, expression };
  } catch (error) {
    compiled = { ok: false, ...describe(error) };
  }
  if (cache.size >= CACHE_LIMIT) cache.clear();
  cache.set(source, compiled);
  return compiled;
}

/** A syntax error as one line: what, and at which character (1-based). */
export function syntaxError(source: string): string | null {
  const c = compile(source);
  if (c.ok) return null;
  return c.position === null ? c.message : `${c.message} (at position ${c.position})`;
}

export type Evaluated = { ok: true; value: unknown } | { ok: false; error: string };

/** Evaluates a compiled expression over `input`, within the bounds; never throws. */
export async function evaluate(source: string, input: unknown): Promise<Evaluated> {
  const c = compile(source);
  if (!c.ok) return { ok: false, error: c.message };
  try {
    const value: unknown = await c.expression.evaluate(input);
    return { ok: true, value };
  } catch (error) {
    return { ok: false, error: describe(error).message };
  }
}
