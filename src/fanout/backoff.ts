/** Retry delays for deliveries: exponential, jittered, capped, and never sooner than a Retry-After. */

export const MAX_RETRY_DELAY_IN_SECONDS = 3_600;
export const DEFAULT_RETRY_BASE_IN_SECONDS = 30;

/**
 * Delay before the next try, after `attempts` tries (1 = the first failed).
 * Half the exponential step is fixed and half is random ("equal jitter"), so
 * retries spread out but never come back sooner than half the step.
 *
 * @example
 * retryDelaySeconds({ attempts: 3, base_seconds: 30, random: Math.random() }); // 60..120
 */
export function retryDelaySeconds(input: {
  attempts: number;
  base_seconds: number;
  random: number;
  retry_after_seconds?: number | null;
}): number {
  const exponent = Math.max(0, Math.min(30, input.attempts - 1));
  const step = Math.min(MAX_RETRY_DELAY_IN_SECONDS, input.base_seconds * 2 ** exponent);
  const jittered = Math.ceil(step / 2 + input.random * (step / 2));
  const floor = Math.min(MAX_RETRY_DELAY_IN_SECONDS, Math.max(0, Math.ceil(input.retry_after_seconds ?? 0)));
  return Math.min(MAX_RETRY_DELAY_IN_SECONDS, Math.max(jittered, floor));
}

export function retryBaseSeconds(raw: string | undefined): number {
  const parsed = Number(raw);
  return Number.isFinite(parsed) && parsed > 0 ? parsed : DEFAULT_RETRY_BASE_IN_SECONDS;
}

/** Seconds from a Retry-After header (seconds or an HTTP date), or null. */
export function parseRetryAfter(header: string | null, now: Date): number | null {
  if (header === null || header.trim() === "") return null;
  const seconds = Number(header);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(header);
  return Number.isNaN(date) ? null : Math.max(0, Math.ceil((date - now.getTime()) / 1000));
}
