import datetime

from helpers import WHO
from workers import Response, WorkerEntrypoint

CALLS = []


class Point:
    def __init__(self, x, y):
        self.x = x
        self.y = y


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(f"callee saw {request.method} {request.url} x-from={request.headers.get('x-from')} {WHO}")

    async def add(self, a, b):
        return a + b

    def sync_double(self, value):
        return value * 2

    async def word(self):
        return self.env.SECRET_WORD

    async def echo(self, value):
        return value

    async def mutate(self, items):
        items.append("callee was here")
        CALLS.append(items)
        return len(items)

    async def point(self):
        return Point(1, 2)

    async def pair(self):
        return (1, 2)

    async def boom(self):
        raise ValueError("the callee failed")

    async def call_back(self, fn, value):
        return await fn(value + 1)

    async def when(self):
        return datetime.datetime(2024, 1, 2, 3, 4, 5, tzinfo=datetime.UTC)

    async def respond(self):
        return Response("made by the callee", status=201, headers={"x-made": "yes"})

    async def helpers_name(self):
        return WHO

    async def props(self):
        return self.ctx.props


class AdminApi(WorkerEntrypoint):
    async def fetch(self, request):
        return Response("admin fetch")

    async def stats(self):
        return {"calls": len(CALLS), "env_word": self.env.SECRET_WORD, "props": self.ctx.props}


class NotExported:
    pass
