/**
 * The Worker with two routes the real one does not have, for `npm run soak`:
 * POST /__d1-outage?down=1 takes D1 away from the Worker (its alerts table renamed, as an
 * operator could with `wrangler d1 execute`), ?down=0 gives it back; POST /__scheduled runs
 * the cron (Miniflare does not tick it). Run inside the Worker, so that the soak never
 * waits on Miniflare's D1 proxy while the runtime is busy.
 */
import type { Env } from "../src/env";
import worker from "../src/index";

export default {
  async fetch(request, env, ctx) {
    const url = new URL(request.url);
    if (url.pathname === "/__d1-outage" && request.method === "POST") {
      const down = url.searchParams.get("down") === "1";
      await env.DB.prepare(down ? "ALTER TABLE alerts RENAME TO alerts_off" : "ALTER TABLE alerts_off RENAME TO alerts").run();
      return Response.json({ ok: true, down });
    }
    if (url.pathname === "/__scheduled" && request.method === "POST") {
      await worker.scheduled({ scheduledTime: Date.now(), cron: "*/5 * * * *", noRetry() {} }, env);
      return Response.json({ ok: true });
    }
    return worker.fetch(request, env, ctx);
  },
  queue: (batch, env) => worker.queue(batch, env),
  scheduled: (controller, env) => worker.scheduled(controller, env),
} satisfies ExportedHandler<Env, unknown>;
