/**
 * SQL of the rollups' upkeep, run by the cron: folding finished days into each survey's
 * totals (so a list of surveys reads one row per survey and today's), and pruning the
 * destinations' hourly counters past what the pages show.
 */

/** Hours of destination counters kept (the pages show the last 24). */
export const HOURLY_KEPT_IN_HOURS = 48;

/**
 * Folds every survey's days up to `through` (YYYY-MM-DD, the day before today) into its
 * totals. Surveys already folded through that day cost one row read each; the guard on
 * `folded_through` makes two overlapping runs fold a day once.
 */
export async function foldSurveys(db: D1Database, through: string): Promise<number> {
  const { results } = await db
    .prepare("SELECT survey_id, folded_through FROM surveys WHERE folded_through < ?1")
    .bind(through)
    .all<{ survey_id: string; folded_through: string }>();
  if (results.length === 0) return 0;
  const fold = db.prepare(
    `UPDATE surveys SET responses = surveys.responses + t.responses, nps_responses = surveys.nps_responses + t.nps_responses,
       promoters = surveys.promoters + t.promoters, passives = surveys.passives + t.passives, detractors = surveys.detractors + t.detractors,
       last_response_at = MAX(COALESCE(surveys.last_response_at, ''), t.last_response_at),
       survey_name = COALESCE(t.survey_name, surveys.survey_name), folded_through = ?3
     FROM (SELECT COALESCE(SUM(responses), 0) AS responses, COALESCE(SUM(nps_responses), 0) AS nps_responses,
             COALESCE(SUM(promoters), 0) AS promoters, COALESCE(SUM(passives), 0) AS passives,
             COALESCE(SUM(detractors), 0) AS detractors, COALESCE(MAX(last_response_at), '') AS last_response_at,
             (SELECT survey_name FROM survey_daily WHERE survey_id = ?1 AND day > ?2 AND day <= ?3 ORDER BY day DESC LIMIT 1) AS survey_name
           FROM survey_daily WHERE survey_id = ?1 AND day > ?2 AND day <= ?3) AS t
     WHERE surveys.survey_id = ?1 AND surveys.folded_through = ?2`,
  );
  await db.batch(results.map((s) => fold.bind(s.survey_id, s.folded_through, through)));
  return results.length;
}

/** Deletes destination counters older than `before` (YYYY-MM-DDTHH). */
export async function pruneHourly(db: D1Database, before: string): Promise<void> {
  await db.prepare("DELETE FROM destination_hourly WHERE hour < ?1").bind(before).run();
}
