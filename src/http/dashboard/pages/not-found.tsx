/** Any other dashboard URL: a page of the dashboard saying so, not the API's JSON. */
import { Hono } from "hono";
import type { AppEnv } from "../../app-env";
import { nonceOf, Page } from "../layout";

export const notFound = new Hono<AppEnv>({ strict: false });

notFound.all("/dashboard/*", (c) =>
  c.html(
    <Page title="Not found" nonce={nonceOf(c)}>
      <p id="not-found">
        There is no dashboard page at <code>{new URL(c.req.url).pathname}</code>. <a href="/dashboard">Back to the overview</a>.
      </p>
    </Page>,
    404,
  ),
);
