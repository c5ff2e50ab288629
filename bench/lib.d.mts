// Types of what TypeScript callers (test/node) use from bench/lib.mjs.
/** The statements of schema.sql, split on the semicolons that end them (a trigger ends at its END;). */
export function schemaStatements(): string[];
export const ROOT: string;
/** Miniflare's modules for a `wrangler deploy --dry-run` bundle: index.js and the text modules beside it. */
export function bundleModules(scriptPath: string): { modulesRoot: string; modules: { type: "ESModule" | "Text"; path: string }[] };
