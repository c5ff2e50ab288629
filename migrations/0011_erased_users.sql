-- 0011: erasure tombstones the user (the SHA-256 of their id, never the id), so that a response
-- of theirs still on the Queue (the spool) or retried by 1Flow is not stored after the erasure;
-- and quarantined bodies that are not JSON are searched as text without reading the others.
CREATE TABLE erased_users (
  user_sha256 TEXT PRIMARY KEY,
  erased_at   TEXT NOT NULL
) WITHOUT ROWID;
CREATE INDEX rejected_unparsed ON rejected_payloads (last_seen_at) WHERE reason IN ('invalid_json', 'unsupported_media_type');
