"""Outbound ``fetch()``: subrequests from a worker, on one shared httpx client.

The client is created on first use, not at import, so ``httpx`` (~150 ms to import) never slows
the dev server's cold start for workers that make no subrequests. One client is shared by every
request so connections are pooled; it is tied to the event loop it was created on and is
recreated if a different loop calls (the in-thread test servers each run their own loop).

Like Cloudflare's ``fetch``, the response body is already decompressed, so ``Content-Encoding``
and ``Content-Length`` of the upstream response are dropped (the dev server recomputes the length
if the worker passes the response through). Network failures raise :class:`FetchError`, an
``OSError`` — what ``workers.fetch`` raises on Cloudflare (the SDK turns the rejected JS promise
into ``OSError(message)``); ``js.fetch`` turns it back into a ``JsException`` named ``TypeError``.

Subrequests to the worker's own origin (the incoming request's ``scheme://host:port``, or a
loopback alias on the same port) go to the *origin*, as on Cloudflare, where a Worker on a route
sits in front of an origin server: ``--upstream URL`` says where that is locally (wrangler's
``--local-upstream``). Without one there is nothing behind the worker, and fetching its own
origin would only call itself again, so the subrequest fails with a :class:`FetchError` naming the
loop -- except for a GET/HEAD of a path the worker's static assets serve, which the dev server answers
before any worker code runs (as ``wrangler dev`` does): that one is sent to the dev server itself.
Every subrequest carries a ``CF-EW-Via`` hop count (Cloudflare's loop-protection header);
:meth:`WorkerHost.serve` refuses a request whose count is above ``max_subrequest_depth``.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

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

#: header carrying the subrequest hop count (the name Cloudflare's loop protection uses)
HOP_HEADER = "cf-ew-via"
#: hops a chain of subrequests may take before a request is refused (``[flarelet] max_subrequest_depth``)
DEFAULT_MAX_SUBREQUEST_DEPTH = 16


class FetchError(OSError):
    """A subrequest failed on the network (or could not be sent): what ``workers.fetch`` raises."""


@dataclass(frozen=True)
class SubrequestScope:
    """What outbound ``fetch`` needs to know about the request being handled."""

    #: the incoming request's URL: its ``scheme://host:port`` is the worker's own origin
    origin: str
    #: the incoming request's ``CF-EW-Via`` count
    hops: int = 0
    #: where requests to the worker's own origin go (``--upstream``), or ``None``
    upstream: str | None = None
    #: the worker's static assets (``[assets]``), or ``None``: an own-origin path they serve is no loop
    assets: Any = None


#: set by :meth:`WorkerHost.serve` for the request being handled
subrequest_scope: contextvars.ContextVar[SubrequestScope | None] = contextvars.ContextVar(
    "flarelet_subrequest_scope", default=None
)

_LOOPBACK = frozenset({"localhost", "127.0.0.1", "[::1]", "0.0.0.0"})


def origin_of(url: str) -> tuple[str, str, str]:
    """``(scheme, host, port)`` of ``url``, lower-cased, with the scheme's default port spelled out."""
    scheme, _, rest = url.partition("://")
    netloc = rest.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0].rsplit("@", 1)[-1].lower()
    scheme = scheme.lower()
    host, sep, port = netloc.rpartition(":")
    if not sep or "]" in port:
        host, port = netloc, {"http": "80", "https": "443"}.get(scheme, "")
    return scheme, host, port


def is_own_origin(url: str, origin: str) -> bool:
    """Whether ``url`` points at ``origin`` (loopback names on the same port count as the same host)."""
    scheme, host, port = origin_of(url)
    own_scheme, own_host, own_port = origin_of(origin)
    if port != own_port or scheme != own_scheme:
        return False
    return host == own_host or (host in _LOOPBACK and own_host in _LOOPBACK)


def _route(request: Request, scope: SubrequestScope | None) -> str:
    """The URL to send ``request`` to: the upstream for the worker's own origin, else its own URL."""
    url = request.url
    if scope is None or not is_own_origin(url, scope.origin):
        return url
    if scope.upstream is None:
        if _served_by_assets(request, scope.assets):
            # the dev server answers this path from the assets before any worker code runs (as wrangler dev
            # does): sent to ourselves over loopback, the request is logged and served like any other
            return url
        scheme, host, port = origin_of(scope.origin)
        raise FetchError(
            f"fetch({url}) targets this worker's own origin ({scheme}://{host}:{port}). On Cloudflare that "
            "subrequest goes to the zone's origin server; locally there is none, and calling the worker again "
            "would loop. Start flarelet dev with --upstream URL to say where the origin is."
        )
    rest = url.split("://", 1)[1]
    slash = rest.find("/")
    return scope.upstream.rstrip("/") + (rest[slash:] if slash >= 0 else "/")


def _served_by_assets(request: Request, assets: Any) -> bool:
    """Whether the dev server would answer ``request`` from static assets without running the worker."""
    if assets is None or request.method not in ("GET", "HEAD"):
        return False
    rest = request.url.split("://", 1)[-1]
    slash = rest.find("/")
    path = unquote(rest[slash:].split("?", 1)[0].split("#", 1)[0]) if slash >= 0 else "/"
    return not assets.worker_first(path) and assets.resolve(path) is not None


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
    scope = subrequest_scope.get()
    hops = str((scope.hops if scope is not None else 0) + 1)
    service = outbound_service.get()
    if service is not None:
        forwarded = Request(request)  # the caller's request object keeps its own headers
        forwarded.headers.set(HOP_HEADER, hops)
        answered = await service(forwarded)
        if answered is not None:
            return answered
        request = forwarded
    target = _route(request, scope)
    if (request.headers.get("upgrade") or "").lower() == "websocket":
        from .websocket_client import connect_websocket

        return await connect_websocket(request, target)
    body = await request.bytes() if request._body is not None else None
    client = _get_client()
    import httpx

    headers = [(k, v) for k, v in request.headers.multi_items() if k not in ("host", "content-length", HOP_HEADER)]
    headers.append((HOP_HEADER, hops))
    try:
        http_request = client.build_request(request.method, target, headers=headers, content=body)
        upstream = await client.send(http_request, follow_redirects=request.redirect == "follow")
    except httpx.InvalidURL as exc:
        raise FetchError(f"Fetch API cannot load: {request.url} ({exc})") from exc
    except httpx.HTTPError as exc:
        raise FetchError(
            f"fetch failed: {type(exc).__name__}: {exc or 'network error'} ({request.method} {target})"
        ) from exc
    if request.redirect == "error" and upstream.is_redirect:
        raise FetchError(f"fetch failed: redirect to {upstream.headers.get('location')!r} with redirect mode 'error'")
    response_headers = Headers([(k, v) for k, v in upstream.headers.multi_items() if k.lower() not in _HOP_BY_HOP])
    content = upstream.content
    result = Response._from_parts(upstream.status_code, response_headers, content or None, upstream.reason_phrase or "")
    result.url = str(upstream.url)
    result.redirected = bool(upstream.history)
    return result
