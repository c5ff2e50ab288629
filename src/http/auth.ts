/** Constant-time checks of the webhook path token and the admin bearer token. */

const encoder = new TextEncoder();

/**
 * Whether two strings are equal, in time that depends only on their lengths: the runtime's
 * `crypto.subtle.timingSafeEqual` over their UTF-8 bytes, with no digest to compute. Unequal
 * lengths answer false after comparing `given` with itself (the same work), so a length
 * mismatch is not faster; a secret's length is not a secret (64 hex digits by default).
 */
function equalInConstantTime(given: string, secret: string): boolean {
  const a = encoder.encode(given);
  const b = encoder.encode(secret);
  if (a.byteLength !== b.byteLength) {
    crypto.subtle.timingSafeEqual(a, a);
    return false;
  }
  return crypto.subtle.timingSafeEqual(a, b);
}

/**
 * True when `given` equals one of the configured secrets. Every configured
 * secret is compared, each in constant time, so the answer takes as long
 * whichever one matches. Unset or empty secrets never match.
 *
 * @example
 * await tokenMatches(token, [env.WEBHOOK_SECRET, env.WEBHOOK_SECRET_PREVIOUS]);
 */
export async function tokenMatches(given: string, secrets: ReadonlyArray<string | undefined>): Promise<boolean> {
  let matched = false;
  for (const secret of secrets) {
    if (typeof secret !== "string" || secret.length === 0) continue;
    // No short cut: each configured secret is compared whatever the others gave.
    if (equalInConstantTime(given, secret)) matched = true;
  }
  return matched;
}
