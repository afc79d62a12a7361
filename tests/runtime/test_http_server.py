"""HTTP/1.1 details of the dev server (one-write responses, HEAD, pipelining, keep-alive, streaming)."""

from __future__ import annotations

import socket

import httpx
import pytest

WORKER = """
import asyncio
from workers import WorkerEntrypoint, Response

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3]
        if path == "empty":
            return Response(None, status=204)
        if path == "slow-stream":
            async def body():
                for i in range(3):
                    yield f"part{i}\\n"
                    await asyncio.sleep(0.05)
            return Response(body())
        return Response("hello " + path)
"""


@pytest.fixture
def server(make_worker, run_worker):
    with run_worker(make_worker(WORKER)) as srv:
        yield srv


def raw_exchange(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(payload)
        chunks = []
        while True:
            data = sock.recv(65536)
            if not data:
                break
            chunks.append(data)
    return b"".join(chunks)


def test_pipelined_requests_are_answered_in_order(server):
    reply = raw_exchange(
        server.port,
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"
        b"GET /c HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    assert reply.count(b"HTTP/1.1 200 OK") == 3
    assert reply.index(b"hello a") < reply.index(b"hello b") < reply.index(b"hello c")


def test_head_and_204_have_no_body(server):
    reply = raw_exchange(
        server.port, b"HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /empty HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    head, _, rest = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 7" in head
    assert rest.startswith(b"HTTP/1.1 204")  # nothing between the HEAD reply and the next response


def test_keep_alive_connection_serves_many_requests(server):
    with httpx.Client() as client:
        texts = [client.get(f"{server.url}/n{i}").text for i in range(50)]
    assert texts == [f"hello n{i}" for i in range(50)]


def test_streamed_body_arrives_in_parts(server):
    with httpx.stream("GET", server.url + "/slow-stream") as r:
        parts = [chunk for chunk in r.iter_text() if chunk]
    assert "".join(parts) == "part0\npart1\npart2\n"
    assert len(parts) >= 2  # really streamed, not buffered into one response
