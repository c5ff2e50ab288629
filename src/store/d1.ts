/**
 * Running D1 work under a deadline, with one retry of a transient error.
 * A D1 that throws or hangs becomes a `StorageUnavailableError`, which the
 * webhook answers with 503 so that the sender retries.
 */

/** What a read needs of D1: the database itself, or a read-replica session of it. */
export type D1Reader = Pick<D1Database, "prepare" | "batch">;

/** Default time the request path may spend on D1 before the spool: with the spool's 2 s, inside 1Flow's 10 s. */
export const STORAGE_DEADLINE_IN_MS = 5_000;

/** D1 error messages that Cloudflare documents as safe to retry. */
const TRANSIENT_D1_MESSAGES = [
  "Network connection lost",
  "storage caused object to be reset",
  "reset because its code was updated",
];

export class StorageUnavailableError extends Error {
  override readonly name = "StorageUnavailableError";
  constructor(
    message: string,
    override readonly cause?: unknown,
  ) {
    super(message);
  }
}

function messagesOf(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error; e !== undefined && e !== null && parts.length < 5; e = e instanceof Error ? e.cause : undefined) {
    parts.push(e instanceof Error ? e.message : String(e));
  }
  return parts.join(": ");
}

/** A constraint D1 enforced (SQLITE_CONSTRAINT): the same write would fail again. */
export function isConstraintError(error: unknown): boolean {
  return /SQLITE_CONSTRAINT|constraint failed/i.test(messagesOf(error));
}

/** A value or row larger than D1 takes (SQLITE_TOOBIG): the same write would fail again. */
export function isTooBigError(error: unknown): boolean {
  return /SQLITE_TOOBIG|too big|too large/i.test(messagesOf(error));
}

export function isTransientD1Error(error: unknown): boolean {
  const message = String(error instanceof Error ? error.message : error);
  return TRANSIENT_D1_MESSAGES.some((m) => message.includes(m));
}

/**
 * Runs `work` before `deadlineMs` passes, retrying once when the first try
 * fails with a transient D1 error. The work must be idempotent.
 *
 * @example
 * const rows = await withDeadline(() => db.batch(statements), 5_000);
 */
export async function withDeadline<T>(work: () => Promise<T>, deadlineMs: number): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new StorageUnavailableError(`D1 did not answer within ${deadlineMs} ms`)),
      deadlineMs,
    );
  });
  const attempt = async (): Promise<T> => {
    try {
      return await work();
    } catch (error) {
      if (!isTransientD1Error(error)) throw error;
      return await work();
    }
  };
  try {
    return await Promise.race([attempt(), deadline]);
  } catch (error) {
    if (error instanceof StorageUnavailableError) throw error;
    throw new StorageUnavailableError("D1 failed", error);
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

/** Parses the deadline variable, falling back to the default. */
export function storageDeadlineMs(raw: string | undefined): number {
  const parsed = Number(raw);
  return Number.isFinite(parsed) && parsed > 0 ? parsed : STORAGE_DEADLINE_IN_MS;
}
