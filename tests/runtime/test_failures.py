"""Failures stay contained: 500 pages, wrong return types, import errors, body limits."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

WORKER = """
from workers import WorkerEntrypoint, Response

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.rsplit("/", 1)[1]
        if path == "boom":
            raise KeyError("missing-thing")
        if path == "dict":
            return {"not": "a response"}
        if path == "none":
            return None
        if path == "size":
            return Response(str(len(await request.bytes())))
        return Response("ok")
"""


@pytest.fixture
def server(make_worker, run_worker):
    with run_worker(make_worker(WORKER), max_body_bytes=1000) as srv:
        yield srv


def test_exception_gives_500_text_and_server_keeps_serving(server, caplog):
    with caplog.at_level(logging.ERROR, logger="flarelet"):
        r = httpx.get(server.url + "/boom")
    assert r.status_code == 500
    assert r.headers["content-type"].startswith("text/plain")
    assert r.text.startswith("KeyError: 'missing-thing'") and "Traceback" in r.text
    assert "Uncaught exception in fetch handler" in caplog.text and "missing-thing" in caplog.text
    assert httpx.get(server.url + "/fine").text == "ok"


def test_exception_gives_html_page_to_browsers(server):
    r = httpx.get(server.url + "/boom", headers={"accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert r.status_code == 500 and r.headers["content-type"].startswith("text/html")
    assert "<h1>KeyError: &#x27;missing-thing&#x27;</h1>" in r.text and "<pre>" in r.text


@pytest.mark.parametrize(("path", "type_name"), [("dict", "dict"), ("none", "NoneType")])
def test_non_response_return_names_the_type(server, path, type_name):
    r = httpx.get(f"{server.url}/{path}")
    assert r.status_code == 500
    assert f"The fetch handler returned {type_name}" in r.text and "not a Response" in r.text


def test_body_limit_gives_413(server):
    assert httpx.post(server.url + "/size", content=b"x" * 1000).text == "1000"
    r = httpx.post(server.url + "/size", content=b"x" * 1001)
    assert r.status_code == 413 and "limit of 1000 bytes" in r.text

    def chunks():
        for _ in range(5):
            yield b"y" * 300

    r = httpx.post(server.url + "/size", content=chunks())  # chunked: no content-length
    assert r.status_code == 413
    assert httpx.get(server.url + "/fine").text == "ok"


def test_default_body_limit_is_cloudflares_100_mb(make_worker):
    from flarelet.runtime.host import DEFAULT_MAX_BODY_BYTES, WorkerHost

    assert DEFAULT_MAX_BODY_BYTES == 100 * 1024 * 1024
    assert WorkerHost.from_config(make_worker(WORKER)).max_body_bytes == DEFAULT_MAX_BODY_BYTES
    configured = make_worker(WORKER, "[flarelet]\nmax_body_bytes = 5000\n")
    assert WorkerHost.from_config(configured).max_body_bytes == 5000


def test_declared_oversized_body_is_refused_before_reading(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /size HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n")
        reply = sock.recv(4096)
    assert reply.startswith(b"HTTP/1.1 413")


def test_import_error_is_served_as_500_until_fixed(make_worker, run_worker):
    root = make_worker("from workers import Response\nraise RuntimeError('broken at import')\n")
    with run_worker(root) as server:
        r = httpx.get(server.url)
        assert r.status_code == 500 and "broken at import" in r.text
        (root / "src/entry.py").write_text(
            "from workers import Response\nasync def on_fetch(request):\n    return Response('fixed')\n"
        )
        assert server.host.reload_code()
        assert httpx.get(server.url).text == "fixed"


def test_websocket_is_refused_cleanly(server):
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        reply = sock.recv(4096)
    assert not reply.startswith(b"HTTP/1.1 101")
    assert httpx.get(server.url + "/fine").text == "ok"
