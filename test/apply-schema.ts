import { applyD1Migrations } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { afterAll, expect } from "vitest";

// Runs before each test file; applying is idempotent.
await applyD1Migrations(env.DB, env.TEST_MIGRATIONS);

/**
 * Every log line of every test file, checked at its end for the secrets the tests use:
 * the webhook tokens, the admin token, the destinations' signing key, the header values the
 * tests store sealed and the ENCRYPTION_KEY values must never reach a log. Lines still go to
 * the console; a test that mocks the console sees its own.
 */
const SECRETS = [
  "test-secret",
  "old-secret",
  "admin-token-for-tests",
  "a-rotated-admin-token",
  "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
  // Header values (destinations-api, secrets-origin, secrets-audit).
  "very-secret-token",
  "old-origin-token",
  "new-origin-token",
  "header-value-that-must-stay-sealed",
  // ENCRYPTION_KEY (vitest.config.ts) and the other key the rotation tests use.
  "q5Z0o0cJ3sWm8x2v7r9n1b4k6h8f0d2s4a6q8w0e2r4=",
  "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=",
];
const lines: string[] = [];
for (const method of ["log", "info", "warn", "error", "debug"] as const) {
  const original = console[method].bind(console);
  console[method] = (...args: unknown[]) => {
    lines.push(args.map((a) => (typeof a === "string" ? a : JSON.stringify(a))).join(" "));
    original(...args);
  };
}

afterAll(() => {
  const leaks = lines.filter((line) => SECRETS.some((secret) => line.includes(secret)));
  expect(leaks, "log lines that hold a secret").toEqual([]);
});
