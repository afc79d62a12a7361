"""Step results, params and event payloads as JSON text for SQLite, without losing their types.

What reaches here has already crossed the RPC rules (``None``, bool, int, float, str, bytes,
lists, string-keyed dicts, sets, ``datetime``): JSON plus three tags -- ``{"$bytes": base64}``,
``{"$set": [...]}``, ``{"$date": seconds}`` -- and ``{"$obj": {...}}`` around a dict whose keys
start with ``$`` so it cannot be mistaken for a tag. Dicts come back as ``JsDict`` (attribute
access, as a JS object does in Python).
"""

from __future__ import annotations

import base64
import datetime as _dt
import json
from typing import Any

from flarelet.bindings.jsobject import JsDict


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        body = {str(k): _encode(v) for k, v in value.items()}
        if any(k.startswith("$") for k in body):
            return {"$obj": body}
        return body
    if isinstance(value, (set, frozenset)):
        return {"$set": [_encode(v) for v in value]}
    if isinstance(value, _dt.datetime):
        return {"$date": value.timestamp()}
    if isinstance(value, BaseException):
        return {"$error": str(value)}
    raise TypeError(f"cannot store a {type(value).__name__}")


def _decode(value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((tag, inner),) = value.items()
            if tag == "$bytes":
                return base64.b64decode(inner)
            if tag == "$set":
                return {_decode(v) for v in inner}
            if tag == "$date":
                return _dt.datetime.fromtimestamp(inner)
            if tag == "$error":
                return Exception(inner)
            if tag == "$obj":
                return JsDict({k: _decode(v) for k, v in inner.items()})
        return JsDict({k: _decode(v) for k, v in value.items()})
    return value


def dumps(value: Any) -> str:
    return json.dumps(_encode(value), separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def loads(text: str | None) -> Any:
    return None if text is None else _decode(json.loads(text))


class NotSerialisable(TypeError):
    """A value that cannot be stored (a step result or a run's output)."""


def check_storable(value: Any, _depth: int = 0) -> None:
    """Refuse what a Python workflow cannot hand to the engine, with the SDK's texts.

    ``tuple``/``bytearray`` and awaitables raise ``TypeError`` (the SDK's ``python_to_rpc``,
    so a step attempt fails and is retried); anything else that the structured clone cannot copy
    (instances of your own classes, functions) raises :class:`NotSerialisable`.
    """
    import inspect

    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return
    if _depth > 1000:
        raise NotSerialisable("nested too deeply")
    if isinstance(value, (tuple, bytearray)):
        raise TypeError(f"{type(value)} cannot be sent over RPC.")
    if inspect.isawaitable(value):
        raise TypeError(f"Awaitable {type(value)} cannot be sent over RPC.")
    if isinstance(value, list):
        for item in value:
            check_storable(item, _depth + 1)
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, (str, int, float)) or isinstance(key, bool):
                raise NotSerialisable(f"a {type(key).__name__} key")
            check_storable(item, _depth + 1)
        return
    if isinstance(value, (set, frozenset)):
        for item in value:
            check_storable(item, _depth + 1)
        return
    if isinstance(value, (_dt.datetime, BaseException)):
        return
    raise NotSerialisable(type(value).__name__)
