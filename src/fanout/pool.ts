/** Running async work with a bound on how much is in flight at once. */

/** Outbound connections a Worker invocation may hold open at once. */
export const OUTBOUND_CONNECTIONS = 6;

/**
 * Maps `items` through `work` with at most `limit` calls in flight; results keep the
 * items' order. A call starts only when a slot is free, so a timeout it sets starts
 * when its work really starts.
 *
 * @example
 * const attempts = await mapWithConcurrency(jobs, 6, (job) => deliver(job));
 */
export async function mapWithConcurrency<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results = new Array<R>(items.length);
  let next = 0;
  const lane = async () => {
    while (next < items.length) {
      const index = next++;
      results[index] = await work(items[index] as T);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
  return results;
}
