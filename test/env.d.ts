import type { D1Migration } from "cloudflare:test";
import type { Env as WorkerEnv } from "../src/env";

declare global {
  namespace Cloudflare {
    interface Env extends WorkerEnv {
      TEST_MIGRATIONS: D1Migration[];
      /** The statements of schema.sql. */
      TEST_SCHEMA_SQL: string[];
      /** The property tests' seed, from the shell; empty for a new one. */
      FC_SEED: string;
      /** Empty databases for the schema and upgrade tests. */
      SCHEMA_DB: D1Database;
      UPGRADE_DB: D1Database;
      ARRIVALS_DB: D1Database;
    }
    interface GlobalProps {
      mainModule: typeof import("../src/index");
    }
  }
}
