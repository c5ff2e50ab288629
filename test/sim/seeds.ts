/**
 * Failing seeds kept as regression cases (`npm test` replays each): the seed, fast-check's
 * path to the shrunk counterexample, and what it found.
 */
export interface KeptSeed {
  seed: number;
  path: string;
  note: string;
}

export const KEPT_SEEDS: KeptSeed[] = [];
