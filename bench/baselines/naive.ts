// Baseline "naive": what a tutorial would write. Hono, `await c.req.json()`, one
// INSERT, one send; no validation, no idempotency, no quarantine, no deadline.
import { Hono } from "hono";

interface NaiveEnv {
  DB: D1Database;
  ALERTS_QUEUE: Queue<{ alert_id: string }>;
}

const app = new Hono<{ Bindings: NaiveEnv }>();

app.post("/webhooks/1flow/:token", async (c) => {
  const body = await c.req.json<{ alert_id: string }>();
  await c.env.DB.prepare("INSERT INTO naive_alerts (alert_id, payload) VALUES (?1, ?2)")
    .bind(body.alert_id, JSON.stringify(body))
    .run();
  await c.env.ALERTS_QUEUE.send({ alert_id: body.alert_id });
  return c.json({ ok: true });
});

export default app;
