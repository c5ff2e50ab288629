/**
 * SQL of the destinations managed from the API (`destinations`) and the version that tells
 * a consumer whether its cached list is current (one row read).
 */
import type { D1Reader } from "./d1";

export interface DestinationRow {
  name: string;
  /** JSON: the entry without its name, secret and header values. */
  config: string;
  /** Sealed signing secret, or null. */
  secret: string | null;
  /** Sealed JSON object of the extra headers, or null. */
  headers: string | null;
  created_at: string;
  updated_at: string;
}

/** The version of the stored destinations: it changes with every write to them. */
export async function destinationsVersion(db: D1Reader): Promise<string> {
  const row = await db.prepare("SELECT value FROM settings WHERE key = 'destinations_version'").first<{ value: string }>();
  return row?.value ?? "0";
}

/** Every stored destination (at most 100), by name, with the version read in the same round trip. */
export async function storedDestinations(db: D1Reader): Promise<{ version: string; rows: DestinationRow[] }> {
  const [version, rows] = await db.batch([
    db.prepare("SELECT value FROM settings WHERE key = 'destinations_version'"),
    db.prepare("SELECT name, config, secret, headers, created_at, updated_at FROM destinations ORDER BY name"),
  ]);
  return {
    version: ((version?.results[0] as { value: string } | undefined)?.value ?? "0"),
    rows: (rows?.results ?? []) as DestinationRow[],
  };
}

export async function storedDestination(db: D1Reader, name: string): Promise<DestinationRow | null> {
  return db.prepare("SELECT name, config, secret, headers, created_at, updated_at FROM destinations WHERE name = ?1").bind(name).first<DestinationRow>();
}

/** A stored row as a caller read it: a write conditioned on it changes nothing if another request changed the row meanwhile. */
export type DestinationSnapshot = Pick<DestinationRow, "config" | "secret" | "headers">;

/**
 * Creates or replaces a destination: true when it was created, false when replaced. With
 * `expected` (the row as the caller read it, whose sealed values it keeps), a row changed
 * meanwhile is left as it is, and the answer is null.
 */
export async function putDestination(db: D1Database, row: Omit<DestinationRow, "created_at">, expected?: DestinationSnapshot): Promise<boolean | null> {
  const result = await db
    .prepare(
      `INSERT INTO destinations (name, config, secret, headers, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
       ON CONFLICT (name) DO UPDATE SET config = excluded.config, secret = excluded.secret, headers = excluded.headers,
         updated_at = excluded.updated_at
       WHERE ?6 = 0 OR (destinations.config = ?7 AND destinations.secret IS ?8 AND destinations.headers IS ?9)
       RETURNING created_at`,
    )
    .bind(row.name, row.config, row.secret, row.headers, row.updated_at, expected ? 1 : 0, expected?.config ?? null, expected?.secret ?? null, expected?.headers ?? null)
    .first<{ created_at: string }>();
  if (result === null) return null;
  return result.created_at === row.updated_at;
}

/**
 * Replaces a destination's configuration and, when given (null removes them), its sealed
 * secret or headers, only while the row is still `expected` (as the caller read it): false
 * when it is gone or was changed meanwhile, and nothing is written.
 */
export async function patchDestination(
  db: D1Database,
  input: { name: string; config: string; updated_at: string; secret?: string | null; headers?: string | null; expected: DestinationSnapshot },
): Promise<boolean> {
  const row = await db
    .prepare(
      `UPDATE destinations SET config = ?2, updated_at = ?3,
         secret = CASE WHEN ?4 THEN ?5 ELSE secret END, headers = CASE WHEN ?6 THEN ?7 ELSE headers END
       WHERE name = ?1 AND config = ?8 AND secret IS ?9 AND headers IS ?10 RETURNING name`,
    )
    .bind(
      input.name,
      input.config,
      input.updated_at,
      input.secret !== undefined ? 1 : 0,
      input.secret ?? null,
      input.headers !== undefined ? 1 : 0,
      input.headers ?? null,
      input.expected.config,
      input.expected.secret,
      input.expected.headers,
    )
    .first();
  return row !== null;
}

/** Deletes a destination; false when there was none of that name. */
export async function deleteDestination(db: D1Database, name: string): Promise<boolean> {
  const row = await db.prepare("DELETE FROM destinations WHERE name = ?1 RETURNING name").bind(name).first();
  return row !== null;
}
