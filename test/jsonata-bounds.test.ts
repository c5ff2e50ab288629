/**
 * Issue 25, paths 5 and 6, and the audit's JSONata bounds: each bound fails with its own
 * code (sequences D2015, depth D1011, steps), fast (a removed bound fails on the test's
 * timeout, it does not hang the run); regular expressions are refused at PUT with their
 * position; an invocation has a budget of evaluation steps and carries over what exceeds it;
 * and an error's text never holds a respondent's value.
 */
import { env } from "cloudflare:workers";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { Env } from "../src/env";
import { EVALUATION_CARRIED_OVER } from "../src/fanout/consumer";
import { evaluate, EvaluationBudget, INVOCATION_STEPS, MAX_SEQUENCE, MAX_STEPS, safeError } from "../src/fanout/jsonata";
import { ADMIN_TOKEN, callWorker, examplePayload, freshId } from "./fixtures";
import { deliveries, message, runQueue, stubDestinations, watchSendBatch } from "./fanout-fixtures";
import { post } from "./fixtures";

afterEach(() => {
  vi.restoreAllMocks();
});

const FAST = { timeout: 5_000 };

describe("the bounds of one evaluation", () => {
  it("a sequence past MAX_SEQUENCE fails with D2015, not at jsonata's own 10-million cap", FAST, async () => {
    expect(MAX_SEQUENCE).toBeLessThan(20_000);
    const result = await evaluate("[1..20000]", {});
    expect(result).toMatchObject({ ok: false });
    expect(result.ok ? "" : result.error).toMatch(/^D2015\b/);
    const mapped = await evaluate("$count($map([1..20000], function($x) { $x }))", {});
    expect(mapped.ok ? "" : mapped.error).toMatch(/^D2015\b/);
  });

  it("recursion past MAX_DEPTH fails with D1011", FAST, async () => {
    const result = await evaluate("( $f := function($n) { $n < 100000 ? $n + $f($n + 1) : 0 }; $f(0) )", {});
    expect(result.ok ? "" : result.error).toMatch(/^D1011\b/);
  });

  it("a tail loop, which the depth never stops, fails on its steps", FAST, async () => {
    // It ends by itself after 100,000 rounds (well under a second), so that without the step
    // bound this test fails at once instead of hanging.
    const result = await evaluate("( $f := function($n) { $n < 100000 ? $f($n + 1) : $n }; $f(0) )", {});
    expect(result.ok ? "" : result.error).toMatch(/^steps\b/);
  });
});

describe("an error's text holds no respondent's value", () => {
  const EMAIL = "john.doe@example.com";

  it("safeError keeps the code and the position, never the value", async () => {
    const result = await evaluate("$number(user.parameters.email)", { user: { parameters: { email: EMAIL } } });
    expect(result.ok).toBe(false);
    const error = result.ok ? "" : result.error;
    expect(error).toMatch(/^D3030\b/);
    expect(error).toMatch(/position \d+/);
    expect(error).not.toContain(EMAIL);
    expect(safeError({ code: "D3030", position: 7, value: EMAIL, message: `Unable to cast value to a number: "${EMAIL}"` })).not.toContain(EMAIL);
  });

  it("a failing filter and transform: the email appears in no ledger row, health row, notification, NOTIFY_URL post or log line", async () => {
    const lines: string[] = [];
    for (const level of ["log", "info", "warn", "error"] as const) {
      const original = console[level].bind(console);
      vi.spyOn(console, level).mockImplementation((...args: unknown[]) => {
        lines.push(args.map(String).join(" "));
        original(...args);
      });
    }
    const filterName = freshId("leak-filter");
    const transformName = freshId("leak-transform");
    const ENV: Env = {
      ...env,
      ADMIN_TOKEN,
      DESTINATIONS: JSON.stringify([
        { name: filterName, url: "https://leak-filter.test/h", filter: { expression: "$number(user.parameters.email) > 1" } },
        { name: transformName, url: "https://leak-transform.test/h", format: "jsonata", transform: "{ 'n': $number(user.parameters.email) }" },
      ]),
      PAUSE_AFTER_FAILURES: "1",
      NOTIFY_URL: "https://notify.test/hook",
    };
    const received = stubDestinations();
    const payload = examplePayload({ user: { user_system_id: freshId("leaker"), parameters: { email: EMAIL } } });
    expect((await post(payload)).status).toBe(200);
    await runQueue("oneflow-alerts", [message(payload.alert_id)], ENV);
    const rows = await deliveries(payload.alert_id);
    expect(rows.map((r) => r.status)).toEqual(["failed", "failed"]);
    for (const row of rows) expect(row.last_error).toMatch(/D3030/);
    // The cron sends the notifications the breaker left.
    const { createScheduledController, createExecutionContext, waitOnExecutionContext } = await import("cloudflare:test");
    const { default: worker } = await import("../src/index");
    const ctx = createExecutionContext();
    await worker.scheduled(createScheduledController({ scheduledTime: Date.now(), cron: "*/5 * * * *" }), ENV);
    await waitOnExecutionContext(ctx);
    const tables = await env.DB.batch([
      env.DB.prepare("SELECT * FROM deliveries WHERE alert_id = ?").bind(payload.alert_id),
      env.DB.prepare("SELECT * FROM destination_health"),
      env.DB.prepare("SELECT * FROM notifications"),
    ]);
    const stored = JSON.stringify(tables.map((t) => t.results));
    expect(stored).toContain("D3030");
    expect(stored).not.toContain(EMAIL);
    expect(received.filter((r) => r.host === "notify.test").map((r) => r.body).join("\n")).not.toContain(EMAIL);
    expect(lines.join("\n")).not.toContain(EMAIL);
    expect(lines.join("\n")).toContain("D3030");
  });
});

