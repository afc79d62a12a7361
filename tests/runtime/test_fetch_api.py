"""Request, Response and Headers as a worker sees them, over a real server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flarelet.runtime.body import FormData
from flarelet.runtime.headers import Headers
from flarelet.runtime.request import Request
from flarelet.runtime.response import Response

READER = """
import json
from workers import WorkerEntrypoint, Response, Headers

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3].split("?")[0]
        if path == "text":
            return Response(await request.text())
        if path == "json":
            return Response.json({"got": await request.json()}, status=201, headers={"x-kind": "json"})
        if path == "bytes":
            data = await request.bytes()
            return Response(bytes(reversed(data)), headers={"content-type": "application/octet-stream"})
        if path == "form":
            form = await request.form_data()
            out = {}
            for name, value in form.items():
                if hasattr(value, "name"):
                    out[name] = {"filename": value.name, "type": value.type, "text": await value.text()}
                else:
                    out[name] = value
            return Response.json({"fields": out, "all_tags": form.get_all("tag")})
        if path == "clone":
            copy = request.clone()
            first = await request.text()
            second = await copy.text()
            return Response(first + "|" + second)
        if path == "twice":
            await request.text()
            try:
                await request.text()
            except TypeError as exc:
                return Response("TypeError: " + str(exc), status=400)
            return Response("read twice?!")
        if path == "headers":
            h = request.headers
            return Response.json({
                "ua": h.get("X-Custom"), "upper": h["X-CUSTOM"], "has": h.has("x-custom"),
                "missing": h.get("nope"), "multi": h.get("x-multi"), "cf": request.cf["country"],
            })
        if path == "cookies":
            headers = Headers()
            headers.append("Set-Cookie", "a=1")
            headers.append("set-cookie", "b=2")
            return Response("cookies", headers=headers)
        if path == "redirect":
            return Response.redirect("https://example.com/new", 301)
        if path == "stream":
            async def chunks():
                for i in range(3):
                    yield f"chunk{i};"
            return Response(chunks(), headers={"content-type": "text/plain"})
        if path == "empty":
            return Response(None, status=204)
        if path == "body-iter":
            total = 0
            async for chunk in request.body:
                total += len(chunk)
            return Response(str(total))
        return Response("?", status=404)
"""


@pytest.fixture
def server(make_worker, run_worker):
    with run_worker(make_worker(READER)) as srv:
        yield srv


def test_request_text_json_bytes(server):
    assert httpx.post(server.url + "/text", content="héllo").text == "héllo"
    r = httpx.post(server.url + "/json", json={"a": [1, 2]})
    assert (r.status_code, r.json(), r.headers["x-kind"], r.headers["content-type"]) == (
        201,
        {"got": {"a": [1, 2]}},
        "json",
        "application/json",
    )
    r = httpx.post(server.url + "/bytes", content=bytes([1, 2, 3, 255]))
    assert r.content == bytes([255, 3, 2, 1])


def test_request_form_data_urlencoded_and_multipart(server):
    r = httpx.post(server.url + "/form", data={"name": "ada", "tag": ["x", "y"]})
    assert r.json() == {"fields": {"name": "ada", "tag": "y"}, "all_tags": ["x", "y"]}  # items() yields every entry
    r = httpx.post(
        server.url + "/form", data={"name": "bob"}, files={"upload": ("notes.txt", b"file body", "text/plain")}
    )
    assert r.json()["fields"] == {
        "name": "bob",
        "upload": {"filename": "notes.txt", "type": "text/plain", "text": "file body"},
    }


def test_clone_and_single_use_body(server):
    assert httpx.post(server.url + "/clone", content="abc").text == "abc|abc"
    r = httpx.post(server.url + "/twice", content="abc")
    assert r.status_code == 400 and r.text.startswith("TypeError: Body has already been used")


def test_request_body_async_iteration(server):
    assert httpx.post(server.url + "/body-iter", content=b"x" * 70_000).text == "70000"


def test_headers_case_insensitive_and_multi_valued(server):
    r = httpx.get(server.url + "/headers", headers=[("X-Custom", "v1"), ("x-multi", "a"), ("X-Multi", "b")])
    assert r.json() == {"ua": "v1", "upper": "v1", "has": True, "missing": None, "multi": "a, b", "cf": "US"}
    r = httpx.get(server.url + "/cookies")
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_redirect_stream_and_empty(server):
    r = httpx.get(server.url + "/redirect")
    assert (r.status_code, r.headers["location"]) == (301, "https://example.com/new")
    with httpx.stream("GET", server.url + "/stream") as r:
        assert "content-length" not in r.headers
        assert r.read() == b"chunk0;chunk1;chunk2;"
    r = httpx.get(server.url + "/empty")
    assert (r.status_code, r.content) == (204, b"")


# -- the same types without a server ---------------------------------------------------------------
def test_headers_api():
    h = Headers({"Content-Type": "text/plain"})
    h.append("X-A", "1")
    h.append("x-a", "2")
    assert h.get("x-a") == "1, 2" and h.getAll("X-A") == ["1", "2"] and h["CONTENT-TYPE"] == "text/plain"
    h.set("X-A", "3")
    assert h.get_all("x-a") == ["3"]
    h.delete("x-a")
    assert "x-a" not in h and dict(h) == {"content-type": "text/plain"}
    with pytest.raises(TypeError):
        h.set("bad name", "x")
    with pytest.raises(TypeError):
        h.set("x-ok", "line\nbreak")


def test_response_validation():
    with pytest.raises(ValueError, match="range 200 to 599"):
        Response("x", status=99)
    with pytest.raises(TypeError, match="use Response.json"):
        Response({"a": 1})
    with pytest.raises(ValueError):
        Response.redirect("/x", 200)
    with pytest.raises(TypeError):
        Response("body", status=204)


async def test_response_reading_methods_and_clone():
    r = Response.json({"k": "v"})
    copy = r.clone()
    assert await r.json() == {"k": "v"}
    assert await copy.text() == '{"k":"v"}'
    with pytest.raises(TypeError):
        await r.text()

    async def gen():
        yield b"a"
        await asyncio.sleep(0)
        yield "b"

    streamed = Response(gen())
    twin = streamed.clone()
    assert await streamed.bytes() == b"ab" and await twin.text() == "ab"
    assert Response("x", status=404).ok is False and Response("x").status_text == "OK"


async def test_request_construction():
    form = FormData()
    form.append("a", "1")
    req = Request("https://example.com/x", method="post", body=form)
    assert req.method == "POST" and req.headers["content-type"].startswith("application/x-www-form-urlencoded")
    assert (await req.form_data()).get("a") == "1"
    with pytest.raises(TypeError, match="GET or HEAD"):
        Request("https://example.com/", body="x")
    copy = Request(Request("https://example.com/", method="PUT", body="b", headers={"a": "1"}), headers={"b": "2"})
    assert copy.method == "PUT" and copy.headers.get("b") == "2" and await copy.text() == "b"
