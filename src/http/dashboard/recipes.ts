/**
 * The shipped recipes (examples/recipes), bundled, as the Add form's fields: what *Start from a
 * recipe* loads, unescaped (a transform is shown as JSONata, not as the JSON string it is
 * stored in), with headers one `Name: value` a line as the form takes them.
 */
import discord from "../../../examples/recipes/discord.json";
import hubspot from "../../../examples/recipes/hubspot.json";
import intercom from "../../../examples/recipes/intercom.json";
import linear from "../../../examples/recipes/linear.json";
import teams from "../../../examples/recipes/teams.json";

interface Recipe {
  url: string;
  format: string;
  transform?: string;
  method?: string;
  path?: string;
  headers?: Record<string, string>;
  filter?: { expression?: string; score?: { type: string; min: number; max: number } };
}

export const RECIPES: Record<string, Recipe> = { discord, hubspot, intercom, linear, teams };

/** A recipe as the form's fields (the names `entryOfForm` reads), or undefined for an unknown name. */
export function recipeFields(name: string): Record<string, string> | undefined {
  const recipe = Object.hasOwn(RECIPES, name) ? RECIPES[name] : undefined;
  if (recipe === undefined) return undefined;
  const fields: Record<string, string> = { name, url: recipe.url, format: recipe.format, enabled: "on" };
  if (recipe.transform !== undefined) fields.transform = recipe.transform;
  if (recipe.method !== undefined) fields.method = recipe.method;
  if (recipe.path !== undefined) fields.path = recipe.path;
  if (recipe.headers !== undefined) fields.headers = Object.entries(recipe.headers).map(([k, v]) => `${k}: ${v}`).join("\n");
  if (recipe.filter?.expression !== undefined) fields.expression = recipe.filter.expression;
  if (recipe.filter?.score !== undefined) {
    fields.score_type = recipe.filter.score.type;
    fields.score_min = String(recipe.filter.score.min);
    fields.score_max = String(recipe.filter.score.max);
  }
  return fields;
}
