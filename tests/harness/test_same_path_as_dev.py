"""The harness answers as the dev server does, because both go through ``WorkerHost.serve``.

Each request is sent twice -- to a real ``flarelet dev`` process over HTTP and to
``Worker.fetch`` in process -- and the answers are compared.
"""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from flarelet.testing import Worker

REQUESTS = [
    ("GET", "/"),
    ("GET", "/static.txt"),
    ("HEAD", "/static.txt"),
    ("GET", "/api/x"),
    ("GET", "/missing.txt"),
    ("POST", "/static.txt"),
    ("GET", "/stream"),
    ("GET", "/cdn-cgi/handler/scheduled?cron=a&time=5&format=json"),
    ("GET", "/__scheduled?cron=b"),
    ("GET", "/cdn-cgi/handler/scheduled?time=nonsense"),
]
COMPARED_HEADERS = ("content-type", "etag", "cache-control")


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
def test_same_answers_as_flarelet_dev(project: Path, serve_worker) -> None:
    with serve_worker(project) as server:
        expected = []
        for method, path in REQUESTS:
            resp = httpx.request(method, server.url + path)
            expected.append(
                (method, path, resp.status_code, resp.content, {h: resp.headers.get(h) for h in COMPARED_HEADERS})
            )

    async def in_process() -> list:
        got = []
        async with Worker.from_config(project) as worker:
            for method, path in REQUESTS:
                resp = await worker.fetch(path, method=method)
                got.append(
                    (method, path, resp.status, await resp.bytes(), {h: resp.headers.get(h) for h in COMPARED_HEADERS})
                )
        return got

    import asyncio

    got = asyncio.run(in_process())
    assert got == expected


@pytest.mark.slow  # a subprocess or timed wait: kept out of the fast subset
async def test_other_hosts_go_to_the_network(project: Path, serve_worker) -> None:
    """A subrequest no handler answers leaves the process: here, to a real dev server."""
    with serve_worker(project, "--var", "GREETING:Served over HTTP") as server:
        async with Worker.from_config(project) as worker:
            resp = await worker.fetch(f"/proxy?url={server.url}/")
            assert await resp.text() == "Served over HTTP from /"


async def test_no_socket_is_opened(project: Path) -> None:
    me = psutil.Process()

    def listening() -> int:
        return sum(1 for c in me.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN)

    before = listening()
    async with Worker.from_config(project) as worker:
        assert (await worker.fetch("/self")).status == 200
        assert listening() == before
