/**
 * Erasure of one user on request (`DELETE /api/users/{id}`): D1 first, then the archive's parts
 * that hold them, within one request's subrequests. What does not fit is left for the next
 * call: the answer's `more` stays true until nothing of theirs is left, in D1 or in R2.
 */
import { eraseUserFromArchive, REWRITES_PER_REQUEST } from "./archive/archive";
import { Budget, meteredD1 } from "./budget";
import { sha256Hex } from "./hash";
import { log } from "./log";
import { partsOfUser } from "./store/archive";
import { type ErasureCounts, eraseUser } from "./store/erasure";

/** Subrequests (D1 calls and R2 operations) one erasure request makes at most: inside the free plan's 50. */
export const ERASURE_SUBREQUEST_BUDGET = 45;
/** Chunks of a user's alerts one erasure request takes at most (two D1 calls each). */
export const ERASE_CHUNKS_PER_REQUEST = 20;

export interface UserErasure {
  erased: ErasureCounts & { archive_parts: number };
  /** True while something of theirs is left: call again. */
  more: boolean;
  /** Parts still hold them, and the ARCHIVE binding is missing: bind it again, then call again. */
  pending?: "archive_not_bound";
}

export async function eraseUserData(
  deps: { db: D1Database; bucket: R2Bucket | undefined; now: Date; request_id?: string },
  user_system_id: string,
): Promise<UserErasure> {
  const budget = new Budget(ERASURE_SUBREQUEST_BUDGET);
  const db = meteredD1(deps.db, budget);
  const d1 = await eraseUser(db, user_system_id, ERASE_CHUNKS_PER_REQUEST, deps.now.toISOString(), () => budget.left());
  let archive = { parts_rewritten: 0, more: false };
  let pending: UserErasure["pending"];
  if (d1.more) {
    // The archive's turn comes once D1 holds nothing of theirs.
  } else if (deps.bucket) {
    archive = await eraseUserFromArchive({ db, bucket: deps.bucket, user_system_id, now: deps.now, max_parts: REWRITES_PER_REQUEST, budget });
  } else if ((await partsOfUser(db, await sha256Hex(user_system_id), 0)).more) {
    // Listed parts still hold them, and nothing here can rewrite them: never report it done.
    archive = { parts_rewritten: 0, more: true };
    pending = "archive_not_bound";
  }
  const result: UserErasure = { erased: { ...d1.erased, archive_parts: archive.parts_rewritten }, more: d1.more || archive.more };
  if (pending) result.pending = pending;
  log("info", "privacy.erased_user", { request_id: deps.request_id, ...result.erased, more: result.more, pending, subrequests: budget.used });
  return result;
}
