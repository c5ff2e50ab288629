/**
 * JSONata for destinations: `transform`, `path` and `filter.expression`. Compiled once per
 * isolate per expression, and evaluated within bounds of steps, depth and sequence length,
 * never of wall time: a Worker's clock does not move while it computes, so a timeout could
 * not stop a runaway expression. One that passes a bound fails with a reason. An invocation
 * also has a budget of steps over all its evaluations (`EvaluationBudget`), the way it has a
 * subrequest budget: what does not fit is carried over, not failed.
 *
 * Error text never holds a value: a JSONata error's message quotes the input it failed on
 * (a respondent's answer, e-mail, …), so what leaves this module is its code and position
 * only (`safeError`), and that is what the ledger, the breakers, the notifications and the
 * logs keep.
 */
import jsonata from "jsonata";

/** Evaluation steps (expression nodes entered) one evaluation may take: a runaway stops in about 2 ms of CPU (npm run bench), a recipe takes a few hundred. */
export const MAX_STEPS = 5_000;
/** Nesting of evaluation (recursion included) one evaluation may reach. */
export const MAX_DEPTH = 200;
/** Items one sequence may hold (a range like [1..1e9] stops here). */
export const MAX_SEQUENCE = 10_000;
/**
 * Evaluation steps one consumer invocation may spend over all its evaluations (filters,
 * transforms, paths): about 6 ms of the free plan's 10 ms of CPU at the measured 0.4 µs a
 * step. An evaluation starts only while the budget has room for it at its bound (MAX_STEPS),
 * so an invocation never passes INVOCATION_STEPS; what does not fit is carried over.
 */
export const INVOCATION_STEPS = 15_000;

type Expression = ReturnType<typeof jsonata>;

export type Compiled =
  | { ok: true; expression: Expression; regex: { position: number } | null }
  | { ok: false; message: string; position: number | null };

const cache = new Map<string, Compiled>();
/** Entries kept per isolate: destinations are at most 100, each with at most three expressions. */
const CACHE_LIMIT = 500;

/** The binding through which an evaluation's steps are counted (a name no expression can make: `$` then a space). */
const COUNTER = "oneflow steps";

interface JsonataError {
  code?: string;
  message?: string;
  position?: number;
  token?: string;
}

/**
 * A JSONata error as text that holds no value: its code and position (and for a syntax
 * error, which is about the expression and not the data, its message). Every caller that
 * records or logs an evaluation error goes through this.
 *
 * @example
 * safeError({ code: "D3030", position: 8, message: 'Unable to cast value to a number: "a@b.c"' }); // "D3030 at position 8"
 */
export function safeError(error: unknown): string {
  const e = (typeof error === "object" && error !== null ? error : {}) as JsonataError;
  const code = typeof e.code === "string" ? e.code : "error";
  if (code === "steps") return `steps: stopped after ${MAX_STEPS} evaluation steps`;
  return typeof e.position === "number" ? `${code} at position ${e.position}` : code;
}

/** The first regular expression in an expression's syntax tree, with its position. */
function firstRegex(node: unknown): { position: number } | null {
  if (typeof node !== "object" || node === null || node instanceof RegExp) return null;
  const n = node as { type?: unknown; position?: unknown };
  if (n.type === "regex") return { position: typeof n.position === "number" ? n.position : 0 };
  for (const value of Object.values(node)) {
    const found = firstRegex(value);
    if (found !== null) return found;
  }
  return null;
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
    // Counts the steps of each evaluation in the counter bound for it, so concurrent evaluations never share a count.
    expression.assign(Symbol.for("jsonata.__evaluate_entry") as unknown as string, (_expr: unknown, _input: unknown, environment: { base: { lookup(name: string): unknown } }) => {
      const counter = environment.base.lookup(COUNTER) as { steps: number } | undefined;
      if (counter === undefined) return;
      counter.steps += 1;
      if (counter.steps > MAX_STEPS) throw { code: "steps" };
    });
    compiled = { ok: true, expression, regex: firstRegex(expression.ast()) };
  } catch (error) {
    const e = error as JsonataError;
    compiled = { ok: false, message: `${e.code ? `${e.code}: ` : ""}${e.message ?? "invalid expression"}`, position: typeof e.position === "number" ? e.position : null };
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

/**
 * Why an expression may not be stored, beyond its syntax: a regular expression, which runs on
 * respondents' free text where no step bound stops its backtracking. Null when it may.
 */
export function boundProblem(source: string): string | null {
  const c = compile(source);
  if (!c.ok || c.regex === null) return null;
  return `uses a regular expression (at position ${c.regex.position}): not allowed, since no bound stops one on free text; use $contains with a string, $substringBefore or $split with a string instead`;
}

/**
 * One invocation's budget of evaluation steps. `reserve` before an evaluation (false: no room
 * at its bound, carry it over), then the evaluation spends what it took.
 */
export class EvaluationBudget {
  used = 0;
  /** Evaluations started: what the simulation models as CPU. */
  evaluations = 0;
  /** Steps this invocation may spend. (No parameter property: the bench imports this file with Node's type stripping.) */
  readonly limit: number;
  constructor(limit: number = INVOCATION_STEPS) {
    this.limit = limit;
  }

  left(): number {
    return this.limit - this.used;
  }

  /** Whether one more evaluation fits at its bound. */
  fits(steps = MAX_STEPS): boolean {
    return this.left() >= steps;
  }

  spend(steps: number): void {
    this.used += steps;
  }
}

/** The most steps one evaluation of each expression took in this isolate (what a reservation for it costs). */
const observed = new Map<string, number>();

/** Steps to set aside for one evaluation of `source`: the most it took here, or its bound when never run. */
export function expectedSteps(source: string): number {
  return observed.get(source) ?? MAX_STEPS;
}

export type Evaluated = { ok: true; value: unknown } | { ok: false; error: string; deferred?: true };

/**
 * Evaluates a compiled expression over `input`, within the bounds; never throws. With a
 * budget, it runs only when the budget has room for it at its bound (otherwise `deferred`:
 * nothing was evaluated), and spends the steps it took. The error holds no value (safeError).
 */
export async function evaluate(source: string, input: unknown, budget?: EvaluationBudget): Promise<Evaluated> {
  const c = compile(source);
  if (!c.ok) return { ok: false, error: c.position === null ? c.message : `${c.message} (at position ${c.position})` };
  if (c.regex !== null) return { ok: false, error: `regex at position ${c.regex.position}: regular expressions are not evaluated` };
  if (budget !== undefined && !budget.fits()) return { ok: false, error: "evaluation budget spent", deferred: true };
  const counter = { steps: 0 };
  try {
    const value: unknown = await c.expression.evaluate(input, { [COUNTER]: counter });
    return { ok: true, value };
  } catch (error) {
    return { ok: false, error: safeError(error) };
  } finally {
    observed.set(source, Math.max(observed.get(source) ?? 0, Math.min(counter.steps, MAX_STEPS)));
    if (observed.size > CACHE_LIMIT) observed.clear();
    if (budget !== undefined) {
      budget.spend(Math.min(counter.steps, MAX_STEPS));
      budget.evaluations += 1;
    }
  }
}
