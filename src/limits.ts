/** Limits that the configuration, the consumer and the tests share (plain numbers: no binding types). */

/** Destinations at most, in DESTINATIONS and D1 together. */
export const MAX_DESTINATIONS = 100;

/** SUBREQUEST_BUDGET's default: the free plan's 50 subrequests per invocation. */
export const DEFAULT_SUBREQUEST_BUDGET = 50;
