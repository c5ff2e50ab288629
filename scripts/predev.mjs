// Prepares `npm run dev`: creates .dev.vars from the example when missing and
// applies schema.sql to the local D1 database (idempotent).
import { copyFileSync, existsSync } from "node:fs";
import { execFileSync } from "node:child_process";

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("Created .dev.vars from .dev.vars.example (WEBHOOK_SECRET=dev-secret).");
}
execFileSync("wrangler", ["d1", "execute", "oneflow", "--local", "--file=schema.sql"], {
  stdio: "inherit",
  env: { ...process.env, WRANGLER_SEND_METRICS: "false" },
});
