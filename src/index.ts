/** The Worker: HTTP ingest, the queue consumers, and the scheduled outbox sweep. */
import type { AlertMessage } from "./alert";
import type { Env } from "./env";
import { app } from "./http/app";

export default {
  fetch: app.fetch,

  async queue(batch) {
    // Fan-out arrives with the consumer; until then every message is acknowledged.
    batch.ackAll();
  },
} satisfies ExportedHandler<Env, AlertMessage>;
