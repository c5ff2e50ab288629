#!/usr/bin/env node
/**
 * Explores the simulation further than `npm test` (issue 24; see docs/simulation.md):
 *
 *   npm run sim -- --runs 500                 500 sequences from a new seed
 *   npm run sim -- --runs 500 --seed 42       from seed 42
 *   npm run sim -- --seed 42 --path 17:3:0    replays one (shrunk) counterexample
 *   npm run sim -- --seed 42 --path 18 --only I1-listed-part-missing
 *                                             run 19 of seed 42, shrunk toward that kind alone
 *   npm run sim -- --runs 300 --explore       keeps going past broken invariants: the first run
 *                                             of each kind, each shrunk on its own
 *
 * It prints the sequences per second; a broken invariant prints the seed, the path and the
 * shrunk command list, and exits 1.
 */
import { spawnSync } from "node:child_process";

const args = process.argv.slice(2);
const value = (name) => {
  const i = args.indexOf(name);
  return i === -1 ? undefined : args[i + 1];
};
const runs = value("--runs") ?? (value("--path") === undefined ? "100" : "1");
const result = spawnSync(
  process.execPath,
  ["node_modules/vitest/vitest.mjs", "run", "--project", "sim", "test/sim/explore.test.ts", "--silent=false", "--reporter=default"],
  {
    stdio: "inherit",
    env: {
      ...process.env,
      WRANGLER_SEND_METRICS: "false",
      SIM_RUNS: runs,
      SIM_SEED: value("--seed") ?? String(Date.now() % 1_000_000_007),
      SIM_PATH: value("--path") ?? "",
      SIM_EXPLORE: args.includes("--explore") ? "1" : "",
      SIM_ONLY: value("--only") ?? "",
      SIM_TRACE: args.includes("--trace") ? "1" : "",
      SIM_GENERATOR: value("--generator") ?? "",
    },
  },
);
process.exit(result.status ?? 1);
