"""Hostile input, abrupt clients and stuck code against a real ``flarelet dev`` process (issue 16).

Every test drives the worker in ``hardening_project/`` (copied to a temp folder, so symlinks and
config changes stay out of the repository) over a real socket, with raw bytes where a well-behaved
HTTP client could not send what the probe sent: a body cut short, a header of 200 KB, a client
that trickles its headers. Each reproduces one defect the reliability probe found.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

pytestmark = pytest.mark.slow

PROJECT = Path(__file__).parent / "hardening_project"


def _copy_project(root: Path, *, cpu_ms: int = 300, flarelet: str = "") -> Path:
    target = root / "project"
    shutil.copytree(PROJECT, target)
    toml = target / "wrangler.toml"
    text = toml.read_text().replace("cpu_ms = 300", f"cpu_ms = {cpu_ms}")
    if flarelet:
        text += f"\n[flarelet]\n{flarelet}\n"
    toml.write_text(text)
    return target


def _address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def _connect(url: str, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection(_address(url), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection."""
    chunks = []
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks)


def _exchange(url: str, request: bytes, timeout: float = 10.0) -> bytes:
    with _connect(url, timeout) as sock:
        sock.sendall(request)
        return _read_all(sock)


@pytest.fixture(scope="module")
def dev(tmp_path_factory, serve_worker) -> Iterator:
    root = _copy_project(tmp_path_factory.mktemp("hardening"))
    secret = root.parent / "secret.txt"
    secret.write_text("top secret outside the assets folder\n")
    public = root / "public"
    (public / "link_secret.txt").symlink_to(secret)
    (public / "link_up").symlink_to("..")
    (public / "link_inside.txt").symlink_to("hello.txt")
    with serve_worker(root, "--persist-to", str(root / "state")) as worker:
        yield worker


def _log_index(worker) -> int:
    return len(worker.lines)


# -- 1. an aborted upload is never stored as complete -------------------------------------------


def test_upload_cut_short_raises_in_worker_and_stores_nothing_as_workerd_does(dev):
    start = _log_index(dev)
    head = b"PUT /kv/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n"
    with _connect(dev.url) as sock:
        sock.sendall(head + b"a" * 50_000)
        time.sleep(0.3)
    # the worker's body read raises (or, once the server cancels requests whose client left, the
    # request is cancelled before the worker runs): either way the partial body is never stored
    dev.wait_for_log(re.compile(r"Network connection lost|PUT /kv/cut canceled: client disconnected"), start=start)
    assert httpx.get(dev.url + "/kv/cut").status_code == 404


def test_chunked_upload_cut_short_stores_nothing_in_r2(dev):
    start = _log_index(dev)
    head = b"PUT /r2/cut HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    with _connect(dev.url) as sock:
        sock.sendall(head + b"c350\r\n" + b"b" * 50_000 + b"\r\n")
        time.sleep(0.3)
    dev.wait_for_log("PUT /r2/cut", start=start)
    assert httpx.get(dev.url + "/r2/cut").status_code == 404
    # a whole upload still goes through
    assert httpx.put(dev.url + "/r2/whole", content=b"b" * 50_000).status_code == 201
    assert len(httpx.get(dev.url + "/r2/whole").content) == 50_000


# -- 3. an exception in a streamed body aborts the connection --------------------------------------


def test_stream_error_aborts_connection_without_terminating_chunk(dev):
    start = _log_index(dev)
    data = _exchange(dev.url, b"GET /stream-fails HTTP/1.1\r\nHost: x\r\n\r\n")
    assert data.startswith(b"HTTP/1.1 200") and b"first chunk" in data
    assert not data.endswith(b"0\r\n\r\n"), data[-40:]
    dev.wait_for_log("the stream broke", start=start)
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.get(dev.url + "/stream-fails")


# -- 4. a header value outside Latin-1 raises TypeError where the worker sets it --------------------


def test_unencodable_header_value_raises_type_error_in_worker_as_workerd_does(dev):
    start = _log_index(dev)
    r = httpx.get(dev.url + "/bad-header")
    assert r.status_code == 500
    assert r.text.startswith("TypeError"), r.text[:200]
    dev.wait_for_log("GET /bad-header 500 Internal Server Error", start=start)
    assert httpx.get(dev.url + "/kv/bad-header-error").text.startswith("TypeError")
    deadline = time.monotonic() + 10
    while httpx.get(dev.url + "/kv/bad-header-wait-until").status_code != 200:
        assert time.monotonic() < deadline, "the request's waitUntil work never ran"
        time.sleep(0.1)


# -- 6. log lines cannot be forged ------------------------------------------------------------------


def test_log_lines_escape_control_characters_from_the_url(dev):
    start = _log_index(dev)
    httpx.get(dev.url + "/x%0A%5Bflarelet:info%5D%20GET%20/admin%20200%20OK")
    httpx.get(dev.url + "/y%1B%5B31mred%1B%5B0m%0D")
    httpx.get(dev.url + "/log-marker")
    dev.wait_for_log("GET /log-marker", start=start)
    lines = dev.lines[start:]
    assert not [line for line in lines if line.startswith("[flarelet:info] GET /admin")], lines
    assert not [line for line in lines if "\x1b" in line or "\r" in line], lines
    assert any("\\n[flarelet:info] GET /admin 200 OK 200 OK" in line for line in lines), lines


