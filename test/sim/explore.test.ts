/**
 * `npm run sim -- --runs N [--seed S] [--path P]`: explores further than `npm test` (skipped
 * unless SIM_RUNS is set by scripts/sim.mjs). With SIM_EXPLORE=1 it does not stop at the first
 * broken invariant: it records the first run that breaks each kind, then shrinks each kind on
 * its own, and prints seed, path and shrunk commands for each.
 */
import { env } from "cloudflare:workers";
import fc from "fast-check";
import { expect, it } from "vitest";
import { simParameters, simProperty, timing } from "./run";

const vars = env as unknown as { SIM_GENERATOR?: string; SIM_TRACE?: string; SIM_ONLY?: string; SIM_PROGRESS?: string; SIM_RUNS: string; SIM_SEED: string; SIM_PATH: string; SIM_EXPLORE: string };
const runs = Number(vars.SIM_RUNS);
const seed = vars.SIM_SEED === "" ? Date.now() % 1_000_000_007 : Number(vars.SIM_SEED);
const path = vars.SIM_PATH === "" ? undefined : vars.SIM_PATH;
/** --generator N: the commands of an older generator version (a kept seed's). */
const generator = vars.SIM_GENERATOR ? Number(vars.SIM_GENERATOR) : undefined;
/** Time one kind may spend shrinking before it reports what it has. */
const SHRINK_MS = 120_000;

it.runIf(runs > 0)(`explore: ${runs} sequences from seed ${seed}`, async () => {
  const started = performance.now();
  let done = 0;
  const firstOfKind = new Map<string, { run: number; message: string }>();
  const explore = vars.SIM_EXPLORE === "1";
  let traced = false;
  // How much of the backfill the runs reached (its log events, and the deliveries its pages made).
  const backfill = new Map<string, number>();
  const onRun = (violations: { kind: string; message: string }[], _cmds: string, logs: string[]) => {
    done += 1;
    for (const line of logs) {
      const event = /"event":"(backfill\.[a-z_]+)"/.exec(line)?.[1];
      if (event !== undefined) backfill.set(event, (backfill.get(event) ?? 0) + 1);
      const sent = /"event":"backfill\.page".*"sent":(\d+)/.exec(line)?.[1];
      if (sent !== undefined) backfill.set("deliveries created", (backfill.get("deliveries created") ?? 0) + Number(sent));
    }
    // --trace: the first failing run's journal (every binding call, fault and receiver hit, with the Worker's log lines).
    if (vars.SIM_TRACE === "1" && violations.length > 0 && !traced) {
      traced = true;
      console.log(`SIM trace of run ${done}:\n${logs.join("\n")}`);
    }
    for (const v of violations) if (!firstOfKind.has(v.kind)) firstOfKind.set(v.kind, { run: done, message: v.message });
  };
  const report: string[] = [];
  if (explore) {
    await fc.check(simProperty({ seed, runs, generator, onRun, only: () => false, progressEvery: Number(vars.SIM_PROGRESS || 10) }), simParameters({ seed, runs }));
  } else {
    // --only KIND: only that kind of violation fails (a replay shrinks toward it alone), for at most SHRINK_MS.
    const only = vars.SIM_ONLY ? (k: string) => k === vars.SIM_ONLY : undefined;
    const deadline = only === undefined ? undefined : performance.now() + SHRINK_MS;
    const result = await fc.check(simProperty({ seed, runs, path, generator, onRun, only, deadline, progressEvery: Number(vars.SIM_PROGRESS || 10) }), simParameters({ seed, runs, path }));
    if (result.failed) report.push(fc.defaultReportMessage(result) ?? "failed");
  }
  const seconds = (performance.now() - started) / 1000;
  const lines = [`SIM: ${done} sequences in ${seconds.toFixed(1)} s (${(done / seconds).toFixed(2)} sequences/s, ${((done / seconds) * 60).toFixed(0)}/min), seed ${seed}`];
  lines.push(`SIM: time in commands ${(timing.commands / 1000).toFixed(1)} s, quiescence ${(timing.quiesce / 1000).toFixed(1)} s, invariants ${(timing.checks / 1000).toFixed(1)} s`);
  lines.push(`SIM: backfill: ${[...backfill].map(([event, n]) => `${event} ${n}`).join(", ") || "none reached"}`);
  for (const [kind, v] of firstOfKind) lines.push(`SIM: first ${kind} at run ${v.run}: ${v.message}`);
  console.log(lines.join("\n"));
  lines.length = 0;
  if (explore) {
    // Each kind shrunk on its own: the seed and path to replay it, and the shrunk commands.
    // Kinds first broken by the same run shrink together (once, for the first of them).
    const shrunkRuns = new Set<number>();
    for (const [kind, first] of firstOfKind) {
      if (shrunkRuns.has(first.run)) continue;
      shrunkRuns.add(first.run);
      const sameRun = [...firstOfKind].filter(([, v]) => v.run === first.run).map(([k]) => k);
      const result = await fc.check(
        simProperty({ seed, runs, generator, only: (k) => sameRun.includes(k), deadline: performance.now() + SHRINK_MS }),
        // From that run itself (its index as fast-check's path), then shrunk.
        simParameters({ seed, runs, path: String(first.run - 1) }),
      );
      lines.push(`SIM-FOUND ${sameRun.join(" + ")}: seed ${seed} path ${result.counterexamplePath ?? "?"}${result.numShrinks > 0 ? ` (${result.numShrinks} shrinks)` : ""}`);
      lines.push(`SIM-FOUND ${kind} commands: ${result.counterexample ? String(result.counterexample[1]) : "?"}`);
      if (result.errorInstance instanceof Error) lines.push(`SIM-FOUND ${kind} error: ${result.errorInstance.message.split("\n").slice(0, 4).join(" | ")}`);
      console.log(lines.join("\n"));
      lines.length = 0;
    }
  }
  if (lines.length > 0) console.log(lines.join("\n"));
  expect(report, report.join("\n")).toEqual([]);
}, 3_600_000);
