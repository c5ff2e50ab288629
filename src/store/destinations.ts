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

/** Creates or replaces a destination; true when it was created. */
export async function putDestination(db: D1Database, row: Omit<DestinationRow, "created_at">): Promise<boolean> {
  const result = await db
    .prepare(
      `INSERT INTO destinations (name, config, secret, headers, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
       ON CONFLICT (name) DO UPDATE SET config = excluded.config, secret = excluded.secret, headers = excluded.headers,
         updated_at = excluded.updated_at
       RETURNING created_at`,
    )
    .bind(row.name, row.config, row.secret, row.headers, row.updated_at)
    .first<{ created_at: string }>();
  return result?.created_at === row.updated_at;
}

/** Replaces a destination's configuration (not its secret or headers); false when there is none of that name. */
export async function patchDestination(db: D1Database, input: { name: string; config: string; updated_at: string }): Promise<boolean> {
  const row = await db
    .prepare("UPDATE destinations SET config = ?2, updated_at = ?3 WHERE name = ?1 RETURNING name")
    .bind(input.name, input.config, input.updated_at)
    .first();
  return row !== null;
}

/** Deletes a destination; false when there was none of that name. */
export async function deleteDestination(db: D1Database, name: string): Promise<boolean> {
  const row = await db.prepare("DELETE FROM destinations WHERE name = ?1 RETURNING name").bind(name).first();
  return row !== null;
}
