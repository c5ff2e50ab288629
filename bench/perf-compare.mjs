// node bench/perf-compare.mjs <before.json> <after.json>: the request path's ratios side by side,
// each the median of the rounds with its spread (min–max), from two `npm run bench` results.
import { readFileSync } from "node:fs";

const [beforePath = "bench/results/perf-before.json", afterPath = "bench/results/perf-after.json"] = process.argv.slice(2);
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};
function ratios(path) {
  const run = JSON.parse(readFileSync(path, "utf8"));
  const by = Object.fromEntries(run.rows.map((r) => [r.name, r.rounds]));
  const ours = by["ours: new alerts"];
  const rounds = ours.map((o, i) => ({
    floor: o.requests_per_second / by["floor-d1"][i].requests_per_second,
    naive: o.requests_per_second / by.naive[i].requests_per_second,
    p99: o.p99_ms / Math.max(by["floor-d1"][i].p99_ms, 1),
    rps: o.requests_per_second,
  }));
  const stat = (key, digits = 2) => {
    const xs = rounds.map((r) => r[key]);
    return `${median(xs).toFixed(digits)} (${Math.min(...xs).toFixed(digits)}–${Math.max(...xs).toFixed(digits)})`;
  };
  return { rounds: rounds.length, at: run.at, rps: stat("rps", 0), floor: stat("floor"), naive: stat("naive"), p99: stat("p99") };
}
const before = ratios(beforePath);
const after = ratios(afterPath);
console.log(`| | before (${before.rounds} rounds) | after (${after.rounds} rounds) |`);
console.log("|---|---|---|");
console.log(`| new responses, req/s | ${before.rps} | ${after.rps} |`);
console.log(`| new / floor-d1 | ${before.floor} | ${after.floor} |`);
console.log(`| new / naive | ${before.naive} | ${after.naive} |`);
console.log(`| p99 / floor-d1's p99 | ${before.p99} | ${after.p99} |`);
