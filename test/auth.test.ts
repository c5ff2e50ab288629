/** Unit tests of the constant-time token check. */
import { describe, expect, it, vi } from "vitest";
import { tokenMatches } from "../src/http/auth";

describe("tokenMatches", () => {
  it("matches the current or the previous secret", async () => {
    expect(await tokenMatches("new", ["new", "old"])).toBe(true);
    expect(await tokenMatches("old", ["new", "old"])).toBe(true);
  });

  it.each([
    ["a wrong token", "nope"],
    ["a prefix", "ne"],
    ["a longer token", "new-and-more"],
    ["different case", "NEW"],
    ["empty", ""],
  ])("refuses %s", async (_, token) => {
    expect(await tokenMatches(token, ["new", "old"])).toBe(false);
  });

  it("never matches unset or empty secrets", async () => {
    expect(await tokenMatches("", [undefined, ""])).toBe(false);
    expect(await tokenMatches("undefined", [undefined])).toBe(false);
    expect(await tokenMatches("x", [])).toBe(false);
  });

  it("compares without a digest: no SHA-256 on the request path for the token", async () => {
    const digest = vi.spyOn(crypto.subtle, "digest");
    expect(await tokenMatches("new", ["new", "old"])).toBe(true);
    expect(await tokenMatches("wrong-length-token", ["new"])).toBe(false);
    expect(await tokenMatches("né", ["ne"])).toBe(false);
    expect(digest).not.toHaveBeenCalled();
    digest.mockRestore();
  });
});
