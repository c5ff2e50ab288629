-- 0012: destinations managed from the API and the dashboard, beside DESTINATIONS (which stays
-- read-only). Secrets and header values are stored encrypted (AES-GCM under ENCRYPTION_KEY). A
-- version in `settings`, bumped by triggers on every change, lets a consumer check in one row
-- whether its cached list is current.
CREATE TABLE destinations (
  name       TEXT PRIMARY KEY,
  config     TEXT NOT NULL,
  secret     TEXT,
  headers    TEXT,
  created_at TEXT NOT NULL,
  updated_at TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TRIGGER destinations_version_insert AFTER INSERT ON destinations
BEGIN
  INSERT INTO settings (key, value) VALUES ('destinations_version', '1')
  ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;

CREATE TRIGGER destinations_version_update AFTER UPDATE ON destinations
BEGIN
  INSERT INTO settings (key, value) VALUES ('destinations_version', '1')
  ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;

CREATE TRIGGER destinations_version_delete AFTER DELETE ON destinations
BEGIN
  INSERT INTO settings (key, value) VALUES ('destinations_version', '1')
  ON CONFLICT (key) DO UPDATE SET value = CAST(value AS INTEGER) + 1;
END;
