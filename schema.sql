-- oneflow-webhooks: the whole current D1 schema, in one idempotent file, for a new database:
--   wrangler d1 execute oneflow --local  --file=schema.sql
--   wrangler d1 execute oneflow --remote --file=schema.sql
-- It builds what migrations/ builds (a test holds the two together). To upgrade an existing
-- database, apply the migrations instead: npm run deploy, or wrangler d1 migrations apply DB.

-- One row per 1Flow alert (one survey response), keyed by the sender's alert_id.
-- WITHOUT ROWID: the key is the table, so a new alert writes no separate key index.
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
  answers_json             TEXT NOT NULL DEFAULT '[]', -- JSON: [{title,type,answer,value}] in screen order
  enqueued_at              TEXT,             -- NULL until the Queue accepted the message (outbox)
  outbox_claimed_until     TEXT,             -- a sweep sending it holds it until then
  fanout_claimed_until     TEXT,             -- a consumer delivering it holds it until then
  fanned_out_at            TEXT,             -- every destination that wanted it has a ledger row (retention waits for it)
  user_sha256              TEXT              -- SHA-256 hex of user_system_id (the archive's key for erasure)
) WITHOUT ROWID;

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
  alert_id     TEXT NOT NULL,
  destination  TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead', 'cancelled')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_status  INTEGER,
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  delivered_at TEXT,
  backfill     INTEGER,                        -- the backfill that created it (backfills.id), if one did
  reopened     INTEGER NOT NULL DEFAULT 0,     -- 1 once a replay reset it to pending (a backfill's cancel spares it)
  PRIMARY KEY (alert_id, destination)
) WITHOUT ROWID;

