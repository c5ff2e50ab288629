-- 0019: pacing. A 429 (or a 503 with Retry-After) holds every delivery of its destination until
-- then (held_until), apart from the breaker; and a destination's rate_limit is shared by every
-- consumer through one row per destination: the requests granted in the current window and the
-- previous one (a sliding-window estimate), taken in one statement.
ALTER TABLE destination_health ADD COLUMN held_until TEXT;
CREATE TABLE destination_pace (
  destination TEXT PRIMARY KEY,
  pace_window INTEGER NOT NULL,           -- floor(epoch ms / (per_seconds × 1000))
  current     INTEGER NOT NULL DEFAULT 0, -- requests granted in that window
  previous    INTEGER NOT NULL DEFAULT 0, -- and in the one before it
  granted     INTEGER NOT NULL DEFAULT 0, -- the last take's grant (what RETURNING reads)
  next_free   INTEGER NOT NULL DEFAULT 0, -- epoch ms of the first send slot no waiting job holds
  slot_start  INTEGER NOT NULL DEFAULT 0  -- the last take's first slot for what it could not grant
) WITHOUT ROWID;
