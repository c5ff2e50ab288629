// Baseline "floor-d1": parses the JSON and inserts one row into D1. The storage floor.
export default {
  async fetch(request, env) {
    const text = await request.text();
    const { alert_id } = JSON.parse(text);
    await env.DB.prepare("INSERT INTO floor (alert_id, payload) VALUES (?1, ?2)").bind(alert_id, text).run();
    return new Response('{"ok":true}', { headers: { "content-type": "application/json" } });
  },
};
