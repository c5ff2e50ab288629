/**
 * Erasure of a user leaves no row anywhere that names them: every table, every column is
 * read back after a `DELETE /api/users/{id}` that raced a consumer in flight, with bodies of
 * theirs in the quarantine that are not JSON, and a response of theirs still in the spool.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { SpoolMessage } from "../src/alert";
import type { Env } from "../src/env";
import { sha256Hex } from "../src/hash";
import { alertRow, callWorker, examplePayload, freshId, post } from "./fixtures";
import { FANOUT_ENV, message, runQueue, storedAlert, stubDestinations } from "./fanout-fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

/** Every table's cells that hold `needle` (text, or bytes read as UTF-8), as "table.column". */
async function cellsNaming(needle: string): Promise<string[]> {
  const { results: tables } = await env.DB.prepare(
    `SELECT name FROM sqlite_schema WHERE type = 'table'
       AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '_cf_%' AND name <> 'd1_migrations'`,
  ).all<{ name: string }>();
  const found: string[] = [];
  const decoder = new TextDecoder("utf-8", { fatal: false, ignoreBOM: false });
  for (const { name } of tables) {
    const { results } = await env.DB.prepare(`SELECT * FROM "${name}"`).all<Record<string, unknown>>();
    for (const row of results) {
      for (const [column, value] of Object.entries(row)) {
        let text: string | null = null;
        if (typeof value === "string") text = value;
        else if (value instanceof ArrayBuffer) text = decoder.decode(value);
        else if (Array.isArray(value)) text = decoder.decode(new Uint8Array(value as number[]));
        if (text?.includes(needle)) found.push(`${name}.${column}`);
      }
    }
  }
  return found;
}

describe("erasure of a user", () => {
  it("leaves no row in any table that names them", async () => {
    const user = freshId("erase-me");
    const identify = freshId("erase-identify");
    const raw = freshId("erase-raw");
    const ENV: Env = {
      ...FANOUT_ENV,
      DESTINATIONS: JSON.stringify([
        { name: identify, url: "https://erase-identify.test/v1/identify", format: "1flow-identify", headers: { api_key: "k" } },
        { name: raw, url: "https://erase-raw.test/hook" },
      ]),
    };
    const mine = (timestamp: string) => examplePayload({ user: { user_system_id: user }, timestamp });

    // Delivered earlier: ledger rows and the identify ordering row.
    stubDestinations();
    const delivered = await storedAlert(mine("2026-10-01T10:00:00.000Z"));
    await runQueue("oneflow-alerts", [message(delivered.alert_id)], ENV);
    expect(await env.DB.prepare("SELECT COUNT(*) AS n FROM identify_latest WHERE user_system_id = ?").bind(user).first()).toEqual({ n: 1 });

    // Quarantined: a truncated JSON body, a body that is not UTF-8, and one that fails the schema.
    const truncated = `{"user":{"user_system_id":${JSON.stringify(user)}},"alert_id":"cut-off`;
    expect(truncated).toContain(user);
    expect((await post(truncated)).status).toBe(400);
    const bytes = new Uint8Array([0xff, 0xfe, ...new TextEncoder().encode(`{"user":{"user_system_id":${JSON.stringify(user)}}}`)]);
    expect((await post(bytes)).status).toBe(400);
    const invalid = { ...mine("2026-10-03T10:00:00.000Z"), survey_id: undefined };
    expect((await post(JSON.stringify(invalid))).status).toBe(422);
    expect(await cellsNaming(user)).toContain("rejected_payloads.body");

    // A consumer in flight when the erasure runs: the erasure happens while its requests are out.
    const inFlight = await storedAlert(mine("2026-10-04T10:00:00.000Z"));
    let erasure: { more: boolean } | null = null;
    const erase = async () => {
      if (erasure === null) {
        erasure = { more: true };
        const res = await callWorker(`/api/users/${encodeURIComponent(user)}`, { method: "DELETE" });
        erasure = (await res.json()) as { more: boolean };
      }
      return new Response("ok");
    };
    stubDestinations({ "erase-identify.test": erase, "erase-raw.test": erase });
    await runQueue("oneflow-alerts", [message(inFlight.alert_id)], ENV);
    expect(erasure).toMatchObject({ ok: true, more: false });

    // A response of theirs submitted before the erasure, still in the spool: not stored.
    const spooled = JSON.stringify(mine("2026-10-05T10:00:00.000Z"));
    const spool: SpoolMessage = { v: 1, kind: "spool", body: spooled, received_at: new Date().toISOString(), sha256: await sha256Hex(spooled) };
    const result = await runQueue("oneflow-alerts", [{ id: freshId("spool"), timestamp: new Date(), attempts: 1, body: spool }], ENV);
    expect(result.explicitAcks).toHaveLength(1);
    expect(await alertRow((JSON.parse(spooled) as { alert_id: string }).alert_id)).toBeNull();

    expect(await cellsNaming(user)).toEqual([]);
    // Nor a row about one of their responses (the response tombstones aside: they keep the
    // response's id so that 1Flow's retries of it are not stored again).
    for (const { alert_id } of [delivered, inFlight]) {
      expect((await cellsNaming(alert_id)).filter((cell) => cell !== "erased_alerts.alert_id")).toEqual([]);
    }
    // The tombstone keeps a hash of the id, never the id.
    const tombstone = await env.DB.prepare("SELECT user_sha256 FROM erased_users WHERE user_sha256 = ?").bind(await sha256Hex(user)).first();
    expect(tombstone).toEqual({ user_sha256: await sha256Hex(user) });
  });

  it("a response of the erased user submitted after the erasure is stored", async () => {
    const user = freshId("comes-back");
    await post(examplePayload({ user: { user_system_id: user }, timestamp: "2026-10-01T00:00:00.000Z" }));
    expect((await callWorker(`/api/users/${user}`, { method: "DELETE" })).status).toBe(200);
    const later = examplePayload({ user: { user_system_id: user }, timestamp: new Date(Date.now() + 5_000).toISOString() });
    expect(await (await post(later)).json()).toEqual({ ok: true, alert_id: later.alert_id, duplicate: false });
    expect(await alertRow(later.alert_id)).not.toBeNull();
  });
});
