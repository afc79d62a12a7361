"""Shared pytest fixtures for every test area.

``free_port``
    A TCP port that was free on 127.0.0.1 a moment ago (prefer ``--port 0`` where possible).

``serve_worker(target, *args, env=None, timeout=60, ready=True)``
    Context manager that runs the real ``flarelet dev`` CLI in a subprocess on 127.0.0.1 and
    yields a :class:`RunningWorker`::

        def test_hello(serve_worker):
            with serve_worker("examples/hello", "--var", "GREETING:Hi") as worker:
                assert httpx.get(worker.url + "/").text == "Hi, world!"
                worker.wait_for_log("GET / 200 OK")

    * ``target`` is a project folder or config file; ``args`` are extra CLI arguments. Unless
      ``args`` contain ``--port``, ``--port 0`` is added, and the real URL is read from the
      ``Ready on http://...`` line, so tests never race for a port.
    * stdout and stderr are merged and collected line by line: ``worker.output`` (all text so
      far), ``worker.wait_for_log(regex_or_text, timeout)`` (returns the matching line).
    * ``env`` entries are added to the environment. ``HF_HUB_OFFLINE=1`` is always set (nothing
      may download weights); ``FLARELET_CACHE`` is passed through from the environment, so
      converted weights are reused between runs. ``COLUMNS=200`` keeps rich tables on one line.
    * ``ready=False`` returns right after starting (for commands expected to fail:
      ``worker.wait()`` gives the exit code).
    * On exit the process group gets SIGTERM, then SIGKILL after 10 s; ``worker.returncode``
      holds the exit status.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
_READY = re.compile(r"Ready on (http://\S+)")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return _free_port()


def flarelet_command() -> list[str]:
    """The installed ``flarelet`` script next to this interpreter, else ``python -m flarelet``."""
    script = Path(sys.executable).with_name("flarelet")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "flarelet"]


class RunningWorker:
    """A ``flarelet dev`` subprocess and what it printed."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.url = ""
        self._lines: list[str] = []
        self._cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self._cond:
                self._lines.append(line.rstrip("\n"))
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    @property
    def output(self) -> str:
        with self._cond:
            return "\n".join(self._lines)

    @property
    def lines(self) -> list[str]:
        with self._cond:
            return list(self._lines)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    @property
    def returncode(self) -> int | None:
        return self.proc.poll()

    def wait_for_log(self, pattern: str | re.Pattern[str], timeout: float = 30.0, start: int = 0) -> str:
        """Wait until a line (from index ``start``) matches ``pattern`` (a regex, or plain text)."""
        regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._lines[start:]:
                    if regex.search(line):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    raise AssertionError(
                        f"no log line matching {regex.pattern!r}; output so far:\n" + "\n".join(self._lines)
                    )
                self._cond.wait(min(remaining, 0.2))

    def wait(self, timeout: float = 30.0) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(5)
        return code

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(5)


@contextlib.contextmanager
def _serve_worker(
    target: str | os.PathLike[str],
    *args: str,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    ready: bool = True,
    cwd: str | os.PathLike[str] | None = None,
) -> Iterator[RunningWorker]:
    argv = [*flarelet_command(), "dev", str(target), *args]
    if "--port" not in args:
        argv += ["--port", "0"]
    environ = dict(os.environ)
    environ.update({"HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "NO_COLOR": "1"})
    environ.update(env or {})
    proc = subprocess.Popen(
        argv,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
        env=environ,
        cwd=cwd or REPO,
        start_new_session=True,
    )
    worker = RunningWorker(proc)
    try:
        if ready:
            line = worker.wait_for_log(_READY, timeout)
            worker.url = _READY.search(line).group(1)  # type: ignore[union-attr]
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="session")
def serve_worker():
    """``serve_worker(target, *cli_args, env=..., timeout=..., ready=True)``: see the module docstring
    (session-scoped: it returns the context manager, so module-scoped fixtures can start a server too)."""
    return _serve_worker


#: The real recordings the AI tests transcribe, with their references (``manifest.json``) and the
#: attribution and licence of each clip (``README.md``). Part of the repository: nothing is read from outside it.
AUDIO_DIR = REPO / "tests" / "data" / "audio"


@pytest.fixture(scope="session")
def audio_dir() -> Path:
    """The test recordings folder (``tests/data/audio``)."""
    return AUDIO_DIR
