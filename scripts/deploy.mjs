// `npm run deploy`: everything a deploy needs, in order, with no ID pasted by hand.
//   1. creates the D1 database, the queues and the archive's R2 bucket that wrangler.toml
//      names, when missing (`wrangler deploy` provisions the database and the producer's
//      queue by itself, but not the dead-letter queue, and the migrations need the database
//      first); when the account cannot have R2 (not enabled), it deploys without the archive
//      (a copy of wrangler.toml without its [[r2_buckets]] block) and says so;
//   2. applies the remote D1 migrations (by binding, DB);
//   3. deploys;
//   4. generates ENCRYPTION_KEY when it is not set (stdin, never printed); and
//      on the first deploy (WEBHOOK_SECRET not set yet) generates WEBHOOK_SECRET and
//      ADMIN_TOKEN, stores them with `wrangler secret put` (through stdin), and prints
//      once the URL to enter in 1Flow and the dashboard's address.
// Runs the `wrangler` on PATH (npm puts the project's own first).
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { unstable_readConfig } from "wrangler";

const BINDING = "DB";
// CI=1: no prompts (the migrations' confirmation, d1 create's config question) and no config rewrite.
const env = { ...process.env, WRANGLER_SEND_METRICS: "false", CI: "1" };

/** Runs wrangler; its output is shown unless `quiet`, and returned either way. */
function wrangler(args, { input, quiet = false, check = true } = {}) {
  const result = spawnSync("wrangler", args, {
    env,
    input,
    encoding: "utf8",
    stdio: ["pipe", "pipe", quiet ? "pipe" : "inherit"],
  });
  if (!quiet && result.stdout) process.stdout.write(result.stdout);
  if (check && result.status !== 0) {
    console.error(`\nwrangler ${args.join(" ")} failed (exit ${result.status ?? result.signal}).`);
    process.exit(1);
  }
  return result;
}

function step(text) {
  console.log(`\n▸ ${text}`);
}

const config = unstable_readConfig({ config: "wrangler.toml" });
const database = config.d1_databases.find((d) => d.binding === BINDING);
if (!database?.database_name) {
  console.error(`wrangler.toml has no D1 binding ${BINDING} with a database_name.`);
  process.exit(1);
}
const queues = [
  ...new Set([
    ...(config.queues.producers ?? []).map((p) => p.queue),
    ...(config.queues.consumers ?? []).flatMap((c) => [c.queue, c.dead_letter_queue]),
  ]),
].filter(Boolean);

step("Resources");
if (wrangler(["d1", "info", BINDING], { quiet: true, check: false }).status !== 0) {
  wrangler(["d1", "create", database.database_name]);
} else console.log(`D1 database ${database.database_name}: exists`);
for (const queue of queues) {
  if (wrangler(["queues", "info", queue], { quiet: true, check: false }).status !== 0) {
    wrangler(["queues", "create", queue]);
  } else console.log(`Queue ${queue}: exists`);
}

// The archive's bucket: optional. Without R2 on the account the Worker deploys without it.
let deployConfig = null;
for (const bucket of config.r2_buckets ?? []) {
  if (wrangler(["r2", "bucket", "info", bucket.bucket_name], { quiet: true, check: false }).status === 0) {
    console.log(`R2 bucket ${bucket.bucket_name}: exists`);
  } else if (wrangler(["r2", "bucket", "create", bucket.bucket_name], { check: false }).status !== 0) {
    console.log(
      `R2 bucket ${bucket.bucket_name} could not be created (is R2 enabled on this account? Cloudflare dashboard → R2).\n` +
        `Deploying without the archive (${bucket.binding}); run npm run deploy again once R2 is enabled.`,
    );
    deployConfig = "wrangler.no-archive.toml";
  }
}
if (deployConfig !== null) {
  // Same directory as wrangler.toml, so that its relative paths (main, migrations_dir) still hold.
  const toml = readFileSync("wrangler.toml", "utf8").replace(/\[\[r2_buckets\]\][^[]*/g, "");
  writeFileSync(deployConfig, toml);
}

step("Migrations");
wrangler(["d1", "migrations", "apply", BINDING, "--remote"]);

step("Deploy");
let deployed;
try {
  deployed = wrangler(deployConfig === null ? ["deploy"] : ["deploy", "--config", deployConfig]);
} finally {
  if (deployConfig !== null) rmSync(deployConfig, { force: true });
}
const url = /https:\/\/[^\s]+\.workers\.dev/.exec(deployed.stdout ?? "")?.[0] ?? null;

step("Secrets");
const listed = wrangler(["secret", "list", "--format", "json"], { quiet: true });
let names;
try {
  names = new Set(JSON.parse(listed.stdout).map((s) => s.name));
} catch {
  console.error("Could not read `wrangler secret list`; set WEBHOOK_SECRET by hand: npx wrangler secret put WEBHOOK_SECRET");
  process.exit(1);
}
// The key that seals the secrets of destinations managed from the API: generated once, also on
// an upgrade from 0.2 (which had none). Rotate it by hand: the old one goes to ENCRYPTION_KEY_PREVIOUS.
if (!names.has("ENCRYPTION_KEY")) {
  wrangler(["secret", "put", "ENCRYPTION_KEY"], { input: `${randomBytes(32).toString("base64")}\n` });
  console.log("ENCRYPTION_KEY generated and stored (it seals destinations' secrets in D1).");
}
if (names.has("WEBHOOK_SECRET")) {
  console.log("WEBHOOK_SECRET is set: nothing more to generate.");
  process.exit(0);
}
const generated = { WEBHOOK_SECRET: randomBytes(32).toString("hex") };
if (!names.has("ADMIN_TOKEN")) generated.ADMIN_TOKEN = randomBytes(32).toString("hex");
for (const [name, value] of Object.entries(generated)) {
  wrangler(["secret", "put", name], { input: `${value}\n` });
}
const base = url ?? "https://<your worker>.workers.dev";
console.log(`
Shown once, keep them somewhere safe:
  In 1Flow (Settings → Project Settings → Project webhook alerts), enter
    ${base}/webhooks/1flow/${generated.WEBHOOK_SECRET}
  Dashboard: ${base}/dashboard${generated.ADMIN_TOKEN ? `  (sign in with ADMIN_TOKEN ${generated.ADMIN_TOKEN})` : "  (sign in with your ADMIN_TOKEN)"}
`);
