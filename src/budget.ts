/**
 * Subrequest budgets. A Worker invocation may make 50 subrequests on the free plan (D1
 * queries, Queue sends and fetches alike); past that the platform throws. A `Budget` counts
 * them, and the metered bindings below spend it on every call that reaches D1 or the Queue,
 * refusing with `BudgetSpentError` before the call is made. Work that runs out of budget
 * stops where it is, as after a D1 failure, and the next tick (or message) goes on.
 */

export class BudgetSpentError extends Error {
  override readonly name = "BudgetSpentError";
}

/**
 * A number of subrequests, with shares for parts of the work: what a share spends counts
 * in its parent too.
 *
 * @example
 * const cron = new Budget(45);
 * await sweepOutbox({ db: meteredD1(env.DB, cron.share(12)), … });
 */
export class Budget {
  used = 0;
  constructor(
    readonly limit: number,
    private readonly parent: Budget | null = null,
  ) {}

  /** Subrequests left in this budget (and in its parents). */
  left(): number {
    const mine = this.limit - this.used;
    return this.parent === null ? mine : Math.min(mine, this.parent.left());
  }

  /** Spends `n` subrequests, or throws `BudgetSpentError` (spending nothing) when fewer are left. */
  take(n = 1): void {
    if (this.left() < n) throw new BudgetSpentError(`subrequest budget of ${this.limit} spent`);
    this.spend(n);
  }

  private spend(n: number): void {
    this.used += n;
    this.parent?.spend(n);
  }

  /** A share of at most `limit` of what is left. */
  share(limit: number): Budget {
    return new Budget(Math.min(limit, this.left()), this);
  }
}

const statements = new WeakMap<D1PreparedStatement, D1PreparedStatement>();

function meteredStatement(statement: D1PreparedStatement, budget: Budget): D1PreparedStatement {
  const metered = new Proxy(statement, {
    get(target, prop) {
      if (prop === "bind") return (...values: unknown[]) => meteredStatement(target.bind(...values), budget);
      if (prop === "first" || prop === "run" || prop === "all" || prop === "raw") {
        const method = target[prop] as (...args: unknown[]) => unknown;
        return (...args: unknown[]) => {
          budget.take();
          return method.apply(target, args);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  statements.set(metered, statement);
  return metered;
}

/** D1 that spends `budget` on each query and each batch (one subrequest, however many statements). */
export function meteredD1(db: D1Database, budget: Budget): D1Database {
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare") return (sql: string) => meteredStatement(target.prepare(sql), budget);
      if (prop === "batch") {
        return (list: D1PreparedStatement[]) => {
          budget.take();
          return target.batch(list.map((s) => statements.get(s) ?? s));
        };
      }
      if (prop === "exec") {
        return (sql: string) => {
          budget.take();
          return target.exec(sql);
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}

/** A Queue producer that spends `budget` on each `send` and `sendBatch`. */
export function meteredQueue<Body>(queue: Queue<Body>, budget: Budget): Queue<Body> {
  return {
    send: (message, options) => {
      budget.take();
      return queue.send(message, options);
    },
    sendBatch: (messages, options) => {
      budget.take();
      return queue.sendBatch(messages, options);
    },
    metrics: () => queue.metrics(),
  } as Queue<Body>;
}
