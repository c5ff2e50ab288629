-- 0010: one consumer at a time sends to a (1flow-identify destination, user) pair, so that an
-- older response can never reach 1Flow after a newer one; and erasure finds a user's rows by index.
ALTER TABLE identify_latest ADD COLUMN lease_until TEXT;
ALTER TABLE identify_latest ADD COLUMN lease_owner TEXT;
CREATE INDEX identify_latest_by_user ON identify_latest (user_system_id);
