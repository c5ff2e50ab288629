-- 0014: the users (SHA-256 of user_system_id) whose responses an object noted as garbage holds,
-- when a tick noted it before its put. An erasure deletes such objects at once instead of
-- leaving the user in R2 until the garbage delay: a tick whose parts hold the user can no
-- longer commit them (its guard counts the responses, which the erasure deleted first).
-- NULL for a rewrite's new object and for rows noted before 0014.
ALTER TABLE archive_garbage ADD COLUMN users TEXT;

-- The body hash of each archived response, so that a different body under the id of a response
-- retention removed from D1 is still quarantined as alert_id_conflict (the same body is a
-- duplicate). NULL for responses archived before 0014.
ALTER TABLE archived_alerts ADD COLUMN payload_sha256 TEXT;
