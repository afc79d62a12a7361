"""``flarelet ai serve`` when people interrupt it: Ctrl-C twice mid-transcription, and clients that go away.

Real processes, real sockets, the real tiny.en model (preloaded), a long real recording (the sonnet
twice, 106 s: seconds of transcription even on a fast machine).
"""

from __future__ import annotations

import io
import os
import re
import signal
import socket
import time
import wave
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from flarelet.bindings.ai.asr.audio import decode_audio

pytestmark = pytest.mark.slow

BROKEN = ("Traceback", "terminate called", "Exception in", "Aborted", "core dumped")
CANCELLED = re.compile(r"Workers AI: cancelled .*client went away.*; (\d+) cancelled so far")


@pytest.fixture(scope="module")
def long_wav(audio_dir: Path) -> bytes:
    samples = np.tile(decode_audio((audio_dir / "librivox_sonnet001.mp3").read_bytes()), 2)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return buf.getvalue()


def _serve(rest: Any, *args: str, **env: str) -> Any:
    return rest.start_serve(
        "--preload",
        rest.TINY,
        "--api-token",
        rest.TOKEN,
        *args,
        env={"FLARELET_AI_TIMEOUT": "600", **env},
        timeout=300,
    )


def _wait_for(served: Any, pattern: re.Pattern[str] | str, timeout: float = 60) -> str:
    regex = pattern if isinstance(pattern, re.Pattern) else re.compile(re.escape(pattern))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in list(served.lines):
            if regex.search(line):
                return line
        if served.proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"no line matching {regex.pattern!r}:\n" + "\n".join(served.lines))


def _post_raw(served: Any, rest: Any, body: bytes) -> socket.socket:
    """POST the audio as curl --data-binary does, over a socket the test can close at will."""
    host, port = re.match(r"http://([^:]+):(\d+)", served.base).groups()  # type: ignore[union-attr]
    path = f"/client/v4/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY}"
    sock = socket.create_connection((host, int(port)))
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: Bearer {rest.TOKEN}\r\n"
        f"Content-Type: application/octet-stream\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def test_ai_serve_second_ctrl_c_mid_transcription_exits_130_without_traceback(rest, long_wav):
    served = _serve(rest)
    try:
        client = _post_raw(served, rest, long_wav)
        time.sleep(1.5)  # the body is in and decoded: the transcription is under way
        os.kill(served.proc.pid, signal.SIGINT)
        _wait_for(served, "Shutting down: finishing 1 request in flight (press Ctrl-C again to quit now)")
        assert served.proc.poll() is None
        sent = time.monotonic()
        os.kill(served.proc.pid, signal.SIGINT)
        assert served.proc.wait(10) == 130
        assert time.monotonic() - sent < 3.0
        client.settimeout(10)
        assert client.recv(1024) == b""  # the connection closed: no 500 page
        client.close()
    finally:
        if served.proc.poll() is None:
            served.proc.kill()
    time.sleep(0.2)  # the reader thread takes the last lines
    output = "\n".join(served.lines)
    assert "Ctrl-C again: quitting now, abandoning 1 request" in output
    assert not [line for line in served.lines if any(bad in line for bad in BROKEN)], output


def test_a_client_that_goes_away_cancels_its_running_and_queued_work(rest, long_wav, audio_dir):
    # one worker, no batching: the second request waits in the queue behind the first
    served = _serve(rest, "--log-level", "debug", FLARELET_AI_WORKERS="1", FLARELET_AI_MAX_BATCH="1")
    try:
        running = _post_raw(served, rest, long_wav)
        _wait_for(served, "Workers AI: started", timeout=60)  # on the only worker: the next one must queue
        queued = _post_raw(served, rest, long_wav)
        time.sleep(1.5)  # decoded and queued behind the first
        queued.close()  # gone while queued
        line = _wait_for(served, CANCELLED, timeout=30)
        assert "while queued" in line and CANCELLED.search(line).group(1) == "1"  # type: ignore[union-attr]
        closed = time.monotonic()
        running.close()  # gone mid-transcription: the engine stops at its next step
        line = _wait_for(served, re.compile(CANCELLED.pattern.replace(r"(\d+)", "2")), timeout=30)
        assert "while running" in line
        assert time.monotonic() - closed < 10  # far less than the rest of a 106 s transcription
        deadline = time.monotonic() + 5  # the request lines: flushed by the event loop, not the engine's thread
        while len([x for x in served.lines if "canceled: client disconnected" in x]) < 2:
            assert time.monotonic() < deadline, "\n".join(served.lines)
            time.sleep(0.05)
        # the service is free again: a short request is answered at once
        short = (audio_dir / "whatstheweatherlike.mp3").read_bytes()
        reply = httpx.post(
            f"{served.base}/accounts/{rest.ACCOUNT}/ai/run/{rest.TINY}",
            content=short,
            headers={"Authorization": f"Bearer {rest.TOKEN}"},
            timeout=60,
        )
        assert reply.status_code == 200 and "weather" in reply.json()["result"]["text"].lower()
    finally:
        served.proc.terminate()
        served.proc.wait(20)
    assert not [line for line in served.lines if any(bad in line for bad in BROKEN)], "\n".join(served.lines)


def test_dev_rest_client_that_goes_away_is_logged_as_canceled(serve_worker, rest, long_wav):
    """Inside flarelet dev the REST routes are cancelled the same way (one protocol, one request task)."""
    project = Path(__file__).resolve().parents[2] / "examples" / "whisper"
    with serve_worker(project, "--no-watch", "--api-token", rest.TOKEN, "--account-id", rest.ACCOUNT) as worker:

        class Served:
            base = worker.url + "/client/v4"

        sock = _post_raw(Served, rest, long_wav)
        worker.wait_for_log("Loaded Whisper model", timeout=240)
        time.sleep(0.5)
        sock.close()
        worker.wait_for_log(CANCELLED, timeout=30)
        worker.wait_for_log(re.compile(r"POST /client/v4/accounts/.* canceled: client disconnected"))
