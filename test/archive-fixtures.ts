/** What both archive test files read of R2: every object's key, and the objects whose rows name someone. */
import { env } from "cloudflare:workers";
import { readParquet } from "../src/archive/parquet";

export const bucket = (): R2Bucket => {
  if (!env.ARCHIVE) throw new Error("wrangler.toml binds ARCHIVE");
  return env.ARCHIVE;
};

/** Every object in R2 (listed in the manifest or not), by key. */
export async function objectKeys(): Promise<string[]> {
  const keys: string[] = [];
  let cursor: string | undefined;
  do {
    const page = await bucket().list({ cursor });
    keys.push(...page.objects.map((o) => o.key));
    cursor = page.truncated ? page.cursor : undefined;
  } while (cursor !== undefined);
  return keys.sort();
}

/** Every object in R2 (listed or not) whose rows name `needle`. */
export async function objectsNaming(needle: string): Promise<string[]> {
  const found: string[] = [];
  for (const key of await objectKeys()) {
    const object = await bucket().get(key);
    if (object === null) continue;
    const bytes = await object.arrayBuffer();
    const rows = key.startsWith("responses/") ? await readParquet("responses", bytes) : await readParquet("answers", bytes);
    if (JSON.stringify(rows).includes(needle)) found.push(key);
  }
  return found;
}
