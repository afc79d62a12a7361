"""Cloudflare's own Durable Object examples, unchanged (their code is not in this repository).

Point ``FLARELET_PYTHON_WORKERS_EXAMPLES`` (or ``FLARELET_UPSTREAM_EXAMPLES``) at a checkout of
``cloudflare/python-workers-examples`` and ``FLARELET_C3_TEMPLATES`` at
``workers-sdk/packages/create-cloudflare/templates``; each test is skipped when its folder is
absent. Templates are copied with their placeholders filled in, as ``create-cloudflare`` fills them
when it creates a project.
"""

import json
import os
import shutil
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.server import DevServer, bind_socket
from flarelet.testing import Worker

EXAMPLES = Path(
    os.environ.get("FLARELET_PYTHON_WORKERS_EXAMPLES") or os.environ.get("FLARELET_UPSTREAM_EXAMPLES") or "/nonexistent"
)
TEMPLATES = Path(os.environ.get("FLARELET_C3_TEMPLATES", "/nonexistent"))

# deselected unless one of these is set (conftest.py at the root): their code is not in this repository
pytestmark = pytest.mark.external(
    env=("FLARELET_PYTHON_WORKERS_EXAMPLES", "FLARELET_UPSTREAM_EXAMPLES", "FLARELET_C3_TEMPLATES")
)


def need(path: Path) -> Path:
    if not path.is_dir():
        pytest.skip(f"{path} not present (set FLARELET_UPSTREAM_EXAMPLES / FLARELET_C3_TEMPLATES)")
    return path


async def test_python_workers_examples_durable_objects(tmp_path):
    project = need(EXAMPLES / "07-durable-objects")
    async with Worker.from_config(project, persist_to=tmp_path) as worker:
        assert (await worker.fetch("/")).status == 400
        assert await (await worker.fetch("/shopping/add/milk")).text() == "Message sent"
        assert await (await worker.fetch("/shopping/add/eggs")).text() == "Message sent"
        assert await (await worker.fetch("/shopping/show")).text() == "milk\neggs"
        assert await (await worker.fetch("/other/show")).text() == "No messages"
    async with Worker.from_config(project, persist_to=tmp_path) as worker:  # persisted
        assert await (await worker.fetch("/shopping/show")).text() == "milk\neggs"


@pytest.mark.slow  # a real server and sockets
def test_python_workers_examples_chatroom(tmp_path):
    import asyncio

    project = need(EXAMPLES / "15-chatroom")
    host = WorkerHost.from_config(project, persist_to=tmp_path)
    server = DevServer(host, bind_socket("127.0.0.1", 0), watch=False, log_requests=False).start_in_thread()
    try:

        async def run():
            url = server.url.replace("http://", "ws://") + "/room/general"
            async with connect(url) as a, connect(url) as b:
                assert json.loads(await a.recv())["type"] == "system"
                assert json.loads(await b.recv())["type"] == "system"
                await a.send(json.dumps({"username": "ada", "text": "hi"}))
                for ws in (a, b):
                    msg = json.loads(await ws.recv())
                    assert (msg["type"], msg["username"], msg["text"]) == ("message", "ada", "hi")
            async with connect(url) as c:
                history = json.loads(await c.recv())
                assert history["type"] == "history" and history["messages"][0]["text"] == "hi"

        asyncio.run(run())
    finally:
        server.stop()


@pytest.mark.parametrize("template", ["hello-world-durable-object", "hello-world-durable-object-with-assets"])
async def test_create_cloudflare_durable_object_templates(tmp_path, template):
    source = need(TEMPLATES / template / "py")
    project = tmp_path / "project"
    shutil.copytree(source, project)
    config = project / "wrangler.jsonc"
    config.write_text(
        config.read_text().replace("<WORKER_NAME>", "my-project").replace("<COMPATIBILITY_DATE>", "2025-11-02")
    )
    async with Worker.from_config(project) as worker:
        if (project / "public").is_dir():  # the page is an asset; it fetches /message from the worker
            assert "fetch('/message')" in await (await worker.fetch("/")).text()
        resp = await worker.fetch("/message")
        assert resp.status == 200
        assert await resp.text() == "Hello, world!"
