/**
 * The variables a deployment can get wrong, checked together: GET /healthz answers 503
 * `bad_config` while one is off (and says which in the log), and the Worker does not act
 * on a refused value (retention stays off; the body limit stays at its default).
 */
import type { Env } from "./env";
import { isEncryptionKey } from "./secrets";
import { DEFAULT_ARCHIVE_ROWS_PER_TICK, MAX_ARCHIVE_ROWS_PER_TICK } from "./limits";

/** The largest MAX_BODY_BYTES accepted: past it, a row could outgrow what D1 and the spool take. */
export const MAX_BODY_BYTES_LIMIT = 1_048_576;

const positiveInteger = (raw: string) => /^\s*[1-9]\d*\s*$/.test(raw);

/** A variable that must be a positive whole number, or null (unset, empty, or anything else). */
export function positiveWholeNumber(raw: string | undefined): number | null {
  return raw !== undefined && positiveInteger(raw) ? Number(raw) : null;
}
const set = (raw: string | undefined): raw is string => raw !== undefined && raw.trim() !== "";

/** What is wrong with the configuration, one sentence per variable; empty when nothing is. */
export function configProblems(
  env: Pick<
    Env,
    | "RETENTION_DAYS"
    | "MAX_BODY_BYTES"
    | "PAUSE_AFTER_FAILURES"
    | "PAUSE_SECONDS"
    | "SILENCE_HOURS"
    | "NOTIFY_URL"
    | "SUBREQUEST_BUDGET"
    | "ENCRYPTION_KEY"
    | "ENCRYPTION_KEY_PREVIOUS"
    | "ARCHIVE_DELAY_MINUTES"
    | "ARCHIVE_ROWS_PER_TICK"
  >,
): string[] {
  const problems: string[] = [];
  for (const name of ["PAUSE_AFTER_FAILURES", "PAUSE_SECONDS", "SILENCE_HOURS", "SUBREQUEST_BUDGET"] as const) {
    const raw = env[name];
    if (set(raw) && !positiveInteger(raw)) problems.push(`${name} must be a positive whole number; its default applies until it is`);
  }
  if (set(env.NOTIFY_URL) && !/^https?:\/\/[^\s]+$/.test(env.NOTIFY_URL)) problems.push("NOTIFY_URL must be an http(s) URL; no notification is sent until it is");
  if (set(env.RETENTION_DAYS) && !positiveInteger(env.RETENTION_DAYS)) {
    problems.push("RETENTION_DAYS must be a positive whole number of days; retention is off until it is");
  }
  if (set(env.MAX_BODY_BYTES) && (!positiveInteger(env.MAX_BODY_BYTES) || Number(env.MAX_BODY_BYTES) > MAX_BODY_BYTES_LIMIT)) {
    problems.push(`MAX_BODY_BYTES must be a whole number of bytes up to ${MAX_BODY_BYTES_LIMIT}; the default 65536 applies until it is`);
  }
  if (set(env.ARCHIVE_DELAY_MINUTES) && !/^\s*\d+\s*$/.test(env.ARCHIVE_DELAY_MINUTES)) {
    problems.push("ARCHIVE_DELAY_MINUTES must be a whole number of minutes (0 or more); the default 60 applies until it is");
  }
  if (set(env.ARCHIVE_ROWS_PER_TICK) && (!positiveInteger(env.ARCHIVE_ROWS_PER_TICK) || Number(env.ARCHIVE_ROWS_PER_TICK) > MAX_ARCHIVE_ROWS_PER_TICK)) {
    problems.push(`ARCHIVE_ROWS_PER_TICK must be a whole number from 1 to ${MAX_ARCHIVE_ROWS_PER_TICK}; the default ${DEFAULT_ARCHIVE_ROWS_PER_TICK} applies until it is`);
  }
  for (const name of ["ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS"] as const) {
    const raw = env[name];
    if (set(raw) && !isEncryptionKey(raw)) problems.push(`${name} must be 32 bytes as base64 or hex (openssl rand -base64 32); secrets cannot be stored or opened until it is`);
  }
  return problems;
}
