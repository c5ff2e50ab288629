#!/usr/bin/env node
// npm run archive:query -- "<sql>": DuckDB over the archive that `npm run dev` wrote to its
// local R2 (.wrangler/state). The parts are copied to .wrangler/archive/ (the same
// responses/date=…/ and answers/date=…/ folders as in the bucket), and the query sees two
// views over them, `responses` and `answers`, with the hive partition column `date`.
//
//   npm run archive:query -- "SELECT date, COUNT(*) FROM responses GROUP BY date ORDER BY date"
//   npm run archive:query -- --persist-to <dir> "<sql>"   (wrangler dev --persist-to <dir>)
//   npm run archive:query -- --pull                        (copy the parts, run nothing)
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { convertV4MiniflareOptions, Miniflare } from "miniflare";

const ROOT = new URL("..", import.meta.url).pathname;
const BUCKET = "oneflow-archive";

function parseArgs(argv) {
  const args = { persistTo: join(ROOT, ".wrangler", "state"), out: join(ROOT, ".wrangler", "archive"), sql: null, pull: false, json: false };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--persist-to") args.persistTo = resolve(argv[++i]);
    else if (arg === "--out") args.out = resolve(argv[++i]);
    else if (arg === "--pull") args.pull = true;
    else if (arg === "--json") args.json = true;
    else if (args.sql === null) args.sql = arg;
    else throw new Error(`unexpected argument: ${arg}`);
  }
  if (args.sql === null && !args.pull) throw new Error('usage: npm run archive:query -- "<sql>"  (views: responses, answers)');
  return args;
}

/** Copies every object of the local bucket to `out`, keeping its key as the path. */
export async function pullArchive(persistTo, out) {
  const mf = new Miniflare(
    convertV4MiniflareOptions({
      modules: true,
      script: "export default { fetch() { return new Response(null, { status: 404 }); } };",
      r2Buckets: { ARCHIVE: BUCKET },
      // What `wrangler dev` passes Miniflare: every local resource under <persist-to>/v3.
      resourcePersistencePath: join(persistTo, "v3"),
    }),
  );
  try {
    const bucket = await mf.getR2Bucket("ARCHIVE");
    rmSync(out, { recursive: true, force: true });
    let cursor;
    let count = 0;
    do {
      const page = await bucket.list({ cursor });
      for (const { key } of page.objects) {
        if (!/^(responses|answers)\/date=\d{4}-\d{2}-\d{2}\/[^/]+\.parquet$/.test(key)) continue;
        const object = await bucket.get(key);
        if (object === null) continue;
        mkdirSync(dirname(join(out, key)), { recursive: true });
        writeFileSync(join(out, key), new Uint8Array(await object.arrayBuffer()));
        count++;
      }
      cursor = page.truncated ? page.cursor : undefined;
    } while (cursor !== undefined);
    return count;
  } finally {
    await mf.dispose();
  }
}

/**
 * A DuckDB value as JSON shows it: numbers as numbers (a BIGINT or HUGEINT as a number while it
 * is exact, else as its digits), decimals as numbers, timestamps and other values as their text.
 */
export function plain(value) {
  if (value === null || typeof value === "number" || typeof value === "string" || typeof value === "boolean") return value;
  if (typeof value === "bigint") return Number.isSafeInteger(Number(value)) ? Number(value) : value.toString();
  if (typeof value === "object" && value !== null && typeof value.toDouble === "function" && value.constructor?.name === "DuckDBDecimalValue") return value.toDouble();
  if (Array.isArray(value)) return value.map(plain);
  return String(value);
}

/** Runs `sql` in DuckDB with `responses` and `answers` as views over the parts under `out`. */
export async function queryArchive(out, sql) {
  const instance = await DuckDBInstance.create(":memory:");
  const connection = await instance.connect();
  try {
    for (const table of ["responses", "answers"]) {
      const glob = join(out, table, "*", "*.parquet").replaceAll("'", "''");
      // An empty archive still has both views (no rows), so that a query does not fail on it.
      mkdirSync(join(out, table), { recursive: true });
      const hasFiles = (await connection.runAndReadAll(`SELECT COUNT(*) AS n FROM glob('${glob}')`)).getRowObjects()[0].n > 0n;
      if (hasFiles) await connection.run(`CREATE VIEW ${table} AS SELECT * FROM read_parquet('${glob}', hive_partitioning = true)`);
      else await connection.run(`CREATE VIEW ${table} AS SELECT NULL AS alert_id WHERE false`);
    }
    const reader = await connection.runAndReadAll(sql);
    return { columns: reader.columnNames(), rows: reader.getRowObjects().map((row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)]))) };
  } finally {
    connection.closeSync();
  }
}

if (import.meta.url === `file://${process.argv[1]}`) {
  try {
    const args = parseArgs(process.argv.slice(2));
    const files = await pullArchive(args.persistTo, args.out);
    if (args.pull || args.sql === null) {
      console.log(`${files} parts copied to ${args.out}`);
    } else {
      const { columns, rows } = await queryArchive(args.out, args.sql);
      if (args.json) console.log(JSON.stringify(rows, null, 2));
      else {
        console.log(`${files} parts in ${args.out}`);
        console.table(rows.map((r) => Object.fromEntries(columns.map((c) => [c, r[c]]))));
      }
    }
  } catch (error) {
    console.error(`archive:query: ${error instanceof Error ? error.message : String(error)}`);
    process.exit(1);
  }
}
