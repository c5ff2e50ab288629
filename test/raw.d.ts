/** Vite's `?raw` imports: a file's text (the recipes test reads docs/recipes.md so). */
declare module "*?raw" {
  const content: string;
  export default content;
}
