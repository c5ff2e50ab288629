/** Unit tests of the per-isolate enqueue buffer. */
import { describe, expect, it } from "vitest";
import { bufferEnqueue, ENQUEUE_BATCH_SIZE } from "../src/ingest/enqueue-buffer";

describe("bufferEnqueue", () => {
  it("the first alert of a window sends it, with every alert that joined", async () => {
    const sent: string[][] = [];
    const send = async (ids: string[]) => {
      sent.push(ids);
    };
    const first = bufferEnqueue("a", send, 10);
    expect(first).toBeInstanceOf(Promise);
    expect(bufferEnqueue("b", send, 10)).toBeNull();
    expect(bufferEnqueue("c", send, 10)).toBeNull();
    expect(sent).toEqual([]);
    await first;
    expect(sent).toEqual([["a", "b", "c"]]);
  });

  it("a full batch is sent at once by the request that filled it", async () => {
    const sent: string[][] = [];
    const send = async (ids: string[]) => {
      sent.push(ids);
    };
    const first = bufferEnqueue("x0", send, 10);
    let filler: Promise<void> | null = null;
    for (let i = 1; i < ENQUEUE_BATCH_SIZE; i++) filler = bufferEnqueue(`x${i}`, send, 10) ?? filler;
    expect(filler).toBeInstanceOf(Promise);
    await filler;
    expect(sent).toHaveLength(1);
    expect(sent[0]).toHaveLength(ENQUEUE_BATCH_SIZE);
    await first; // the window's timer finds nothing left
    expect(sent).toHaveLength(1);
  });

  it("a new window opens after a send", async () => {
    const sent: string[][] = [];
    const send = async (ids: string[]) => {
      sent.push(ids);
    };
    await bufferEnqueue("p", send, 5);
    await bufferEnqueue("q", send, 5);
    expect(sent).toEqual([["p"], ["q"]]);
  });
});
