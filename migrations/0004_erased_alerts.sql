-- 0004: tombstones of erased responses. 1Flow retries an alert for three days; a retry of a
-- response erased on request must not store it again. The cron forgets them after seven days.
CREATE TABLE erased_alerts (
  alert_id  TEXT PRIMARY KEY,
  erased_at TEXT NOT NULL
) WITHOUT ROWID;
