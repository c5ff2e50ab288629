import type { RequestIdVariables } from "hono/request-id";
import type { SecureHeadersVariables } from "hono/secure-headers";
import type { Env } from "../env";

/** What every route sees: the bindings, and what the request log line reports. */
export interface AppEnv {
  Bindings: Env;
  Variables: RequestIdVariables &
    SecureHeadersVariables & {
    /** How the request ended, for the request log line. */
    outcome?: string;
    alert_id?: string;
  };
}
