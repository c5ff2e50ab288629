/**
 * Failing seeds kept as regression cases (`npm test` replays each): the seed, fast-check's
 * path to the shrunk counterexample, and what it found. Found on 0.4.0 by
 * `npm run sim -- --runs 300 --seed 24008 --explore` and seed 24009 (test/sim/FOUND-ON-0.4.0.md); each fails
 * there and must pass once its path (issue 25) is fixed. Seed 25005's were found on 0.5.0's
 * main (test/sim/FOUND-ON-MAIN.md), and each failed there before its fix.
 */
export interface KeptSeed {
  seed: number;
  path: string;
  note: string;
  /** The commands' generator version it was found with (commands.ts GENERATOR): 1 unless given. */
  generator?: number;
}

export const KEPT_SEEDS: KeptSeed[] = [
  {
    seed: 24_009,
    path: "18:0:0:0:0:0:0:0:0:0:0:0:0:0:1:0:0:0:0:1:0:0:1:0:1:0:0:1:0:0:2:8:4:11",
    note: "issue 25 path 2: an archive commit that took effect but reported an error deletes the parts the manifest lists (I1)",
  },
  {
    seed: 24_008,
    path: "42:4:1:14:13:20:24:24:24:28:28:28:32:32:32:36:36:40:40:41:45:45",
    note: "issue 25 path 1: a spooled response redelivered after the archive took it is marked late; the archive wedges on archived_alerts' key (I1)",
  },
  {
    seed: 24_008,
    path: "43:5:10:10:12:11:11:12:2:4:8:8:8:11:12:12:19:11:20:21:21:18:17:17:17",
    note: "issue 25 path 4: an isolate whose destinations cache predates a PUT cancels the new destination's pending deliveries (I2)",
  },
  {
    seed: 24_008,
    path: "68:2:1:1:1:1:1:3:3:3:3:3:3:3:4:0:3:1:1:0:0",
    note: "issue 25 path 3: an erased user's invalid body comes back into the quarantine on 1Flow's retry (I4)",
  },
  {
    seed: 24_008,
    path: "134:2:0:1:0:2:3:3:4:4:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3:3",
    note: "issue 25 path 6: a JSONata error message copies a respondent's e-mail into destination_health and the logs (I4)",
  },
  {
    seed: 25_005,
    path: "333:4:3:3:8:13:2:9:11:15:21:21:22:8:2:2:2:2:2:2:6:7:7:7:7:7:7:7:7:7:7:7:8:8:8:8:8:8:8:8:8:10:10:10:10:10:10:10",
    note: "found on 0.5.0's main: a spool message whose store took effect but reported an error comes back after the archive took its response and retention removed it; it is stored as new and delivered again (I3)",
  },
  {
    seed: 25_005,
    path: "215:5:16:15:15:15:22:22:25:25:25:25",
    note: "found on 0.5.0's main: a tick's commit fails before it takes effect, leaving unlisted parts that hold a user; the user's erasure left them in R2 until the garbage delay (I4)",
  },
  {
    seed: 26_005,
    generator: 2,
    path: "173:5:14:14:4:4:5:6:9:9:9:10:10:10:10:10:10:10:10:0:8:8:10:8:8:8:8:8:10:8:8:8:8:10:9:8",
    note: "found by generator 2 on main: a record batch fails after an identify delivery, the lease is released as if nothing was delivered, and the user's older response is sent after the newer one (I3)",
  },
  {
    seed: 26_005,
    generator: 2,
    path: "2190:32:38:37:37",
    note: "found by generator 2: an identify delivery left pending (a killed consumer's lease) is sent by the two-hour sweep of stale pending rows; quiescence stopped before it (I2)",
  },
  {
    seed: 26_005,
    generator: 2,
    path: "3486:9:6:6:8:3:3:5:4:9:14:22:22:25:3:26:32:33:3:3:22:3:5:8:10:6:8:10:11:11:11:11:11:12:12",
    note: "found by generator 2: a late row for an archived response is dropped by the archive tick once due; quiescence stopped before it (I1)",
  },
  {
    seed: 26_005,
    generator: 2,
    path: "3098:3:2:2:4:4:4:7:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10:10",
    note: "found by generator 2 after the release fix: an identify send whose record and release both fail; once its lease runs out, the user's older response is sent after it (I3)",
  },
  {
    seed: 24_008,
    generator: 2,
    path: "107:3:2:5:5:5:9:1:5:6:4:3:3:4:4:4:4:4:4:4:5:5:5:5:6:6:6:6:6:6:6:6:6",
    note: "found by npm test's seed once 0.6.1's calls moved its interleavings: two erasures rewrite one part at once; the loser's new object (holding the other user) was noted without users, so the other user's erasure left it in R2 until the grace (I4)",
  },
];
