/** The OpenAPI document of /api: generated from the route schemas, listing every route. */
import { createExecutionContext } from "cloudflare:test";
import { env } from "cloudflare:workers";
import { describe, expect, it } from "vitest";
import { app } from "../src/http/app";
import worker from "../src/index";

interface Doc {
  openapi: string;
  paths: Record<string, Record<string, { parameters: { name: string; in: string; required: boolean; schema: Record<string, unknown> }[]; requestBody?: { content: Record<string, { schema: Record<string, unknown> }> }; responses: Record<string, unknown> }>>;
}

async function fetchDoc(): Promise<Doc> {
  const res = await worker.fetch(
    new Request("https://worker.test/api/openapi.json", { headers: { authorization: "Bearer t" } }),
    { ...env, ADMIN_TOKEN: "t" },
    createExecutionContext(),
  );
  expect(res.status).toBe(200);
  return (await res.json()) as Doc;
}

describe("GET /api/openapi.json", () => {
  it("is an OpenAPI 3.1 document whose operations all have responses", async () => {
    const doc = await fetchDoc();
    expect(doc.openapi).toBe("3.1.0");
    for (const operations of Object.values(doc.paths)) {
      for (const op of Object.values(operations)) expect(Object.keys(op.responses)).toContain("200");
    }
  });

  it("lists every /api route the router has, with its method", async () => {
    const doc = await fetchDoc();
    const routed = app.routes
      .filter((r) => r.path.startsWith("/api/") && r.method !== "ALL")
      .map((r) => `${r.method.toLowerCase()} ${r.path.replace(/:(\w+)/g, "{$1}")}`);
    const documented = Object.entries(doc.paths).flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m} ${path}`));
    expect(routed.length).toBeGreaterThanOrEqual(11);
    expect(new Set(documented)).toEqual(new Set(routed));
  });

  it("takes its parameters and bodies from the schemas the routes validate with", async () => {
    const doc = await fetchDoc();
    const alerts = doc.paths["/api/alerts"]?.get;
    expect(alerts?.parameters.map((p) => p.name).sort()).toEqual(["cursor", "limit", "since", "survey_id", "until", "user_system_id"]);
    expect(alerts?.parameters.every((p) => p.in === "query" && p.required === false)).toBe(true);
    const replay = doc.paths["/api/replay"]?.post?.requestBody?.content["application/json"]?.schema;
    expect(replay).toMatchObject({ type: "object", required: ["status"], properties: { status: { enum: ["dead", "failed"] } } });
    const nps = doc.paths["/api/surveys/{survey_id}/nps"]?.get?.parameters;
    expect(nps?.find((p) => p.name === "survey_id")).toMatchObject({ in: "path", required: true });
    expect(nps?.find((p) => p.name === "bucket")?.schema).toMatchObject({ enum: ["day", "week"] });
  });
});
