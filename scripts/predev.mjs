// Prepares `npm run dev`: creates .dev.vars from the example when missing and
// applies the D1 migrations to the local database (only those not applied yet), printing
// one line per migration step instead of wrangler's tables (the whole output on a failure).
import { copyFileSync, existsSync } from "node:fs";
import { spawnSync } from "node:child_process";

/**
 * wrangler's output of `d1 migrations apply` as one line per migration applied, in order:
 * the names come from its "Migrations to be applied" table, the counts from its
 * "N commands executed successfully" lines.
 */
export function migrationSteps(output) {
  if (/No migrations to apply/.test(output)) return ["D1 (local): every migration already applied"];
  const listed = output.slice(0, Math.max(0, output.indexOf("About to apply")));
  const names = [...listed.matchAll(/│\s*(\d{4}_[\w.-]+\.sql)\s*│/g)].map((m) => m[1]);
  const counts = [...output.matchAll(/(\d+) commands? executed successfully/g)].map((m) => Number(m[1]));
  return names.map((name, i) => `D1 (local): ${name} ${counts[i] === undefined ? "not applied" : `applied (${counts[i]} statements)`}`);
}

if (import.meta.url === `file://${process.argv[1]}`) {
  if (!existsSync(".dev.vars")) {
    copyFileSync(".dev.vars.example", ".dev.vars");
    console.log("Created .dev.vars from .dev.vars.example (WEBHOOK_SECRET=dev-secret).");
  }
  // CI=1: wrangler skips its confirmation prompt, which is for remote databases' sake.
  const run = spawnSync("wrangler", ["d1", "migrations", "apply", "DB", "--local"], {
    encoding: "utf8",
    env: { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" },
  });
  const output = `${run.stdout ?? ""}${run.stderr ?? ""}`;
  if (run.status !== 0) {
    console.error(output);
    process.exit(run.status ?? 1);
  }
  for (const line of migrationSteps(output)) console.log(line);
}
