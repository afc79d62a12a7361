"""``asgi.fetch(app, request, env, ctx=None)``: serve one request with an ASGI application.

What Cloudflare's SDK does, in CPython: each call runs the app's lifespan startup (when the app
speaks the lifespan protocol; apps that do not are served without it), builds the HTTP scope from
the request (with ``scope["env"]`` carrying the worker's bindings, which ``asgi.env`` reads as a
FastAPI dependency), feeds the body through ``receive``, and returns a ``Response`` as soon as the
app has sent its status, headers and first body chunk. Further chunks stream to the client
(server-sent events work); the rest of the app's run and the lifespan shutdown continue under
``ctx.waitUntil`` when a ``ctx`` is given, else in the background. An exception before the
response starts propagates to the worker (a 500, as on Cloudflare); one after it is logged.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import unquote

from ..headers import Headers
from ..response import Response
from .options import DEFAULT_OPTIONS, Options

ASGI = {"spec_version": "2.3", "version": "3.0"}
logger = logging.getLogger("asgi")
_NULL_BODY_STATUSES = frozenset({101, 103, 204, 205, 304})
_background: set[asyncio.Task[Any]] = set()


def request_to_scope(req: Any, env: Any, state: dict[str, Any] | None = None) -> dict[str, Any]:
    url = req.url
    scheme, _, rest = url.partition("://")
    slash = rest.find("/")
    netloc, target = (rest[:slash], rest[slash:]) if slash >= 0 else (rest, "/")
    raw_path, _, query = target.split("#", 1)[0].partition("?")
    host, _, port = netloc.rpartition(":") if ":" in netloc.rsplit("]", 1)[-1] else (netloc, "", "")
    method = req.method
    method = str(getattr(method, "value", method))
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": ASGI,
        "http_version": "1.1",
        "method": method,
        "scheme": scheme,
        "path": unquote(raw_path),
        "raw_path": raw_path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in req.headers.items()],
        "server": (host, int(port) if port else (443 if scheme == "https" else 80)),
        "client": None,
        "env": env,
    }
    if state is not None:
        scope["state"] = dict(state)
    return scope


class _Lifespan:
    """One lifespan startup/shutdown cycle around a request (optional for the app)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.state: dict[str, Any] = {}
        self.supported = False
        self._inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._started = asyncio.get_running_loop().create_future()
        self._stopped = asyncio.get_running_loop().create_future()
        self._task: asyncio.Task[Any] | None = None

    async def startup(self) -> None:
        self._inbox.put_nowait({"type": "lifespan.startup"})
        self._task = asyncio.ensure_future(self._run())
        await asyncio.wait({self._task, self._started}, return_when=asyncio.FIRST_COMPLETED)
        if self._started.done():
            error = self._started.result()
            if error is not None:
                raise RuntimeError(f"ASGI lifespan startup failed: {error}")
            self.supported = True

    async def _run(self) -> None:
        async def receive() -> dict[str, Any]:
            return await self._inbox.get()

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "lifespan.startup.complete" and not self._started.done():
                self._started.set_result(None)
            elif kind == "lifespan.startup.failed" and not self._started.done():
                self._started.set_result(message.get("message") or "startup failed")
            elif kind in ("lifespan.shutdown.complete", "lifespan.shutdown.failed") and not self._stopped.done():
                self._stopped.set_result(None)

        try:
            await self.app({"type": "lifespan", "asgi": ASGI, "state": self.state}, receive, send)
        except Exception:  # noqa: BLE001 - apps without lifespan support raise here: serve without it
            logger.debug("ASGI app does not support lifespan", exc_info=True)

    async def shutdown(self) -> None:
        if not self.supported or self._task is None:
            return
        self._inbox.put_nowait({"type": "lifespan.shutdown"})
        await asyncio.wait({self._task, self._stopped}, return_when=asyncio.FIRST_COMPLETED)


