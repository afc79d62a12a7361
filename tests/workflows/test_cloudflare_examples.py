"""Cloudflare's python-workers-examples 10-workflows, run unchanged.

Its code is not part of this repository: point ``FLARELET_PYTHON_WORKERS_EXAMPLES`` at a checkout
of github.com/cloudflare/python-workers-examples to run these tests (skipped otherwise). The
example's steps really sleep 1-10 and 5-15 seconds (``random.randint``), concurrently: the
random generator is seeded so that the run takes ~6 s.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import httpx
import pytest

from flarelet.testing import Worker

EXAMPLES = Path(os.environ.get("FLARELET_PYTHON_WORKERS_EXAMPLES", "/nonexistent"))
WORKFLOWS = EXAMPLES / "10-workflows"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.external(env="FLARELET_PYTHON_WORKERS_EXAMPLES"),  # deselected unless set (conftest.py)
    pytest.mark.skipif(
        not WORKFLOWS.is_dir(), reason="set FLARELET_PYTHON_WORKERS_EXAMPLES to a python-workers-examples checkout"
    ),
]


async def test_workflows_example_runs_its_dag_to_completion(capsys):
    random.seed(2)  # dep1 sleeps 1 s, dep2 6 s
    async with Worker.from_config(WORKFLOWS) as worker:
        started = await (await worker.fetch("/start")).text()
        assert started.startswith("Just kicked off a workflow with ID: ")
        instance_id = started.rsplit(" ", 1)[-1]
        status = await (await worker.fetch(f"/status/{instance_id}")).json()
        assert status["status"] in ("queued", "running")
        final = await worker.run_workflow("MY_WORKFLOW", instance_id, timeout=60)
        assert final["status"] == "complete"
        assert (await (await worker.fetch(f"/status/{instance_id}")).json())["status"] == "complete"
    printed = capsys.readouterr().out
    assert "executing dep1" in printed and "executing dep2" in printed
    assert printed.index("I awaited the first two steps") > printed.index("executing dep2")


def test_workflows_example_under_flarelet_dev_survives_a_restart(serve_worker, tmp_path):
    args = ("--persist-to", str(tmp_path), "--no-watch")
    with serve_worker(WORKFLOWS, *args) as running:
        # the checks of the examples repository's own test (marked xfail there: "500 error" under wrangler)
        home = httpx.get(running.url + "/")
        assert home.status_code == 200 and "/start" in home.text and "/status" in home.text
        started = httpx.get(running.url + "/start")
        assert started.status_code == 200 and "workflow with ID:" in started.text
        instance_id = started.text.split("ID: ")[-1].strip()
        assert isinstance(httpx.get(f"{running.url}/status/{instance_id}").json(), dict)
        running.wait_for_log("executing dep1")
    # stopped while its first steps sleep: the next server resumes the instance
    with serve_worker(WORKFLOWS, *args) as running:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status = httpx.get(f"{running.url}/status/{instance_id}").json()
            if status["status"] == "complete":
                break
            time.sleep(0.5)
        assert status["status"] == "complete"
        running.wait_for_log("I awaited the first two steps and now I am done")
