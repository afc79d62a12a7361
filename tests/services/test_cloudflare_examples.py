"""Cloudflare's python-workers-examples that use service bindings / RPC, run unchanged.

Their code is not part of this repository: point ``FLARELET_PYTHON_WORKERS_EXAMPLES`` at a checkout
of github.com/cloudflare/python-workers-examples to run these tests (skipped otherwise).
13-js-api-pygments is a Python RPC server with a TypeScript client; the client here is ours, in
Python (``projects/pygments_client``), calling the unchanged server over a service binding.
"""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from flarelet.testing import Worker

EXAMPLES = Path(os.environ.get("FLARELET_PYTHON_WORKERS_EXAMPLES", "/nonexistent"))
PYGMENTS_SERVER = EXAMPLES / "13-js-api-pygments" / "py"
CLIENT = Path(__file__).parent / "projects" / "pygments_client"

pytestmark = [
    pytest.mark.external(env="FLARELET_PYTHON_WORKERS_EXAMPLES"),  # deselected unless set (conftest.py)
    pytest.mark.skipif(
        not PYGMENTS_SERVER.is_dir(),
        reason="set FLARELET_PYTHON_WORKERS_EXAMPLES to a python-workers-examples checkout",
    ),
]
pygments = pytest.importorskip("pygments")


async def test_pygments_rpc_server_answers_a_python_client_over_a_service_binding():
    async with Worker.from_config(CLIENT, workers=[PYGMENTS_SERVER]) as worker:
        page = await (await worker.fetch("/")).text()
        assert "<h1>TypeScript</h1>" in page
        assert 'class="highlight"' in page and ".highlight" in page
        unknown = await worker.env.PYTHON_RPC.highlight_code("x", "no-such-language")
        assert unknown["error"] == "Language 'no-such-language' not found"
        server = worker.peer("py-rpc-server")
        assert server.name == "py-rpc-server"


@pytest.mark.slow
def test_pygments_example_under_flarelet_dev_with_two_configs(serve_worker):
    with serve_worker(CLIENT / "wrangler.toml", "-c", str(PYGMENTS_SERVER / "wrangler.jsonc")) as running:
        page = httpx.get(running.url + "/", timeout=30).text
        assert "<h1>TypeScript</h1>" in page
