"""Python values as Python Workers see them when a binding answers.

In Cloudflare's Python Workers every binding call goes through ``_BindingWrapper``
(workers-runtime-sdk ``rpc.py``): arguments are converted with ``python_to_rpc`` and results
with ``python_from_rpc``, which turns plain JS objects into :class:`JsDict` -- a ``dict`` whose
keys are also attributes (``result.results[0]``) -- arrays into lists and ``null`` into ``None``.
Errors thrown by a binding reach Python as ``pyodide.ffi.JsException`` carrying the JS error's
``name`` and ``message``. This module gives local bindings the same shapes, so code written
against flarelet runs unchanged on Cloudflare.
"""

from __future__ import annotations

import builtins
import datetime as _dt
import inspect
import json
import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

__all__ = [
    "JsDict",
    "JsException",
    "JsTypeError",
    "JsRangeError",
    "to_js_dict",
    "merge_options",
    "check_rpc_value",
    "js_date",
    "read_body_bytes",
    "ByteStream",
]


class JsDict(dict[str, Any]):
    """A ``dict`` with attribute access to its keys (``python_from_rpc``'s ``JsDict``)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        try:
            del self[name]
        except KeyError:
            raise AttributeError(name) from None


def to_js_dict(value: Any) -> Any:
    """Recursively turn dicts into :class:`JsDict` (what a JS object becomes in Python)."""
    if isinstance(value, dict):
        return JsDict((k, to_js_dict(v)) for k, v in value.items())
    if isinstance(value, list):
        return [to_js_dict(v) for v in value]
    return value


class JsException(Exception):
    """A JS error thrown by a binding (``pyodide.ffi.JsException`` on Cloudflare).

    ``str(exc)`` is ``"<name>: <message>"`` as JS ``Error.prototype.toString`` gives.
    """

    def __init__(self, name: str, message: str, **extra: Any) -> None:
        super().__init__(f"{name}: {message}")
        self.name = name
        self.message = message
        for key, value in extra.items():
            setattr(self, key, value)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, message={self.message!r})"


class JsTypeError(JsException, TypeError):
    """A JS ``TypeError``: also a Python ``TypeError`` (runtime-sdk maps it so)."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__("TypeError", message, **extra)


class JsRangeError(JsException, ValueError):
    """A JS ``RangeError``: also a Python ``ValueError`` (runtime-sdk maps it so)."""

    def __init__(self, message: str, **extra: Any) -> None:
        super().__init__("RangeError", message, **extra)


_CAMEL_RE = re.compile(r"_([a-z0-9])")


def _camel(name: str) -> str:
    return _CAMEL_RE.sub(lambda m: m.group(1).upper(), name)


def merge_options(options: Mapping[str, Any] | None, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One options object from a positional dict and/or keyword arguments.

    Pyodide passes keyword arguments of a JS call as a trailing object, so on Cloudflare
    ``KV.put(k, v, expirationTtl=60)`` and ``KV.put(k, v, {"expirationTtl": 60})`` mean the same.
    snake_case keys are accepted as aliases of the camelCase ones (``expiration_ttl``).
    """
    merged: dict[str, Any] = {}
    if options is not None:
        if not isinstance(options, Mapping):
            raise JsTypeError("Failed to execute: parameter 'options' is not of type 'object'.")
        merged.update({_camel(str(k)): v for k, v in options.items()})
    merged.update({_camel(k): v for k, v in kwargs.items()})
    return merged


def check_rpc_value(value: Any) -> None:
    """Reject what ``python_to_rpc`` rejects on Cloudflare (tuples and bytearrays, anywhere)."""
    if isinstance(value, (tuple, bytearray)):
        raise TypeError(f"{type(value)} cannot be sent over RPC.")
    if inspect.isawaitable(value):
        raise TypeError(f"Awaitable {type(value)} cannot be sent over RPC.")
    if isinstance(value, dict):
        for v in value.values():
            check_rpc_value(v)
    elif isinstance(value, list):
        for v in value:
            check_rpc_value(v)


def js_date(millis: float) -> _dt.datetime:
    """A JS ``Date`` as ``python_from_rpc`` returns it: ``datetime.fromtimestamp(ms / 1000)``.

    Workers run with ``TZ=UTC``, so that is a naive datetime in UTC; we build the same value
    regardless of this machine's time zone.
    """
    return _dt.datetime.fromtimestamp(millis / 1000, _dt.UTC).replace(tzinfo=None)


def js_date_millis(value: Any) -> float:
    """Milliseconds since the epoch of a ``datetime`` (naive = UTC, as in Workers) or a number."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.UTC)
        return value.timestamp() * 1000
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    raise JsTypeError("Expected a Date (datetime) or a number of milliseconds.")


async def read_body_bytes(value: Any) -> bytes | None:
    """Bytes of a body-like value, or ``None`` when ``value`` is not one.

    Accepts what a Worker may hand a storage binding as a value: ``str``, ``bytes``,
    ``memoryview``, an async iterable of byte chunks (a request/response body stream), or an
    object with an async ``bytes()`` method (a ``Request``/``Response``/``R2ObjectBody``).
    Duck-typed so ``bindings`` never imports ``runtime``.
    """
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, bytes):
        return value
    if isinstance(value, memoryview):
        return value.tobytes()
    if hasattr(value, "__aiter__"):
        chunks = []
        async for chunk in value:
            if isinstance(chunk, str):
                chunk = chunk.encode("utf-8")
            chunks.append(bytes(chunk))
        return b"".join(chunks)
    method = getattr(value, "bytes", None)
    if callable(method):
        result = method()
        if inspect.isawaitable(result):
            result = await result
        return bytes(result)
    return None


