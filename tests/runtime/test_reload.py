"""Reloading in process: code edits re-import only the worker; config edits rebuild bindings."""

from __future__ import annotations

import time

import httpx

CODE = """
from workers import WorkerEntrypoint, Response
import helper

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return Response(f"{helper.VERSION} {self.env.MODE}")
"""


def wait_for(fn, timeout=15.0, rewrite=None):
    """Poll ``fn``; ``rewrite`` (path, text) is written again every second, because a change made
    before the file watcher has started (it starts just after the server is ready) is not seen."""
    deadline = time.monotonic() + timeout
    next_write = 0.0
    while time.monotonic() < deadline:
        if rewrite is not None and time.monotonic() >= next_write:
            rewrite[0].write_text(rewrite[1])
            next_write = time.monotonic() + 1.0
        if fn():
            return True
        time.sleep(0.05)
    return False


def test_code_change_keeps_env_and_bindings(make_worker, run_worker):
    root = make_worker(CODE, '[vars]\nMODE = "a"\n', files={"src/helper.py": "VERSION = 1\n"})
    with run_worker(root, watch=True) as server:
        env_before, generation = server.host.env, server.host.generation
        assert httpx.get(server.url).text == "1 a"
        # a sibling module, not the main one
        assert wait_for(lambda: httpx.get(server.url).text == "2 a", rewrite=(root / "src/helper.py", "VERSION = 2\n"))
        assert server.host.env is env_before and server.host.generation == generation

        config = root / "wrangler.toml"
        assert wait_for(
            lambda: httpx.get(server.url).text == "2 b",
            rewrite=(config, config.read_text().replace('MODE = "a"', 'MODE = "b"')),
        )
        assert server.host.generation > generation


def test_broken_config_edit_keeps_the_previous_config(make_worker, run_worker, caplog):
    root = make_worker(CODE, '[vars]\nMODE = "a"\n', files={"src/helper.py": "VERSION = 1\n"})
    with run_worker(root, watch=True) as server:
        assert wait_for(
            lambda: "keeping the previous configuration" in caplog.text,
            rewrite=(root / "wrangler.toml", 'main = "src/entry.py"\n[vars\n'),
        )
        assert httpx.get(server.url).text == "1 a"
