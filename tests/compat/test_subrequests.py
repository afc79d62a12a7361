"""Subrequests: the worker's own origin goes to ``--upstream`` (as wrangler's ``--local-upstream``),
a self-request without one fails naming the loop, ``CF-EW-Via`` hops are limited, and network
failures reach the worker as Cloudflare raises them, with a one-line 500 when unhandled."""

from __future__ import annotations

import io
import logging

import httpx
import pytest

from flarelet.runtime.host import WorkerHost
from flarelet.runtime.server import DevServer, bind_socket
from tests.compat.conftest import serving, write_worker

PROXY = r"""
from workers import Response, fetch


async def on_fetch(request):
    path = request.url.split("/", 3)[3]
    if path.startswith("unhandled"):
        return await fetch(request.url.split("to=", 1)[1])
    if path.startswith("absolute"):
        return await fetch(request.url.split("?", 1)[0].replace("absolute", "abs-target") + "?q=1")
    return fetch(request)  # pass the request through to the origin, as a route worker does
"""

ORIGIN = """
from workers import Response

def on_fetch(request):
    path = request.url.split("/", 3)[3]
    return Response(f"origin saw {request.method} /{path} via={request.headers.get('cf-ew-via')}")
"""


@pytest.fixture(scope="module")
def origin(serve_worker):
    return serve_worker(ORIGIN)


def test_self_request_without_upstream_fails_naming_the_loop(serve_worker, caplog):
    srv = serve_worker(PROXY)
    with caplog.at_level(logging.ERROR, logger="flarelet"):
        r = httpx.get(srv.url + "/page", timeout=30)
    assert r.status_code == 500 and len(r.text.strip().splitlines()) == 1
    assert "targets this worker's own origin" in r.text and "--upstream" in r.text and "loop" in r.text
    assert "Traceback" not in r.text and "Traceback" in caplog.text


ASSET_FETCHER = r"""
from workers import Response, fetch


async def on_fetch(request):
    base = request.url.split("/", 3)
    reply = await fetch(f"{base[0]}//{base[2]}/{request.url.split('?want=', 1)[1]}")
    return Response(f"{reply.status} {await reply.text()}")
"""


def test_own_origin_path_served_by_static_assets_is_fetched_as_wrangler_dev_serves_it(serve_worker):
    """Assets answer before the worker, so fetching one from the worker's own origin cannot loop."""
    srv = serve_worker(
        ASSET_FETCHER, toml='[assets]\ndirectory = "./public"\n', files={"public/sample.txt": "hello asset"}
    )
    r = httpx.get(srv.url + "/x?want=sample.txt", timeout=30)
    assert r.status_code == 200 and r.text == "200 hello asset"
    r = httpx.get(srv.url + "/x?want=not-an-asset", timeout=30)  # would reach the worker again: the loop error
    assert r.status_code == 500 and "targets this worker's own origin" in r.text


def test_loopback_aliases_of_the_worker_count_as_its_own_origin(serve_worker):
    srv = serve_worker(PROXY)
    port = srv.url.rsplit(":", 1)[1]
    r = httpx.get(f"http://localhost:{port}/absolute", timeout=30)
    assert r.status_code == 500 and "own origin" in r.text


def test_own_origin_goes_to_the_upstream_with_a_hop_count(serve_worker, origin):
    srv = serve_worker(PROXY, upstream=origin.url)
    r = httpx.post(srv.url + "/some/path?x=1", content=b"b", timeout=30)
    assert (r.status_code, r.text) == (200, "origin saw POST /some/path?x=1 via=1")
    r = httpx.get(srv.url + "/absolute", timeout=30)
    assert r.text == "origin saw GET /abs-target?q=1 via=1"


def test_upstream_from_config_and_bare_host_means_https(tmp_path, origin):
    root = write_worker(tmp_path, PROXY, f'[flarelet]\nupstream = "{origin.url}"\n')
    with serving(root) as srv:
        assert httpx.get(srv.url + "/cfg", timeout=30).text == "origin saw GET /cfg via=1"
    assert WorkerHost.from_config(root, upstream="example.com", load_code=False).upstream == "https://example.com"
    with pytest.raises(ValueError):
        WorkerHost.from_config(root, upstream="ftp://x", load_code=False)


def test_hop_limit_stops_a_loop_through_the_upstream(tmp_path):
    # the upstream is the worker's own server: every pass-through comes back to it
    root = write_worker(tmp_path, PROXY, "[flarelet]\nmax_subrequest_depth = 3\n")
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    host = WorkerHost.from_config(root, upstream=f"http://127.0.0.1:{port}")
    server = DevServer(host, sock, log_stream=io.StringIO(), watch=False)
    server.start_in_thread()
    try:
        r = httpx.get(f"http://127.0.0.1:{port}/loop", timeout=30)
    finally:
        server.stop()
    assert r.status_code == 508
    assert "passed through the worker 4 times" in r.text and "max_subrequest_depth" in r.text


def test_unhandled_network_failure_is_a_one_line_500_and_the_traceback_is_logged(serve_worker, free_port, caplog):
    srv = serve_worker(PROXY)
    with caplog.at_level(logging.ERROR, logger="flarelet"):
        r = httpx.get(srv.url + f"/unhandled?to=http://127.0.0.1:{free_port}/x", timeout=30)
    assert r.status_code == 500 and len(r.text.strip().splitlines()) == 1
    assert r.text.startswith("FetchError: fetch failed: ConnectError") and "Traceback" not in r.text
    assert "Traceback" in caplog.text
    r = httpx.get(
        srv.url + f"/unhandled?to=http://127.0.0.1:{free_port}/x", headers={"accept": "text/html"}, timeout=30
    )
    assert r.status_code == 500 and "Traceback" not in r.text


def test_js_fetch_failure_is_a_jsexception_named_typeerror(serve_worker, free_port):
    srv = serve_worker(
        """
        from js import fetch
        from pyodide.ffi import JsException
        from workers import Response

        async def on_fetch(request):
            try:
                await fetch(request.url.split("to=", 1)[1])
            except JsException as exc:
                return Response(f"{exc.name}", status=502)
            return Response("no error?")
        """
    )
    r = httpx.get(srv.url + f"/?to=http://127.0.0.1:{free_port}/", timeout=30)
    assert (r.status_code, r.text) == (502, "TypeError")
