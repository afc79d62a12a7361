"""``Worker.fetch``: requests reach the worker in process, shaped as the dev server shapes them."""

from __future__ import annotations

from pathlib import Path

import pytest

from flarelet.runtime.request import Request
from flarelet.runtime.response import Response
from flarelet.testing import DEFAULT_URL, Worker


async def test_path_is_sent_to_the_default_origin(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/echo?x=1")
        data = await resp.json()
    assert resp.status == 200
    assert data["url"] == f"{DEFAULT_URL}/echo?x=1"
    assert data["method"] == "GET"
    assert data["headers"]["host"] == "localhost:8787"
    assert data["colo"] == "DFW"  # request.cf as the dev server fills it


async def test_full_url_method_headers_and_body(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch(
            "https://example.com/echo", method="PUT", headers={"x-test": "yes"}, body=b"raw bytes"
        )
        data = await resp.json()
    assert data["url"] == "https://example.com/echo"
    assert data["method"] == "PUT"
    assert data["headers"]["x-test"] == "yes"
    assert data["headers"]["host"] == "example.com"
    assert data["body"] == "raw bytes"


async def test_json_body_gets_its_content_type(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        data = await (await worker.fetch("/echo", method="POST", json={"a": [1, 2]})).json()
    assert data["body"] == '{"a":[1,2]}'
    assert data["headers"]["content-type"] == "application/json"


async def test_a_request_object(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        request = Request("http://localhost:8787/echo", method="POST", body="hi", headers={"x-a": "1"})
        data = await (await worker.fetch(request)).json()
    assert (data["method"], data["body"], data["headers"]["x-a"]) == ("POST", "hi", "1")


async def test_bad_arguments_are_refused(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        with pytest.raises(TypeError, match="body= or json="):
            await worker.fetch("/echo", method="POST", body="x", json={})
        with pytest.raises(ValueError, match="path starting with '/'"):
            await worker.fetch("echo")
        with pytest.raises(TypeError, match="GET or HEAD"):
            await worker.fetch("/echo", body="x")


async def test_an_exception_in_the_worker_is_a_500_page(project: Path, caplog: pytest.LogCaptureFixture) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/boom", headers={"accept": "application/json"})
        assert resp.status == 500
        assert "boom from the worker" in await resp.text()
        assert (await worker.fetch("/")).status == 200  # still serving
    assert "boom from the worker" in caplog.text


async def test_streamed_response_body(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/stream")
        assert await resp.text() == "chunk0;chunk1;chunk2;"


async def test_assets_and_run_worker_first_as_configured(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        static = await worker.fetch("/static.txt")
        assert (static.status, await static.text()) == (200, "a static file\n")
        assert static.headers.get("etag")
        # run_worker_first = ["/api/*"]: the worker answers even where an asset could
        api = await worker.fetch("/api/anything")
        assert await api.text() == "Hello from /api/anything"
        assert (await worker.fetch("/missing.txt")).status == 404  # the worker's 404


async def test_the_test_scheduled_route_works_as_in_the_dev_server(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/cdn-cgi/handler/scheduled?cron=*/5+*+*+*+*&time=1000&format=json")
        assert resp.status == 200
        assert await resp.json() == {"outcome": "ok", "noRetry": False}
        assert await (await worker.fetch("/events")).json() == ["cron:*/5 * * * *:1000"]


async def test_subrequests_to_the_own_origin_are_answered_in_process(project: Path) -> None:
    async with Worker.from_config(project) as worker:
        resp = await worker.fetch("/self")
        data = await resp.json()
    assert data["method"] == "POST"
    assert data["body"] == "from myself"
    assert data["url"] == f"{DEFAULT_URL}/echo"


async def test_outbound_handler_answers_other_hosts(project: Path) -> None:
    seen: list[str] = []

    async def upstream(request: Request) -> Response | None:
        seen.append(request.url)
        if request.url.startswith("https://api.example.com/"):
            return Response("from the fake upstream", status=202)
        return None

    async with Worker.from_config(project, outbound=upstream) as worker:
        resp = await worker.fetch("/proxy?url=https://api.example.com/data")
        assert (resp.status, await resp.text()) == (202, "from the fake upstream")
        # None lets a subrequest through: to the own origin it still reaches the worker
        resp = await worker.fetch("/proxy?url=http://localhost:8787/")
        assert await resp.text() == "Hello from /"
    assert seen == ["https://api.example.com/data", "http://localhost:8787/"]


async def test_a_custom_origin(project: Path) -> None:
    async with Worker.from_config(project, url="https://my.worker.dev") as worker:
        data = await (await worker.fetch("/self")).json()
    assert data["url"] == "https://my.worker.dev/echo"


async def test_fetch_starts_the_worker_when_needed_and_refuses_after_close(project: Path) -> None:
    worker = Worker.from_config(project)
    assert (await worker.fetch("/")).status == 200
    await worker.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await worker.fetch("/")
