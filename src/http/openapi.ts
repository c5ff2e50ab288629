/**
 * `GET /api/openapi.json`: an OpenAPI 3.1 document of `/api`, generated from the routes
 * themselves (hono-openapi): each route carries its description (`documented`, next to its
 * handler), built from the very valibot schemas it validates with. No list to keep by hand.
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import type { Hono, MiddlewareHandler } from "hono";
import { describeRoute, openAPIRouteHandler } from "hono-openapi";
import type * as v from "valibot";
import { normalisedAlertSchema } from "../fanout/json-format";
import type { AppEnv } from "./app-env";

type ObjectSchema = v.ObjectSchema<v.ObjectEntries, undefined> | v.StrictObjectSchema<v.ObjectEntries, undefined>;

export interface RouteDoc {
  summary: string;
  /** The query string's schema: one parameter per entry. */
  query?: ObjectSchema;
  /** The JSON body's schema. */
  body?: v.GenericSchema;
  body_optional?: boolean;
  /** The success answer's media type, when not JSON. */
  produces?: string;
}

type JsonSchema = Record<string, unknown>;

const json = (schema: v.GenericSchema): JsonSchema => {
  const converted = toJsonSchema(schema, { target: "draft-2020-12", errorMode: "ignore" }) as JsonSchema;
  delete converted.$schema;
  return converted;
};

const errorBody: { type: "object"; required: string[]; properties: Record<string, JsonSchema> } = {
  type: "object",
  required: ["ok", "error"],
  properties: { ok: { const: false }, error: { type: "string" }, message: { type: "string" } },
};

/**
 * The OpenAPI description of one `/api` route, as middleware placed before its handler.
 *
 * @example
 * api.post("/api/replay", documented({ summary: "Reset dead deliveries", body: bulkReplaySchema }), handler);
 */
export function documented(doc: RouteDoc): MiddlewareHandler<AppEnv> {
  const parameters = Object.entries(doc.query?.entries ?? {}).map(([name, entry]) => ({
    name,
    in: "query" as const,
    required: entry.type !== "optional",
    schema: json(entry),
  }));
  return describeRoute({
    summary: doc.summary,
    security: [{ bearer: [] }],
    parameters,
    ...(doc.body ? { requestBody: { required: !doc.body_optional, content: { "application/json": { schema: json(doc.body) } } } } : {}),
    responses: {
      "200": {
        description: "OK",
        content: { [doc.produces ?? "application/json"]: { schema: doc.produces ? { type: "string" } : { type: "object" } } },
      },
      "400": { description: "Invalid request", content: { "application/json": { schema: errorBody } } },
      "401": { description: "Missing or wrong bearer token", content: { "application/json": { schema: errorBody } } },
      "404": { description: "Not found, or ADMIN_TOKEN unset", content: { "application/json": { schema: errorBody } } },
    },
  }) as MiddlewareHandler<AppEnv>;
}

/** What a destination with "format": "json" receives: a `webhooks` entry of the document. */
function webhooks(): Record<string, unknown> {
  return {
    "alert.json": {
      post: {
        summary: "One survey response, normalised: the body of a json destination",
        parameters: [
          { name: "webhook-id", in: "header", required: true, schema: { type: "string" }, description: "The alert_id: deduplicate on it" },
          { name: "webhook-timestamp", in: "header", required: true, schema: { type: "string" }, description: "Unix seconds" },
          {
            name: "webhook-signature",
            in: "header",
            required: false,
            schema: { type: "string" },
            description: 'With a secret: "v1,<base64 HMAC-SHA256 of <id>.<timestamp>.<body>>" (Standard Webhooks)',
          },
        ],
        requestBody: { required: true, content: { "application/json": { schema: { $ref: "#/components/schemas/NormalisedAlert" } } } },
        responses: { "2XX": { description: "Delivered" }, default: { description: "Retried with backoff (a 4xx other than 408 and 429 is not)" } },
      },
    },
  };
}

/** The handler of `GET /api/openapi.json`: every documented route of `app`, generated from it. */
export function openApiHandler(app: Hono<AppEnv>): MiddlewareHandler<AppEnv> {
  return openAPIRouteHandler(app, {
    documentation: {
      openapi: "3.1.0",
      info: { title: "oneflow-webhooks admin API", version: "1" },
      components: {
        securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" } },
        schemas: { NormalisedAlert: json(normalisedAlertSchema) as Record<string, never> },
      },
      webhooks: webhooks() as never,
    },
    // Only what carries a description: the /api routes (the webhook, the dashboard and /healthz are not this API).
    includeEmptyPaths: false,
    // /api/export.csv and this document are routes, not static files.
    excludeStaticFile: false,
    exclude: [/^\/(?!api\/)/],
  }) as MiddlewareHandler<AppEnv>;
}
