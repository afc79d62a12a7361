"""Tests for the storage worker (KV, D1, R2, Queues), in process with flarelet's pytest plugin.

Every test gets empty in-memory storage; `worker.apply_d1_migrations("DB")` creates the tables
from migrations/, as `flarelet d1 migrations apply DB` does for the dev server.
"""

import asyncio

import pytest


@pytest.fixture
async def app(worker):
    assert await worker.apply_d1_migrations("DB") == ["0001_notes.sql"]
    return worker


async def test_kv_round_trip(app, env):
    resp = await app.fetch("/kv/greeting", method="PUT", body="hello")
    assert resp.status == 201
    assert await env.KV.get("greeting") == "hello"  # the test sees the worker's binding
    resp = await app.fetch("/kv/greeting")
    assert await resp.text() == "hello"
    assert resp.headers.get("x-metadata") == '{"length": 5}'
    assert (await app.fetch("/kv/missing")).status == 404


async def test_notes_in_d1(app, env):
    for text in ("first", "second"):
        assert (await app.fetch("/notes", method="POST", json={"text": text})).status == 201
    assert [n["text"] for n in await (await app.fetch("/notes")).json()] == ["first", "second"]
    row = await env.DB.prepare("SELECT count(*) AS n FROM notes").first()
    assert row["n"] == 2


async def test_r2_files_with_ranges(app):
    put = await app.fetch("/files/a/b.txt", method="PUT", body=b"0123456789", headers={"content-type": "text/plain"})
    assert (await put.json())["size"] == 10
    part = await app.fetch("/files/a/b.txt", headers={"range": "bytes=2-5"})
    assert (part.status, await part.bytes(), part.headers.get("content-range")) == (206, b"2345", "bytes 2-5/10")
    listing = await (await app.fetch("/files?delimiter=/")).json()
    assert listing["prefixes"] == ["a/"]


async def test_queue_handler_directly(app):
    result = await app.queue(
        "jobs", bodies=[{"id": "j1", "task": "upper", "text": "shout"}, {"id": "j2", "task": "fail"}]
    )
    assert result.acked("message-0") and result.retried("message-1")
    assert await (await app.fetch("/jobs/j1")).json() == {
        "status": "done",
        "task": "upper",
        "result": "SHOUT",
        "attempts": 1,
    }
    dead = await app.queue("jobs-dlq", [{"body": {"id": "j2", "task": "fail"}, "attempts": 3}])
    assert dead.explicit_acks == ["message-0"]
    assert await (await app.fetch("/jobs/j2")).json() == {"status": "dead", "task": "fail", "attempts": 3}


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_queue_end_to_end_through_the_consumer(app):
    # JOBS.send() in the worker, then the real local consumer delivers the batch (max_batch_timeout = 1 s).
    assert (await app.fetch("/jobs", method="POST", json={"id": "j3", "task": "upper", "text": "later"})).status == 202
    for _ in range(100):
        status = await (await app.fetch("/jobs/j3")).json()
        if status["status"] != "pending":
            break
        await asyncio.sleep(0.1)
    assert status == {"status": "done", "task": "upper", "result": "LATER", "attempts": 1}
