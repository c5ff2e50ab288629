-- 0008: a final `cancelled` state for deliveries that nobody wants any more (their destination
-- was removed, or its filter no longer matches), so that the sweep stops re-sending them and
-- retention moves past them. SQLite cannot change a CHECK in place: the ledger is rebuilt as is.
CREATE TABLE deliveries_0008 (
  alert_id     TEXT NOT NULL,
  destination  TEXT NOT NULL,
  status       TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed', 'dead', 'cancelled')),
  attempts     INTEGER NOT NULL DEFAULT 0,
  last_status  INTEGER,
  last_error   TEXT,
  updated_at   TEXT NOT NULL,
  delivered_at TEXT,
  PRIMARY KEY (alert_id, destination)
) WITHOUT ROWID;
INSERT INTO deliveries_0008 (alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at)
SELECT alert_id, destination, status, attempts, last_status, last_error, updated_at, delivered_at FROM deliveries;
DROP TABLE deliveries;
ALTER TABLE deliveries_0008 RENAME TO deliveries;

CREATE INDEX deliveries_open ON deliveries (status, updated_at) WHERE status <> 'delivered';
CREATE INDEX deliveries_pending_by_destination ON deliveries (destination, updated_at) WHERE status = 'pending';

CREATE TRIGGER deliveries_pending_insert AFTER INSERT ON deliveries WHEN NEW.status = 'pending'
BEGIN
  INSERT INTO destination_health (destination, pending) VALUES (NEW.destination, 1)
  ON CONFLICT (destination) DO UPDATE SET pending = pending + 1;
END;

CREATE TRIGGER deliveries_pending_update AFTER UPDATE OF status ON deliveries
WHEN (OLD.status = 'pending') <> (NEW.status = 'pending')
BEGIN
  INSERT INTO destination_health (destination, pending) VALUES (NEW.destination, CASE WHEN NEW.status = 'pending' THEN 1 ELSE -1 END)
  ON CONFLICT (destination) DO UPDATE SET pending = pending + excluded.pending;
END;

CREATE TRIGGER deliveries_pending_delete AFTER DELETE ON deliveries WHEN OLD.status = 'pending'
BEGIN
  UPDATE destination_health SET pending = pending - 1 WHERE destination = OLD.destination;
END;
