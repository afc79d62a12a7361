"""Ctrl-C in the middle of a real transcription, on a real ``flarelet dev`` process over real sockets.

The first SIGINT says how many requests it is finishing and finishes them; the second exits at once
with status 130: no traceback, no ``Exception in 'lifespan' protocol``, no native abort
(``terminate called without an active exception``, status 134) from inference threads.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

from flarelet.bindings.ai.asr.audio import decode_audio

from .conftest import wav_bytes

pytestmark = pytest.mark.slow

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "whisper"
TINY = "@cf/openai/whisper-tiny-en"
LOADED = "Loaded Whisper model"
BROKEN = ("Traceback", "terminate called", "Exception in", "Aborted", "core dumped")


class _Files(http.server.BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self) -> None:  # noqa: N802 -- http.server's API
        body = self.files.get(self.path)
        self.send_response(200 if body is not None else 404)
        self.send_header("content-length", str(len(body or b"")))
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def audio_url(clip) -> Iterator[str]:
    """An HTTP server (stands in for the docs' GitHub URL) with a long clip: the sonnet twice (106 s,
    several seconds of transcription even on a fast machine, so both signals land mid-way)."""
    sonnet = decode_audio(clip("librivox_sonnet001.mp3"))
    handler = functools.partial(type("Files", (_Files,), {"files": {"/long.wav": wav_bytes(np.tile(sonnet, 2))}}))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/long.wav"
    finally:
        server.shutdown()
        server.server_close()


def _start_transcription(worker) -> tuple[threading.Thread, dict]:
    """GET / (the worker fetches the long clip and runs tiny.en on it) from a client thread."""
    outcome: dict = {}

    def call() -> None:
        try:
            outcome["response"] = httpx.get(worker.url + "/", params={"model": TINY}, timeout=300)
        except httpx.HTTPError as exc:
            outcome["error"] = exc

    client = threading.Thread(target=call, daemon=True)
    client.start()
    worker.wait_for_log(LOADED, timeout=240)  # the model is loaded: the transcription starts now
    time.sleep(0.3)
    return client, outcome


def test_second_ctrl_c_mid_transcription_exits_130_at_once_without_traceback(serve_worker, audio_url):
    with serve_worker(EXAMPLE, "--no-watch", "--var", f"AUDIO_URL:{audio_url}", timeout=120) as worker:
        client, outcome = _start_transcription(worker)
        os.kill(worker.proc.pid, signal.SIGINT)
        worker.wait_for_log("Shutting down: finishing 1 request in flight (press Ctrl-C again to quit now)")
        assert worker.returncode is None  # still finishing the transcription
        sent = time.monotonic()
        os.kill(worker.proc.pid, signal.SIGINT)
        assert worker.wait(timeout=10) == 130
        assert time.monotonic() - sent < 3.0
        client.join(10)
        output = worker.output
    assert "Ctrl-C again: quitting now, abandoning 1 request" in output
    assert not [line for line in output.splitlines() if any(bad in line for bad in BROKEN)], output
    # the client saw its connection close, not a 500 page
    assert "error" in outcome and "response" not in outcome, outcome


def test_first_ctrl_c_finishes_the_transcription_and_says_so(serve_worker, audio_url):
    with serve_worker(EXAMPLE, "--no-watch", "--var", f"AUDIO_URL:{audio_url}", timeout=120) as worker:
        client, outcome = _start_transcription(worker)
        os.kill(worker.proc.pid, signal.SIGINT)
        notice = worker.wait_for_log("Shutting down: finishing 1 request in flight")
        assert worker.wait(timeout=240) == 0
        client.join(10)
        lines = worker.lines
    response = outcome["response"]
    assert response.status_code == 200, response.text
    assert "fairest creatures" in response.json()["response"]["text"]
    assert lines.index(notice) < next(i for i, line in enumerate(lines) if "GET / 200 OK" in line)
    assert not [line for line in lines if any(bad in line for bad in BROKEN)], "\n".join(lines)
