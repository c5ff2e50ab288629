/**
 * A D1 meter: wraps a `DB` binding and sums, per operation, the D1 calls (round trips),
 * statements, and `meta.rows_read` / `meta.rows_written` (what D1 bills). Used by the
 * cost tests and by `npm run bench:cost`.
 */

export interface D1Cost {
  calls: number;
  statements: number;
  rows_read: number;
  rows_written: number;
  /** When present, rows read per statement (the first 90 characters of its SQL): where the reads go. */
  by_sql?: Record<string, number>;
}

export function zeroCost(): D1Cost {
  return { calls: 0, statements: 0, rows_read: 0, rows_written: 0 };
}

type Meta = { rows_read?: number; rows_written?: number } | undefined;

/**
 * A D1 binding that counts into `cost` (and its read-replica sessions too). `first()` is
 * run as `all()`, because `first()` hides `meta`; the result is the same.
 *
 * @example
 * const cost = zeroCost();
 * await worker.fetch(request, { ...env, DB: meterD1(env.DB, cost) }, ctx);
 * expect(cost.rows_read).toBeLessThanOrEqual(2_000);
 */
export function meterD1(db: D1Database, cost: D1Cost): D1Database {
  const originals = new WeakMap<object, D1PreparedStatement>();
  const sqlOf = new WeakMap<object, string>();
  const add = (meta: Meta, sql = "") => {
    cost.statements += 1;
    cost.rows_read += meta?.rows_read ?? 0;
    cost.rows_written += meta?.rows_written ?? 0;
    if (cost.by_sql !== undefined) {
      const key = sql.replace(/\s+/g, " ").trim().slice(0, 90);
      cost.by_sql[key] = (cost.by_sql[key] ?? 0) + (meta?.rows_read ?? 0);
    }
  };
  const wrap = (statement: D1PreparedStatement, sql: string): D1PreparedStatement => {
    const proxy = new Proxy(statement, {
      get(target, prop) {
        if (prop === "bind") return (...values: unknown[]) => wrap(target.bind(...values), sql);
        if (prop === "run" || prop === "all") {
          return async () => {
            cost.calls += 1;
            const result = await target.all();
            add(result.meta, sql);
            return result;
          };
        }
        if (prop === "first") {
          return async (column?: string) => {
            cost.calls += 1;
            const result = await target.all<Record<string, unknown>>();
            add(result.meta, sql);
            const row = result.results[0];
            if (row === undefined) return null;
            return column === undefined ? row : row[column];
          };
        }
        if (prop === "raw") {
          // raw() has no meta: counted as a call and a statement, with no rows.
          return (options?: { columnNames?: boolean }) => {
            cost.calls += 1;
            cost.statements += 1;
            return target.raw(options as { columnNames: true });
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    originals.set(proxy, statement);
    sqlOf.set(proxy, sql);
    return proxy;
  };
  const session = (inner: Pick<D1Database, "prepare" | "batch">) => ({
    prepare: (sql: string) => wrap(inner.prepare(sql), sql),
    batch: async <T = unknown>(statements: D1PreparedStatement[]) => {
      cost.calls += 1;
      const results = await inner.batch<T>(statements.map((s) => originals.get(s) ?? s));
      results.forEach((r, i) => add(r.meta, sqlOf.get(statements[i] as object)));
      return results;
    },
  });
  return new Proxy(db, {
    get(target, prop) {
      if (prop === "prepare" || prop === "batch") return session(target)[prop];
      if (prop === "withSession") {
        return (constraint?: string) => {
          const inner = target.withSession(constraint);
          return { ...session(inner), getBookmark: () => inner.getBookmark() };
        };
      }
      const value: unknown = Reflect.get(target, prop, target);
      return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
    },
  });
}
