"""``pyodide``, ``pyodide.ffi`` and ``pyodide.http`` as Python Workers use them, over a real server."""

from __future__ import annotations

import httpx
import pytest

WORKER = r"""
import asyncio
import pyodide
from js import Object, Uint8Array
from pyodide.ffi import (JsException, JsProxy, create_once_callable, create_proxy, run_sync, to_js, to_py,
                         destroy_proxies)
from pyodide.http import pyfetch
from workers import Response, WorkerEntrypoint


class Handler:
    def __init__(self):
        self.seen = []

    def element(self, el):
        self.seen.append(el)


async def slow_double(x):
    await asyncio.sleep(0.01)
    return x * 2


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3].split("?")[0]
        if path == "to_js":
            b = to_js(b"abc")
            d_map = to_js({"a": {"b": 1}})
            d_obj = to_js({"a": {"b": 1}}, dict_converter=Object.fromEntries)
            arr = to_js([1, (2, 3), {"k": "v"}], dict_converter=Object.fromEntries)
            return Response.json({
                "bytes": [type(b).__name__, b.byteLength, b.buffer.byteLength, b.buffer.to_bytes().decode(),
                          isinstance(b, JsProxy), bytes(to_py(b)).decode()],
                "map": [type(d_map).__name__, d_map.get("a").get("b")],
                "obj": [type(d_obj).__name__, d_obj.a.b, to_py(d_obj)],
                "arr": [arr.length, list(arr[1]), arr[2].k],
                "scalars": [to_js(1), to_js("s"), to_js(None), to_js(True)],
                "depth": type(to_js({"a": {"b": 1}}, depth=1)["a"]).__name__,
                "version": pyodide.__version__,
            })
        if path == "proxies":
            h = Handler()
            px = create_proxy(h)
            px.element("x")
            px.destroy()
            try:
                px.element("y")
                destroyed = None
            except JsException as exc:
                destroyed = exc.name
            once = create_once_callable(lambda v: v + 1)
            first = once(1)
            try:
                once(2)
                second = "called twice"
            except JsException as exc:
                second = exc.name
            fn = create_proxy(lambda: "called")
            destroy_proxies([fn])
            return Response.json({"seen": h.seen, "destroyed": destroyed, "first": first, "second": second})
        if path == "run_sync":
            # called from the handler (the event loop's thread): runs on a helper loop
            return Response.json({"value": run_sync(slow_double(21))})
        if path == "pyfetch":
            target = request.url.split("to=", 1)[1]
            r = await pyfetch(target, method="POST", body="ping", headers={"x-from": "pyfetch"})
            try:
                r.raise_for_status()
                raised = None
            except OSError as exc:
                raised = str(exc)
            return Response.json({"status": r.status, "ok": r.ok, "text": await r.string(), "raised": raised,
                                  "type": type(r).__name__})
        if path == "pyfetch-fail":
            try:
                await pyfetch(request.url.split("to=", 1)[1])
            except OSError as exc:
                return Response("OSError: " + str(exc).split(":")[0], status=502)
            return Response("no error?")
        return Response("?", status=404)
"""

ORIGIN = """
from workers import Response

async def on_fetch(request):
    if request.url.endswith("/missing"):
        return Response("nope", status=404)
    return Response(f"{request.method} {request.headers.get('x-from')} {await request.text()}")
"""


@pytest.fixture(scope="module")
def server(serve_worker):
    return serve_worker(WORKER)


@pytest.fixture(scope="module")
def origin(serve_worker):
    return serve_worker(ORIGIN)


def get(server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30)


def test_to_js_gives_uint8array_with_buffer_and_follows_dict_converter(server):
    data = get(server, "/to_js").json()
    assert data["bytes"] == ["Uint8Array", 3, 3, "abc", True, "abc"]
    assert data["map"] == ["JsMap", 1]  # Pyodide converts dicts to a Map by default
    assert data["obj"] == ["JsObject", 1, {"a": {"b": 1}}]
    assert data["arr"] == [3, [2, 3], "v"]
    assert data["scalars"] == [1, "s", None, True]
    assert data["depth"] == "dict"
    assert data["version"] == "0.28.2"


def test_create_proxy_forwards_until_destroyed_and_once_callable_runs_once(server):
    data = get(server, "/proxies").json()
    assert data == {"seen": ["x"], "destroyed": "Error", "first": 2, "second": "Error"}


def test_run_sync_blocks_until_the_coroutine_finishes(server):
    assert get(server, "/run_sync").json() == {"value": 42}


def test_pyfetch_returns_pyodides_fetch_response(server, origin):
    data = get(server, f"/pyfetch?to={origin.url}/echo").json()
    assert data == {"status": 200, "ok": True, "text": "POST pyfetch ping", "raised": None, "type": "FetchResponse"}
    data = get(server, f"/pyfetch?to={origin.url}/missing").json()
    assert data["status"] == 404 and data["raised"].startswith("404 Client Error")


def test_pyfetch_network_failure_is_an_oserror_as_in_pyodide(server, free_port):
    r = get(server, f"/pyfetch-fail?to=http://127.0.0.1:{free_port}/")
    assert (r.status_code, r.text) == (502, "OSError: fetch failed")
