"""``scheduled``, ``queue`` and ``waitUntil`` through the harness (Miniflare's Fetcher results)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from flarelet.testing import QueueResult, ScheduledResult, Worker


async def events(worker: Worker) -> list[str]:
    return await (await worker.fetch("/events")).json()


# -- scheduled ----------------------------------------------------------------------------------


async def test_scheduled_runs_the_handler_with_cron_and_time(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        result = await worker.scheduled(cron="0 * * * *", scheduled_time=dt.datetime(2025, 1, 1, tzinfo=dt.UTC))
        assert result == ScheduledResult("ok", False)
        assert result.ok and not result.noRetry
        assert await events(worker) == ["cron:0 * * * *:1735689600000"]


async def test_scheduled_default_time_is_now(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        before = dt.datetime.now(dt.UTC).timestamp() * 1000
        await worker.scheduled(cron="x")
        stamp = int((await events(worker))[0].rsplit(":", 1)[1])
        assert before - 1 <= stamp <= before + 5000


async def test_scheduled_failure_and_no_retry(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Worker.from_config(project) as worker:
        failed = await worker.scheduled(cron="fail")
        assert (failed.outcome, failed.ok) == ("exception", False)
        assert "the cron failed" in caplog.text
        assert (await worker.scheduled(cron="no-retry")) == ScheduledResult("ok", True)


# -- queue --------------------------------------------------------------------------------------


async def test_queue_reports_acks_and_retries(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        result = await worker.queue(
            "jobs",
            [
                {"id": "a", "body": {"do": "ack"}},
                {"id": "b", "body": {"do": "retry", "delay": 30}},
                {"id": "c", "body": {"do": "retry"}, "attempts": 3},
                {"id": "d", "body": {"do": "nothing"}},
            ],
        )
        assert result == QueueResult(
            "ok",
            ack_all=False,
            retry_batch={"retry": False},
            explicit_acks=["a"],
            retry_messages=[{"msgId": "b", "delaySeconds": 30}, {"msgId": "c"}],
        )
        assert result.acked("a") and not result.acked("b") and not result.acked("d")
        assert result.retried("b") and result.retried("c") and not result.retried("a")
        assert result.explicitAcks == ["a"] and result.retryMessages[0]["msgId"] == "b"
        assert (await events(worker))[0] == 'queue:jobs:a:{"do": "ack"}'


async def test_queue_bodies_get_ids(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        result = await worker.queue("jobs", bodies=[{"do": "ack"}, {"do": "ack"}])
        assert result.explicit_acks == ["message-0", "message-1"]
        result = await worker.queue("jobs", bodies=[{"do": "ack-all"}])
        assert result.ack_all and result.ackAll and result.acked("message-0")
        result = await worker.queue("jobs", bodies=[{"do": "retry-all"}])
        assert result.retry_batch == {"retry": True, "delaySeconds": 7} and result.retried("anything")


async def test_queue_handler_failure(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        result = await worker.queue("jobs", bodies=[{"do": "fail"}])
        assert (result.outcome, result.ok) == ("exception", False)


async def test_queue_argument_errors(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        with pytest.raises(TypeError, match="no 'body' key"):
            await worker.queue("jobs", [{"do": "ack"}])
        with pytest.raises(TypeError, match="either messages"):
            await worker.queue("jobs", [{"body": 1}], bodies=[1])
        with pytest.raises(TypeError, match="either messages"):
            await worker.queue("jobs")


# -- waitUntil ----------------------------------------------------------------------------------


async def test_fetch_waits_for_wait_until_by_default(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        await worker.fetch("/later?tag=one&delay=0.1")
        assert worker.pending_wait_until == 0
        assert await events(worker) == ["later:one"]


async def test_wait_until_false_then_wait_until_done(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/later?tag=two&delay=0.2", wait_until=False)
        assert await resp.text() == "scheduled for later"
        assert worker.pending_wait_until == 1
        assert await events(worker) == []
        await worker.wait_until_done()
        assert await events(worker) == ["later:two"]


async def test_worker_wide_wait_until_false(project: Path) -> None:
    async with Worker.from_config(project, wait_until=False) as worker:
        await worker.fetch("/later?delay=0.2")
        assert worker.pending_wait_until == 1
        await worker.fetch("/later?delay=0.2", wait_until=True)  # a call may still ask to wait
        assert worker.pending_wait_until == 0


async def test_wait_until_that_never_ends_times_out(project: Path) -> None:
    worker = Worker.from_config(project, wait_until_timeout=0.2)
    with pytest.raises(TimeoutError, match="waitUntil"):
        await worker.fetch("/later?delay=60")
    with pytest.raises(TimeoutError):
        await worker.wait_until_done(timeout=0.05)
    assert worker.pending_wait_until == 1
    await worker.aclose(timeout=0)  # cancels it
    assert worker.pending_wait_until == 0


async def test_failing_wait_until_is_logged_not_raised(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/later-fails")
        assert resp.status == 200
    assert "waitUntil work failed" in caplog.text


async def test_execution_context_by_hand(project: Path) -> None:
    """``createExecutionContext`` / ``waitOnExecutionContext`` for calling the dispatcher directly."""
    async with Worker.from_config(project) as worker:
        ctx = worker.create_execution_context()
        done: list[int] = []

        async def work() -> None:
            await asyncio.sleep(0.01)
            done.append(1)

        async def broken() -> None:
            raise KeyError("nope")

        ctx.waitUntil(work())
        ctx.waitUntil(broken())
        errors = await worker.wait_on_execution_context(ctx)
        assert done == [1]
        assert [type(e) for e in errors] == [KeyError]
