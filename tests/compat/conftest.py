"""Fixtures for the Cloudflare-compatibility tests: real dev servers (uvicorn in a thread, loopback
port 0) for worker projects written into a temporary folder, shared per module.

``serve_worker(code, toml="", files=None, **host_kwargs)`` writes ``wrangler.toml`` + ``src/entry.py``
and yields a running :class:`DevServer` (``.url``, ``.log``).
"""

from __future__ import annotations

import contextlib
import io
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.server import DevServer, bind_socket

HEADER = (
    'name = "compat"\nmain = "src/entry.py"\ncompatibility_date = "2025-11-02"\n'
    'compatibility_flags = ["python_workers"]\n'
)


def write_worker(root: Path, code: str, toml: str = "", files: dict[str, str] | None = None) -> Path:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src/entry.py").write_text(textwrap.dedent(code))
    (root / "wrangler.toml").write_text(HEADER + textwrap.dedent(toml))
    for name, content in (files or {}).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(content))
    return root


@contextlib.contextmanager
def serving(root: Path, **host_kwargs: Any) -> Iterator[DevServer]:
    host = WorkerHost.from_config(root, **host_kwargs)
    log = io.StringIO()
    server = DevServer(host, bind_socket("127.0.0.1", 0), log_stream=log, watch=False)
    server.log = log  # type: ignore[attr-defined]
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def serve_worker(tmp_path_factory):
    stack = contextlib.ExitStack()
    counter = [0]

    def start(code: str, toml: str = "", files: dict[str, str] | None = None, **host_kwargs: Any) -> DevServer:
        counter[0] += 1
        root = write_worker(tmp_path_factory.mktemp(f"compat{counter[0]}"), code, toml, files)
        return stack.enter_context(serving(root, **host_kwargs))

    with stack:
        yield start
