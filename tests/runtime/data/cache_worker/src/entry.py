"""Cache API test worker: the docs' cache-aside pattern, plus routes that drive put/match/delete."""

from js import caches
from workers import Request, Response, WorkerEntrypoint


async def describe(resp):
    if resp is None:
        return None
    return {"status": resp.status, "headers": dict(resp.headers.items()), "body": await resp.text()}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        if path.startswith("page"):  # the documented pattern: match, else build, put in waitUntil, return
            cache = caches.default
            response = await cache.match(request)
            if response is None:
                response = Response(f"rendered {path}", headers={"cache-control": "s-maxage=60", "x-source": "origin"})
                self.ctx.waitUntil(cache.put(request, response.clone()))
            return response
        op = await request.json()
        cache = caches.default if op.get("cache") is None else await caches.open(op["cache"])
        target = Request(op["url"], method=op.get("method", "GET"), headers=op.get("request_headers", {}))
        try:
            if path == "put":
                stored = Response(op.get("body", "body"), status=op.get("status", 200), headers=op.get("headers", {}))
                await cache.put(target, stored)
                return Response.json({"ok": True})
            if path == "match":
                found = await cache.match(target, {"ignoreMethod": op.get("ignoreMethod", False)})
                return Response.json({"ok": True, "response": await describe(found)})
            if path == "delete":
                return Response.json(
                    {"ok": True, "deleted": await cache.delete(target, ignoreMethod=op.get("ignoreMethod", False))}
                )
        except TypeError as exc:
            return Response.json({"ok": False, "error": f"TypeError: {exc}"})
        return Response("unknown op", status=404)
