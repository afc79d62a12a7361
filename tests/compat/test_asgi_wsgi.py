"""ASGI and WSGI apps in a worker, the way Cloudflare documents them: ``asgi.fetch(app, request, env)``
and ``workers.wsgi.fetch(app, request, env)``. Starlette (a flarelet dependency) stands for the
ASGI frameworks (FastAPI is built on it); the WSGI apps are plain PEP 3333 callables."""

from __future__ import annotations

import httpx
import pytest

ASGI_WORKER = r"""
import asgi
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.routing import Route
from contextlib import asynccontextmanager
from workers import WorkerEntrypoint

STARTS = []


@asynccontextmanager
async def lifespan(app):
    STARTS.append(1)
    yield {"greeting": "hello from lifespan"}


async def root(request):
    return JSONResponse({"path": request.url.path, "query": dict(request.query_params),
                         "env": request.scope["env"].NAME, "state": request.state.greeting,
                         "host": request.headers.get("host")})


async def echo(request):
    body = await request.body()
    return PlainTextResponse(f"{request.method} {len(body)} {body[:5].decode()}", status_code=201,
                             headers={"x-app": "starlette"})


async def stream(request):
    async def events():
        for i in range(3):
            yield f"data: {i}\n\n"
    return StreamingResponse(events(), media_type="text/event-stream")


async def boom(request):
    raise RuntimeError("the app failed")


app = Starlette(routes=[Route("/", root), Route("/echo", echo, methods=["POST"]), Route("/stream", stream),
                        Route("/boom", boom),
                        Route("/caf\u00e9/{name}", lambda r: PlainTextResponse(r.path_params["name"]))],
                lifespan=lifespan)


async def bare_app(scope, receive, send):  # no lifespan support at all
    if scope["type"] != "http":
        raise RuntimeError("lifespan not supported")
    if scope["path"] == "/bare-boom":
        raise KeyError("raised before the response started")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"bare"})


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if "/bare" in request.url:
            return await asgi.fetch(bare_app, request, self.env)
        return await asgi.fetch(app, request.js_object, self.env, self.ctx)
"""

WSGI_WORKER = r"""
import json
from urllib.parse import parse_qs
from pyodide.ffi import run_sync
from workers import WorkerEntrypoint, wsgi


async def lookup(env, key):
    return env.NAME + ":" + key


def app(environ, start_response):
    path = environ["PATH_INFO"]
    if path == "/boom":
        raise ValueError("wsgi app failed")
    if path == "/run-sync":
        # what a Django database backend on D1 does: block on a coroutine from sync code
        value = run_sync(lookup(environ["workers.env"], "k"))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [value.encode()]
    if path == "/no-content":
        start_response("204 No Content", [])
        return []
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("200 OK", [("Content-Type", "application/json"), ("Set-Cookie", "a=1"), ("Set-Cookie", "b=2")])
    return [json.dumps({
        "method": environ["REQUEST_METHOD"], "path": path, "query": parse_qs(environ["QUERY_STRING"]),
        "body": body.decode(), "ctype": environ.get("CONTENT_TYPE"), "custom": environ.get("HTTP_X_CUSTOM"),
        "scheme": environ["wsgi.url_scheme"], "server": [environ["SERVER_NAME"], environ["SERVER_PORT"]],
        "env": environ["workers.env"].NAME,
    }).encode()]


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        return await wsgi.fetch(app, request, self.env)
"""


@pytest.fixture(scope="module")
def asgi_server(serve_worker):
    # a worker sees only the packages it declares; --no-install takes declared ones from flarelet's environment
    return serve_worker(
        ASGI_WORKER,
        '[vars]\nNAME = "asgi-worker"\n',
        files={"requirements.txt": "starlette\n"},
        options={"install_deps": False},
    )


@pytest.fixture(scope="module")
def wsgi_server(serve_worker):
    return serve_worker(WSGI_WORKER, '[vars]\nNAME = "wsgi-worker"\n')


def test_asgi_app_gets_scope_env_and_lifespan_state(asgi_server):
    r = httpx.get(asgi_server.url + "/?a=1&b=two", timeout=30)
    data = r.json()
    assert data["path"] == "/" and data["query"] == {"a": "1", "b": "two"}
    assert data["env"] == "asgi-worker" and data["state"] == "hello from lifespan"
    assert data["host"] == asgi_server.url.split("://")[1]


def test_asgi_request_body_status_and_headers(asgi_server):
    r = httpx.post(asgi_server.url + "/echo", content=b"x" * 100_000, timeout=30)
    assert (r.status_code, r.headers["x-app"], r.text) == (201, "starlette", "POST 100000 xxxxx")


