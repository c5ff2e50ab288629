-- 0015: survey insights (GET /api/surveys/{survey_id}/insights). The cron folds each finished
-- day of a survey (up to surveys.folded_through) into survey_facets, one row per thing a page
-- counts: the day's responses and NPS ('all'), each platform, trigger event, answer and
-- position answered, and each position's latest text answers. A page reads these rows for the
-- folded days of its window and the responses of the other days (today, the window's edges),
-- never every response stored. Text answers are in survey_texts (the latest of each rank a day),
-- read in the page's order through an index: at most 20 of each rank. facets_through: days up to this one are in survey_facets; a
-- late response or an erasure moves it back before its day, and the cron folds forward again.
ALTER TABLE surveys ADD COLUMN facets_through TEXT NOT NULL DEFAULT '';
-- Moved on by every late response and erasure: a fold that read before it does not move facets_through.
ALTER TABLE surveys ADD COLUMN facets_version INTEGER NOT NULL DEFAULT 0;

CREATE TABLE IF NOT EXISTS survey_facets (
  survey_id     TEXT NOT NULL,
  day           TEXT NOT NULL,               -- YYYY-MM-DD of submitted_at
  facet         TEXT NOT NULL,               -- all | platform | event | answer:<position> | answered:<position>
  value         TEXT NOT NULL,               -- '' (all, answered), the platform, event or answer
  responses     INTEGER NOT NULL DEFAULT 0,  -- responses counted (for answer: the times this answer was given)
  nps_responses INTEGER NOT NULL DEFAULT 0,  -- of them, with an NPS answer (the first nps screen)
  promoters     INTEGER NOT NULL DEFAULT 0,
  passives      INTEGER NOT NULL DEFAULT 0,
  detractors    INTEGER NOT NULL DEFAULT 0,
  detail        TEXT,                        -- JSON: answered {title, type, at}
  PRIMARY KEY (survey_id, day, facet, value)
) WITHOUT ROWID;

-- The text answers a page lists: per day and position, the 20 newest detractors' and the 20
-- newest others'. Deleted with their response on erasure.
CREATE TABLE IF NOT EXISTS survey_texts (
  survey_id    TEXT NOT NULL,
  day          TEXT NOT NULL,
  position     INTEGER NOT NULL,
  alert_id     TEXT NOT NULL,
  rank         INTEGER NOT NULL,             -- 0 detractor, 1 any other
  submitted_at TEXT NOT NULL,
  category     TEXT,                         -- promoter | passive | detractor, NULL without an NPS answer
  answer       TEXT NOT NULL,
  PRIMARY KEY (survey_id, day, position, alert_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS survey_texts_latest ON survey_texts (survey_id, position, rank, submitted_at);
