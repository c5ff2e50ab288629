/**
 * SQL of the rollups' upkeep, run by the cron: folding finished days into each survey's
 * totals (so a list of surveys reads one row per survey and today's), and pruning the
 * destinations' hourly counters past what the pages show.
 */

/** Hours of destination counters kept (the pages show the last 24; the overview's days are folded from them). */
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

/** Days of per-destination daily counters kept (the overview shows 30). */
export const DAILY_KEPT_IN_DAYS = 90;

/** The settings key of the last day folded into destination_daily. */
export const DESTINATION_DAYS_KEY = "destination_days_through";

/** The day the destinations' hourly counters are folded through at `now`: the day before, once an hour into today (a batch that began before midnight records under its own hour). */
export function destinationDaysThrough(now: Date): string {
  return new Date(now.getTime() - 3_600_000 - 86_400_000).toISOString().slice(0, 10);
}

/**
 * Folds the destinations' finished days into destination_daily, prunes the daily counters past
 * DAILY_KEPT_IN_DAYS, then the hourly ones older than `before` (YYYY-MM-DDTHH), in one batch.
 * The fold and its prune run once a day: each is guarded by the day folded through (a
 * condition on no table, which SQLite checks once before it reads a row), so on any other tick
 * the batch reads the settings row and the hourly rows it deletes. Only whole days still in
 * destination_hourly are folded, and a fold replaces its day's row: running twice counts once.
 */
export async function pruneHourly(db: D1Database, before: string, now: Date = new Date()): Promise<void> {
  const through = destinationDaysThrough(now);
  const pending = `COALESCE((SELECT value FROM settings WHERE key = '${DESTINATION_DAYS_KEY}'), '') < ?1`;
  const firstWhole = new Date(Date.parse(`${before.slice(0, 10)}T00:00:00.000Z`) + 86_400_000).toISOString().slice(0, 10);
  const keptFrom = new Date(now.getTime() - DAILY_KEPT_IN_DAYS * 86_400_000).toISOString().slice(0, 10);
  await db.batch([
    db
      .prepare(
        `DELETE FROM destination_daily WHERE (destination, day) IN
           (SELECT d.destination, d.day FROM (SELECT 1 WHERE ${pending}) AS due CROSS JOIN destination_daily AS d WHERE d.day < ?2)`,
      )
      .bind(through, keptFrom),
    db
      .prepare(
        `INSERT INTO destination_daily (destination, day, delivered, failed, dead)
         SELECT destination, substr(hour, 1, 10) AS d, SUM(delivered), SUM(failed), SUM(dead)
         FROM (SELECT 1 WHERE ${pending}) AS due CROSS JOIN destination_hourly
         WHERE hour >= ?2 AND hour < date(?1, '+1 day')
           AND substr(hour, 1, 10) > COALESCE((SELECT value FROM settings WHERE key = '${DESTINATION_DAYS_KEY}'), '')
         GROUP BY destination, d
         ON CONFLICT (destination, day) DO UPDATE SET delivered = excluded.delivered, failed = excluded.failed, dead = excluded.dead`,
      )
      .bind(through, firstWhole),
    db
      .prepare(`INSERT INTO settings (key, value) VALUES ('${DESTINATION_DAYS_KEY}', ?1) ON CONFLICT (key) DO UPDATE SET value = ?1 WHERE value < ?1`)
      .bind(through),
    db.prepare("DELETE FROM destination_hourly WHERE hour < ?1").bind(before),
  ]);
}
