-- 0003: dashboard sessions kept server-side, so that they expire, sign-out revokes them, and a new
-- ADMIN_TOKEN ends them all. The cookie holds a random id; a row holds its SHA-256, never the id.
CREATE TABLE sessions (
  id_sha256    TEXT PRIMARY KEY,
  token_sha256 TEXT NOT NULL,   -- SHA-256 of the ADMIN_TOKEN it signed in with
  created_at   TEXT NOT NULL,
  expires_at   TEXT NOT NULL,
  revoked_at   TEXT
) WITHOUT ROWID;
