/**
 * The Worker with a D1 meter around its DB binding, for `npm run bench:cost`. It adds two
 * routes the real Worker does not have: GET /__meter (what D1 did since the last reset,
 * and the most calls one invocation made; DELETE resets), POST /__cron (runs the
 * scheduled handler, with ?retention_days=N as RETENTION_DAYS) and POST /__archive (one
 * archive tick, ?rows=N as ARCHIVE_ROWS_PER_TICK).
 */
import type { Env } from "../src/env";
import { runArchiveCron } from "../src/cron";
import worker from "../src/index";
import { type D1Cost, meterD1, zeroCost } from "../test/meter";

const total: D1Cost = { ...zeroCost(), by_sql: {} };
let max_calls_per_invocation = 0;

/** The env of one invocation: its own meter, added to the total when it ends. */
function metered(env: Env): { env: Env; done: () => void } {
  const cost: D1Cost = { ...zeroCost(), by_sql: {} };
  return {
    env: { ...env, DB: meterD1(env.DB, cost) },
    done: () => {
      total.calls += cost.calls;
      total.statements += cost.statements;
      total.rows_read += cost.rows_read;
      total.rows_written += cost.rows_written;
      for (const [sql, rows] of Object.entries(cost.by_sql ?? {})) (total.by_sql as Record<string, number>)[sql] = ((total.by_sql as Record<string, number>)[sql] ?? 0) + rows;
      max_calls_per_invocation = Math.max(max_calls_per_invocation, cost.calls);
    },
  };
}

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__meter") {
      const body = { ...total, max_calls_per_invocation };
      if (request.method === "DELETE") {
        Object.assign(total, zeroCost(), { by_sql: {} });
        max_calls_per_invocation = 0;
      }
      return Response.json(body);
    }
    const invocation = metered(env);
    // Work the Worker leaves for after its reply (the enqueue and its mark) belongs to this invocation too.
    const after: Promise<unknown>[] = [];
    const context = new Proxy(ctx, {
      get(target, prop) {
        if (prop === "waitUntil") {
          return (promise: Promise<unknown>) => {
            after.push(promise);
            target.waitUntil(promise);
          };
        }
        const value: unknown = Reflect.get(target, prop, target);
        return typeof value === "function" ? (value as (...a: unknown[]) => unknown).bind(target) : value;
      },
    });
    const finish = () => Promise.allSettled(after).then(invocation.done);
    if (url.pathname === "/__cron") {
      const days = url.searchParams.get("retention_days") ?? undefined;
      await worker.scheduled(
        { scheduledTime: Date.now(), cron: "*/5 * * * *", noRetry() {} },
        // The main steps alone: the archive tick it ends with is measured through /__archive.
        { ...invocation.env, RETENTION_DAYS: days, ARCHIVE: undefined },
      );
      await finish();
      return Response.json({ ok: true });
    }
    if (url.pathname === "/__archive") {
      // The archive's schedule, with ?rows=N as ARCHIVE_ROWS_PER_TICK; answers what it archived.
      const rows = url.searchParams.get("rows") ?? undefined;
      const result = await runArchiveCron({ ...invocation.env, ARCHIVE_ROWS_PER_TICK: rows }, new Date());
      await finish();
      return Response.json({ ok: true, archived: result?.responses ?? 0, more: result?.more ?? false });
    }
    const response = await worker.fetch(request, invocation.env, context);
    // A streamed body (the export) reads D1 as it goes: count it when the stream ends.
    if (!response.body) {
      ctx.waitUntil(finish());
      return response;
    }
    const { readable, writable } = new TransformStream();
    ctx.waitUntil(response.body.pipeTo(writable).then(finish, finish));
    return new Response(readable, response);
  },
  async queue(batch, env) {
    const invocation = metered(env);
    try {
      await worker.queue(batch, invocation.env);
    } finally {
      invocation.done();
    }
  },
} satisfies ExportedHandler<Env, unknown>;