async def _request_chunks(req: Any) -> AsyncIterator[bytes]:
    body = getattr(req, "body", None)
    if body is None:
        return
    async for chunk in body:
        yield bytes(chunk)


async def fetch(app: Any, req: Any, env: Any, ctx: Any = None, *, options: Options | None = None) -> Response:
    """Serve ``req`` (a ``workers.Request`` or its ``js_object``) with the ASGI ``app``."""
    logger.debug("ASGI request: %s %s", req.method, req.url)
    options = options or DEFAULT_OPTIONS
    lifespan = _Lifespan(app)
    await lifespan.startup()
    scope = request_to_scope(req, env, lifespan.state if lifespan.supported else None)
    loop = asyncio.get_running_loop()
    started: asyncio.Future[Response] = loop.create_future()
    finished = asyncio.Event()
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
    request_body = _request_chunks(req)
    body_done = False
    status_headers: list[Any] = []

    async def receive() -> dict[str, Any]:
        nonlocal body_done
        if not body_done:
            try:
                chunk = await request_body.__anext__()
                return {"type": "http.request", "body": chunk, "more_body": True}
            except StopAsyncIteration:
                body_done = True
                return {"type": "http.request", "body": b"", "more_body": False}
        await finished.wait()
        return {"type": "http.disconnect"}

    async def stream() -> AsyncIterator[bytes]:
        while True:
            chunk = await chunks.get()
            if chunk is None:
                return
            yield chunk

    async def send(message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "http.response.start":
            status_headers[:] = [
                message["status"],
                Headers([(k.decode("latin-1"), v.decode("latin-1")) for k, v in message.get("headers", [])]),
            ]
        elif kind == "http.response.body":
            if not status_headers:
                raise RuntimeError("ASGI app sent a body before http.response.start")
            body = bytes(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if not started.done():
                status, headers = status_headers
                if status in _NULL_BODY_STATUSES:
                    started.set_result(Response._from_parts(status, headers, None))
                elif more:
                    chunks.put_nowait(body)
                    started.set_result(Response._from_parts(status, headers, stream()))
                else:
                    started.set_result(Response._from_parts(status, headers, body))
            elif body:
                chunks.put_nowait(body)
            if not more:
                chunks.put_nowait(None)
                finished.set()

    async def run_app() -> None:
        try:
            await app(scope, receive, send)
            if not started.done():
                raise RuntimeError("The application did not generate a response")  # noqa: TRY301
        except BaseException as exc:
            if not started.done():
                started.set_exception(exc)
            else:
                logger.exception("Exception in ASGI application after the response started")
                chunks.put_nowait(None)
            if not isinstance(exc, Exception):
                raise
        finally:
            finished.set()
            await lifespan.shutdown()

    task = asyncio.ensure_future(run_app())
    try:
        response = await started
    except Exception:
        logger.exception("ASGI request failed")
        await task
        raise
    if not task.done():
        if ctx is not None and hasattr(ctx, "waitUntil"):
            ctx.waitUntil(task)
        else:
            _background.add(task)
            task.add_done_callback(_background.discard)
    return response


def _env_dependency() -> Any:
    from fastapi import Depends
    from fastapi import Request as FastAPIRequest

    async def env(request: Any) -> Any:
        return request.scope["env"]

    # a real class, not the string this module's postponed annotations would leave for FastAPI
    env.__annotations__ = {"request": FastAPIRequest, "return": Any}
    return Depends(env)


def __getattr__(name: str) -> Any:
    if name == "env":
        return _env_dependency()
    raise AttributeError(f"module 'asgi' has no attribute {name!r}")


def entrypoint(app: Any, *, options: Options | None = None) -> type:
    """A ``Default`` worker entrypoint class serving ``app`` (the SDK's ``asgi.entrypoint``)."""
    from ..workers_sdk import WorkerEntrypoint

    class Default(WorkerEntrypoint):
        async def fetch(self, request: Any) -> Response:
            return await fetch(app, request, self.env, self.ctx, options=options)

    return Default
