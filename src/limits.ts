/** Limits that the configuration, the consumer and the tests share (plain numbers: no binding types). */

/** Destinations at most, in DESTINATIONS and D1 together. */
export const MAX_DESTINATIONS = 100;

/** SUBREQUEST_BUDGET's default: the free plan's 50 subrequests per invocation. */
export const DEFAULT_SUBREQUEST_BUDGET = 50;

/**
 * ARCHIVE_ROWS_PER_TICK's default. `npm run bench` measures 12-15 ms of CPU per 1,000
 * responses (rows and both Parquet parts): 300 take about 4.5 ms, under half the free plan's
 * 10 ms, which leaves the rest to reading them from D1.
 */
export const DEFAULT_ARCHIVE_ROWS_PER_TICK = 300;
/** The most ARCHIVE_ROWS_PER_TICK may ask for (a tick also stops at 8 MB of bodies). */
export const MAX_ARCHIVE_ROWS_PER_TICK = 10_000;
/** ARCHIVE_DELAY_MINUTES's default. */
export const DEFAULT_ARCHIVE_DELAY_MINUTES = 60;
