/**
 * `GET /api/openapi.json`: an OpenAPI 3.1 document of `/api`, built from the very
 * valibot schemas the routes validate with.
 */
import { toJsonSchema } from "@valibot/to-json-schema";
import { Hono } from "hono";
import type * as v from "valibot";
import { entrySchema } from "../fanout/destinations";
import { patchSchema } from "../manage-destinations";
import { alertReplaySchema, bulkReplaySchema, cancelSchema, previewSchema, testSendSchema } from "./api";
import { alertsQuerySchema, exportQuerySchema, npsQuerySchema, pageQuerySchema } from "./api-data";
import { normalisedAlertSchema } from "../fanout/json-format";
import type { AppEnv } from "./app-env";

type ObjectSchema = v.ObjectSchema<v.ObjectEntries, undefined> | v.StrictObjectSchema<v.ObjectEntries, undefined>;

interface Operation {
  method: "get" | "post" | "put" | "patch" | "delete";
  path: string;
  summary: string;
  query?: ObjectSchema;
  body?: ObjectSchema;
  body_optional?: boolean;
  produces?: string;
}

/** Every `/api` route; a test checks this list against the router. */
export const OPERATIONS: Operation[] = [
  { method: "get", path: "/api/alerts", summary: "Alerts, newest first, with answers and delivery status", query: alertsQuerySchema },
  { method: "get", path: "/api/alerts/{alert_id}", summary: "One alert with answers, deliveries and the raw payload" },
  {
    method: "post",
    path: "/api/alerts/{alert_id}/replay",
    summary: "Reset an alert's failed and dead deliveries (or delivered ones, with force) and enqueue it",
    body: alertReplaySchema,
    body_optional: true,
  },
  { method: "post", path: "/api/replay", summary: "Reset failed or dead deliveries matching a filter and enqueue them", body: bulkReplaySchema },
  { method: "get", path: "/api/surveys", summary: "Each survey with responses, last response time and NPS" },
  { method: "get", path: "/api/surveys/{survey_id}/nps", summary: "The NPS of a survey per day or week", query: npsQuerySchema },
  {
    method: "get",
    path: "/api/export.csv",
    summary: "Every response as CSV, one column per screen position; a large export continues at Link rel=next",
    query: exportQuerySchema,
    produces: "text/csv",
  },
  {
    method: "get",
    path: "/api/destinations",
    summary: "Every destination with its configuration (secrets and header values masked) and health: breaker state, last error, pending, delivered and failed over 24 h",
  },
  { method: "put", path: "/api/destinations/{name}", summary: "Create (201) or replace (200) a destination managed from the API", body: entrySchema },
  { method: "patch", path: "/api/destinations/{name}", summary: "Change some fields of an API destination (enabled, filter, survey_ids, url, transform, path, method, format)", body: patchSchema },
  { method: "delete", path: "/api/destinations/{name}", summary: "Remove an API destination and cancel its pending deliveries" },
  { method: "post", path: "/api/destinations/{name}/preview", summary: "The exact request a destination would receive for a stored alert; nothing is sent", body: previewSchema },
  {
    method: "post",
    path: "/api/destinations/{name}/test",
    summary: "Send one request now (an alert, or 1Flow's example payload); no ledger row, breaker untouched",
    body: testSendSchema,
    body_optional: true,
  },
  { method: "post", path: "/api/destinations/{name}/resume", summary: "Resume a paused destination now and send what waited" },
  { method: "post", path: "/api/deliveries/cancel", summary: "Cancel a destination's pending deliveries (final, never re-sent)", body: cancelSchema },
  { method: "get", path: "/api/rejected", summary: "The quarantine, newest first", query: pageQuerySchema },
  { method: "post", path: "/api/rejected/{id}/reprocess", summary: "Validate a quarantined body again and store it if it passes" },
  { method: "delete", path: "/api/users/{user_system_id}", summary: "Erase everything stored about one user" },
  { method: "get", path: "/api/openapi.json", summary: "This document" },
];

const json = (schema: ObjectSchema | v.GenericSchema) =>
  toJsonSchema(schema, { target: "draft-2020-12", errorMode: "ignore" }) as Record<string, unknown>;

const errorBody = {
  type: "object",
  required: ["ok", "error"],
  properties: { ok: { const: false }, error: { type: "string" }, message: { type: "string" } },
};

export function openApiDocument(): Record<string, unknown> {
  const paths: Record<string, Record<string, unknown>> = {};
  for (const op of OPERATIONS) {
    const parameters: Record<string, unknown>[] = [];
    for (const name of op.path.match(/\{(\w+)\}/g) ?? []) {
      parameters.push({ name: name.slice(1, -1), in: "path", required: true, schema: { type: "string" } });
    }
    for (const [name, entry] of Object.entries(op.query?.entries ?? {})) {
      const schema = json(entry);
      delete schema.$schema;
      parameters.push({ name, in: "query", required: entry.type !== "optional", schema });
    }
    const operation: Record<string, unknown> = {
      summary: op.summary,
      security: [{ bearer: [] }],
      parameters,
      responses: {
        "200": {
          description: "OK",
          content: { [op.produces ?? "application/json"]: { schema: op.produces ? { type: "string" } : { type: "object" } } },
        },
        "400": { description: "Invalid request", content: { "application/json": { schema: errorBody } } },
        "401": { description: "Missing or wrong bearer token", content: { "application/json": { schema: errorBody } } },
        "404": { description: "Not found, or ADMIN_TOKEN unset", content: { "application/json": { schema: errorBody } } },
      },
    };
    if (op.body) {
      const schema = json(op.body);
      delete schema.$schema;
      operation.requestBody = { required: !op.body_optional, content: { "application/json": { schema } } };
    }
    paths[op.path] = { ...paths[op.path], [op.method]: operation };
  }
  const normalised = json(normalisedAlertSchema);
  delete normalised.$schema;
  return {
    openapi: "3.1.0",
    info: { title: "oneflow-webhooks admin API", version: "1" },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer", description: "ADMIN_TOKEN" } },
      schemas: { NormalisedAlert: normalised },
    },
    paths,
    // What a destination with "format": "json" receives (Standard Webhooks headers, signed with its secret).
    webhooks: {
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
    },
  };
}

let cached: Record<string, unknown> | undefined;

export const openapi = new Hono<AppEnv>();
openapi.get("/api/openapi.json", (c) => c.json((cached ??= openApiDocument())));
