-- 0005: responses that came through the spool (D1 was down when they arrived), per UTC day of receipt,
-- counted when the consumer stores them, for the dashboard's totals.
ALTER TABLE ingest_daily ADD COLUMN spooled INTEGER NOT NULL DEFAULT 0;
