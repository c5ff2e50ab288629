import type { RequestIdVariables } from "hono/request-id";
import type { Env } from "../env";

/** What every route sees: the bindings, and what the request log line reports. */
export interface AppEnv {
  Bindings: Env;
  Variables: RequestIdVariables & {
    /** How the request ended, for the request log line. */
    outcome?: string;
    alert_id?: string;
  };
}
