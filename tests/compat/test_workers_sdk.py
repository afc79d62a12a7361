"""``workers`` at parity with Cloudflare's Python SDK: ``request.cf``, ``js_object``,
``Response.replace_body``, ``@handler``, awaitable results, and module names that say ``workers``."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.compat.conftest import serving, write_worker

WORKER = r"""
import js
from workers import Request, Response, WorkerEntrypoint, fetch


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        path = request.url.split("/", 3)[3].split("?")[0]
        if path == "cf":
            cf = request.cf
            cf.country = "changed-in-this-request"
            return Response.json({
                "attr": [cf.colo, cf.city, cf.asn, cf.latitude, cf.tlsVersion, cf.httpProtocol],
                "item": request.cf["continent"], "nested": cf.botManagement.score,
                "nested_item": cf["tlsClientAuth"]["certPresented"],
                "missing": hasattr(cf, "notAField"), "json": js.JSON.stringify(cf)[:1],
            })
        if path == "cf-fresh":
            return Response(request.cf.country)
        if path == "js-object":
            jsreq = request.js_object
            return Response.json({"same_url": jsreq.url == request.url, "method": jsreq.method,
                                  "private": request._js_request.url == request.url})
        if path == "replace-body":
            original = Response("old", status=202, headers={"x-keep": "1", "content-type": "text/x-old"})
            return original.replace_body("new")
        if path == "wrap-js-response":
            return Response(js.Response.new("wrapped", status=206, headers={"x-js": "1"}))
        if path == "unawaited":
            target = request.url.split("to=", 1)[1]
            return fetch(target)  # a coroutine, not a Response: Cloudflare awaits it
        return Response("?", status=404)
"""

ORIGIN = """
from workers import Response

def on_fetch(request):
    return Response("from the origin: " + request.url.split("/", 3)[3])
"""


@pytest.fixture(scope="module")
def server(serve_worker):
    return serve_worker(WORKER)


def get(server, path: str) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30)


def test_request_cf_has_attribute_and_item_access_with_cloudflares_fields(server):
    data = get(server, "/cf").json()
    assert data["attr"] == ["DFW", "Austin", 395747, "30.27130", "TLSv1.3", "HTTP/1.1"]
    assert data["item"] == "NA" and data["nested"] == 99 and data["nested_item"] == "0"
    assert data["missing"] is False and data["json"] == "{"


def test_request_cf_is_per_request(server):
    get(server, "/cf")
    assert get(server, "/cf-fresh").text == "US"


def test_cf_is_configurable_like_miniflares_cf_option(tmp_path):
    root = write_worker(
        tmp_path / "table",
        """
        from workers import Response
        def on_fetch(request):
            return Response(f"{request.cf.country} {request.cf.colo} {request.cf['asn']}")
        """,
        '[flarelet]\ncf = { country = "DE", colo = "FRA", asn = 3320 }\n',
    )
    with serving(root) as srv:
        assert get(srv, "/").text == "DE FRA 3320"
    (tmp_path / "file").mkdir()
    (tmp_path / "file" / "cf.json").write_text(json.dumps({"country": "JP", "colo": "NRT", "asn": 2516}))
    root = write_worker(tmp_path / "file", (root / "src/entry.py").read_text(), '[flarelet]\ncf = "cf.json"\n')
    with serving(root) as srv:
        assert get(srv, "/").text == "JP NRT 2516"


def test_js_object_is_the_request_itself(server):
    assert get(server, "/js-object").json() == {"same_url": True, "method": "GET", "private": True}


def test_replace_body_keeps_status_and_headers(server):
    r = get(server, "/replace-body")
    assert (r.status_code, r.headers["x-keep"], r.headers["content-type"], r.text) == (202, "1", "text/x-old", "new")


def test_workers_response_wraps_a_js_response(server):
    r = get(server, "/wrap-js-response")
    assert (r.status_code, r.headers["x-js"], r.text) == (206, "1", "wrapped")


def test_a_handler_may_return_an_unawaited_fetch(server, serve_worker):
    origin = serve_worker(ORIGIN)
    r = get(server, f"/unawaited?to={origin.url}/hello")
    assert (r.status_code, r.text) == (200, "from the origin: hello")


def test_handler_decorator_works_on_sync_and_async_on_fetch(serve_worker):
    srv = serve_worker(
        """
        from workers import Response, handler

        @handler
        def on_fetch(request, env):
            return Response("sync " + request.method)
        """
    )
    assert get(srv, "/").text == "sync GET"
    srv = serve_worker(
        """
        from workers import Response, handler

        @handler
        async def on_fetch(request, env, ctx):
            return Response("async " + type(env).__name__)
        """
    )
    assert get(srv, "/").text == "async Env"


def test_import_errors_name_workers_not_flarelets_internal_module(serve_worker):
    srv = serve_worker(
        """
        from workers import Response, NoSuchThing

        def on_fetch(request):
            return Response("x")
        """
    )
    r = get(srv, "/")
    assert r.status_code == 500 and "workers.NoSuchThing" in r.text
    assert "runtime" not in r.text.splitlines()[0] and "workers_sdk" not in r.text.splitlines()[0]


def test_wsgi_and_asgi_modules_import_the_cloudflare_way(serve_worker):
    srv = serve_worker(
        """
        import asgi
        import workers
        from workers import wsgi
        from workers.wsgi import fetch as wsgi_fetch
        from workers import Response

        def on_fetch(request):
            return Response(" ".join([asgi.__name__, wsgi.__name__, workers.__name__, str(wsgi_fetch is wsgi.fetch)]))
        """
    )
    assert get(srv, "/").text == "asgi workers.wsgi workers True"


async def test_cf_and_upstream_follow_a_config_edit(tmp_path):
    from flarelet.runtime.host import WorkerHost

    code = "from workers import Response\ndef on_fetch(request):\n    return Response(request.cf.country)\n"
    root = write_worker(tmp_path, code, '[flarelet]\ncf = { country = "DE" }\n')
    host = WorkerHost.from_config(root)
    assert host.cf == {"country": "DE"} and host.upstream is None
    (root / "wrangler.toml").write_text(
        (root / "wrangler.toml").read_text().replace('"DE" }', '"FR" }\nupstream = "http://127.0.0.1:9"')
    )
    assert await host.reload_config() is True
    assert host.cf == {"country": "FR"} and host.upstream == "http://127.0.0.1:9"
    await host.aclose()
