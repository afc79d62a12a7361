"""Outbound ``fetch()`` from a worker, against another local server (no network)."""

from __future__ import annotations

import asyncio
import gzip
import json
import subprocess
import sys
import threading

import httpx
import pytest
import uvicorn

from flarelet.runtime.server import bind_socket


async def upstream_app(scope, receive, send):
    """A tiny upstream: /echo, /redirect, /gzip, /status/<code>."""
    if scope["type"] != "http":
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    path = scope["path"]
    headers = [(b"content-type", b"application/json")]
    status = 200
    if path == "/echo":
        payload = json.dumps(
            {
                "method": scope["method"],
                "query": scope["query_string"].decode(),
                "headers": {k.decode(): v.decode() for k, v in scope["headers"]},
                "body": body.decode(),
            }
        ).encode()
    elif path == "/redirect":
        status, headers, payload = 302, [(b"location", b"/echo?from=redirect")], b""
    elif path == "/gzip":
        payload = gzip.compress(b'{"compressed": true}')
        headers.append((b"content-encoding", b"gzip"))
    elif path.startswith("/status/"):
        status, payload = int(path.rsplit("/", 1)[1]), b'{"status": "custom"}'
    else:
        status, payload = 404, b"{}"
    headers.append((b"content-length", str(len(payload)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})


@pytest.fixture(scope="module")
def upstream():
    sock = bind_socket("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(upstream_app, lifespan="off", log_config=None, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        threading.Event().wait(0.02)
    yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    server.should_exit = True
    thread.join(5)
    sock.close()


WORKER = """
from urllib.parse import urlparse, parse_qs
from workers import WorkerEntrypoint, Response, Request, fetch

class Default(WorkerEntrypoint):
    async def fetch(self, request):
        q = parse_qs(urlparse(request.url).query)
        target = q["to"][0]
        mode = q.get("mode", ["json"])[0]
        if mode == "post":
            r = await fetch(target, method="POST", headers={"X-From": "worker"}, body="payload")
            return Response.json({"status": r.status, "data": await r.json()})
        if mode == "request":
            r = await fetch(Request(target, method="PUT", body=b"bytes-body", headers=[("x-a", "1")]))
            return Response.json(await r.json())
        if mode == "proxy":
            return await fetch(target)
        if mode == "manual":
            r = await fetch(target, redirect="manual")
            return Response.json({"status": r.status, "location": r.headers.get("location")})
        if mode == "error":
            try:
                await fetch(target)
            except OSError as exc:
                return Response("fetch failed as OSError: " + str(exc), status=502)
        r = await fetch(target)
        return Response.json({"status": r.status, "ok": r.ok, "url": r.url, "redirected": r.redirected,
                              "ctype": r.headers.get("content-type"), "body": await r.text()})
"""


@pytest.fixture(scope="module")
def worker_server(tmp_path_factory):
    from flarelet.runtime.host import WorkerHost
    from flarelet.runtime.server import DevServer

    root = tmp_path_factory.mktemp("outbound")
    (root / "src").mkdir()
    (root / "src/entry.py").write_text(WORKER)
    (root / "wrangler.toml").write_text('main = "src/entry.py"\ncompatibility_date = "2025-11-02"\n')
    server = DevServer(WorkerHost.from_config(root), bind_socket("127.0.0.1", 0), log_requests=False, watch=False)
    server.start_in_thread()
    yield server
    server.stop()


def ask(worker_server, target: str, mode: str = "json") -> httpx.Response:
    return httpx.get(worker_server.url, params={"to": target, "mode": mode})


def test_fetch_get_and_response_reading(worker_server, upstream):
    data = ask(worker_server, upstream + "/echo?x=1").json()
    assert data["status"] == 200 and data["ok"] is True and data["url"] == upstream + "/echo?x=1"
    assert json.loads(data["body"])["query"] == "x=1"
    assert data["ctype"] == "application/json"


def test_fetch_post_with_headers_and_body(worker_server, upstream):
    data = ask(worker_server, upstream + "/echo", "post").json()
    echoed = data["data"]
    assert data["status"] == 200 and echoed["method"] == "POST" and echoed["body"] == "payload"
    assert echoed["headers"]["x-from"] == "worker"


def test_fetch_a_request_object(worker_server, upstream):
    echoed = ask(worker_server, upstream + "/echo", "request").json()
    assert (echoed["method"], echoed["body"], echoed["headers"]["x-a"]) == ("PUT", "bytes-body", "1")


def test_redirects_followed_or_manual(worker_server, upstream):
    data = ask(worker_server, upstream + "/redirect").json()
    assert data["redirected"] is True and data["url"].endswith("/echo?from=redirect")
    assert ask(worker_server, upstream + "/redirect", "manual").json() == {
        "status": 302,
        "location": "/echo?from=redirect",
    }


def test_proxying_a_fetched_response_decompresses_and_keeps_status(worker_server, upstream):
    r = ask(worker_server, upstream + "/gzip", "proxy")
    assert r.json() == {"compressed": True} and "content-encoding" not in r.headers
    r = ask(worker_server, upstream + "/status/418", "proxy")
    assert (r.status_code, r.json()) == (418, {"status": "custom"})


def test_network_failure_is_an_oserror_as_the_sdk_raises(worker_server, free_port):
    # workers.fetch turns the rejected JS fetch into OSError(message) on Cloudflare
    r = ask(worker_server, f"http://127.0.0.1:{free_port}/nothing-listens", "error")
    assert r.status_code == 502 and r.text.startswith("fetch failed as OSError: fetch failed")


def test_httpx_is_not_imported_at_start(make_worker):
    code = (
        "import sys; from flarelet.runtime.host import WorkerHost; "
        "import flarelet.runtime.server, flarelet.runtime.app; "
        f"WorkerHost.from_config({str(make_worker(WORKER))!r}); "
        "print(sorted(m for m in ('httpx', 'torch', 'transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
