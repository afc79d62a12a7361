"""The hardening pieces in process (fast): CPU meter, log escaping, header values, limits config.

The same defects are reproduced over a real socket against a real ``flarelet dev`` process in
``test_hardening.py`` (slow); these pin the building blocks' contracts.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from flarelet.runtime.cpu_limit import CpuLimitExceeded, watchdog
from flarelet.runtime.headers import Headers
from flarelet.runtime.host import WorkerHost
from flarelet.runtime.limits import DEFAULT_MAX_HEADER_BYTES, ServerLimits
from flarelet.runtime.logs import escape_controls, escape_record
from flarelet.runtime.request import Request
from flarelet.runtime.response import Response
from flarelet.wrangler_compat.config import ConfigError


async def test_cpu_meter_interrupts_a_spinning_coroutine_and_the_loop_goes_on():
    meter = watchdog().meter(100)

    async def spin() -> None:
        await asyncio.sleep(0)
        while True:
            pass

    began = time.monotonic()
    with pytest.raises(CpuLimitExceeded, match="CPU time limit of 100 ms"):
        await meter.run(spin())
    assert meter.exceeded and time.monotonic() - began < 5
    assert not watchdog().active  # nothing left armed on this thread
    await asyncio.sleep(0.05)  # no stray interrupt lands in the loop afterwards


async def test_cpu_meter_does_not_charge_time_spent_awaiting():
    meter = watchdog().meter(50)

    async def mostly_waiting() -> str:
        for _ in range(4):
            await asyncio.sleep(0.05)
        return "done"

    assert await meter.run(mostly_waiting()) == "done"
    assert meter.used_ms < 50 and not meter.exceeded


def test_cpu_meter_interrupts_a_synchronous_call():
    meter = watchdog().meter(100)

    def spin() -> None:
        while True:
            pass

    with pytest.raises(CpuLimitExceeded):
        meter.call(spin)
    assert not watchdog().active


async def test_worker_past_cpu_ms_gets_1102_and_scheduled_outcome_exceeded_cpu(make_worker):
    root = make_worker(
        """
        from workers import WorkerEntrypoint, Response

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                while True:
                    pass

            async def scheduled(self, controller, env, ctx):
                while True:
                    pass
        """,
        toml="[limits]\ncpu_ms = 100\n",
    )
    host = WorkerHost.from_config(root)
    response = await host.serve(Request("http://localhost/"))
    assert response.status == 503
    assert (await response.text()).startswith("error code: 1102")
    assert (await host.scheduled("* * * * *"))["outcome"] == "exceededCpu"


@pytest.mark.parametrize("value", ["0", "300001", '"50"', "true"])
def test_bad_cpu_ms_is_a_config_error_naming_the_key(make_worker, value):
    root = make_worker("x = 1\n", toml=f"[limits]\ncpu_ms = {value}\n")
    with pytest.raises(ConfigError, match="limits.cpu_ms"):
        WorkerHost.from_config(root)


def test_limits_default_to_cloudflares_and_read_the_flarelet_table(make_worker):
    assert ServerLimits().max_header_bytes == DEFAULT_MAX_HEADER_BYTES == 128 * 1024
    root = make_worker("x = 1\n", toml="[flarelet]\nheader_timeout_s = 2\nmax_header_bytes = 4096\n")
    limits = WorkerHost.from_config(root).limits
    assert (limits.header_timeout_s, limits.max_header_bytes, limits.cpu_ms) == (2.0, 4096, 30_000)
    bad = make_worker("x = 1\n", toml="[flarelet]\nbody_timeout_s = -1\n")
    with pytest.raises(ConfigError, match="body_timeout_s"):
        WorkerHost.from_config(bad)


def test_header_value_outside_latin1_raises_type_error_where_set_as_workerd_does():
    with pytest.raises(TypeError, match="ISO-8859-1"):
        Response("h", headers={"x-v": "\u65e5"})
    headers = Headers()
    with pytest.raises(TypeError):
        headers.set("x-v", "\u65e5")
    headers.set("x-v", "caf\u00e9")  # Latin-1 is a valid ByteString
    assert headers.get("x-v") == "caf\u00e9"


def test_log_escaping_keeps_lines_single_and_terminal_safe():
    assert escape_controls("/x\n[flarelet:info] GET /admin") == "/x\\n[flarelet:info] GET /admin"
    assert escape_controls("\x1b[31mred\u202e") == "\\x1b[31mred\\u202e"
    assert escape_controls("/plain/path") == "/plain/path"
    record = escape_record("boom\nTraceback (most recent call last):\n  File x\n[flarelet:info] forged\r")
    lines = record.split("\n")
    assert lines[0] == "boom" and all(line.startswith(" ") for line in lines[1:])
    assert "\r" not in record


async def test_tasks_and_wait_until_work_a_worker_starts_count_against_its_cpu_time(make_worker, run_worker, caplog):
    import httpx

    root = make_worker(
        """
        import asyncio
        from workers import WorkerEntrypoint, Response

        async def spin():
            await asyncio.sleep(0)
            while True:
                pass

        class Default(WorkerEntrypoint):
            async def fetch(self, request):
                if request.url.endswith("/gather"):
                    await asyncio.gather(spin())
                if request.url.endswith("/wait-until"):
                    self.ctx.waitUntil(spin())
                return Response("ok")
        """,
        toml="[limits]\ncpu_ms = 100\n",
    )
    with run_worker(root) as server:
        async with httpx.AsyncClient(timeout=20) as client:
            r = await client.get(server.url + "/gather")
            assert r.status_code == 503 and r.text.startswith("error code: 1102")
            assert (await client.get(server.url + "/wait-until")).text == "ok"
            await asyncio.sleep(0.5)  # the waitUntil spin is stopped, else the server answers nothing
            assert (await client.get(server.url + "/", timeout=5)).text == "ok"
    assert "Uncaught exception in waitUntil()" in caplog.text and "CPU time limit" in caplog.text
