/**
 * The destinations in force: `DESTINATIONS` (read-only, "source":"config") and those the
 * API keeps in D1 ("source":"api"), with their secrets and header values decrypted. Cached
 * per isolate: after 30 s the cache costs one row (the version) to confirm, and the whole
 * list is read again only when it changed, so a change takes effect within 30 s.
 */
import { open, type SecretKeys, secretKeys } from "../secrets";
import type { D1Reader } from "../store/d1";
import { type DestinationRow, destinationsVersion, storedDestinations } from "../store/destinations";
import { validate } from "../validation";
import { type Destination, type DestinationsConfig, destinationsFrom, storedDestinationSchema } from "./destinations";

/** How long a list read from D1 is used before its version is checked again. */
export const DESTINATIONS_CACHE_IN_MS = 30_000;

type Stored = { ok: true; destinations: Destination[]; version: string } | { ok: false; error: string };

/**
 * One isolate's cached list. Module state in the Worker (`isolateCache`); a test or the
 * simulation passes its own, one per simulated isolate.
 */
export interface DestinationsCache {
  entry: { version: string; checked_at: number; stored: Stored } | null;
}

export function newDestinationsCache(): DestinationsCache {
  return { entry: null };
}

/** This isolate's cache. */
const isolateCache: DestinationsCache = newDestinationsCache();

/** Forgets the cached list: the next read goes to D1 (after a change made in this isolate). */
export function forgetDestinations(cache: DestinationsCache = isolateCache): void {
  cache.entry = null;
}

/** A stored row as a destination: its secret and header values decrypted, checked against the schema. */
export async function destinationOfRow(row: DestinationRow, keys: SecretKeys): Promise<{ ok: true; destination: Destination } | { ok: false; error: string }> {
  try {
    const entry = JSON.parse(row.config) as Record<string, unknown>;
    const secret = row.secret === null ? undefined : await open(keys, row.secret);
    const headers = row.headers === null ? undefined : (JSON.parse(await open(keys, row.headers)) as Record<string, string>);
    const result = validate(storedDestinationSchema, { ...entry, name: row.name, secret, headers });
    if (!result.ok) return { ok: false, error: `destination ${row.name}: ${result.issues.map((i) => `${i.path || "(root)"}: ${i.message}`).join("; ")}` };
    return { ok: true, destination: { ...result.value, source: "api" } };
  } catch (error) {
    return { ok: false, error: `destination ${row.name}: ${error instanceof Error ? error.message : String(error)}` };
  }
}

async function readStored(db: D1Reader, keys: SecretKeys, now: number, cache: DestinationsCache): Promise<{ stored: Stored; calls: number }> {
  const cached = cache.entry;
  if (cached !== null && now - cached.checked_at < DESTINATIONS_CACHE_IN_MS) return { stored: cached.stored, calls: 0 };
  const checked = cached !== null;
  if (cached !== null) {
    const version = await destinationsVersion(db);
    if (version === cached.version) {
      cached.checked_at = now;
      return { stored: cached.stored, calls: 1 };
    }
  }
  const { version, rows } = await storedDestinations(db);
  const destinations: Destination[] = [];
  let stored: Stored | null = null;
  for (const row of rows) {
    const parsed = await destinationOfRow(row, keys);
    if (!parsed.ok) {
      stored = { ok: false, error: parsed.error };
      break;
    }
    destinations.push(parsed.destination);
  }
  stored ??= { ok: true, destinations, version };
  cache.entry = { version, checked_at: now, stored };
  return { stored, calls: checked ? 2 : 1 };
}

/**
 * Every destination in force: those of `DESTINATIONS` first, then the stored ones (a stored
 * one whose name `DESTINATIONS` also has is shadowed by it). A malformed `DESTINATIONS`, or a
 * stored one that cannot be opened, makes the whole configuration an error to report:
 * nothing is sent and nothing dropped until it is fixed. `calls` counts the D1 calls made.
 */
export async function destinationsInForce(input: {
  raw: string | undefined;
  db: D1Reader;
  keys: SecretKeys;
  now?: number;
  cache?: DestinationsCache;
}): Promise<{
  config: DestinationsConfig;
  calls: number;
}> {
  const fromConfig = destinationsFrom(input.raw);
  if (!fromConfig.ok) return { config: fromConfig, calls: 0 };
  const { stored, calls } = await readStored(input.db, input.keys, input.now ?? Date.now(), input.cache ?? isolateCache);
  if (!stored.ok) return { config: { ok: false, error: stored.error }, calls };
  const taken = new Set(fromConfig.destinations.map((d) => d.name));
  return {
    config: { ok: true, destinations: [...fromConfig.destinations, ...stored.destinations.filter((d) => !taken.has(d.name))], version: stored.version },
    calls,
  };
}

/**
 * The destinations in force for a Worker's bindings; a D1 that cannot be read makes an
 * error to report (the consumer then keeps its messages), never an empty list.
 *
 * @example
 * const { config } = await destinationsOf(env);
 */
export async function destinationsOf(
  env: {
    DESTINATIONS?: string;
    DB: D1Database;
    ENCRYPTION_KEY?: string;
    ENCRYPTION_KEY_PREVIOUS?: string;
  },
  isolate: { cache?: DestinationsCache; now?: number } = {},
): Promise<{ config: DestinationsConfig; calls: number }> {
  try {
    return await destinationsInForce({ raw: env.DESTINATIONS, db: env.DB, keys: await secretKeys(env), ...isolate });
  } catch (error) {
    return { config: { ok: false, error: `the destinations could not be read from D1: ${error instanceof Error ? error.message : String(error)}` }, calls: 1 };
  }
}
