"""A small Python Worker showing what flarelet runs unchanged: vars, JSON, waitUntil, a cron, assets.

Routes:
  GET  /                 "Hello, world!" (GREETING from [vars]; ?name= to change who)
  POST /echo             echoes a JSON body back, with the request's content-type
  GET  /visits           how many visits the background (waitUntil) counter has recorded
  GET  /ticks            how many times the cron trigger has run
  GET  /about            served by the ASSETS binding from public/about.txt
  GET  /hello.txt        served straight from public/ before the worker runs
"""

from urllib.parse import parse_qs, urlparse

from counters import counters
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        if url.path == "/":
            who = parse_qs(url.query).get("name", ["world"])[0]
            # Runs after the response is sent: the visitor does not wait for it.
            self.ctx.waitUntil(counters.record_visit(who))
            return Response(f"{self.env.GREETING}, {who}!")
        if url.path == "/echo" and request.method == "POST":
            data = await request.json()
            return Response.json({"received": data, "max_items": self.env.LIMITS["max_items"]})
        if url.path == "/visits":
            return Response.json({"visits": counters.visits, "last": counters.last_visitor})
        if url.path == "/ticks":
            return Response.json({"ticks": counters.ticks, "last_cron": counters.last_cron})
        if url.path == "/about":
            return await self.env.ASSETS.fetch("/about.txt")
        return Response("Not found", status=404)

    async def scheduled(self, controller, env, ctx):
        counters.tick(controller.cron)
        print(f"cron {controller.cron} ran (tick {counters.ticks})")
