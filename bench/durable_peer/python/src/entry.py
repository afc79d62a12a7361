"""The same Durable Object as bench/durable_peer/worker.mjs, in Python."""

import time
from urllib.parse import parse_qs, urlparse

from js import WebSocketPair
from workers import DurableObject, Response, WorkerEntrypoint


class Bench(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        self.n = 0
        ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v TEXT)")

    def inc(self):
        self.n += 1
        return self.n

    def sqlOps(self, n):
        sql = self.ctx.storage.sql
        for i in range(n):
            sql.exec("INSERT INTO t (v) VALUES (?)", f"value-{i}")
            sql.exec("SELECT v FROM t WHERE id = ?", i + 1).toArray()
        return 2 * n

    def sqlOne(self, i):
        self.ctx.storage.sql.exec("INSERT INTO t (v) VALUES (?)", f"value-{i}")
        return 1

    async def fetch(self, request):
        client, server = WebSocketPair()
        self.ctx.acceptWebSocket(server)
        return Response(None, status=101, web_socket=client)

    def webSocketMessage(self, ws, message):
        ws.send(message)


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = parse_qs(url.query)
        n = int(query.get("n", ["1000"])[0])
        stub = self.env.BENCH.getByName(query.get("o", ["bench"])[0])
        t0 = time.perf_counter()
        if url.path == "/rpc":
            for _ in range(n):
                await stub.inc()
        elif url.path == "/sql":
            await stub.sqlOps(n)
        elif url.path == "/sqlrpc":
            for i in range(n):
                await stub.sqlOne(i)
        elif url.path == "/ws":
            return await stub.fetch(request)
        else:
            return Response("not found", status=404)
        return Response.json({"n": n, "ms": (time.perf_counter() - t0) * 1000})