# -- 8. header limits --------------------------------------------------------------------------------


def test_request_headers_over_128_kb_get_431_as_cloudflare(dev):
    big = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (200 * 1024) + b"\r\n\r\n"
    assert _exchange(dev.url, big).startswith(b"HTTP/1.1 431 ")
    many = (
        b"GET / HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: %s\r\n" % (i, b"v" * 100) for i in range(1500)) + b"\r\n"
    )
    assert _exchange(dev.url, many).startswith(b"HTTP/1.1 431 ")
    long_url = b"GET /" + b"u" * (17 * 1024) + b" HTTP/1.1\r\nHost: x\r\n\r\n"
    assert _exchange(dev.url, long_url).startswith(b"HTTP/1.1 414 ")
    near = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (100 * 1024) + b"\r\nConnection: close\r\n\r\n"
    assert _exchange(dev.url, near).startswith(b"HTTP/1.1 200 ")
    assert httpx.get(dev.url + "/").status_code == 200


# -- 9. assets never leave their folder ---------------------------------------------------------------


def test_assets_symlinks_out_of_the_folder_are_refused(dev):
    assert httpx.get(dev.url + "/hello.txt").text == "hello from the assets folder\n"
    assert httpx.get(dev.url + "/link_inside.txt").text == "hello from the assets folder\n"
    for path in (
        "/link_secret.txt",
        "/link_up/secret.txt",
        "/link_up/project/src/entry.py",
        "/link_up/project/wrangler.toml",
    ):
        r = httpx.get(dev.url + path)
        assert "top secret" not in r.text and "WorkerEntrypoint" not in r.text and "compatibility_date" not in r.text
        assert r.text == "ok"  # not an asset: the worker answers


# -- 2. CPU limit and signals -------------------------------------------------------------------------


def test_cpu_limit_ends_request_with_1102_and_server_keeps_serving_as_cloudflare(dev):
    start = _log_index(dev)
    began = time.monotonic()
    r = httpx.get(dev.url + "/spin", timeout=30)
    assert time.monotonic() - began < 10
    assert r.status_code == 503 and "1102" in r.text and "exceeded resource limits" in r.text
    dev.wait_for_log("exceeded its CPU time limit", start=start)
    r = httpx.get(dev.url + "/spin-swallow", timeout=30)
    assert r.status_code == 503 and "1102" in r.text
    assert httpx.get(dev.url + "/busy/50").text == "done"
    assert httpx.get(dev.url + "/").text == "ok"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_server_within_2_s_while_a_handler_spins(tmp_path, serve_worker, signum):
    root = _copy_project(tmp_path, cpu_ms=300_000)
    with serve_worker(root) as worker:
        holder: list[object] = []

        def spin() -> None:
            try:
                holder.append(httpx.get(worker.url + "/spin", timeout=30))
            except httpx.HTTPError as exc:
                holder.append(exc)

        thread = threading.Thread(target=spin, daemon=True)
        thread.start()
        time.sleep(1.0)  # the handler is spinning now
        began = time.monotonic()
        os.kill(worker.proc.pid, signum)
        worker.proc.wait(timeout=10)
        elapsed = time.monotonic() - began
        thread.join(5)
    assert elapsed < 2.0, f"the server took {elapsed:.2f}s to stop"


# -- 8. timeouts against slow clients ------------------------------------------------------------------


def test_slow_clients_are_closed_by_the_header_and_body_timeouts(tmp_path, serve_worker):
    root = _copy_project(tmp_path, flarelet="header_timeout_s = 1\nbody_timeout_s = 1")
    with serve_worker(root, "--persist-to", str(root / "state")) as worker:
        # a connection that never sends anything
        with _connect(worker.url, timeout=6) as sock:
            began = time.monotonic()
            assert _read_all(sock) == b""
            assert time.monotonic() - began < 4
        # slowloris: one header line every 0.3 s never finishes the head
        with _connect(worker.url, timeout=6) as sock:
            began = time.monotonic()
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")
            closed = b""
            try:
                for i in range(30):
                    sock.sendall(b"X-Slow-%d: v\r\n" % i)
                    time.sleep(0.3)
            except (BrokenPipeError, ConnectionResetError):
                pass
            closed = _read_all(sock)
            assert time.monotonic() - began < 5
            assert closed == b"" or closed.startswith(b"HTTP/1.1 408 ")
        # a body that stops halfway: closed, and nothing stored
        with _connect(worker.url, timeout=6) as sock:
            began = time.monotonic()
            sock.sendall(b"PUT /kv/slow HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"z" * 10)
            _read_all(sock)
            assert time.monotonic() - began < 5
        assert httpx.get(worker.url + "/kv/slow").status_code == 404
        assert httpx.get(worker.url + "/").text == "ok"
