-- 0002: cost. D1 bills every row and index entry written and read: a new response now writes
-- 5 rows instead of 11 (alerts WITHOUT ROWID with its answers as JSON, `answers` a view over it),
-- and pages read rollups kept on write instead of scanning every response.

-- alerts: clustered on alert_id (no separate rowid and key index), answers inline as JSON.
CREATE TABLE alerts_next (
  alert_id                 TEXT PRIMARY KEY,
  alert_name               TEXT NOT NULL,
  project_name             TEXT,
  survey_id                TEXT NOT NULL,
  survey_name              TEXT,
  platform                 TEXT,
  user_system_id           TEXT,
  user_parameters          TEXT,
  trigger_event_name       TEXT,
  trigger_event_parameters TEXT,
  submitted_at             TEXT NOT NULL,
  received_at              TEXT NOT NULL,
  payload                  TEXT NOT NULL,
  payload_sha256           TEXT NOT NULL,
  answers_json             TEXT NOT NULL DEFAULT '[]',
  enqueued_at              TEXT,
  outbox_claimed_until     TEXT,
  fanout_claimed_until     TEXT
) WITHOUT ROWID;

INSERT INTO alerts_next (alert_id, alert_name, project_name, survey_id, survey_name, platform, user_system_id,
  user_parameters, trigger_event_name, trigger_event_parameters, submitted_at, received_at, payload, payload_sha256,
  answers_json, enqueued_at, outbox_claimed_until)
SELECT a.alert_id, a.alert_name, a.project_name, a.survey_id, a.survey_name, a.platform, a.user_system_id,
  a.user_parameters, a.trigger_event_name, a.trigger_event_parameters, a.submitted_at, a.received_at, a.payload,
  a.payload_sha256,
  COALESCE((SELECT json_group_array(json_object('title', n.title, 'type', n.type, 'answer', n.answer, 'value', n.value))
            FROM (SELECT title, type, answer, value FROM answers WHERE answers.alert_id = a.alert_id ORDER BY position) AS n), '[]'),
  a.enqueued_at, a.outbox_claimed_until
FROM alerts AS a;

-- deliveries: clustered on its key; claims move to the alert (alerts.fanout_claimed_until).
CREATE TABLE deliveries_next (
  alert_id     TEXT NOT NULL,
  destination  TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_status  INTEGER,
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  delivered_at TEXT,
  PRIMARY KEY (alert_id, destination)
) WITHOUT ROWID;

INSERT INTO deliveries_next (alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at)
SELECT alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at FROM deliveries;

-- Children first: with foreign keys on, dropping alerts first would cascade into them.
DROP VIEW survey_nps;
DROP TABLE deliveries;
DROP TABLE answers;
DROP TABLE alerts;
ALTER TABLE alerts_next RENAME TO alerts;
ALTER TABLE deliveries_next RENAME TO deliveries;

CREATE INDEX alerts_by_time ON alerts (submitted_at);
CREATE INDEX alerts_by_survey_time ON alerts (survey_id, submitted_at);
CREATE INDEX alerts_by_user ON alerts (user_system_id, submitted_at);
CREATE INDEX alerts_outbox ON alerts (received_at) WHERE enqueued_at IS NULL;
-- Only deliveries still open or refused are indexed: a delivered one costs no index entry.
CREATE INDEX deliveries_open ON deliveries (status, updated_at) WHERE status <> 'delivered';

-- The quarantine, found by alert_id and by user without reading every body, and paged by time.
DROP INDEX rejected_by_time;
CREATE INDEX rejected_by_time ON rejected_payloads (last_seen_at, id);
CREATE INDEX rejected_by_alert ON rejected_payloads (alert_id);
CREATE INDEX rejected_by_user ON rejected_payloads (json_extract(body, '$.user.user_system_id')) WHERE json_valid(body);

