/** The README and docs/ stay usable: short enough to read, every relative link resolves, every variable documented. */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const pages = ["README.md", "CONTRIBUTING.md", ...readdirSync(join(ROOT, "docs")).filter((f) => f.endsWith(".md")).map((f) => `docs/${f}`)];

describe("documentation", () => {
  it("the README is at most 200 lines", () => {
    expect(readFileSync(join(ROOT, "README.md"), "utf8").split("\n").length).toBeLessThanOrEqual(200);
  });

  it.each(pages)("every relative link in %s points at a file that exists", (page) => {
    const text = readFileSync(join(ROOT, page), "utf8");
    const broken: string[] = [];
    for (const [, target] of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      if (target === undefined || /^[a-z]+:/i.test(target) || target.startsWith("#")) continue;
      const file = target.split("#")[0] ?? "";
      if (!existsSync(resolve(ROOT, dirname(page), file))) broken.push(target);
    }
    expect(broken).toEqual([]);
  });

  it("docs/configuration.md has every variable and binding that src/env.ts declares", () => {
    const env = readFileSync(join(ROOT, "src/env.ts"), "utf8");
    const names = [...env.matchAll(/^\s+([A-Z][A-Z0-9_]+)\??:/gm)].map((m) => m[1] ?? "");
    expect(names.length).toBeGreaterThan(15);
    const configuration = readFileSync(join(ROOT, "docs/configuration.md"), "utf8");
    expect(names.filter((name) => !configuration.includes(`\`${name}\``))).toEqual([]);
  });
});
