"""Routes that misbehave on purpose: each hardening test drives one of them over a real socket."""

import time

from workers import Response, WorkerEntrypoint


async def _note(env, key):
    await env.KV.put(key, "ran")


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        parts = request.url.split("?", 1)[0].split("/", 3)[3].split("/")
        route = parts[0]
        if route == "kv" and request.method == "PUT":
            await self.env.KV.put(parts[1], await request.bytes())
            return Response("stored", status=201)
        if route == "kv":
            value = await self.env.KV.get(parts[1])
            return Response("missing", status=404) if value is None else Response(value)
        if route == "r2" and request.method == "PUT":
            await self.env.BUCKET.put(parts[1], await request.bytes())
            return Response("stored", status=201)
        if route == "r2":
            obj = await self.env.BUCKET.get(parts[1])
            return Response("missing", status=404) if obj is None else Response(await obj.bytes())
        if route == "stream-fails":

            async def body():
                yield "first chunk\n"
                raise RuntimeError("the stream broke")

            return Response(body())
        if route == "bad-header":
            self.ctx.waitUntil(_note(self.env, "bad-header-wait-until"))
            try:
                return Response("h", headers={"x-v": "\u65e5"})
            except TypeError as exc:
                await self.env.KV.put("bad-header-error", f"{type(exc).__name__}: {exc}")
                raise
        if route == "spin":
            while True:
                pass
        if route == "spin-swallow":
            while True:
                try:
                    while True:
                        pass
                except Exception:  # noqa: BLE001 - a worker that swallows errors must still be stopped
                    pass
        if route == "busy":
            deadline = time.thread_time() + float(parts[1]) / 1000
            while time.thread_time() < deadline:
                pass
            return Response("done")
        return Response("ok")
