from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint


class Chain(WorkflowEntrypoint):
    async def run(self, event, step):
        total = 0
        for i in range(3):
            total += await step.do(f"s{i}", lambda ctx, i=i: i)
        return total


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        n = int(parse_qs(url.query).get("n", ["0"])[0])
        if url.path == "/rpc":
            total = 0
            for i in range(n):
                total += await self.env.B.add(i, 1)
            return Response(str(total))
        if url.path == "/fetch":
            for _ in range(n):
                await (await self.env.B.fetch("http://b/")).text()
            return Response("ok")
        if url.path == "/create":
            return Response.json([(await self.env.WF.create()).id for _ in range(n)])
        if url.path == "/status":
            instance = await self.env.WF.get(parse_qs(url.query)["id"][0])
            return Response.json(await instance.status())
        return Response("?", status=404)
