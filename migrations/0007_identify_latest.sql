-- 0007: the newest response delivered per user to each 1flow-identify destination, so that a retry
-- of an older response never overwrites a newer one in 1Flow (looked up by its key: no scan).
CREATE TABLE identify_latest (
  destination    TEXT NOT NULL,
  user_system_id TEXT NOT NULL,
  submitted_at   TEXT NOT NULL,
  alert_id       TEXT NOT NULL,
  PRIMARY KEY (destination, user_system_id)
) WITHOUT ROWID;
