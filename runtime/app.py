"""The dev server's ASGI app: ASGI <-> ``Request``/``Response``, nothing more.

Plain ASGI rather than a framework on the worker path, because this code runs for every request
and the emulator should be at least as fast as Miniflare: no routing table, no middleware stack,
headers parsed only if the worker reads them. Plugin routes (the Workers AI REST API) are
served by a Starlette app that is only built, and only entered, when a plugin declares routes.

Per request: enforce the body-size limit (413, Cloudflare's 100 MB by default), build the
``Request``, let :meth:`WorkerHost.serve` answer it, send the ``Response`` (streamed if its body is
an iterator), start the request's ``waitUntil`` work, and write one log line
``[flarelet:info] GET / 200 OK (3ms)`` like wrangler's (control characters escaped, so a URL
cannot forge a line or drive the terminal). A request whose client disconnects first is cancelled and
logged as ``GET / canceled: client disconnected (2345ms)``.

Failures never pass for success: a body whose client disconnected before sending all of it
reaches the worker as a body whose reading raises (nothing partial is ever handed out as whole);
a streamed response whose body raises, or runs past the CPU limit, is aborted without the
terminating chunk, so the client sees a truncated transfer rather than a complete one.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import Any

from .body import aborted_body, chunk_bytes
from .cpu_limit import CpuLimitExceeded, ShutdownInterrupt, install_task_factory
from .errors import error_response
from .host import FALLBACK_CF, WorkerHost
from .logs import escape_controls
from .request import Request
from .response import Response

log = logging.getLogger("flarelet")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

#: ``request.cf`` without ``[flarelet] cf``: Miniflare's offline fallback (kept under this name for callers)
DEFAULT_CF: dict[str, Any] = FALLBACK_CF

#: Where a request's task is kept in its ASGI scope, so that the server's protocol
#: (:mod:`.http_protocol`) can cancel it when the client disconnects before the response is done.
#: Cloudflare does the same: a request whose client went away is cancelled (its ``waitUntil``
#: work still runs), so its queued or running work -- a transcription -- stops.
REQUEST_TASK_KEY = "flarelet.request_task"

_NOT_AN_UPGRADE = (
    "Worker tried to return a WebSocket in a response to a request which did not contain the header "
    '"Upgrade: websocket".'
)
_PHRASES = {s.value: s.phrase for s in HTTPStatus}
_NO_BODY_STATUSES = frozenset({204, 304})


class ResponseAborted(Exception):  # noqa: N818
    """Raised to the server after a streamed body failed: it closes the connection mid-body."""


class _Aborted:
    """What :meth:`DevApp._read_body` returns when the client left before the body was complete."""

    __slots__ = ("received",)

    def __init__(self, received: int) -> None:
        self.received = received


class RequestLog:
    """Writes one line per request; batched to one flush per loop turn to keep the hot path cheap."""

    def __init__(self, stream: Any = None, enabled: bool = True) -> None:
        self.stream = stream or sys.stdout
        self.enabled = enabled
        self._pending: list[str] = []

    def write(self, method: str, path: str, status: int, millis: float) -> None:
        pending = self._pending
        if not pending:
            asyncio.get_running_loop().call_soon(self.flush)
        pending.append(
            f"[flarelet:info] {escape_controls(method)} {escape_controls(path)} {status} "
            f"{_PHRASES.get(status, '')} ({millis:.0f}ms)\n"
        )

    def canceled(self, method: str, path: str, millis: float) -> None:
        """A request whose client disconnected first ("canceled" is Cloudflare's outcome name)."""
        pending = self._pending
        if not pending:
            asyncio.get_running_loop().call_soon(self.flush)
        pending.append(f"[flarelet:info] {method} {path} canceled: client disconnected ({millis:.0f}ms)\n")

    def flush(self) -> None:
        lines, self._pending = self._pending, []
        if not lines:
            return
        try:
            self.stream.write("".join(lines))
            self.stream.flush()
        except (OSError, ValueError):  # closed stdout: logging must never break serving
            pass


class LoggedApp:
    """Any ASGI app (``flarelet ai serve``'s REST API) behind what :class:`DevApp` gives a worker:
    one request line per request in the same format, the request cancelled when its client
    disconnects (:data:`REQUEST_TASK_KEY`), and ``on_ready`` called once start-up is complete."""

    def __init__(
        self, app: Any, *, request_log: RequestLog | None = None, on_ready: Callable[[], None] | None = None
    ) -> None:
        self.app = app
        self.request_log = request_log
        self.on_ready = on_ready

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":

            async def send_ready(message: dict[str, Any]) -> None:
                await send(message)
                if message["type"] == "lifespan.startup.complete" and self.on_ready is not None:
                    self.on_ready()

            await self.app(scope, receive, send_ready)
        else:
            await self.app(scope, receive, send)

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope[REQUEST_TASK_KEY] = asyncio.current_task()
        status_box = [0]

        async def send_tracking(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status_box[0] = message["status"]
            await send(message)

        request_log = self.request_log
        try:
            await self.app(scope, receive, send_tracking)
        except asyncio.CancelledError:
            if request_log is not None and request_log.enabled:
                request_log.canceled(scope["method"], scope["path"], (time.perf_counter() - started) * 1000.0)
            return
        if request_log is not None and request_log.enabled:
            request_log.write(scope["method"], scope["path"], status_box[0], (time.perf_counter() - started) * 1000.0)


class DevApp:
    """ASGI application serving one :class:`WorkerHost`."""

    def __init__(
        self,
        host: WorkerHost,
        *,
        request_log: RequestLog | None = None,
        on_startup: Callable[[], Awaitable[None]] | None = None,
        on_shutdown: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.host = host
        self.request_log = request_log
        self.on_startup = on_startup
        self.on_shutdown = on_shutdown
        self._routes_generation = -1
        self._route_list: list[Any] = []
        self._route_app: Any = None
        #: http_version -> the fallback cf object (``request.cf`` copies it on first access)
        self._fallback_cf: dict[str, dict[str, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)

    # -- plugin routes --------------------------------------------------------------------------
    def _plugin_routes(self) -> list[Any]:
        host = self.host
        if host.generation != self._routes_generation:
            self._routes_generation = host.generation
            self._route_list = host.routes()
            self._route_app = None
            if self._route_list:
                from starlette.applications import Starlette

                self._route_app = Starlette(routes=self._route_list)
        return self._route_list

    def _match_route(self, scope: Scope) -> Any:
        routes = self._plugin_routes()
        if not routes:
            return None
        from starlette.routing import Match

        for route in routes:
            match, _ = route.matches(scope)
            if match is not Match.NONE:
                return self._route_app
        return None

    # -- requests -------------------------------------------------------------------------------
    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        scope[REQUEST_TASK_KEY] = asyncio.current_task()
        host = self.host
        path: str = scope["path"]
        method: str = scope["method"]
        route_app = self._match_route(scope) if host.plugins else None
        if route_app is not None:
            status_box = [0]

            async def send_tracking(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    status_box[0] = message["status"]
                await send(message)

            try:
                await route_app(scope, receive, send_tracking)
            except asyncio.CancelledError:
                self._log_canceled(method, path, started)
                return
            self._log(method, path, status_box[0], started)
            return

        raw_headers: list[tuple[bytes, bytes]] = scope["headers"]
        host_header = ""
        content_length = -1
        chunked = False
        for name, value in raw_headers:
            if name == b"host":
                host_header = value.decode("latin-1")
            elif name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = -1
            elif name == b"transfer-encoding":
                chunked = True
        limit = host.max_body_bytes
        if content_length > limit:
            await self._too_large(send, content_length, limit)
            self._log(method, path, 413, started)
            return
        try:
            body = await self._read_body(receive, limit)
        except asyncio.CancelledError:  # the client left mid-body (REQUEST_TASK_KEY): no worker ever runs
            self._log_canceled(method, path, started)
            return
        if body is None:
            await self._too_large(send, -1, limit)
            self._log(method, path, 413, started)
            return
        incoming: bytes | AsyncIterator[bytes | str] | None
        if isinstance(body, _Aborted):
            # a client that left before sending the body it announced: reading it must raise
            if content_length > 0 or chunked:
                incoming = aborted_body(body.received, content_length if content_length >= 0 else None)
            else:
                incoming = b""
        else:
            incoming = body

        if not host_header:
            server = scope.get("server") or ("127.0.0.1", 8787)
            host_header = f"{server[0]}:{server[1]}"
        raw_path = scope.get("raw_path")
        target = raw_path.decode("latin-1") if raw_path else path
        query = scope["query_string"].decode("latin-1")
        url = f"{scope.get('scheme', 'http')}://{host_header}{target}" + (f"?{query}" if query else "")
        cf = host.cf
        if cf is None:
            cf = self._fallback_cf.get(scope.get("http_version", "1.1"))
            if cf is None:
                cf = self._fallback_cf[scope.get("http_version", "1.1")] = {
                    **FALLBACK_CF,
                    "httpProtocol": f"HTTP/{scope.get('http_version', '1.1')}",
                }
        request = Request._incoming(url, method, raw_headers, incoming or None, cf)
        ctx = host.dispatcher.new_context()
        try:
            response = await host.serve(request, ctx, path=path, query=query)
            if response._status == 101:  # a WebSocket for a request that asked for none
                response = Response(_NOT_AN_UPGRADE, status=500)
            status = await self._send(send, response, method, ctx, request)
        except asyncio.CancelledError:  # the client went away (REQUEST_TASK_KEY): nobody to answer
            ctx.flush()  # waitUntil work already handed over still runs, as on Cloudflare
            self._log_canceled(method, path, started)
            return
        except ResponseAborted:
            ctx.flush()
            self._log(method, path, response._status, started)
            raise
        ctx.flush()
        self._log(method, path, status, started)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """An upgrade request: the worker answers it like any request; a 101 with ``web_socket``
        accepts the connection and bridges that end to it, anything else is sent as the refusal."""
        started = time.perf_counter()
        path: str = scope["path"]
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        raw_headers: list[tuple[bytes, bytes]] = list(scope["headers"])
        host_header = next((v.decode("latin-1") for k, v in raw_headers if k == b"host"), "")
        if not host_header:
            server = scope.get("server") or ("127.0.0.1", 8787)
            host_header = f"{server[0]}:{server[1]}"
        names = {k for k, _ in raw_headers}
        if b"upgrade" not in names:
            raw_headers.append((b"upgrade", b"websocket"))
        raw_path = scope.get("raw_path")
        target = raw_path.decode("latin-1") if raw_path else path
        query = scope["query_string"].decode("latin-1")
        scheme = "https" if scope.get("scheme") == "wss" else "http"
        url = f"{scheme}://{host_header}{target}" + (f"?{query}" if query else "")
        request = Request._incoming(url, "GET", raw_headers, None, dict(DEFAULT_CF))
        ctx = self.host.dispatcher.new_context()
        response = await self.host.serve(request, ctx, path=path, query=query)
        end = response.web_socket if response._status == 101 else None
        if end is None:
            await self._refuse_websocket(scope, send, response)
            ctx.flush()
            self._log("GET", path, response._status, started)
            return
        from .websocket import serve_bridged

        self._log("GET", path, 101, started)
        ctx.flush()
        await serve_bridged(end, receive, send, response)

    async def _refuse_websocket(self, scope: Scope, send: Send, response: Response) -> None:
        if "websocket.http.response" in (scope.get("extensions") or {}):
            body = response._body if isinstance(response._body, bytes) else await response.bytes()
            headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response._headers._items]
            await send({"type": "websocket.http.response.start", "status": response._status, "headers": headers})
            await send({"type": "websocket.http.response.body", "body": body or b""})
            return
        await send({"type": "websocket.close", "code": 1008, "reason": f"the worker answered {response._status}"})

    def _log(self, method: str, path: str, status: int, started: float) -> None:
        request_log = self.request_log
        if request_log is not None and request_log.enabled:
            request_log.write(method, path, status, (time.perf_counter() - started) * 1000.0)

    def _log_canceled(self, method: str, path: str, started: float) -> None:
        request_log = self.request_log
        if request_log is not None and request_log.enabled:
            request_log.canceled(method, path, (time.perf_counter() - started) * 1000.0)

    @staticmethod
    async def _read_body(receive: Receive, limit: int) -> bytes | _Aborted | None:
        """The whole body; ``None`` past ``limit``; :class:`_Aborted` if the client left before its end."""
        message = await receive()
        if message["type"] == "http.disconnect":
            return _Aborted(0)
        body = message.get("body", b"")
        size = len(body)
        if size > limit:
            return None
        if not message.get("more_body", False):
            return body
        chunks = [body]
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return _Aborted(size)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return b"".join(chunks)

    @staticmethod
    async def _too_large(send: Send, size: int, limit: int) -> None:
        shown = f"{size} bytes" if size >= 0 else "larger"
        body = (
            f"413 Payload Too Large: the request body ({shown}) is above the limit of {limit} bytes "
            "(set --max-body-size or [flarelet] max_body_bytes to change it)\n"
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"text/plain;charset=UTF-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _send(
        self, send: Send, response: Response, method: str, ctx: Any = None, request: Request | None = None
    ) -> int:
        status = response._status
        headers = response._headers._items
        try:
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        except UnicodeEncodeError as exc:  # set around Headers' checks: still the worker's error, not a bare 500
            error = TypeError(f"Invalid header value (not ISO-8859-1): {exc.object!r}")
            log.error("%s: %s", method, error)
            accept = request.headers.get("accept") if request is not None else None
            response = error_response(error, accept)
            status, headers = response._status, response._headers._items
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
        body = response._body
        if body is None or isinstance(body, bytes):
            if status not in _NO_BODY_STATUSES:
                for k, _ in headers:
                    if k == "content-length":
                        break
                else:
                    raw.append((b"content-length", str(len(body)).encode() if body else b"0"))
            await send({"type": "http.response.start", "status": status, "headers": raw})
            await send({"type": "http.response.body", "body": body or b""})
            return status
        await send({"type": "http.response.start", "status": status, "headers": raw})
        meter = getattr(ctx, "cpu", None)
        try:
            while True:
                step = body.__anext__()
                try:
                    chunk = await (step if meter is None else meter.run(step))
                except StopAsyncIteration:
                    break
                data = chunk_bytes(chunk)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
        except Exception as exc:  # noqa: BLE001 - headers are sent: log, then cut the response short
            log.error(
                "Uncaught exception while streaming the response body (%s); connection aborted", method, exc_info=exc
            )
            raise ResponseAborted from exc
        except (CpuLimitExceeded, ShutdownInterrupt) as exc:
            log.error("%s while streaming the response body (%s); connection aborted", exc, method)
            raise ResponseAborted from exc
        await send({"type": "http.response.body", "body": b""})
        return status

    # -- lifespan -------------------------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                install_task_factory(asyncio.get_running_loop())
                try:
                    await self.host.start()
                    if self.on_startup is not None:
                        await self.on_startup()
                except Exception as exc:  # noqa: BLE001
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    if self.on_shutdown is not None:
                        await self.on_shutdown()
                    await self.host.aclose()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return
