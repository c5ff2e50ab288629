// Baseline "floor-200": answers 200 to every POST. The runtime and HTTP floor.
export default {
  async fetch() {
    return new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
  },
};
