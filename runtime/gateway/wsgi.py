"""``workers.wsgi.fetch(app, request, env)``: serve one request with a WSGI application.

The environ follows PEP 3333 as Cloudflare's SDK builds it (``PATH_INFO`` URL-decoded as a WSGI
native string, ``QUERY_STRING`` left encoded, repeated headers folded with commas, and
``environ["workers.env"]`` carrying the worker's bindings). The app runs in a worker thread, not
on the event loop: a WSGI app blocks, and in a thread its ``pyodide.ffi.run_sync`` calls (e.g. a
Django database backend reading D1) run their coroutines on the server's loop, which is what JSPI
stack switching gives them on Cloudflare. The response body is collected in that thread, then
returned; ``start_response``'s ``exc_info`` and ``write()`` behave as PEP 3333 says.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
from typing import Any
from urllib.parse import unquote, urlsplit

from ..headers import Headers
from ..response import Response
from .options import DEFAULT_OPTIONS, Options

logger = logging.getLogger("wsgi")
_NULL_BODY_STATUSES = frozenset({101, 103, 204, 205, 304})


def _native(value: str) -> str:
    """A str as a WSGI "native string" (bytes-in-unicode, latin-1)."""
    return value.encode("utf-8").decode("latin-1")


def build_environ(req: Any, env: Any, body: bytes) -> dict[str, Any]:
    url = urlsplit(req.url)
    if not url.scheme:
        raise ValueError(f"Request URL is not absolute: {req.url!r}")
    method = req.method
    environ: dict[str, Any] = {
        "REQUEST_METHOD": str(getattr(method, "value", method)),
        "SCRIPT_NAME": "",
        "PATH_INFO": _native(unquote(url.path or "/")),
        "QUERY_STRING": url.query,
        "SERVER_NAME": url.hostname or "localhost",
        "SERVER_PORT": str(url.port) if url.port else ("443" if url.scheme == "https" else "80"),
        "SERVER_PROTOCOL": "HTTP/1.1",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": url.scheme,
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "workers.env": env,
    }
    for key, value in req.headers.items():
        name = key.upper().replace("-", "_")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
            continue
        http_name = "HTTP_" + name
        environ[http_name] = environ[http_name] + "," + value if http_name in environ else value
    if "CONTENT_LENGTH" not in environ and body:
        environ["CONTENT_LENGTH"] = str(len(body))
    return environ


def process_request(app: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Run the app (blocking) and return ``(status line, headers, body)``."""
    state: dict[str, Any] = {"status": None, "headers": None}
    written: list[bytes] = []

    def write(chunk: bytes) -> None:
        if state["status"] is None:
            raise AssertionError("write() called before start_response()")
        written.append(bytes(chunk))

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
        if exc_info is not None:
            try:
                if state["status"] is not None and (written or state.get("sent")):
                    raise exc_info[1].with_traceback(exc_info[2])
            finally:
                exc_info = None
        elif state["status"] is not None:
            raise AssertionError("start_response() called more than once")
        state["status"], state["headers"] = status, headers
        return write

    result = app(environ, start_response)
    try:
        for chunk in result:
            if chunk:
                state["sent"] = True
                written.append(bytes(chunk))
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    if state["status"] is None:
        raise RuntimeError("The WSGI application did not call start_response()")
    return state["status"], list(state["headers"]), b"".join(written)


async def fetch(app: Any, req: Any, env: Any, ctx: Any = None, *, options: Options | None = None) -> Response:
    """Serve ``req`` (a ``workers.Request`` or its ``js_object``) with the WSGI ``app``."""
    logger.debug("WSGI request: %s %s", req.method, req.url)
    _ = options or DEFAULT_OPTIONS
    body = await req.bytes() if getattr(req, "_body", None) is not None else b""
    environ = build_environ(req, env, body)
    try:
        status, headers, data = await asyncio.to_thread(process_request, app, environ)
    except Exception:
        logger.exception("WSGI request failed")
        raise
    code_text, _, reason = status.partition(" ")
    code = int(code_text)
    return Response._from_parts(code, Headers(headers), None if code in _NULL_BODY_STATUSES else data, reason)


def entrypoint(app: Any, *, options: Options | None = None) -> type:
    """A ``Default`` worker entrypoint class serving ``app`` (the SDK's ``wsgi.entrypoint``)."""
    from ..workers_sdk import WorkerEntrypoint

    class Default(WorkerEntrypoint):
        async def fetch(self, request: Any) -> Response:
            return await fetch(app, request, self.env, options=options)

    return Default
