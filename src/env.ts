import type { QueueMessage } from "./alert";

/** The Worker's bindings and variables, as `wrangler.toml` and secrets declare them. */
export interface Env {
  DB: D1Database;
  ALERTS_QUEUE: Queue<QueueMessage>;
  /** The path token 1Flow is given. Unset: the webhook fails closed (503). */
  WEBHOOK_SECRET?: string;
  /** Also accepted while a new secret rolls out. */
  WEBHOOK_SECRET_PREVIOUS?: string;
  /** JSON array of fan-out destinations. */
  DESTINATIONS?: string;
  /** Bearer token for `/api/*`; unset: `/api/*` answers 404. */
  ADMIN_TOKEN?: string;
  /** Largest accepted body in bytes (default 65536). */
  MAX_BODY_BYTES?: string;
  /** Backoff base for deliveries in seconds (default 30). */
  RETRY_BASE_SECONDS?: string;
  /** Time a destination has to answer a delivery in ms (default 10000). */
  DELIVERY_TIMEOUT_MS?: string;
  /** Days to keep alerts and quarantined bodies; unset keeps them forever. */
  RETENTION_DAYS?: string;
  /** Time the request path may spend on D1 in ms (default 5000), then the spool. */
  STORAGE_DEADLINE_MS?: string;
  /** Consecutive failed attempts that pause a destination (default 10). */
  PAUSE_AFTER_FAILURES?: string;
  /** Seconds a paused destination waits for its next probe (default 300). */
  PAUSE_SECONDS?: string;
  /** Where operator notifications go (a Slack incoming webhook works); unset: none. */
  NOTIFY_URL?: string;
  /** Hours without a webhook before `ingest.silent` is sent; unset: never. */
  SILENCE_HOURS?: string;
  /** Workers Analytics Engine dataset for delivery and webhook metrics; unbound: none written. */
  METRICS?: AnalyticsEngineDataset;
  /** Rate Limiting binding: sign-in attempts per client (10 a minute). Optional. */
  LOGIN_LIMITER?: RateLimit;
  /** Subrequests one consumer invocation may make (D1 calls, Queue sends, deliveries), default 50 (the free plan). */
  SUBREQUEST_BUDGET?: string;
  /** AES-GCM key (32 bytes, base64 or hex) for the secrets and header values of destinations stored in D1. */
  ENCRYPTION_KEY?: string;
  /** The key before a rotation: still read, never written with. */
  ENCRYPTION_KEY_PREVIOUS?: string;
  /** R2 bucket of the Parquet archive (oneflow-archive); unbound: no archive, and retention deletes as before. */
  ARCHIVE?: R2Bucket;
  /** Minutes a response is stored before the archive takes it (default 60; 0: the next tick). */
  ARCHIVE_DELAY_MINUTES?: string;
  /** Responses one archive tick writes at most (default 300, most 10000). */
  ARCHIVE_ROWS_PER_TICK?: string;
  /** Rows in one part of the CSV export (default and most 20000); more continue at Link rel="next". */
  EXPORT_PART_ROWS?: string;
}
