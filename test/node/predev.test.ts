/**
 * `npm run dev`'s first step (scripts/predev.mjs) with the real wrangler, in a copy of the
 * project's configuration and migrations: one line per migration step, not wrangler's tables.
 */
import { spawnSync } from "node:child_process";
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { delimiter, join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";

const ROOT = join(import.meta.dirname, "..", "..");
const dir = mkdtempSync(join(tmpdir(), "predev-"));
for (const name of ["wrangler.toml", "migrations", ".dev.vars.example", "package.json"]) cpSync(join(ROOT, name), join(dir, name), { recursive: true });
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function predev(): { status: number | null; lines: string[] } {
  const run = spawnSync(process.execPath, [join(ROOT, "scripts/predev.mjs")], {
    cwd: dir,
    encoding: "utf8",
    env: { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}${delimiter}${process.env.PATH ?? ""}`, WRANGLER_SEND_METRICS: "false" },
  });
  return { status: run.status, lines: `${run.stdout}${run.stderr}`.split("\n").filter((l) => l.trim() !== "") };
}

describe("npm run dev's migrations", () => {
  it("prints one line per migration applied, then one line when there is nothing to apply", () => {
    const migrations = readdirSync(join(ROOT, "migrations")).filter((f) => f.endsWith(".sql")).sort();
    const first = predev();
    expect(first.status).toBe(0);
    expect(first.lines).toEqual([
      "Created .dev.vars from .dev.vars.example (WEBHOOK_SECRET=dev-secret).",
      ...migrations.map((m) => expect.stringMatching(new RegExp(`^D1 \\(local\\): ${m.replace(".", "\\.")} applied \\(\\d+ statements\\)$`))),
    ]);
    const again = predev();
    expect(again.lines).toEqual(["D1 (local): every migration already applied"]);
  });
});
