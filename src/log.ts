/** Structured logs: one JSON object per line, with an `event` name. */

export type LogValue = string | number | boolean | null | undefined;
export type LogFields = Record<string, LogValue>;
export type LogLevel = "info" | "warn" | "error";

/**
 * Writes one log line. Fields that are undefined are left out.
 *
 * @example
 * log("info", "webhook", { request_id, alert_id, outcome: "stored", duration_ms: 4 });
 */
export function log(level: LogLevel, event: string, fields: LogFields = {}): void {
  // A field named level or event never overrides the line's own (and they stay first).
  const { level: _level, event: _event, ...rest } = fields;
  const line = JSON.stringify({ level, event, ...rest });
  if (level === "error") console.error(line);
  else if (level === "warn") console.warn(line);
  else console.log(line);
}

/** The message of an unknown thrown value, for a log line. */
export function errorMessage(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : "";
    return `${error.message}${cause}`;
  }
  return String(error);
}