-- Responses and NPS per survey per UTC day of submission, counted in the ingest batch.
CREATE TABLE survey_daily (
  survey_id        TEXT NOT NULL,
  day              TEXT NOT NULL,              -- YYYY-MM-DD of submitted_at
  survey_name      TEXT,
  responses        INTEGER NOT NULL DEFAULT 0,
  nps_responses    INTEGER NOT NULL DEFAULT 0, -- nps answers with a score
  promoters        INTEGER NOT NULL DEFAULT 0,
  passives         INTEGER NOT NULL DEFAULT 0,
  detractors       INTEGER NOT NULL DEFAULT 0,
  last_response_at TEXT,
  screens          INTEGER NOT NULL DEFAULT 0, -- most screens in one response (the export's columns)
  titles           TEXT,                       -- JSON: question titles by position, of the latest response
  PRIMARY KEY (survey_id, day)
) WITHOUT ROWID;

INSERT INTO survey_daily (survey_id, day, survey_name, responses, nps_responses, promoters, passives, detractors,
  last_response_at, screens, titles)
SELECT a.survey_id, substr(a.submitted_at, 1, 10), MAX(a.survey_name), COUNT(*),
  SUM((SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' IS NOT NULL)),
  SUM((SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' >= 9)),
  SUM((SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' BETWEEN 7 AND 8)),
  SUM((SELECT COUNT(*) FROM json_each(a.answers_json) j WHERE j.value ->> 'type' = 'nps' AND j.value ->> 'value' <= 6)),
  MAX(a.submitted_at), MAX(json_array_length(a.answers_json)),
  (SELECT json_group_array(j.value ->> 'title') FROM alerts b, json_each(b.answers_json) j
   WHERE b.alert_id = (SELECT c.alert_id FROM alerts c WHERE c.survey_id = a.survey_id
                       AND substr(c.submitted_at, 1, 10) = substr(a.submitted_at, 1, 10)
                       ORDER BY c.submitted_at DESC LIMIT 1))
FROM alerts AS a
GROUP BY a.survey_id, substr(a.submitted_at, 1, 10);

-- Each survey's totals of the days folded so far (the cron folds finished days), so a list of
-- surveys reads one row per survey plus its unfolded days.
CREATE TABLE surveys (
  survey_id        TEXT PRIMARY KEY,
  survey_name      TEXT,
  responses        INTEGER NOT NULL DEFAULT 0,
  nps_responses    INTEGER NOT NULL DEFAULT 0,
  promoters        INTEGER NOT NULL DEFAULT 0,
  passives         INTEGER NOT NULL DEFAULT 0,
  detractors       INTEGER NOT NULL DEFAULT 0,
  last_response_at TEXT,
  folded_through   TEXT NOT NULL DEFAULT ''    -- days up to this one are in the totals
) WITHOUT ROWID;

INSERT INTO surveys (survey_id) SELECT DISTINCT survey_id FROM survey_daily;

-- Refused bodies per UTC day of receipt, beside the duplicates already counted there.
ALTER TABLE ingest_daily ADD COLUMN rejected INTEGER NOT NULL DEFAULT 0;
INSERT INTO ingest_daily (day, rejected)
SELECT substr(last_seen_at, 1, 10), SUM(attempts) FROM rejected_payloads WHERE true GROUP BY 1
ON CONFLICT (day) DO UPDATE SET rejected = excluded.rejected;

-- Delivery outcomes per destination per UTC hour, counted once per consumer batch.
CREATE TABLE destination_hourly (
  destination       TEXT NOT NULL,
  hour              TEXT NOT NULL,             -- YYYY-MM-DDTHH
  delivered         INTEGER NOT NULL DEFAULT 0,
  failed            INTEGER NOT NULL DEFAULT 0, -- failed attempts, retried or not
  last_delivered_at TEXT,
  PRIMARY KEY (destination, hour)
) WITHOUT ROWID;

INSERT INTO destination_hourly (destination, hour, delivered, failed, last_delivered_at)
SELECT destination, substr(updated_at, 1, 13), SUM(status = 'delivered'), SUM(status IN ('failed', 'dead')), MAX(delivered_at)
FROM deliveries WHERE updated_at >= strftime('%Y-%m-%dT%H', 'now', '-1 day') GROUP BY 1, 2;

-- Per destination: pending deliveries, kept by the triggers below.
CREATE TABLE destination_health (
  destination TEXT PRIMARY KEY,
  pending     INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;

INSERT INTO destination_health (destination, pending)
SELECT destination, SUM(status = 'pending') FROM deliveries GROUP BY destination;

CREATE TRIGGER deliveries_pending_insert AFTER INSERT ON deliveries WHEN NEW.status = 'pending'
BEGIN
  INSERT INTO destination_health (destination, pending) VALUES (NEW.destination, 1)
  ON CONFLICT (destination) DO UPDATE SET pending = pending + 1;
END;

CREATE TRIGGER deliveries_pending_update AFTER UPDATE OF status ON deliveries
WHEN (OLD.status = 'pending') <> (NEW.status = 'pending')
BEGIN
  INSERT INTO destination_health (destination, pending) VALUES (NEW.destination, CASE WHEN NEW.status = 'pending' THEN 1 ELSE -1 END)
  ON CONFLICT (destination) DO UPDATE SET pending = pending + excluded.pending;
END;

CREATE TRIGGER deliveries_pending_delete AFTER DELETE ON deliveries WHEN OLD.status = 'pending'
BEGIN
  UPDATE destination_health SET pending = pending - 1 WHERE destination = OLD.destination;
END;

-- One row per screen of each response, as before: a view over alerts.answers_json.
CREATE VIEW answers AS
SELECT a.alert_id AS alert_id, j.key AS position, j.value ->> 'title' AS title, j.value ->> 'type' AS type,
       j.value ->> 'answer' AS answer, j.value ->> 'value' AS value
FROM alerts AS a, json_each(a.answers_json) AS j;

-- Each survey's totals: its folded days plus the days not folded yet.
CREATE VIEW survey_totals AS
SELECT s.survey_id AS survey_id,
       COALESCE((SELECT d.survey_name FROM survey_daily AS d WHERE d.survey_id = s.survey_id AND d.day > s.folded_through
                 ORDER BY d.day DESC LIMIT 1), s.survey_name) AS survey_name,
       s.responses + COALESCE(SUM(u.responses), 0) AS responses,
       s.nps_responses + COALESCE(SUM(u.nps_responses), 0) AS nps_responses,
       s.promoters + COALESCE(SUM(u.promoters), 0) AS promoters,
       s.passives + COALESCE(SUM(u.passives), 0) AS passives,
       s.detractors + COALESCE(SUM(u.detractors), 0) AS detractors,
       MAX(COALESCE(s.last_response_at, ''), COALESCE(MAX(u.last_response_at), '')) AS last_response_at
FROM surveys AS s LEFT JOIN survey_daily AS u ON u.survey_id = s.survey_id AND u.day > s.folded_through
GROUP BY s.survey_id;

-- Net Promoter Score per survey: promoters 9-10, passives 7-8, detractors 0-6.
CREATE VIEW survey_nps AS
SELECT survey_id, survey_name, nps_responses AS responses, promoters, passives, detractors,
       CAST(ROUND(100.0 * (promoters - detractors) / nps_responses) AS INTEGER) AS nps
FROM survey_totals WHERE nps_responses > 0;
