/**
 * docs/recipes.md: each recipe (examples/recipes/*.json) is a valid destination, and its
 * transform over 1Flow's example payload gives a request with the fields the target's API
 * documents as required, within its documented limits.
 */
import { describe, expect, it } from "vitest";
import discord from "../examples/recipes/discord.json";
import hubspot from "../examples/recipes/hubspot.json";
import intercom from "../examples/recipes/intercom.json";
import linear from "../examples/recipes/linear.json";
import teams from "../examples/recipes/teams.json";
import recipesDoc from "../docs/recipes.md?raw";
import { buildRequest } from "../src/fanout/deliver";
import { type Destination, entrySchema, wants } from "../src/fanout/destinations";
import { exampleAlert } from "../src/manage-destinations";
import { validate } from "../src/validation";

type Json = Record<string, unknown>;

async function run(name: string, recipe: unknown, parameters: Json = {}) {
  const entry = validate(entrySchema, recipe);
  if (!entry.ok) throw new Error(`${name}: ${JSON.stringify(entry.issues)}`);
  const destination: Destination = { ...entry.value, name };
  const example = exampleAlert(new Date("2026-12-01T00:00:00Z"));
  const params = { ...(JSON.parse(example.user_parameters ?? "{}") as Json), ...parameters };
  const alert = { ...example, user_parameters: JSON.stringify(params) };
  expect((await wants(destination, alert)).wanted, `${name} wants the example`).toBe(true);
  const built = await buildRequest(destination, alert, new Date());
  if (!built.ok) throw new Error(`${name}: ${built.error}`);
  return { request: built.value, body: JSON.parse(await built.value.clone().text()) as Json };
}

const strings = (value: unknown, max: number) => typeof value === "string" && value.length > 0 && value.length <= max;

describe("recipes", () => {
  it("Discord (execute webhook): content or embeds; content ≤ 2,000, ≤ 10 embeds, title ≤ 256, description ≤ 4,096, ≤ 25 fields", async () => {
    const { body, request } = await run("discord", discord);
    expect(request.method).toBe("POST");
    expect(strings(body.content, 2_000)).toBe(true);
    const embeds = body.embeds as Json[];
    expect(embeds.length).toBeLessThanOrEqual(10);
    for (const e of embeds) {
      expect(strings(e.title, 256)).toBe(true);
      expect(strings(e.description, 4_096)).toBe(true);
      const fields = e.fields as Json[];
      expect(fields.length).toBeLessThanOrEqual(25);
      for (const f of fields) expect(strings(f.name, 256) && strings(f.value, 1_024)).toBe(true);
    }
    expect(body.content).toContain("NPS 10");
  });

  it("Microsoft Teams (Workflows webhook): a message with one Adaptive Card attachment", async () => {
    const { body } = await run("teams", teams);
    expect(body.type).toBe("message");
    const [attachment] = body.attachments as Json[];
    expect(attachment?.contentType).toBe("application/vnd.microsoft.card.adaptive");
    const card = attachment?.content as Json;
    expect(card).toMatchObject({ type: "AdaptiveCard", version: "1.4" });
    const items = card.body as Json[];
    expect(items.length).toBeGreaterThan(1);
    for (const item of items) expect(typeof item.type).toBe("string");
    expect(JSON.stringify(items)).toContain('"value":"10"');
  });

  it("HubSpot (update a contact by email): PATCH /crm/v3/objects/contacts/{email}?idProperty=email with properties", async () => {
    const { body, request } = await run("hubspot", hubspot, { email: "ada@example.com" });
    expect(request.method).toBe("PATCH");
    expect(request.url).toBe("https://api.hubapi.com/crm/v3/objects/contacts/ada%40example.com?idProperty=email");
    const properties = body.properties as Json;
    expect(Object.keys(properties).length).toBeGreaterThan(0);
    for (const value of Object.values(properties)) expect(["string", "number"]).toContain(typeof value);
    expect(properties.oneflow_last_nps).toBe(10);
  });

  it("Linear (GraphQL issueCreate): a query and variables.input with teamId and title", async () => {
    // Only detractors: the example (NPS 10) is not one; a 3 is.
    const entry = validate(entrySchema, linear);
    if (!entry.ok) throw new Error("linear does not validate");
    const promoter = exampleAlert(new Date());
    expect((await wants({ ...entry.value, name: "linear" }, promoter)).wanted).toBe(false);
    const detractor = { ...promoter, answers: promoter.answers.map((a) => (a.type === "nps" ? { ...a, answer: "3", value: 3 } : a)) };
    const built = await buildRequest({ ...entry.value, name: "linear" }, detractor, new Date());
    if (!built.ok) throw new Error(built.error);
    const body = JSON.parse(await built.value.text()) as { query: string; variables: { input: Json } };
    expect(body.query).toMatch(/issueCreate\(input: \$input\)/);
    expect(strings(body.variables.input.teamId, 100)).toBe(true);
    expect(body.variables.input.title).toMatch(/^Detractor \(NPS 3\) on /);
    expect(strings(body.variables.input.description, 100_000)).toBe(true);
  });

  it("Intercom (submit a data event): event_name, created_at in unix seconds, user_id; metadata ≤ 10 keys", async () => {
    const { body } = await run("intercom", intercom);
    expect(strings(body.event_name, 255)).toBe(true);
    expect(Number.isInteger(body.created_at)).toBe(true);
    expect(body.created_at).toBe(Math.floor(Date.parse("2022-09-30T03:26:24.894Z") / 1000));
    expect(strings(body.user_id, 255)).toBe(true);
    expect(Object.keys(body.metadata as Json).length).toBeLessThanOrEqual(10);
  });

  it("docs/recipes.md shows each recipe as the file holds it", () => {
    for (const recipe of [discord, teams, hubspot, linear, intercom]) expect(recipesDoc).toContain(JSON.stringify(recipe, null, 2));
  });
});
