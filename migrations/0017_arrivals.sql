-- 0017: the overview counts responses by the day they arrived, at no extra write for a response
-- that arrives on the day it was submitted (almost every one): survey_daily notes how many of
-- its day's responses arrived on a later day, and ingest_daily how many arrived on a day other
-- than their submission's. And per destination per day, the delivery counters the cron folds
-- from destination_hourly (kept 48 hours), for the overview's 30-day sparklines.
ALTER TABLE survey_daily ADD COLUMN arrived_later INTEGER NOT NULL DEFAULT 0;
ALTER TABLE ingest_daily ADD COLUMN arrived_other_day INTEGER NOT NULL DEFAULT 0;
CREATE TABLE destination_daily (
  destination TEXT NOT NULL,
  day         TEXT NOT NULL,
  delivered   INTEGER NOT NULL DEFAULT 0,
  failed      INTEGER NOT NULL DEFAULT 0,
  dead        INTEGER NOT NULL DEFAULT 0,
  PRIMARY KEY (destination, day)
) WITHOUT ROWID;
