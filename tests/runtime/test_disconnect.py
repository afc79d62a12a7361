"""A client that goes away cancels its request, as on Cloudflare: the handler gets CancelledError at
its next await, its ``waitUntil`` work still runs, and the log says ``canceled: client disconnected``.

Real dev server, real sockets; a large body too, because uvicorn left reading paused after a body
that crossed its 64 KiB buffer mark, and then never saw the client leave.
"""

from __future__ import annotations

import re
import socket
import time
from pathlib import Path

import pytest

WORKER = """
import asyncio
from pathlib import Path
from workers import Response

async def on_fetch(request, env, ctx):
    out = Path(env.OUT)
    body = await request.bytes()
    (out / "received").write_text(str(len(body)))

    async def later():
        (out / "wait_until").write_text("ran")

    ctx.waitUntil(later())
    try:
        await asyncio.sleep(30)  # stands in for a long transcription
    except asyncio.CancelledError:
        (out / "cancelled").write_text("yes")
        raise
    return Response("too late")
"""


def _wait_for(path: Path, timeout: float = 10.0) -> str:
    """The file's text once the worker has written it (``write_text`` creates the file before it
    writes: an existing but empty file is not written yet)."""
    deadline = time.monotonic() + timeout
    while not (path.exists() and path.read_text()):
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
    return path.read_text()


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
@pytest.mark.parametrize("size", [0, 5, 400_000])
def test_client_that_goes_away_cancels_the_handler_as_cloudflare_does(make_worker, run_worker, tmp_path, size):
    out = tmp_path / "out"
    out.mkdir()
    with run_worker(make_worker(WORKER), vars={"OUT": str(out)}) as server:
        client = socket.create_connection(("127.0.0.1", server.port))
        client.sendall(f"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: {size}\r\n\r\n".encode() + b"a" * size)
        assert _wait_for(out / "received") == str(size)
        started = time.monotonic()
        client.close()
        assert _wait_for(out / "cancelled") == "yes"
        assert time.monotonic() - started < 5  # not the handler's 30 s
        assert _wait_for(out / "wait_until") == "ran"
        deadline = time.monotonic() + 5
        while "canceled" not in server.log.getvalue() and time.monotonic() < deadline:
            time.sleep(0.02)
    assert re.search(r"\[flarelet:info\] POST /slow canceled: client disconnected \(\d+ms\)", server.log.getvalue())
