/**
 * `/dashboard`: the operator's pages, server-rendered with hono/jsx; one small script (the
 * destination form's live preview). A strict Content-Security-Policy allows only each page's
 * own style and script (by nonce) and requests to this origin; state-changing
 * POSTs from another origin are refused (Hono's csrf); every page but sign-in needs a
 * live server-side session (session.tsx). Actions call the same operations as `/api`.
 */
import { Hono } from "hono";
import { csrf } from "hono/csrf";
import { NONCE, secureHeaders } from "hono/secure-headers";
import type { AppEnv } from "../app-env";
import { deliveries } from "./pages/deliveries";
import { notFound } from "./pages/not-found";
import { destinations } from "./pages/destinations";
import { overview } from "./pages/overview";
import { quarantine } from "./pages/quarantine";
import { responses } from "./pages/responses";
import { survey } from "./pages/survey";
import { assets } from "./assets";
import { requireSession, session } from "./session";

export const dashboard = new Hono<AppEnv>({ strict: false });

dashboard.use(
  "/dashboard/*",
  secureHeaders({
    contentSecurityPolicy: {
      defaultSrc: ["'none'"],
      styleSrc: [NONCE],
      // The scripts: the Destinations form's live preview (it posts to this origin), and the
      // survey page's charts (uPlot, served from this Worker, and the page's drawing).
      scriptSrc: [NONCE],
      connectSrc: ["'self'"],
      imgSrc: ["'self'", "data:"],
      formAction: ["'self'"],
      frameAncestors: ["'none'"],
      baseUri: ["'none'"],
    },
  }),
);
dashboard.use("/dashboard/*", csrf());
dashboard.use("/dashboard", requireSession);
dashboard.use("/dashboard/*", requireSession);

for (const pages of [session, overview, assets, survey, responses, quarantine, deliveries, destinations]) dashboard.route("/", pages);
// Last: any other URL under /dashboard is a dashboard page that says so.
dashboard.route("/", notFound);