describe("regular expressions", () => {
  it("are refused at PUT with a 400 that names their position", async () => {
    const name = freshId("regex");
    const res = await callWorker(
      `/api/destinations/${name}`,
      {
        method: "PUT",
        body: JSON.stringify({ url: "https://regex.test/h", filter: { expression: `$contains(answers[0].answer, /(a+)+b/)` } }),
        headers: { "content-type": "application/json" },
      },
      { ...env, ADMIN_TOKEN },
    );
    expect(res.status).toBe(400);
    const body = (await res.json()) as { issues: { path: string; message: string }[] };
    expect(body.issues[0]?.path).toBe("filter.expression");
    expect(body.issues[0]?.message).toMatch(/regular expression.*position 37/);
  });
});

describe("an invocation's budget of evaluation steps", () => {
  it("INVOCATION_STEPS holds at least two evaluations at their bound", () => {
    expect(INVOCATION_STEPS).toBeGreaterThanOrEqual(2 * MAX_STEPS);
    const budget = new EvaluationBudget(INVOCATION_STEPS);
    expect(budget.left()).toBe(INVOCATION_STEPS);
  });

  it("twelve costly filters: what exceeds the budget is carried over (no attempt spent), and everything arrives once", async () => {
    // About 3,000 steps each: twelve of them are more than one invocation may evaluate.
    const expression = "$count($map([1..700], function($x) { $x + 1 })) > 0";
    const names = Array.from({ length: 12 }, (_, i) => freshId(`steps${i}`));
    const ENV: Env = {
      ...env,
      DESTINATIONS: JSON.stringify(names.map((name, i) => ({ name, url: `https://steps${i}.test/h`, filter: { expression } }))),
      SUBREQUEST_BUDGET: "1000",
    };
    const probe = new EvaluationBudget(INVOCATION_STEPS);
    const one = await evaluate(expression, {}, probe);
    expect(one.ok).toBe(true);
    const perEvaluation = INVOCATION_STEPS - probe.left();
    expect(perEvaluation * 12).toBeGreaterThan(INVOCATION_STEPS);

    const received = stubDestinations();
    const sent = watchSendBatch();
    const payload = examplePayload();
    expect((await post(payload)).status).toBe(200);
    const m = message(payload.alert_id);
    const first = await runQueue("oneflow-alerts", [m], ENV);
    expect(first.explicitAcks).toEqual([m.id]);
    const rows = await deliveries(payload.alert_id);
    const carried = rows.filter((r) => r.status === "pending");
    expect(carried.length).toBeGreaterThan(0);
    for (const row of carried) expect(row).toMatchObject({ attempts: 0, last_error: EVALUATION_CARRIED_OVER });
    expect(received.length).toBeLessThanOrEqual(Math.floor(INVOCATION_STEPS / perEvaluation));
    expect(sent.ids()).toContain(payload.alert_id);
    // The carried-over messages: each destination gets the alert exactly once.
    for (let i = 0; i < 12 && (await deliveries(payload.alert_id)).some((r) => r.status === "pending"); i++) {
      await runQueue("oneflow-alerts", [message(payload.alert_id)], ENV);
    }
    expect((await deliveries(payload.alert_id)).map((r) => r.status)).toEqual(names.map(() => "delivered"));
    expect(received).toHaveLength(12);
  });

  it("twelve costly transforms: each is set aside at its cost before it is sent; the rest is carried over, and everything arrives once", async () => {
    const transform = `{ "n": $count($map([1..700], function($x) { $x + 1 })) }`;
    const names = Array.from({ length: 12 }, (_, i) => freshId(`tsteps${i}`));
    const ENV: Env = {
      ...env,
      DESTINATIONS: JSON.stringify(names.map((name, i) => ({ name, url: `https://tsteps${i}.test/h`, format: "jsonata", transform }))),
      SUBREQUEST_BUDGET: "1000",
    };
    const received = stubDestinations();
    const payload = examplePayload();
    expect((await post(payload)).status).toBe(200);
    await runQueue("oneflow-alerts", [message(payload.alert_id)], ENV);
    expect(received.length).toBeGreaterThan(0);
    expect(received.length).toBeLessThan(12);
    const carried = (await deliveries(payload.alert_id)).filter((r) => r.status === "pending");
    for (const row of carried) expect(row).toMatchObject({ attempts: 0, last_error: EVALUATION_CARRIED_OVER });
    for (let i = 0; i < 12 && (await deliveries(payload.alert_id)).some((r) => r.status === "pending"); i++) {
      await runQueue("oneflow-alerts", [message(payload.alert_id)], ENV);
    }
    expect((await deliveries(payload.alert_id)).map((r) => r.status)).toEqual(names.map(() => "delivered"));
    expect(received).toHaveLength(12);
  });

  it("a transform cheap on the responses seen so far and costly on this one is metered as it runs: no more is sent than the budget holds", async () => {
    // About 4,200 steps on a response of three answers or more, a handful on the example's two.
    const transform = `{ "n": $count(answers) > 2 ? $count($map([1..1400], function($x) { $x + 1 })) : 0 }`;
    const names = Array.from({ length: 12 }, (_, i) => freshId(`tgrow${i}`));
    const ENV: Env = {
      ...env,
      DESTINATIONS: JSON.stringify(names.map((name, i) => ({ name, url: `https://tgrow${i}.test/h`, format: "jsonata", transform }))),
      SUBREQUEST_BUDGET: "1000",
    };
    const received = stubDestinations();
    // First the cheap one: every transform has been seen to cost almost nothing.
    const cheap = examplePayload();
    expect((await post(cheap)).status).toBe(200);
    await runQueue("oneflow-alerts", [message(cheap.alert_id)], ENV);
    expect((await deliveries(cheap.alert_id)).map((r) => r.status)).toEqual(names.map(() => "delivered"));
    // Then a costly one: each transform now takes about 4,200 steps, so one invocation holds three.
    const screens = [...cheap.survey_info.screens, { id: "s3", title: "Why?", type: "text", answer: "because" }];
    const costly = examplePayload({ survey_info: { ...cheap.survey_info, screens } });
    expect((await post(costly)).status).toBe(200);
    const before = received.length;
    await runQueue("oneflow-alerts", [message(costly.alert_id)], ENV);
    const sent = received.length - before;
    expect(sent).toBeGreaterThan(0);
    expect(sent).toBeLessThanOrEqual(Math.floor(INVOCATION_STEPS / 4_000));
    const rows = await deliveries(costly.alert_id);
    expect(rows.filter((r) => r.status === "pending").every((r) => r.attempts === 0 && r.last_error === EVALUATION_CARRIED_OVER)).toBe(true);
  });

  it("filters that would spend the whole budget never starve the sends: every invocation sends at least one, and all arrive", async () => {
    // About 4,800 steps each: three of them alone nearly fill INVOCATION_STEPS.
    const expression = "$count($map([1..1600], function($x) { $x + 1 })) > 0";
    const names = Array.from({ length: 3 }, (_, i) => freshId(`starve${i}`));
    const ENV: Env = {
      ...env,
      DESTINATIONS: JSON.stringify(
        names.map((name, i) => ({ name, url: `https://starve${i}.test/h`, format: "jsonata", transform: `{ "n": ${i} }`, filter: { expression } })),
      ),
      SUBREQUEST_BUDGET: "1000",
    };
    const received = stubDestinations();
    const payload = examplePayload();
    expect((await post(payload)).status).toBe(200);
    for (let i = 0; i < 3; i++) {
      const before = received.length;
      await runQueue("oneflow-alerts", [message(payload.alert_id)], ENV);
      if ((await deliveries(payload.alert_id)).every((r) => r.status === "delivered") && received.length === 3) break;
      expect(received.length).toBeGreaterThan(before);
    }
    expect((await deliveries(payload.alert_id)).map((r) => r.status)).toEqual(names.map(() => "delivered"));
    expect(received).toHaveLength(3);
  });
});
