"""Workflows: steps, retries, sleeps, events, instance control, persistence (tests/workflows/projects/flows)."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

from flarelet.bindings.workflows.clock import ManualClock
from flarelet.bindings.workflows.errors import WorkflowError
from flarelet.bindings.workflows.step import resolve_config, retry_delay_ms
from flarelet.testing import Worker

FLOWS = Path(__file__).parent / "projects" / "flows"
START = 1_700_000_000.0


def entry():
    return sys.modules["entry"]


@pytest.fixture
async def flows():
    clock = ManualClock(START)
    async with Worker.from_config(FLOWS, clock=clock) as worker:
        yield worker


async def test_steps_sleep_and_event_run_to_completion_on_the_test_clock(flows):
    instance = await flows.env.ORDER.create(id="order-1", params={"qty": 2})
    await instance.send_event(type="approved", payload={"by": "ada"})  # buffered until the instance waits
    status = await flows.run_workflow("ORDER", "order-1")
    assert status["status"] == "complete"
    assert status["output"] == {"total": 6, "note": "attempt 1", "approver": "ada", "type": "approved"}
    assert status["error"] is None
    assert flows.clock.now() >= START + 3600  # the hour of step.sleep passed on the test clock only


async def test_sleep_holds_the_instance_until_time_moves(flows):
    await flows.env.ORDER.create(id="order-2", params={"qty": 1})
    await flows.clock.settle()
    instance = await flows.env.ORDER.get("order-2")
    assert (await instance.status())["status"] == "waiting"
    await flows.advance_time(3599)
    assert "approval_note" not in entry().RUNS["order-2"]
    await flows.advance_time(2)
    assert entry().RUNS["order-2"]["approval_note"] == 1


async def test_wait_for_event_times_out_with_workflow_timeout_error(flows):
    await flows.env.ORDER.create(id="order-3", params={"qty": 1})
    status = await flows.run_workflow("ORDER", "order-3")
    assert status["status"] == "errored"
    assert status["error"] == {"name": "WorkflowTimeoutError", "message": "Execution timed out after 86400000ms"}


async def test_retries_back_off_exponentially_from_the_configured_delay(flows):
    await flows.env.FLAKY.create(id="flaky-1", params={"succeed_on": 3})
    await flows.clock.settle()
    assert entry().RUNS["flaky-1"]["unsteady"] == 1
    await flows.advance_time(9.9)
    assert entry().RUNS["flaky-1"]["unsteady"] == 1
    await flows.advance_time(0.2)  # first retry after 10 s
    assert entry().RUNS["flaky-1"]["unsteady"] == 2
    await flows.advance_time(19.8)
    assert entry().RUNS["flaky-1"]["unsteady"] == 2
    await flows.advance_time(0.3)  # second retry 20 s later (10 * 2**1)
    status = await flows.run_workflow("FLAKY", "flaky-1")
    assert status["output"] == {"attempt": 3}


async def test_retries_exhausted_error_the_instance_with_the_last_error(flows):
    await flows.env.FLAKY.create(id="flaky-2", params={"backoff": "constant"})
    status = await flows.run_workflow("FLAKY", "flaky-2")
    assert status["status"] == "errored"
    assert status["error"]["message"] == "attempt 4 failed"  # 1 attempt + limit 3 retries
    assert entry().RUNS["flaky-2"]["unsteady"] == 4


async def test_non_retryable_error_fails_the_step_at_once(flows):
    await flows.env.FLAKY.create(id="flaky-3", params={"mode": "fatal"})
    status = await flows.run_workflow("FLAKY", "flaky-3")
    assert status["output"] == {"caught": "stop now", "runs": 1}


def test_retry_delays_follow_cloudflare_backoffs():
    assert [retry_delay_ms({"delay": 1000, "backoff": "exponential"}, n) for n in (1, 2, 3)] == [1000, 2000, 4000]
    assert [retry_delay_ms({"delay": "1 second", "backoff": "linear"}, n) for n in (1, 2, 3)] == [1000, 2000, 3000]
    assert retry_delay_ms({"delay": 500, "backoff": "constant"}, 4) == 500


def test_step_config_defaults_are_cloudflares():
    assert resolve_config("x", None) == {
        "retries": {"limit": 5, "delay": 10_000, "backoff": "exponential"},
        "timeout": "10 minutes",
    }


async def test_pause_waits_for_the_running_step_then_resume_goes_on_after_it(flows):
    entry().GATES["gate-1"] = gate = asyncio.Event()
    instance = await flows.env.GATED.create(id="gate-1")
    await asyncio.sleep(0.05)
    await instance.pause()
    assert (await instance.status())["status"] == "waitingForPause"
    gate.set()
    await flows.clock.settle()
    assert (await instance.status())["status"] == "paused"
    await flows.advance_time(600)
    assert "two" not in entry().RUNS["gate-1"]
    await instance.resume()
    status = await flows.run_workflow("GATED", "gate-1")
    assert status["output"] == 2
    assert entry().RUNS["gate-1"] == {"one": 1, "two": 1}  # step one was not run again


async def test_terminate_stops_a_sleeping_instance(flows):
    entry().GATES["gate-2"] = gate = asyncio.Event()
    gate.set()
    instance = await flows.env.GATED.create(id="gate-2")
    await flows.clock.settle()
    await instance.terminate()
    await flows.advance_time(600)
    assert (await instance.status())["status"] == "terminated"
    assert "two" not in entry().RUNS["gate-2"]
    with pytest.raises(WorkflowError, match="instance.invalid_state"):
        await instance.terminate()


async def test_restart_runs_the_instance_again_from_the_top(flows):
    entry().GATES["gate-3"] = gate = asyncio.Event()
    gate.set()
    instance = await flows.env.GATED.create(id="gate-3")
    assert (await flows.run_workflow("GATED", "gate-3"))["output"] == 2
    await instance.restart()
    assert (await flows.run_workflow("GATED", "gate-3"))["output"] == 2
    assert entry().RUNS["gate-3"] == {"one": 2, "two": 2}


async def test_create_batch_get_and_id_errors(flows):
    created = await flows.env.MISC.create_batch([{"id": "b1", "params": {"kind": "a"}}, {"params": {"kind": "b"}}])
    assert created[0].id == "b1" and len(created[1].id) == 36
    assert (await flows.run_workflow("MISC", "b1"))["output"] == "a"
    with pytest.raises(WorkflowError, match="instance.already_exists"):
        await flows.env.MISC.create(id="b1", params={"kind": "a"})
    with pytest.raises(WorkflowError, match="Workflow instance has invalid id"):
        await flows.env.MISC.create(id="-bad id", params={"kind": "a"})
    with pytest.raises(WorkflowError, match="instance.not_found"):
        await flows.env.MISC.get("nope")
    with pytest.raises(WorkflowError, match="at least 1 instance"):
        await flows.env.MISC.create_batch([])


@pytest.mark.parametrize(
    ("kind", "expected"),
    [
        ("js_style", {"status": "complete", "output": 41}),
        ("dag", {"status": "complete", "output": "LR1"}),
        ("raise", {"status": "errored", "error": {"name": "RuntimeError", "message": "run failed"}}),
        (
            "unserialisable",
            {
                "status": "errored",
                "error": {
                    "name": "WorkflowFatalError",
                    "message": 'The execution of the Workflow instance was terminated, as the step "bad" returned a '
                    "value which is not serialisable",
                },
            },
        ),
        (
            "too_many_steps",
            {
                "status": "errored",
                "error": {
                    "name": "WorkflowFatalError",
                    "message": "The limit of 3 steps has been reached. This limit can be changed in your worker "
                    "configuration.",
                },
            },
        ),
        ("sleep_until_past", {"status": "errored"}),
    ],
)
async def test_misc_behaviours_as_cloudflare_reports_them(flows, kind, expected):
    await flows.env.MISC.create(id=f"misc-{kind.replace('_', '-')}", params={"kind": kind})
    status = await flows.run_workflow("MISC", f"misc-{kind.replace('_', '-')}")
    for key, value in expected.items():
        assert status[key] == value


async def test_invalid_step_config_errors_the_instance(flows):
    await flows.env.MISC.create(id="cfg", params={"kind": "bad_config"})
    status = await flows.run_workflow("MISC", "cfg")
    assert status["error"]["name"] == "WorkflowFatalError"
    assert status["error"]["message"].startswith('Step config for "x" is in a invalid format')


async def test_step_timeout_fails_the_attempt_with_workflow_timeout_error():
    async with Worker.from_config(FLOWS) as worker:  # the real clock: the step really runs 200 ms
        await worker.env.MISC.create(id="slow", params={"kind": "timeout"})
        status = await worker.run_workflow("MISC", "slow", timeout=10)
    assert status["error"] == {"name": "WorkflowTimeoutError", "message": "Execution timed out after 200ms"}


async def test_a_running_workflow_survives_a_restart_and_resumes_after_its_last_step(tmp_path):
    async with Worker.from_config(FLOWS, clock=ManualClock(START), persist_to=tmp_path) as worker:
        await worker.env.ORDER.create(id="durable", params={"qty": 5})
        await worker.clock.settle()
        assert (await (await worker.env.ORDER.get("durable")).status())["status"] == "waiting"
    assert entry().RUNS["durable"] == {"price": 1}
    async with Worker.from_config(FLOWS, clock=ManualClock(START + 10), persist_to=tmp_path) as worker:
        await worker.start()
        instance = await worker.env.ORDER.get("durable")
        await instance.send_event(type="approved", payload={"by": "grace"})
        status = await worker.run_workflow("ORDER", "durable")
        assert status["output"]["total"] == 15 and status["output"]["approver"] == "grace"
        # a fresh module: "price" did not run in this process; its stored result was used
        assert entry().RUNS["durable"] == {"approval_note": 1}


async def test_script_name_runs_the_class_of_another_worker_sharing_its_instances(tmp_path):
    starter = Path(__file__).parent / "projects" / "starter"
    async with Worker.from_config(starter, workers=[FLOWS], clock=ManualClock(START), persist_to=tmp_path) as worker:
        instance_id = await (await worker.fetch("/")).text()
        flows_env = worker.peer("flows").env
        await (await flows_env.ORDER.get(instance_id)).send_event(type="approved", payload={"by": "lin"})
        status = await worker.run_workflow("REMOTE_ORDER", instance_id)
        assert status["output"] == {"total": 12, "note": "attempt 1", "approver": "lin", "type": "approved"}
        assert (await (await flows_env.ORDER.get(instance_id)).status())["status"] == "complete"


LIMITED = """
name = "limited"
main = "src/entry.py"

