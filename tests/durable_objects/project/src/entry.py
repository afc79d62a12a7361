import asyncio

from js import WebSocketPair
from workers import DurableObject, Response, WorkerEntrypoint

CONSTRUCTED = []


class Thing:
    pass


class Counter(DurableObject):
    def __init__(self, ctx, env):
        super().__init__(ctx, env)
        CONSTRUCTED.append(ctx.id.toString())
        self.ready = False
        self.alarms = []
        self.fail_alarms = 0
        ctx.blockConcurrencyWhile(self.setup)

    async def setup(self):
        await asyncio.sleep(0.01)
        self.ready = True

    async def was_ready(self):
        return self.ready

    async def increment(self, by=1):
        value = (await self.ctx.storage.get("count")) or 0
        await self.ctx.storage.put("count", value + by)
        return value + by

    async def slow_increment(self):
        value = (await self.ctx.storage.get("count")) or 0
        await asyncio.sleep(0.01)  # real I/O: other events may run meanwhile
        await self.ctx.storage.put("count", value + 1)
        return value + 1

    async def record(self, i, payload):
        """One acknowledged unit for the crash test: a key-value pair and a SQL row, atomically."""
        self.ctx.storage.sql.exec("CREATE TABLE IF NOT EXISTS log (i INTEGER PRIMARY KEY, payload TEXT)")
        self.ctx.storage.sql.exec("INSERT INTO log (i, payload) VALUES (?, ?)", i, payload)
        await self.ctx.storage.put(f"k{i:08d}", {"i": i, "payload": payload})
        return i

    async def block_forever(self):
        async def wait():
            await asyncio.sleep(3600)

        return await self.ctx.blockConcurrencyWhile(wait)

    async def echo(self, value):
        return value

    async def mutate(self, items):
        items.append("from the object")
        return items

    def sync_method(self, a, b):
        return a + b

    async def give_tuple(self):
        return (1, 2)

    async def give_thing(self):
        return Thing()

    async def fail(self, message):
        raise ValueError(message)

    async def whoami(self):
        return {"id": self.ctx.id.toString(), "name": self.ctx.id.name, "object": id(self)}

    async def sql(self, query, *args):
        cursor = self.ctx.storage.sql.exec(query, *args)
        return {"rows": [dict(r) for r in cursor], "columns": cursor.columnNames, "written": cursor.rowsWritten}

    async def set_alarm_in(self, ms, fail_times=0):
        import time

        self.fail_alarms = fail_times
        await self.ctx.storage.setAlarm(time.time() * 1000 + ms)

    async def alarm(self, info):
        self.alarms.append(dict(info))
        if self.fail_alarms:
            self.fail_alarms -= 1
            raise RuntimeError("alarm failed on purpose")

    async def webSocketMessage(self, ws, message):
        if message.startswith("slow"):
            await asyncio.sleep(0.05)  # real I/O: later messages may be handled meanwhile
        if message == "fail":
            raise RuntimeError("handler failed on purpose")
        await self.ctx.storage.put("last", message)
        ws.send(f"hib:{message}")

    async def alarm_calls(self):
        return self.alarms

    async def fetch(self, request):
        if request.headers.get("upgrade") == "websocket" and request.url.endswith("/hibernate"):
            client, server = WebSocketPair()
            self.ctx.acceptWebSocket(server, ["hib"])
            return Response(None, status=101, web_socket=client)
        if request.headers.get("upgrade") == "websocket":
            client, server = WebSocketPair()
            server.accept()

            def on_message(event):
                if event.data == "close":
                    server.close(4000, "asked to")
                else:
                    server.send(f"echo:{event.data}")

            server.addEventListener("message", on_message)
            return Response(None, status=101, web_socket=client)
        count = await self.increment()
        return Response(f"{request.method} {request.url} count={count}")


class KvOnly(DurableObject):
    async def put(self, key, value):
        await self.ctx.storage.put(key, value)

    async def get(self, key):
        return await self.ctx.storage.get(key)

    async def use_sql(self):
        return self.ctx.storage.sql.exec("SELECT 1").toArray()

    async def big(self, size):
        await self.ctx.storage.put("big", "x" * size)


class NewName(DurableObject):
    async def remember(self, value):
        await self.ctx.storage.put("v", value)

    async def recall(self):
        return await self.ctx.storage.get("v")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        from urllib.parse import urlparse

        path = urlparse(request.url).path
        if path.startswith("/counter/"):
            stub = self.env.COUNTER.getByName(path.split("/")[2])
            return await stub.fetch(request)
        if path == "/outbound":
            target = request.headers.get("x-target")
            resp = await __import__("workers").fetch(target, headers={"Upgrade": "websocket"})
            ws = resp.web_socket
            ws.accept()
            got = asyncio.get_running_loop().create_future()
            ws.addEventListener("message", lambda event: got.done() or got.set_result(event.data))
            ws.send("hello upstream")
            reply = await asyncio.wait_for(got, 5)
            ws.close(1000, "done")
            return Response(f"upstream said {reply}")
        return Response("not found", status=404)
