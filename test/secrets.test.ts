/** Sealing destinations' secrets at rest: AES-GCM under ENCRYPTION_KEY, ENCRYPTION_KEY_PREVIOUS read during a rotation. */
import { describe, expect, it } from "vitest";
import { isEncryptionKey, open, seal, secretKeys, SecretsUnavailableError } from "../src/secrets";

const KEY_A = "q5Z0o0cJ3sWm8x2v7r9n1b4k6h8f0d2s4a6q8w0e2r4=";
const KEY_B = "ZGV2LW9ubHktZW5jcnlwdGlvbi1rZXktMzItYnl0ZXM=";

describe("secrets", () => {
  it("seal gives a v1 value that never holds the plaintext, with a fresh IV each time; open gives it back", async () => {
    const keys = await secretKeys({ ENCRYPTION_KEY: KEY_A });
    const a = await seal(keys, "whsec_top-secret");
    const b = await seal(keys, "whsec_top-secret");
    expect(a).toMatch(/^v1\.[\w-]+\.[\w-]+$/);
    expect(a).not.toContain("top-secret");
    expect(a).not.toBe(b);
    expect(await open(keys, a)).toBe("whsec_top-secret");
  });

  it("a rotation: the previous key still opens what it sealed, and new values are sealed under the current one", async () => {
    const before = await seal(await secretKeys({ ENCRYPTION_KEY: KEY_A }), "old value");
    const rotating = await secretKeys({ ENCRYPTION_KEY: KEY_B, ENCRYPTION_KEY_PREVIOUS: KEY_A });
    expect(await open(rotating, before)).toBe("old value");
    const after = await seal(rotating, "new value");
    expect(await open(await secretKeys({ ENCRYPTION_KEY: KEY_B }), after)).toBe("new value");
    await expect(open(await secretKeys({ ENCRYPTION_KEY: KEY_A }), after)).rejects.toBeInstanceOf(SecretsUnavailableError);
  });

  it("without a key nothing is sealed, and a wrong key opens nothing", async () => {
    await expect(seal(await secretKeys({}), "x")).rejects.toBeInstanceOf(SecretsUnavailableError);
    const sealed = await seal(await secretKeys({ ENCRYPTION_KEY: KEY_A }), "x");
    await expect(open(await secretKeys({ ENCRYPTION_KEY: KEY_B }), sealed)).rejects.toBeInstanceOf(SecretsUnavailableError);
    await expect(open(await secretKeys({ ENCRYPTION_KEY: KEY_A }), "not sealed")).rejects.toBeInstanceOf(SecretsUnavailableError);
  });

  it.each([
    [KEY_A, true],
    ["a".repeat(64), true],
    ["too-short", false],
    ["", false],
    [undefined, false],
  ])("isEncryptionKey(%s) is %s", (raw, ok) => {
    expect(isEncryptionKey(raw)).toBe(ok);
  });
});
