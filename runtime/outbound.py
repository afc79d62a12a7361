"""Outbound ``fetch()``: subrequests from a worker, on one shared httpx client.

The client is created on first use, not at import, so ``httpx`` (~150 ms to import) never slows
the dev server's cold start for workers that make no subrequests. One client is shared by every
request so connections are pooled; it is tied to the event loop it was created on and is
recreated if a different loop calls (the in-thread test servers each run their own loop).

Like Cloudflare's ``fetch``, the response body is already decompressed, so ``Content-Encoding``
and ``Content-Length`` of the upstream response are dropped (the dev server recomputes the length
if the worker passes the response through). Network failures raise ``TypeError`` — what a
rejected JS ``fetch`` becomes in Python Workers.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from .headers import Headers
from .request import Request
from .response import Response

#: seconds; Cloudflare has no fixed subrequest timeout, but a dev server must not hang forever.
DEFAULT_TIMEOUT_S = 300.0
_HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "transfer-encoding",
        "content-encoding",
        "content-length",
        "proxy-connection",
        "upgrade",
        "te",
        "trailer",
    }
)

_client: Any = None
_client_loop: asyncio.AbstractEventLoop | None = None

#: Consulted before the network when set: ``await service(request)`` answers the subrequest in
#: process (a ``Response``) or lets it go out (``None``). The in-process test harness
#: (:mod:`flarelet.testing`) sets it per call, so a worker's fetch of its own origin reaches itself
#: as it does under ``flarelet dev``, and a test can answer other hosts (Miniflare's ``outboundService``).
outbound_service: contextvars.ContextVar[Callable[[Request], Awaitable[Response | None]] | None] = (
    contextvars.ContextVar("flarelet_outbound_service", default=None)
)


def _get_client() -> Any:
    global _client, _client_loop
    loop = asyncio.get_running_loop()
    if _client is None or _client_loop is not loop:
        import httpx  # deliberately lazy: see module docstring

        _client = httpx.AsyncClient(
            follow_redirects=False, timeout=DEFAULT_TIMEOUT_S, trust_env=True, headers={"user-agent": "flarelet"}
        )
        _client_loop = loop
    return _client


async def aclose_client() -> None:
    """Close the shared client (dev server shutdown). Safe to call when none was created."""
    global _client, _client_loop
    client, loop = _client, _client_loop
    _client, _client_loop = None, None
    if client is not None and loop is asyncio.get_running_loop():
        await client.aclose()


async def fetch(resource: str | Request, **options: Any) -> Response:
    """``workers.fetch(url_or_request, method=, headers=, body=, redirect=)`` -> :class:`Response`."""
    request = Request(resource, **options) if options or not isinstance(resource, Request) else resource
    service = outbound_service.get()
    if service is not None:
        answered = await service(request)
        if answered is not None:
            return answered
    if (request.headers.get("upgrade") or "").lower() == "websocket":
        from .websocket_client import connect_websocket

        return await connect_websocket(request)
    body = await request.bytes() if request._body is not None else None
    client = _get_client()
    import httpx

    headers = [(k, v) for k, v in request.headers.multi_items() if k not in ("host", "content-length")]
    try:
        http_request = client.build_request(request.method, request.url, headers=headers, content=body)
        upstream = await client.send(http_request, follow_redirects=request.redirect == "follow")
    except httpx.InvalidURL as exc:
        raise TypeError(f"Fetch API cannot load: {request.url} ({exc})") from exc
    except httpx.HTTPError as exc:
        raise TypeError(
            f"fetch failed: {type(exc).__name__}: {exc or 'network error'} ({request.method} {request.url})"
        ) from exc
    if request.redirect == "error" and upstream.is_redirect:
        raise TypeError(f"fetch failed: redirect to {upstream.headers.get('location')!r} with redirect mode 'error'")
    response_headers = Headers([(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP_BY_HOP])
    content = upstream.content
    result = Response._from_parts(upstream.status_code, response_headers, content or None, upstream.reason_phrase or "")
    result.url = str(upstream.url)
    result.redirected = bool(upstream.history)
    return result
