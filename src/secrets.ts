/**
 * Secrets at rest: AES-GCM (256-bit) under ENCRYPTION_KEY, with ENCRYPTION_KEY_PREVIOUS
 * still read during a rotation. A value is stored as `v1.<iv>.<ciphertext>` (base64url),
 * never in the clear; what is written is always under the current key.
 */

/** Keys from ENCRYPTION_KEY (base64 or hex of 32 bytes) and ENCRYPTION_KEY_PREVIOUS. */
export interface SecretKeys {
  current: CryptoKey | null;
  previous: CryptoKey | null;
}

export class SecretsUnavailableError extends Error {
  override readonly name = "SecretsUnavailableError";
}

const imported = new Map<string, Promise<CryptoKey | null>>();

function keyBytes(raw: string): Uint8Array | null {
  const text = raw.trim();
  if (/^[0-9a-f]{64}$/i.test(text)) return Uint8Array.from(text.match(/../g) ?? [], (h) => Number.parseInt(h, 16));
  try {
    const bytes = fromBase64(text.replace(/-/g, "+").replace(/_/g, "/"));
    return bytes.length === 32 ? bytes : null;
  } catch {
    return null;
  }
}

/** Whether a value is usable as ENCRYPTION_KEY: 32 bytes, as base64 or hex. */
export function isEncryptionKey(raw: string | undefined): boolean {
  return raw !== undefined && raw.trim() !== "" && keyBytes(raw) !== null;
}

async function importKey(raw: string | undefined): Promise<CryptoKey | null> {
  if (raw === undefined || raw.trim() === "") return null;
  let key = imported.get(raw);
  if (key === undefined) {
    const bytes = keyBytes(raw);
    key = bytes === null ? Promise.resolve(null) : crypto.subtle.importKey("raw", bytes, "AES-GCM", false, ["encrypt", "decrypt"]);
    imported.set(raw, key);
  }
  return key;
}

export async function secretKeys(env: { ENCRYPTION_KEY?: string; ENCRYPTION_KEY_PREVIOUS?: string }): Promise<SecretKeys> {
  return { current: await importKey(env.ENCRYPTION_KEY), previous: await importKey(env.ENCRYPTION_KEY_PREVIOUS) };
}

/** Encrypts under the current key; throws `SecretsUnavailableError` without one. */
export async function seal(keys: SecretKeys, plaintext: string): Promise<string> {
  if (keys.current === null) throw new SecretsUnavailableError("ENCRYPTION_KEY is not set (or is not 32 bytes as base64 or hex)");
  const iv = crypto.getRandomValues(new Uint8Array(12));
  const sealed = new Uint8Array(await crypto.subtle.encrypt({ name: "AES-GCM", iv }, keys.current, new TextEncoder().encode(plaintext)));
  return `v1.${toBase64Url(iv)}.${toBase64Url(sealed)}`;
}

/** Decrypts with the current key, then the previous one; throws `SecretsUnavailableError` when neither opens it. */
export async function open(keys: SecretKeys, stored: string): Promise<string> {
  const [version, iv, data] = stored.split(".");
  if (version !== "v1" || iv === undefined || data === undefined) throw new SecretsUnavailableError("not a sealed value");
  for (const key of [keys.current, keys.previous]) {
    if (key === null) continue;
    try {
      const plain = await crypto.subtle.decrypt({ name: "AES-GCM", iv: fromBase64Url(iv) }, key, fromBase64Url(data));
      return new TextDecoder().decode(plain);
    } catch {
      // The other key, if any.
    }
  }
  throw new SecretsUnavailableError("neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS opens a stored secret");
}

function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function fromBase64Url(text: string): Uint8Array {
  return fromBase64(text.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (text.length % 4)) % 4));
}
