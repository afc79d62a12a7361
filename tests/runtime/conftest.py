"""Fixtures for runtime tests: worker projects in a temp folder, and in-thread dev servers.

``make_worker(code, toml="", files=None)`` writes ``wrangler.toml`` (``main = "src/entry.py"``
plus ``toml``), ``src/entry.py`` (``code``) and any extra ``files`` into a fresh folder and
returns it.

``run_worker(target, **kwargs)`` builds a :class:`WorkerHost` from ``target`` (kwargs go to
``WorkerHost.from_config``, plus ``watch``/``run_crons``/``cron_clock`` for the server) and
serves it with the real :class:`DevServer` (uvicorn) in a thread on a free loopback port. It
yields the server (``.url``, ``.host``, ``.log`` a StringIO holding the request log lines).
These are real servers, only faster to start than a subprocess.
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


@pytest.fixture
def make_worker(tmp_path: Path):
    counter = [0]

    def make(
        code: str,
        toml: str = "",
        files: dict[str, str] | None = None,
        main: str = "src/entry.py",
        config_name: str = "wrangler.toml",
    ) -> Path:
        counter[0] += 1
        root = tmp_path / f"worker{counter[0]}"
        (root / Path(main).parent).mkdir(parents=True, exist_ok=True)
        (root / main).write_text(textwrap.dedent(code))
        if config_name == "wrangler.toml":
            header = (
                f'name = "test-worker"\nmain = "{main}"\ncompatibility_date = "2025-11-02"\n'
                'compatibility_flags = ["python_workers"]\n'
            )
            (root / config_name).write_text(header + textwrap.dedent(toml))
        else:
            (root / config_name).write_text(textwrap.dedent(toml))
        for name, content in (files or {}).items():
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(content))
        return root

    return make


@contextlib.contextmanager
def _run_worker(
    target: Path | str, *, watch: bool = False, run_crons: bool = False, cron_clock: Any = None, **kwargs: Any
) -> Iterator[DevServer]:
    host = WorkerHost.from_config(target, **kwargs)
    log = io.StringIO()
    server = DevServer(
        host, bind_socket("127.0.0.1", 0), log_stream=log, watch=watch, run_crons=run_crons, cron_clock=cron_clock
    )
    server.log = log  # type: ignore[attr-defined]
    server.start_in_thread()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def run_worker():
    return _run_worker
