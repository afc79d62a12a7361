"""Tests for the hello worker, in process, with flarelet's pytest plugin.

The `worker` fixture is this project's worker (the wrangler.toml above this folder), started
fresh for each test: `await worker.fetch(...)` sends it a request without a socket,
`worker.env` holds its bindings. Run them with `python -m pytest examples/hello`.
"""

from pathlib import Path

import pytest

from flarelet.testing import Worker

PROJECT = Path(__file__).resolve().parent.parent


async def test_greets_with_the_configured_greeting(worker):
    resp = await worker.fetch("/?name=Ada")
    assert resp.status == 200
    assert await resp.text() == "Hello, Ada!"


async def test_env_holds_the_vars(env):
    assert env.GREETING == "Hello"
    assert env.LIMITS["max_items"] == 3
    assert env.LIMITS.tags == ["a", "b"]


async def test_echo_round_trips_json(worker):
    resp = await worker.fetch("/echo", method="POST", json={"items": [1, 2]})
    assert resp.status == 200
    assert await resp.json() == {"received": {"items": [1, 2]}, "max_items": 3}


async def test_wait_until_work_is_done_when_fetch_returns(worker):
    await worker.fetch("/?name=Grace")
    resp = await worker.fetch("/visits")
    assert await resp.json() == {"visits": 1, "last": "Grace"}


async def test_wait_until_can_be_awaited_explicitly(worker):
    await worker.fetch("/?name=Linus", wait_until=False)
    assert worker.pending_wait_until == 1  # the visit is still being recorded
    await worker.wait_until_done()
    assert await (await worker.fetch("/visits")).json() == {"visits": 1, "last": "Linus"}


async def test_each_test_gets_a_fresh_worker_module(worker):
    # Module-level state (the visit counter) starts over: the module is imported per Worker.
    assert await (await worker.fetch("/visits")).json() == {"visits": 0, "last": None}


async def test_static_assets_are_served_before_the_worker(worker):
    resp = await worker.fetch("/hello.txt")
    assert resp.status == 200
    assert "static file" in await resp.text()


async def test_assets_binding(worker):
    resp = await worker.fetch("/about")
    assert resp.status == 200
    assert "env.ASSETS.fetch()" in await resp.text()


async def test_cron_trigger(worker):
    result = await worker.scheduled(cron="*/5 * * * *")
    assert result.outcome == "ok"
    assert await (await worker.fetch("/ticks")).json() == {"ticks": 1, "last_cron": "*/5 * * * *"}


async def test_unknown_path_is_404(worker):
    resp = await worker.fetch("/nope")
    assert resp.status == 404


@pytest.mark.flarelet(vars={"GREETING": "Bonjour"})
async def test_vars_from_the_marker(worker):
    assert await (await worker.fetch("/")).text() == "Bonjour, world!"


async def test_override_inside_a_test(worker):
    with worker.override(GREETING="Hej"):
        assert await (await worker.fetch("/?name=Tove")).text() == "Hej, Tove!"
    assert await (await worker.fetch("/?name=Tove")).text() == "Hello, Tove!"


async def test_without_the_fixture():
    # The same harness by hand, for a worker in another folder or with other options.
    async with Worker.from_config(PROJECT, vars={"GREETING": "Hi"}) as worker:
        assert await (await worker.fetch("http://example.com/?name=you")).text() == "Hi, you!"
