/** The dashboard's page frame: header, navigation, and the one stylesheet (by CSP nonce). */
import type { Context } from "hono";
import { raw } from "hono/html";
import type { Child, FC } from "hono/jsx";
import type { AppEnv } from "../app-env";

const STYLE = `body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1d2433;background:#f6f7f9}
header{background:#1d2433;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:1rem;align-items:center}
header a{color:#fff}main{padding:1rem;max-width:60rem;margin:auto}table{border-collapse:collapse;width:100%;background:#fff}
td,th{border-bottom:1px solid #e3e6eb;padding:.35rem .5rem;text-align:left;vertical-align:top}
.cards{display:flex;flex-wrap:wrap;gap:.75rem}.card{background:#fff;padding:.75rem 1rem;border-radius:.5rem;min-width:9rem}
.card b{display:block;font-size:1.6rem}.error{color:#b42318}.ok{color:#067647}button{cursor:pointer}
form.inline{display:inline}pre{white-space:pre-wrap;word-break:break-all;background:#fff;padding:.5rem}
@media (max-width:40rem){td,th{display:block;border:0}tr{display:block;border-bottom:1px solid #e3e6eb}
tr.head{display:none}td[data-label]::before{content:attr(data-label) ": ";font-weight:600;color:#475467}}`;

export const Page: FC<{ title: string; nonce: string; signedIn?: boolean; head?: Child; children?: Child }> = ({ title, nonce, signedIn = true, head, children }) => (
  <>
  {raw("<!doctype html>")}
  <html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>{title} · oneflow-webhooks</title>
      <style nonce={nonce}>{STYLE}</style>
      {head}
    </head>
    <body>
      <header>
        <strong>oneflow-webhooks</strong>
        {signedIn && (
          <>
            <a href="/dashboard">Overview</a>
            <a href="/dashboard/responses">Responses</a>
            <a href="/dashboard/quarantine">Quarantine</a>
            <a href="/dashboard/deliveries">Undelivered</a>
            <a href="/dashboard/destinations">Destinations</a>
            <form class="inline" method="post" action="/dashboard/logout">
              <button type="submit">Sign out</button>
            </form>
          </>
        )}
      </header>
      <main>
        <h1>{title}</h1>
        {children}
      </main>
    </body>
  </html>
  </>
);

export function nonceOf(c: Context<AppEnv>): string {
  return c.get("secureHeadersNonce") ?? "";
}

