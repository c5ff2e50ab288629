/**
 * The simulation's fixed seeds (`npm test`): command sequences of the real Worker under a
 * scheduler, with faults, checked against the invariants (test/sim/invariants.ts). A failure
 * prints the seed, the path and the shrunk command list: `npm run sim -- --seed S --path P`
 * replays it.
 */
import fc from "fast-check";
import { describe, it } from "vitest";
import { simParameters, simProperty } from "./run";
import { KEPT_SEEDS } from "./seeds";

/** The default seeds: together at least 200 sequences. */
export const DEFAULT_SEEDS = [
  { seed: 24_001, runs: 70 },
  { seed: 24_002, runs: 70 },
  { seed: 24_003, runs: 70 },
];

describe("simulation", () => {
  for (const { seed, runs } of DEFAULT_SEEDS) {
    it(`seed ${seed}: ${runs} sequences keep every invariant`, async () => {
      await fc.assert(simProperty({ seed, runs }), simParameters({ seed, runs }));
    });
  }
  for (const kept of KEPT_SEEDS) {
    it(`kept seed ${kept.seed} (${kept.note})`, async () => {
      await fc.assert(simProperty({ seed: kept.seed, runs: 1, path: kept.path }), simParameters({ seed: kept.seed, runs: 1, path: kept.path }));
    });
  }
});
