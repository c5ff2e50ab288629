/**
 * The dashboard's static files: uPlot (a small, well-kept chart library, MIT) and its stylesheet,
 * bundled as text and served with a year's cache under a versioned path, so a page pays for
 * them once. The survey page loads them with its CSP nonce.
 */
import { Hono } from "hono";
import uplotCss from "uplot/dist/uPlot.min.css";
import uplotJs from "uplot/dist/uPlot.iife.min.js";
import type { AppEnv } from "../../app-env";

/** The uPlot version bundled (package.json pins it): part of the assets' paths. */
export const UPLOT_VERSION = "1.6.32";
export const UPLOT_JS = `/dashboard/assets/uplot-${UPLOT_VERSION}.js`;
export const UPLOT_CSS = `/dashboard/assets/uplot-${UPLOT_VERSION}.css`;

export const assets = new Hono<AppEnv>({ strict: false });

const IMMUTABLE = "public, max-age=31536000, immutable";

assets.get(UPLOT_JS, (c) => c.body(uplotJs, 200, { "content-type": "text/javascript; charset=utf-8", "cache-control": IMMUTABLE }));
assets.get(UPLOT_CSS, (c) => c.body(uplotCss, 200, { "content-type": "text/css; charset=utf-8", "cache-control": IMMUTABLE }));
