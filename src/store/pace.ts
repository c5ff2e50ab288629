/**
 * SQL of the destinations' rate limits: per destination, the requests granted in the current
 * window of `per_seconds` and in the one before it. A take grants what fits under `requests` by
 * the sliding-window estimate (the previous window's count, weighted by the share of it that the
 * last `per_seconds` still cover, plus the current one's), in one statement per destination,
 * atomically: consumers in every isolate share it.
 */

export interface RateLimit {
  requests: number;
  per_seconds: number;
}

export interface PaceTake extends RateLimit {
  destination: string;
  /** Requests this batch would send to it. */
  wanted: number;
}

/** The window index and how far into it `now` is (0 to 1). */
export function windowOf(limit: RateLimit, now: number): { window: number; elapsed: number } {
  const span = limit.per_seconds * 1000;
  return { window: Math.floor(now / span), elapsed: (now % span) / span };
}

/**
 * One destination's take: `granted` (0 to `wanted`), and for the rest a run of send slots, one
 * request's share of the window apart, after those already given out (`slot_start` is the
 * first): each job carried over comes back at its own slot, not all at once.
 */
export function takeStatement(db: D1Database, take: PaceTake, now: number): D1PreparedStatement {
  const { window, elapsed } = windowOf(take, now);
  // Over the row as it was: the windows' counts as of `window` (?2).
  const previous = "(CASE WHEN pace_window = ?2 THEN previous WHEN pace_window = ?2 - 1 THEN current ELSE 0 END)";
  const current = "(CASE WHEN pace_window = ?2 THEN current ELSE 0 END)";
  const granted = `MAX(0, MIN(?4, CAST(?5 - (${previous} * (1 - ?3) + ${current}) AS INTEGER)))`;
  const first = "MAX(next_free, ?6 + ?7)";
  const waiting = `(?4 - ${granted})`;
  return db
    .prepare(
      `INSERT INTO destination_pace (destination, pace_window, current, previous, granted, next_free, slot_start)
       VALUES (?1, ?2, MIN(?4, ?5), 0, MIN(?4, ?5), ?6 + ?7 + MAX(0, ?4 - ?5) * ?7, ?6 + ?7)
       ON CONFLICT (destination) DO UPDATE SET
         pace_window = ?2, previous = ${previous}, current = ${current} + ${granted}, granted = ${granted},
         slot_start = ${first}, next_free = CASE WHEN ${waiting} > 0 THEN ${first} + ${waiting} * ?7 ELSE next_free END
       RETURNING granted, slot_start`,
    )
    .bind(take.destination, window, elapsed, take.wanted, take.requests, now, Math.ceil((take.per_seconds * 1000) / take.requests));
}

export interface Grant {
  granted: number;
  /** Epoch ms of the first slot of what was not granted; the next ones follow one interval apart. */
  slot_start: number;
  interval_ms: number;
}

/** Takes every limited destination's grant in one round trip: destination → what it granted, and the slots of the rest. */
export async function takeGrants(db: D1Database, takes: PaceTake[], now: number): Promise<Map<string, Grant>> {
  if (takes.length === 0) return new Map();
  const results = await db.batch(takes.map((t) => takeStatement(db, t, now)));
  return new Map(
    takes.map((t, i) => {
      const row = results[i]?.results[0] as { granted: number; slot_start: number } | undefined;
      return [t.destination, { granted: row?.granted ?? 0, slot_start: row?.slot_start ?? now, interval_ms: Math.ceil((t.per_seconds * 1000) / t.requests) }];
    }),
  );
}

/** Seconds until a limited destination may take again: one request's share of the window, at least 1. */
export function paceDelaySeconds(limit: RateLimit): number {
  return Math.max(1, Math.ceil(limit.per_seconds / limit.requests));
}
