-- 0013: the Parquet archive in R2 (binding ARCHIVE). The cron writes each stored response once
-- into day parts; D1 keeps the manifest of live parts, which part holds each archived response
-- (for GET /api/alerts/{id} after retention, and to find a user's parts on erasure without
-- reading any file), the cursor, and the objects that may be left over from a crash.

-- The SHA-256 of user_system_id, which ingest computes anyway (the erased-user check): the
-- archive files each response under it without hashing again. NULL for rows stored before.
ALTER TABLE alerts ADD COLUMN user_sha256 TEXT;

-- One row: the archive's cursor over alerts_by_time (submitted_at, alert_id), what it has read
-- through, its totals, and its last error. `guard` lets a commit assert a condition: a batch
-- that sets it to 0 fails its CHECK and changes nothing.
CREATE TABLE archive_state (
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
  guard               INTEGER NOT NULL DEFAULT 1 CHECK (guard = 1)
);
INSERT INTO archive_state (id) VALUES (1);

-- The manifest: every live part, and nothing else. `id` stays when erasure rewrites a part
-- into a new object (a new key), so archived_alerts keeps pointing at it.
CREATE TABLE archive_parts (
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
CREATE TABLE archived_alerts (
  alert_id       TEXT PRIMARY KEY,
  user_sha256    TEXT,
  responses_part INTEGER,
  answers_part   INTEGER
) WITHOUT ROWID;
CREATE INDEX archived_by_user ON archived_alerts (user_sha256) WHERE user_sha256 IS NOT NULL;

-- Responses the cursor has passed that still need archiving: stored after the archive read past
-- their submitted_at (1Flow's late retries, the spool), or received less than
-- ARCHIVE_DELAY_MINUTES before the tick that passed them.
CREATE TABLE archive_late (
  alert_id  TEXT PRIMARY KEY,
  stored_at TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX archive_late_by_time ON archive_late (stored_at);

-- Objects that may be in R2 but are not (or no longer) in the manifest: a part being written
-- (removed when its manifest row commits) or a part replaced by erasure. Deleted from R2 once
-- `due`.
CREATE TABLE archive_garbage (
  key TEXT PRIMARY KEY,
  due TEXT NOT NULL
) WITHOUT ROWID;
