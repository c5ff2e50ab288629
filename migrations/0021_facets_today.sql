-- 0021: the insights fold today up to its last whole hour (issue 26: a busy survey's page).
-- Before, the cron folded whole days only, and every view of a survey page counted the day's
-- responses so far one by one: a survey with ~800 responses a day cost the page ~3 ms of the
-- Worker's CPU for them. Now each hour, the cron folds the day after facets_through up to the
-- hour's start into survey_facets and survey_texts (the day's rows replaced whole, as a whole
-- day's fold does), and a page counts live only what came after it.
-- facets_hour: the day after facets_through is folded up to this instant ('' none).
ALTER TABLE surveys ADD COLUMN facets_hour TEXT NOT NULL DEFAULT '';
-- facets_mark: set before such a fold reads; a new response submitted before it moves
-- facets_version on (and drops facets_hour when it falls before it), so a fold that read
-- before the response came never moves facets_hour past it.
ALTER TABLE surveys ADD COLUMN facets_mark TEXT NOT NULL DEFAULT '';
