-- 0022: a backfill's cancel tells an operator's replay by a mark, not by time (review of 0.7.2).
-- 0020 spared a pending row touched after the cancel (updated_at > finished_at), to leave an
-- operator's replay to be sent. But rows a consumer's page wrote while the DELETE ran are dated
-- after its cancel, and the outbox sweep's re-enqueue touches untried rows: both escaped the cancel
-- and were sent. Now the reopen trigger marks the row it reopens, and the cancel spares those.
ALTER TABLE deliveries ADD COLUMN reopened INTEGER NOT NULL DEFAULT 0;
DROP TRIGGER deliveries_backfill_reopen;
CREATE TRIGGER deliveries_backfill_reopen AFTER UPDATE OF status ON deliveries
WHEN NEW.backfill IS NOT NULL AND OLD.status <> 'pending' AND NEW.status = 'pending'
BEGIN
  UPDATE backfills SET delivered = delivered - (OLD.status = 'delivered'), failed = failed - (OLD.status IN ('failed', 'dead')),
    settled = settled - 1
  WHERE id = NEW.backfill;
  UPDATE deliveries SET reopened = 1 WHERE alert_id = NEW.alert_id AND destination = NEW.destination;
END;
