"""A worker for the harness tests: each path exercises one thing the harness must get right."""

import asyncio
import json
from urllib.parse import parse_qs, urlparse

from state import events
from workers import Response, WorkerEntrypoint, fetch


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        path = url.path
        if path == "/" or path.startswith("/api/"):
            return Response(f"{self.env.GREETING} from {path}")
        if path == "/echo":
            return Response.json(
                {
                    "method": request.method,
                    "url": request.url,
                    "headers": dict(request.headers.items()),
                    "body": await request.text(),
                    "colo": (request.cf or {}).get("colo"),
                }
            )
        if path == "/boom":
            raise RuntimeError("boom from the worker")
        if path == "/later":
            delay = float(query.get("delay", "0.05"))

            async def later():
                await asyncio.sleep(delay)
                events.append(f"later:{query.get('tag', '')}")

            self.ctx.waitUntil(later())
            return Response("scheduled for later")
        if path == "/later-fails":

            async def fails():
                raise ValueError("waitUntil work failed")

            self.ctx.waitUntil(fails())
            return Response("ok")
        if path == "/events":
            return Response.json(events)
        if path == "/self":
            # A subrequest to this worker's own origin (as the Whisper example fetches its audio).
            res = await fetch(f"{url.scheme}://{url.netloc}/echo", method="POST", body="from myself")
            return Response(await res.text(), status=res.status)
        if path == "/proxy":
            res = await fetch(query["url"])
            return Response(await res.text(), status=res.status, headers={"x-upstream-status": str(res.status)})
        if path == "/kv":
            if request.method == "PUT":
                await self.env.KV.put(query["key"], await request.text())
                return Response("stored", status=201)
            value = await self.env.KV.get(query["key"])
            return Response(value if value is not None else "missing", status=200 if value is not None else 404)
        if path == "/env":
            return Response.json(
                {name: _plain(getattr(self.env, name)) for name in query.get("names", "").split(",") if name}
            )
        if path == "/stream":

            async def chunks():
                for i in range(3):
                    await asyncio.sleep(0)
                    yield f"chunk{i};"

            return Response(chunks(), headers={"content-type": "text/plain"})
        if path == "/ai":
            result = await self.env.AI.run(
                query.get("model", "@cf/openai/whisper-tiny-en"), {"audio": list(await request.bytes())}
            )
            return Response.json(result)
        return Response("not found", status=404)

    async def scheduled(self, controller, env, ctx):
        events.append(f"cron:{controller.cron}:{int(controller.scheduledTime)}")
        if controller.cron == "fail":
            raise RuntimeError("the cron failed")
        if controller.cron == "no-retry":
            controller.noRetry()

    async def queue(self, batch, env, ctx):
        for message in batch.messages:
            events.append(f"queue:{batch.queue}:{message.id}:{json.dumps(message.body)}")
            action = message.body.get("do") if isinstance(message.body, dict) else "ack"
            if action == "ack":
                message.ack()
            elif action == "retry":
                message.retry(delaySeconds=message.body.get("delay"))
            elif action == "ack-all":
                batch.ackAll()
            elif action == "retry-all":
                batch.retryAll(delaySeconds=7)
            elif action == "fail":
                raise RuntimeError("the queue handler failed")


def _plain(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return repr(value)
