/**
 * The spool's message: a body D1 could not take, carried on the Queue until the consumer
 * stores it. A Queue message holds at most 128 KB of serialised JSON, and serialising a
 * body escapes its quotes, backslashes and line breaks (up to twice its size), so a
 * message that would pass the limit carries the body gzipped (base64) instead.
 */
import type { SpoolMessage } from "./alert";

/** What a Queue message may hold, serialised (128 KB), less room for the Queue's own framing. */
export const MAX_SPOOL_MESSAGE_BYTES = 128_000;

export class SpoolTooLargeError extends Error {
  override readonly name = "SpoolTooLargeError";
}

/** Serialised size in bytes, as the Queue counts it. */
export function serialisedBytes(message: unknown): number {
  return new TextEncoder().encode(JSON.stringify(message)).byteLength;
}

/**
 * The spool message for a body: as text when it fits, else gzipped. Throws
 * `SpoolTooLargeError` when even that does not fit (only with MAX_BODY_BYTES raised well
 * above its default: an incompressible body of about 95 KB).
 *
 * @example
 * await queue.send(await spoolMessage(text, { received_at, sha256 }), { contentType: "json" });
 */
export async function spoolMessage(body: string, meta: { received_at: string; sha256: string }): Promise<SpoolMessage> {
  const plain: SpoolMessage = { v: 1, kind: "spool", body, received_at: meta.received_at, sha256: meta.sha256 };
  if (serialisedBytes(plain) <= MAX_SPOOL_MESSAGE_BYTES) return plain;
  const gzipped: SpoolMessage = { v: 1, kind: "spool", body_gzip: toBase64(await gzip(body)), received_at: meta.received_at, sha256: meta.sha256 };
  const bytes = serialisedBytes(gzipped);
  if (bytes > MAX_SPOOL_MESSAGE_BYTES) throw new SpoolTooLargeError(`the spool message would be ${bytes} bytes (at most ${MAX_SPOOL_MESSAGE_BYTES})`);
  return gzipped;
}

/** The body a spool message carries, exactly as received. */
export async function spooledBody(message: SpoolMessage): Promise<string> {
  if (message.body !== undefined) return message.body;
  return gunzip(fromBase64(message.body_gzip ?? ""));
}

async function gzip(text: string): Promise<Uint8Array> {
  const stream = new Blob([text]).stream().pipeThrough(new CompressionStream("gzip"));
  return new Uint8Array(await new Response(stream).arrayBuffer());
}

async function gunzip(bytes: Uint8Array): Promise<string> {
  const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"));
  return new Response(stream).text();
}

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}
