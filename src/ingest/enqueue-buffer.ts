/**
 * Coalesces the enqueues of requests that arrive together in one isolate into
 * one `sendBatch`. Only plain alert ids are shared between requests: the request
 * that opens a window sends the batch from its own `waitUntil`, so no request
 * waits on another's I/O. If an isolate dies with ids still buffered, their
 * `enqueued_at` stays NULL and the outbox sweep sends them.
 */

import { SEND_BATCH_SIZE } from "../queue";

/** How long the first alert of a window waits for company, after the reply. */
export const ENQUEUE_WINDOW_IN_MS = 100;
/** A full `sendBatch` goes at once. */
export const ENQUEUE_BATCH_SIZE = SEND_BATCH_SIZE;

export type SendBatch = (alert_ids: string[]) => Promise<void>;

/** One isolate's buffered ids. Module state in the Worker; the simulation passes one per isolate. */
export interface EnqueueBuffer {
  ids: string[];
  /** How the window waits: a timer by default (the simulation passes its own clock). */
  wait?: (ms: number) => Promise<void>;
}

const isolateBuffer: EnqueueBuffer = { ids: [] };

/**
 * Buffers an alert id. Returns the send that this call is responsible for (to
 * pass to `waitUntil`), or null when a request already holding the window will
 * send it.
 *
 * @example
 * const sending = bufferEnqueue(alert_id, (ids) => sendAll(queue, ids));
 * if (sending) ctx.waitUntil(sending);
 */
export function bufferEnqueue(
  alert_id: string,
  send: SendBatch,
  window_ms = ENQUEUE_WINDOW_IN_MS,
  buffer: EnqueueBuffer = isolateBuffer,
): Promise<void> | null {
  buffer.ids.push(alert_id);
  if (buffer.ids.length >= ENQUEUE_BATCH_SIZE) return send(take(buffer));
  if (buffer.ids.length > 1) return null;
  const waited = buffer.wait ? buffer.wait(window_ms) : new Promise<void>((resolve) => setTimeout(resolve, window_ms));
  return waited.then(() => {
    const alert_ids = take(buffer);
    return alert_ids.length > 0 ? send(alert_ids) : undefined;
  });
}

function take(buffer: EnqueueBuffer): string[] {
  const alert_ids = buffer.ids;
  buffer.ids = [];
  return alert_ids;
}
