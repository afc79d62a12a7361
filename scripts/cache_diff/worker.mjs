async function describe(r) {
  if (!r) return null;
  return { status: r.status, headers: Object.fromEntries(r.headers), body: await r.text() };
}
export default {
  async fetch(request) {
    const path = new URL(request.url).pathname.slice(1);
    const op = await request.json();
    const cache = op.cache == null ? caches.default : await caches.open(op.cache);
    const target = new Request(op.url, { method: op.method ?? "GET", headers: op.request_headers ?? {} });
    try {
      if (path === "put") {
        await cache.put(target, new Response(op.body ?? "body", { status: op.status ?? 200, headers: op.headers ?? {} }));
        return Response.json({ ok: true });
      }
      if (path === "match") {
        const found = await cache.match(target, { ignoreMethod: op.ignoreMethod ?? false });
        return Response.json({ ok: true, response: await describe(found) });
      }
      if (path === "delete") {
        return Response.json({ ok: true, deleted: await cache.delete(target, { ignoreMethod: op.ignoreMethod ?? false }) });
      }
    } catch (e) {
      return Response.json({ ok: false, error: `${e.name}: ${e.message}` });
    }
    return new Response("unknown", { status: 404 });
  },
};
