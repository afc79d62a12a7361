"""Minimal ``js`` and ``pyodide.ffi`` modules for legacy Python Workers (``from js import Response``).

Older Python Workers call JavaScript classes through Pyodide: ``Response.new(body, init)``,
``Headers.new(...)``, ``Response.json(obj, init)``, ``console.log``, ``JSON.stringify``, and
convert with ``pyodide.ffi.to_js(obj, dict_converter=Object.fromEntries)``. This shim maps those
spellings onto flarelet's Python objects; there is no JavaScript here, so ``to_js`` is the
identity and anything beyond these names is an ``AttributeError``.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping
from types import ModuleType
from typing import Any

from flarelet.bindings.durable_objects.state import WebSocketRequestResponsePair  # noqa: F401 - exported

from .headers import Headers as _Headers
from .outbound import fetch as _fetch
from .request import Request as _Request
from .response import Response as _Response
from .websocket import WebSocket, WebSocketPair  # noqa: F401 - exported on the js module

_console_log = logging.getLogger("flarelet.console")


def _init(init: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    if init is not None:
        merged.update(init.items() if hasattr(init, "items") else dict(init))
    merged.update(kwargs)
    return merged


class Response(_Response):
    """``js.Response``: ``Response.new(body, init)`` and ``Response.json(data, init)``."""

    __slots__ = ()

    @classmethod
    def new(cls, body: Any = None, init: Any = None, **kwargs: Any) -> _Response:
        opts = _init(init, kwargs)
        return _Response(
            body, status=opts.get("status"), status_text=opts.get("statusText", ""), headers=opts.get("headers")
        )

    @classmethod
    def from_json(
        cls,
        data: Any,
        init: Any = None,
        status: int | None = None,
        headers: Any = None,  # type: ignore[override]
        status_text: str = "",
        **kwargs: Any,
    ) -> _Response:
        opts = _init(init, kwargs)
        return _Response.from_json(
            data,
            status=status or opts.get("status", 200),
            headers=headers if headers is not None else opts.get("headers"),
            status_text=status_text or opts.get("statusText", ""),
        )

    @classmethod
    def redirect(cls, url: str, status: int = 302) -> _Response:  # type: ignore[override]
        return _Response.redirect(url, status)


class Headers(_Headers):
    __slots__ = ()

    @classmethod
    def new(cls, init: Any = None) -> _Headers:
        return _Headers(init)


class Request(_Request):
    __slots__ = ()

    @classmethod
    def new(cls, input: Any, init: Any = None, **kwargs: Any) -> _Request:  # noqa: A002
        return _Request(input, **_init(init, kwargs))


async def fetch(resource: Any, init: Any = None, **kwargs: Any) -> _Response:
    return await _fetch(resource, **_init(init, kwargs))


class console:  # noqa: N801 - JS name
    @staticmethod
    def log(*args: Any) -> None:
        print(*args, flush=True)

    info = log
    debug = log

    @staticmethod
    def warn(*args: Any) -> None:
        print(*args, file=sys.stderr, flush=True)

    error = warn


class JSON:  # noqa: N801 - JS name
    @staticmethod
    def stringify(value: Any, *_args: Any) -> str:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)

    @staticmethod
    def parse(text: str | bytes) -> Any:
        return json.loads(text)


class Object:  # noqa: N801 - JS name
    @staticmethod
    def fromEntries(entries: Any) -> dict[Any, Any]:  # noqa: N802 - JS name
        return dict(entries.items() if hasattr(entries, "items") else entries)

    @staticmethod
    def keys(obj: Mapping[Any, Any]) -> list[Any]:
        return list(obj)

    @staticmethod
    def entries(obj: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
        return list(obj.items())


def to_js(value: Any, *_args: Any, **_kwargs: Any) -> Any:
    """``pyodide.ffi.to_js``: the identity (no JS boundary locally)."""
    return value


def to_py(value: Any, *_args: Any, **_kwargs: Any) -> Any:
    return value


def create_proxy(value: Any, *_args: Any, **_kwargs: Any) -> Any:
    return value


class JsProxy:  # isinstance checks in user code; nothing is ever a JsProxy here
    pass


class JsException(Exception):
    """What JS errors are in Pyodide; flarelet raises Python exceptions instead."""


def install() -> None:
    """Register ``js``, ``pyodide`` and ``pyodide.ffi`` unless real ones are already imported."""
    js = ModuleType("js", "flarelet's minimal stand-in for Pyodide's js module")
    for name in (
        "Response",
        "Headers",
        "Request",
        "fetch",
        "console",
        "JSON",
        "Object",
        "WebSocket",
        "WebSocketPair",
        "WebSocketRequestResponsePair",
    ):
        setattr(js, name, globals()[name])
    sys.modules.setdefault("js", js)
    if "pyodide" not in sys.modules:
        pyodide = ModuleType("pyodide", "flarelet's minimal stand-in for Pyodide")
        ffi = ModuleType("pyodide.ffi")
        for name in ("to_js", "to_py", "create_proxy", "JsProxy", "JsException"):
            setattr(ffi, name, globals()[name])
        pyodide.ffi = ffi  # type: ignore[attr-defined]
        sys.modules["pyodide"] = pyodide
        sys.modules["pyodide.ffi"] = ffi
