-- 0020: counters that stay true under every interleaving (the review of 0.7.0).
--
-- A backfill's delivery reset to pending (a replay of a failed, dead or, forced, delivered
-- one) is no longer settled: its counters are taken back, so that its second outcome is
-- counted once and the backfill is not done before its last delivery settles.
CREATE TRIGGER deliveries_backfill_reopen AFTER UPDATE OF status ON deliveries
WHEN NEW.backfill IS NOT NULL AND OLD.status <> 'pending' AND NEW.status = 'pending'
BEGIN
  UPDATE backfills SET delivered = delivered - (OLD.status = 'delivered'), failed = failed - (OLD.status IN ('failed', 'dead')),
    settled = settled - 1
  WHERE id = NEW.backfill;
END;
-- A cancel (and the cron's search for a cancel left unfinished) reaches the untried rows of one
-- backfill by the index alone: rows retried meanwhile (attempts > 0) are never read again.
DROP INDEX deliveries_by_backfill;
CREATE INDEX deliveries_by_backfill ON deliveries (backfill, status, attempts) WHERE backfill IS NOT NULL;
-- Part ids are never given twice: the highest ever committed is kept, so a part an erasure
-- removed does not hand its id to the next tick's part.
ALTER TABLE archive_state ADD COLUMN last_part_id INTEGER NOT NULL DEFAULT 0;
UPDATE archive_state SET last_part_id = (SELECT COALESCE(MAX(id), 0) FROM archive_parts);
-- The archive's last part id when the backfill started: a response in a later part was archived
-- after the start (not in archived_only's first count). NULL for backfills started before 0020.
ALTER TABLE backfills ADD COLUMN archive_parts_through INTEGER;
-- The arrival counters of 0017, recounted from what D1 holds: responses stored before 0017 were
-- never counted in them, but an erasure or retention takes them out (the totals drifted).
-- Read once, at the upgrade.
UPDATE survey_daily SET arrived_later = 0 WHERE arrived_later <> 0;
UPDATE survey_daily SET arrived_later = g.n
FROM (SELECT survey_id, substr(submitted_at, 1, 10) AS day, COUNT(*) AS n FROM alerts
      WHERE substr(received_at, 1, 10) <> substr(submitted_at, 1, 10) GROUP BY 1, 2) AS g
WHERE survey_daily.survey_id = g.survey_id AND survey_daily.day = g.day;
UPDATE ingest_daily SET arrived_other_day = 0 WHERE arrived_other_day <> 0;
INSERT INTO ingest_daily (day, arrived_other_day)
SELECT substr(received_at, 1, 10), COUNT(*) FROM alerts WHERE substr(received_at, 1, 10) <> substr(submitted_at, 1, 10) GROUP BY 1
ON CONFLICT (day) DO UPDATE SET arrived_other_day = excluded.arrived_other_day;