class ByteStream:
    """A one-shot stream of bytes (what a JS ``ReadableStream`` body becomes here).

    Async-iterate it for chunks, or read it whole with :meth:`bytes` / :meth:`text`. Pass it to
    a ``Response`` as the body, or to another binding's ``put``.
    """

    def __init__(self, chunks: AsyncIterator[bytes], length: int | None = None) -> None:
        self._chunks = chunks
        self.locked = False
        #: the byte length when known (workerd's ``tryGetLength``): R2 accepts only such streams
        self.length = length

    def __aiter__(self) -> AsyncIterator[bytes]:
        if self.locked:
            raise JsTypeError("This ReadableStream is currently locked to a reader.")
        self.locked = True
        return self._chunks

    async def bytes(self) -> bytes:
        return b"".join([chunk async for chunk in self])

    async def text(self) -> str:
        return (await self.bytes()).decode("utf-8", errors="replace")

    @classmethod
    def from_bytes(cls, data: builtins.bytes, chunk_size: int = 64 * 1024) -> ByteStream:
        async def gen() -> AsyncIterator[bytes]:
            for start in range(0, len(data), chunk_size):
                yield data[start : start + chunk_size]

        return cls(gen(), len(data))


def js_string(value: Any) -> str:
    """``String(value)`` in JS of what a Python value becomes there (``True`` -> ``"true"``,
    ``5.0`` -> ``"5"``, ``None`` -> ``"null"``, a dict -> ``"[object Object]"``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (float("inf"), float("-inf")):
            return "Infinity" if value > 0 else "-Infinity"
        if value.is_integer() and abs(value) < 1e21:
            return str(int(value))
        return repr(value).replace("e-0", "e-")
    if isinstance(value, Mapping):
        return "[object Object]"
    if isinstance(value, (list, tuple)):
        return ",".join("" if v is None else js_string(v) for v in value)
    return str(value)


#: V8 quotes the whole text in a JSON error below this length, else 10 characters either side
_JSON_CONTEXT = 10


def json_syntax_error(text: str, exc: json.JSONDecodeError) -> JsException:
    """The ``SyntaxError`` V8's ``JSON.parse`` throws for ``text`` (``Unexpected token 'v', "v1"
    is not valid JSON``), from Python's error; rarer failures keep Python's wording."""
    pos = exc.pos
    if not text.strip() or pos >= len(text):
        return JsException("SyntaxError", "Unexpected end of JSON input")
    if exc.msg == "Extra data":
        return JsException("SyntaxError", f"Unexpected non-whitespace character after JSON at position {pos}")
    if exc.msg.startswith("Expecting property name"):
        return JsException("SyntaxError", f"Expected property name or '}}' in JSON at position {pos}")
    if exc.msg != "Expecting value":
        return JsException("SyntaxError", f"{exc.msg} in JSON at position {pos}")
    token = text[pos]
    if len(text) < 2 * _JSON_CONTEXT + 1:
        shown = f'"{text}"'
    else:
        start, end = max(0, pos - _JSON_CONTEXT), min(len(text), pos + _JSON_CONTEXT)
        shown = ("..." if start else "") + f'"{text[start:end]}"' + ("..." if end < len(text) else "")
    return JsException("SyntaxError", f"Unexpected token '{token}', {shown} is not valid JSON")
