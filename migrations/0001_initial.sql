-- 0001: the schema of version 0.1.0 (schema.sql as released): alerts, answers, quarantine, deliveries, daily duplicates, survey_nps.
-- Idempotent (IF NOT EXISTS), so a database created with 0.1.0's schema.sql takes it as a no-op.
-- oneflow-webhooks: the whole D1 schema. Idempotent: run it as often as you like.
--   wrangler d1 execute oneflow --local  --file=schema.sql
--   wrangler d1 execute oneflow --remote --file=schema.sql

-- One row per 1Flow alert (one survey response), keyed by the sender's alert_id.
CREATE TABLE IF NOT EXISTS alerts (
  alert_id                 TEXT PRIMARY KEY,
  alert_name               TEXT NOT NULL,
  project_name             TEXT,
  survey_id                TEXT NOT NULL,
  survey_name              TEXT,
  platform                 TEXT,
  user_system_id           TEXT,
  user_parameters          TEXT,             -- JSON text
  trigger_event_name       TEXT,
  trigger_event_parameters TEXT,             -- JSON text
  submitted_at             TEXT NOT NULL,    -- UTC ISO 8601, from the payload's timestamp
  received_at              TEXT NOT NULL,    -- UTC ISO 8601, the Worker's clock
  payload                  TEXT NOT NULL,    -- the body exactly as received
  payload_sha256           TEXT NOT NULL,    -- tells a retry of the same body from a different body
  enqueued_at              TEXT,             -- NULL until the Queue accepted the message (outbox)
  outbox_claimed_until     TEXT              -- a sweep sending it holds it until then
);

-- One row per screen of the survey, in screen order.
CREATE TABLE IF NOT EXISTS answers (
  alert_id TEXT NOT NULL REFERENCES alerts(alert_id) ON DELETE CASCADE,
  position INTEGER NOT NULL,                 -- 0-based index in survey_info.screens
  title    TEXT,
  type     TEXT NOT NULL,
  answer   TEXT,                             -- arrays joined with ', '; NULL when absent
  value    REAL,                             -- numeric score for nps and rating types
  PRIMARY KEY (alert_id, position)
);

-- What an authenticated sender sent that we could not accept. Nothing is dropped.
CREATE TABLE IF NOT EXISTS rejected_payloads (
  id            TEXT PRIMARY KEY,            -- SHA-256 hex of the body
  reason        TEXT NOT NULL,               -- an error string of the contract, or alert_id_conflict
  detail        TEXT,                        -- JSON
  body          BLOB,                        -- text when UTF-8, raw bytes otherwise; NULL when too large
  alert_id      TEXT,                        -- when readable
  size          INTEGER NOT NULL,
  first_seen_at TEXT NOT NULL,
  last_seen_at  TEXT NOT NULL,
  attempts      INTEGER NOT NULL DEFAULT 1
);

-- Per-destination delivery ledger of the fan-out.
CREATE TABLE IF NOT EXISTS deliveries (
  alert_id     TEXT NOT NULL REFERENCES alerts(alert_id) ON DELETE CASCADE,
  destination  TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_status  INTEGER,                      -- HTTP status of the last attempt
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  delivered_at TEXT,
  claimed_until TEXT,                        -- a consumer delivering it holds it until then
  PRIMARY KEY (alert_id, destination)
);

-- Deliveries of an alert_id already stored (1Flow's retries), counted per UTC day.
CREATE TABLE IF NOT EXISTS ingest_daily (
  day        TEXT PRIMARY KEY,               -- YYYY-MM-DD, UTC
  duplicates INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX IF NOT EXISTS alerts_by_survey_time ON alerts (survey_id, submitted_at);
CREATE INDEX IF NOT EXISTS alerts_by_user ON alerts (user_system_id, submitted_at);
CREATE INDEX IF NOT EXISTS alerts_outbox ON alerts (received_at) WHERE enqueued_at IS NULL;
CREATE INDEX IF NOT EXISTS rejected_by_time ON rejected_payloads (last_seen_at);
CREATE INDEX IF NOT EXISTS deliveries_by_status ON deliveries (status, destination, updated_at);

-- Net Promoter Score per survey: promoters 9-10, passives 7-8, detractors 0-6.
CREATE VIEW IF NOT EXISTS survey_nps AS
SELECT
  a.survey_id                                        AS survey_id,
  MAX(a.survey_name)                                 AS survey_name,
  COUNT(*)                                           AS responses,
  SUM(CASE WHEN n.value >= 9 THEN 1 ELSE 0 END)      AS promoters,
  SUM(CASE WHEN n.value BETWEEN 7 AND 8 THEN 1 ELSE 0 END) AS passives,
  SUM(CASE WHEN n.value <= 6 THEN 1 ELSE 0 END)      AS detractors,
  CAST(ROUND(100.0 * (SUM(CASE WHEN n.value >= 9 THEN 1 ELSE 0 END)
                    - SUM(CASE WHEN n.value <= 6 THEN 1 ELSE 0 END)) / COUNT(*)) AS INTEGER) AS nps
FROM answers n
JOIN alerts a ON a.alert_id = n.alert_id
WHERE n.type = 'nps' AND n.value IS NOT NULL
GROUP BY a.survey_id;
