-- 0018: backfills. A destination is sent the stored responses it missed; each delivery a
-- backfill creates is an ordinary ledger row that names it (deliveries.backfill), and the
-- triggers below keep the backfill's counters as rows are created and settle, so that its
-- progress is one row to read, whatever its size.
CREATE TABLE backfills (
  id            INTEGER PRIMARY KEY,
  destination   TEXT NOT NULL,
  since         TEXT NOT NULL,              -- submitted_at from (inclusive)
  until         TEXT NOT NULL,              -- submitted_at to (exclusive)
  state         TEXT NOT NULL CHECK (state IN ('running', 'done', 'cancelled')),
  total         INTEGER,                    -- known once every response of the range was read
  sent          INTEGER NOT NULL DEFAULT 0, -- deliveries it created (each enqueued)
  delivered     INTEGER NOT NULL DEFAULT 0,
  failed        INTEGER NOT NULL DEFAULT 0, -- failed or dead
  settled       INTEGER NOT NULL DEFAULT 0, -- any final status (cancelled too)
  archived_only INTEGER,                    -- in the range, held by the archive and no longer in D1: not sent
  archived_seen INTEGER NOT NULL DEFAULT 0, -- in the range and in the archive, still in D1 (read so far)
  cursor_submitted_at TEXT NOT NULL,        -- the last response read, (submitted_at, alert_id)
  cursor_alert_id     TEXT NOT NULL,
  started_at    TEXT NOT NULL,
  updated_at    TEXT NOT NULL,
  finished_at   TEXT
);
CREATE INDEX backfills_by_destination ON backfills (destination, id);
CREATE UNIQUE INDEX backfills_running ON backfills (destination) WHERE state = 'running';
CREATE INDEX backfills_by_state ON backfills (state, updated_at) WHERE state = 'running';
ALTER TABLE deliveries ADD COLUMN backfill INTEGER;
CREATE INDEX deliveries_by_backfill ON deliveries (backfill, status) WHERE backfill IS NOT NULL;
CREATE TRIGGER deliveries_backfill_insert AFTER INSERT ON deliveries WHEN NEW.backfill IS NOT NULL
BEGIN
  UPDATE backfills SET sent = sent + 1 WHERE id = NEW.backfill;
END;
CREATE TRIGGER deliveries_backfill_settle AFTER UPDATE OF status ON deliveries
WHEN NEW.backfill IS NOT NULL AND OLD.status = 'pending' AND NEW.status <> 'pending'
BEGIN
  UPDATE backfills SET delivered = delivered + (NEW.status = 'delivered'), failed = failed + (NEW.status IN ('failed', 'dead')),
    settled = settled + 1,
    state = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN 'done' ELSE state END,
    finished_at = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN NEW.updated_at ELSE finished_at END
  WHERE id = NEW.backfill;
END;
-- A pending backfill row deleted (an erasure, retention) settles: the backfill can finish.
CREATE TRIGGER deliveries_backfill_delete AFTER DELETE ON deliveries WHEN OLD.backfill IS NOT NULL AND OLD.status = 'pending'
BEGIN
  UPDATE backfills SET settled = settled + 1,
    state = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN 'done' ELSE state END,
    finished_at = CASE WHEN state = 'running' AND total IS NOT NULL AND settled + 1 >= total THEN OLD.updated_at ELSE finished_at END
  WHERE id = OLD.backfill;
END;
