/** Constant-time checks of the webhook path token and the admin bearer token. */
import { timingSafeEqual } from "hono/utils/buffer";

/**
 * True when `given` equals one of the configured secrets. Every configured
 * secret is compared, each in constant time, so the answer takes as long
 * whichever one matches. Unset or empty secrets never match.
 *
 * @example
 * await tokenMatches(token, [env.WEBHOOK_SECRET, env.WEBHOOK_SECRET_PREVIOUS]);
 */
export async function tokenMatches(given: string, secrets: ReadonlyArray<string | undefined>): Promise<boolean> {
  const configured = secrets.filter((s): s is string => typeof s === "string" && s.length > 0);
  const results = await Promise.all(configured.map((secret) => timingSafeEqual(given, secret)));
  return results.includes(true);
}
