// Prepares `npm run dev`: creates .dev.vars from the example when missing and
// applies the D1 migrations to the local database (only those not applied yet).
import { copyFileSync, existsSync } from "node:fs";
import { execFileSync } from "node:child_process";

if (!existsSync(".dev.vars")) {
  copyFileSync(".dev.vars.example", ".dev.vars");
  console.log("Created .dev.vars from .dev.vars.example (WEBHOOK_SECRET=dev-secret).");
}
// CI=1: wrangler skips its confirmation prompt, which is for remote databases' sake.
execFileSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], {
  stdio: "inherit",
  env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
});
