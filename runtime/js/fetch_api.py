"""``js.Headers``, ``js.Request``, ``js.Response`` and ``js.fetch``: the Fetch API the JS way.

Legacy and docs-style workers build these with ``.new(...)`` and pass JS *init objects*: a dict, a
``to_js(..., dict_converter=Object.fromEntries)`` object, keyword arguments, or — as JS allows —
another ``Request``/``Response`` whose properties are read as the init (``fetch(url, request)``
re-sends a request to another URL; ``Response.new(body, response)`` keeps a response's status and
headers with a new body). All of them come down to one options dict (:func:`init_options`).
The objects built are flarelet's own ``Request``/``Response``, so they pass between the ``js`` and
``workers`` APIs freely. A failed ``js.fetch`` throws ``JsException`` named ``TypeError``, as the
JS promise rejects on Cloudflare.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..body import Blob as _Blob
from ..body import File as _File
from ..body import FormData as _FormData
from ..headers import Headers as _Headers
from ..outbound import FetchError
from ..outbound import fetch as _fetch
from ..request import Request as _Request
from ..response import FetchResponse as _FetchResponse
from ..response import Response as _Response
from .errors import JsException

_REQUEST_KEYS = ("method", "headers", "body", "redirect", "cf")
_RESPONSE_KEYS = ("status", "statusText", "headers")


def init_options(init: Any, kwargs: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """One options dict from a JS init: mapping, ``Request``/``Response`` (properties read), or object."""
    merged: dict[str, Any] = {}
    if init is None:
        pass
    elif isinstance(init, _Request):
        merged.update(method=init.method, headers=init.headers.copy(), redirect=init.redirect)
        if init._body is not None:
            merged["body"] = init
        if init._cf is not None:
            merged["cf"] = init._cf
    elif isinstance(init, _FetchResponse):
        merged.update(status=init.status, statusText=init._status_text, headers=init.headers.copy())
    elif isinstance(init, Mapping):
        merged.update(init)
    else:
        for key in (*_REQUEST_KEYS, *_RESPONSE_KEYS):
            if hasattr(init, key):
                merged[key] = getattr(init, key)
    if kwargs:
        merged.update(kwargs)
    return merged


def _request_kwargs(opts: dict[str, Any]) -> dict[str, Any]:
    out = {k: opts[k] for k in _REQUEST_KEYS if k in opts and opts[k] is not None}
    body = out.get("body")
    if isinstance(body, _Request):  # the body of a Request used as init: its bytes/stream
        out["body"] = body._take()
    return out


class Headers(_Headers):
    __slots__ = ()

    @classmethod
    def new(cls, init: Any = None) -> _Headers:
        return _Headers(init)


class Request(_Request):
    __slots__ = ()

    @classmethod
    def new(cls, input: Any, init: Any = None, **kwargs: Any) -> _Request:  # noqa: A002 - Fetch API name
        target = input if isinstance(input, _Request) else str(input)
        return _Request(target, **_request_kwargs(init_options(init, kwargs)))


class Response(_Response):
    """``Response.new(body, init)``, ``Response.json(data, init)``, ``Response.redirect(url, status)``."""

    __slots__ = ()

    @classmethod
    def new(cls, body: Any = None, init: Any = None, **kwargs: Any) -> _Response:
        opts = init_options(init, kwargs)
        return _Response(
            body,
            status=opts.get("status"),
            status_text=opts.get("statusText") or "",
            headers=opts.get("headers"),
            web_socket=opts.get("webSocket"),
        )

    @classmethod
    def from_json(  # type: ignore[override]
        cls, data: Any, init: Any = None, status: int | None = None, headers: Any = None, **kwargs: Any
    ) -> _Response:
        opts = init_options(init, kwargs)
        return _Response.from_json(
            data,
            status=status or opts.get("status") or 200,
            headers=headers if headers is not None else opts.get("headers"),
            status_text=opts.get("statusText") or "",
        )

    @classmethod
    def redirect(cls, url: Any, status: int = 302) -> _Response:  # type: ignore[override]  # a workers Response
        return _Response.redirect(str(url), status)

    @classmethod
    def error(cls) -> _Response:
        return _Response._from_parts(500, _Headers(), None)


class FormData(_FormData):
    @classmethod
    def new(cls, init: Any = None) -> _FormData:
        return _FormData(init)


class Blob(_Blob):
    """``Blob.new(parts, {type})``."""

    @classmethod
    def new(cls, parts: Any = None, options: Any = None, **kwargs: Any) -> _Blob:
        opts = init_options(options, kwargs)
        return _Blob(parts, type=opts.get("type") or "")


class File(_File):
    """``File.new(parts, name, {type, lastModified})``."""

    @classmethod
    def new(cls, parts: Any, name: str, options: Any = None, **kwargs: Any) -> _File:
        opts = init_options(options, kwargs)
        extra = {"last_modified": opts["lastModified"]} if "lastModified" in opts else {}
        return _File(parts, name, type=opts.get("type") or "", **extra)


async def fetch(resource: Any, init: Any = None, **kwargs: Any) -> _Response:
    """``js.fetch(resource, init)``: ``resource`` is a URL string, ``URL`` or ``Request``."""
    target = resource if isinstance(resource, _Request) else str(resource)
    try:
        return await _fetch(target, **_request_kwargs(init_options(init, kwargs)))
    except FetchError as exc:
        raise JsException("TypeError", str(exc)) from exc
