/** Reads for the operator's pages and API go through a D1 session, so D1 read replicas can answer them. */
import type { Env } from "../env";
import type { D1Reader } from "../store/d1";

/**
 * A read-replica session of `DB` for one request: its reads may come from the nearest
 * replica, and stay in order with each other. With `fresh` (a page shown right after an
 * action changed what it lists: the action redirects with `?result=`), its first read goes
 * to the primary, so the page shows the change. Writes keep using `env.DB` (the primary).
 */
export function readerOf(env: Pick<Env, "DB">, fresh = false): D1Reader {
  return env.DB.withSession(fresh ? "first-primary" : "first-unconstrained");
}
