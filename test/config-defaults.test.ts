/** The variables' defaults and parsing, as DESIGN.md and the README give them. */
import { describe, expect, it } from "vitest";
import { retryBaseSeconds } from "../src/fanout/backoff";
import { deliveryTimeoutMs } from "../src/fanout/deliver";
import { isJsonMediaType, maxBodyBytes } from "../src/http/webhook";
import { retentionDays } from "../src/retention";
import { storageDeadlineMs } from "../src/store/d1";
import { archiveDelayMinutes, archiveRowsPerTick } from "../src/archive/archive";
import { configProblems } from "../src/config";

describe("variables", () => {
  it.each([
    ["MAX_BODY_BYTES", maxBodyBytes, 65_536, "1024", 1_024],
    ["RETRY_BASE_SECONDS", retryBaseSeconds, 30, "5", 5],
    ["STORAGE_DEADLINE_MS", storageDeadlineMs, 5_000, "2500", 2_500],
    ["DELIVERY_TIMEOUT_MS", deliveryTimeoutMs, 10_000, "3000", 3_000],
  ] as const)("%s defaults to %i when unset, empty or not a positive number", (_, parse, fallback, raw, value) => {
    for (const bad of [undefined, "", "abc", "-1", "0"]) expect(parse(bad)).toBe(fallback);
    expect(parse(raw)).toBe(value);
  });

  it("RETENTION_DAYS unset or invalid keeps everything", () => {
    expect(retentionDays(undefined)).toBeNull();
    expect(retentionDays("")).toBeNull();
    expect(retentionDays("zero")).toBeNull();
    expect(retentionDays("-3")).toBeNull();
    expect(retentionDays("90")).toBe(90);
  });

  it("ARCHIVE_DELAY_MINUTES defaults to 60 and takes 0; ARCHIVE_ROWS_PER_TICK defaults to 300, at most 10000; /healthz names a refused value", () => {
    for (const bad of [undefined, "", "abc", "-1", "1.5"]) expect(archiveDelayMinutes(bad)).toBe(60);
    expect(archiveDelayMinutes("0")).toBe(0);
    expect(archiveDelayMinutes("15")).toBe(15);
    for (const bad of [undefined, "", "abc", "-1", "0"]) expect(archiveRowsPerTick(bad)).toBe(300);
    expect(archiveRowsPerTick("2000")).toBe(2_000);
    expect(archiveRowsPerTick("50000")).toBe(10_000);
    expect(configProblems({ ARCHIVE_DELAY_MINUTES: "0", ARCHIVE_ROWS_PER_TICK: "10000" })).toEqual([]);
    expect(configProblems({ ARCHIVE_DELAY_MINUTES: "-5" })).toEqual([expect.stringContaining("ARCHIVE_DELAY_MINUTES")]);
    expect(configProblems({ ARCHIVE_ROWS_PER_TICK: "20000" })).toEqual([expect.stringContaining("ARCHIVE_ROWS_PER_TICK")]);
  });

  it.each([
    ["application/json", true],
    ["Application/JSON; charset=utf-8", true],
    ["application/vnd.api+json", true],
    ["text/json", false],
    ["text/plain", false],
    [undefined, false],
  ])("content-type %s is JSON: %s", (header, json) => {
    expect(isJsonMediaType(header)).toBe(json);
  });
});