def test_asgi_path_is_percent_decoded(asgi_server):
    assert httpx.get(asgi_server.url + "/caf%C3%A9/z%20z", timeout=30).text == "z z"


def test_asgi_streams_server_sent_events(asgi_server):
    with httpx.stream("GET", asgi_server.url + "/stream", timeout=30) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        assert "".join(r.iter_text()) == "data: 0\n\ndata: 1\n\ndata: 2\n\n"


def test_asgi_app_exception_is_a_500_and_the_server_keeps_serving(asgi_server):
    # Starlette answers 500 itself, then re-raises: the adapter logs what comes after the response
    r = httpx.get(asgi_server.url + "/boom", timeout=30)
    assert (r.status_code, r.text) == (500, "Internal Server Error")
    assert httpx.get(asgi_server.url + "/bare", timeout=30).text == "bare"


def test_asgi_exception_before_the_response_reaches_the_worker_as_a_500(asgi_server):
    r = httpx.get(asgi_server.url + "/bare-boom", timeout=30)
    assert r.status_code == 500 and r.text.startswith("KeyError: 'raised before the response started'")


def test_wsgi_environ_follows_pep_3333_and_carries_env(wsgi_server):
    r = httpx.post(
        wsgi_server.url + "/items/%C3%A9?q=1&q=2",
        content=b"payload",
        headers={"content-type": "text/plain", "x-custom": "c"},
        timeout=30,
    )
    data = r.json()
    assert data["method"] == "POST" and data["path"] == "/items/é".encode().decode("latin-1")
    assert data["query"] == {"q": ["1", "2"]} and data["body"] == "payload" and data["ctype"] == "text/plain"
    assert data["custom"] == "c" and data["scheme"] == "http" and data["env"] == "wsgi-worker"
    assert data["server"] == ["127.0.0.1", wsgi_server.url.rsplit(":", 1)[1]]
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]


def test_wsgi_app_may_block_on_run_sync(wsgi_server):
    assert httpx.get(wsgi_server.url + "/run-sync", timeout=30).text == "wsgi-worker:k"


def test_wsgi_null_body_status_and_exceptions(wsgi_server):
    r = httpx.get(wsgi_server.url + "/no-content", timeout=30)
    assert (r.status_code, r.content) == (204, b"")
    r = httpx.get(wsgi_server.url + "/boom", timeout=30)
    assert r.status_code == 500 and "wsgi app failed" in r.text


FRAMEWORKS_WORKER = r"""
import asgi
from fastapi import FastAPI, Request
from flask import Flask, request as flask_request
from workers import WorkerEntrypoint, wsgi

api = FastAPI()


@api.get("/api/hi/{name}")
async def hi(name: str):
    return {"message": f"Hello, {name}!"}


@api.get("/api/env")
async def env_dependency(env=asgi.env):
    return {"greeting": env.GREETING}


@api.get("/api/scope")
async def scope_env(req: Request):
    return {"greeting": req.scope["env"].GREETING}


site = Flask(__name__)


@site.route("/flask/<name>", methods=["GET", "POST"])
def flask_hello(name):
    return {"name": name, "method": flask_request.method, "form": flask_request.form.to_dict(),
            "greeting": flask_request.environ["workers.env"].GREETING}


class Default(WorkerEntrypoint):
    async def fetch(self, request):
        if "/flask/" in request.url:
            return await wsgi.fetch(site, request, self.env)
        return await asgi.fetch(api, request.js_object, self.env)
"""


@pytest.fixture(scope="module")
def frameworks_server(serve_worker):
    return serve_worker(
        FRAMEWORKS_WORKER,
        '[vars]\nGREETING = "hi from env"\n',
        files={"pyproject.toml": '[project]\nname = "frameworks"\ndependencies = ["fastapi", "flask"]\n'},
        options={"install_deps": False},
    )


def test_fastapi_app_runs_as_cloudflare_documents(frameworks_server):
    base = frameworks_server.url
    assert httpx.get(base + "/api/hi/Ada", timeout=30).json() == {"message": "Hello, Ada!"}
    assert httpx.get(base + "/api/env", timeout=30).json() == {"greeting": "hi from env"}
    assert httpx.get(base + "/api/scope", timeout=30).json() == {"greeting": "hi from env"}
    assert httpx.get(base + "/api/missing", timeout=30).status_code == 404


def test_flask_app_runs_through_workers_wsgi(frameworks_server):
    r = httpx.post(frameworks_server.url + "/flask/ada", data={"x": "1"}, timeout=30)
    assert r.json() == {"name": "ada", "method": "POST", "form": {"x": "1"}, "greeting": "hi from env"}
