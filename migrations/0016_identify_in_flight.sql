-- 0016: the response a 1flow-identify lease was taken to send. When the lease runs out before
-- its holder ended it (its record failed, or it was killed), the next holder counts that
-- response as delivered, so that no older one reaches 1Flow after it.
ALTER TABLE identify_latest ADD COLUMN lease_submitted_at TEXT;
ALTER TABLE identify_latest ADD COLUMN lease_alert_id TEXT;
