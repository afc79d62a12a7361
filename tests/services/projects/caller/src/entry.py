from urllib.parse import urlparse

from helpers import WHO
from workers import Response, WorkerEntrypoint


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = urlparse(request.url).path
        if path == "/who":
            return Response(WHO)
        if path == "/proxy":
            inner = await self.env.CALLEE.fetch("https://callee.internal/hello?x=1", headers={"x-from": "caller"})
            return Response(f"{inner.status} {await inner.text()}")
        if path == "/add":
            return Response.json({"sum": await self.env.CALLEE.add(2, 3)})
        if path == "/missing":
            inner = await self.env.MISSING.fetch("https://x/")
            return Response(await inner.text(), status=inner.status)
        return Response("caller", status=404)
