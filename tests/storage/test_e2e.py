"""examples/storage under the real ``flarelet dev``: KV, D1, R2 and a queue over HTTP, across restarts."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "storage"

pytestmark = pytest.mark.slow  # starts flarelet dev several times


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example (its .wrangler/state lands in tmp), with migrations applied by the CLI."""
    target = tmp_path / "storage"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns(".wrangler", "__pycache__"))
    out = subprocess.run(
        [sys.executable, "-m", "flarelet", "d1", "migrations", "apply", "DB", "--local"],
        cwd=target,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0001_notes.sql" in out.stdout
    return target


def poll_json(client: httpx.Client, path: str, done, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path).json()
        if done(body):
            return body
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never reached the expected state: {body}")
        time.sleep(0.1)


def test_storage_example_survives_restarts(project: Path, serve_worker) -> None:
    payload = os.urandom(200_000)
    with serve_worker(project) as worker, httpx.Client(base_url=worker.url, timeout=30) as client:
        for name in (
            "env.KV (5d8f6d3f6f4b4a4c9b1c0e1f2a3b4c5d)",
            "env.DB (notes)",
            "env.FILES (files)",
            "env.JOBS (jobs)",
        ):
            assert name in worker.output
        # KV
        assert client.put("/kv/greeting", content="hello").status_code == 201
        got = client.get("/kv/greeting")
        assert got.text == "hello" and got.headers["x-metadata"] == '{"length": 5}'
        assert client.get("/kv", params={"prefix": "gr"}).json() == {"keys": ["greeting"], "complete": True}
        assert client.get("/kv/missing").status_code == 404
        bad = client.put("/kv/" + "k" * 600, content="x")
        assert bad.status_code == 400 and "exceeds key length limit of 512" in bad.json()["error"]
        # D1 (schema from `flarelet d1 migrations apply`)
        assert client.post("/notes", json={"text": "first"}).json() == {"id": 1}
        assert client.post("/notes", json={"text": "second"}).json() == {"id": 2}
        assert client.get("/notes").json() == [{"id": 1, "text": "first"}, {"id": 2, "text": "second"}]
        # R2
        put = client.put("/files/blobs/data.bin", content=payload, headers={"content-type": "application/x-demo"})
        assert put.status_code == 201 and put.json()["size"] == len(payload)
        whole = client.get("/files/blobs/data.bin")
        assert whole.content == payload and whole.headers["content-type"] == "application/x-demo"
        part = client.get("/files/blobs/data.bin", headers={"range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == payload[100:200]
        assert part.headers["content-range"] == f"bytes 100-199/{len(payload)}"
        assert client.get("/files", params={"delimiter": "/"}).json()["prefixes"] == ["blobs/"]
        # Queue -> consumer -> D1; a failing job ends in the dead-letter queue -> KV
        assert client.post("/jobs", json={"id": "j1", "task": "upper", "text": "shout"}).status_code == 202
        assert client.post("/jobs", json={"id": "j2", "task": "fail", "text": "x"}).status_code == 202
        done = poll_json(client, "/jobs/j1", lambda b: b["status"] == "done")
        assert done == {"status": "done", "task": "upper", "result": "SHOUT", "attempts": 1}
        dead = poll_json(client, "/jobs/j2", lambda b: b["status"] == "dead")
        assert dead == {"status": "dead", "task": "fail", "attempts": 1}
        worker.wait_for_log("QUEUE jobs 1/")
        worker.wait_for_log('to dead letter queue "jobs-dlq" after 3 failed attempts')

    # a clean restart: everything is still there
    with serve_worker(project) as worker, httpx.Client(base_url=worker.url, timeout=30) as client:
        assert client.get("/kv/greeting").text == "hello"
        assert [n["text"] for n in client.get("/notes").json()] == ["first", "second"]
        assert client.get("/files/blobs/data.bin").content == payload
        assert client.get("/jobs/j1").json()["result"] == "SHOUT"
        assert client.get("/jobs/j2").json()["status"] == "dead"
        # write, then kill the server outright: acknowledged writes must survive
        assert client.put("/kv/after-kill", content="durable").status_code == 201
        assert client.post("/notes", json={"text": "third"}).status_code == 201
        assert client.put("/files/last.txt", content=b"last").status_code == 201
        os.killpg(worker.proc.pid, signal.SIGKILL)
        worker.proc.wait(10)

    with serve_worker(project) as worker, httpx.Client(base_url=worker.url, timeout=30) as client:
        assert client.get("/kv/after-kill").text == "durable"
        assert [n["text"] for n in client.get("/notes").json()] == ["first", "second", "third"]
        assert client.get("/files/last.txt").content == b"last"


def test_d1_cli_sees_what_the_server_wrote(project: Path, serve_worker) -> None:
    with serve_worker(project) as worker, httpx.Client(base_url=worker.url, timeout=30) as client:
        assert client.post("/notes", json={"text": "from the worker"}).status_code == 201
        # the CLI and the running server share the database file
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "flarelet",
                "d1",
                "execute",
                "DB",
                "--json",
                "--command",
                "INSERT INTO notes (text) VALUES ('from the cli'); SELECT text FROM notes ORDER BY id",
            ],
            cwd=project,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        assert '"from the worker"' in out.stdout and '"from the cli"' in out.stdout
        assert [n["text"] for n in client.get("/notes").json()] == ["from the worker", "from the cli"]
