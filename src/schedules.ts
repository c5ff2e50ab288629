/** wrangler.toml's two cron schedules (a test holds them together). */

/** The sweep, notifications, upkeep and retention: every five minutes. */
export const MAIN_CRON = "*/5 * * * *";
/** The archive, in its own invocation (its own subrequests and CPU), two minutes after. */
export const ARCHIVE_CRON = "2-59/5 * * * *";
