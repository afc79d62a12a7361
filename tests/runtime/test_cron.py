"""Cron triggers: on schedule, and on demand at Miniflare's and wrangler's URLs."""

from __future__ import annotations

import math
import time

import httpx
import pytest

WORKER = """
from workers import WorkerEntrypoint, Response

runs = []

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response.json(runs)

    async def scheduled(self, controller, env, ctx):
        runs.append({"cron": controller.cron, "time": controller.scheduledTime})
        if controller.cron == "fail":
            raise RuntimeError("cron failure")
"""
TOML = '[triggers]\ncrons = ["* * * * *", "0 0 1 1 *"]\n'


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_crons_fire_on_schedule(make_worker, run_worker):
    now = time.time()
    boundary = (math.floor(now / 60) + 1) * 60
    offset = boundary - 0.5 - now  # the server's clock starts half a second before a minute boundary

    with run_worker(make_worker(WORKER, TOML), run_crons=True, cron_clock=lambda: time.time() + offset) as server:
        deadline = time.monotonic() + 10
        runs: list = []
        while time.monotonic() < deadline and not runs:
            time.sleep(0.1)
            runs = httpx.get(server.url).json()
    assert runs == [{"cron": "* * * * *", "time": boundary * 1000.0}]  # only the every-minute cron was due


def test_cdn_cgi_handler_scheduled(make_worker, run_worker):
    with run_worker(make_worker(WORKER, TOML)) as server:
        r = httpx.get(server.url + "/cdn-cgi/handler/scheduled", params={"cron": "*/5 * * * *", "time": "1000"})
        assert (r.status_code, r.text) == (200, "ok")
        r = httpx.get(server.url + "/cdn-cgi/handler/scheduled", params={"cron": "fail", "format": "json"})
        assert (r.status_code, r.json()) == (500, {"outcome": "exception", "noRetry": False})
        r = httpx.get(server.url + "/cdn-cgi/handler/scheduled", params={"time": "soon"})
        assert r.status_code == 400
        runs = httpx.get(server.url).json()
    assert runs[:2] == [{"cron": "*/5 * * * *", "time": 1000.0}, {"cron": "fail", "time": runs[1]["time"]}]


def test_wrangler_test_scheduled_path(make_worker, run_worker):
    with run_worker(make_worker(WORKER, TOML)) as server:
        r = httpx.get(server.url + "/__scheduled", params={"cron": "*/10 * * * *"})
        assert (r.status_code, r.text) == (200, "Ran scheduled event")
        assert httpx.get(server.url + "/__scheduled", params={"cron": "fail"}).status_code == 500
        assert httpx.get(server.url).json()[0]["cron"] == "*/10 * * * *"


@pytest.mark.parametrize("cron", ["* * *", "61 * * * *", "* * * * * *"])
def test_invalid_crons_are_config_errors(make_worker, cron):
    from flarelet.runtime.host import WorkerHost
    from flarelet.wrangler_compat.config import ConfigError

    with pytest.raises(ConfigError, match=r"triggers\.crons\[0\]: invalid cron expression"):
        WorkerHost.from_config(make_worker(WORKER, f'[triggers]\ncrons = ["{cron}"]\n'))
