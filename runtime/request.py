"""``Request``: what a worker's ``fetch`` handler receives, and what ``fetch()`` sends.

Mirrors the Fetch API as Cloudflare's Python SDK exposes it (``url``, ``method``, ``headers``,
``cf``, ``text()``/``json()``/``bytes()``/``form_data()``, ``clone()``). Requests coming from the
dev server are built by :meth:`Request._incoming` without validation or header parsing, which
keeps the per-request cost low; headers are parsed on first access.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from typing import Any

from .body import BodyReader, BodyStream, coerce_body
from .headers import Headers
from .js.objects import JsObject


def _js_object(value: Any) -> Any:
    if isinstance(value, Mapping):
        return JsObject({k: _js_object(v) for k, v in value.items()})
    if isinstance(value, list):
        return [_js_object(v) for v in value]
    return value


_NO_BODY_METHODS = frozenset({"GET", "HEAD"})


class Request(BodyReader):
    """A Fetch API request (``workers.Request``)."""

    __slots__ = ("_url", "_method", "_headers", "_raw_headers", "_body", "_used", "_cf", "redirect")
    _url: str
    _method: str
    #: None until first read when built by :meth:`_incoming` (parsed lazily from ``_raw_headers``)
    _headers: Headers | None
    _raw_headers: list[tuple[bytes, bytes]] | None
    _cf: Mapping[str, Any] | None
    redirect: str

    def __init__(
        self,
        input: Request | str,  # noqa: A002 - Fetch API name
        *,
        method: str | None = None,
        headers: Any = None,
        body: Any = None,
        cf: Mapping[str, Any] | None = None,
        redirect: str | None = None,
        **_other: Any,
    ) -> None:
        if isinstance(input, Request):
            src = input
            self._url = src._url
            self._method = src._method
            self._headers = src.headers.copy()
            self._cf = dict(src._cf) if src._cf is not None else None
            self.redirect = src.redirect
            self._body = src._clone_body() if body is None else None
            self._used = False
        else:
            url = str(input)
            if "://" not in url:
                raise TypeError(f"Invalid URL: {url!r}")
            self._url = url
            self._method = "GET"
            self._headers = Headers()
            self._cf = None
            self.redirect = "follow"
            self._body = None
            self._used = False
        self._raw_headers = None
        if method is not None:
            self._method = str(method).upper()
        if headers is not None:
            self._headers = Headers(headers)
        if cf is not None:
            self._cf = dict(cf)
        if redirect is not None:
            if redirect not in ("follow", "manual", "error"):
                raise TypeError(f"redirect must be 'follow', 'manual' or 'error', got {redirect!r}")
            self.redirect = redirect
        if body is not None:
            data, ctype = coerce_body(body, for_response=False)
            self._body = data
            if ctype and not self._headers.has("content-type"):
                self._headers.set("content-type", ctype)
        if self._body is not None and self._method in _NO_BODY_METHODS:
            raise TypeError("Request with a GET or HEAD method cannot have a body.")

    @classmethod
    def _incoming(
        cls,
        url: str,
        method: str,
        raw_headers: list[tuple[bytes, bytes]],
        body: builtins.bytes | BodyStream | None,
        cf: Mapping[str, Any] | None,
    ) -> Request:
        """Fast constructor for the dev server: no copying, headers parsed lazily."""
        req = cls.__new__(cls)
        req._url = url
        req._method = method
        req._headers = None
        req._raw_headers = raw_headers
        req._body = body
        req._used = False
        req._cf = cf
        req.redirect = "manual"
        return req

    @property
    def url(self) -> str:
        return self._url

    @property
    def method(self) -> str:
        return self._method

    @property
    def headers(self) -> Headers:
        headers = self._headers
        if headers is None:
            headers = self._headers = Headers._from_raw(self._raw_headers or ())
            self._raw_headers = None
        return headers

    @property
    def cf(self) -> Any:
        """Cloudflare's request metadata (``IncomingRequestCfProperties``), or ``None``.

        An object with attribute and item access (``request.cf.country``, ``request.cf["colo"]``),
        as the ``JsProxy`` of the JS object is on Cloudflare; nested objects too. Values come from
        ``[flarelet] cf`` or Miniflare's offline fallback. It is built on first access, as a copy,
        so a worker changing it never changes another request's.
        """
        cf = self._cf
        if cf is None or isinstance(cf, JsObject):
            return cf
        cf = self._cf = _js_object(cf)
        return cf

    @property
    def js_object(self) -> Request:
        """The JS ``Request`` behind a ``workers.Request``: here the same object (it serves both APIs)."""
        return self

    _js_request = js_object

    async def json(self, **kwargs: Any) -> Any:
        return await self._read_json(**kwargs)

    def clone(self) -> Request:
        return Request(self)

    def __repr__(self) -> str:
        return f"<Request {self._method} {self._url}>"
