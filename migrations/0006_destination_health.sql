-- 0006: destination health. A circuit breaker per destination (paused after consecutive failures,
-- probed, resumed), the pending deliveries of one destination found without a scan (to send them
-- after a resume), dead deliveries per hour, and the outbox of notifications to the operator.
ALTER TABLE destination_health ADD COLUMN state TEXT NOT NULL DEFAULT 'active';   -- active | paused
ALTER TABLE destination_health ADD COLUMN consecutive_failures INTEGER NOT NULL DEFAULT 0;
ALTER TABLE destination_health ADD COLUMN paused_until TEXT;                      -- the next probe, while paused
ALTER TABLE destination_health ADD COLUMN probe_until TEXT;                       -- a consumer sending the probe holds it until then
ALTER TABLE destination_health ADD COLUMN last_status INTEGER;
ALTER TABLE destination_health ADD COLUMN last_error TEXT;
ALTER TABLE destination_health ADD COLUMN resume_after TEXT;                      -- after a resume: JSON [updated_at, alert_id] the cron re-sends from

ALTER TABLE destination_hourly ADD COLUMN dead INTEGER NOT NULL DEFAULT 0;

CREATE INDEX deliveries_pending_by_destination ON deliveries (destination, updated_at) WHERE status = 'pending';

-- Notifications waiting for the cron to send them to NOTIFY_URL.
CREATE TABLE notifications (
  id         INTEGER PRIMARY KEY,
  event      TEXT NOT NULL,                 -- destination.paused | destination.resumed | delivery.dead
  key        TEXT NOT NULL,                 -- what it is about (a destination's name)
  data       TEXT NOT NULL,                 -- JSON
  created_at TEXT NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0
);

-- What the cron last told the operator, for its deduplication (key: event and what it is about).
CREATE TABLE notify_state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
