"""A workflow for the crash-safety test: four steps that log when they start, a sleep, an event."""

import asyncio
import os
from urllib.parse import parse_qs, urlparse

from workers import Response, WorkerEntrypoint, WorkflowEntrypoint

STEPS = 4


def note(log_dir, instance_id, line):
    fd = os.open(os.path.join(log_dir, instance_id + ".log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


class Chain(WorkflowEntrypoint):
    async def run(self, event, step):
        me = event["instanceId"]
        log_dir = self.env.LOG_DIR
        total = 0
        for i in range(STEPS):

            async def body(ctx, i=i):
                note(log_dir, me, f"start s{i} {os.getpid()}")
                await asyncio.sleep(0.02)
                return i * 10

            total += await step.do(f"s{i}", body)
            if i == 1:
                await step.sleep("nap", 30)
        go = await step.wait_for_event("go", "go", timeout="1 hour")
        return {"total": total, "go": go["payload"]}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        url = urlparse(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path == "/create":
            instance = await self.env.CHAIN.create(id=query["id"])
            return Response(instance.id)
        if url.path == "/event":
            instance = await self.env.CHAIN.get(query["id"])
            await instance.send_event(type="go", payload={"n": query["id"]})
            return Response("sent")
        if url.path == "/status":
            instance = await self.env.CHAIN.get(query["id"])
            return Response.json(await instance.status())
        return Response("not found", status=404)
