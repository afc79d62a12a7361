"""``Response``: what a worker returns, and what ``fetch()`` resolves to.

Cloudflare's SDK uses ``Response.json`` two ways: ``Response.json(data, status=...)`` builds a JSON
response, and ``await response.json()`` parses a fetched one. :class:`_JsonMethod` is a descriptor
that gives the class attribute and the instance attribute those two meanings.
"""

from __future__ import annotations

import builtins
import json as _json
from collections.abc import Callable
from http import HTTPStatus
from typing import Any, Self

from .body import BodyReader, BodyStream, coerce_body
from .headers import Headers

_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_NULL_BODY_STATUSES = frozenset({101, 204, 205, 304})


def dumps_json(data: Any) -> builtins.bytes:
    """``JSON.stringify``: compact separators, UTF-8, no ASCII escaping."""
    return _json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


class _JsonMethod:
    """``Response.json(data)`` on the class, ``await response.json()`` on an instance."""

    def __get__(self, obj: Response | None, cls: type[FetchResponse]) -> Callable[..., Any]:
        if obj is None:
            return cls.from_json
        return obj._read_json


class FetchResponse(BodyReader):
    """A Fetch API response (``workers.FetchResponse``; :class:`Response` adds the constructors)."""

    __slots__ = ("_status", "_status_text", "_headers", "_body", "_used", "url", "redirected", "web_socket")

    def __init__(
        self,
        body: Any = None,
        status: int | HTTPStatus | None = None,
        status_text: str = "",
        headers: Any = None,
        web_socket: Any = None,
        *,
        statusText: str | None = None,  # noqa: N803 - JS init name
    ) -> None:
        if isinstance(body, FetchResponse):
            # workers.Response(js_response): the SDK wraps a JS Response and takes no other options
            if status is not None or status_text or statusText or headers is not None:
                raise ValueError("Expected no options when constructing Response from a js.Response")
            self._copy_from(body)
            return
        code = 200 if status is None else int(status)
        if not (200 <= code <= 599) and not (code == 101 and web_socket is not None):
            raise ValueError(
                f"Responses may only be constructed with status codes in the range 200 to 599, inclusive (got {code})."
            )
        self._status = code
        self._status_text = statusText if statusText is not None else status_text
        self._headers = headers if isinstance(headers, Headers) else Headers(headers)
        data, ctype = coerce_body(body, for_response=True)
        if data is not None and code in _NULL_BODY_STATUSES:
            raise TypeError(f"Response with null body status ({code}) cannot have a body.")
        self._body = data
        self._used = False
        if ctype is not None and not self._headers.has("content-type"):
            self._headers.set("content-type", ctype)
        self.url = ""
        self.redirected = False
        self.web_socket = web_socket

    @classmethod
    def _from_parts(
        cls, status: int, headers: Headers, body: builtins.bytes | BodyStream | None, status_text: str = ""
    ) -> Self:
        """Internal constructor with no validation (responses built by flarelet itself)."""
        resp = cls.__new__(cls)
        resp._status = status
        resp._status_text = status_text
        resp._headers = headers
        resp._body = body
        resp._used = False
        resp.url = ""
        resp.redirected = False
        resp.web_socket = None
        return resp

    def _copy_from(self, other: FetchResponse) -> None:
        self._status = other._status
        self._status_text = other._status_text
        self._headers = other._headers
        self._body = other._body
        self._used = other._used
        other._used = True  # the body now belongs to this object, as when JS wraps a Response
        self.url = other.url
        self.redirected = other.redirected
        self.web_socket = other.web_socket

    @property
    def js_object(self) -> FetchResponse:
        """The JS ``Response`` behind a ``workers.Response``: here the same object (it serves both APIs)."""
        return self

    js_response = js_object

    def replace_body(self, body: Any) -> Response:
        """A new ``Response`` with this one's status, status text and headers and ``body``
        (the SDK's ``Response.replace_body``: ``js.Response.new(body, self)``)."""
        headers = self._headers.copy()
        data, ctype = coerce_body(body, for_response=True)
        if ctype is not None and not headers.has("content-type"):
            headers.set("content-type", ctype)
        if data is not None and self._status in _NULL_BODY_STATUSES:
            raise TypeError(f"Response with null body status ({self._status}) cannot have a body.")
        return Response._from_parts(self._status, headers, data, self._status_text)

    @property
    def status(self) -> int:
        return self._status

    @property
    def status_text(self) -> str:
        if self._status_text:
            return self._status_text
        try:
            return HTTPStatus(self._status).phrase
        except ValueError:
            return ""

    statusText = status_text  # noqa: N815 - Fetch API name

    @property
    def ok(self) -> bool:
        return 200 <= self._status <= 299

    @property
    def headers(self) -> Headers:
        return self._headers

    json = _JsonMethod()

    @classmethod
    def from_json(
        cls, data: Any, status: int | HTTPStatus = HTTPStatus.OK, status_text: str = "", headers: Any = None
    ) -> Self:
        try:
            payload = dumps_json(data)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"Response.json: data is not JSON-serialisable: {exc}") from exc
        hdrs = Headers(headers)
        if not hdrs.has("content-type"):
            hdrs.set("content-type", "application/json")
        return cls(payload, status=status, status_text=status_text, headers=hdrs)

    @classmethod
    def redirect(cls, url: str, status: int | HTTPStatus = HTTPStatus.FOUND) -> Self:
        code = int(status)
        if code not in _REDIRECT_STATUSES:
            raise ValueError(f"Invalid redirect status {code} (expected one of 301, 302, 303, 307, 308).")
        return cls(None, status=code, headers={"location": str(url)})

    def clone(self) -> Self:
        copy = type(self)._from_parts(self._status, self._headers.copy(), self._clone_body(), self._status_text)
        copy.url = self.url
        copy.redirected = self.redirected
        return copy

    def __repr__(self) -> str:
        return f"<Response [{self._status}]>"


class Response(FetchResponse):
    """``workers.Response``: ``Response(body, status=, headers=)``, ``Response.json``, ``Response.redirect``."""

    __slots__ = ()