-- Repeats of a stored alert_id (1Flow's retries), refused bodies, and responses stored from
-- the spool (D1 was down when they arrived), per UTC day of receipt.
CREATE TABLE IF NOT EXISTS ingest_daily (
  day        TEXT PRIMARY KEY,               -- YYYY-MM-DD, UTC
  duplicates INTEGER NOT NULL DEFAULT 0,
  rejected   INTEGER NOT NULL DEFAULT 0,
  spooled    INTEGER NOT NULL DEFAULT 0,
  arrived_other_day INTEGER NOT NULL DEFAULT 0  -- new responses that arrived this day, submitted another day
);

-- Responses and NPS per survey per UTC day of submission, counted in the ingest batch.
CREATE TABLE IF NOT EXISTS survey_daily (
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
  arrived_later    INTEGER NOT NULL DEFAULT 0, -- of responses, those that arrived on a later day
  PRIMARY KEY (survey_id, day)
) WITHOUT ROWID;

-- The newest response delivered per user to each 1flow-identify destination: an older one is not sent after it.
-- The lease lets one consumer at a time send to a pair ('' in submitted_at: nothing delivered yet);
-- lease_* names the response it sends, counted as delivered if the lease runs out unended.
CREATE TABLE IF NOT EXISTS identify_latest (
  destination    TEXT NOT NULL,
  user_system_id TEXT NOT NULL,
  submitted_at   TEXT NOT NULL,
  alert_id       TEXT NOT NULL,
  lease_until    TEXT,
  lease_owner    TEXT,
  lease_submitted_at TEXT,
  lease_alert_id TEXT,
  PRIMARY KEY (destination, user_system_id)
) WITHOUT ROWID;

-- Responses erased on request: a later 1Flow retry of one is not stored again (kept 7 days).
CREATE TABLE IF NOT EXISTS erased_alerts (
  alert_id  TEXT PRIMARY KEY,
  erased_at TEXT NOT NULL
) WITHOUT ROWID;

-- Users erased on request, by the SHA-256 of their id: a response of theirs submitted before the
-- erasure (still on the Queue, or retried by 1Flow) is not stored (kept 7 days).
CREATE TABLE IF NOT EXISTS erased_users (
  user_sha256 TEXT PRIMARY KEY,
  erased_at   TEXT NOT NULL
) WITHOUT ROWID;

-- Destinations managed from the API and the dashboard (DESTINATIONS stays read-only beside them):
-- `config` is the entry as JSON without its secret and header values, which are AES-GCM sealed
-- under ENCRYPTION_KEY (`v1.<iv>.<ciphertext>`).
CREATE TABLE IF NOT EXISTS destinations (
  name       TEXT PRIMARY KEY,
  config     TEXT NOT NULL,
  secret     TEXT,
  headers    TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) WITHOUT ROWID;

-- Small values the Worker keeps: destinations_version (bumped on every change of destinations).
CREATE TABLE IF NOT EXISTS settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

-- Dashboard sessions, server-side: expiry, revocation, and the token they signed in with.
CREATE TABLE IF NOT EXISTS sessions (
  id_sha256    TEXT PRIMARY KEY,                -- SHA-256 of the random id the cookie holds
  token_sha256 TEXT NOT NULL,                   -- SHA-256 of the ADMIN_TOKEN it signed in with
  created_at   TEXT NOT NULL,
  expires_at   TEXT NOT NULL,
  revoked_at   TEXT
) WITHOUT ROWID;

-- Each survey's totals of the days folded so far (the cron folds finished days), so a list of
-- surveys reads one row per survey plus its unfolded days.
CREATE TABLE IF NOT EXISTS surveys (
  survey_id        TEXT PRIMARY KEY,
  survey_name      TEXT,
  responses        INTEGER NOT NULL DEFAULT 0,
  nps_responses    INTEGER NOT NULL DEFAULT 0,
  promoters        INTEGER NOT NULL DEFAULT 0,
  passives         INTEGER NOT NULL DEFAULT 0,
  detractors       INTEGER NOT NULL DEFAULT 0,
  last_response_at TEXT,
  folded_through   TEXT NOT NULL DEFAULT '',   -- days up to this one are in the totals
  facets_through   TEXT NOT NULL DEFAULT '',   -- days up to this one are in survey_facets (insights)
  facets_version   INTEGER NOT NULL DEFAULT 0, -- moved on by a late response or an erasure (a fold then starts again)
  facets_hour      TEXT NOT NULL DEFAULT '',   -- the day after facets_through is in survey_facets up to this instant
  facets_mark      TEXT NOT NULL DEFAULT ''    -- a new response submitted before it moves facets_version on (0021)
) WITHOUT ROWID;

-- Insights: each folded day of a survey as the rows a page counts (see migrations/0015).
CREATE TABLE IF NOT EXISTS survey_facets (
  survey_id     TEXT NOT NULL,
  day           TEXT NOT NULL,               -- YYYY-MM-DD of submitted_at
  facet         TEXT NOT NULL,               -- all | platform | event | answer:<position> | answered:<position>
  value         TEXT NOT NULL,               -- '' (all, answered), the platform, event or answer
  responses     INTEGER NOT NULL DEFAULT 0,  -- responses counted (for answer: the times this answer was given)
  nps_responses INTEGER NOT NULL DEFAULT 0,  -- of them, with an NPS answer (the first nps screen)
  promoters     INTEGER NOT NULL DEFAULT 0,
  passives      INTEGER NOT NULL DEFAULT 0,
  detractors    INTEGER NOT NULL DEFAULT 0,
  detail        TEXT,                        -- JSON: answered {title, type, at}
  PRIMARY KEY (survey_id, day, facet, value)
) WITHOUT ROWID;

-- Insights: the text answers a page lists (per day and position, the 20 newest detractors' and
-- the 20 newest others'), read through survey_texts_latest in the page's order.
CREATE TABLE IF NOT EXISTS survey_texts (
  survey_id    TEXT NOT NULL,
  day          TEXT NOT NULL,
  position     INTEGER NOT NULL,
  alert_id     TEXT NOT NULL,
  rank         INTEGER NOT NULL,             -- 0 detractor, 1 any other
  submitted_at TEXT NOT NULL,
  category     TEXT,                         -- promoter | passive | detractor, NULL without an NPS answer
  answer       TEXT NOT NULL,
  PRIMARY KEY (survey_id, day, position, alert_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS survey_texts_latest ON survey_texts (survey_id, position, rank, submitted_at);

-- Delivery outcomes per destination per UTC hour, counted once per consumer batch.
CREATE TABLE IF NOT EXISTS destination_hourly (
  destination       TEXT NOT NULL,
  hour              TEXT NOT NULL,             -- YYYY-MM-DDTHH
  delivered         INTEGER NOT NULL DEFAULT 0,
  failed            INTEGER NOT NULL DEFAULT 0, -- failed attempts, retried or not
  last_delivered_at TEXT,
  dead              INTEGER NOT NULL DEFAULT 0, -- deliveries whose retries ran out
  PRIMARY KEY (destination, hour)
) WITHOUT ROWID;

-- A destination's rate_limit, shared by every consumer: requests granted in the current
-- window of per_seconds and the previous one (a sliding-window estimate).
CREATE TABLE IF NOT EXISTS destination_pace (
  destination TEXT PRIMARY KEY,
  pace_window INTEGER NOT NULL,           -- floor(epoch ms / (per_seconds × 1000))
  current     INTEGER NOT NULL DEFAULT 0, -- requests granted in that window
  previous    INTEGER NOT NULL DEFAULT 0, -- and in the one before it
  granted     INTEGER NOT NULL DEFAULT 0, -- the last take's grant (what RETURNING reads)
  next_free   INTEGER NOT NULL DEFAULT 0, -- epoch ms of the first send slot no waiting job holds
  slot_start  INTEGER NOT NULL DEFAULT 0  -- the last take's first slot for what it could not grant
) WITHOUT ROWID;

-- Delivery outcomes per destination per UTC day, folded by the cron from destination_hourly (kept 90 days).
CREATE TABLE IF NOT EXISTS destination_daily (
  destination TEXT NOT NULL,
  day         TEXT NOT NULL,
  delivered   INTEGER NOT NULL DEFAULT 0,
  failed      INTEGER NOT NULL DEFAULT 0,
  dead        INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (destination, day)
) WITHOUT ROWID;

-- Per destination: pending deliveries (kept by the triggers below) and its circuit breaker.
CREATE TABLE IF NOT EXISTS destination_health (
  destination          TEXT PRIMARY KEY,
  pending              INTEGER NOT NULL DEFAULT 0,
  state                TEXT NOT NULL DEFAULT 'active', -- active | paused
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  paused_until         TEXT,                           -- the next probe, while paused
  probe_until          TEXT,                           -- a consumer sending the probe holds it until then
  last_status          INTEGER,
  last_error           TEXT,
  resume_after         TEXT,                           -- after a resume: JSON [updated_at, alert_id] the cron re-sends from
  held_until           TEXT                            -- a 429 (or a 503 with Retry-After) holds every delivery until then
) WITHOUT ROWID;

-- Notifications waiting for the cron to send them to NOTIFY_URL.
CREATE TABLE IF NOT EXISTS notifications (
  id         INTEGER PRIMARY KEY,
  event      TEXT NOT NULL,                 -- destination.paused | destination.resumed | delivery.dead
  key        TEXT NOT NULL,                 -- what it is about (a destination's name)
  data       TEXT NOT NULL,                 -- JSON
  created_at TEXT NOT NULL,
  attempts   INTEGER NOT NULL DEFAULT 0
);

-- What the cron last told the operator, for its deduplication (key: event and what it is about).
CREATE TABLE IF NOT EXISTS notify_state (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE INDEX IF NOT EXISTS alerts_by_time ON alerts (submitted_at);
CREATE INDEX IF NOT EXISTS alerts_by_survey_time ON alerts (survey_id, submitted_at);
CREATE INDEX IF NOT EXISTS alerts_by_user ON alerts (user_system_id, submitted_at);
CREATE INDEX IF NOT EXISTS alerts_outbox ON alerts (received_at) WHERE enqueued_at IS NULL;
CREATE INDEX IF NOT EXISTS rejected_by_time ON rejected_payloads (last_seen_at, id);
-- Only deliveries still open or refused are indexed: a delivered one costs no index entry.
CREATE INDEX IF NOT EXISTS deliveries_open ON deliveries (status, updated_at) WHERE status <> 'delivered';
CREATE INDEX IF NOT EXISTS deliveries_pending_by_destination ON deliveries (destination, updated_at) WHERE status = 'pending';
-- The quarantine, found by alert_id and by user without reading every body, and paged by time.
CREATE INDEX IF NOT EXISTS rejected_by_alert ON rejected_payloads (alert_id);
CREATE INDEX IF NOT EXISTS rejected_by_user ON rejected_payloads (json_extract(body, '$.user.user_system_id')) WHERE json_valid(body);
-- Bodies that are not JSON, which erasure searches as text.
CREATE INDEX IF NOT EXISTS rejected_unparsed ON rejected_payloads (last_seen_at) WHERE reason IN ('invalid_json', 'unsupported_media_type');
CREATE INDEX IF NOT EXISTS identify_latest_by_user ON identify_latest (user_system_id);

CREATE TRIGGER IF NOT EXISTS deliveries_pending_insert AFTER INSERT ON deliveries WHEN NEW.status = 'pending'
BEGIN
  INSERT INTO destination_health (destination, pending) VALUES (NEW.destination, 1)
  ON CONFLICT (destination) DO UPDATE SET pending = pending + 1;
END;

CREATE TRIGGER IF NOT EXISTS deliveries_pending_update AFTER UPDATE OF status ON deliveries
WHEN (OLD.status = 'pending') <> (NEW.status = 'pending')
BEGIN
  INSERT INTO destination_health (destination, pending) VALUES (NEW.destination, CASE WHEN NEW.status = 'pending' THEN 1 ELSE -1 END)
  ON CONFLICT (destination) DO UPDATE SET pending = pending + excluded.pending;
END;

CREATE TRIGGER IF NOT EXISTS deliveries_pending_delete AFTER DELETE ON deliveries WHEN OLD.status = 'pending'
BEGIN
  UPDATE destination_health SET pending = pending - 1 WHERE destination = OLD.destination;
END;

CREATE TRIGGER IF NOT EXISTS destinations_version_insert AFTER INSERT ON destinations
BEGIN
  INSERT INTO settings (key, value) VALUES ('destinations_version', '1')
  ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;

CREATE TRIGGER IF NOT EXISTS destinations_version_update AFTER UPDATE ON destinations
BEGIN
  INSERT INTO settings (key, value) VALUES ('destinations_version', '1')
  ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;

CREATE TRIGGER IF NOT EXISTS destinations_version_delete AFTER DELETE ON destinations
BEGIN
  INSERT INTO settings (key, value) VALUES ('destinations_version', '1')
  ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;

-- One row per screen of each response, as before: a view over alerts.answers_json.
CREATE VIEW IF NOT EXISTS answers AS
SELECT a.alert_id AS alert_id, j.key AS position, j.value ->> 'title' AS title, j.value ->> 'type' AS type,
       j.value ->> 'answer' AS answer, j.value ->> 'value' AS value
FROM alerts AS a, json_each(a.answers_json) AS j;

-- Each survey's totals: its folded days plus the days not folded yet.
CREATE VIEW IF NOT EXISTS survey_totals AS
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
CREATE VIEW IF NOT EXISTS survey_nps AS
SELECT survey_id, survey_name, nps_responses AS responses, promoters, passives, detractors,
       CAST(ROUND(100.0 * (promoters - detractors) / nps_responses) AS INTEGER) AS nps
FROM survey_totals WHERE nps_responses > 0;

-- The Parquet archive in R2 (binding ARCHIVE), see migrations/0013_archive.sql.
-- One row: the archive's cursor over alerts_by_time (submitted_at, alert_id), what it has read
-- through, its totals, and its last error. `guard` lets a commit assert a condition: a batch
-- that sets it to 0 fails its CHECK and changes nothing.
CREATE TABLE IF NOT EXISTS archive_state (
  id                  INTEGER PRIMARY KEY CHECK (id = 1),
  cursor_submitted_at TEXT NOT NULL DEFAULT '',
  cursor_alert_id     TEXT NOT NULL DEFAULT '',
  read_through        TEXT NOT NULL DEFAULT '',  -- a response stored later and submitted at or before this is late
  files               INTEGER NOT NULL DEFAULT 0,
  responses           INTEGER NOT NULL DEFAULT 0,
  answers             INTEGER NOT NULL DEFAULT 0,
  bytes               INTEGER NOT NULL DEFAULT 0,
  newest_submitted_at TEXT,
  last_run_at         TEXT,
  last_error          TEXT,
  last_error_at       TEXT,
  guard               INTEGER NOT NULL DEFAULT 1 CHECK (guard = 1),
  last_part_id        INTEGER NOT NULL DEFAULT 0   -- the highest part id ever committed (never given again)
);
INSERT INTO archive_state (id) VALUES (1) ON CONFLICT (id) DO NOTHING;

-- The manifest: every live part, and nothing else. `id` stays when erasure rewrites a part
-- into a new object (a new key), so archived_alerts keeps pointing at it.
CREATE TABLE IF NOT EXISTS archive_parts (
  id         INTEGER PRIMARY KEY,
  key        TEXT NOT NULL UNIQUE,
  table_name TEXT NOT NULL CHECK (table_name IN ('responses', 'answers')),
  date       TEXT NOT NULL,                -- YYYY-MM-DD, UTC day of submitted_at
  rows       INTEGER NOT NULL,
  bytes      INTEGER NOT NULL,
  created_at TEXT NOT NULL
);

-- One row per archived response: its parts (NULL once erasure took it out of that part, or
-- for answers when it has none) and its user's SHA-256 (never the id, which outlives
-- retention here).
CREATE TABLE IF NOT EXISTS archived_alerts (
  alert_id       TEXT PRIMARY KEY,
  user_sha256    TEXT,
  responses_part INTEGER,
  answers_part   INTEGER,
  -- The body's hash: a copy that comes back after retention is a duplicate, a different body a conflict.
  payload_sha256 TEXT
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS archived_by_user ON archived_alerts (user_sha256) WHERE user_sha256 IS NOT NULL;

-- Responses the cursor has passed that still need archiving: stored after the archive read past
-- their submitted_at (1Flow's late retries, the spool), or received less than
-- ARCHIVE_DELAY_MINUTES before the tick that passed them.
CREATE TABLE IF NOT EXISTS archive_late (
  alert_id  TEXT PRIMARY KEY,
  stored_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS archive_late_by_time ON archive_late (stored_at);

-- Objects that may be in R2 but are not (or no longer) in the manifest: a part being written
-- (removed when its manifest row commits) or a part replaced by erasure. Deleted from R2 once
-- `due`, or at once by the erasure of a user in `users` (a JSON array of the SHA-256 of the
-- user ids a tick's part holds; NULL for a rewrite's object).
CREATE TABLE IF NOT EXISTS archive_garbage (
  key TEXT PRIMARY KEY,
  due TEXT NOT NULL,
  users TEXT
) WITHOUT ROWID;

-- Backfills: a destination sent the stored responses it missed (see migrations/0018_backfills.sql).
CREATE TABLE IF NOT EXISTS backfills (
  id            INTEGER PRIMARY KEY,
  destination   TEXT NOT NULL,
  since         TEXT NOT NULL,              -- submitted_at from (inclusive)
  until         TEXT NOT NULL,              -- submitted_at to (exclusive)
  state         TEXT NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
  total         INTEGER,                    -- known once every response of the range was read
  sent          INTEGER NOT NULL DEFAULT 0, -- deliveries it created (each enqueued)
  delivered     INTEGER NOT NULL DEFAULT 0,
  failed        INTEGER NOT NULL DEFAULT 0, -- failed or dead
  settled       INTEGER NOT NULL DEFAULT 0, -- any final status (cancelled too)
  archived_only INTEGER,                    -- in the range, held by the archive and no longer in D1: not sent
  archived_seen INTEGER NOT NULL DEFAULT 0, -- in the range and in the archive, still in D1 (read so far)
  cursor_submitted_at TEXT NOT NULL,        -- the last response read, (submitted_at, alert_id)
  cursor_alert_id     TEXT NOT NULL,
  started_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  finished_at   TEXT,
  archive_parts_through INTEGER             -- the archive's last part at the start (later parts: archived after it)
);
CREATE INDEX IF NOT EXISTS backfills_by_destination ON backfills (destination, id);
CREATE UNIQUE INDEX IF NOT EXISTS backfills_running ON backfills (destination) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS backfills_by_state ON backfills (state, updated_at) WHERE state = 'running';
CREATE INDEX IF NOT EXISTS deliveries_by_backfill ON deliveries (backfill, status, attempts) WHERE backfill IS NOT NULL;
CREATE TRIGGER IF NOT EXISTS deliveries_backfill_insert AFTER INSERT ON deliveries WHEN NEW.backfill IS NOT NULL
BEGIN
  UPDATE backfills SET sent = sent + 1 WHERE id = NEW.backfill;
END;
CREATE TRIGGER IF NOT EXISTS deliveries_backfill_settle AFTER UPDATE OF status ON deliveries
WHEN NEW.backfill IS NOT NULL AND OLD.status = 'pending' AND NEW.status <> 'pending'
BEGIN
  UPDATE backfills SET delivered = delivered + (NEW.status = 'delivered'), failed = failed + (NEW.status IN ('failed', 'dead')),
    settled = settled + 1,
    state = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN 'done' ELSE state END,
    finished_at = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN NEW.updated_at ELSE finished_at END
  WHERE id = NEW.backfill;
END;
-- A backfill's row reset to pending (a replay) is not settled any more: its outcome is taken back.
CREATE TRIGGER IF NOT EXISTS deliveries_backfill_reopen AFTER UPDATE OF status ON deliveries
WHEN NEW.backfill IS NOT NULL AND OLD.status <> 'pending' AND NEW.status = 'pending'
BEGIN
  UPDATE backfills SET delivered = delivered - (OLD.status = 'delivered'), failed = failed - (OLD.status IN ('failed', 'dead')),
    settled = settled - 1
  WHERE id = NEW.backfill;
  UPDATE deliveries SET reopened = 1 WHERE alert_id = NEW.alert_id AND destination = NEW.destination;
END;
-- A pending backfill row deleted (an erasure, retention) settles: the backfill can finish.
CREATE TRIGGER IF NOT EXISTS deliveries_backfill_delete AFTER DELETE ON deliveries WHEN OLD.backfill IS NOT NULL AND OLD.status = 'pending'
BEGIN
  UPDATE backfills SET settled = settled + 1,
    state = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN 'done' ELSE state END,
    finished_at = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN OLD.updated_at ELSE finished_at END
  WHERE id = OLD.backfill;
END;
