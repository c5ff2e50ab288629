/** The circuit breaker's settings: PAUSE_AFTER_FAILURES consecutive failed attempts pause a destination for PAUSE_SECONDS. */

import { positiveWholeNumber } from "../config";

export const DEFAULT_PAUSE_AFTER_FAILURES = 10;
export const DEFAULT_PAUSE_SECONDS = 300;

export interface BreakerSettings {
  pause_after_failures: number;
  pause_seconds: number;
}

const positive = (raw: string | undefined, fallback: number) => positiveWholeNumber(raw) ?? fallback;

export function breakerSettings(env: { PAUSE_AFTER_FAILURES?: string; PAUSE_SECONDS?: string }): BreakerSettings {
  return {
    pause_after_failures: positive(env.PAUSE_AFTER_FAILURES, DEFAULT_PAUSE_AFTER_FAILURES),
    pause_seconds: positive(env.PAUSE_SECONDS, DEFAULT_PAUSE_SECONDS),
  };
}
