"""Helpers for the Workers AI REST tests: a real uvicorn server on a free loopback port, real audio.

The servers run in a background thread (their own event loop), so the synchronous clients the
tests use -- the official ``cloudflare`` SDK, httpx, curl -- talk to them over real TCP exactly as
a user's program would.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from flarelet.runtime.shutdown import PromptServer

REPO = Path(__file__).resolve().parents[2]
TOKEN = "flarelet-test-token-0123456789abcdefghij"
OTHER_TOKEN = "second-token-for-the-same-server"
ACCOUNT = "0123456789abcdef0123456789abcdef"
TINY = "@cf/openai/whisper-tiny-en"
TURBO = "@cf/openai/whisper-large-v3-turbo"


@contextlib.contextmanager
def serve_app(app: Any, timeout: float = 20.0) -> Iterator[str]:
    """Run ``app`` with uvicorn on 127.0.0.1 and a free port; yields ``http://127.0.0.1:PORT``."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
    server = PromptServer(config)  # stops without uvicorn's fixed waits
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.request_exit()
        thread.join(timeout)
        sock.close()


class ScriptedAiBackend:
    """TEST AID, not a model: answers ``run`` by raising the error it was told to (or echoing the
    inputs' kind), so the REST layer's error mapping can be checked for failures the real model
    cannot be made to produce on demand (an unexpected crash). ``models()`` is the real catalog."""

    def __init__(self) -> None:
        self.next_error: BaseException | None = None
        self.calls: list[tuple[str, Any]] = []

    async def run(self, model: str, inputs: Any) -> dict:
        self.calls.append((model, inputs))
        if self.next_error is not None:
            raise self.next_error
        kind = "bytes" if isinstance(inputs, bytes) else "json"
        return {"text": f"scripted:{kind}:{len(inputs)}"}

    def models(self) -> list[dict]:
        from flarelet.bindings.ai.catalog import MODELS

        return [spec.search_entry() for spec in MODELS.values()]


def serve_command() -> list[str]:
    """``flarelet ai serve`` through the console script next to this interpreter, else ``python -m flarelet``."""
    script = Path(sys.executable).with_name("flarelet")
    return [str(script), "ai", "serve"] if script.is_file() else [sys.executable, "-m", "flarelet", "ai", "serve"]


class Served:
    def __init__(self, proc: subprocess.Popen, lines: list[str]) -> None:
        self.proc = proc
        self.lines = lines

    @property
    def curl(self) -> str:
        return next(line for line in self.lines if line.startswith("curl "))

    @property
    def base(self) -> str:
        line = next(line for line in self.lines if line.startswith("Workers AI REST API on "))
        return re.search(r"(http://[^ ]+/client/v4)", line).group(1)  # type: ignore[union-attr]


def start_serve(*extra: str, cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 60) -> Served:
    """Start the command on a free port; return once it is ready and its banner (ending in the curl
    line) is out. stdout and stderr are read together, as a terminal shows them."""
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    for name in ("FLARELET_API_TOKEN", "FLARELET_ACCOUNT_ID"):
        if env is None or name not in env:
            full_env.pop(name, None)
    proc = subprocess.Popen(
        [*serve_command(), "--port", "0", *extra],
        cwd=cwd or REPO,
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    started = threading.Event()

    def read() -> None:  # a thread: select() on a buffered pipe misses lines already buffered
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            if line.startswith("curl ") and any("Ready on http://" in seen for seen in lines):
                started.set()

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if started.wait(0.1):
            return Served(proc, lines)
    proc.kill()
    raise AssertionError("flarelet ai serve did not start:\n" + "\n".join(lines))


@pytest.fixture(scope="session")
def rest() -> Any:
    """The helpers above, for test modules (which cannot import this conftest by name)."""

    class Helpers:
        TOKEN = TOKEN
        OTHER_TOKEN = OTHER_TOKEN
        ACCOUNT = ACCOUNT
        TINY = TINY
        TURBO = TURBO
        serve_app = staticmethod(serve_app)
        ScriptedAiBackend = ScriptedAiBackend
        serve_command = staticmethod(serve_command)
        start_serve = staticmethod(start_serve)

    return Helpers
