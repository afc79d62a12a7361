"""The execution context: waitUntil runs after the response, failures are logged, not sent."""

from __future__ import annotations

import logging
import time

import httpx

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.request import Request

WORKER = """
import asyncio
from workers import WorkerEntrypoint, Response, wait_until

events = []

async def slow(tag):
    await asyncio.sleep(0.3)
    events.append(tag)

async def broken():
    raise ValueError("background failure")

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.rsplit("/", 1)[1]
        if path == "slow":
            self.ctx.waitUntil(slow("camel"))
            self.ctx.wait_until(slow("snake"))
            wait_until(slow("module"))
            events.append("handler-done")
            return Response("sent before the background work finishes")
        if path == "broken":
            self.ctx.waitUntil(broken())
            return Response("still fine")
        if path == "pass":
            self.ctx.passThroughOnException()
            return Response("accepted")
        if path == "events":
            return Response.json(events)
        if path == "bad-arg":
            self.ctx.waitUntil(42)
        return Response("?")
"""


def test_wait_until_runs_after_the_response(make_worker, run_worker):
    with run_worker(make_worker(WORKER)) as server:
        r = httpx.get(server.url + "/slow")
        assert r.status_code == 200
        assert httpx.get(server.url + "/events").json() == ["handler-done"]  # background work not done yet
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and len(httpx.get(server.url + "/events").json()) < 4:
            time.sleep(0.05)
        assert sorted(httpx.get(server.url + "/events").json()) == ["camel", "handler-done", "module", "snake"]


def test_wait_until_exceptions_are_logged_not_sent(make_worker, run_worker, caplog):
    with caplog.at_level(logging.ERROR, logger="flarelet"):
        with run_worker(make_worker(WORKER)) as server:
            r = httpx.get(server.url + "/broken")
            assert (r.status_code, r.text) == (200, "still fine")
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and "background failure" not in caplog.text:
                time.sleep(0.05)
            assert httpx.get(server.url + "/events").status_code == 200  # still serving
    assert "Uncaught exception in waitUntil()" in caplog.text and "ValueError: background failure" in caplog.text


def test_pass_through_on_exception_is_accepted(make_worker, run_worker):
    with run_worker(make_worker(WORKER)) as server:
        assert httpx.get(server.url + "/pass").text == "accepted"
        r = httpx.get(server.url + "/bad-arg")
        assert r.status_code == 500 and "waitUntil() expects a coroutine" in r.text


async def test_dispatcher_waits_for_background_work(make_worker):
    host = WorkerHost.from_config(make_worker(WORKER), raise_on_load_error=True)
    response = await host.dispatcher.fetch(Request("http://localhost/slow"))
    assert response.status == 200
    events = host.dispatcher.worker.module.events
    assert events == ["handler-done"]
    await host.dispatcher.wait_for_background(timeout=5)
    assert sorted(events) == ["camel", "handler-done", "module", "snake"]


async def test_scheduled_outcome_includes_wait_until_failures(make_worker):
    root = make_worker("""
        from workers import WorkerEntrypoint

        async def fail():
            raise RuntimeError("late")

        class Default(WorkerEntrypoint):
            async def scheduled(self, controller, env, ctx):
                ctx.waitUntil(fail())
    """)
    host = WorkerHost.from_config(root, raise_on_load_error=True)
    assert (await host.scheduled("* * * * *"))["outcome"] == "exception"