[flarelet.workflows]
batch_size = 2
instance_id_length = 5
step_name_length = 4
value_bytes = 60

[[workflows]]
name = "lim"
binding = "LIM"
class_name = "Lim"
"""

LIMITED_CODE = """
from workers import WorkerEntrypoint, WorkflowEntrypoint


class Lim(WorkflowEntrypoint):
    async def run(self, event, step):
        return await step.do(event.payload["name"], lambda ctx: "x" * event.payload["size"])


class Default(WorkerEntrypoint):
    pass
"""


@pytest.fixture
def limited(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "entry.py").write_text(LIMITED_CODE)
    (tmp_path / "wrangler.toml").write_text(LIMITED)
    return tmp_path


async def test_limits_are_configurable_and_enforced(limited):
    async with Worker.from_config(limited, clock=ManualClock(START)) as worker:
        wf = worker.env.LIM
        with pytest.raises(WorkflowError, match="at most 2 instances"):
            await wf.create_batch([{"params": {}}] * 3)
        with pytest.raises(WorkflowError, match="invalid id"):
            await wf.create(id="abcdef", params={"name": "a", "size": 1})
        await wf.create(id="ok", params={"name": "abc", "size": 10})
        assert (await worker.run_workflow("LIM", "ok"))["output"] == "x" * 10
        await wf.create(id="long", params={"name": "abcde", "size": 1})
        status = await worker.run_workflow("LIM", "long")
        assert (
            status["error"]["message"] == 'Step name "abcde" exceeds max length (4 chars) or invalid characters found'
        )
        await wf.create(id="big", params={"name": "big", "size": 100})
        status = await worker.run_workflow("LIM", "big")
        assert status["error"]["message"] == "Step big-1 output is too large. Maximum allowed size is 60 bytes."
        with pytest.raises(WorkflowError, match="larger than 60 bytes"):
            await wf.create(id="huge", params={"name": "x" * 100, "size": 1})


def test_a_bad_limit_is_a_config_error(limited):
    from flarelet.wrangler_compat.config import ConfigError

    (limited / "wrangler.toml").write_text(LIMITED.replace("batch_size = 2", "batch_size = 0"))
    with pytest.raises(
        ConfigError, match=r"wrangler.toml:6: flarelet.workflows.batch_size: must be a positive integer"
    ):
        Worker.from_config(limited)


async def test_an_instance_created_before_the_worker_starts_waits_in_the_queue():
    worker = Worker.from_config(FLOWS, clock=ManualClock(START))
    try:
        await worker.env.MISC.create(id="early", params={"kind": "js_style"})
        assert (await (await worker.env.MISC.get("early")).status())["status"] == "queued"
        status = await worker.run_workflow("MISC", "early")  # starts the worker
        assert status["output"] == 41
    finally:
        await worker.aclose()


async def test_pause_during_a_failing_step_pauses_before_the_retry_wait(flows):
    entry().GATES["pf"] = gate = asyncio.Event()
    instance = await flows.env.MISC.create(id="pf", params={"kind": "gated_fail"})
    await asyncio.sleep(0.05)
    await instance.pause()
    gate.set()
    await flows.clock.settle()
    assert (await instance.status())["status"] == "paused"
    await flows.advance_time(60)
    assert entry().RUNS["pf"]["fails"] == 1  # no retry while paused
    await instance.resume()
    status = await flows.run_workflow("MISC", "pf")
    assert status["error"] == {"name": "ValueError", "message": "still failing"}
    assert entry().RUNS["pf"]["fails"] == 2  # one retry (limit 1), after the resume
