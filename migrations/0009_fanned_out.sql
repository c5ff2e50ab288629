-- 0009: when the consumer finished an alert's fan-out (every destination that wanted it has a
-- ledger row): retention keeps an alert until then, so one still on the Queue is never deleted.
-- Alerts the Queue already had are taken as finished (their ledger rows say the rest).
ALTER TABLE alerts ADD COLUMN fanned_out_at TEXT;
UPDATE alerts SET fanned_out_at = enqueued_at WHERE enqueued_at IS NOT NULL;
