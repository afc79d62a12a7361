"""Workflow state survives repeated SIGKILLs of a real ``flarelet dev``: nothing acknowledged is lost.

A client creates instances and sends each its event while the server is killed at random
moments, again and again. Afterwards every instance whose ``create`` was answered exists and
completes, every event whose ``send_event`` was answered is the one it consumed, and a step whose
result was stored never ran again (each step logs when it starts: once a later step has started,
an earlier one never starts again).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

CRASHY = Path(__file__).parent / "projects" / "crashy"
KILLS = 5

pytestmark = [pytest.mark.slow, pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")]


def _client(url: str, prefix: str, created: list[str], evented: set[str], stop: threading.Event) -> None:
    n = 0
    with httpx.Client(timeout=5) as client:
        while not stop.is_set():
            instance_id = f"{prefix}-{n}"
            n += 1
            try:
                if client.post(f"{url}/create?id={instance_id}").status_code == 200:
                    created.append(instance_id)
                else:
                    return
                if client.post(f"{url}/event?id={instance_id}").status_code == 200:
                    evented.add(instance_id)
            except httpx.HTTPError:
                return  # the server died under us: whatever was answered counts


def test_workflow_state_survives_repeated_sigkill(serve_worker, tmp_path: Path) -> None:
    persist = tmp_path / "state"
    logs = tmp_path / "logs"
    logs.mkdir()
    args = ("--persist-to", str(persist), "--var", f"LOG_DIR:{logs}", "--no-watch", "--log-level", "warn")
    created: list[str] = []
    evented: set[str] = set()
    rng = random.Random(7)
    for round_ in range(KILLS):
        with serve_worker(CRASHY, *args) as running:
            stop = threading.Event()
            thread = threading.Thread(target=_client, args=(running.url, f"r{round_}", created, evented, stop))
            thread.start()
            time.sleep(rng.uniform(0.4, 1.2))
            os.killpg(running.proc.pid, signal.SIGKILL)
            running.proc.wait(10)
            stop.set()
            thread.join(10)
    assert len(created) >= KILLS * 2, "the client got too few answers before the kills"
    with serve_worker(CRASHY, *args) as running, httpx.Client(timeout=10) as client:
        for instance_id in created:
            if instance_id not in evented:  # no acknowledgement seen (the event may still have landed)
                if client.get(f"{running.url}/status?id={instance_id}").json()["status"] != "complete":
                    assert client.post(f"{running.url}/event?id={instance_id}").status_code == 200
        deadline = time.monotonic() + 90
        pending = set(created)
        while pending and time.monotonic() < deadline:
            for instance_id in sorted(pending):
                status = client.get(f"{running.url}/status?id={instance_id}").json()
                assert status["status"] not in ("errored", "terminated"), (instance_id, status)
                if status["status"] == "complete":
                    assert status["output"] == {"total": 60, "go": {"n": instance_id}}
                    pending.discard(instance_id)
            time.sleep(0.2)
        assert not pending, f"instances that never completed: {sorted(pending)}"
    resumed = 0
    for instance_id in created:
        lines = [line.split() for line in (logs / f"{instance_id}.log").read_text().splitlines()]
        started = [int(step[1:]) for _, step, _ in lines]
        resumed += len({pid for _, _, pid in lines}) > 1  # its steps ran in more than one server process
        # steps start in order; a step may start again only while no later step has started
        # (it was cut short before its result was stored), never after
        highest = -1
        for index in started:
            assert index >= highest, (instance_id, started)
            highest = max(highest, index)
        assert sorted(set(started)) == [0, 1, 2, 3], (instance_id, started)
    assert resumed >= 1, "no instance was cut by a kill and resumed: the kills missed the work"
